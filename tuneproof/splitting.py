"""Leak-free, stratified train/val/test split (the split stage's work; its audit: tuneproof.leak_audit).

1. Leak groups. Records whose prompts are identical after normalisation share a group; near-copies
   (`split.group_measure`: TF-IDF cosine, `tuneproof.similar`, or word-shingle Jaccard,
   `tuneproof.neardup`, >= `split.group_threshold`, looser than dedup's, so records dedup kept
   but that are still close enough to leak stay together) join, strongest links first, while the
   group stays within `split.group_max_size` records (plain transitive merging chained half of
   banking77 into one group). A group never straddles two splits.
2. Stratified assignment. Each group belongs to the stratum of its majority label
   (`task.label_field`; records without a label form their own stratum). Each stratum gets
   target counts by largest remainder; groups, in an order shuffled with `split.seed`, each go to
   the split with the largest share of its target still open (where the group fits), so the
   splits fill at the same pace and multi-record groups reach val/test as often as single ones.
   scikit-learn's StratifiedGroupKFold would force equal folds (ratios of 1/k) and degrades on
   classes smaller than k, hence this greedy.
   Small classes never fail: a label whose share of val or test rounds to no record stays in
   train (with ratios 0.1/0.1: 1-3 records all train, 4-6 give test one, 7+ give val and test
   one each); `metrics/split.json` then shows 0 for that label in val/test. A whole split left
   empty (too few records or groups) is an error.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Literal

from tuneproof.config import SPLITS
from tuneproof.io import TuneproofError, sha256_file
from tuneproof.leak_audit import audit_error, audit_split
from tuneproof.neardup import find_near_duplicates
from tuneproof.params import PARAMS_FILE, require
from tuneproof.records import label_of, leak_text
from tuneproof.similar import capped_groups, similar_pairs
from tuneproof.text import normalise

NO_LABEL = "<no label>"  # per-label count key for records whose completion has no label
MIN_USABLE = 30  # val/test records below which split warns (compare.min_test_records refuses a verdict)


@dataclass(frozen=True)
class SplitParams:
    """params.yaml `split` (every key is documented there)."""

    seed: int = 0
    val_ratio: float = 0.1
    test_ratio: float = 0.06
    group_measure: Literal["shingles", "tfidf"] = "tfidf"
    group_threshold: float = 0.55
    group_max_size: int | None = 50
    shingle_size: int = 3
    num_perm: int = 128
    audit_ngram: int = 5
    audit_threshold: float = 0.8
    audit_completion_threshold: float | None = 0.9
    audit_top: int = 20


def validate(params: SplitParams, params_file: str | Path = PARAMS_FILE) -> None:
    """Reject params that cannot give three non-empty splits or a meaningful audit."""
    for key in ("val_ratio", "test_ratio"):
        value = getattr(params, key)
        require(0.0 < value < 1.0, f"split.{key}", value, "a share strictly between 0 and 1", params_file)
    total = params.val_ratio + params.test_ratio
    require(total < 1.0, "split.val_ratio + split.test_ratio", total, "ratios that leave a share for train (< 1)",
            params_file)
    for key in ("group_threshold", "audit_threshold", "audit_completion_threshold"):
        value = getattr(params, key)
        require(value is None or 0.0 < value <= 1.0, f"split.{key}", value, "a Jaccard similarity in (0, 1]", params_file)
    require(params.group_max_size is None or params.group_max_size >= 2, "split.group_max_size",
            params.group_max_size, "2 or more records, or null for no cap", params_file)
    for key in ("shingle_size", "num_perm", "audit_ngram", "audit_top"):
        require(getattr(params, key) >= 1, f"split.{key}", getattr(params, key), "a positive integer", params_file)


def leak_groups(texts: list[str], threshold: float, shingle_size: int, num_perm: int,
                measure: str, max_size: int | None = None) -> list[int]:
    """Group id of each text: identical normalised texts always share a group; near-copies
    (`measure`: tfidf cosine or word-shingle Jaccard >= `threshold`) join, strongest links
    first, while the group stays within `max_size` records (`similar.capped_groups`; None: no
    cap, plain single linkage). Ids are 0.. in order of each group's first text (deterministic)."""
    node_of: dict[str, int] = {}
    nodes = [node_of.setdefault(normalise(t) or t.strip().casefold(), len(node_of)) for t in texts]  # all-punctuation text: raw
    first_text: dict[int, str] = {}
    for node, text in zip(nodes, texts):
        first_text.setdefault(node, text)
    unique = list(first_text.values())  # nodes are numbered in first-seen order
    if measure == "tfidf":
        links = similar_pairs(unique, threshold)
    else:
        near = find_near_duplicates(unique, threshold, shingle_size, num_perm)
        links = [(i, j, sim) for (i, j), sim in near.similarity.items()]
    roots = capped_groups(list(Counter(nodes)[n] for n in range(len(unique))), links, max_size)
    renumber: dict[int, int] = {}
    return [renumber.setdefault(roots[node], len(renumber)) for node in nodes]


