"""Assembling the train stage's TRL trainer from resolved TrainParams, and what a finished run leaves.

One path for every method (lora, qlora, full): the tokenized examples (tuneproof.train_data), the
base model and its LoRA config (tuneproof.modeling), TRL's SFTConfig and the SharedPrefixSFTTrainer
(tuneproof.sft) with its callbacks: dvclive curves (tuneproof.curves), early stopping, and plain
progress lines in a log. At each validation the val records are decoded and scored by the one
scorer, so the kept checkpoint is chosen by what evaluate will measure. After training:
metrics/train.json (`run_metrics`) and the adapter folder with ADAPTER_INFO (`adapter_info`,
`save_result`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import torch

from tuneproof.config import ADAPTER_INFO
from tuneproof.curves import LossCurves
from tuneproof.io import atomic_path, write_json
from tuneproof.modeling import (check_liger, check_method, load_base_model, load_tokenizer, lora_config, select_device,
                                select_dtype)
from tuneproof.progress import to_log, trainer_progress
from tuneproof.recipe import check_resolved
from tuneproof.train_config import TrainParams
from tuneproof.train_data import build_dataset, prompt_part


def build_trainer(params: TrainParams, system: str | None, base_dir: str | Path,
                  train_records: Sequence[dict], val_records: Sequence[dict],
                  checkpoints: str | Path, curves_dir: str | Path, callbacks: Sequence = (), scoring=None):
    """The SFTTrainer for resolved `params` (one path for lora, qlora and full), ready to train.
    `scoring` (Scorer, GenerateParams) decodes and scores the val records at each validation;
    with train.select_by: primary its score.primary picks the checkpoint and drives early stopping."""
    from transformers import EarlyStoppingCallback

    from tuneproof.sft import SharedPrefixSFTTrainer

    check_resolved(params)
    device = select_device()
    check_method(params.method, device)
    check_liger(params.use_liger)
    tokenizer = load_tokenizer(base_dir)
    train_ds = build_dataset(tokenizer, train_records, system, params.max_length, "train")
    val_ds = build_dataset(tokenizer, val_records, system, params.max_length, "validation")
    prefix = shared_prefix(params, train_ds, val_ds)
    model = load_base_model(base_dir, params.method, device, params.gradient_checkpointing,
                            params.attn_implementation)
    val_fn, best_metric, curve_names = validation_scoring(params, tokenizer, val_records, system, scoring)
    extra = [LossCurves(curves_dir, curve_names), *callbacks]
    if params.early_stopping_patience is not None:
        extra.append(EarlyStoppingCallback(params.early_stopping_patience, params.early_stopping_threshold))
    args = sft_config(params, checkpoints, device, best_metric)
    if to_log():  # tqdm's redraws never reach a log: plain timed lines instead (tuneproof.progress)
        args.disable_tqdm = True
        extra.append(trainer_progress())
    trainer = SharedPrefixSFTTrainer(
        model=model, args=args, train_dataset=train_ds,
        eval_dataset=val_ds, processing_class=tokenizer, peft_config=lora_config(params, model),
        callbacks=extra, shared_prefix=prefix, val_metrics=val_fn)
    if params.method == "qlora" and select_dtype(device) == torch.float32:
        keep_adapters_fp32(trainer)
    if params.method != "full" and params.lora.plus_lr_ratio:
        use_loraplus(trainer, params)
    return trainer


def shared_prefix(params: TrainParams, *datasets) -> list[int]:
    """The prompts' common opening, encoded once per batch (tuneproof.sft); none when
    train.share_prefix is off or with gradient checkpointing (it would extend the cache twice)."""
    if not params.share_prefix or params.gradient_checkpointing:
        return []
    from tuneproof.sft import common_prompt_prefix

    return common_prompt_prefix([prompt_part(row) for ds in datasets for row in ds])


def validation_scoring(params: TrainParams, tokenizer, val_records: Sequence[dict], system: str | None, scoring):
    """(val_metrics function or None, metric that picks the checkpoint, extra curve names) for
    `scoring` (Scorer, GenerateParams), or for the loss alone when it is None."""
    if scoring is None:
        return None, "eval_loss", []
    scorer, gen = scoring
    primary = f"eval_{scorer.params.primary}"
    return (val_metrics_fn(tokenizer, val_records, system, scorer, gen),
            primary if params.select_by == "primary" else "eval_loss", [primary])


def keep_adapters_fp32(trainer) -> None:
    """TRL casts QLoRA adapters to bf16 (the paper's recipe for CUDA); on CPU that is slow and
    mismatches the fp32 compute dtype, so keep them fp32 (the optimizer is created in train())."""
    for p in trainer.model.parameters():
        if p.requires_grad:
            p.data = p.data.float()


def use_loraplus(trainer, params: TrainParams) -> None:
    """LoRA+ (peft): B starts at zero and gets a larger step than A, so a short run moves further."""
    from peft.optimizers import create_loraplus_optimizer

    trainer.optimizer = create_loraplus_optimizer(
        trainer.model, torch.optim.AdamW, lr=params.learning_rate,
        loraplus_lr_ratio=params.lora.plus_lr_ratio, weight_decay=params.weight_decay)


def sft_config(params: TrainParams, output_dir: str | Path, device, best_metric: str = "eval_loss"):
    """TRL SFTConfig for resolved `params`. bf16 only on CUDA that supports it (TRL defaults to
    bf16=True, which a CPU without bf16 units emulates, many times slower); validation and a
    checkpoint every eval_steps, the best by `best_metric` kept (eval_loss: lowest; a decoded score
    such as eval_accuracy: highest)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        seed=params.seed, data_seed=params.seed,
        learning_rate=params.learning_rate, lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio, weight_decay=params.weight_decay,  # <1: a share of the steps
        max_steps=params.max_steps,  # resolved (resolve_params): always a step count
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.eval_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        activation_checkpointing=params.gradient_checkpointing,
        use_liger_kernel=params.use_liger,
        bf16=select_dtype(device) == torch.bfloat16, fp16=False, use_cpu=device.type == "cpu",
        max_length=None,  # tokenize_record already truncated, keeping the served prompt whole
        completion_only_loss=True,  # labels from completion_mask: loss on completion tokens only
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        eval_strategy="steps", eval_steps=params.eval_steps,
        save_strategy="steps", save_steps=params.eval_steps, save_total_limit=1,  # + the best one
        load_best_model_at_end=True, metric_for_best_model=best_metric, greater_is_better=best_metric != "eval_loss",
        logging_steps=params.logging_steps, report_to="none",  # curves: tuneproof.curves.LossCurves (dvclive)
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight gets a gradient: skip DDP's graph search
    )


