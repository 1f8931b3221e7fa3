"""The verdict on generated scenarios (recorded per-example scores, no model needed)."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter

import pytest
from sklearn.metrics import f1_score

from tuneproof.compare_params import CompareParams
from tuneproof.contract import BaselineMetrics, CompareInputs, EvaluateMetrics, Evidence, TrainInfo
from tuneproof.io import TuneproofError
from tuneproof.report import before_after_table
from tuneproof.stats import paired_bootstrap_macro_f1
from tuneproof.triage import answer_novelty
from tuneproof.verdict import compare_metrics, evaluate_evidence
from tuneproof.verdict_advice import (DONT_SHIP, FINETUNE_FAILED, FORGETTING_UNCHECKED, INSUFFICIENT_EVIDENCE, NO_SKILL,
                                      PROMPT_SUFFICES, SHIP, USE_RAG)

from scenarios import evidence_of, facts_task, format_task, label, probe_result, record, scenario


def test_format_task_where_finetune_clearly_wins_ships():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30, "retrieval": 0.35})
    assert evidence["verdict"] == SHIP, evidence["reasons"]
    sig = evidence["checks"]["significance"]
    assert sig["ci_low"] > 0.05 and sig["p_value"] < 1e-6
    statuses = {name: c["status"] for name, c in evidence["checks"].items()}
    # a label-only reference (the constant intent) cannot produce task_success, so beats_trivial is N/A;
    # no production sample: the drift checks were not run, and say so (never PASS)
    assert [statuses.pop(name) for name in ("beats_trivial", "drift", "production_overlap")] == ["N/A"] * 3
    assert evidence["checks"]["drift"]["evidence"].startswith("not run: no production sample")
    assert set(statuses.values()) == {"PASS"}
    assert evidence["checks"]["learnt"]["train_sample"] == pytest.approx(0.95)
    assert evidence["checks"]["learnt"]["bar"] == pytest.approx(0.10)  # zero_shot 0.05 + min_gain
    assert evidence["signals"]["answer_novelty"] < 0.1
    metrics = compare_metrics(Evidence(**evidence))
    assert metrics["verdict"] == SHIP and metrics["ci_low"] == sig["ci_low"]
    assert metrics["finetune_train_sample"] == pytest.approx(0.95) and metrics["checks"]["evidence"] == "PASS"
    assert metrics["n_needed"] == evidence["checks"]["evidence"]["n_needed"]


def test_facts_the_model_lacks_use_rag_even_when_the_fine_tune_learnt_nothing():
    # 400 test records: 120 could not resolve a 0.05 gain at these accuracies (CI half-width 0.08)
    evidence = scenario(facts_task, 0.10, {"zero_shot": 0.05, "few_shot": 0.08, "retrieval": 0.12}, n_test=400,
                        train_acc=0.08)
    assert evidence["signals"]["answer_novelty"] > 0.9
    assert evidence["checks"]["evidence"]["status"] == "PASS"
    learnt = evidence["checks"]["learnt"]  # train sample 0.08 <= untrained zero_shot 0.05 + 0.05
    assert learnt["status"] == "FAIL" and learnt["train_sample"] == pytest.approx(0.08)
    assert evidence["verdict"] == USE_RAG, evidence["reasons"]


def test_task_prompting_already_solves_prompt_suffices():
    evidence = scenario(format_task, 0.98, {"zero_shot": 0.90, "few_shot": 0.97, "retrieval": 0.96})
    assert evidence["verdict"] == PROMPT_SUFFICES
    assert evidence["signals"]["prompted_meets_target"]
    # train sample 1.0 vs 0.97 + 0.05: the bar is capped at the target, so a fine-tune that fits counts as learnt
    assert evidence["checks"]["learnt"]["status"] == "PASS" and evidence["checks"]["learnt"]["bar"] == 0.95


def test_no_significant_gain_on_a_format_task_is_prompt_suffices_not_rag():
    accuracies = {"zero_shot": 0.40, "few_shot": 0.60, "retrieval": 0.58}
    small = scenario(format_task, 0.62, accuracies)  # 120 records: the CI straddles 0.05 and is wider
    size, sig = small["checks"]["evidence"], small["checks"]["significance"]
    half_width = (sig["ci_high"] - sig["ci_low"]) / 2
    assert small["verdict"] == INSUFFICIENT_EVIDENCE and size["status"] == "FAIL"
    assert sig["ci_low"] <= 0.05 <= sig["ci_high"] and half_width > 0.05
    assert size["n_needed"] == math.ceil(120 * (half_width / 0.05) ** 2) == 654
    assert "about 654 are needed" in small["next_steps"][0]
    evidence = scenario(format_task, 0.62, accuracies, n_test=1000, train_acc=0.80)
    assert evidence["checks"]["evidence"]["status"] == "PASS"
    assert evidence["checks"]["significance"]["status"] == "FAIL"
    assert evidence["verdict"] == PROMPT_SUFFICES, evidence["reasons"]


def test_injected_leak_is_refused_and_the_pair_named():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, leak=True)
    assert evidence["verdict"] == DONT_SHIP
    leak = evidence["checks"]["leakage"]
    assert leak["status"] == "FAIL"
    assert {"test_id": "L001007", "train_id": "L005000", "kind": "exact"} in leak["pairs"]
    assert "L001007~L005000" in evidence["reasons"][0]


def test_forgetting_blocks_an_otherwise_winning_fine_tune():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, probe=probe_result(drop=0.3))
    assert evidence["checks"]["forgetting"]["status"] == "FAIL"
    assert evidence["verdict"] == DONT_SHIP
    assert any("replay" in step for step in evidence["next_steps"])


def test_missing_probe_never_ships():
    evidence = scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, probe={})
    assert evidence["checks"]["forgetting"]["status"] == "N/A"
    assert evidence["checks"]["significance"]["status"] == "PASS"
    assert evidence["verdict"] == DONT_SHIP and evidence["reasons"] == [FORGETTING_UNCHECKED]
    assert any("dvc repro probe" in step for step in evidence["next_steps"])


def test_non_finite_numbers_are_refused_with_the_file_and_key():
    with pytest.raises(TuneproofError, match=r"^metrics/probe\.json: kl_base_finetune is nan; re-run probe$"):
        scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, probe=probe_result(kl=float("nan")))
    with pytest.raises(TuneproofError, match=r"^metrics/evaluate\.json: train_sample\.task_success is inf"):
        scenario(format_task, 0.92, {"zero_shot": 0.05, "few_shot": 0.30}, train_acc=float("inf"))


# ------------------------------------------------------------------ an sms-like label task (ham/spam)

def sms_records(labels: list[str], offset: int) -> list[dict]:
    return [record(offset + i, f"sms {offset + i}", label) for i, label in enumerate(labels)]


def label_rows(records: list[dict], predict) -> list[dict]:
    """A system's per-example rows; predict(i, true label) -> predicted label."""
    rows = []
    for i, r in enumerate(records):
        p = predict(i, r["completion"])
        rows.append({"id": r["id"], "prediction": p, "reference": r["completion"], "label": r["completion"],
                     "predicted_label": p, "scores": {"accuracy": float(p == r["completion"]),
                                                      "exact": float(p == r["completion"])}})
    return rows


