"""The verdicts compare can give, and what to do next after each (tuneproof/verdict.py decides).

Kept apart from the decision so the advice can be read and edited on its own; the keys of
NEXT_STEPS are verdicts or the names of checks whose FAIL blocks a release.
"""

from __future__ import annotations

SHIP, DONT_SHIP, PROMPT_SUFFICES, USE_RAG = "SHIP", "DON'T SHIP", "PROMPT SUFFICES", "USE RAG"
INSUFFICIENT_EVIDENCE, FINETUNE_FAILED, NO_SKILL = "INSUFFICIENT EVIDENCE", "FINE-TUNE FAILED", "NOTHING BEATS TRIVIAL"
PASS, FAIL, WARN, NA = "PASS", "FAIL", "WARN", "N/A"  # check statuses
FORGETTING_UNCHECKED = "forgetting unchecked: no probe results (run the probe stage)"


def check(name: str, status: str, evidence: str, **data) -> dict:
    """One check of the verdict: its status, the evidence in words, and its numbers."""
    return {"name": name, "status": status, "evidence": evidence, **data}


NEXT_STEPS = {
    "leakage": "Remove the leaked test records from training (re-run dedup/split with a lower split.group_threshold), "
               "then retrain: every number above is inflated until then.",
    INSUFFICIENT_EVIDENCE: "Label more test records: about {n_needed} are needed (raise split.test_ratio or add data); "
                           "until then no verdict on fine-tuning vs prompting can be told from noise.",
    FINETUNE_FAILED: "The fine-tune did not learn the task (see the learnt check): read the loss and val curves "
                     "(`dvc plots show`), then try another learning rate / more steps (`dvc exp run -S "
                     "train.learning_rate=... -S train.max_steps=...`, or the sweep in README) and check the labels "
                     "and their balance (train.balance); no verdict on fine-tuning vs prompting is possible until a "
                     "run learns.",
    NO_SKILL: "Neither prompting nor the fine-tune beats a trivial reference (see beats_trivial): serve that simple "
              "classifier (or the constant answer) if it is good enough, or fix the data (label correctness, label "
              "balance, inputs that carry the signal) before prompting or fine-tuning again.",
    PROMPT_SUFFICES: "Serve the best prompted strategy. If the target is not met yet, improve the prompt and the few-shot "
                     "pool first; fine-tune only once the data covers what prompting cannot (check label balance and "
                     "label correctness on the errors in the samples below).",
    USE_RAG: "Put the facts in a retrieval index (the training completions are a start) and prompt with retrieved "
             "context; fine-tuning teaches format and style, not new facts. Fine-tune afterwards only for the format.",
    "forgetting": "Mix the base model's own general answers into training (`train.replay: 0.2`; on sms_spam it cut "
                  "KL from 1.68 to 0.13 at the same task score, bench/RESULTS.md), prefer LoRA over full "
                  "fine-tuning, lower the rank or learning rate; then re-check the probe.",
    "probe": "Run the probe stage (`dvc repro probe`): a fine-tune whose forgetting was never measured does not ship.",
    "majority_label": "Balance the training labels (oversample the minority classes or cap the majority one) and check "
                      "the minority labels are right; an accuracy on an imbalanced test set hides a constant answer, "
                      "so read macro_f1 beside it.",
    "overfitting": "Add more varied training examples (coverage of phrasings and labels) and fix inconsistent labels "
                   "before training longer; early stopping already keeps the best step.",
    "drift": "Sample the test set from production (label a random sample of real production prompts, leaving out "
             "near-copies of train prompts) and re-run: the test set does not represent production (see the drift "
             "check's separating terms), so no score here predicts how the model does there.",
    SHIP: "Ship the adapter with the model card; keep the test set frozen and re-run this pipeline on new data.",
}


def next_steps(verdict: str, checks: dict[str, dict]) -> list[str]:
    """What to do after `verdict`: for DON'T SHIP, the remedy of every failed check; a failed drift
    check adds its remedy to any verdict (every score was measured off-distribution)."""
    if verdict == DONT_SHIP:
        steps = [NEXT_STEPS[name] for name, c in checks.items() if c["status"] == FAIL and name in NEXT_STEPS]
        if checks["forgetting"]["status"] == NA:
            steps.append(NEXT_STEPS["probe"])
        return steps
    steps = [NEXT_STEPS[verdict].format(n_needed=checks["evidence"]["n_needed"]) if verdict == INSUFFICIENT_EVIDENCE
             else NEXT_STEPS[verdict]]
    if checks.get("drift", {}).get("status") == FAIL:
        steps.append(NEXT_STEPS["drift"])
    return steps
