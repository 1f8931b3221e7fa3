"""Checking a user's JSONL before anything runs: record count, format, labels and token lengths.

Validation is `records.load_records` (the same line-numbered errors as the dedup stage); token
lengths are measured on exactly what training sees, by the train stage's own example builder
(tuneproof.train_data.example_ids). Used by `tuneproof check-data`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneproof.progress import progress
from tuneproof.records import label_of, parse_record
from tuneproof.train_data import example_ids

# transformers fills an unset tokenizer.model_max_length with int(1e30); treat anything this big as unset.
UNSET_MAX_LENGTH = 10**9
NO_LABEL = "(no label)"


@dataclass(frozen=True)
class TokenLengths:
    """Token counts of one record as training sees it."""

    id: str          # canonical record id, "L000012" = line 12 of the raw file
    prompt: int      # tokens of the rendered chat prompt (system, turns, assistant header)
    completion: int  # tokens of the answer + end-of-turn
    total: int       # tokens of prompt + completion: the training sequence length

    @property
    def line(self) -> int:
        return int(self.id.lstrip("L"))


@dataclass(frozen=True)
class ContextLimit:
    """The longest training sequence allowed, and where each bound came from."""

    tokens: int | None                  # min of the known bounds; None when none is known
    bounds: tuple[tuple[str, int], ...]  # (source, value) of each known bound, e.g. ("train.max_length", 512)


def input_format(path: str | Path) -> str:
    """Format of a JSONL file already validated by `load_records`: that of its first record."""
    with open(path, encoding="utf-8-sig") as fh:  # as load_records: a leading BOM is allowed
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                return parse_record(json.loads(line), Path(path), line_no)[0]
    raise AssertionError(f"{path} has no records; validate it with load_records first")


def label_counts(records: list[dict], label_field: str | None) -> list[tuple[str, int]]:
    """(label, count) pairs, most frequent first then by name; records without one count as NO_LABEL."""
    counts = Counter(label_of(r, label_field) or NO_LABEL for r in records)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def token_lengths(tokenizer, records: list[dict], system: str | None) -> list[TokenLengths]:
    """Per-record prompt/completion/total token counts of the training sequence."""
    ids = [example_ids(tokenizer, r, system) for r in progress(records, desc="tokenizing", unit="record")]
    return [TokenLengths(r["id"], len(p), len(c), len(p) + len(c)) for r, (p, c) in zip(records, ids)]


def length_stats(values: list[int]) -> dict[str, float]:
    """min, median, p95 (linear interpolation) and max of token counts."""
    arr = np.asarray(values, dtype=float)
    return {"min": float(arr.min()), "median": float(np.median(arr)),
            "p95": float(np.percentile(arr, 95)), "max": float(arr.max())}


def context_limit(max_position_embeddings: int | None, model_max_length: int | None,
                  train_max_length: int | None) -> ContextLimit:
    """The tightest of the model's context length (config and tokenizer) and train.max_length."""
    bounds = [("config max_position_embeddings", max_position_embeddings),
              ("tokenizer model_max_length", model_max_length),
              ("train.max_length", train_max_length)]
    known = tuple((name, int(v)) for name, v in bounds if v is not None and 0 < v < UNSET_MAX_LENGTH)
    return ContextLimit(min((v for _, v in known), default=None), known)


def over_long(lengths: list[TokenLengths], limit: ContextLimit) -> list[TokenLengths]:
    """Records whose training sequence exceeds the limit (they would be truncated), in file order."""
    if limit.tokens is None:
        return []
    return [x for x in lengths if x.total > limit.tokens]


def format_report(path: str | Path, n_records: int, fmt: str, label_field: str | None,
                  labels: list[tuple[str, int]] | None, system: str | None, model_dir: str | Path,
                  lengths: list[TokenLengths], limit: ContextLimit, too_long: list[TokenLengths]) -> str:
    """The human-readable summary `tuneproof check-data` prints."""
    out = [f"{path}: {n_records} records, format {fmt}"]
    if labels is not None:
        out.append(f"labels (task.label_field = {label_field}): {sum(1 for k, _ in labels if k != NO_LABEL)} classes")
        width = max(len(k) for k, _ in labels)
        out += [f"  {k:<{width}}  {n:>6}  {100 * n / n_records:5.1f}%" for k, n in labels]
        if dict(labels).get(NO_LABEL) == n_records:
            out.append(f"  warning: no record has a '{label_field}' label; check task.label_field "
                       "(a JSON key of the completion, \"completion\", or null)")
    system_desc = "its default system prompt" if system is None else "prompt.system"
    out.append(f"tokens ({model_dir} tokenizer; prompt = chat template with {system_desc}, as training sees it):")
    out.append(f"  {'':<10}  {'min':>7}  {'median':>7}  {'p95':>7}  {'max':>7}")
    for part in ("prompt", "completion", "total"):
        stats = length_stats([getattr(x, part) for x in lengths])
        out.append(f"  {part:<10}  " + "  ".join(f"{stats[k]:>7g}" for k in ("min", "median", "p95", "max")))
    if limit.tokens is None:
        out.append("context limit: unknown (no max_position_embeddings, model_max_length or train.max_length)")
    else:
        out.append(f"context limit: {limit.tokens} tokens (" + ", ".join(f"{n} {v}" for n, v in limit.bounds) + ")")
    if too_long:
        out.append(f"over-long: {len(too_long)} records exceed {limit.tokens} tokens (training would truncate them):")
        out += [f"  line {x.line} ({x.id}): {x.total} tokens (prompt {x.prompt}, completion {x.completion})"
                for x in too_long]
    else:
        out.append("over-long: none")
    return "\n".join(out)