def flip(label: str) -> str:
    return "spam" if label == "ham" else "ham"


def wrong_every(k: int):
    """A system that is wrong on every k-th record."""
    return lambda i, label: flip(label) if i % k == 0 else label


def label_metrics(rows: list[dict]) -> dict:
    true, pred = [r["label"] for r in rows], [r["predicted_label"] for r in rows]
    return {"accuracy": sum(t == p for t, p in zip(true, pred)) / len(rows),
            "macro_f1": float(f1_score(true, pred, labels=["ham", "spam"], average="macro", zero_division=0))}


def sms_verdict(test: list[dict], prompted: list[dict], finetune: list[dict], metric: str = "accuracy",
                train_sample: list[dict] | float = 0.9, references: dict | None = None) -> dict:
    """The verdict on a ham/spam task; `train_sample` is the fine-tune's rows on a train sample or
    just its train-sample score."""
    train = sms_records([r["completion"] for r in test] * 3, 10_000)
    metrics = {"few_shot": label_metrics(prompted)}
    metrics["best"] = {"strategy": "few_shot", **metrics["few_shot"]}
    majority = Counter(r["completion"] for r in train).most_common(1)[0][0]
    metrics["trivial"] = {"n_test": len(test), "majority_label": majority,
                          "majority_accuracy": sum(r["completion"] == majority for r in test) / len(test)}
    sample_rows = train_sample if isinstance(train_sample, list) else None
    sample = label_metrics(sample_rows) if sample_rows else {metric: train_sample}
    evaluate = {"finetune": label_metrics(finetune), "train_sample": sample}
    files = dict(baseline_rows={"few_shot": prompted}, baseline_metrics=metrics, finetune_rows=finetune,
                 evaluate_metrics=evaluate, train_metrics=None, probe=probe_result(),
                 audit={"pass": True, "prompt": {"max": 0.4}}, test=test, train=train, train_sha_seen="sha",
                 train_sha_now="sha", metric=metric, params=CompareParams())
    return evidence_of(files, train_sample_rows=sample_rows, reference_rows=references or {})


