"""Contamination audit measure: exact Jaccard similarity of character n-gram sets.

Deliberately independent of the MinHash/word-shingle machinery that groups records
(`tuneproof.neardup`): a different unit (characters, not words), exact (no sketch, no LSH
misses) and all-pairs through a sparse inverted index, so a leak the grouping missed still shows
up here. Character n-grams keep the measure meaningful for short texts such as SMS, where a
text may not even have one word 8-gram.

Texts are normalised first (`tuneproof.text.normalise`: NFKC, no format characters, look-alikes mapped, casefold, punctuation -> space), so case,
spacing and punctuation edits do not hide a copy; a text shorter than `n` characters is one gram,
the whole text.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import CountVectorizer

from tuneproof.progress import progress
from tuneproof.text import normalise

_DENSE_CELLS = 1 << 24  # query x corpus cells materialised per block (16M int32 ~ 64 MiB)
_PROGRESS_MIN_BLOCKS = 4  # show a progress bar only when the work takes several blocks


def char_ngrams(text: str, n: int) -> list[str]:
    """Distinct character `n`-grams of the normalised text (the whole text if shorter than `n`)."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    # A text that is all punctuation normalises to "": fall back to its raw casefolded form.
    norm = normalise(text) or text.strip().casefold()
    if len(norm) <= n:
        return [norm]
    return list(dict.fromkeys(norm[i:i + n] for i in range(len(norm) - n + 1)))


def ngram_matrices(queries: list[str], corpus: list[str], n: int) -> tuple[csr_matrix, csr_matrix]:
    """Binary (text x n-gram) matrices of queries and corpus over one shared vocabulary."""
    vectorizer = CountVectorizer(analyzer=lambda text: char_ngrams(text, n), binary=True, dtype=np.int32)
    vectorizer.fit(list(queries) + list(corpus))
    return vectorizer.transform(queries).tocsr(), vectorizer.transform(corpus).tocsr()


def max_jaccard(queries: list[str], corpus: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the highest exact Jaccard similarity of character n-gram sets with any
    corpus text, and that text's index (the first one on ties).

    Returns (scores float64, indices int64), both of length len(queries); with an empty corpus
    every score is 0.0 and every index -1.
    """
    scores = np.zeros(len(queries), dtype=np.float64)
    best = np.full(len(queries), -1, dtype=np.int64)
    if not queries or not corpus:
        return scores, best
    q, c = ngram_matrices(queries, corpus, n)
    q_sizes = np.asarray(q.sum(axis=1)).ravel()
    c_sizes = np.asarray(c.sum(axis=1)).ravel()
    c_t = c.T.tocsc()
    rows = max(1, _DENSE_CELLS // len(corpus))
    blocks = range(0, len(queries), rows)
    for start in progress(blocks, desc="audit", unit="block", disable=len(blocks) < _PROGRESS_MIN_BLOCKS):
        stop = min(start + rows, len(queries))
        inter = (q[start:stop] @ c_t).toarray()  # shared n-grams of every (query, corpus) pair
        union = q_sizes[start:stop, None] + c_sizes[None, :] - inter
        jac = inter / np.maximum(union, 1)
        best[start:stop] = jac.argmax(axis=1)
        scores[start:stop] = jac[np.arange(stop - start), best[start:stop]]
    return scores, best
