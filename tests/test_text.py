"""The one text normalisation: invisible characters and look-alike letters hide no copy (issue 13)."""

from __future__ import annotations

from tuneproof.deduplicate import DedupParams, dedup_records
from tuneproof.contamination import max_jaccard
from tuneproof.scoring import extract_label
from tuneproof.text import normalise

PROMPT = "Please send me a refund for the broken kettle I ordered last week"
INVISIBLE = ["\u200b", "\u200d", "\u00ad", "\ufeff", "\u2060"]  # zero-width space/joiner, soft hyphen, BOM, word joiner


def hidden(text: str, mark: str, every: int = 3) -> str:
    """`text` with `mark` after every `every`-th letter: looks identical, compares different."""
    return "".join(ch + (mark if i % every == 2 and ch.isalpha() else "") for i, ch in enumerate(text))


def test_format_characters_are_removed_not_turned_into_spaces():
    for mark in INVISIBLE:
        assert normalise(hidden(PROMPT, mark)) == normalise(PROMPT), repr(mark)


def test_cyrillic_and_greek_look_alikes_read_as_latin():
    assert normalise("Рlеаsе sеnd mе а rеfund") == normalise("Please send me a refund")  # Cyrillic Р е а
    assert normalise("ΡΑΥΡΑL") == "paypal"  # Greek capitals
    assert normalise("Ｐａｙｐａｌ") == "paypal"  # full width, through NFKC


def test_normalise_is_idempotent_on_mixed_input():
    text = hidden("Straße ﬁne, Рауpal_order #12", "\u200b")
    assert normalise(normalise(text)) == normalise(text) == "strasse fine paypal order 12"


def test_dedup_and_the_audit_see_through_invisible_edits():
    """30 hidden copies kept word-shingle Jaccard 0.0 and audit Jaccard ~0.45 on the old normalise."""
    records = [{"id": f"L{i:06d}", "messages": [{"role": "user", "content": text}], "completion": "refund"}
               for i, text in enumerate([PROMPT, *(hidden(PROMPT, mark, every) for mark in INVISIBLE
                                                    for every in (2, 3, 4, 5, 6, 7))], 1)]
    result = dedup_records(records, DedupParams(truth=None, threshold=0.7, shingle_size=3, num_perm=128))
    assert [r["id"] for r in result.records] == ["L000001"]  # every hidden copy is an exact duplicate
    assert max_jaccard([hidden(PROMPT, "\u200b")], [PROMPT], 5)[0][0] == 1.0  # the split audit


def test_labels_are_found_through_the_same_normalisation():
    assert extract_label("Answer: s\u200bpam", ["ham", "spam"]) == "spam"
    assert extract_label("SPАM", ["ham", "spam"]) == "spam"  # Cyrillic А


def test_answers_compare_without_articles_through_the_same_normalisation():
    from tuneproof.text import normalise_answer

    assert normalise_answer("The  Beatles!") == normalise_answer("beatles") == "beatles"
    assert normalise_answer("Thе Bеatles") == "beatles"  # Cyrillic "е" look-alikes, as everywhere
    assert normalise_answer("A Tale of Two Cities") == "tale of two cities"
    assert normalise_answer("Anne theme") == "anne theme"  # articles only as whole words
