"""The drift check (tuneproof/drift.py): does the test set look like a sample of production prompts?

Unit tests on the domain classifier, the overlap audit and the input errors, and compare run end
to end in process on a scenario that would otherwise SHIP: production drawn from another domain
(SMS-like texts vs support tickets) blocks SHIP and names the terms; production drawn from the
test set's own pool passes.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import yaml

from demo.support_tickets import demo_records
from tuneproof.drift import DriftParams, domain_score, drift_check, load_production, production_overlap
from tuneproof.io import TuneproofError, write_json, write_jsonl
from tuneproof.records import load_prompts

from scenarios import record, scenario_inputs

SMS_WORDS = ["hey", "r u", "coming", "2nite", "lol", "txt me", "call", "free", "prize", "ur", "mum", "c u", "l8r",
             "ok", "gr8", "pub", "bus", "wat", "doin", "luv", "xx", "WIN", "claim now", "reply STOP"]
AUDIT = {"pass": True, "prompt": {"max": 0.4, "threshold": 0.8}, "ngram": 5}


def ticket_pool(n: int, seed: int = 1) -> list[dict]:
    """n distinct demo tickets (no planted copies) as canonical records: one pool to draw from."""
    tickets, _ = demo_records(seed=seed, n_unique=n, n_exact=0, n_near=0, n_conflict=0)
    return [record(i, t["prompt"], t["completion"]) for i, t in enumerate(tickets)]


def sms(n: int, seed: int = 0) -> list[dict]:
    """SMS-like texts: another domain than support tickets."""
    rng = random.Random(seed)
    return [{"id": f"S{i:06d}", "messages": [{"role": "user", "content": " ".join(
        rng.choice(SMS_WORDS) for _ in range(rng.randint(4, 12)))}]} for i in range(n)]


def prompts_only(records: list[dict]) -> list[dict]:
    return [{"prompt": r["messages"][0]["content"]} for r in records]


@pytest.fixture(scope="module")
def pool() -> list[dict]:
    return ticket_pool(700)


def score(test, production, **params):
    return domain_score(test, production, DriftParams(**params), 2000, 0.95, 0)


def test_a_sample_from_the_test_pool_is_indistinguishable_and_passes(pool):
    result = score(pool[:200], pool[200:400])
    # one draw: its AUC is near 0.5 and its CI far below the bar (bench/drift.py: the draw-to-draw
    # spread under no drift is sd 0.04 at 150 vs 150); the end-to-end test below checks it covers 0.5
    assert abs(result.auc - 0.5) < 0.1 and result.ci_high < DriftParams().max_auc
    check = drift_check(result, DriftParams(), 0.95)
    assert check["status"] == "PASS", check["evidence"]
    assert score(pool[:200], pool[200:400]) == result  # seeded: the same numbers on a re-run


def test_another_domain_fails_and_names_the_terms_that_separate_it(pool):
    result = score(pool[:200], sms(150))
    assert result.ci_low > 0.95
    check = drift_check(result, DriftParams(), 0.95)
    assert check["status"] == "FAIL"
    production_terms = {t["term"] for t in result.terms["production"]}
    assert production_terms & {"ur", "lol", "txt", "gr8", "pub", "mum"}
    assert all(t["production_share"] > t["test_share"] for t in result.terms["production"])
    assert all(t["test_share"] > t["production_share"] for t in result.terms["test"])
    assert "'" + result.terms["production"][0]["term"] + "'" in check["evidence"]
    # the production prompts least like any test prompt are SMS texts, with their ids
    assert len(result.unlike) == 5 and all(u["id"].startswith("S") and u["similarity"] < 0.2 for u in result.unlike)


def test_a_small_sample_whose_ci_straddles_the_bar_is_inconclusive_not_a_pass(pool):
    mixed = pool[200:212] + sms(12)  # half another domain: AUC well above 0.5, CI wide
    result = score(pool[:30], mixed)
    check = drift_check(result, DriftParams(max_auc=result.auc), 0.95)
    assert result.ci_low < result.auc < result.ci_high and check["status"] == "WARN"


def test_no_sample_is_not_run_never_pass(project_dir):
    assert load_production(None) is None
    default = yaml.safe_load((project_dir / "params.yaml").read_text())["paths"]["production"]
    (project_dir / default).mkdir(parents=True)
    (project_dir / default / "README.md").write_text("how to fill this folder")  # as committed: no *.jsonl
    assert load_production(default) is None
    check = drift_check(None, DriftParams(), 0.95)
    assert check["status"] == "N/A" and check["evidence"].startswith("not run")
    assert production_overlap(None, [], AUDIT)["status"] == "N/A"


def test_bad_production_input_is_named_with_its_file_line_or_key(project_dir, pool):
    with pytest.raises(TuneproofError, match=r"paths.production: 'nowhere.jsonl' not found"):
        load_production("nowhere.jsonl")
    path = project_dir / "prod.jsonl"
    path.write_text('{"prompt": "hello"}\n{"prompt": "cut sh\n')
    with pytest.raises(TuneproofError, match=r"prod.jsonl:2: invalid JSON"):
        load_production(str(path))
    path.write_text('{"prompt": "hello"}\n\n{"text": "no prompt"}\n')
    with pytest.raises(TuneproofError, match=r"prod.jsonl:3: expected .*found keys text"):
        load_production(str(path))
    path.write_text('{"messages": [{"role": "user", "content": ""}]}\n')
    with pytest.raises(TuneproofError, match=r"prod.jsonl:1: messages\[0\].content is empty"):
        load_production(str(path))
    with pytest.raises(TuneproofError, match=r"holds 7 prompt\(s\), fewer than compare.drift.min_prompts \(20\)"):
        score(pool[:50], pool[50:57])


def test_prompts_load_from_either_format_with_their_line_as_id(project_dir):
    folder = project_dir / "production"
    folder.mkdir()
    (folder / "b.jsonl").write_text('{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}]}\n')
    (folder / "a.jsonl").write_text('{"prompt": "p1", "completion": "ignored"}\n\n{"prompt": "p2"}\n')
    (folder / "notes.txt").write_text("not read")
    records = load_production("production")
    assert [r["id"] for r in records] == ["production/a.jsonl:1", "production/a.jsonl:3", "production/b.jsonl:1"]
    assert records[2]["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}]
    assert load_prompts(folder / "a.jsonl", "")[1]["messages"] == [{"role": "user", "content": "p2"}]


def test_production_prompts_copying_train_are_listed_by_the_split_audits_measure(pool):
    train, production = pool[:100], pool[300:340]
    copied = {**production[3], "messages": [{"role": "user", "content": train[5]["messages"][0]["content"].upper() + "!!"}]}
    check = production_overlap([*production, copied], train, AUDIT)
    assert check["status"] == "WARN" and check["copies"] == 1
    assert check["pairs"][0]["train_id"] == train[5]["id"] and f"~ train {train[5]['id']}" in check["evidence"]
    assert production_overlap(production, train, AUDIT)["status"] == "PASS"
    with pytest.raises(TuneproofError, match="audit.json.*re-run it"):
        production_overlap(production, train, {"pass": True})


# --- compare end to end (in process) -----------------------------------------------------------

def write_compare_inputs(project_dir, inputs: dict, production: list[dict] | None) -> None:
    """The files compare reads, from a scenario's inputs (test_compare.scenario_inputs; paths of params.yaml)."""
    params = yaml.safe_load((project_dir / "params.yaml").read_text())
    paths = params["paths"]
    write_jsonl(project_dir / paths["raw"], [{"prompt": "x", "completion": "y"}])
    split = project_dir / paths["split"]
    for name, rows in (("train", inputs["train"]), ("val", inputs["train"][:10]), ("test", inputs["test"])):
        write_jsonl(split / f"{name}.jsonl", rows)
    write_json(split / "audit.json", inputs["audit"])
    for name, rows in inputs["baseline_rows"].items():
        write_jsonl(project_dir / paths["baseline"] / f"{name}.jsonl", rows)
    write_jsonl(project_dir / paths["evaluate"] / "test.jsonl", inputs["finetune_rows"])
    metrics = project_dir / paths["metrics"]
    for stage, data in (("baseline", inputs["baseline_metrics"]), ("evaluate", inputs["evaluate_metrics"]),
                        ("train", inputs["train_metrics"]), ("probe", inputs["probe"])):
        write_json(metrics / f"{stage}.json", data)
    write_json(project_dir / paths["adapter"] / "adapter_config.json", {})
    (project_dir / paths["production"]).mkdir(parents=True)  # committed in the repo, empty: the check is not run
    if production is not None:
        write_jsonl(project_dir / paths["production"] / "sample.jsonl", prompts_only(production))


