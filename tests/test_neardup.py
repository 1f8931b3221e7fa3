"""tuneproof.neardup: normalisation, shingles, signatures equal to datasketch's, clustering."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash

from tuneproof.neardup import (
    find_near_duplicates,
    jaccard,
    minhash_signatures,
    near_duplicate_clusters,
    shingle_hashes,
    shingles,
)
from tuneproof.text import normalise

BASE = ("my parcel for order 48213 still has not arrived and the tracking page shows nothing "
        "since monday could you tell me where it is")


def test_normalise_case_width_punctuation_whitespace():
    assert normalise("  Hello,\tWORLD!!  Ｏrder #12_3 ") == "hello world order 12 3"
    assert normalise("Straße ﬁne") == "strasse fine"  # casefold + NFKC ligature
    assert normalise("end.Next") == "end next"
    assert normalise("...") == ""
    text = "Ça va? Très—bien…"
    assert normalise(normalise(text)) == normalise(text)


def test_shingles_word_ngrams_and_short_texts():
    assert shingles("a b c d", 3) == ["a b c", "b c d"]
    assert shingles("a b a b a b", 2) == ["a b", "b a"]  # distinct, first-seen order
    assert shingles("a b", 3) == ["a b"]
    assert shingles("a b c", 3) == ["a b c"]
    assert shingles("", 3) == [""]
    with pytest.raises(ValueError):
        shingles("a", 0)


def test_signatures_equal_datasketch_minhash():
    texts = [normalise(t) for t in (BASE, "short one", "", "Ünïcode tèxt with ﬁ ligature and more words")]
    signatures = minhash_signatures([shingle_hashes(t, 3) for t in texts], num_perm=64, seed=7)
    for text, row in zip(texts, signatures):
        reference = MinHash(num_perm=64, seed=7)
        reference.update_batch([s.encode("utf-8") for s in shingles(text, 3)])
        np.testing.assert_array_equal(row, reference.hashvalues)


def test_signatures_cross_chunk_boundaries(monkeypatch):
    import tuneproof.neardup as neardup

    texts = [normalise(f"{BASE} variant {i} " + "word " * i) for i in range(30)]
    hashes = [shingle_hashes(t, 3) for t in texts]
    whole = minhash_signatures(hashes, 32)
    monkeypatch.setattr(neardup, "_CHUNK_SHINGLES", 7)
    np.testing.assert_array_equal(minhash_signatures(hashes, 32), whole)


def test_jaccard():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, set()) == 0.0


def test_clusters_find_edits_and_merge_transitively():
    texts = [
        BASE,                                                        # 0
        "Something else entirely: please cancel my subscription, I no longer use it.",  # 1
        BASE.upper().replace(" ", "  ") + "!!!",                     # 2: case/space/punct of 0
        BASE.replace("monday", "tuesday"),                           # 3: one word changed
        "Where do I change the delivery address of an order I placed yesterday?",  # 4
        "Something else entirely — please CANCEL my subscription; I no longer use it",  # 5 ~ 1
        BASE.replace("monday", "tuesday").replace("could you", "can you"),  # 6: ~3, further from 0
    ]
    result = find_near_duplicates(texts, threshold=0.7, shingle_size=3, num_perm=128)
    assert result.clusters == [[0, 2, 3, 6], [1, 5]]
    assert result.similarity[(0, 2)] == 1.0
    assert all(sim >= 0.7 for sim in result.similarity.values())
    assert near_duplicate_clusters(texts, 0.7, 3, 128) == result.clusters


def test_candidates_are_confirmed_by_exact_jaccard(monkeypatch):
    import tuneproof.neardup as neardup

    # Make LSH propose every pair: only pairs with exact Jaccard >= threshold may be merged.
    monkeypatch.setattr(neardup, "lsh_buckets", lambda sig, threshold: [list(range(len(sig)))])
    a = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    b = "alpha beta gamma delta epsilon zeta lambda mu nu xi"
    c = "completely unrelated words in this third text here"
    sim = jaccard(set(shingles(a, 2)), set(shingles(b, 2)))
    assert sim == pytest.approx(5 / 13)
    result = find_near_duplicates([a, b, c], threshold=0.5, shingle_size=2, num_perm=128)
    assert result.candidates == 3 and result.clusters == [] and result.similarity == {}
    result = find_near_duplicates([a, b, c], threshold=0.35, shingle_size=2, num_perm=128)
    assert result.clusters == [[0, 1]] and result.similarity == {(0, 1): pytest.approx(5 / 13)}


def test_distinct_texts_are_not_merged_and_result_is_deterministic():
    texts = [f"ticket {i}: the {w} arrived {d} and I would like {x}" for i, (w, d, x) in enumerate(
        [("blender", "broken", "a refund"), ("lamp", "late", "to cancel"), ("chair", "scratched", "help")])]
    assert near_duplicate_clusters(texts, 0.8, 3, 128) == []
    many = [BASE + f" ref {i % 5}" for i in range(40)]
    first = near_duplicate_clusters(many, 0.5, 3, 64, seed=3)
    assert first == near_duplicate_clusters(many, 0.5, 3, 64, seed=3)
    assert first == [list(range(40))]


def test_degenerate_inputs():
    assert near_duplicate_clusters([], 0.8, 3, 64) == []
    assert near_duplicate_clusters(["only one"], 0.8, 3, 64) == []
    assert near_duplicate_clusters(["!!!", "...", "x"], 0.8, 3, 64) == [[0, 1]]  # both normalise to ""
    with pytest.raises(ValueError):
        near_duplicate_clusters(["a", "b"], 0.0, 3, 64)


def test_copies_in_one_bucket_are_checked_linearly_not_quadratically():
    result = find_near_duplicates(["the very same ticket text, again and again"] * 50, 0.8, 3, 64)
    assert result.clusters == [list(range(50))]
    assert result.candidates == 49  # each copy joined once; 1225 pairs would be checked without union-find


def test_lsh_buckets_equal_datasketch_index():
    from datasketch import LeanMinHash, MinHashLSH

    from tuneproof.neardup import LSH_WEIGHTS, lsh_buckets

    texts = [normalise(BASE.replace("monday", day)) for day in ("monday", "tuesday", "friday", "sunday")]
    texts += [normalise(f"unrelated ticket number {i} about a broken kettle and a refund") for i in range(6)]
    texts += [texts[0], texts[4]]
    signatures = minhash_signatures([shingle_hashes(t, 3) for t in texts], num_perm=64, seed=1)
    lsh = MinHashLSH(threshold=0.6, num_perm=64, weights=LSH_WEIGHTS)
    with lsh.insertion_session() as session:
        for i, row in enumerate(signatures):
            session.insert(i, LeanMinHash(seed=1, hashvalues=row, scheme="affine32"))
    reference = sorted({tuple(sorted(table.get(key))) for table in lsh.hashtables
                        for key, count in table.itemcounts().items() if count > 1})
    assert [tuple(b) for b in lsh_buckets(signatures, 0.6)] == reference
    assert (0, 10) in reference  # the copy shares every bucket with its original


def test_threshold_one_groups_identical_shingle_sets_only():
    """1.0 is in the documented range; datasketch's LSH cannot band at it, so it takes an exact path."""
    texts = [BASE, BASE.upper() + "!", BASE + " please", "short one", "Short one."]
    assert near_duplicate_clusters(texts, 1.0, 3, 128) == [[0, 1], [3, 4]]
