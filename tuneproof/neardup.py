"""Near-duplicate detection shared by `dedup` and `split`: normalise, word shingles, MinHash LSH.

Pipeline (Broder 1997; datasketch's MinHash LSH):
  1. `tuneproof.text.normalise` each text (NFKC, no format characters, look-alike letters mapped,
     casefold, punctuation -> space), so trivial or invisible edits do not hide a duplicate.
  2. Word `shingles` of `shingle_size` words, hashed with datasketch's default SHA-1 32-bit hash.
  3. MinHash signatures of all texts at once with numpy, bit-identical to datasketch's default
     `MinHash(num_perm, seed)` ("affine32" scheme: murmur3 fmix pre-mix, then `a*h + b mod 2^32`).
  4. Candidate pairs: any two texts sharing a band bucket of datasketch's
     `MinHashLSH(threshold, num_perm, weights=LSH_WEIGHTS)` (its bands and rows), bucketed for all
     texts at once with numpy. The weights favour recall, since step 5 removes false positives.
  5. Every candidate pair is confirmed by the EXACT Jaccard similarity of its shingle sets
     (`>= threshold`); confirmed pairs are merged transitively (scipy's union-find `DisjointSet`).

Hashing dominates the cost, so the per-text Python work is kept to building shingle strings and
one SHA-1 each; the permutations, the minimum and the LSH banding run vectorised over all texts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.cluster.hierarchy import DisjointSet

from tuneproof.progress import progress, progress_bar
from tuneproof.text import normalise

SCHEME = "affine32"  # datasketch 2.x default MinHash scheme; the signatures below reproduce it
_CHUNK_SHINGLES = 1 << 16  # shingles per vectorised block: 64k x num_perm x 4 bytes (32 MiB at 128)
_PROGRESS_MIN = 20_000  # show progress bars only for inputs at least this large
# datasketch picks LSH bands/rows by weighing false positives against false negatives. Its default
# (0.5, 0.5) proposes only ~44% of the pairs AT the threshold (128 perms, 0.7); every candidate is
# confirmed by exact Jaccard here, so a false positive costs one set intersection while a false
# negative is a missed duplicate: weigh misses 99:1 (~99% of pairs at the threshold proposed).
LSH_WEIGHTS = (0.01, 0.99)

def shingles(normalised_text: str, size: int) -> list[str]:
    """Distinct word `size`-grams of an already normalised text, in first-seen order.

    A text shorter than `size` words (including the empty text) is one shingle: the whole text.
    """
    if size < 1:
        raise ValueError(f"shingle size must be >= 1, got {size}")
    words = normalised_text.split(" ") if normalised_text else []
    if len(words) <= size:
        return [" ".join(words)]
    return list(dict.fromkeys(" ".join(words[i:i + size]) for i in range(len(words) - size + 1)))


def shingle_hashes(normalised_text: str, size: int) -> np.ndarray:
    """32-bit hashes (datasketch's `sha1_hash32`) of the text's shingles, as uint32."""
    digests = b"".join(hashlib.sha1(s.encode("utf-8")).digest() for s in shingles(normalised_text, size))
    # sha1_hash32 = the first 4 bytes of each 20-byte digest, little-endian.
    return np.frombuffer(digests, dtype="<u4")[::5].astype(np.uint32)


def jaccard(a: set | frozenset, b: set | frozenset) -> float:
    """Exact Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, datasketch's pre-mix before the affine permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) uint32 permutation parameters datasketch's MinHash(num_perm, seed) uses."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(hashes: list[np.ndarray], num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signatures, shape (len(hashes), num_perm) uint32, of each text's shingle hashes.

    Row i equals `MinHash(num_perm, seed).update_batch(<shingles of text i>).hashvalues`; every
    text must have at least one shingle (`shingles` guarantees it).
    """
    a, b = permutations(num_perm, seed)
    signatures = np.empty((len(hashes), num_perm), dtype=np.uint32)
    start = 0
    with progress_bar("minhash", len(hashes), unit="text", disable=len(hashes) < _PROGRESS_MIN) as bar:
        while start < len(hashes):
            # A block of whole texts with about _CHUNK_SHINGLES shingles in total.
            stop, count = start, 0
            while stop < len(hashes) and (count == 0 or count + len(hashes[stop]) <= _CHUNK_SHINGLES):
                count += len(hashes[stop])
                stop += 1
            block = hashes[start:stop]
            flat = _fmix32(np.concatenate(block))
            permuted = flat[:, None] * a[None, :] + b[None, :]  # uint32 wraps: mod 2^32, as datasketch
            offsets = np.cumsum([0] + [len(h) for h in block[:-1]])
            signatures[start:stop] = np.minimum.reduceat(permuted, offsets, axis=0)
            bar.update(stop - start)
            start = stop
    return signatures


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One uint64 key per row of a (texts, rows) uint32 band: equal bands get equal keys, distinct
    bands collide with probability ~2^-64 (and a collision only adds a candidate to confirm)."""
    key = np.zeros(len(band), dtype=np.uint64)
    for column in band.T:
        key = (key ^ column.astype(np.uint64)) * np.uint64(0x100000001B3)  # FNV-1a step, wraps mod 2^64
        key ^= key >> np.uint64(29)
    return key


def lsh_buckets(signatures: np.ndarray, threshold: float) -> list[list[int]]:
    """The buckets (>= 2 texts) of datasketch's `MinHashLSH(threshold, num_perm, LSH_WEIGHTS)`:
    texts whose signatures agree on every row of some band; every pair inside is a candidate.

    datasketch chooses the bands and rows (`lsh.hashranges`, its false-positive/false-negative
    optimiser); the bucketing is done for all texts at once with one sort per band instead of
    one `insert` per text and band (which took longer than all of the hashing at 100k texts). Buckets are
    sorted index lists, deduplicated, in sorted order; tests check they equal the buckets of
    datasketch's own index.
    """
    lsh = MinHashLSH(threshold=threshold, num_perm=signatures.shape[1], weights=LSH_WEIGHTS)
    buckets: set[tuple[int, ...]] = set()
    for start, end in lsh.hashranges:
        keys = _band_keys(signatures[:, start:end])
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])  # runs of equal keys
        ends = np.r_[starts[1:], len(keys)]
        shared = ends - starts > 1
        for s, e in zip(starts[shared].tolist(), ends[shared].tolist()):
            buckets.add(tuple(sorted(order[s:e].tolist())))
    return [list(b) for b in sorted(buckets)]


