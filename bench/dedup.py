"""Near-duplicate throughput: the dedup stage's vectorised MinHash LSH vs a naive per-record loop.

    python bench/dedup.py                      # 100,000 records; naive loop on the first 10,000
    python bench/dedup.py --records 20000 --naive-records 20000

Both sides get the same texts, normalisation, word shingles, threshold, num_perm, seed and LSH
weights (tuneproof.neardup.LSH_WEIGHTS), so only the way of computing differs:
  * stage: `tuneproof.neardup.find_near_duplicates` (one numpy pass for all signatures, one LSH
    insertion session, candidates from the buckets, exact-Jaccard confirmation);
  * naive: the datasketch tutorial loop - for each record `MinHash(num_perm, seed)`, `update()` per
    shingle, `lsh.query()`, confirm each candidate with `MinHash.jaccard`, then `lsh.insert()`.
The naive loop is slow, so by default it runs on a prefix of the records, and the stage is timed on
that same prefix too; the speed-up is records/s vs records/s on identical input. Recall/precision
are measured on the planted duplicates (tuneproof.deduplicate.score_against_truth) of each run's records.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from datasketch import MinHash, MinHashLSH
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneproof.deduplicate import score_against_truth  # noqa: E402
from demo.support_tickets import benchmark_records  # noqa: E402
from tuneproof.neardup import LSH_WEIGHTS, find_near_duplicates, shingles  # noqa: E402
from tuneproof.text import normalise  # noqa: E402


def naive_clusters(texts: list[str], threshold: float, shingle_size: int, num_perm: int, seed: int) -> list[list[int]]:
    """Per-record MinHash + LSH query/insert, merged with union-find (the usual datasketch loop)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    minhashes: list[MinHash] = []
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, text in enumerate(tqdm(texts, desc="naive", unit="text", mininterval=2)):
        m = MinHash(num_perm=num_perm, seed=seed)
        for shingle in shingles(normalise(text), shingle_size):
            m.update(shingle.encode("utf-8"))
        for j in lsh.query(m):
            if minhashes[j].jaccard(m) >= threshold:
                parent[max(root(i), root(j))] = min(root(i), root(j))
        lsh.insert(i, m)
        minhashes.append(m)
    groups: dict[int, list[int]] = {}
    for i in range(len(texts)):
        groups.setdefault(root(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def restrict_truth(truth: dict, n: int) -> dict:
    """The planted groups as seen in the first `n` lines (groups left with one line vanish)."""
    groups = []
    for group in truth["groups"]:
        lines = [line for line in (group["original"], *group["duplicates"]) if line <= n]
        if len(lines) > 1:
            groups.append({"kind": group["kind"], "original": lines[0], "duplicates": lines[1:]})
    return {"groups": groups}


def score(clusters: list[list[int]], truth: dict) -> dict:
    as_stage = [{"reason": "near", "kept": f"L{g[0] + 1:06d}", "dropped": [f"L{i + 1:06d}" for i in g[1:]]}
                for g in clusters]
    return score_against_truth(as_stage, truth)


def timed(fn, *args) -> tuple[list[list[int]], float]:
    start = time.perf_counter()
    clusters = fn(*args)
    return clusters, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records for the stage's function")
    parser.add_argument("--naive-records", type=int, default=10_000, help="prefix the naive loop runs on")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--shingle-size", type=int, default=3)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = (args.threshold, args.shingle_size, args.num_perm, args.seed)

    records, truth = benchmark_records(args.records, seed=0)
    texts = [r["prompt"] for r in records]
    n_naive = min(args.naive_records, len(texts))
    prefix_truth = restrict_truth(truth, n_naive)
    print(f"{len(texts)} records ({truth['counts']['exact']} exact + {truth['counts']['near']} near planted copies), "
          f"threshold {args.threshold}, {args.shingle_size}-word shingles, num_perm {args.num_perm}, "
          f"cpus {os.cpu_count()}")

    clusters, fast_full = timed(lambda: find_near_duplicates(texts, *config).clusters)
    full_score = score(clusters, truth)
    fast_prefix_clusters, fast_prefix = timed(lambda: find_near_duplicates(texts[:n_naive], *config).clusters)
    naive, naive_prefix = timed(naive_clusters, texts[:n_naive], *config)

    rows = [
        (f"stage (neardup), all {len(texts)}", len(texts), fast_full, full_score),
        (f"stage (neardup), first {n_naive}", n_naive, fast_prefix, score(fast_prefix_clusters, prefix_truth)),
        (f"naive loop, first {n_naive}", n_naive, naive_prefix, score(naive, prefix_truth)),
    ]
    print(f"{'method':<36}{'records':>9}{'seconds':>10}{'records/s':>12}{'recall':>9}{'precision':>11}")
    for name, n, seconds, s in rows:
        print(f"{name:<36}{n:>9}{seconds:>10.2f}{n / seconds:>12.0f}{s['recall']:>9.4f}{s['precision']:>11.4f}")
    speedup = (n_naive / fast_prefix) / (n_naive / naive_prefix)
    print(f"speed-up on the same {n_naive} records: {speedup:.1f}x records/s; "
          f"stage at {len(texts)} records: {len(texts) / fast_full:.0f} records/s "
          f"vs naive {n_naive / naive_prefix:.0f} records/s = {(len(texts) / fast_full) / (n_naive / naive_prefix):.1f}x")
    if n_naive < len(texts):
        print(f"(naive loop run on the first {n_naive} records only; at its rate all {len(texts)} would take "
              f"~{len(texts) / (n_naive / naive_prefix):.0f} s, more as its index grows)")


if __name__ == "__main__":
    main()
