"""`tuneproof sweep-pick`: the sweep's winner is chosen on validation only, never on test metrics."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneproof import pr_report, sweep
from tuneproof.cli import main
from tuneproof.io import TuneproofError

from conftest import ROOT, git_init

TRAIN = "metrics/train.json"


def _rev(name: str, lr: float, val: float, test: float, selected_by: str = "eval_macro_f1") -> dict:
    """One exp-show revision: train params, train.json (val) and evaluate/compare.json (test)."""
    return {"rev": f"{name}-sha", "name": name, "data": {
        "params": {"params.yaml": {"data": {"paths": {"metrics": "metrics"},
                                            "train": {"learning_rate": lr, "seed": 0, "lora": {"r": 8}}}}},
        "metrics": {TRAIN: {"data": {"selected_by": selected_by, "best_val_score": val, "best_val_loss": 1.0}},
                    "metrics/evaluate.json": {"data": {"macro_f1": test}},
                    "metrics/compare.json": {"data": {"gain": test - 0.5, "verdict": "SHIP"}}}}}


def _exp_show(baseline: dict, *exps: dict) -> list:
    """exp-show JSON: the workspace (repeating the last experiment), the baseline and its experiments."""
    workspace = copy.deepcopy(exps[-1] if exps else baseline) | {"rev": "workspace", "name": None}
    return [{**workspace, "experiments": None},
            {**baseline, "experiments": [{"name": e["name"], "executor": None, "revs": [e]} for e in exps]}]


def _sweep(tests: tuple[float, float, float, float]) -> list:
    """main + three experiments; val order b > a > c > main, test metrics given by `tests`."""
    return _exp_show(_rev("main", 0.1, 0.60, tests[0]), _rev("a", 0.2, 0.70, tests[1]),
                     _rev("b", 0.5, 0.90, tests[2]), _rev("c", 0.9, 0.65, tests[3]))


def _pick(exp_show: list) -> sweep.Pick:
    return sweep.pick(sweep.rows_from_exp_show(exp_show, "params.yaml", TRAIN))


def test_pick_follows_val_and_ignores_test_metrics():
    anti = _pick(_sweep((0.95, 0.80, 0.10, 0.85)))  # test anti-correlated with val: b is the worst on test
    assert anti.winner["name"] == "b" and anti.winner["val_score"] == 0.90
    assert [row["name"] for row in anti.ranked] == ["b", "a", "c", "main"]  # the workspace repeats c: dropped
    assert anti.winner["params"] == {"train.learning_rate": 0.5}  # only the train keys that vary
    assert set(anti.winner) == {"name", "params", "val_score", "selected_by"}  # no test number in a row
    for tests in [(0.0, 0.0, 0.0, 0.0), (0.1, 0.2, -5.0, 0.99), (1.0, 1.0, 0.0, 1.0)]:
        assert _pick(_sweep(tests)) == anti  # perturbing test metrics leaves the pick identical


def test_ties_go_to_the_first_name_and_loss_picks_the_lowest():
    tie = sweep.pick([{"name": n, "params": {}, "val_score": 0.8, "selected_by": "eval_acc"} for n in "zbm"])
    assert tie.winner["name"] == "b"
    rows = [{"name": n, "params": {}, "val_score": v, "selected_by": "eval_loss"} for n, v in [("x", 0.4), ("y", 0.3)]]
    loss = sweep.pick(rows + [{"name": "w", "params": {}, "val_score": None, "selected_by": "eval_loss"}])
    assert loss.winner["name"] == "y" and not loss.greater_is_better
    assert [row["name"] for row in loss.skipped] == ["w"]
    text = sweep.format_pick(loss)
    assert "2 configurations tried" in text and "next: dvc exp apply y && dvc repro" in text
    assert "lower is better" in text and "not compared (no best_val_score): w" in text


def test_mixed_selected_by_is_refused_naming_the_odd_one():
    exp_show = _exp_show(_rev("main", 0.1, 0.6, 0.5), _rev("a", 0.2, 0.7, 0.5),
                         _rev("lossy", 0.3, 0.2, 0.5, selected_by="eval_loss"), _rev("b", 0.4, 0.8, 0.5))
    with pytest.raises(TuneproofError, match=r"lossy \(eval_loss\) vs eval_macro_f1") as exc:
        _pick(exp_show)
    assert "dvc exp remove lossy" in str(exc.value) and " a " not in str(exc.value)


def test_parser_skips_rows_without_train_metrics_and_queued_experiments():
    exp_show = _exp_show(_rev("main", 0.1, 0.6, 0.5), _rev("a", 0.2, 0.7, 0.5))
    del exp_show[1]["data"]["metrics"][TRAIN]  # the baseline never trained
    exp_show[1]["experiments"].append({"name": "q", "executor": {"state": "queued"}, "revs": [_rev("q", 0.3, 0.99, 0)]})
    assert [row["name"] for row in sweep.rows_from_exp_show(exp_show, "params.yaml", TRAIN)] == ["a"]
    with pytest.raises(TuneproofError, match="no configuration has a validation score"):
        sweep.pick([])


# Stands in for the train stage: val score peaks at lr 0.5; the test score is deliberately the opposite.
SCRIPT = """\
import json, os, yaml
train = yaml.safe_load(open("params.yaml"))["train"]
lr = train["learning_rate"]
os.makedirs("metrics", exist_ok=True)
json.dump({"selected_by": "eval_macro_f1", "best_val_score": round(1 - abs(lr - 0.5), 4), "best_val_loss": 1.0},
          open("metrics/train.json", "w"))
