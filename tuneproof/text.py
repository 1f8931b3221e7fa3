"""The one text normalisation: dedup, leak grouping, the split audit, compare's leakage re-check and
label scoring all compare texts through `normalise`, so a trick that hides a copy from one hides
it from none.

  1. NFKC: compatibility forms (full-width letters, ligatures) become their plain letters.
  2. Unicode format characters (category Cf: zero-width space and joiners, soft hyphen, BOM) are
     removed, not turned into spaces: they are invisible and must not split a word in two.
  3. Look-alike Cyrillic and Greek letters become the Latin letter they are drawn as (Unicode
     TR39 confusables for the two scripts that share Latin's shapes), so "pаypal" with a
     Cyrillic "а" is "paypal".
  4. casefold, punctuation and "_" to spaces (so "end.Next" stays two words), single spaces.
Idempotent: normalise(normalise(t)) == normalise(t).

`normalise_answer` is the SQuAD answer normalisation built on it: the articles a/an/the are also
dropped, so "The Beatles" is "beatles". It differs from the SQuAD script only where `normalise`
does: punctuation separates words instead of joining them ("U.S." is "u s", the same on both sides).
"""

from __future__ import annotations

import re
import unicodedata

# TR39 confusables whose prototype is a Latin letter, Cyrillic and Greek (upper and lower case).
CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "ѕ": "s", "т": "t", "у": "y", "х": "x", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "Һ": "H", "І": "I", "Ї": "I", "Ј": "J", "К": "K", "М": "M",
    "Н": "H", "О": "O", "Р": "P", "С": "C", "Ѕ": "S", "Т": "T", "У": "Y", "Х": "X", "Ԁ": "D", "Ԛ": "Q",
    "Ԝ": "W",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_PUNCT = re.compile(r"[^\w\s]+|_+")  # runs of punctuation, plus "_" (a \w char that reads as punctuation)
_SPACE = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalise(text: str) -> str:
    """Canonical form of `text` for every comparison (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = text.translate(CONFUSABLES).casefold()
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def normalise_answer(text: str) -> str:
    """`normalise`, then without the articles a/an/the (SQuAD): the form answers are compared in."""
    return _SPACE.sub(" ", _ARTICLES.sub(" ", normalise(text))).strip()


def excerpt(text: str, chars: int) -> str:
    """`text` on one line, cut to `chars` characters (an ellipsis marks the cut): for messages."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"