def validation_sample(records: Sequence[dict], n: int | None, seed: int) -> list[dict]:
    """`n` validation records drawn with `seed` (all when n is None or larger): the loss on a
    few dozen records ranks checkpoints as well as on all, at a fraction of the CPU time."""
    if n is None or n >= len(records):
        return list(records)
    return random.Random(seed).sample(list(records), n)


def val_metrics_fn(tokenizer, records: Sequence[dict], system: str | None, scorer, gen):
    """model -> aggregate scores of `records` decoded through the one generation path and scored by
    the one scorer: the checkpoint is chosen by what evaluate will measure, not by a loss that a
    collapsed model can keep low."""
    from tuneproof.predict import predict_and_score

    def score(model) -> dict[str, float]:
        return scorer.aggregate(predict_and_score(model, tokenizer, records, scorer, system, gen, desc="validate"))

    return score


def run_metrics(trainer, params: TrainParams, chosen: dict, trainable: int) -> dict:
    """metrics/train.json of a finished run: the resolved recipe and how training went (`chosen`:
    resolve_params' record; `trainable`: parameters counted before FSDP sharded them)."""
    state = trainer.state
    train_losses = [e["loss"] for e in state.log_history if "loss" in e]
    evals = [e for e in state.log_history if "eval_loss" in e]
    return {
        "method": params.method,
        "preset": chosen["preset"],
        "learning_rate": params.learning_rate,
        "balance": params.balance,
        "steps": state.global_step,
        "best_step": state.best_global_step,
        "selected_by": trainer.args.metric_for_best_model,
        "best_val_score": state.best_metric,
        "best_val_loss": min((e["eval_loss"] for e in evals), default=None),
        "last_val_loss": evals[-1]["eval_loss"] if evals else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "stopped_early": state.global_step < state.max_steps,
        "trainable_params": trainable,
        "num_processes": trainer.args.world_size,
    }


def adapter_info(run: dict, metrics: dict, chosen: dict, trainer, resume_from: str | None, n_val: int) -> dict:
    """ADAPTER_INFO of a finished run: its provenance (`run`, tuneproof.checkpoints.run_provenance),
    the recipe chosen, and the outcome from `metrics`."""
    return {
        **run, "recipe": chosen,
        "best_step": metrics["best_step"], "best_val_loss": metrics["best_val_loss"],
        "steps": metrics["steps"], "stopped_early": metrics["stopped_early"],
        "resumed_from_step": int(resume_from.rsplit("-", 1)[1]) if resume_from else None,
        "selected_by": metrics["selected_by"], "best_val_score": metrics["best_val_score"],
        "val_records_used": n_val, "shared_prefix_tokens": len(trainer.shared_prefix),
        "num_processes": metrics["num_processes"],
    }


def save_result(trainer, out_dir: str | Path, info: dict) -> None:
    """Atomically write the trained adapter (or full model), the tokenizer and ADAPTER_INFO (`info`).
    Every process calls it (FSDP gathers the sharded weights from all of them); the main one writes."""
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if not trainer.is_world_process_zero():
        return
    with atomic_path(out_dir) as tmp:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(
            tmp, safe_serialization=True, state_dict=state_dict)
        trainer.processing_class.save_pretrained(tmp)
        write_json(tmp / ADAPTER_INFO, info)
