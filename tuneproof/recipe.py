"""The fine-tune recipe: every train knob left at `auto` is sized from the data, not the demo.

Two presets (params.yaml `train.preset`):
  * `data` - what any user's data gets: LoRA on every linear layer, a learning rate scaled to the
             model's width, epochs from the train size (capped in examples on CPU), about six
             validations per run so early stopping can act, and minority labels oversampled.
  * `demo` - the CPU-budget recipe measured on the bundled support-ticket demo (bench/RESULTS.md).
`auto` picks `demo` only when paths.raw is byte for byte the bundled demo file (its sha256 is
recorded in the demo's planted-duplicate file), so a user who swaps the data never runs the
demo's recipe silently. An explicit value of a knob always wins over the preset.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Sequence

from tuneproof.io import read_json, sha256_file

AUTO = "auto"
DEMO_TRUTH = Path("data/raw/planted_duplicates.json")  # written by tuneproof.demo_data beside the demo file

DEMO = {"learning_rate": 3.0e-3, "max_steps": 64, "num_epochs": 1.0, "max_examples": None, "eval_steps": 32,
        "val_records": 8, "balance": "none", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "group_by_length": True}

# LoRA's usual 2e-4 (and full fine-tuning's 1e-5) hold for 4096-wide models; narrower models take
# larger steps, as in muP-style width scaling: lr ~ 1/sqrt(width).
REFERENCE_WIDTH = 4096
LORA_LR, FULL_LR = 2e-4, 1e-5
CPU_MAX_EXAMPLES = 768      # training examples seen on CPU (~15 minutes for short prompts on 2 cores) ...
CPU_EXAMPLES_PER_LABEL = 24  # ... or this many per label if more: 768 examples are 10 per intent of banking77's 77
EVALS_PER_RUN = 6           # validations per run: early stopping (patience 3) can act on the second half
DATA_VAL_RECORDS = 64       # validation records decoded at each validation (the checkpoint's score)


def is_demo_data(raw_path: str | Path, truth_path: str | Path = DEMO_TRUTH) -> bool:
    """Is `raw_path` the bundled demo file, unchanged?"""
    truth_path = Path(truth_path)
    if not truth_path.is_file() or not Path(raw_path).is_file():
        return False
    return read_json(truth_path).get("raw_sha256") == sha256_file(raw_path)


def epochs_for(n_train: int) -> float:
    """Passes over the train split: small sets need more passes to be learnt, large ones fewer."""
    return 3.0 if n_train <= 1000 else 2.0 if n_train <= 5000 else 1.0


def learning_rate_for(method: str, hidden_size: int | None) -> float:
    base = FULL_LR if method == "full" else LORA_LR
    width = hidden_size or REFERENCE_WIDTH
    return float(f"{base * math.sqrt(REFERENCE_WIDTH / width):.2g}")


def data_preset(method: str, n_train: int, on_cpu: bool, hidden_size: int | None, n_labels: int) -> dict:
    """The data-sized defaults for a train split of `n_train` records with `n_labels` labels (0: none)."""
    cpu_cap = max(CPU_MAX_EXAMPLES, CPU_EXAMPLES_PER_LABEL * n_labels)
    return {"learning_rate": learning_rate_for(method, hidden_size), "max_steps": None,
            "num_epochs": epochs_for(n_train), "max_examples": cpu_cap if on_cpu else None,
            "eval_steps": None,  # from the step count: see steps_and_eval_cadence
            "val_records": DATA_VAL_RECORDS, "balance": "sqrt" if n_labels else "none",
            "target_modules": "all-linear",
            # Random batches: grouped by length, sms_spam's batches came out nearly all ham or all spam
            # (spam runs longer) and the model swung between the two (val accuracy 0.89 -> 0.11).
            "group_by_length": False}


def steps_and_eval_cadence(n_examples: int, epochs: float, max_examples: int | None,
                           effective_batch: int) -> tuple[int, int]:
    """(optimizer steps, steps between validations) for a run over `n_examples` records."""
    seen = math.ceil(epochs * n_examples)
    if max_examples is not None:
        seen = min(seen, max_examples)
    steps = max(1, math.ceil(seen / effective_batch))
    return steps, max(1, steps // EVALS_PER_RUN)


def balance_repeats(labels: Sequence[str | None], mode: str) -> dict[str, int]:
    """How often each label's records are repeated in the train set: `sqrt` repeats a class
    round(sqrt(majority / class)) times (88/12 becomes ~71/29: the minority is learnt, the prior is
    not forgotten), `full` round(majority / class) times, `none` once."""
    counts = Counter(str(label) for label in labels if label is not None)
    if mode == "none" or not counts:
        return {label: 1 for label in counts}
    top = max(counts.values())
    power = 0.5 if mode == "sqrt" else 1.0
    return {label: max(1, round((top / n) ** power)) for label, n in sorted(counts.items())}


REPLAY_MAX_NEW_TOKENS = 96  # tokens of each replayed general answer (the probe's own budget is 64)


def replay_records(model, tokenizer, prompts_file: str | Path, n: int, seed: int, batch_size: int) -> list[dict]:
    """`n` general examples: prompts of `prompts_file` (seeded order, cycled) with the base model's
    own greedy answers under the chat template's default system prompt. Trained beside the task,
    they pull the fine-tune back toward the base on everything but the task, with no outside data."""
    import random

    from tuneproof.generation import generate
    from tuneproof.io import TuneproofError, read_jsonl
    from tuneproof.predict import build_prompts

    rows = read_jsonl(prompts_file)
    if not rows or not all(isinstance(r.get("prompt"), str) and r["prompt"].strip() for r in rows):
        raise TuneproofError(f"{prompts_file}: train.replay_prompts needs lines of {{\"prompt\": \"...\"}}")
    random.Random(seed).shuffle(rows)
    records = [{"id": f"R{i:06d}", "messages": [{"role": "user", "content": r["prompt"]}]} for i, r in enumerate(rows, 1)]
    answers = generate(model, tokenizer, build_prompts(tokenizer, records, None), REPLAY_MAX_NEW_TOKENS,
                       batch_size, True, desc="replay answers")
    # An empty answer (the base ends its turn at once) is the base's behaviour too: it is replayed as is.
    answered = [{**r, "completion": a.strip()} for r, a in zip(records, answers)]
    return [answered[i % len(answered)] for i in range(n)]


def balanced(records: Sequence[dict], labels: Sequence[str | None], repeats: dict[str, int]) -> list[dict]:
    """`records` with each one repeated by its label's factor (unlabelled records once), in order."""
    out: list[dict] = []
    for record, label in zip(records, labels):
        out.extend([record] * (repeats.get(str(label), 1) if label is not None else 1))
    return out
