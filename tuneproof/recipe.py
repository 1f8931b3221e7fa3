"""The fine-tune recipe: every train knob left at `auto` is sized from the data, not the demo.

Two presets (params.yaml `train.preset`):
  * `data` - what any user's data gets: LoRA on every linear layer, a learning rate scaled to the
             model's width, epochs from the train size (capped in examples on CPU), about six
             validations per run so early stopping can act, and minority labels oversampled.
  * `demo` - the CPU-budget recipe measured on the bundled support-ticket demo (bench/RESULTS.md).
`auto` picks `demo` only when paths.raw is byte for byte the bundled demo file (its sha256 is
recorded in the demo's planted-duplicate file), so a user who swaps the data never runs the
demo's recipe silently. An explicit value of a knob always wins over the preset
(`resolve_params`). Also here: oversampling minority labels and replaying the base model's own
general answers beside the task's examples (train.balance, train.replay).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path
from typing import Sequence

from tuneproof.io import TuneproofError, read_json, sha256_file
from tuneproof.train_config import TrainParams

AUTO = "auto"
DEMO_TRUTH = Path("data/raw/planted_duplicates.json")  # written by demo/support_tickets.py beside the demo file

DEMO = {"learning_rate": 3.0e-3, "max_steps": 64, "num_epochs": 1.0, "max_examples": None, "eval_steps": 32,
        "val_records": 8, "balance": "none", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "group_by_length": True}

# LoRA's usual 2e-4 (and full fine-tuning's 1e-5) hold for 4096-wide models; narrower models take
# larger steps, as in muP-style width scaling: lr ~ 1/sqrt(width).
REFERENCE_WIDTH = 4096
LORA_LR, FULL_LR = 2e-4, 1e-5
CPU_MAX_EXAMPLES = 768      # training examples seen on CPU (its time budget: bench/RESULTS.md) ...
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


def model_width(base_dir: str | Path) -> int | None:
    """The model's hidden size from its config.json (None when unknown), which scales the learning rate."""
    config = Path(base_dir) / "config.json"
    return read_json(config).get("hidden_size") if config.is_file() else None


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


def template_default_system(tokenizer) -> str | None:
    """The system prompt the chat template inserts when a conversation brings none (SmolLM2: "You
    are a helpful AI assistant ..."), or None when the template inserts none or it cannot be told
    apart. Checked by rendering: with it, the prompt is byte-identical to the one without."""
    from tuneproof.prompting import render_prompt

    user = [{"role": "user", "content": "?"}]
    bare, marker = render_prompt(tokenizer, user), "\x00system\x00"
    framed = render_prompt(tokenizer, [{"role": "system", "content": marker}, *user])
    head, _, tail = framed.partition(marker)
    if not (bare.startswith(head) and bare.endswith(tail)) or len(bare) <= len(head) + len(tail):
        return None
    default = bare[len(head):len(bare) - len(tail)]
    return default if render_prompt(tokenizer, [{"role": "system", "content": default}, *user]) == bare else None


def replay_records(model, tokenizer, prompts_file: str | Path, n: int, seed: int, batch_size: int) -> list[dict]:
    """`n` general examples: prompts of `prompts_file` (seeded order, cycled), each with an answer
    *sampled* from the base model (temperature 1) under the chat template's default system prompt,
    which the records carry, so training does not put the task's system prompt on them.

    Why sampled: the cross-entropy of the tuned model on the base model's own samples is, in
    expectation, KL(base || tuned) plus a constant - the probe's forgetting measure - so replay
    pulls the fine-tune back toward the base. Greedy answers are the base's mode, not its
    distribution: training on them sharpens it (measured: more forgetting, bench/RESULTS.md), and a
    cycled prompt would repeat one identical answer; each sample differs."""
    import random

    import torch

    from tuneproof.io import read_jsonl
    from tuneproof.predict import build_prompts
    from tuneproof.progress import progress

    rows = read_jsonl(prompts_file)
    if not rows or not all(isinstance(r.get("prompt"), str) and r["prompt"].strip() for r in rows):
        raise TuneproofError(f"{prompts_file}: train.replay_prompts needs lines of {{\"prompt\": \"...\"}}")
    random.Random(seed).shuffle(rows)
    default = template_default_system(tokenizer)
    system = [{"role": "system", "content": default}] if default is not None else []
    records = [{"id": f"R{i:06d}", "messages": [*system, {"role": "user", "content": rows[(i - 1) % len(rows)]["prompt"]}]}
               for i in range(1, n + 1)]
    prompts = build_prompts(tokenizer, records, None)
    torch.manual_seed(seed)
    answers: list[str] = []
    for start in progress(range(0, len(prompts), batch_size), desc="replay answers", unit="batch"):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)  # load_model puts it on the GPU when there is one
        with torch.inference_mode():
            out = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=REPLAY_MAX_NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    # An empty answer (the base ends its turn at once) is the base's behaviour too: it is replayed as is.
    return [{**r, "completion": a.strip()} for r, a in zip(records, answers)]