@dataclass(frozen=True)
class NearDuplicates:
    """Result of `find_near_duplicates`."""

    clusters: list[list[int]]                   # groups of >= 2 indices, each sorted, ordered by first index
    similarity: dict[tuple[int, int], float]    # exact Jaccard (>= threshold) of the pairs that merged groups
    candidates: int                             # candidate pairs whose Jaccard was computed


def find_near_duplicates(texts: list[str], threshold: float, shingle_size: int, num_perm: int,
                         seed: int = 1) -> NearDuplicates:
    """Near-duplicate groups of `texts`: LSH candidates confirmed by exact shingle Jaccard >=
    `threshold`, merged transitively. Deterministic for the same inputs and params."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    hashes = [shingle_hashes(normalise(t), shingle_size)
              for t in progress(texts, desc="shingle", unit="text", disable=len(texts) < _PROGRESS_MIN)]
    if len(texts) < 2:
        return NearDuplicates([], {}, 0)
    return confirm_candidates(candidate_buckets(hashes, threshold, num_perm, seed), hashes, threshold)


def candidate_buckets(hashes: list[np.ndarray], threshold: float, num_perm: int, seed: int = 1) -> list[list[int]]:
    """Groups of texts (by index) whose pairs are candidates, from their shingle hashes."""
    if threshold >= 1.0:  # only identical shingle sets qualify: group them directly (LSH cannot band at 1.0)
        same: dict[frozenset, list[int]] = {}
        for i, h in enumerate(hashes):
            same.setdefault(frozenset(h.tolist()), []).append(i)
        return [group for group in same.values() if len(group) > 1]
    return lsh_buckets(minhash_signatures(hashes, num_perm, seed), threshold)


def confirm_candidates(buckets: list[list[int]], hashes: list[np.ndarray], threshold: float) -> NearDuplicates:
    """Merge the candidate pairs of `buckets` whose exact shingle Jaccard is >= `threshold`.
    A pair already in one group is not checked again: it could not change the groups, and it
    keeps a bucket of m copies of one text at ~m checks, not m^2/2."""
    groups = DisjointSet(range(len(hashes)))
    sets: dict[int, frozenset] = {}

    def shingle_set(i: int) -> frozenset:
        if i not in sets:
            sets[i] = frozenset(hashes[i].tolist())
        return sets[i]

    similarity: dict[tuple[int, int], float] = {}
    checked: set[tuple[int, int]] = set()
    for bucket in buckets:
        for x, i in enumerate(bucket):
            for j in bucket[x + 1:]:
                if groups.connected(i, j) or (i, j) in checked:
                    continue
                checked.add((i, j))
                if (sim := jaccard(shingle_set(i), shingle_set(j))) >= threshold:
                    groups.merge(i, j)
                    similarity[(i, j)] = sim
    clusters = sorted((sorted(g) for g in groups.subsets() if len(g) > 1), key=lambda g: g[0])
    return NearDuplicates(clusters, similarity, len(checked))


def near_duplicate_clusters(texts: list[str], threshold: float, shingle_size: int, num_perm: int,
                            seed: int = 1) -> list[list[int]]:
    """Groups (>= 2 members) of near-duplicate texts as sorted index lists, ordered by first index.

    Two texts are near-duplicates when the exact Jaccard similarity of their normalised word
    `shingle_size`-gram sets is >= `threshold` and MinHash LSH (`num_perm` permutations, `seed`)
    proposed them; groups are merged transitively.
    """
    return find_near_duplicates(texts, threshold, shingle_size, num_perm, seed).clusters
