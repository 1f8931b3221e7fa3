"""Dropping exact, conflicting and near-duplicate records (the dedup stage's work).

Steps, all on `tuneproof.text.normalise`d prompt text (NFKC, no format characters, look-alikes mapped, casefold, no punctuation):
  1. exact duplicates: the same normalised prompt and the same completion (whitespace collapsed;
     case and punctuation of a completion matter, it is the training target). The lowest line is kept.
  2. conflicts: the same normalised prompt with different completions. `dedup.conflicts` says
     whether to drop the whole group (`drop_all`: no one knows which answer is right) or keep
     its lowest line (`keep_first`). Every conflict is reported.
  3. near duplicates among what is left: MinHash LSH candidates on word shingles of the prompt,
     confirmed by exact Jaccard >= `dedup.threshold`, merged transitively
     (`tuneproof.neardup.find_near_duplicates`). Within a group only records with the same
     completion are copies: each distinct completion keeps its lowest line. A group with several
     completions is a near conflict ("capital of Guinea-Bissau?" -> Bissau, "capital of Guinea?"
     -> Conakry): all its answers are kept and listed, never dropped as copies (split then
     usually puts them in one leak group).

`score_against_truth` measures recall and precision against planted duplicates (the demo data's
ground truth, `dedup.truth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneproof.io import TuneproofError, read_json, sha256_file
from tuneproof.neardup import find_near_duplicates, jaccard, shingles
from tuneproof.params import PARAMS_FILE, require
from tuneproof.records import prompt_text
from tuneproof.text import excerpt, normalise

CONFLICT_EXAMPLES = 3  # near conflicts shown on the console (all are in clusters.json)
EXCERPT_CHARS = 60     # characters of each prompt and answer shown


@dataclass(frozen=True)
class DedupParams:
    """params.yaml `dedup` (every key is documented there); `truth` is dataset-specific: no default."""

    truth: str | None
    threshold: float = 0.7
    shingle_size: int = 3
    num_perm: int = 128
    seed: int = 1
    conflicts: Literal["drop_all", "keep_first"] = "drop_all"


def validate(params: DedupParams, params_file: str | Path = PARAMS_FILE) -> None:
    require(params.conflicts in ("drop_all", "keep_first"), "dedup.conflicts", params.conflicts,
            "drop_all or keep_first", params_file)
    require(0.0 < params.threshold <= 1.0, "dedup.threshold", params.threshold,
            "a Jaccard similarity in (0, 1] (1.0: identical shingle sets only)", params_file)
    require(params.shingle_size >= 1, "dedup.shingle_size", params.shingle_size, "a positive number of words", params_file)
    require(params.num_perm >= 2, "dedup.num_perm", params.num_perm, "at least 2 permutations (128 is usual)", params_file)
    require(params.seed >= 0, "dedup.seed", params.seed, "a seed of 0 or more", params_file)


@dataclass(frozen=True)
class DedupResult:
    records: list[dict]  # the canonical records kept, in raw line order
    clusters: list[dict]  # every merged group (see dedup_records)
    metrics: dict  # counts


def _completion_key(completion: str) -> str:
    return " ".join(completion.split())


def dedup_records(records: list[dict], params: DedupParams) -> DedupResult:
    """Drop exact duplicates, conflicts and near duplicates (module docstring); deterministic.

    Each cluster is `{"reason": "exact"|"conflict"|"near"|"near_conflict", "kept": id or None,
    "dropped": [ids], "similarity": {dropped id: Jaccard of its prompt shingles with the kept prompt}}`
    (+ `"completions"`: distinct completions in a conflict or near group). A near_conflict drops
    nothing: `"conflicting"` lists the ids kept beside `kept`, one per other completion, and
    `"similarity"` their Jaccard with `kept`. Lists follow line order.
    """
    validate(params)
    normalised = [normalise(prompt_text(r)) for r in records]
    survivors, clusters, counts = _exact_and_conflicts(records, normalised, params.conflicts)
    near = find_near_duplicates([normalised[i] for i in survivors], params.threshold,
                                params.shingle_size, params.num_perm, params.seed)
    dropped_near, near_conflicts = set(), 0
    for group in near.clusters:
        group_clusters, dropped = _near_group([survivors[i] for i in group], records, normalised, params)
        clusters += group_clusters
        dropped_near.update(dropped)
        near_conflicts += any(c["reason"] == "near_conflict" for c in group_clusters)

    clusters.sort(key=lambda c: (c["kept"] or c["dropped"][0], c["reason"]))
    kept_records = [records[i] for i in survivors if i not in dropped_near]
    metrics = {
        "records_in": len(records), "records_out": len(kept_records), **counts,
        "near_dropped": len(dropped_near), "near_clusters": len(near.clusters),
        # near-copy prompts with different answers: all kept (one per answer) and listed as conflicts
        "near_conflicts": near_conflicts,
        "near_conflict_records": sum(1 + len(c["conflicting"]) for c in clusters if c["reason"] == "near_conflict"),
        "near_pairs_checked": near.candidates,  # LSH candidate pairs whose exact Jaccard was computed
    }
    return DedupResult(kept_records, clusters, metrics)


def _exact_and_conflicts(records: list[dict], normalised: list[str],
                         conflicts: str) -> tuple[list[int], list[dict], dict]:
    """Steps 1-2 on identical normalised prompts: (surviving indices in line order, clusters, counts)."""
    by_prompt: dict[str, list[int]] = {}
    for index, key in enumerate(normalised):
        by_prompt.setdefault(key, []).append(index)
    clusters: list[dict] = []
    survivors: list[int] = []
    counts = {"exact_dropped": 0, "conflict_groups": 0, "conflict_dropped": 0}
    for members in by_prompt.values():  # dict order = first occurrence = line order
        completions = list(dict.fromkeys(_completion_key(records[i]["completion"]) for i in members))
        if len(completions) == 1:
            survivors.append(members[0])
            if len(members) > 1:
                counts["exact_dropped"] += len(members) - 1
                clusters.append(_cluster("exact", records, members[0], members[1:],
                                         [1.0] * (len(members) - 1)))
            continue
        counts["conflict_groups"] += 1
        kept = members[0] if conflicts == "keep_first" else None
        dropped = members[1:] if kept is not None else members
        counts["conflict_dropped"] += len(dropped)
        clusters.append({**_cluster("conflict", records, kept, dropped, [1.0] * len(dropped)),
                         "completions": len(completions)})
        if kept is not None:
            survivors.append(kept)
    return sorted(survivors), clusters, counts


def _near_group(members: list[int], records: list[dict], normalised: list[str],
                params: DedupParams) -> tuple[list[dict], list[int]]:
    """Step 3 on one near-duplicate group (record indices in line order): (clusters, dropped indices)."""
    by_answer: dict[str, list[int]] = {}
    for i in members:
        by_answer.setdefault(_completion_key(records[i]["completion"]), []).append(i)
    clusters, dropped = [], []
    # Only copies with the same answer merge: "capital of Guinea-Bissau?" -> Bissau is no copy
    # of "capital of Guinea?" -> Conakry. Each answer keeps its lowest line.
    for same in by_answer.values():
        if len(same) > 1:
            clusters.append({**_cluster("near", records, same[0], same[1:], _similarities(normalised, same, params)),
                             "completions": 1})
            dropped += same[1:]
    if len(by_answer) > 1:
        kept = [same[0] for same in by_answer.values()]
        clusters.append({**_cluster("near_conflict", records, kept[0], [], []),
                         "conflicting": [records[i]["id"] for i in kept[1:]],
                         "similarity": dict(zip((records[i]["id"] for i in kept[1:]),
                                                _similarities(normalised, kept, params))),
                         "completions": len(kept)})
    return clusters, dropped


def _similarities(normalised: list[str], members: list[int], params: DedupParams) -> list[float]:
    """Shingle Jaccard of each of members[1:] with members[0]'s prompt."""
    first = set(shingles(normalised[members[0]], params.shingle_size))
    return [jaccard(first, set(shingles(normalised[i], params.shingle_size))) for i in members[1:]]


