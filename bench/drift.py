"""The drift check on real data: sms_spam test prompts against banking77 as "production" (another
domain: should fail) and against a held-out slice of sms_spam itself (the same pool: should pass).

    python bench/drift.py [DATASETS]    # DATASETS: the folder of sms_spam/ and banking77/ (default ../shared/datasets)

sms_spam is shuffled (seed 0) into test (500), held-out (1,000) and train (the rest); 1,000
banking77 prompts are sampled (seed 1). Both "production" samples go through the compare stage's
functions at params.yaml's defaults (tuneproof/drift.py): AUC with its CI, the separating terms,
the prompts least like any test prompt, and the overlap with train by the split audit's measure.

Then the CI's calibration under no drift: 20 draws of 150 test and 150 "production" demo tickets
from one generator (demo.support_tickets.make_ticket): the spread of the AUC from draw to draw
against the CI's half-width, and how often the CI covers 0.5.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo.support_tickets import make_ticket  # noqa: E402
from tuneproof.drift import DriftParams, domain_score, drift_check, production_overlap  # noqa: E402
from tuneproof.records import load_prompts, load_records  # noqa: E402

AUDIT = {"ngram": 5, "prompt": {"threshold": 0.8}}  # params.yaml's split.audit_ngram / audit_threshold


def main(datasets: Path) -> None:
    sms = load_records(datasets / "sms_spam" / "data.jsonl")
    random.Random(0).shuffle(sms)
    test, held_out, train = sms[:500], sms[500:1500], sms[1500:]
    banking = random.Random(1).sample(load_prompts(datasets / "banking77" / "data.jsonl", ""), 1000)
    params = DriftParams()
    for name, production in (("banking77", banking), ("sms_spam held-out", held_out)):
        start = time.perf_counter()
        score = domain_score(test, production, params, 10_000, 0.95, 0)
        check = drift_check(score, params, 0.95)
        overlap = production_overlap(production, train, AUDIT)
        print(f"{name}: {check['status']}, AUC {score.auc:.3f} [{score.ci_low:.3f}, {score.ci_high:.3f}] "
              f"({time.perf_counter() - start:.1f} s)")
        for side in ("production", "test"):
            print(f"  terms toward {side}: " + ", ".join(t["term"] for t in score.terms[side][:8]))
        print("  least like test: " + " | ".join(u["text"][:50] for u in score.unlike[:3]))
        print(f"  overlap with train: {overlap['status']}, {overlap['copies']} near-copies, max {overlap['max']:.2f}")

    draws = []
    for seed in range(20):
        rng = random.Random(seed)
        tickets = [{"id": f"L{i:06d}", "messages": [{"role": "user", "content": make_ticket(rng)["prompt"]}]}
                   for i in range(300)]
        score = domain_score(tickets[:150], tickets[150:], params, 2000, 0.95, 0)
        draws.append((score.auc, score.ci_low, score.ci_high))
    auc, low, high = np.array(draws).T
    print(f"no drift, 20 draws of 150 vs 150: AUC mean {auc.mean():.3f}, sd {auc.std():.3f}, max {auc.max():.3f}; "
          f"CI half-width mean {((high - low) / 2).mean():.3f}; CI covers 0.5 in {((low < 0.5) & (high > 0.5)).mean():.0%}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "datasets")