def split_targets(n: int, val_ratio: float, test_ratio: float) -> dict[str, int]:
    """Records per split for a stratum of `n`, by largest remainder (ties favour test, then val,
    so a small class reaches the held-out bar before the early-stopping set)."""
    exact = {"train": n * (1.0 - val_ratio - test_ratio), "val": n * val_ratio, "test": n * test_ratio}
    counts = {split: int(value) for split, value in exact.items()}
    tie_order = {"test": 0, "val": 1, "train": 2}
    by_remainder = sorted(SPLITS, key=lambda s: (-(exact[s] - counts[s]), tie_order[s]))
    for split in by_remainder[: n - sum(counts.values())]:
        counts[split] += 1
    return counts


def _stratum_key(label: Hashable) -> tuple:
    return (label is None, str(label))


def _group_strata(labels: list[Hashable], members: dict[int, list[int]]) -> dict[int, Hashable]:
    """Each group's stratum: its most common label (ties: the smallest label)."""
    stratum = {}
    for group, indices in members.items():
        votes = Counter(labels[i] for i in indices)
        stratum[group] = min(votes, key=lambda label: (-votes[label], _stratum_key(label)))
    return stratum


def assign_splits(labels: list[Hashable], groups: list[int], val_ratio: float, test_ratio: float,
                  seed: int) -> list[str]:
    """Split name for each record; all records of a group share one split.

    A group's stratum is its most common label (ties: the smallest label). Groups are visited in
    an order shuffled with `seed`; each goes to the split of its stratum with the largest share
    of its target still open among the splits it fits in (so the splits fill at the same pace
    and a group's size does not decide its split), ties broken by the same share over the whole
    data set, then train > val > test. A group that fits nowhere goes where the most room is left.
    """
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    stratum = _group_strata(labels, members)
    sizes = Counter(labels)
    target = {label: split_targets(count, val_ratio, test_ratio) for label, count in sizes.items()}
    overall = split_targets(len(labels), val_ratio, test_ratio)
    assigned = {label: dict.fromkeys(SPLITS, 0) for label in sizes}
    assigned_overall = dict.fromkeys(SPLITS, 0)

    def priority(label: Hashable, size: int, split: str) -> tuple:
        room = target[label][split] - assigned[label][split]
        room_overall = overall[split] - assigned_overall[split]
        if room >= size:
            return (1, room / target[label][split], room_overall / max(overall[split], 1), -SPLITS.index(split))
        return (0, room, room_overall, -SPLITS.index(split))

    order = sorted(members)
    random.Random(seed).shuffle(order)
    result = [""] * len(labels)
    for group in order:
        choice = max(SPLITS, key=lambda s: priority(stratum[group], len(members[group]), s))
        for i in members[group]:
            result[i] = choice
            assigned[labels[i]][choice] += 1  # a mixed group counts each record under its own label
            assigned_overall[choice] += 1
    return result


@dataclass(frozen=True)
class Split:
    """Result of `split_records`."""

    splits: dict[str, list[dict]]   # split name -> records, in input order
    groups: list[int]               # leak group id of each input record
    labels: list[str | None]        # label of each input record (None: no label / no label field)


def split_records(records: list[dict], params: SplitParams, label_field: str | None) -> Split:
    """Group, stratify and assign `records` to train/val/test (no audit)."""
    validate(params)
    texts = [leak_text(r) for r in records]
    groups = leak_groups(texts, params.group_threshold, params.shingle_size, params.num_perm, params.group_measure,
                         params.group_max_size)
    labels = [label_of(r, label_field) for r in records]
    names = assign_splits(labels, groups, params.val_ratio, params.test_ratio, params.seed)
    splits = {s: [r for r, name in zip(records, names) if name == s] for s in SPLITS}
    empty = [s for s in SPLITS if not splits[s]]
    if empty:
        fix = ("lower split.val_ratio and split.test_ratio" if empty[0] == "train"
               else f"add records or raise split.{empty[0]}_ratio")
        raise TuneproofError(f"split: {len(records)} records in {len(set(groups))} leak groups leave "
                             f"{empty[0]} empty; {fix}")
    return Split(splits, groups, labels)