def balanced(records: Sequence[dict], labels: Sequence[str | None], repeats: dict[str, int]) -> list[dict]:
    """`records` with each one repeated by its label's factor (unlabelled records once), in order."""
    out: list[dict] = []
    for record, label in zip(records, labels):
        out.extend([record] * (repeats.get(str(label), 1) if label is not None else 1))
    return out


def resolve_params(params: TrainParams, train_labels: Sequence[str | None], on_cpu: bool,
                   hidden_size: int | None, demo_data: bool) -> tuple[TrainParams, dict]:
    """`params` with every `auto` knob filled from the preset, and what was chosen and why
    (recorded in the adapter's provenance file, config.ADAPTER_INFO, and printed)."""
    preset = params.preset if params.preset != "auto" else ("demo" if demo_data else "data")
    n_labels = len({label for label in train_labels if label is not None})
    defaults = DEMO if preset == "demo" else data_preset(
        params.method, len(train_labels), on_cpu, hidden_size, n_labels)
    pick = lambda key, value: defaults[key] if value == AUTO else value  # noqa: E731
    balance = pick("balance", params.balance)
    repeats = balance_repeats(train_labels, balance)
    n_examples = sum(repeats.get(str(label), 1) if label is not None else 1 for label in train_labels)
    epochs, max_examples = pick("num_epochs", params.num_epochs), pick("max_examples", params.max_examples)
    effective_batch = params.batch_size * params.gradient_accumulation_steps * params.num_processes
    steps, cadence = steps_and_eval_cadence(n_examples, epochs, max_examples, effective_batch)
    max_steps = pick("max_steps", params.max_steps)
    if max_steps is not None:
        steps, cadence = max_steps, max(1, max_steps // EVALS_PER_RUN)
    eval_steps = params.eval_steps if params.eval_steps != AUTO else (defaults["eval_steps"] or cadence)
    resolved = dataclasses.replace(
        params, preset=preset, learning_rate=pick("learning_rate", params.learning_rate), num_epochs=epochs,
        group_by_length=pick("group_by_length", params.group_by_length),
        max_steps=steps, max_examples=max_examples, eval_steps=min(eval_steps, steps), balance=balance,
        val_records=pick("val_records", params.val_records),
        lora=dataclasses.replace(params.lora, target_modules=pick("target_modules", params.lora.target_modules)))
    why = ("paths.raw is the bundled demo file" if demo_data else "your data") if params.preset == "auto" else "train.preset"
    return resolved, {"preset": preset, "why": why, "balance_repeats": repeats, "train_examples": n_examples,
                      "examples_seen": steps * effective_batch, "epochs_seen": round(steps * effective_batch / n_examples, 3)}


def describe(params: TrainParams, chosen: dict, n_val: int) -> str:
    """One line on the resolved recipe (`chosen`: resolve_params' record), printed before training."""
    return (f"train: {chosen['preset']} recipe ({chosen['why']}): lr {params.learning_rate:g}, {params.max_steps} steps "
            f"x {chosen['examples_seen'] // params.max_steps} = {chosen['epochs_seen']} passes over "
            f"{chosen['train_examples']} examples (balance {params.balance}), validating every {params.eval_steps} "
            f"steps on {n_val} records, checkpoint by {params.select_by}")


def check_resolved(params: TrainParams) -> None:
    """Refuse params that still hold an `auto` knob: trainer code needs the values resolve_params fills."""
    unresolved = [f.name for f in dataclasses.fields(params) if f.name != "preset" and getattr(params, f.name) == AUTO]
    if unresolved or params.lora.target_modules == AUTO:
        raise ValueError(f"train params still at auto: {unresolved or ['lora.target_modules']}; resolve_params first")


def replay_for(params: TrainParams, base_dir: str | Path, n_train: int, batch_size: int) -> list[dict] | None:
    """The general examples replayed beside `n_train` train examples (train.replay of them, from the
    base model in `base_dir`, generated `batch_size` at a time); None when replay is off."""
    if not 0.0 <= params.replay <= 1.0:
        raise TuneproofError(f"train.replay: {params.replay} is not a share; use 0 (off) to 1")
    if params.replay == 0:
        return None
    from tuneproof.modeling import load_model, load_tokenizer

    return replay_records(load_model(base_dir), load_tokenizer(base_dir), params.replay_prompts,
                          round(params.replay * n_train), params.seed, batch_size)
