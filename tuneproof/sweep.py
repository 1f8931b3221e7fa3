"""Pick a hyperparameter sweep's winner on validation only: `tuneproof sweep-pick`.

The README's sweep queues train-stage experiments (`dvc exp run --queue train -S ...`); each writes
`<paths.metrics>/train.json`, whose `best_val_score` is the validation score of the checkpoint it
kept, measured by `selected_by`. This module reads `dvc exp show --json`, keeps ONLY that file's
`best_val_score` and `selected_by` plus the `train` params of each row (the workspace, the baseline
commit and every finished experiment), and picks the best. No test-derived metric (evaluate.json,
compare.json, baseline.json) is ever read: test is scored once, after `dvc exp apply` of the winner.

Pick rule: the highest `best_val_score` (the lowest when the rows selected by `eval_loss`, the
train stage's own `greater_is_better` rule); ties go to the first name in sorted string order.
Rows selected by different metrics are not comparable: refused, naming them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tuneproof.io import TuneproofError
from tuneproof.pr_report import _run, dvc_executable  # _run: pr_report's private subprocess helper

WORKSPACE = "workspace"
LOSS_METRIC = "eval_loss"  # tuneproof.trainer.sft_config: greater_is_better = metric_for_best_model != "eval_loss"


@dataclass(frozen=True)
class Pick:
    """The winner and what it was chosen among."""

    winner: dict               # the row: {name, params, val_score, selected_by}
    ranked: list[dict]         # the compared rows, best first (ties by name)
    skipped: list[dict]        # rows whose train.json has no numeric best_val_score
    selected_by: str | None    # the validation metric every compared row was selected by
    greater_is_better: bool


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested dicts as {dotted.key: value}; lists and scalars stay values."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _file_data(rev_data: dict, kind: str, path: str) -> dict | None:
    """`data` of one params or metrics file in an exp-show revision, None when absent."""
    entry = (rev_data.get(kind) or {}).get(path)
    data = (entry or {}).get("data")
    return data if isinstance(data, dict) else None


def _row(name: str, rev_data: dict | None, params_file: str, metrics_path: str) -> dict | None:
    """A row from one revision's exp-show data; None without a train metrics file.

    Reads only the train metrics file's best_val_score and selected_by, and the params' train section.
    """
    train_metrics = _file_data(rev_data or {}, "metrics", metrics_path)
    if train_metrics is None:
        return None
    params = _file_data(rev_data, "params", params_file) or {}
    train = params.get("train")
    return {"name": name, "params": flatten(train, "train.") if isinstance(train, dict) else {},
            "val_score": train_metrics.get("best_val_score"), "selected_by": train_metrics.get("selected_by")}


def _revisions(exp_show: list) -> list[tuple[str, dict | None]]:
    """(name, data) of the workspace, each baseline commit and its finished experiments.

    Queued, running and failed experiments (a non-null `executor`) are left out.
    """
    found = []
    for baseline in exp_show:
        rev = baseline.get("rev") or ""
        name = WORKSPACE if rev == WORKSPACE else baseline.get("name") or rev[:7]
        found.append((name, baseline.get("data")))
        for exp in baseline.get("experiments") or []:
            if exp.get("executor") is None and exp.get("revs"):
                first = exp["revs"][0]
                found.append((exp.get("name") or first.get("name") or first.get("rev", "")[:7], first.get("data")))
    return found


def rows_from_exp_show(exp_show: list, params_file: str, metrics_path: str) -> list[dict]:
    """The rows to pick from: every revision with a train metrics file.

    The workspace row is dropped when it repeats another row (`dvc exp run` leaves its last result
    there). `params` keeps only the train keys whose values are not the same in every row.
    """
    rows = [row for name, data in _revisions(exp_show) if (row := _row(name, data, params_file, metrics_path))]
    same = lambda row: (json.dumps(row["params"], sort_keys=True), row["val_score"], row["selected_by"])  # noqa: E731
    named = {same(row) for row in rows if row["name"] != WORKSPACE}
    rows = [row for row in rows if row["name"] != WORKSPACE or same(row) not in named]
    keys = sorted({key for row in rows for key in row["params"]})
    varying = [key for key in keys if len({json.dumps(row["params"].get(key)) for row in rows}) > 1]
    return [{**row, "params": {key: row["params"].get(key) for key in varying}} for row in rows]


def _is_score(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _common_metric(rows: list[dict]) -> str | None:
    """The selected_by shared by all rows; TuneproofError naming the rows that differ from the majority."""
    counts = Counter(row["selected_by"] for row in rows)
    majority = counts.most_common(1)[0][0]
    odd = [row for row in rows if row["selected_by"] != majority]
    if odd:
        named = ", ".join(f"{row['name']} ({row['selected_by']})" for row in odd)
        raise TuneproofError(
            f"cannot compare validation scores measured by different metrics: {named} vs {majority} for the "
            f"other {counts[majority]}; re-run them with the same train.select_by, or remove them "
            f"(dvc exp remove {' '.join(row['name'] for row in odd)})")
    return majority


def pick(rows: list[dict]) -> Pick:
    """The best of rows {name, params, val_score, selected_by} by val_score (rule: the module docstring)."""
    scored = [row for row in rows if _is_score(row["val_score"])]
    skipped = sorted((row for row in rows if not _is_score(row["val_score"])), key=lambda row: row["name"])
    if not scored:
        raise TuneproofError("no configuration has a validation score (train metrics best_val_score) to pick from"
                             + (f"; without one: {', '.join(row['name'] for row in skipped)}" if skipped else ""))
    metric = _common_metric(scored)
    greater = metric != LOSS_METRIC
    ranked = sorted(scored, key=lambda row: (-row["val_score"] if greater else row["val_score"], row["name"]))
    return Pick(ranked[0], ranked, skipped, metric, greater)


def next_command(name: str) -> str:
    """What to run to make `name` the workspace's configuration and score it on test."""
    return "dvc repro" if name == WORKSPACE else f"dvc exp apply {name} && dvc repro"


