"""A markdown PR comment: what a change (working tree or DVC experiment) does against a Git ref.

Sections: the compare stage's verdict at the ref and now, the report headline at both, then
`dvc params diff --md` and `dvc metrics diff --md`. DVC 3 resolves experiment names wherever it
takes a revision (`dvc.scm.resolve_rev`), so an experiment is compared like any commit. Used by
`tuneproof pr-report`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tuneproof.io import TuneproofError

NA = "n/a"
DEFAULT_BASES = ("main", "origin/main")


@dataclass(frozen=True)
class Side:
    """What one side of the comparison says: compare.json and the report's headline."""

    label: str                 # how the comment names it: the ref, the experiment or "working tree"
    compare: dict | None       # <paths.metrics>/compare.json, None when absent
    headline: str | None       # first heading + first paragraph of report.md, None when absent


def dvc_executable() -> str:
    """The dvc next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def default_base(repo: Path) -> str:
    """`main` if that branch exists here, else `origin/main` (what CI checkouts have)."""
    for ref in DEFAULT_BASES:
        if _run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo).returncode == 0:
            return ref
    raise TuneproofError(f"{repo}: neither of {', '.join(DEFAULT_BASES)} exists; pass --base REF")


def dvc_diff_md(kind: str, base: str, target: str | None, repo: Path) -> str:
    """`dvc {params,metrics} diff --md base [target]` (target None = workspace); "" when nothing changed."""
    cmd = [dvc_executable(), kind, "diff", "--md", base] + ([target] if target else [])
    proc = _run(cmd, repo)
    if proc.returncode != 0:
        raise TuneproofError(f"`{' '.join(cmd[1:])}` failed in {repo}: {proc.stderr.strip() or proc.stdout.strip()}")
    table = proc.stdout.strip()
    return table if len(table.splitlines()) > 2 else ""  # header + rule only: no differences


def reader(repo: Path, rev: str | None) -> Callable[[str], str | None]:
    """A function reading a path (relative to the DVC project root) at `rev`; None when absent.

    rev None reads the workspace. Otherwise DVC's filesystem reads it at that Git revision or
    experiment name, whether Git tracks the file or DVC does (then from the DVC cache or remote).
    """
    if rev is None:
        return lambda path: (repo / path).read_text(encoding="utf-8") if (repo / path).is_file() else None
    from dvc.api import DVCFileSystem
    from dvc.scm import RevError

    fs = DVCFileSystem(str(repo), rev=rev)

    def read(path: str) -> str | None:
        try:
            return fs.read_text(path, encoding="utf-8")
        except FileNotFoundError:
            return None
        except RevError as exc:
            raise TuneproofError(f"{repo}: {exc}; pass an existing branch, tag, commit or experiment name") from exc

    return read


def parse_compare(text: str | None) -> dict | None:
    """compare.json's content, None when absent or not a JSON object."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def headline(markdown: str | None) -> str | None:
    """First heading and the first paragraph after it (or the first paragraph when there is no heading)."""
    if not markdown:
        return None
    heading, para = None, []
    for line in markdown.splitlines():
        text = line.strip()
        if text.startswith("#"):
            if heading is None and not para:
                heading = text.lstrip("#").strip()
                continue
            if para:
                break
            continue  # a second heading before any paragraph: keep looking for the paragraph
        if text:
            para.append(text)
        elif para:
            break
    parts = ([f"**{heading}**"] if heading else []) + ([" ".join(para)] if para else [])
    return " — ".join(parts) or None


def _value(compare: dict | None, key: str) -> str:
    value = (compare or {}).get(key)
    if value is None:
        return NA
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _ci(compare: dict | None) -> str:
    low, high = _value(compare, "ci_low"), _value(compare, "ci_high")
    return NA if NA in (low, high) else f"[{low}, {high}]"


def render(base: Side, head: Side, params_md: str, metrics_md: str) -> str:
    """The PR comment markdown."""
    before, after = _value(base.compare, "verdict"), _value(head.compare, "verdict")
    change = "unchanged" if before == after else "**changed**"
    lines = [
        f"## tuneproof: {head.label} vs `{base.label}`",
        "",
        f"**Verdict:** `{before}` → `{after}` ({change})",
        "",
        f"| | `{base.label}` | {head.label} |",
        "|---|---|---|",
        f"| verdict | {before} | {after} |",
        f"| gain (fine-tune − best baseline) | {_value(base.compare, 'gain')} | {_value(head.compare, 'gain')} |",
        f"| 95% CI | {_ci(base.compare)} | {_ci(head.compare)} |",
        "",
        "### Report headline",
        "",
        f"- `{base.label}`: {base.headline or NA}",
        f"- {head.label}: {head.headline or NA}",
        "",
        "### Params",
        "",
        params_md or "No params changed.",
        "",
        "### Metrics",
        "",
        metrics_md or "No metrics changed.",
    ]
    return "\n".join(lines) + "\n"


def build(repo: Path, base: str, exp: str | None, metrics_dir: str, reports_dir: str) -> str:
    """Compare experiment `exp` (or the workspace when None) with Git ref `base` in DVC project `repo`."""
    compare_path = f"{metrics_dir}/compare.json"
    report_path = f"{reports_dir}/report.md"

    def side(rev: str | None, label: str) -> Side:
        read = reader(repo, rev)
        return Side(label, parse_compare(read(compare_path)), headline(read(report_path)))

    return render(
        side(base, base),
        side(exp, f"experiment `{exp}`" if exp else "working tree"),
        dvc_diff_md("params", base, exp, repo),
        dvc_diff_md("metrics", base, exp, repo),
    )
