"""Training throughput of the `train` stage's recipe vs plain SFTTrainer defaults, side by side.

    python bench/train.py                      # ~2.5 min on 2 CPU cores; needs models/base and data/split
    python bench/train.py --steps 8 --batch-size 8

Same model (models/base), same records, same prompts (params.yaml prompt.system), same LoRA,
learning rate and schedule; what differs is how the step is run:
  * plain    - SFTTrainer defaults with bf16 off (the fair CPU baseline): TRL's own tokenization
               of prompt/completion strings, random batches, activation checkpointing on;
  * recipe   - tuneproof.trainer.build_trainer with params.yaml's `train` section: length-grouped
               batches, no activation checkpointing, and the shared-prefix cache
               (the system prompt encoded once per batch instead of once per row);
  * recipe/random - the recipe with the plain run's random batch order and evaluation batches:
               its losses must equal plain's (the recipe changes speed, not the maths), while
               `recipe` shows the loss of the length-grouped order (different batches: noise).
Tokens/s counts every non-padding token of every trained sequence (prompt + completion), the
same definition for all. Loss: the mean completion-token loss on the same validation records
after the last step (each trainer's own evaluation path), and the mean of the last logged
train losses. The first optimizer step is warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and TRL's cumulative `num_tokens` at every logged step (logging_steps=1)."""

        def __init__(self):
            self.points: list[tuple[float, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs and "loss" in logs:
                self.points.append((time.perf_counter(), logs["num_tokens"]))

        def tokens_per_second(self) -> float:
            (t0, n0), (t1, n1) = self.points[0], self.points[-1]  # from the end of step 1
            return (n1 - n0) / (t1 - t0)

    return StepTimer()


def summarize(name: str, trainer, timer) -> dict:
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    return {"name": name, "tokens_per_s": timer.tokens_per_second(),
            "train_loss": sum(losses[-3:]) / len(losses[-3:]), "val_loss": evals[-1]}


def run_plain(base: str, records, val, system, recipe, steps: int, batch: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from tuneproof.modeling import load_tokenizer, lora_config
    from tuneproof.prompting import completion_target, format_prompt

    tokenizer = load_tokenizer(base)
    as_rows = lambda rs: Dataset.from_list([  # noqa: E731
        {"prompt": format_prompt(tokenizer, r, system), "completion": completion_target(tokenizer, r)} for r in rs])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, use_safetensors=True)
    timer = step_timer()
    args = SFTConfig(output_dir=str(out), bf16=False, seed=recipe.seed, max_steps=steps,
                     per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
                     learning_rate=recipe.learning_rate, lr_scheduler_type=recipe.lr_scheduler,
                     warmup_steps=recipe.warmup_ratio, logging_steps=1, eval_strategy="steps",
                     eval_steps=steps, save_strategy="no", report_to="none", disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=as_rows(records), eval_dataset=as_rows(val),
                         processing_class=tokenizer, peft_config=lora_config(recipe, model), callbacks=[timer])
    trainer.train()
    return summarize("plain", trainer, timer)


def run_recipe(base: str, records, val, system, recipe, steps: int, batch: int, out: Path,
               name: str = "recipe") -> dict:
    from tuneproof.trainer import build_trainer

    params = dataclasses.replace(recipe, max_steps=steps, batch_size=batch, eval_steps=steps, logging_steps=1,
                                 early_stopping_patience=None, checkpoints=str(out / "checkpoints"))
    if name == "recipe/random":  # the plain run's batches and evaluation: isolates the loss from data order
        params = dataclasses.replace(params, group_by_length=False, eval_batch_size=batch)
    timer = step_timer()
    trainer = build_trainer(params, system, base, records, val, params.checkpoints, out / "curves", [timer])
    trainer.args.disable_tqdm = True
    trainer.train()
    return summarize(name, trainer, timer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per configuration (the first is not timed)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step (all configurations)")
    parser.add_argument("--val", type=int, default=8, help="validation records for the loss")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--base", default=str(ROOT / "models" / "base"))
    parser.add_argument("--split", default=str(ROOT / "data" / "split"))
    args = parser.parse_args()

    from tuneproof.config import Paths, Prompt
    from tuneproof.io import read_json
    from tuneproof.params import load_section
    from tuneproof.recipe import is_demo_data, resolve_params
    from tuneproof.records import read_split
    from tuneproof.train_config import TrainParams

    raw = load_section(Paths, "paths", args.params).raw
    recipe, _ = resolve_params(load_section(TrainParams, "train", args.params), [None] * 64, True,
                               read_json(Path(args.base) / "config.json").get("hidden_size"), is_demo_data(raw))
    system = load_section(Prompt, "prompt", args.params).system
    records = read_split(args.split, "train")[: args.steps * args.batch_size]
    val = read_split(args.split, "val")[: args.val]
    print(f"bench/train: {len(records)} train records, {len(val)} val records, {args.steps} steps of "
          f"{args.batch_size}, LoRA r={recipe.lora.r}, lr={recipe.learning_rate}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run_plain(args.base, records, val, system, recipe, args.steps, args.batch_size, Path(tmp) / "a"))
        results.append(run_recipe(args.base, records, val, system, recipe, args.steps, args.batch_size, Path(tmp) / "c"))
        results.append(run_recipe(args.base, records, val, system, recipe, args.steps, args.batch_size, Path(tmp) / "d",
                                  name="recipe/random"))
    base_tps = results[0]["tokens_per_s"]
    print(f"\n{'configuration':14s} {'tokens/s':>9s} {'ratio':>6s} {'train loss':>11s} {'val loss':>9s}")
    for r in results:
        print(f"{r['name']:14s} {r['tokens_per_s']:9.1f} {r['tokens_per_s'] / base_tps:5.2f}x "
              f"{r['train_loss']:11.4f} {r['val_loss']:9.4f}")


if __name__ == "__main__":
    main()
