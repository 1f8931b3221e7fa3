"""The bad-input corpus (issue 13): data, params, file system and faults against the cheap stages
(dedup, split, compare) and the CLI (check-data, pr-report), one table row per case.

Each row runs in a copy of a project where every cheap stage has already run (so old outputs
exist) and asserts: the exit status (2 for bad input, as `run_main` maps it; a fault's error
type), that the message names the file:line or the params key, that no temp folder is left,
that the stage's declared outputs are intact, and that nothing else in the project changed
(a tree hash that excludes only the declared outputs)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import tuneproof.io as io
from tuneproof.cli import main as cli_main
from tuneproof.cli_util import run_main
from tuneproof.io import TMP_MARK

import cheap_project as cp
from conftest import ROOT, git_init
from bad_lines import BAD_INPUTS, GOOD_PC

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    run: str             # a stage name, or "cli" (then `argv`)
    setup: Setup         # makes the input bad
    message: str         # regex the error line must match: it names the file:line or the params key
    code: int = 2        # exit status; 0 for input that is accepted with a warning
    argv: tuple = ()


def params(section: str, **changes) -> Setup:
    return lambda root: cp.set_params(root, **{section: changes})


def path_param(key: str, value) -> Setup:
    return params("paths", **{key: value})


def write(rel: str, content: bytes | str) -> Setup:
    def setup(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return setup


def truncate(rel: str, keep: float = 0.5) -> Setup:
    """Cut a file short in the middle of a line, as a full disk or a killed writer would."""
    def setup(root: Path) -> None:
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[: int(len(data) * keep)])
    return setup


def remove(rel: str) -> Setup:
    def setup(root: Path) -> None:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def edit_jsonl(rel: str, change: Callable[[list[dict]], list[dict]]) -> Setup:
    def setup(root: Path) -> None:
        rows = [json.loads(line) for line in (root / rel).read_text().splitlines() if line.strip()]
        (root / rel).write_text("".join(json.dumps(r) + "\n" for r in change(rows)))
    return setup


def edit_json(rel: str, change: Callable[[dict], None]) -> Setup:
    def setup(root: Path) -> None:
        data = json.loads((root / rel).read_text())
        change(data)
        (root / rel).write_text(json.dumps(data))
    return setup


def symlink_out(key: str) -> Setup:
    """paths.<key> under a link that points out of the project."""
    def setup(root: Path) -> None:
        outside = root.parent / f"{root.name}-outside"
        outside.mkdir(exist_ok=True)
        os.symlink(outside, root / "link")
        cp.set_params(root, paths={key: f"link/{key}"})
    return setup


def both(*setups: Setup) -> Setup:
    def setup(root: Path) -> None:
        for s in setups:
            s(root)
    return setup


def lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in rows)


def raw_at(rel: str = cp.RAW) -> str:
    return re.escape(rel)


# ------------------------------------------------------------------ data: the raw JSONL
PC = json.dumps({"prompt": "Where is my parcel, it is late again", "completion": '{"intent": "shipping_delay"}'})
HUGE = "x" * 3_000_000
DATA = [(name, lines(*rows), line_no, message) for name, rows, line_no, message in BAD_INPUTS] + [
    ("utf16_file", "\ufeff".encode("utf-16-le") + lines(GOOD_PC).decode().encode("utf-16-le"), 1, "not valid UTF-8"),
    ("bom_mid_file", lines(GOOD_PC, "\ufeff" + GOOD_PC), 2, "invalid JSON"),
    ("huge_broken_line", lines(GOOD_PC, '{"prompt": "' + HUGE), 2, "invalid JSON"),
    ("trailing_comma", lines('{"prompt": "a", "completion": "b",}'), 1, "invalid JSON"),
    ("nan_prompt", lines('{"prompt": NaN, "completion": "b"}'), 1, "'prompt' must be a string, got float"),
    ("prompt_null", lines(json.dumps({"prompt": None, "completion": "b"})), 1, "'prompt' must be a string, got NoneType"),
    ("completion_object", lines(json.dumps({"prompt": "a", "completion": {"intent": "x"}})), 1,
     "'completion' must be a string, got dict"),
    ("missing_prompt", lines(json.dumps({"completion": "b"})), 1, "missing field 'prompt'"),
    ("number_line", lines(GOOD_PC, "42"), 2, "expected a JSON object, got int"),
    ("string_line", lines('"a prompt"'), 1, "expected a JSON object, got str"),
    ("message_missing_role", lines(json.dumps({"messages": [{"content": "a"}, {"role": "assistant", "content": "b"}]})),
     1, r"messages\[0\] is missing 'role'"),
    ("assistant_content_empty", lines(json.dumps({"messages": [{"role": "user", "content": "a"},
                                                               {"role": "assistant", "content": " "}]})),
     1, r"messages\[1\]\.content is empty"),
    ("bad_line_after_many_good", lines(*[PC] * 40, "{oops"), 41, "invalid JSON"),
]
EMPTY = [("empty_file", b"", "no records"), ("blank_lines_only", b"\n \n\n", "no records")]


def data_cases() -> list[Case]:
    cases = []
    for name, content, line_no, message in DATA:
        expect = rf"{raw_at()}:{line_no}: .*{message}"
        cases.append(Case(f"data-dedup-{name}", "dedup", write(cp.RAW, content), expect))
        cases.append(Case(f"data-check-{name}", "cli", write(cp.RAW, content), expect, argv=("check-data", cp.RAW)))
    for name, content, message in EMPTY:
        cases.append(Case(f"data-dedup-{name}", "dedup", write(cp.RAW, content), rf"{raw_at()}: {message}"))
        cases.append(Case(f"data-check-{name}", "cli", write(cp.RAW, content), rf"{raw_at()}: {message}",
                          argv=("check-data", cp.RAW)))
    cases += [
        Case("data-dedup-raw-missing", "dedup", remove(cp.RAW), rf"{raw_at()}: file not found; set paths.raw"),
        Case("data-check-missing", "cli", lambda root: None, r"nope\.jsonl: file not found", argv=("check-data", "nope.jsonl")),
        Case("data-dedup-raw-is-a-folder", "dedup", path_param("raw", "data/raw"), r"data/raw: file not found; set paths.raw"),
        # accepted, but said out loud
        Case("data-dedup-case-variant-labels", "dedup",
             edit_jsonl(cp.RAW, lambda rows: [*rows, {**rows[0], "prompt": "A brand new question about refunds",
                                                      "completion": rows[0]["completion"].replace("billing_refund", "Billing_Refund")}]),
             r"dedup: WARNING: labels 'Billing_Refund' / 'billing_refund' differ only in case", code=0),
        Case("data-dedup-truth-not-found", "dedup", params("dedup", truth="data/raw/none.json"),
             r"dedup\.truth: data/raw/none\.json not found"),
        Case("data-dedup-truth-cut-short", "dedup", both(write("data/raw/truth.json", '{"raw_sha256": "ab'),
                                                         params("dedup", truth="data/raw/truth.json")),
             r"data/raw/truth\.json:1: not valid JSON"),
    ]
    return cases


# ------------------------------------------------------------------ split's input: a stage output
SPLIT_IN = "data/dedup/records.jsonl"
SPLIT_DATA = [
    Case("split-input-missing", "split", remove(SPLIT_IN), rf"{SPLIT_IN}: not found; run the dedup stage first"),
    Case("split-input-cut-short", "split", truncate(SPLIT_IN), rf"{SPLIT_IN}:\d+: not valid JSON"),
    Case("split-input-empty", "split", write(SPLIT_IN, ""), rf"{SPLIT_IN}: no records"),
    Case("split-input-garbage-line", "split", write(SPLIT_IN, lines('{"id": "L1"')),
         rf"{SPLIT_IN}:1: not valid JSON"),
    Case("split-input-duplicate-id", "split", edit_jsonl(SPLIT_IN, lambda rows: [*rows, rows[0]]),
         rf"{SPLIT_IN}:\d+: id 'L\d+' repeats line 1"),
    Case("split-input-record-without-messages", "split",
         edit_jsonl(SPLIT_IN, lambda rows: [{k: v for k, v in r.items() if k != "messages"} if i == 3 else r
                                            for i, r in enumerate(rows)]),
         rf"{SPLIT_IN}:4: 'messages' must be a list"),
    Case("split-input-completion-not-text", "split",
         edit_jsonl(SPLIT_IN, lambda rows: [{**r, "completion": 5} if i == 2 else r for i, r in enumerate(rows)]),
         rf"{SPLIT_IN}:3: 'completion' must be a string"),
    Case("split-label-field-in-no-record", "split", params("task", label_field="category"),
         r"task\.label_field: 'category' is in no record"),
]


# ------------------------------------------------------------------ params
def range_cases(stage: str, rows: list[tuple]) -> list[Case]:
    """(key, value, message) rows; the message must name `<stage>.<key>`."""
    return [Case(f"params-{stage}-{key}={value!r}", stage, params(stage, **{key: value}),
                 rf"{re.escape(stage)}\.{re.escape(key)}.*{message}") for key, value, message in rows]


DEDUP_PARAMS = range_cases("dedup", [
    ("threshold", 0.0, r"is 0\.0; use a Jaccard similarity in \(0, 1\]"),
    ("threshold", -0.2, "is -0.2"),
    ("threshold", 1.5, "is 1.5"),
    ("threshold", "high", "expected a number"),
    ("threshold", True, "expected a number"),
    ("shingle_size", 0, "positive number of words"),
    ("shingle_size", -3, "positive number of words"),
    ("shingle_size", 2.5, "expected an integer"),
    ("shingle_size", "3", "expected an integer"),
    ("num_perm", 1, "at least 2 permutations"),
    ("num_perm", 0, "at least 2 permutations"),
    ("num_perm", None, "expected an integer"),
    ("seed", -1, "a seed of 0 or more"),
    ("seed", 1.5, "expected an integer"),
    ("conflicts", "maybe", "is not one of 'drop_all', 'keep_first'"),
    ("conflicts", 3, "is not one of"),
    ("truth", 7, "expected str"),
    ("treshold", 0.7, "unknown key; known keys are"),
])
SPLIT_PARAMS = range_cases("split", [
    ("val_ratio", 0.0, "strictly between 0 and 1"),
    ("val_ratio", 1.0, "strictly between 0 and 1"),
    ("val_ratio", -0.1, "strictly between 0 and 1"),
    ("val_ratio", "ten percent", "expected a number"),
    ("test_ratio", 0.0, "strictly between 0 and 1"),
    ("test_ratio", 1.2, "strictly between 0 and 1"),
    ("test_ratio", 0.9, "is 1.05; use ratios that leave a share for train"),  # with val_ratio 0.15: nothing left for train
    ("group_threshold", 0.0, r"Jaccard similarity in \(0, 1\]"),
    ("group_threshold", 1.5, r"Jaccard similarity in \(0, 1\]"),
    ("group_measure", "cosine", "is not one of 'shingles', 'tfidf'"),
    ("audit_threshold", 0.0, r"\(0, 1\]"),
    ("audit_threshold", 2, r"\(0, 1\]"),
    ("audit_completion_threshold", 0.0, r"\(0, 1\]"),
    ("audit_completion_threshold", 1.1, r"\(0, 1\]"),
    ("audit_completion_threshold", "off", "expected a number"),
    ("shingle_size", 0, "positive integer"),
    ("num_perm", 0, "positive integer"),
    ("audit_ngram", 0, "positive integer"),
    ("audit_top", 0, "positive integer"),
    ("seed", 0.5, "expected an integer"),
    ("audit_treshold", 0.8, "unknown key"),
])
COMPARE_PARAMS = range_cases("compare", [
    ("min_gain", -0.1, r"a gain in \[0, 1\)"),
    ("min_gain", 1.0, r"a gain in \[0, 1\)"),
    ("target", 0.0, r"a score in \(0, 1\]"),
    ("target", 1.5, r"a score in \(0, 1\]"),
    ("bootstrap_resamples", 10, "at least 1000 resamples"),
    ("bootstrap_resamples", "many", "expected an integer"),
    ("confidence", 0.4, r"a level in \[0\.5, 1\)"),
    ("confidence", 1.0, r"a level in \[0\.5, 1\)"),
    ("min_test_records", 0, "1 or more"),
    ("max_collapse_excess", -0.1, r"a share in \[0, 1\]"),
    ("max_collapse_excess", 2, r"a share in \[0, 1\]"),
    ("leakage.threshold", 0.0, r"Jaccard similarity in \(0, 1\]"),
    ("leakage.threshold", 1.5, r"Jaccard similarity in \(0, 1\]"),
    ("leakage.shingle_size", 0, "1 or more words"),
    ("leakage.num_perm", 1, "at least 2 permutations"),
    ("forgetting.max_loss_increase", -1, "0 or more"),
    ("forgetting.max_kl", -0.5, "0 or more nats"),
    ("forgetting.max_instruction_drop", 2, r"a share in \[0, 1\]"),
    ("overfitting.max_train_test_gap", -0.5, r"a share in \[0, 1\]"),
    ("overfitting.max_val_rise", -1, "0 or more"),
    ("knowledge.novelty_threshold", 1.5, r"a share in \[0, 1\]"),
    ("seed", "zero", "expected an integer"),
    ("min_gian", 0.05, "unknown key"),
    ("leakage.treshold", 0.8, "unknown key"),
    ("leakage", 0.8, "expected a mapping"),
])


# ------------------------------------------------------------------ paths: outputs that are not the stage's own
def tracked_folder(root: Path) -> None:
    """notes/, a folder of the user's, tracked by git."""
    (root / "notes").mkdir()
    (root / "notes" / "todo.md").write_text("keep me\n")
    subprocess.run(["git", "add", "notes"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notes"], cwd=root, check=True)


def path_cases(stage: str, key: str) -> list[Case]:
    k = re.escape(f"paths.{key}")
    return [
        Case(f"paths-{stage}-{key}-dot", stage, path_param(key, "."), rf"{k}: '\.' is the project folder"),
        Case(f"paths-{stage}-{key}-dotdot", stage, path_param(key, ".."), rf"{k}: '\.\.' is the project folder"),
        Case(f"paths-{stage}-{key}-root", stage, path_param(key, "/"), rf"{k}: '/' is the project folder"),
        Case(f"paths-{stage}-{key}-empty", stage, path_param(key, ""), rf"{k}: empty path"),
        Case(f"paths-{stage}-{key}-outside", stage, path_param(key, "../../outside"), rf"{k}: .*outside the project"),
        Case(f"paths-{stage}-{key}-in-git", stage, path_param(key, ".git/out"), rf"{k}: .*inside \.git or \.dvc"),
        Case(f"paths-{stage}-{key}-symlink-out", stage, symlink_out(key), rf"{k}: .*outside the project"),
        Case(f"paths-{stage}-{key}-is-the-raw-file", stage, path_param(key, cp.RAW), rf"{k}: .*is also paths\.raw"),
        Case(f"paths-{stage}-{key}-is-a-file", stage, both(tracked_folder, path_param(key, "notes/todo.md")),
             rf"{k}: 'notes/todo\.md' is a file"),
        Case(f"paths-{stage}-{key}-not-a-string", stage, path_param(key, ["data"]), rf"{k}: expected str"),
    ]


PATHS = (path_cases("dedup", "dedup") + path_cases("dedup", "metrics") + path_cases("split", "split")
         + path_cases("compare", "release") + path_cases("compare", "reports") + [
    Case("paths-compare-release-tracked-folder", "compare", both(tracked_folder, path_param("release", "notes")),
         r"notes: holds 1 file\(s\) tracked by git"),
    Case("paths-compare-release-is-metrics", "compare", path_param("release", "metrics"),
         r"paths\.release: 'metrics' is also paths\.metrics"),
    Case("paths-compare-release-holds-raw", "compare", path_param("release", "data"),
         r"paths\.release: 'data' holds paths\.raw"),
    Case("paths-unknown-key", "dedup", path_param("outputs", "x"), r"paths\.outputs: unknown key"),
])


# ------------------------------------------------------------------ compare's inputs: other stages' outputs
def nan_score(rows: list[dict]) -> list[dict]:
    rows[0]["scores"]["task_success"] = float("nan")
    return rows


COMPARE_INPUTS = [
    Case("compare-baseline-metrics-missing", "compare", remove("metrics/baseline.json"), r"metrics/baseline\.json: not found"),
    Case("compare-baseline-metrics-cut-short", "compare", truncate("metrics/baseline.json"),
         r"metrics/baseline\.json:\d+: not valid JSON"),
    Case("compare-strategy-rows-missing", "compare", remove("outputs/baseline/few_shot.jsonl"),
         r"outputs/baseline/few_shot\.jsonl: not found"),
    Case("compare-strategy-rows-cut-short", "compare", truncate("outputs/baseline/few_shot.jsonl"),
         r"outputs/baseline/few_shot\.jsonl:\d+: not valid JSON"),
    Case("compare-evaluate-metrics-missing", "compare", remove("metrics/evaluate.json"), r"metrics/evaluate\.json: not found"),
    Case("compare-evaluate-metrics-cut-short", "compare", truncate("metrics/evaluate.json"),
         r"metrics/evaluate\.json:\d+: not valid JSON"),
    Case("compare-finetune-rows-missing", "compare", remove("outputs/evaluate/test.jsonl"),
         r"outputs/evaluate/test\.jsonl: not found"),
    Case("compare-finetune-rows-cut-short", "compare", truncate("outputs/evaluate/test.jsonl", 0.7),
         r"outputs/evaluate/test\.jsonl:\d+: not valid JSON"),
    Case("compare-finetune-duplicate-id", "compare", edit_jsonl("outputs/evaluate/test.jsonl", lambda r: [*r, r[0]]),
         r"fine-tune's rows repeat test ids"),
    Case("compare-finetune-missing-id", "compare", edit_jsonl("outputs/evaluate/test.jsonl", lambda r: r[1:]),
         r"different test sets \(only in baseline: \['L\d+'\]"),
    Case("compare-finetune-nan-score", "compare", edit_jsonl("outputs/evaluate/test.jsonl", nan_score),
         r"task_success scores .* not finite for test ids \['L\d+'\]"),
    Case("compare-probe-cut-short", "compare", truncate("metrics/probe.json"), r"metrics/probe\.json:\d+: not valid JSON"),
    Case("compare-probe-nan-kl", "compare", edit_json("metrics/probe.json", lambda p: p.update(kl_base_finetune=float("nan"))),
         r"metrics/probe\.json: kl_base_finetune is nan"),
    Case("compare-probe-inf-loss", "compare",
         edit_json("metrics/probe.json", lambda p: p["finetune"].update(text_loss=float("inf"))),
         r"metrics/probe\.json: finetune\.text_loss is inf"),
    Case("compare-train-metrics-cut-short", "compare", truncate("metrics/train.json"), r"metrics/train\.json:\d+: not valid JSON"),
    Case("compare-audit-missing", "compare", remove("data/split/audit.json"), r"data/split/audit\.json: not found"),
    Case("compare-audit-cut-short", "compare", truncate("data/split/audit.json", 0.3), r"data/split/audit\.json:\d+: not valid JSON"),
    Case("compare-split-test-missing", "compare", remove("data/split/test.jsonl"), r"data/split/test\.jsonl: not found"),
    Case("compare-split-train-cut-short", "compare", truncate("data/split/train.jsonl"),
         r"data/split/train\.jsonl:\d+: not valid JSON"),
    Case("compare-train-info-cut-short", "compare", truncate("models/adapter/tuneproof_train.json"),
         r"models/adapter/tuneproof_train\.json:\d+: not valid JSON"),
    Case("compare-adapter-holds-a-symlink", "compare", lambda root: os.symlink("/etc/hostname", root / "models/adapter/notes.txt"),
         r"models/adapter: holds symbolic link"),
]


# ------------------------------------------------------------------ the CLI's own arguments
CLI = [
    Case("cli-check-data-no-model", "cli", lambda root: None, r"models/base: not a model directory",
         argv=("check-data", cp.RAW)),
    Case("cli-check-data-model-not-a-model", "cli", lambda root: None, r"notes-nowhere: not a model directory",
         argv=("check-data", cp.RAW, "--model", "notes-nowhere")),
    Case("cli-check-data-params-missing", "cli", lambda root: None, r"none\.yaml: not found",
         argv=("check-data", cp.RAW, "--params", "none.yaml")),
    Case("cli-check-data-params-bad-type", "cli", params("task", label_field=5), r"task\.label_field: .*5",
         argv=("check-data", cp.RAW)),
    Case("cli-check-data-params-invalid-yaml", "cli", write("bad.yaml", "task: [unclosed\n"), r"bad\.yaml: invalid YAML",
         argv=("check-data", cp.RAW, "--params", "bad.yaml")),
    Case("cli-pr-report-out-is-a-folder", "cli", tracked_folder, r"--out notes: is a folder",
         argv=("pr-report", "--out", "notes")),
    Case("cli-pr-report-out-dot", "cli", lambda root: None, r"--out \.: is a folder", argv=("pr-report", "--out", ".")),
    Case("cli-pr-report-no-base-branch", "cli", lambda root: None, r"neither of main, origin/main exists; pass --base",
         argv=("pr-report",)),
    Case("cli-pr-report-params-missing", "cli", lambda root: None, r"none\.yaml: not found",
         argv=("pr-report", "--base", "HEAD", "--params", "none.yaml")),
    Case("cli-pr-report-paths-bad", "cli", path_param("metrics", 3), r"paths\.metrics: expected str",
         argv=("pr-report", "--base", "HEAD")),
    Case("cli-unknown-verb", "cli", lambda root: None, r"invalid choice", argv=("repro",)),
]

CASES = data_cases() + SPLIT_DATA + DEDUP_PARAMS + SPLIT_PARAMS + COMPARE_PARAMS + PATHS + COMPARE_INPUTS + CLI


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A git project where dedup, split and compare have run: the previous outputs every case must keep."""
    root = tmp_path_factory.mktemp("template") / "project"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    git_init(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cp.build(root)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def project(template, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.chdir(root)
    return root


def invoke(case: Case) -> int:
    """Run the stage as its `__main__` does (a TuneproofError: one line, exit 2) or the CLI."""
    try:
        if case.run == "cli":
            return cli_main(list(case.argv))
        run_main(cp.STAGES[case.run])
    except SystemExit as stop:
        return stop.code
    return 0


def declared(case: Case) -> list[str]:
    return cp.OUTPUTS.get(case.run, [])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(project, capsys, case):
    case.setup(project)
    capsys.readouterr()
    outputs_before = cp.files_under(project, declared(case))
    rest_before = cp.tree_hash(project, declared(case))
    code = invoke(case)
    captured = capsys.readouterr()
    assert code == case.code, captured.err
    assert re.search(case.message, captured.err), captured.err
    assert len(captured.err) < 5000  # no 3 MB line echoed back
    assert not [p for p in project.parent.rglob(f"*{TMP_MARK}*")], "a temp folder was left"
    assert cp.tree_hash(project, declared(case)) == rest_before, "something outside the stage's outputs changed"
    if case.code:
        assert cp.files_under(project, declared(case)) == outputs_before, "the previous outputs were touched"
    else:  # accepted: a complete new set
        assert set(cp.files_under(project, declared(case))) == set(outputs_before)


# ------------------------------------------------------------------ faults: the file system fails mid-write
def writes_of(stage: str, root: Path, monkeypatch) -> int:
    """How many os.replace calls an uninterrupted run of `stage` makes."""
    count = {"n": 0}
    real = os.replace

    def counting(src, dst):
        count["n"] += 1
        return real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(io.os, "replace", counting)
        cp.STAGES[stage]()
    return count["n"]


FAULT_POINTS = {"dedup": 5, "split": 9, "compare": 10}  # os.replace calls of one run (checked below)
FAULTS = [(stage, call, kind) for stage, n in FAULT_POINTS.items() for call in range(1, n + 1)
          for kind in ("disk_full",)] + [(stage, 1, "read_only") for stage in FAULT_POINTS]


@pytest.mark.parametrize("stage", FAULT_POINTS)
def test_fault_points_are_every_write(project, monkeypatch, stage):
    assert writes_of(stage, project, monkeypatch) == FAULT_POINTS[stage]


@pytest.mark.parametrize("stage,call,kind", FAULTS, ids=[f"{s}-{k}-at-write-{c}" for s, c, k in FAULTS])
def test_fault(project, monkeypatch, capsys, stage, call, kind):
    """An OSError at the `call`-th replace (disk full), or at the first temp folder (read-only
    output folder): the error names the path, the old set stays whole or goes as a set (the
    metrics file, which says the stage finished, is gone), no temp folder is left."""
    outputs_before = cp.files_under(project, cp.OUTPUTS[stage])
    rest_before = cp.tree_hash(project, cp.OUTPUTS[stage])
    real_replace, real_mkdtemp, count = os.replace, io.tempfile.mkdtemp, {"n": 0}

    def replace(src, dst):
        count["n"] += 1
        if count["n"] == call:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    def mkdtemp(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    with monkeypatch.context() as patch:
        if kind == "disk_full":
            patch.setattr(io.os, "replace", replace)
        else:
            patch.setattr(io.tempfile, "mkdtemp", mkdtemp)
        code = invoke(Case("fault", stage, lambda root: None, ""))
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"error: .*(No space left|Permission denied).*: '?[\w/.-]+", err), err
    assert not list(project.rglob(f"*{TMP_MARK}*"))
    assert cp.tree_hash(project, cp.OUTPUTS[stage]) == rest_before
    now = cp.files_under(project, cp.OUTPUTS[stage])
    metrics = cp.OUTPUTS[stage][-1]
    assert metrics not in now or now == outputs_before  # "finished" only beside the whole set
    invoke(Case("rerun", stage, lambda root: None, ""))
    assert cp.files_under(project, cp.OUTPUTS[stage]) == outputs_before  # same inputs: the same set again


def test_the_corpus_is_large():
    assert len(CASES) + len(FAULTS) >= 150