def _params_text(params: dict) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in params.items()) or "-"


def format_pick(result: Pick) -> str:
    """The table (best first), the count, the winner and the next command."""
    direction = "higher" if result.greater_is_better else "lower"
    lines = [f"{len(result.ranked)} configurations tried, compared on validation {result.selected_by} "
             f"({direction} is better; test metrics are not read)", ""]
    table = [("name", "val score", "changed params")]
    table += [(row["name"], f"{row['val_score']:.4g}", _params_text(row["params"])) for row in result.ranked]
    table += [(row["name"], "n/a", _params_text(row["params"])) for row in result.skipped]
    widths = [max(len(cells[i]) for cells in table) for i in range(2)]
    lines += [f"{name:<{widths[0]}}  {score:>{widths[1]}}  {params}" for name, score, params in table]
    if result.skipped:
        lines += ["", f"not compared (no best_val_score): {', '.join(row['name'] for row in result.skipped)}"]
    winner = result.winner
    lines += ["", f"winner: {winner['name']} (validation {result.selected_by} {winner['val_score']:.4g})",
              f"next: {next_command(winner['name'])}"]
    return "\n".join(lines)


def exp_show(repo: Path) -> list:
    """`dvc exp show --json` in `repo`, parsed."""
    cmd = [dvc_executable(), "exp", "show", "--json"]
    proc = _run(cmd, repo)
    if proc.returncode != 0:
        raise TuneproofError(f"`dvc exp show --json` failed in {repo}: {proc.stderr.strip() or proc.stdout.strip()}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise TuneproofError(f"`dvc exp show --json` in {repo} did not print JSON: {exc}") from exc
    if not isinstance(data, list):
        raise TuneproofError(f"`dvc exp show --json` in {repo}: expected a list of revisions")
    return data


def collect(repo: Path, params_file: str, metrics_path: str) -> Pick:
    """Read the experiments in `repo` and pick on validation."""
    params_key, metrics_key = os.path.normpath(params_file), Path(os.path.normpath(metrics_path)).as_posix()
    rows = rows_from_exp_show(exp_show(repo), Path(params_key).as_posix(), metrics_key)
    if not rows:
        raise TuneproofError(f"no experiment, baseline or workspace in {repo} has {metrics_key}; run the sweep "
                             "first: dvc exp run --queue train -S 'train.learning_rate=...' && dvc queue start")
    return pick(rows)


def record(result: Pick) -> dict:
    """What `sweep-pick --record` writes to paths.sweep for compare's report: every configuration
    compared on validation (best first), and the winner's val score, by which compare tells whether
    the run it reports is that winner."""
    return {"selected_by": result.selected_by, "winner": result.winner["name"],
            "winner_val_score": result.winner["val_score"],
            "configurations": [{"name": row["name"], "val_score": row["val_score"], "params": row["params"]}
                               for row in result.ranked],
            "not_compared": [row["name"] for row in result.skipped]}
