"""Leak grouping on short texts: planted near-copies vs distinct questions that share a template.

    python bench/grouping.py [DATASETS]  # generated questions, then DATASETS/* if present (default ../shared/datasets)

Generates 5-12-word questions from templates with rare slot words (made-up names), then plants:
  * one-word edits (a synonym, or an inserted word) and two-word edits of 300 of them;
  * paraphrase-like reorderings ("Who was the lawyer for X?" / "Who was X's lawyer?").
For each grouping it prints the share of planted pairs put in one leak group (they can then never
straddle train and test: goal >= 0.95) and the share of distinct template-sharing pairs grouped
(goal <= 0.05), how a 243-record "What is the capital of X?" set splits at 0.8/0.1/0.1, and how
many planted pairs the split audit (character 5-gram Jaccard >= 0.8) would catch on its own.
Groupings, side by side on the same texts: the old default (word-shingle Jaccard, single
linkage), TF-IDF cosine with single linkage, complete and average linkage (scipy, inside each
single-linkage component), and single linkage capped at `split.group_max_size` records.

Then, for each dataset in DATASETS/{banking77,sms_spam,efficientqa} (skipped when
absent), the old and the new default after dedup, at params.yaml's split ratios: the largest
group, records in groups of 2+, train/val/test, the TF-IDF >= 0.55 pairs that straddle two
splits, and the audit's verdict (with its report-only count of val/test prompts that have a
TF-IDF >= 0.55 near-copy in train).
"""

from __future__ import annotations

import random
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402
from scipy.sparse.csgraph import connected_components  # noqa: E402
from scipy.sparse import coo_matrix  # noqa: E402

from tuneproof.contamination import char_ngrams  # noqa: E402
from tuneproof.deduplicate import DedupParams, dedup_records  # noqa: E402
from tuneproof.leak_audit import audit_split  # noqa: E402
from tuneproof.params import load_section  # noqa: E402
from tuneproof.records import leak_text, load_records  # noqa: E402
from tuneproof.similar import similar_pairs, tfidf_vectors  # noqa: E402
from tuneproof.splitting import SplitParams, assign_splits, leak_groups, split_records  # noqa: E402

LABEL_FIELD = {"banking77": "completion", "sms_spam": "completion", "efficientqa": None}  # README's task.label_field

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


def linkage_groups(texts: list[str], threshold: float, method: str) -> list[int]:
    """Complete or average linkage on the exact TF-IDF similarities inside each single-linkage
    component, cut at `threshold` (a bench-only alternative to the cap)."""
    pairs = similar_pairs(texts, threshold)
    rows, cols = (np.array([p[:2] for p in pairs]).T if pairs else (np.zeros(0, int), np.zeros(0, int)))
    _, component = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts),) * 2))
    vectors = tfidf_vectors(texts)
    groups = np.zeros(len(texts), dtype=int)
    next_id = 0
    for members in (np.flatnonzero(component == c) for c in np.unique(component)):
        if len(members) > 1:
            sims = sum((v[members] @ v[members].T).toarray() for v in vectors) / len(vectors)
            distance = np.clip(1.0 - sims, 0.0, None)[np.triu_indices(len(members), 1)]
            labels = fcluster(linkage(distance, method), t=1.0 - threshold + 1e-9, criterion="distance")
        else:
            labels = np.ones(1, dtype=int)
        groups[members] = labels + next_id
        next_id += labels.max() + 1
    return groups.tolist()


def group(texts: list[str], how: tuple) -> list[int]:
    measure, threshold, link = how
    if link in ("complete", "average"):
        return linkage_groups(texts, threshold, link)
    return leak_groups(texts, threshold, 3, 128, measure, link)


def capitals_split(how: tuple) -> dict[str, int]:
    rng = random.Random(1)
    texts = [f"What is the capital of {rare_name(rng)}?" for _ in range(243)]
    splits = assign_splits([None] * len(texts), group(texts, how), 0.1, 0.1, 0)
    return {s: splits.count(s) for s in ("train", "val", "test")}


