"""Leak grouping on short texts: planted near-copies vs distinct questions that share a template.

    python bench/grouping.py

Generates 5-12-word questions from templates with rare slot words (made-up names), then plants:
  * one-word edits (a synonym, or an inserted word) and two-word edits of 300 of them;
  * paraphrase-like reorderings ("Who was the lawyer for X?" / "Who was X's lawyer?").
For each measure it prints the share of planted pairs put in one leak group (they can then never
straddle train and test: goal >= 0.95) and the share of distinct template-sharing pairs grouped
(goal <= 0.05), and how a 243-record "What is the capital of X?" set splits at 0.8/0.1/0.1.
Measures: today's word-shingle Jaccard (split.group_measure: shingles) and TF-IDF cosine
(split.group_measure: tfidf) at several thresholds, side by side on the same texts.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.split import assign_splits, leak_groups  # noqa: E402

TEMPLATES = [  # (form, reordered form or None); {a} and {b} take rare names
    ("What is the capital of {a}?", "{a} has which city as its capital?"),
    ("Who wrote the novel {a}?", "The novel {a} was written by whom?"),
    ("When was {a} born?", "In what year was {a} born?"),
    ("Who was the lawyer for {a}?", "Who was {a}'s lawyer?"),
    ("How many people live in {a}?", "What is the population of {a}?"),
    ("What language is spoken in {a}?", "In {a}, which language do people speak?"),
    ("Which river flows through the city of {a}?", "The city of {a} lies on which river?"),
    ("Who directed the film {a}?", "The film {a} was directed by whom?"),
    ("What is the currency of {a}?", "Which currency is used in {a}?"),
    ("In which year did {a} win the {b} cup?", "When did {a} win the {b} cup?"),
    ("What does the word {a} mean in {b}?", "In {b}, what is the meaning of the word {a}?"),
    ("Where did {a} and {b} first meet?", "{a} and {b} first met where?"),
]
SYNONYMS = {"what": "which", "wrote": "penned", "novel": "book", "film": "movie", "people": "residents",
            "live": "reside", "capital": "main city", "flows": "runs", "first": "initially", "city": "town",
            "spoken": "used", "year": "season", "mean": "signify", "directed": "made", "born": "delivered"}
FILLERS = ["actually", "exactly", "really", "originally", "officially", "roughly"]


SYLLABLES = ["zor", "vath", "kel", "mor", "ia", "tun", "dra", "phel", "os", "quin", "bar", "lix", "ne", "ustr",
             "gal", "rin", "tho", "vek", "sal", "dun", "mir", "kap", "jo", "fen"]


def rare_name(rng: random.Random) -> str:
    """A made-up name (~340k possible): two questions about one name are one subject."""
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))).title()


def one_edit(text: str, rng: random.Random) -> str:
    words = text.split()
    swappable = [i for i, w in enumerate(words) if w.lower().strip("?") in SYNONYMS]
    if swappable and rng.random() < 0.5:
        i = rng.choice(swappable)
        word = words[i].lower().strip("?")
        words[i] = SYNONYMS[word] + ("?" if words[i].endswith("?") else "")
    else:
        words.insert(rng.randint(1, len(words) - 1), rng.choice(FILLERS))
    return " ".join(words)


def generate(n_base: int = 2000, n_planted: int = 300, seed: int = 0):
    """(texts, planted index pairs, distinct template-sharing index pairs)."""
    rng = random.Random(seed)
    texts, template_of, slots = [], [], []
    for _ in range(n_base):
        t = rng.randrange(len(TEMPLATES))
        a, b = rare_name(rng), rare_name(rng)
        texts.append(TEMPLATES[t][0].format(a=a, b=b))
        template_of.append(t)
        slots.append((a, b))
    planted = []
    for i in rng.sample(range(n_base), n_planted):
        kind = rng.choice(["one", "two", "reorder"])
        if kind == "reorder":
            variant = TEMPLATES[template_of[i]][1].format(a=slots[i][0], b=slots[i][1])
        else:
            variant = one_edit(texts[i], rng)
            if kind == "two":
                variant = one_edit(variant, rng)
        texts.append(variant)
        planted.append((i, len(texts) - 1, kind))
    same_template = [(i, j) for i, j in (rng.sample(range(n_base), 2) for _ in range(20_000))
                     if template_of[i] == template_of[j]]
    return texts, planted, same_template


def grouping_figures(groups: list[int], planted, distinct) -> tuple[float, dict, float]:
    together = {kind: [groups[i] == groups[j] for i, j, k in planted if k == kind] for kind in ("one", "two", "reorder")}
    recall = sum(map(sum, together.values())) / len(planted)
    false = sum(groups[i] == groups[j] for i, j in distinct) / len(distinct)
    return recall, {k: sum(v) / len(v) for k, v in together.items()}, false


def capitals_split(measure: str, threshold: float) -> dict[str, int]:
    rng = random.Random(1)
    texts = [f"What is the capital of {rare_name(rng)}?" for _ in range(243)]
    groups = leak_groups(texts, threshold, 3, 128, measure)
    splits = assign_splits([None] * len(texts), groups, 0.1, 0.1, 0)
    return {s: splits.count(s) for s in ("train", "val", "test")}


def main() -> None:
    texts, planted, distinct = generate()
    print(f"bench/grouping: {len(texts)} questions, {len(planted)} planted near-copy pairs "
          f"(one-word edits, two-word edits, reorderings), {len(distinct)} distinct template-sharing pairs\n")
    print(f"{'measure':22s} {'planted grouped':>16s} {'(1 / 2 / reorder)':>20s} {'distinct grouped':>17s} "
          f"{'capitals 243 -> train/val/test':>31s}")
    for measure, threshold in [("shingles", 0.4), ("tfidf", 0.5), ("tfidf", 0.55), ("tfidf", 0.6)]:
        groups = leak_groups(texts, threshold, 3, 128, measure)
        recall, by_kind, false = grouping_figures(groups, planted, distinct)
        capitals = capitals_split(measure, threshold)
        kinds = " / ".join(f"{by_kind[k]:.2f}" for k in ("one", "two", "reorder"))
        print(f"{measure + ' ' + str(threshold):22s} {recall:16.3f} {kinds:>20s} {false:17.3f} "
              f"{capitals['train']:>17d} / {capitals['val']} / {capitals['test']}")


if __name__ == "__main__":
    main()
