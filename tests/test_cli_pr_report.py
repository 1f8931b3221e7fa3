"""`tuneproof pr-report` on a tiny DVC project (one stage writing compare.json + report.md), with
two named experiments compared against `main`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneproof import pr_report
from tuneproof.cli import main

from conftest import ROOT, git_init

# The real paths section (metrics -> metrics/, reports -> reports/), and the one train knob the fake stage reads.
PARAMS = yaml.safe_dump({"paths": yaml.safe_load((ROOT / "params.yaml").read_text())["paths"], "train": {"lr": 0.1}})
# Stands in for the compare stage: verdict, gain and CI from train.lr, and a report headline.
SCRIPT = """\
import json, os, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
gain = round(lr * 2, 4)
verdict = "fine-tune" if gain > 0.5 else "prompt"
os.makedirs("metrics", exist_ok=True)
os.makedirs("reports", exist_ok=True)
json.dump({"verdict": verdict, "gain": gain, "ci_low": round(gain - 0.1, 4), "ci_high": round(gain + 0.1, 4)},
          open("metrics/compare.json", "w"))
open("reports/report.md", "w").write(
    f"# Verdict: {verdict}\\n\\nGain {gain} over the best prompt.\\nSecond line.\\n\\n## Details\\n\\nmore\\n")
"""
DVC_YAML = f"""\
stages:
  compare:
    cmd: {sys.executable} make_report.py
    deps: [make_report.py]
    params: [train.lr]
    outs:
      - reports/report.md:
          cache: false
    metrics:
      - metrics/compare.json:
          cache: false
"""


def _run(cwd: Path, *cmd: str) -> None:
    subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory) -> Path:
    """Commits: init (no outputs) -> main with lr 0.1 reproduced; experiments `small` (0.2), `big` (0.4)."""
    repo = tmp_path_factory.mktemp("prproj")
    git_init(repo)
    dvc = pr_report.dvc_executable()
    _run(repo, "git", "branch", "-M", "main")
    _run(repo, "git", "config", "user.name", "t")
    _run(repo, "git", "config", "user.email", "t@t")
    (repo / "params.yaml").write_text(PARAMS)
    (repo / "make_report.py").write_text(SCRIPT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _run(repo, dvc, "init", "-q")
    _run(repo, dvc, "config", "core.analytics", "false")  # no network here
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "project")
    _run(repo, "git", "tag", "before-repro")
    _run(repo, dvc, "repro", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "repro")
    _run(repo, dvc, "exp", "run", "-q", "-n", "small", "-S", "train.lr=0.2")
    _run(repo, dvc, "exp", "run", "-q", "-n", "big", "-S", "train.lr=0.4")  # also left in the workspace
    return repo


def _report(repo: Path, monkeypatch, *args: str) -> str:
    monkeypatch.chdir(repo)
    out = repo / "pr-comment.md"
    assert main(["pr-report", *args, "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def _row(markdown: str, *prefix: str) -> list[str]:
    """Cells of the first markdown table row starting with the cells `prefix`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:len(prefix)] == list(prefix):
            return cells
    raise AssertionError(f"no row {prefix!r} in:\n{markdown}")


def test_experiment_with_same_verdict(dvc_project, monkeypatch):
    md = _report(dvc_project, monkeypatch, "--exp", "small")  # --base defaults to main
    assert md.startswith("## tuneproof: experiment `small` vs `main`\n")
    assert "**Verdict:** `prompt` → `prompt` (unchanged)" in md
    assert _row(md, "params.yaml", "train.lr") == ["params.yaml", "train.lr", "0.1", "0.2"]
    assert _row(md, "metrics/compare.json", "gain") == ["metrics/compare.json", "gain", "0.2", "0.4", "0.2"]
    assert _row(md, "95% CI") == ["95% CI", "[0.1, 0.3]", "[0.3, 0.5]"]
    assert "- `main`: **Verdict: prompt** — Gain 0.2 over the best prompt. Second line." in md
    assert "- experiment `small`: **Verdict: prompt** — Gain 0.4 over the best prompt. Second line." in md


def test_experiment_that_flips_the_verdict(dvc_project, monkeypatch):
    md = _report(dvc_project, monkeypatch, "--exp", "big", "--base", "main")
    assert "**Verdict:** `prompt` → `fine-tune` (**changed**)" in md
    assert _row(md, "params.yaml", "train.lr") == ["params.yaml", "train.lr", "0.1", "0.4"]
    assert _row(md, "metrics/compare.json", "gain") == ["metrics/compare.json", "gain", "0.2", "0.8", "0.6"]
    assert _row(md, "metrics/compare.json", "verdict")[2:4] == ["prompt", "fine-tune"]
    assert "- experiment `big`: **Verdict: fine-tune** — Gain 0.8 over the best prompt." in md


def test_working_tree_against_a_ref_without_outputs(dvc_project, monkeypatch):
    md = _report(dvc_project, monkeypatch, "--base", "before-repro")
    assert md.startswith("## tuneproof: working tree vs `before-repro`\n")
    assert "**Verdict:** `n/a` → `fine-tune` (**changed**)" in md
    assert _row(md, "95% CI") == ["95% CI", "n/a", "[0.7, 0.9]"]
    assert "- `before-repro`: n/a" in md
    assert _row(md, "params.yaml", "train.lr") == ["params.yaml", "train.lr", "0.1", "0.4"]


def test_unknown_ref_is_a_clean_error(dvc_project, monkeypatch, capsys):
    monkeypatch.chdir(dvc_project)
    with pytest.raises(SystemExit) as exc:
        main(["pr-report", "--base", "no-such-branch"])
    assert exc.value.code == 2
    assert "no-such-branch" in capsys.readouterr().err


def test_headline_takes_first_heading_and_paragraph():
    assert pr_report.headline("\n# Title\n\nFirst para\nwraps.\n\nSecond.\n") == "**Title** — First para wraps."
    assert pr_report.headline("# Title\n## Sub\nText\n") == "**Title** — Text"
    assert pr_report.headline("Just text.\n\n# Later") == "Just text."
    assert pr_report.headline("") is None
    assert pr_report.headline(None) is None


def test_render_handles_missing_compare_and_no_changes():
    base = pr_report.Side("main", None, None)
    head = pr_report.Side("working tree", {"verdict": "prompt", "gain": 0.123456}, "**R**")
    md = pr_report.render(base, head, "", "")
    assert "**Verdict:** `n/a` → `prompt` (**changed**)" in md
    assert "| gain (fine-tune − best baseline) | n/a | 0.1235 |" in md
    assert "| 95% CI | n/a | n/a |" in md
    assert "No params changed." in md and "No metrics changed." in md
    assert pr_report.parse_compare("[1, 2]") is None and pr_report.parse_compare("{bad") is None