def audit_catches(texts: list[str], planted) -> float:
    """Share of planted pairs at or above the audit's default character 5-gram Jaccard (0.8)."""
    grams = [set(char_ngrams(t, 5)) for t in texts]
    return sum(len(grams[i] & grams[j]) / len(grams[i] | grams[j]) >= 0.8 for i, j, _ in planted) / len(planted)


def real_data(datasets: Path, name: str, params: SplitParams) -> str:
    records = dedup_records(load_records(datasets / name / "data.jsonl"), DedupParams(truth=None)).records
    result = split_records(records, params, LABEL_FIELD[name])
    where = {id(r): s for s, rs in result.splits.items() for r in rs}
    straddle = sum(where[id(records[i])] != where[id(records[j])]
                   for i, j, _ in similar_pairs([leak_text(r) for r in records], 0.55))
    sizes = [result.groups.count(g) for g in set(result.groups)]
    completion = params.audit_completion_threshold if LABEL_FIELD[name] is None else None
    audit = audit_split(result.splits, params.audit_ngram, params.audit_threshold, completion, params.audit_top,
                        near_threshold=0.55)
    counts = " / ".join(str(len(result.splits[s])) for s in ("train", "val", "test"))
    return (f"{max(sizes):>8d} {sum(n for n in sizes if n > 1):>9d} {counts:>18s} {straddle:>9d}   "
            f"{'pass' if audit['pass'] else 'FAIL'} (prompt {audit['prompt']['leaks']}, completion "
            f"{audit['completion']['leaks']}; TF-IDF near-copies listed {audit['prompt_near']['near_copies']})")


HOWS = [("shingles", 0.4, None), ("tfidf", 0.55, None), ("tfidf", 0.55, "complete"), ("tfidf", 0.55, "average"),
        ("tfidf", 0.5, 50), ("tfidf", 0.55, 25), ("tfidf", 0.55, 50), ("tfidf", 0.55, 100), ("tfidf", 0.6, 50)]


def label(how: tuple) -> str:
    measure, threshold, link = how
    return f"{measure} {threshold} " + ("single" if link is None else link if isinstance(link, str) else f"cap {link}")


def main(datasets: Path) -> None:
    texts, planted, distinct = generate()
    print(f"bench/grouping: {len(texts)} questions, {len(planted)} planted near-copy pairs "
          f"(one-word edits, two-word edits, reorderings), {len(distinct)} distinct template-sharing pairs; "
          f"the audit alone (char 5-gram Jaccard >= 0.8) catches {audit_catches(texts, planted):.3f} of the planted pairs\n")
    print(f"{'grouping':26s} {'planted grouped':>16s} {'(1 / 2 / reorder)':>20s} {'distinct grouped':>17s} "
          f"{'capitals 243 -> train/val/test':>31s}")
    for how in HOWS:
        recall, by_kind, false = grouping_figures(group(texts, how), planted, distinct)
        capitals = capitals_split(how)
        kinds = " / ".join(f"{by_kind[k]:.2f}" for k in ("one", "two", "reorder"))
        print(f"{label(how):26s} {recall:16.3f} {kinds:>20s} {false:17.3f} "
              f"{capitals['train']:>17d} / {capitals['val']} / {capitals['test']}")
    defaults = load_section(SplitParams, "split", ROOT / "params.yaml")
    old = replace(defaults, group_measure="shingles", group_threshold=0.4, group_max_size=None)
    for name in LABEL_FIELD:
        if not (datasets / name / "data.jsonl").is_file():
            print(f"\n{name}: skipped, {datasets / name} is absent")
            continue
        print(f"\n{name} (after dedup; val {defaults.val_ratio}, test {defaults.test_ratio}):\n"
              f"{'default':26s} {'largest':>8s} {'in 2+':>9s} {'train/val/test':>18s} {'straddle':>9s}   audit")
        for title, params in (("old: " + label(("shingles", 0.4, None)), old),
                              ("new: " + label((defaults.group_measure, defaults.group_threshold,
                                                defaults.group_max_size)), defaults)):
            print(f"{title:26s} {real_data(datasets, name, params)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets")