def tickets_from(pool: list[dict]):
    """A scenario's `make`: the next records of one pool of distinct tickets."""
    rest = iter(pool)
    return lambda n, offset, rng: [{**next(rest), "id": f"L{offset + i:06d}"} for i in range(n)]


@pytest.mark.parametrize("domain", ["sms", "same pool", None])
def test_compare_blocks_ship_when_test_does_not_look_like_production(project_dir, pool, domain):
    from stages import compare

    inputs = scenario_inputs(tickets_from(pool), 0.92, {"zero_shot": 0.05, "few_shot": 0.30, "retrieval": 0.35})
    production = {"sms": sms(150), "same pool": pool[500:650], None: None}[domain]
    write_compare_inputs(project_dir, inputs, production)
    compare.main()

    result = json.loads((project_dir / "metrics" / "compare.json").read_text())
    report = (project_dir / "reports" / "report.md").read_text()
    evidence = json.loads((project_dir / "reports" / "evidence.json").read_text())
    if domain == "sms":
        assert result["checks"]["drift"] == "FAIL" and result["drift"]["ci_low"] > 0.7
        assert result["verdict"] == "DON'T SHIP"
        assert "Sample the test set from production" in report and "| toward production | toward test |" in report
        assert {t["term"] for t in evidence["checks"]["drift"]["terms"]["production"]} & {"ur", "lol", "gr8"}
    elif domain == "same pool":
        assert result["checks"]["drift"] == "PASS" and result["drift"]["ci_low"] < 0.5 < result["drift"]["ci_high"]
        assert result["checks"]["production_overlap"] == "PASS" and result["drift"]["production_overlap"] == 0
        assert result["verdict"] == "SHIP"
    else:  # the default: an empty production folder
        assert result["checks"]["drift"] == "N/A" and "drift" not in result and result["verdict"] == "SHIP"
        assert "not run: no production sample" in report
    assert report.splitlines()[0] == f"# tuneproof verdict: {result['verdict']}"
    print(domain, result.get("drift"))
