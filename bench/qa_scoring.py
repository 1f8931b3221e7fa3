"""The `exact` scorer on real open-domain QA: strict exact vs lenient vs token-F1 by answer style.

    python bench/qa_scoring.py [../shared/datasets/efficientqa]

No model: joins data.jsonl with meta.jsonl's `answers` into `references` (README's one-liner, here
in a temporary folder), runs dedup and split with their defaults, and scores hand-written answer
styles built from each test record's accepted answers. Also prints compare's answer novelty of
the test set with every accepted form and with the completion only.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuneproof.deduplicate import DedupParams, dedup_records  # noqa: E402
from tuneproof.records import accepted_answers, load_records  # noqa: E402
from tuneproof.scoring import Scorer, ScoreParams  # noqa: E402
from tuneproof.triage import answer_novelty  # noqa: E402
from tuneproof.splitting import SplitParams, split_records  # noqa: E402


def without_references(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "references"}


def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        joined = Path(tmp) / "joined.jsonl"
        with joined.open("w", encoding="utf-8") as out:
            for d, m in zip(open(folder / "data.jsonl"), open(folder / "meta.jsonl"), strict=True):
                out.write(json.dumps({**json.loads(d), "references": json.loads(m)["answers"]}) + "\n")
        records = load_records(joined)
    kept = dedup_records(records, DedupParams(truth=None)).records
    splits = split_records(kept, SplitParams(), None).splits
    train, test = splits["train"], splits["test"]
    multi = [r for r in test if len(accepted_answers(r)) > 1]
    print(f"{len(records)} records, {len(kept)} after dedup; train {len(train)}, test {len(test)} "
          f"({len(multi)} with more than one accepted answer)")

    rng = random.Random(0)
    pool = [r["completion"] for r in test]

    def wrong(record: dict) -> str:  # another test record's answer, not one of this record's
        return next(a for a in iter(lambda: rng.choice(pool), None) if a not in accepted_answers(record))

    styles = {
        "the completion": lambda r: r["completion"],
        "another accepted form": lambda r: accepted_answers(r)[-1],
        "'The answer is X.'": lambda r: f"The answer is {r['completion']}.",
        "question echoed, then X": lambda r: f"{r['messages'][0]['content'].capitalize()}? It is {r['completion']}.",
        "a wrong answer": wrong,
        "hedge: 'X or <wrong>'": lambda r: f"{r['completion']} or {wrong(r)}",
        "'I don't know.'": lambda r: "I don't know.",
    }
    scorer = Scorer(ScoreParams(kind="exact", primary="lenient", fields=[], style={}))
    print("\n| answer style | exact (all accepted) | exact (completion only) | lenient | token_f1 |\n|---|---|---|---|---|")
    for name, make in styles.items():
        answers = [make(r) for r in test]
        agg = scorer.aggregate([scorer.row(r, a) for r, a in zip(test, answers)])
        only = scorer.aggregate([scorer.row(without_references(r), a) for r, a in zip(test, answers)])
        print(f"| {name} | {agg['exact']:.3f} | {only['exact']:.3f} | {agg['lenient']:.3f} | {agg['token_f1']:.3f} |")
    listed = scorer.aggregate([scorer.row(r, " or ".join(accepted_answers(r)[:2])) for r in multi])
    print(f"\ntwo accepted forms listed ('A or B'), on the {len(multi)} multi-answer records: exact {listed['exact']:.3f}, "
          f"lenient {listed['lenient']:.3f}, token_f1 {listed['token_f1']:.3f}")

    novel = answer_novelty(test, train)
    novel_only = answer_novelty([without_references(r) for r in test], train)
    print(f"answer novelty of test: {sum(novel.values()) / len(test):.3f} with every accepted form, "
          f"{sum(novel_only.values()) / len(test):.3f} with the completion only")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets" / "efficientqa")
