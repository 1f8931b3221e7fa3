"""Near-copy pairs by TF-IDF cosine: the leak-grouping measure that works on short texts.

Word-shingle Jaccard fails both ways on 5-12-word prompts: one changed word in "Who wrote
Dubliners?" leaves few shared 3-word shingles, while "What is the capital of X?" makes every pair
of a fact set look alike. TF-IDF weighs each word by its rarity in the data set, so a pair that
shares its rare words ("dubliners") stays close through an edit or a reordering, and a pair
that shares only template words ("what is the capital of") does not.

The similarity of a pair is the mean of two cosines: over words (unigrams: a reordering keeps
them) and over character 3-5-grams within words (an inflection or a typo keeps most of them).
Texts go through the one normalisation (tuneproof.text); term frequencies are sublinear and rows
L2-normalised, so a sparse dot product is the cosine. Pairs are found block by block, so memory
stays bounded by `block` x the number of texts. bench/grouping.py measures it against word
shingles, with and without `capped_groups` (bench/RESULTS.md).
"""

from __future__ import annotations

import numpy as np

from tuneproof.progress import progress
from tuneproof.text import normalise

_BLOCK = 2048  # query rows per sparse product


def tfidf_vectors(texts: list[str]) -> list:
    """L2-normalised TF-IDF rows of the normalised texts: [word unigrams, character 3-5-grams
    within words], sublinear tf, smooth idf; [] when no text has a word."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizers = [TfidfVectorizer(preprocessor=normalise, token_pattern=r"(?u)\b\w+\b", sublinear_tf=True),
                   TfidfVectorizer(preprocessor=normalise, analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)]
    try:
        return [vectorizer.fit_transform(texts) for vectorizer in vectorizers]
    except ValueError:  # every text is empty after normalising: no vocabulary, no pairs
        return []


def similar_pairs(texts: list[str], threshold: float, block: int = _BLOCK) -> list[tuple[int, int, float]]:
    """(i, j, similarity) for every i < j whose mean word/character TF-IDF cosine is >= `threshold`, sorted."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    vectors = tfidf_vectors(texts) if len(texts) > 1 else []
    if not vectors:
        return []
    transposed = [v.T.tocsr() for v in vectors]
    pairs: list[tuple[int, int, float]] = []
    starts = range(0, len(texts), block)
    for start in progress(starts, desc="similar", unit="block", disable=len(starts) < 4):
        sims = (sum(v[start:start + block] @ t for v, t in zip(vectors, transposed)) / len(vectors)).tocoo()
        rows = sims.row + start
        # a float cosine of identical texts can land a hair under 1.0
        keep = (rows < sims.col) & (sims.data >= threshold - 1e-9)
        pairs.extend(zip(rows[keep].tolist(), sims.col[keep].tolist(), np.round(sims.data[keep], 6).tolist()))
    return sorted(pairs)


def capped_groups(sizes: list[int], links: list[tuple[int, int, float]], max_size: int | None) -> list[int]:
    """Group id (the group's lowest node) of each node: nodes joined by `links` (i, j, similarity),
    strongest first (ties: lowest i, j), where a link that would grow a group past `max_size`
    records (`sizes[node]` each; None: no cap) is left out. Single linkage chains: on banking77
    one group took 1,419 of 2,976 queries through links that each looked like a near-copy; a cap
    keeps the strong links and cuts the chain at its weakest ones (bench/grouping.py)."""
    parent = list(range(len(sizes)))
    size = list(sizes)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in sorted(links, key=lambda link: (-link[2], link[0], link[1])):
        a, b = sorted((root(i), root(j)))
        if a != b and (max_size is None or size[a] + size[b] <= max_size):
            parent[b] = a
            size[a] += size[b]
    return [root(i) for i in range(len(sizes))]


def max_similarity(queries: list[str], corpus: list[str], block: int = _BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the highest similarity (`similar_pairs`' measure, IDF over queries and
    corpus together) with any corpus text and that text's index (the first on ties); with an
    empty corpus or no words every score is 0.0 and every index -1 (as contamination.max_jaccard)."""
    scores = np.zeros(len(queries), dtype=np.float64)
    best = np.full(len(queries), -1, dtype=np.int64)
    vectors = tfidf_vectors(queries + corpus) if queries and corpus else []
    if not vectors:
        return scores, best
    pairs = [(v[:len(queries)], v[len(queries):].T.tocsr()) for v in vectors]
    for start in range(0, len(queries), block):
        sims = sum((q[start:start + block] @ c).toarray() for q, c in pairs) / len(pairs)
        best[start:start + len(sims)] = sims.argmax(axis=1)
        scores[start:start + len(sims)] = sims[np.arange(len(sims)), best[start:start + len(sims)]]
    return scores, best