def shuffled_labels(n_ham: int, n_spam: int) -> list[str]:
    labels = ["ham"] * n_ham + ["spam"] * n_spam
    random.Random(1).shuffle(labels)
    return labels


def test_finetune_collapsed_onto_the_majority_label_is_a_failed_attempt():
    """sms_spam, measured: a LoRA that answered 'ham' to all 295 test messages scored accuracy
    0.878 against few-shot prompting's 0.454. That is exactly always-'ham': the attempt failed."""
    rng = random.Random(0)
    test = sms_records(["ham"] * 88 + ["spam"] * 12, 0)
    prompted = label_rows(test, lambda i, label: label if rng.random() < 0.45 else flip(label))
    collapsed = sms_verdict(test, prompted, label_rows(test, lambda i, label: "ham"))
    assert collapsed["checks"]["significance"]["status"] == "PASS"  # 0.88 vs ~0.45: a "clear win" on accuracy
    check = collapsed["checks"]["majority_label"]
    assert check["status"] == "FAIL" and check["most_frequent"] == "ham" and check["most_frequent_share"] == 1.0
    learnt = collapsed["checks"]["learnt"]  # train sample 0.9 clears the bar; the collapse alone fails it
    assert learnt["status"] == "FAIL" and learnt["train_sample"] == 0.9
    assert (learnt["most_frequent"], learnt["most_frequent_share"], learnt["majority_share"]) == ("ham", 1.0, 0.88)
    assert "'ham', is 100% of the answers vs 88% for the majority label 'ham'" in learnt["evidence"]
    assert collapsed["verdict"] == FINETUNE_FAILED and "collapsed onto one answer" in collapsed["reasons"][0]
    assert "train.balance" in collapsed["next_steps"][0] and "dvc exp run" in collapsed["next_steps"][0]
    # a fine-tune that also gets most spam right passes the same checks
    skilled = sms_verdict(test, prompted, label_rows(test, lambda i, label: label if i != 99 else "ham"))
    assert skilled["checks"]["majority_label"]["status"] == "PASS" and skilled["verdict"] == SHIP