json.dump({"macro_f1": round(abs(lr - 0.5), 4)}, open("metrics/evaluate.json", "w"))
"""
DVC_YAML = f"""\
stages:
  train:
    cmd: {sys.executable} fake_train.py
    deps: [fake_train.py]
    params: [train]
    metrics:
      - metrics/train.json:
          cache: false
      - metrics/evaluate.json:
          cache: false
"""


def _run(cwd: Path, *cmd: str) -> None:
    subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True)


def _dvc_project(repo: Path) -> str:
    """A committed git + DVC project with the fake train stage (not reproduced); returns the dvc executable."""
    git_init(repo)
    dvc = pr_report.dvc_executable()
    _run(repo, "git", "branch", "-M", "main")
    paths = yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]  # the real section: metrics -> metrics/
    params = {"paths": paths, "train": {"learning_rate": 0.1, "lora": {"r": 8}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "fake_train.py").write_text(SCRIPT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _run(repo, dvc, "init", "-q")
    _run(repo, dvc, "config", "core.analytics", "false")  # no network here
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    return dvc


def test_sweep_pick_on_a_real_dvc_project(tmp_path, monkeypatch, capsys):
    dvc = _dvc_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:  # nothing trained yet
        main(["sweep-pick"])
    assert exc.value.code == 2 and "metrics/train.json" in capsys.readouterr().err
    _run(tmp_path, dvc, "repro", "-q")
    _run(tmp_path, "git", "add", "-A")
    _run(tmp_path, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro")
    _run(tmp_path, dvc, "exp", "run", "-q", "-n", "low", "-S", "train.learning_rate=0.2")
    _run(tmp_path, dvc, "exp", "run", "-q", "-n", "best", "-S", "train.learning_rate=0.6", "-S", "train.lora.r=16")
    _run(tmp_path, dvc, "exp", "run", "-q", "-n", "high", "-S", "train.learning_rate=0.9")  # keeps r=16
    assert main(["sweep-pick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 configurations tried, compared on validation eval_macro_f1")
    table = [line.split() for line in out.splitlines()[3:7]]
    assert table == [["best", "0.9", "train.learning_rate=0.6", "train.lora.r=16"],
                     ["low", "0.7", "train.learning_rate=0.2", "train.lora.r=8"],
                     ["high", "0.6", "train.learning_rate=0.9", "train.lora.r=16"],  # -S edits the workspace
                     ["main", "0.6", "train.learning_rate=0.1", "train.lora.r=8"]]
    assert "winner: best (validation eval_macro_f1 0.9)" in out and "workspace" not in out
    assert out.rstrip().endswith("next: dvc exp apply best && dvc repro")
    assert main(["sweep-pick", "--record"]) == 0  # kept for compare's report
    recorded = json.loads((tmp_path / paths_sweep()).read_text())
    assert (recorded["winner"], recorded["winner_val_score"], recorded["selected_by"]) == ("best", 0.9, "eval_macro_f1")
    assert [row["name"] for row in recorded["configurations"]] == ["best", "low", "high", "main"]


def paths_sweep() -> str:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]["sweep"]