def _cluster(reason: str, records: list[dict], kept: int | None, dropped: list[int], sims: list[float]) -> dict:
    return {"reason": reason, "kept": None if kept is None else records[kept]["id"],
            "dropped": [records[i]["id"] for i in dropped],
            "similarity": {records[i]["id"]: round(s, 4) for i, s in zip(dropped, sims)}}


def summary(metrics: dict) -> str:
    """The console line of a dedup run."""
    line = (f"dedup: {metrics['records_in']} -> {metrics['records_out']} records "
            f"(exact {metrics['exact_dropped']}, near-copies merged {metrics['near_dropped']}, "
            f"conflicts {metrics['conflict_groups']} groups / {metrics['conflict_dropped']} dropped)")
    if "truth" in metrics:
        line += f"; planted duplicates: recall {metrics['truth']['recall']}, precision {metrics['truth']['precision']}"
    return line


def conflict_summary(records: list[dict], clusters: list[dict], metrics: dict) -> list[str]:
    """Console lines on near-copy prompts with different answers: how many were kept, a few examples."""
    if not metrics["near_conflicts"]:
        return []
    by_id = {r["id"]: r for r in records}

    def show(record_id: str) -> str:
        record = by_id[record_id]
        return f"{record_id} {excerpt(prompt_text(record), EXCERPT_CHARS)!r} -> {excerpt(record['completion'], EXCERPT_CHARS)!r}"

    lines = [f"dedup: kept {metrics['near_conflict_records']} records in {metrics['near_conflicts']} near-copy "
             f"conflict{'s' if metrics['near_conflicts'] != 1 else ''} (alike prompts, different answers; listed as near_conflict in clusters.json), e.g.:"]
    for cluster in [c for c in clusters if c["reason"] == "near_conflict"][:CONFLICT_EXAMPLES]:
        lines.append("  " + "  vs  ".join(show(i) for i in [cluster["kept"], *cluster["conflicting"]][:2]))
    return lines


