"""The README's "Bring your own data and model" walkthrough, followed literally on a fresh copy of
the project with data the project did not ship (news headline -> topic label, not the demo's JSON
triage) and a tiny local Hugging Face model directory:

    dvc add data/raw/<file>.jsonl; edit params.yaml; dvc repro base_model;
    tuneproof check-data data/raw/<file>.jsonl; dvc repro; read reports/report.md

Every command runs as a subprocess with the venv's bin/ first on PATH (as `source .venv/bin/activate`
does). About 1 minute on 2 CPU cores: the tiny model makes each model stage a few seconds.
"""

from __future__ import annotations

import json
import re

from tuneproof.io import read_jsonl, write_jsonl

from params_file import set_dotted
from readme_project import RAW, ROOT, fresh_copy, headline_records, run, walkthrough_params

README_RAW = "data/raw/mine.jsonl"  # the README's name for the user's file
LABELS = {"sports", "weather", "finance"}
METRICS_STAGES = ("dedup", "split", "baseline", "train", "evaluate", "probe", "compare")

# Not in the walkthrough (the train knobs stay at auto there): keep training, validation and the
# train-sample evaluation tiny so the test is fast.
TINY = {"train.max_steps": 2, "train.learning_rate": 1.0e-3, "train.eval_steps": 1, "train.val_records": 4,
        "evaluate.train_sample": 4, "baseline.val_records": 4}


def readme_walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Bring your own data and model\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Bring your own data and model' section"
    return match.group(1)


def test_readme_names_every_key_and_command_the_walkthrough_uses(tmp_path):
    section = readme_walkthrough()
    for dotted in walkthrough_params(tmp_path):
        assert f"`{dotted}" in section, f"the walkthrough never mentions {dotted}"
    for command in (f"dvc add {README_RAW}", "dvc repro base_model", f"tuneproof check-data {README_RAW}",
                    "reports/report.md", "dvc exp run -S", "dvc exp show"):
        assert command in section, f"the walkthrough never shows `{command}`"
    assert re.search(r"^\s*dvc repro\s*$", section, re.M), "the walkthrough never runs the whole pipeline"


def test_byo_walkthrough_runs_end_to_end_on_a_fresh_copy(tmp_path, tiny_model_dir):
    repo = fresh_copy(tmp_path / "clone")
    if not (repo / ".dvc").is_dir():  # as `make repro` does for a checkout without DVC
        assert run(["dvc", "init", "-q"], repo).returncode == 0

    # 1. The data: a JSONL the project did not ship, tracked with DVC.
    records = headline_records()
    assert 80 <= len(records) <= 120
    write_jsonl(repo / RAW, records)
    added = run(["dvc", "add", RAW], repo)
    assert added.returncode == 0, added.stderr
    staged = run(["git", "add", f"{RAW}.dvc", "data/raw/.gitignore"], repo)
    assert staged.returncode == 0, staged.stderr

    # 2. params.yaml: data, model, task, scorer, training knobs.
    set_dotted(repo / "params.yaml", {**walkthrough_params(tiny_model_dir), **TINY})

    # 3. Materialise the model, then check the file against its tokenizer before anything trains.
    base = run(["dvc", "repro", "base_model"], repo)
    assert base.returncode == 0, base.stdout + base.stderr
    check = run(["tuneproof", "check-data", RAW], repo)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{RAW}: {len(records)} records, format prompt_completion" in check.stdout
    assert "labels (task.label_field = completion): 3 classes" in check.stdout
    assert "over-long: none" in check.stdout

    # ... and a broken copy is rejected with its line number, before any model is loaded.
    broken = [json.dumps(r) for r in records]
    broken[6] = broken[6][:-1]  # line 7: truncated JSON
    (repo / "data/raw/broken.jsonl").write_text("\n".join(broken) + "\n")
    rejected = run(["tuneproof", "check-data", "data/raw/broken.jsonl"], repo)
    assert rejected.returncode == 2
    assert "error: data/raw/broken.jsonl:7: invalid JSON" in rejected.stderr
    missing = [json.dumps(r) for r in records]
    missing[11] = json.dumps({"prompt": records[11]["prompt"]})  # line 12: no completion
    (repo / "data/raw/broken.jsonl").write_text("\n".join(missing) + "\n")
    rejected = run(["tuneproof", "check-data", "data/raw/broken.jsonl"], repo)
    assert rejected.returncode == 2
    assert "data/raw/broken.jsonl:12: missing field 'completion'" in rejected.stderr
    (repo / "data/raw/broken.jsonl").unlink()

    # 4. The whole pipeline, then the verdict.
    repro = run(["dvc", "repro"], repo)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    for stage in METRICS_STAGES:  # every stage after base_model ran and wrote its metrics
        assert f"Running stage '{stage}'" in repro.stdout
        assert json.loads((repo / "metrics" / f"{stage}.json").read_text()), f"metrics/{stage}.json is empty"

    dedup = json.loads((repo / "metrics/dedup.json").read_text())
    assert dedup["records_in"] == len(records)
    assert dedup["exact_dropped"] >= 3 and dedup["near_dropped"] >= 1  # the planted copies
    assert "truth" not in dedup  # dedup.truth: null
    split_labels = {name: {r["completion"] for r in read_jsonl(repo / f"data/split/{name}.jsonl")}
                    for name in ("train", "val", "test")}
    assert split_labels["train"] == LABELS
    assert set().union(*split_labels.values()) == LABELS
    baseline = json.loads((repo / "metrics/baseline.json").read_text())
    assert "rank" in baseline  # rank classification: runs for label tasks only
    assert "accuracy" in baseline["best"]
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert set(evaluate["finetune"]) >= {"accuracy", "macro_f1"}
    assert (repo / "models/adapter/adapter_model.safetensors").is_file()

    report = (repo / "reports/report.md").read_text()
    compare = json.loads((repo / "metrics/compare.json").read_text())
    verdict = compare["verdict"]
    # ~100 records leave ~6 for test (split.test_ratio 0.06): under compare.min_test_records, so no
    # verdict can be earned, and the report says how many records would be needed. Deterministic:
    # only the leakage check comes before evidence (tuneproof/verdict.py), and both depend on the
    # split alone, never on the training trajectory.
    assert verdict == "INSUFFICIENT EVIDENCE" and compare["n_needed"] >= 30
    assert "split: WARNING: test has only" in repro.stderr
    assert report.splitlines()[0] == f"# tuneproof verdict: {verdict}"
    assert f"verdict: {verdict}" in repro.stdout
    # What ships: the adapter exactly as trained, with the model card (HF front matter) as README.md.
    release = repo / "models" / "release"
    adapter = repo / "models" / "adapter"
    assert (release / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    card = (release / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and f"tuneproof verdict: {verdict}" in card
    assert "## Dataset version" in card and "sha256" in card