def test_base_like_finetune_is_a_failed_attempt_not_prompt_suffices():
    test = sms_records(shuffled_labels(240, 60), 0)
    prompted = label_rows(test, wrong_every(10))                        # accuracy 0.9 vs always-ham 0.8
    train_sample = label_rows(sms_records(shuffled_labels(40, 10), 20_000), wrong_every(7))  # 0.84
    evidence = sms_verdict(test, prompted, label_rows(test, wrong_every(10)), train_sample=train_sample)
    checks = evidence["checks"]
    # every other check points at PROMPT SUFFICES: the fine-tune equals prompting, which beats the majority
    assert checks["evidence"]["status"] == "PASS" and checks["significance"]["status"] == "FAIL"
    assert checks["beats_trivial"]["status"] == "PASS"
    learnt = checks["learnt"]
    assert learnt["status"] == "FAIL" and learnt["train_sample"] == pytest.approx(42 / 50)
    assert learnt["references"] == {"always 'ham' on the train sample": 0.8}  # no zero_shot strategy ran here
    assert learnt["bar"] == pytest.approx(0.85)
    assert evidence["verdict"] == FINETUNE_FAILED, evidence["reasons"]
    assert "train-sample accuracy 0.840 <= 0.850" in evidence["reasons"][0]


def test_one_test_record_is_insufficient_evidence_whatever_the_scores():
    test = sms_records(["spam"], 0)
    for ft_right in (True, False):
        for prompted_right in (True, False):
            system = {True: lambda i, label: label, False: lambda i, label: flip(label)}
            evidence = sms_verdict(test, label_rows(test, system[prompted_right]), label_rows(test, system[ft_right]))
            assert evidence["verdict"] == INSUFFICIENT_EVIDENCE, (ft_right, prompted_right, evidence["reasons"])
            assert evidence["checks"]["evidence"]["n_needed"] == 30
            assert compare_metrics(Evidence(**evidence))["n_needed"] == 30
            assert "about 30 are needed" in evidence["next_steps"][0]


def test_skilled_finetune_on_macro_f1_ships_with_the_macro_f1_bootstrap():
    test = sms_records(shuffled_labels(240, 60), 0)
    prompted, finetune = label_rows(test, wrong_every(4)), label_rows(test, wrong_every(50))
    train_sample = label_rows(sms_records(shuffled_labels(40, 10), 20_000), lambda i, label: label)
    evidence = sms_verdict(test, prompted, finetune, metric="macro_f1", train_sample=train_sample)
    assert evidence["verdict"] == SHIP, evidence["reasons"]
    sig, params = evidence["checks"]["significance"], CompareParams()
    true = [r["label"] for r in finetune]
    direct = paired_bootstrap_macro_f1(true, [r["predicted_label"] for r in finetune],
                                       [r["predicted_label"] for r in prompted], ["ham", "spam"],
                                       params.bootstrap_resamples, params.seed, params.confidence)
    assert (sig["gain"], sig["ci_low"], sig["ci_high"]) == (direct.mean_diff, direct.ci_low, direct.ci_high)
    assert sig["finetune"] == pytest.approx(label_metrics(finetune)["macro_f1"])
    assert sig["baseline"] == pytest.approx(label_metrics(prompted)["macro_f1"])
    assert sig["ci_low"] > 0.05 and "McNemar exact p on per-example accuracy" in sig["evidence"]
    assert evidence["checks"]["learnt"]["train_sample"] == 1.0


def test_prompting_and_finetune_below_a_tfidf_classifier_is_nothing_beats_trivial():
    test = sms_records(shuffled_labels(180, 120), 0)
    prompted = label_rows(test, wrong_every(4))                                 # 0.75, beats always-ham (0.60)
    finetune = label_rows(test, lambda i, label: label if i in (4, 8, 12) else wrong_every(4)(i, label))
    tfidf = label_rows(test, wrong_every(25))                                   # 0.96
    train_sample = label_rows(sms_records(shuffled_labels(30, 20), 20_000), lambda i, label: label)
    evidence = sms_verdict(test, prompted, finetune, train_sample=train_sample, references={"tfidf_logreg": tfidf})
    checks = evidence["checks"]
    assert checks["evidence"]["status"] == "PASS" and checks["learnt"]["status"] == "PASS"
    trivial = checks["beats_trivial"]
    assert trivial["status"] == "FAIL" and trivial["strongest_unbeaten"] == "tfidf_logreg"
    assert trivial["references"]["majority"]["ci_low"] > 0 and trivial["references"]["tfidf_logreg"]["score"] == 0.96
    assert evidence["verdict"] == NO_SKILL
    assert evidence["reasons"][0].startswith("neither prompting nor the fine-tune beats tfidf_logreg at 0.960")


