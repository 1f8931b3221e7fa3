"""tuneproof.contamination: character n-gram Jaccard equals a brute-force set computation."""

from __future__ import annotations

import random

import numpy as np
import pytest

import tuneproof.contamination as contamination
from tuneproof.contamination import char_ngrams, max_jaccard
from tuneproof.neardup import jaccard


def test_char_ngrams_normalise_and_short_texts():
    assert char_ngrams("Ab, C!", 3) == ["ab ", "b c"]
    assert char_ngrams("OK", 5) == ["ok"]           # shorter than n: the whole text is one gram
    assert char_ngrams("?!", 5) == ["?!"]           # all punctuation: compared raw, not as ""
    with pytest.raises(ValueError):
        char_ngrams("x", 0)


def test_max_jaccard_matches_brute_force(monkeypatch):
    rng = random.Random(0)
    words = ["card", "refund", "order", "late", "ok", "lor", "pin", "top", "up", "why"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(60)]
    queries, corpus = texts[:20], texts[20:]
    monkeypatch.setattr(contamination, "_DENSE_CELLS", 50)  # several blocks of rows
    scores, best = max_jaccard(queries, corpus, 4)
    for q, score, j in zip(queries, scores, best):
        sims = [jaccard(set(char_ngrams(q, 4)), set(char_ngrams(c, 4))) for c in corpus]
        assert score == pytest.approx(max(sims))
        assert j == int(np.argmax(sims))


def test_max_jaccard_empty_corpus():
    scores, best = max_jaccard(["a text"], [], 5)
    assert scores.tolist() == [0.0] and best.tolist() == [-1]