def run_split(records: list[dict], params: SplitParams, label_field: str | None) -> tuple[Split, dict]:
    """Split and audit; raises TuneproofError (listing the pairs) when the audit fails."""
    result = split_records(records, params, label_field)
    # Label tasks repeat completions by design: their completions are reported, not checked.
    completion_threshold = params.audit_completion_threshold if label_field is None else None
    report = audit_split(result.splits, params.audit_ngram, params.audit_threshold,
                         completion_threshold, params.audit_top,
                         params.group_threshold if params.group_measure == "tfidf" else None)
    if not report["pass"]:
        raise audit_error(report)
    return result, report


def check_label_field(records: list[dict], label_field: str | None) -> None:
    """A label field no record carries would stratify nothing and score no label: say so."""
    if label_field is None or not records:
        return
    missing = [r["id"] for r in records if label_of(r, label_field) is None]
    if len(missing) == len(records):
        raise TuneproofError(f"task.label_field: {label_field!r} is in no record's completion (first record: "
                             f"{records[0]['id']}); set it to a key of your JSON answers, 'completion' when the "
                             "whole answer is the label, or null")
    if missing:
        print(f"split: WARNING: {len(missing)} of {len(records)} records have no {label_field!r} label (e.g. "
              f"{', '.join(missing[:3])}); they form a stratum of their own", file=sys.stderr)


def manifest(result: Split, report: dict, files: dict[str, Path], label_field: str | None) -> dict:
    """The split's metrics: counts per split and label, leak groups, file hashes, audit summary, warnings."""
    group_sizes = Counter(result.groups)
    all_labels = sorted({NO_LABEL if l is None else l for l in result.labels}) if label_field else []
    per_label = {}
    for split, records in result.splits.items():
        counts = Counter(NO_LABEL if (l := label_of(r, label_field)) is None else l for r in records)
        per_label[split] = {label: counts.get(label, 0) for label in all_labels}
    metrics = {
        "records": {**{s: len(r) for s, r in result.splits.items()}, "total": len(result.groups)},
        "labels": per_label,
        "groups": {"count": len(group_sizes), "multi_record": sum(1 for n in group_sizes.values() if n > 1),
                   "records_in_multi": sum(n for n in group_sizes.values() if n > 1),
                   "largest": max(group_sizes.values(), default=0)},
        "sha256": {s: sha256_file(path) for s, path in files.items()},
        "audit": {"pass": report["pass"], "prompt_max": report["prompt"]["max"],
                  "completion_max": report["completion"]["max"],
                  **({"prompt_near_copies": report["prompt_near"]["near_copies"]} if "prompt_near" in report else {})},
    }
    return {**metrics, "warnings": size_warnings(metrics)}


def size_warnings(metrics: dict) -> list[str]:
    """What makes the split unusable for a verdict, said loudly (compare refuses a verdict on
    too few test records; a giant leak group usually means template prompts, not copies)."""
    counts, groups = metrics["records"], metrics["groups"]
    warnings = [f"{name} has only {counts[name]} records (fewer than {MIN_USABLE}): "
                f"{'no verdict can be earned on it' if name == 'test' else 'early stopping and selection on it are noise'}; "
                f"raise split.{name}_ratio or add data" for name in ("val", "test") if counts[name] < MIN_USABLE]
    if counts["total"] and groups["largest"] > 0.5 * counts["total"]:
        warnings.append(f"one leak group holds {groups['largest']} of {counts['total']} records: their prompts share "
                        "a template, not a copy; raise split.group_threshold (and check dedup did not drop them)")
    return warnings


def summary(metrics: dict, report: dict, params: SplitParams, out: Path, audit_file: Path) -> list[str]:
    """The console lines of a split run (warnings go to stderr apart)."""
    counts = metrics["records"]
    lines = [f"split: {counts['train']} train / {counts['val']} val / {counts['test']} test -> {out} "
             f"({metrics['groups']['multi_record']} leak groups of 2+ records; audit max prompt Jaccard "
             f"{report['prompt']['max']:.3f} < {params.audit_threshold})"]
    if report.get("prompt_near", {}).get("near_copies"):
        lines.append(f"split: {report['prompt_near']['near_copies']} val/test prompts have a TF-IDF near-copy in train "
                     f"(>= {params.group_threshold}; links split.group_max_size cut), listed under prompt_near in "
                     f"{audit_file}")
    return lines