def test_learnt_is_not_applicable_without_a_train_sample():
    from tuneproof.checks import learnt

    rows = [{"id": "a", "scores": {"exact": 1.0}}]
    check = learnt(EvaluateMetrics({"exact": 1.0}, None), None, rows, 0.5, None, "exact", CompareParams())
    assert check["status"] == "N/A" and check["evidence"] == "no train sample scored (evaluate.train_sample: 0)"


def test_report_renders_nested_trivial_references():
    evidence = evidence_record(primary="accuracy", best_strategy="few_shot")
    baseline = {"few_shot": {"accuracy": 0.5}, "best": {"strategy": "few_shot", "accuracy": 0.5},
                "trivial": {"majority_accuracy": 0.88, "tfidf_logreg": {"accuracy": 0.95, "macro_f1": 0.9}}}
    table = before_after_table(evidence, BaselineMetrics.from_json(baseline), EvaluateMetrics({"accuracy": 0.7}, None))
    assert "Trivial references: majority_accuracy 0.880; tfidf_logreg accuracy 0.950, macro_f1 0.900" in table


def evidence_record(**fields) -> Evidence:
    """An Evidence with only what a rendering test needs."""
    empty = dict(verdict="", reasons=[], next_steps=[], primary="", best_strategy="", checks={}, signals={},
                 versus={}, confidence=0.95)
    return Evidence(**{**empty, **fields})


def test_answer_copied_from_the_prompt_is_not_novel():
    test = [record(1, "Please greet Zyxa by name", "Hello Zyxa"), record(2, "What is the capital of Qor?", "Vexil")]
    train = [record(3, "Please greet Bob by name", "Hello Bob")]
    assert answer_novelty(test, train) == {"L000001": False, "L000002": True}


def test_an_answer_is_familiar_when_any_accepted_form_was_trained_on():
    jfk = {**record(1, "who was president in 1962", "JFK"), "references": ["JFK", "John F. Kennedy"]}
    kafka = {**record(2, "who wrote the trial", "Kafka"), "references": ["Kafka", "Franz Kafka"]}
    train = [record(3, "whose son was john jr", "John F. Kennedy Jr.")]
    assert answer_novelty([jfk, kafka], train) == {"L000001": False, "L000002": True}
    assert answer_novelty([{k: v for k, v in jfk.items() if k != "references"}], train) == {"L000001": True}


def test_an_answer_is_known_only_when_one_training_answer_holds_its_words_together():
    chandler = record(1, "who played chandler bing in friends", "Matthew Perry")
    scattered = [record(2, "who directed the matrix", "Lana Wachowski and Matthew Broderick"),
                 record(3, "who commanded the black ships", "Commodore Perry")]
    assert answer_novelty([chandler], scattered) == {"L000001": True}  # "matthew" and "perry" apart: no fact
    together = [*scattered, record(4, "who starred in the whole nine yards", "Matthew Perry and Bruce Willis")]
    assert answer_novelty([chandler], together) == {"L000001": False}


