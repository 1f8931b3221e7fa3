"""The GitHub workflow is hardened (issue 13): actions pinned by commit SHA, no expression pasted
into a shell script, and a fork's PR (read-only token) ends green with the report in the summary."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "pr-report.yml"


def steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["pr-report"]["steps"]


def test_every_action_is_pinned_by_commit_sha():
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def test_no_expression_is_pasted_into_a_script():
    scripts = [s["run"] for s in steps() if "run" in s]
    assert scripts and not [s for s in scripts if "${{" in s]  # values reach scripts through env only


def test_a_fork_pr_gets_the_report_in_the_summary_and_skips_the_comment():
    by_name = {s.get("name"): s for s in steps()}
    write = next(s for name, s in by_name.items() if name and name.startswith("Write the PR comment"))
    assert "$GITHUB_STEP_SUMMARY" in write["run"]
    post = by_name["Post the PR comment"]
    assert post["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