def line_of(record_id: str) -> int:
    """Raw line number of a canonical record id ("L000012" -> 12)."""
    return int(record_id[1:])


def score_against_truth(clusters: list[dict], truth: dict) -> dict:
    """Recall and precision of the exact + near dropping against planted duplicates.

    Truth groups (`demo.support_tickets.plant_duplicates`) of kind exact/near hold an original line and its
    planted copies; each group should lose all but one record, so `should_drop = sum(|group| - 1)`.
    A record dropped as exact or near is a TRUE drop when the record finally kept in its place
    (following exact -> near merges) is in the same truth group.
      recall    = true drops / should_drop          (planted copies found)
      precision = true drops / records dropped as exact or near   (drops that were planted copies)
    Conflicts are scored apart: a planted conflict group counts as flagged when all its lines are
    in conflict clusters.
    """
    group_of: dict[int, int] = {}
    should_drop = {"exact": 0, "near": 0}
    for g_index, group in enumerate(truth["groups"]):
        if group["kind"] in should_drop:
            lines = [group["original"], *group["duplicates"]]
            group_of.update((line, g_index) for line in lines)
            should_drop[group["kind"]] += len(lines) - 1
    merged_into = {line_of(d): line_of(c["kept"]) for c in clusters if c["reason"] in ("exact", "near")
                   for d in c["dropped"]}

    def representative(line: int) -> int:
        while line in merged_into:
            line = merged_into[line]
        return line

    dropped = list(merged_into)
    true_drops = {"exact": 0, "near": 0}
    for line in dropped:
        if line in group_of and group_of.get(representative(line)) == group_of[line]:
            true_drops[truth["groups"][group_of[line]]["kind"]] += 1
    total_true, total_should = sum(true_drops.values()), sum(should_drop.values())
    return {
        "should_drop": total_should, "dropped": len(dropped), "true_drops": total_true,
        "recall": round(total_true / total_should, 4) if total_should else 1.0,
        "precision": round(total_true / len(dropped), 4) if dropped else 1.0,
        # recall on each kind of planted group (an edited copy may be caught as exact after normalising)
        **{f"recall_{kind}": round(true_drops[kind] / n, 4) if n else 1.0 for kind, n in should_drop.items()},
        **_conflicts_flagged(clusters, truth),
    }


def _conflicts_flagged(clusters: list[dict], truth: dict) -> dict:
    """Planted conflict groups, and how many have all their lines in conflict clusters."""
    conflict_lines = {line_of(i) for c in clusters if c["reason"] == "conflict"
                      for i in [*c["dropped"], *([c["kept"]] if c["kept"] else [])]}
    planted = [g for g in truth["groups"] if g["kind"] == "conflict"]
    flagged = sum(1 for g in planted if {g["original"], *g["duplicates"]} <= conflict_lines)
    return {"conflicts_planted": len(planted), "conflicts_flagged": flagged}


def load_truth(truth_path: str | Path, raw_path: str | Path) -> dict | None:
    """The planted-duplicate ground truth, or None (with a note) when it describes another raw file."""
    truth_path = Path(truth_path)
    if not truth_path.is_file():
        raise TuneproofError(f"dedup.truth: {truth_path} not found; set dedup.truth: null unless your "
                             "data comes with planted-duplicate ground truth")
    truth = read_json(truth_path)
    if truth.get("raw_sha256") != sha256_file(raw_path):
        print(f"dedup: {truth_path} describes a different file than {raw_path}; recall/precision skipped "
              "(set dedup.truth: null for your own data)")
        return None
    return truth