def test_triage_and_report_split_scores_by_novel_and_familiar_answers():
    from tuneproof.report import novelty_table
    from tuneproof.triage import triage

    novel = {"a": True, "b": True, "c": False}
    finetune = [{"id": i, "scores": {"lenient": s}} for i, s in (("a", 0.0), ("b", 1.0), ("c", 1.0))]
    prompted = [{"id": i, "scores": {"lenient": s}} for i, s in (("a", 0.0), ("b", 0.0), ("c", 1.0))]
    best = {"strategy": "retrieval", "lenient": 1 / 3}
    signals = triage(best, {"status": "FAIL"}, {"retrieval": {"lenient": 1 / 3}}, {"lenient": 2 / 3}, finetune,
                     novel, "lenient", CompareParams(), prompted_rows=prompted)
    assert (signals["novel_answers"], signals["familiar_answers"]) == (2, 1)
    assert (signals["finetune_on_novel"], signals["finetune_on_familiar"]) == (0.5, 1.0)
    assert (signals["prompted_on_novel"], signals["prompted_on_familiar"]) == (0.0, 1.0)
    assert signals["knowledge_gap"]  # novelty 2/3 and the fine-tune fails more on novel answers
    table = novelty_table(evidence_record(signals=signals, primary="lenient", best_strategy="retrieval"))
    assert "| fine-tune | 0.500 | 1.000 |" in table and "| retrieval (best prompted) | 0.000 | 1.000 |" in table


def test_different_test_sets_are_refused():
    from tuneproof.io import TuneproofError
    from tuneproof.paired import paired_primary
    a = [{"id": "a", "scores": {"m": 1.0}}]
    b = [{"id": "b", "scores": {"m": 1.0}}]
    with pytest.raises(TuneproofError, match="different test sets"):
        paired_primary(a, b, "m")


def test_format_gain_without_field_gain_is_flagged_as_format_not_content():
    from tuneproof.triage import triage

    best = {"strategy": "retrieval", "task_success": 0.3}
    prompted = {"retrieval": {"json_valid": 0.5, "intent_match": 0.8, "task_success": 0.3}}
    rows = [{"id": "a", "scores": {"task_success": 1.0}}]

    def signal(intent_match: float) -> bool | None:
        finetune = {"json_valid": 1.0, "intent_match": intent_match, "task_success": 0.3}
        return triage(best, {"status": "PASS"}, prompted, finetune, rows, {"a": False}, "task_success",
                      CompareParams())["format_not_content"]

    assert signal(0.8) is True     # valid JSON went up, the field scores did not
    assert signal(0.95) is False   # the fields improved too


@pytest.mark.parametrize("key,value,message", [
    ("confidence", 1.0, "compare.confidence is 1.0; use a level in [0.5, 1)"),
    ("bootstrap_resamples", 10, "compare.bootstrap_resamples is 10; use at least 1000"),
    ("min_test_records", 0, "compare.min_test_records is 0"),
    ("leakage", {"threshold": 1.5}, "compare.leakage.threshold is 1.5"),
    ("drift", {"max_auc": 0.4}, "compare.drift.max_auc is 0.4; use an AUC in [0.5, 1)"),
    ("drift", {"min_prompts": 3}, "compare.drift.min_prompts is 3; use at least compare.drift.folds"),
])
def test_compare_params_are_checked_with_their_key(project_dir, key, value, message):
    from params_file import set_params
    from stages import compare

    set_params(project_dir, compare={f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict)
               else {key: value})
    with pytest.raises(TuneproofError, match=message.replace("[", r"\[").replace(")", r"\)")):
        compare.main()


def test_a_repeated_test_id_is_refused_not_collapsed():
    from tuneproof.paired import aligned

    rows = [{"id": "L1", "scores": {"accuracy": 1.0}}, {"id": "L2", "scores": {"accuracy": 0.0}}]
    with pytest.raises(TuneproofError, match=r"fine-tune's rows repeat test ids \['L1'\]"):
        aligned([*rows, rows[0]], rows)
    assert [r["id"] for r in aligned(rows[::-1], rows)[0]] == ["L1", "L2"]


def test_a_fine_tune_that_fits_has_learnt_even_where_prompting_is_near_perfect():
    """sms_spam: retrieval 0.98, the fine-tune 1.00 on test and 0.94 on its train sample. Measured
    against the prompted bar it 'failed'; against the untrained model it plainly learnt."""
    evidence = scenario(format_task, 0.98, {"zero_shot": 0.10, "few_shot": 0.97, "retrieval": 0.96}, train_acc=0.94)
    learnt = evidence["checks"]["learnt"]
    assert learnt["status"] == "PASS" and learnt["bar"] == pytest.approx(0.15)
    assert evidence["verdict"] == PROMPT_SUFFICES, evidence["reasons"]


