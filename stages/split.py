"""Stage `split`: leak-free, stratified train/val/test split plus an independent contamination audit.

    python -m stages.split       # reads params.yaml: split, task.label_field, paths.dedup/split/metrics

Input: `<paths.dedup>/records.jsonl` (canonical records). Outputs: `<paths.split>/{train,val,test}.jsonl`,
`<paths.split>/audit.json` and the manifest `<paths.metrics>/split.json`.

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
3. Contamination audit (`tuneproof.contamination`, independent of step 1: exact Jaccard of
   character n-grams, all pairs): for every val/test record, the most similar train prompt and
   train completion. A prompt at or above `split.audit_threshold` is a leak; completions are
   checked against `split.audit_completion_threshold` only when the task has no label (label
   tasks repeat answers by design; null reports only). Any leak fails the stage and nothing is
   written. At the default 0.8 the audit flags copies with case/punctuation edits at any length
   and a one-word edit from about 14 words up; shorter near-paraphrases ("My card payment is
   still pending." / "My card payment still pending": 0.71) pass and are listed in audit.json.
   With `split.group_measure: tfidf` it also lists, report only (`prompt_near`), val/test
   prompts whose TF-IDF cosine with a train prompt reaches `split.group_threshold`: short
   near-copies the Jaccard misses, left apart only where `split.group_max_size` cut a link.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Hashable, Literal

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Task
from tuneproof.contamination import char_ngrams, max_jaccard
from tuneproof.io import TuneproofError, atomic_files, remove_outputs, sha256_file, write_json, write_jsonl
from tuneproof.neardup import find_near_duplicates
from tuneproof.similar import capped_groups, max_similarity, similar_pairs
from tuneproof.text import excerpt, normalise
from tuneproof.params import load_section
from tuneproof.records import label_of, leak_text, read_canonical

SPLITS = ("train", "val", "test")
NO_LABEL = "<no label>"  # per-label count key for records whose completion has no label
EXCERPT_CHARS = 80  # characters of each text shown in the audit and its error
TELLING_ANSWER_WORDS = 6      # a shared answer this long (in words) is a leak whatever the prompts
TELLING_PROMPT_JACCARD = 0.5  # a shorter shared answer is one only when the prompts are this alike too
MIN_USABLE = 30  # val/test records below which split warns (compare.min_test_records refuses a verdict)


@dataclass(frozen=True)
class SplitParams:
    seed: int = 0                  # seeds the shuffle that decides which groups land in val/test
    val_ratio: float = 0.1         # share of records in val (early stopping); train gets the rest
    test_ratio: float = 0.1        # share of records in test (the held-out bar)
    group_measure: Literal["shingles", "tfidf"] = "tfidf"  # near-copy measure of leak grouping: tfidf (mean word/char TF-IDF cosine) or shingles (word-shingle Jaccard)
    group_threshold: float = 0.55  # similarity at which prompts share a leak group (tfidf ~0.55; shingles ~0.4, below dedup's threshold)
    group_max_size: int | None = 50  # records a leak group may grow to, strongest links first (bounds chaining); null: no cap
    shingle_size: int = 3          # words per shingle for grouping (a shorter text is one shingle)
    num_perm: int = 128            # MinHash permutations for grouping (more: fewer missed pairs, slower)
    audit_ngram: int = 5           # character n-gram size of the audit's exact Jaccard (works for SMS-length texts)
    audit_threshold: float = 0.8   # fail if a val/test prompt has character n-gram Jaccard >= this with a train prompt
    audit_completion_threshold: float | None = 0.9  # same for completions when task.label_field is null; null: report only
    audit_top: int = 20            # worst pairs listed in audit.json and in the failure message


def validate(params: SplitParams, params_file: str = "params.yaml") -> None:
    """Reject params that cannot give three non-empty splits or a meaningful audit."""
    for key in ("val_ratio", "test_ratio"):
        value = getattr(params, key)
        if not 0.0 < value < 1.0:
            raise TuneproofError(f"{params_file}: split.{key} is {value}; use a share strictly between 0 and 1")
    if params.val_ratio + params.test_ratio >= 1.0:
        raise TuneproofError(f"{params_file}: split.val_ratio + split.test_ratio = "
                             f"{params.val_ratio + params.test_ratio}; they must leave a share for train (< 1)")
    for key in ("group_threshold", "audit_threshold", "audit_completion_threshold"):
        value = getattr(params, key)
        if value is not None and not 0.0 < value <= 1.0:
            raise TuneproofError(f"{params_file}: split.{key} is {value}; use a Jaccard similarity in (0, 1]")
    if params.group_max_size is not None and params.group_max_size < 2:
        raise TuneproofError(f"{params_file}: split.group_max_size is {params.group_max_size}; use 2 or more "
                             "records, or null for no cap")
    for key in ("shingle_size", "num_perm", "audit_ngram", "audit_top"):
        if getattr(params, key) < 1:
            raise TuneproofError(f"{params_file}: split.{key} is {getattr(params, key)}; use a positive integer")


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
    stratum = {}
    for group, indices in members.items():
        votes = Counter(labels[i] for i in indices)
        stratum[group] = min(votes, key=lambda label: (-votes[label], _stratum_key(label)))
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


def _excerpt(text: str) -> str:
    return excerpt(text, EXCERPT_CHARS)


def telling_answer(record: dict, match: dict, ngram: int) -> bool:
    """Is a shared completion evidence of a leak? Different questions share short answers ("1960",
    "United States") by chance; a shared answer counts when it is long enough to be telling or
    the two prompts are alike too."""
    if len(normalise(record["completion"]).split()) >= TELLING_ANSWER_WORDS:
        return True
    a, b = (set(char_ngrams(leak_text(r), ngram)) for r in (record, match))
    return len(a & b) / max(1, len(a | b)) >= TELLING_PROMPT_JACCARD


def _side_audit(queries: list[tuple[str, dict]], train: list[dict], field: str, texts,
                scorer, threshold: float | None, top: int, telling=None) -> tuple[dict, list[dict]]:
    """Audit one side (prompt or completion): summary and one row per val/test record;
    `scorer(query texts, train texts)` gives each query's best score and train index (as
    `max_jaccard`); `threshold` None reports without checking; `telling(record, match)` excuses
    matches that are no evidence of a leak (counted as `excused`)."""
    scores, best = scorer([texts(r) for _, r in queries], [texts(r) for r in train])
    rows = []
    for (split, record), score, j in zip(queries, scores.tolist(), best.tolist()):
        match = train[j]
        rows.append({"id": record["id"], "split": split, "train_id": match["id"], "score": round(score, 4),
                     "text": _excerpt(texts(record)), "train_text": _excerpt(texts(match)),
                     "telling": telling is None or telling(record, match)})
    worst = sorted(rows, key=lambda r: (-r["score"], r["split"], r["id"]))
    matches = [r for r in worst if threshold is not None and r["score"] >= threshold]
    leaks = [r for r in matches if r["telling"]]
    summary = {"field": field, "checked": threshold is not None, "threshold": threshold,
               "max": max((r["score"] for r in rows), default=0.0), "leaks": len(leaks),
               "excused": len(matches) - len(leaks), "worst": worst[:top]}
    return summary, rows


def audit_split(splits: dict[str, list[dict]], ngram: int, prompt_threshold: float,
                completion_threshold: float | None, top: int, near_threshold: float | None = None) -> dict:
    """Contamination audit: for each val/test record the highest character `ngram` Jaccard with
    any train record, for prompts and completions separately. `report["pass"]` is False when a
    prompt or a completion reaches its threshold (completions: only if `completion_threshold`
    is not None). With `near_threshold`, `report["prompt_near"]` also lists the val/test prompts
    whose TF-IDF cosine with a train prompt reaches it: short near-copies the Jaccard misses
    (one changed word in a 6-word question), which grouping keeps together unless
    `split.group_max_size` cut the link. Reported, not checked."""
    queries = [(s, r) for s in ("val", "test") for r in splits[s]]
    jaccard = partial(max_jaccard, n=ngram)
    prompt, prompt_rows = _side_audit(queries, splits["train"], "prompt", leak_text, jaccard,
                                      prompt_threshold, top)
    completion, completion_rows = _side_audit(queries, splits["train"], "completion", lambda r: r["completion"],
                                              jaccard, completion_threshold, top,
                                              lambda record, match: telling_answer(record, match, ngram))
    near = {}
    if near_threshold is not None:
        summary, _ = _side_audit(queries, splits["train"], "prompt", leak_text, max_similarity, near_threshold, top)
        near = {"prompt_near": {**summary, "measure": "TF-IDF cosine (split.group_measure tfidf), report only",
                                "checked": False, "near_copies": summary.pop("leaks")}}
    records = [{"id": p["id"], "split": p["split"],
                "prompt": {"score": p["score"], "train_id": p["train_id"]},
                "completion": {"score": c["score"], "train_id": c["train_id"]}}
               for p, c in zip(prompt_rows, completion_rows)]
    return {
        "measure": f"exact Jaccard of character {ngram}-gram sets of normalised text, "
                   "each val/test record against every train record",
        "ngram": ngram,  # compare audits a production sample against train with the same measure
        "pass": prompt["leaks"] == 0 and completion["leaks"] == 0,
        "prompt": prompt, "completion": completion, **near, "records": records,
    }


def audit_error(report: dict) -> TuneproofError:
    """The failure message of an audit that did not pass: every offending pair (up to top-N)."""
    lines = []
    for side in ("prompt", "completion"):
        part = report[side]
        offending = [r for r in part["worst"] if part["checked"] and r["score"] >= part["threshold"] and r["telling"]]
        for r in offending:
            lines.append(f"  {side} {r['split']} {r['id']} ~ train {r['train_id']}: jaccard {r['score']:.3f} "
                         f"(>= {part['threshold']})\n      {r['split']}: {r['text']!r}\n      train: {r['train_text']!r}")
        if part["leaks"] > len(offending):
            lines.append(f"  ... and {part['leaks'] - len(offending)} more {side} pairs (raise split.audit_top to list them)")
    return TuneproofError(
        "split: contamination audit failed, val/test records nearly copy train records "
        f"({report['measure']}):\n" + "\n".join(lines) + "\nNothing was written. Fix the data (remove or "
        "merge these near-copies)" + "".join(advice for side, advice in (
            ("prompt", ", or lower split.group_threshold so near-copy prompts are grouped into one split, or, if "
                       "they are genuinely distinct, raise split.audit_threshold (up to 1.0)"),
            ("completion", ", or, if these answers are genuinely shared by different questions, set "
                           "split.audit_completion_threshold: null (completions reported, not checked)"))
            if report[side]["leaks"]) + ".")


def manifest(result: Split, report: dict, files: dict[str, Path], label_field: str | None) -> dict:
    """The split's metrics: counts per split and label, leak groups, file hashes, audit summary."""
    group_sizes = Counter(result.groups)
    all_labels = sorted({NO_LABEL if l is None else l for l in result.labels}) if label_field else []
    per_label = {}
    for split, records in result.splits.items():
        counts = Counter(NO_LABEL if (l := label_of(r, label_field)) is None else l for r in records)
        per_label[split] = {label: counts.get(label, 0) for label in all_labels}
    return {
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


def main(params_file: str = "params.yaml") -> None:
    params = load_section(SplitParams, "split", params_file)
    validate(params, params_file)
    paths = load_section(Paths, "paths", params_file)
    task = load_section(Task, "task", params_file)
    source = Path(paths.dedup) / "records.jsonl"
    if not source.is_file():
        raise TuneproofError(f"{source}: not found; run the dedup stage first (dvc repro dedup)")
    records = read_canonical(source)
    if not records:
        raise TuneproofError(f"{source}: no records; check paths.raw and re-run the dedup stage (dvc repro dedup)")
    check_label_field(records, task.label_field)
    result, report = run_split(records, params, task.label_field)
    out = paths.output("split")
    files = {s: out / f"{s}.jsonl" for s in SPLITS}
    metrics_file = paths.metrics_file("split")
    remove_outputs([metrics_file])  # the manifest goes first and comes back last
    with atomic_files(out, [*(path.name for path in files.values()), "audit.json"]) as tmp:  # one set
        for split, path in files.items():
            write_jsonl(tmp / path.name, result.splits[split])
        write_json(tmp / "audit.json", report)
    metrics = manifest(result, report, files, task.label_field)
    metrics["warnings"] = size_warnings(metrics)
    write_json(metrics_file, metrics)
    for warning in metrics["warnings"]:
        print(f"split: WARNING: {warning}", file=sys.stderr)
    counts = metrics["records"]
    print(f"split: {counts['train']} train / {counts['val']} val / {counts['test']} test -> {out} "
          f"({metrics['groups']['multi_record']} leak groups of 2+ records; audit max prompt Jaccard "
          f"{report['prompt']['max']:.3f} < {params.audit_threshold})")
    if report.get("prompt_near", {}).get("near_copies"):
        print(f"split: {report['prompt_near']['near_copies']} val/test prompts have a TF-IDF near-copy in train "
              f"(>= {params.group_threshold}; links split.group_max_size cut), listed under prompt_near in "
              f"{out / 'audit.json'}")


if __name__ == "__main__":
    run_main(main)
