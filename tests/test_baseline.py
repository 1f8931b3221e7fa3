"""Stage `baseline`: shot selection, trivial references, and main() on a tiny model."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import torch

from demo_project import demo_records, label_records, setup_project
from stages import baseline
from stages.baseline import (RowCache, active_strategies, best_strategy, cache_context, candidates,
                             retrieve_shots, select_few_shot, trivial_references)
from tuneproof.config import BaselineParams
from tuneproof.generation import GenerateParams
from tuneproof.io import TuneproofError, read_json, read_jsonl, sha256_text
from tuneproof.records import label_of
from tuneproof.scoring import Scorer, ScoreParams, metric_names


def test_few_shot_covers_the_most_frequent_labels_deterministically():
    train = demo_records(60, seed=1)
    counts = Counter(label_of(r, "intent") for r in train)
    shots = select_few_shot(train, 3, "intent", seed=0)
    assert len(shots) == 3 and all(s in train for s in shots)
    top3 = sorted(counts, key=lambda lab: (-counts[lab], lab))[:3]
    assert [label_of(s, "intent") for s in shots] == top3
    assert select_few_shot(list(reversed(train)), 3, "intent", seed=0) == shots  # input order is irrelevant
    assert select_few_shot(train, 3, "intent", seed=1) != shots
    many = select_few_shot(train, len(counts) + 2, "intent", seed=0)
    assert set(label_of(s, "intent") for s in many) == set(counts)  # every label, then round two
    assert len({s["id"] for s in many}) == len(many)


def test_few_shot_without_labels_and_with_k_above_train_size():
    train = label_records([("a", "x"), ("b", "y")])
    assert len(select_few_shot(train, 2, None, seed=0)) == 2
    assert len(select_few_shot(train, 5, "completion", seed=0)) == 2


def test_retrieval_returns_nearest_train_records_nearest_last():
    train = label_records([("refund my blender order please", "a"), ("my parcel is late", "b"),
                           ("refund the blender", "c"), ("password reset link not working", "d")])
    queries = label_records([("I want a refund for the blender", "?"), ("reset my password", "?")], first_id=10)
    shots = retrieve_shots(train, queries, 2)
    assert [s["completion"] for s in shots[0]] == ["a", "c"]  # "refund the blender" is nearest: last
    assert shots[1][-1]["completion"] == "d"
    assert all(s in train for row in shots for s in row)


def test_trivial_references():
    train = label_records([("a", "ham"), ("b", "ham"), ("c", "spam")])
    test = label_records([("d", "spam"), ("e", "ham"), ("f", "other")], first_id=10)
    ref = trivial_references(train, test, "completion")
    assert ref == {"n_test": 3, "majority_label": "ham", "majority_accuracy": pytest.approx(1 / 3),
                   "completion_seen_in_train": pytest.approx(2 / 3)}
    assert "majority_label" not in trivial_references(train, test, None)


def test_active_strategies_and_best():
    params = BaselineParams(strategies=["zero_shot", "rank", "few_shot"])
    assert active_strategies(params, "intent") == ["zero_shot", "few_shot"]
    assert active_strategies(params, "completion") == ["zero_shot", "rank", "few_shot"]
    with pytest.raises(TuneproofError, match="baseline.strategies has no strategy"):
        active_strategies(BaselineParams(strategies=["rank"]), "intent")
    with pytest.raises(TuneproofError, match=r"baseline.retrieval_k is \[0\]"):
        active_strategies(BaselineParams(strategies=["retrieval"], retrieval_k=[0]), "intent")
    with pytest.raises(TuneproofError, match=r"baseline.few_shot_k is \[4, 4\]"):
        active_strategies(BaselineParams(strategies=["few_shot"], few_shot_k=[4, 4]), "intent")
    assert active_strategies(BaselineParams(strategies=["zero_shot"], few_shot_k=[0]), "intent") == ["zero_shot"]
    metrics = {"zero_shot": {"acc": 0.5}, "few_shot": {"acc": 0.7}, "retrieval": {"acc": 0.7}}
    assert best_strategy(metrics, "acc") == "few_shot"  # tie: first listed
    assert candidates(["zero_shot", "few_shot", "retrieval"], BaselineParams(few_shot_k=[2, 8], retrieval_k=[4])) == [
        ("zero_shot", None), ("few_shot", 2), ("few_shot", 8), ("retrieval", 4)]


def test_main_writes_rows_and_metrics_deterministically(project_dir, tiny_model_dir):
    train, test = demo_records(24, seed=1), demo_records(6, seed=2, first_id=100)
    params = setup_project(project_dir, tiny_model_dir, train, test,
                           baseline={"few_shot_k": [1, 2], "retrieval_k": [2], "val_records": 4})
    baseline.main()
    out = project_dir / params["paths"]["baseline"]
    metrics_file = project_dir / params["paths"]["metrics"] / "baseline.json"
    metrics = read_json(metrics_file)
    strategies = ["zero_shot", "few_shot", "retrieval"]  # rank does not apply: label_field is intent
    assert sorted(p.stem for p in out.glob("*.jsonl")) == sorted(strategies)
    train_ids = {r["id"] for r in train}
    for strategy in strategies:
        rows = read_jsonl(out / f"{strategy}.jsonl")
        assert [r["id"] for r in rows] == [r["id"] for r in test]
        assert all(r["reference"] == t["completion"] and r["label"] == label_of(t, "intent")
                   for r, t in zip(rows, test))
        assert set(rows[0]["scores"]) == set(metric_names(ScoreParams(**params["score"])))
        if strategy != "zero_shot":
            k = metrics["selection"]["k"][strategy]  # chosen on val among the candidates
            assert k in params["baseline"][f"{strategy}_k"]
            assert all(len(r["shots"]) == k and set(r["shots"]) <= train_ids for r in rows)
        assert metrics[strategy]["task_success"] == sum(r["scores"]["task_success"] for r in rows) / len(rows)
    selection = metrics["selection"]
    assert selection["on"] == "val" and selection["records"] == 4 and selection["configs_tried"] == 4
    assert set(selection["val"]) == {"zero_shot", "few_shot@1", "few_shot@2", "retrieval@2"}
    assert metrics["best"]["strategy"] == selection["best"] in strategies
    assert metrics["trivial"]["n_test"] == len(test)
    before = {p.name: p.read_bytes() for p in [*out.glob("*.jsonl"), metrics_file]}
    baseline.main()
    assert before == {p.name: p.read_bytes() for p in [*out.glob("*.jsonl"), metrics_file]}


def test_main_on_a_label_task_runs_rank(project_dir, tiny_model_dir):
    rows = [(f"win cash prize {i} now", "spam") if i % 3 == 0 else (f"see you at {i} pm", "ham") for i in range(15)]
    params = setup_project(
        project_dir, tiny_model_dir, label_records(rows[:11]), label_records(rows[11:], first_id=50),
        task={"label_field": "completion"}, score={"kind": "label", "primary": "accuracy", "fields": [], "style": {}},
        prompt={"system": "Classify the message as ham or spam."}, baseline={"strategies": ["zero_shot", "rank"]})
    baseline.main()
    metrics = read_json(project_dir / params["paths"]["metrics"] / "baseline.json")
    assert set(metrics) == {"zero_shot", "rank", "best", "trivial", "selection"}
    reference = read_jsonl(project_dir / params["paths"]["baseline"] / "reference_tfidf_logreg.jsonl")
    assert [r["id"] for r in reference] == [r["id"] for r in label_records(rows[11:], first_id=50)]
    assert metrics["trivial"]["tfidf_logreg"]["accuracy"] == 1.0  # "win cash prize" vs "see you at": separable
    rank_rows = read_jsonl(project_dir / params["paths"]["baseline"] / "rank.jsonl")
    assert all(r["prediction"] in ("ham", "spam") and r["predicted_label"] == r["prediction"] for r in rank_rows)
    assert metrics["rank"]["extracted"] == 1.0  # rank always answers with a label
    assert set(metrics["rank"]) == {"accuracy", "extracted", "exact", "macro_f1"}
    assert metrics["trivial"]["majority_label"] == "ham"


class Killed(Exception):
    """Stands for the kill of a run."""


def test_a_killed_run_reuses_finished_configurations_and_matches_an_uninterrupted_run(
        project_dir, tiny_model_dir, monkeypatch):
    train, test = demo_records(24, seed=1), demo_records(6, seed=2, first_id=100)
    params = setup_project(project_dir, tiny_model_dir, train, test,
                           baseline={"few_shot_k": [1], "retrieval_k": [2], "val_records": 4})
    out = project_dir / params["paths"]["baseline"]
    metrics_file = project_dir / params["paths"]["metrics"] / "baseline.json"
    outputs = lambda: {p.name: p.read_bytes() for p in [*out.glob("*.jsonl"), metrics_file]}  # noqa: E731
    baseline.main()
    uninterrupted = outputs()
    assert not (project_dir / baseline.CACHE_DIR).exists()  # removed once the outputs are written
    shutil.rmtree(out)
    metrics_file.unlink()

    real, calls = baseline.run_strategy, []

    def run_strategy(*args, kill_at: int | None = None):
        calls.append(args[-1])  # desc: "baseline val <config>" or "baseline <strategy>" (test)
        if len(calls) == kill_at:
            raise Killed
        return real(*args)

    monkeypatch.setattr(baseline, "run_strategy", lambda *args: run_strategy(*args, kill_at=5))
    with pytest.raises(Killed):
        baseline.main()
    assert calls == ["baseline val zero_shot", "baseline val few_shot@1", "baseline val retrieval@2",
                     "baseline zero_shot", "baseline few_shot"]
    assert not out.exists() and not metrics_file.exists()
    assert len(list((project_dir / baseline.CACHE_DIR).glob("*.json"))) == 4  # 3 on val, zero_shot on test

    calls.clear()
    monkeypatch.setattr(baseline, "run_strategy", run_strategy)
    baseline.main()
    assert calls == ["baseline few_shot", "baseline retrieval"]  # the finished four were reused
    assert outputs() == uninterrupted
    assert not (project_dir / baseline.CACHE_DIR).exists()


def test_row_cache_reuses_only_the_same_fingerprint(tmp_path):
    computed = []
    compute = lambda: computed.append(1) or [{"id": "L1", "scores": {"exact": 0.5}}]  # noqa: E731
    records = label_records([("a", "x")])
    cache = RowCache(tmp_path / "cache", {"model": "m1"})
    assert cache.rows("few_shot", 4, records, compute, "d") == compute()
    computed.clear()
    assert cache.rows("few_shot", 4, records, compute, "d") == [{"id": "L1", "scores": {"exact": 0.5}}]
    assert computed == []  # reused
    cache.rows("few_shot", 2, records, compute, "d")  # other k
    cache.rows("few_shot", 4, label_records([("b", "x")]), compute, "d")  # other records
    RowCache(tmp_path / "cache", {"model": "m2"}).rows("few_shot", 4, records, compute, "d")  # other model
    RowCache(None).rows("few_shot", 4, records, compute, "d")  # no cache: always computed
    assert len(computed) == 4
    cache.clear()
    assert not (tmp_path / "cache").exists()


def test_cache_context_covers_model_files_decoding_scoring_and_train(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    model, train = torch.nn.Linear(2, 2), label_records([("a", "x")])
    scorer = Scorer(ScoreParams(kind="label", primary="accuracy", fields=[], style={}), "completion", ("x", "y"))

    def context(**changes) -> dict:
        args = {"train": train, "scorer": scorer, "system": "S", "gen": GenerateParams(), "seed": 0, **changes}
        return cache_context(tmp_path, model, **args)

    base = context()
    assert base == context() and base["model_files"] == {"model.safetensors": sha256_text("weights")}
    assert context(gen=GenerateParams(max_new_tokens=8)) != base
    assert context(system="T") != base and context(seed=1) != base
    assert context(train=label_records([("a", "y")])) != base
    assert context(scorer=Scorer(scorer.params, "completion", ("x", "z"))) != base
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert context() != base


def test_main_reports_missing_split(project_dir, tiny_model_dir):
    with pytest.raises(TuneproofError, match="train.jsonl: not found; run the split stage"):
        baseline.main()