def test_report_says_how_each_side_was_tuned_on_validation():
    from tuneproof.report import selection_section

    baseline = {"selection": {"on": "val", "records": 32, "configs_tried": 3, "best": "retrieval",
                              "val": {"zero_shot": 0.2, "retrieval@2": 0.6, "retrieval@4": 0.9},
                              "k": {"zero_shot": None, "retrieval": 4}}}
    info = {"recipe": {"preset": "data", "why": "your data"}, "params": {"learning_rate": 5.3e-4, "balance": "sqrt"},
            "steps": 192, "best_step": 128, "selected_by": "eval_macro_f1", "best_val_score": 0.957}
    baseline, info = BaselineMetrics({}, {}, {}, baseline["selection"]), TrainInfo.from_json(info)
    text = selection_section(baseline, info)
    assert ("Prompted side: 3 configurations scored on 32 val records (zero_shot 0.200, retrieval@2 0.600, "
            "retrieval@4 0.900); chosen: `retrieval` (retrieval k=4)") in text
    assert "the `data` recipe (your data): lr 0.00053, 192 steps, balance sqrt" in text
    assert "step 128 was kept by eval_macro_f1 0.957 on val" in text
    assert "One configuration in this run" in text  # no sweep recorded (the shipped eval/sweep.json)
    sweep = {"selected_by": "eval_macro_f1", "winner": "lr-high", "winner_val_score": 0.957, "not_compared": [],
             "configurations": [{"name": "lr-high", "val_score": 0.957, "params": {}},
                                {"name": "lr-low", "val_score": 0.91, "params": {}}]}
    assert ("2 configurations compared on val by `tuneproof sweep-pick` (lr-high 0.957, lr-low 0.910); this run "
            "is the winner, `lr-high`.") in selection_section(baseline, info, sweep)
    stale = selection_section(baseline, dataclasses.replace(info, best_val_score=0.91), sweep)  # another run than the winner
    assert "One configuration counted: the sweep record of 2 configurations is not this run" in stale


def test_a_clear_win_over_prompting_below_a_tfidf_classifier_is_not_ship():
    """banking77: the fine-tune 0.70 clearly beat retrieval 0.55, and TF-IDF + LR scored 0.83."""
    test = sms_records(shuffled_labels(180, 120), 0)
    prompted = label_rows(test, wrong_every(2))                 # 0.50
    finetune = label_rows(test, wrong_every(5))                 # 0.80: a clear win over prompting
    tfidf = label_rows(test, wrong_every(25))                   # 0.96
    train_sample = label_rows(sms_records(shuffled_labels(30, 20), 20_000), wrong_every(6))  # no overfitting gap
    evidence = sms_verdict(test, prompted, finetune, train_sample=train_sample, references={"tfidf_logreg": tfidf})
    assert evidence["checks"]["significance"]["status"] == "PASS"
    assert evidence["verdict"] == NO_SKILL, evidence["reasons"]
    assert evidence["reasons"][0].startswith("the fine-tune beats prompting but not tfidf_logreg (0.800 vs 0.960)")
    without = sms_verdict(test, prompted, finetune, train_sample=train_sample)
    assert without["verdict"] == SHIP, without["reasons"]  # the same win, no better trivial reference: it ships


def test_sample_differences_show_every_accepted_answer():
    from tuneproof.report import sample_differences

    ft = [{"id": "a", "prediction": "six geese", "reference": "6 geese", "references": ["6 geese", "six geese"],
           "scores": {"lenient": 1.0}}]
    prompted = [{**ft[0], "prediction": "ten lords", "scores": {"lenient": 0.0}}]
    text = sample_differences(prompted, ft, "lenient")
    assert "- reference: `6 geese` (also accepted: `six geese`)" in text


# ------------------------------------------------------------------ rows made by the real scorer

def scored_by_the_scorer(scorer, records: list[dict], answer) -> list[dict]:
    """A system's rows as baseline and evaluate write them: Scorer.row on its free-text answers;
    answer(i, true label) -> the text the system generated."""
    return [scorer.row(r, answer(i, r["completion"])) for i, r in enumerate(records)]


def test_verdict_on_rows_from_the_real_scorer():
    """Free-text prompted answers ("This looks like spam.", "not sure") and bare fine-tune labels,
    scored by tuneproof.scoring as the stages score them: label extraction, the no-label marker
    and macro-F1 reach the checks unchanged."""
    from tuneproof.scoring import NO_LABEL, ScoreParams, build_scorer

    rng = random.Random(0)
    words = "win prize call now meet lunch mum bus free claim txt home late sorry cash offer".split()

    def sms(offset: int, n: int) -> list[dict]:
        return [record(offset + i, " ".join(rng.choice(words) for _ in range(8)) + f" #{offset + i}",
                       "spam" if rng.random() < 0.3 else "ham") for i in range(n)]

    train, test, sample = sms(0, 400), sms(1000, 200), sms(5000, 40)
    scorer = build_scorer(ScoreParams(kind="label", primary="macro_f1", fields=[], style={}), "completion", [*train, *test])
    prompted = scored_by_the_scorer(scorer, test, lambda i, label: (
        "not sure" if i % 7 == 0 else f"This looks like {flip(label) if i % 4 == 0 else label}."))
    skilled = scored_by_the_scorer(scorer, test, lambda i, label: flip(label) if i % 40 == 0 else label)
    collapsed = scored_by_the_scorer(scorer, test, lambda i, label: "ham")
    assert {r["predicted_label"] for r in prompted} == {"ham", "spam", NO_LABEL}
    majority = Counter(r["completion"] for r in train).most_common(1)[0][0]

    def verdict(finetune: list[dict], sample_answer) -> dict:
        sample_rows = scored_by_the_scorer(scorer, sample, sample_answer)
        baseline = {"few_shot": scorer.aggregate(prompted)}
        baseline["best"] = {"strategy": "few_shot", **baseline["few_shot"]}
        baseline["trivial"] = {"n_test": len(test), "majority_label": majority}
        inputs = CompareInputs(
            baseline_rows={"few_shot": prompted}, baseline=BaselineMetrics.from_json(baseline), finetune_rows=finetune,
            evaluate=EvaluateMetrics(scorer.aggregate(finetune), scorer.aggregate(sample_rows)), test=test,
            train=train, train_sha256="sha", audit={"pass": True, "prompt": {"max": 0.3}},
            train_info=TrainInfo(train_sha256="sha"), probe=probe_result(), train_sample_rows=sample_rows)
        return evaluate_evidence(inputs, "macro_f1", CompareParams(bootstrap_resamples=2000)).to_json()

    shipped = verdict(skilled, lambda i, label: label)
    assert shipped["verdict"] == SHIP, shipped["reasons"]
    assert {name: shipped["checks"][name]["status"] for name in ("significance", "learnt", "majority_label",
                                                                 "beats_trivial")} == {name: "PASS" for name in (
        "significance", "learnt", "majority_label", "beats_trivial")}
    assert shipped["checks"]["significance"]["baseline"] == scorer.aggregate(prompted)["macro_f1"]
    failed = verdict(collapsed, lambda i, label: "ham")  # answers 'ham' to everything, train sample included
    assert failed["verdict"] == FINETUNE_FAILED, failed["reasons"]
    assert failed["checks"]["learnt"]["most_frequent"] == "ham" and failed["checks"]["majority_label"]["status"] == "FAIL"


def test_compare_defaults_are_params_yaml():
    """params.yaml is the one source of compare's knobs: the dataclass defaults equal it."""
    from pathlib import Path

    from tuneproof.params import load_section

    assert load_section(CompareParams, "compare", Path(__file__).parents[1] / "params.yaml") == CompareParams()
