"""Stage `train`: fine-tune the base model on the train split (LoRA, QLoRA or full) with TRL.

    python -m stages.train     # reads params.yaml: train, prompt.system, paths.{base_model,split,adapter,metrics}

One training path for every method (`train.method` is a parameter, not a copy of the recipe):
  * `lora`  - peft LoRA adapter on the fp32 (CPU) / bf16 (CUDA) base.
  * `qlora` - the same adapter on a 4-bit NF4 base (bitsandbytes) prepared with
              peft.prepare_model_for_kbit_training; refused where bitsandbytes cannot quantize.
  * `full`  - every weight trained; the output is a complete model directory.

Each record becomes exactly the prompt baseline/evaluate serve (tuneproof.prompting.format_prompt)
followed by completion_target (answer + end-of-turn). Prompt and completion are tokenized
separately without special tokens, so the trained prompt ids are the served prompt ids (no extra
BOS, no token merged across the boundary, one EOS); TRL builds the labels from `completion_mask`,
so the loss covers completion tokens only.

Outputs:
  <paths.adapter>/              adapter (or full model) as safetensors, the tokenizer, and
                                tuneproof_train.json (resolved params, base model, data hashes,
                                best step, stopped early?), written atomically.
  <paths.metrics>/train.json    final metrics (the one metrics file of this stage).
  <paths.metrics>/train_curves/ dvclive loss curves: `dvc plots show` draws train/loss and
                                eval/loss (and token accuracy) against the optimizer step.
  <train.checkpoints>/          Trainer checkpoints, kept between runs (dvc.yaml: persist, no cache)
                                so an interrupted `dvc repro` resumes; emptied after a successful run.

Many GPUs: with `train.num_processes` > 1 the stage re-runs itself under `accelerate launch`
(tuneproof.distributed): DDP, or FSDP (`train.distributed: fsdp`) for full fine-tunes of models
that do not fit one GPU. The outputs are the same files; only the main process writes them.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt
from tuneproof.distributed import in_launched_process, launch_command, process_state, run_launched
from tuneproof.io import (TuneproofError, atomic_path, check_output_path, dumps, read_json, read_jsonl,
                          sha256_file, sha256_text, write_json)
from tuneproof.modeling import load_tokenizer, select_device, select_dtype
from tuneproof.params import load_section
from tuneproof.records import read_split
from tuneproof.prompting import completion_target, format_prompt

ADAPTER_INFO = "tuneproof_train.json"       # provenance file inside <paths.adapter>
FINGERPRINT = "tuneproof_fingerprint.json"  # inside <train.checkpoints>: what the checkpoints belong to
CURVES_DIR = "train_curves"                 # dvclive dir under <paths.metrics> (dvc.yaml: same name)
CURVES = {  # Trainer log key -> dvclive metric name (plotted against the optimizer step)
    "loss": "train/loss",
    "mean_token_accuracy": "train/mean_token_accuracy",
    "eval_loss": "eval/loss",
    "eval_mean_token_accuracy": "eval/mean_token_accuracy",
}


@dataclass(frozen=True)
class LoraParams:
    r: int = 16                                  # adapter rank
    alpha: int = 32                              # scale of the update: alpha / r
    dropout: float = 0.0                         # dropout on the adapter input
    target_modules: str | list[str] = "all-linear"  # "all-linear" or module names, e.g. [q_proj, v_proj]
    last_layers: int | None = None               # adapt only the last N transformer layers (null = all): backprop stops below them
    plus_lr_ratio: float | None = None           # LoRA+: the B matrices learn this many times faster than A (null = plain LoRA)


@dataclass(frozen=True)
class TrainParams:
    method: Literal["lora", "qlora", "full"] = "lora"  # what is trained (see module docstring)
    seed: int = 0                                # seeds adapter init, data order and dropout
    learning_rate: float = 2e-3                  # peak LR; short LoRA runs like 1e-3..3e-3, full fine-tuning ~1e-5
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"  # LR decay after warmup
    warmup_ratio: float = 0.05                   # share of the optimizer steps spent warming up
    weight_decay: float = 0.0                    # AdamW weight decay
    num_epochs: float = 1.0                      # passes over the train split (ignored when max_steps is set)
    max_steps: int | None = 80                   # optimizer steps; overrides num_epochs (null: use num_epochs)
    batch_size: int = 4                          # training sequences per micro-batch
    eval_batch_size: int = 16                    # validation sequences per forward pass (no gradients: larger is cheap)
    gradient_accumulation_steps: int = 1         # micro-batches per optimizer step
    gradient_checkpointing: bool = False         # recompute activations: less memory, ~30% slower
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"  # attention kernel (flash_attention_2 needs flash-attn)
    use_liger: bool = False                      # Liger fused kernels (RMSNorm, SwiGLU, RoPE, fused loss); needs liger-kernel, CUDA
    max_length: int = 768                        # tokens per example; longer ones lose the end of their completion
    group_by_length: bool = True                 # batch examples of similar length: less padding, same loss
    share_prefix: bool = True                    # encode the prompts' common opening (system prompt) once per batch
    val_records: int | None = 16                 # validation records for the loss (a seeded sample); null = all
    eval_steps: int = 20                         # optimizer steps between validation losses (and checkpoints)
    logging_steps: int = 3                       # optimizer steps between train-loss points
    early_stopping_patience: int | None = 3      # evaluations without improvement before stopping; null = never
    early_stopping_threshold: float = 0.0        # least val-loss drop that counts as an improvement
    checkpoints: str = "models/checkpoints"      # resumable Trainer checkpoints (dvc.yaml: persist, no cache)
    num_processes: int = 1                       # processes (GPUs); >1 re-runs the stage under accelerate launch. Effective batch = batch_size x gradient_accumulation_steps x num_processes
    distributed: Literal["ddp", "fsdp"] = "ddp"  # with num_processes > 1: ddp (a model copy per GPU) or fsdp (weights sharded; for full fine-tunes of big models, CUDA only)
    lora: LoraParams = field(default_factory=LoraParams)  # adapter shape (lora and qlora)


# ----------------------------------------------------------------------------- data


def tokenize_record(tokenizer, record: dict, system: str | None, max_length: int) -> dict:
    """TRL's pre-tokenized prompt-completion example: the served prompt ids, then the completion
    ids, and `completion_mask` (1 on completion tokens) from which TRL builds the labels.
    Truncation keeps the start, so the prompt stays exactly as served; `length` is the untruncated
    token count."""
    prompt_ids = tokenizer(format_prompt(tokenizer, record, system), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_target(tokenizer, record), add_special_tokens=False)["input_ids"]
    return {"input_ids": (prompt_ids + completion_ids)[:max_length],
            "completion_mask": ([0] * len(prompt_ids) + [1] * len(completion_ids))[:max_length],
            "length": len(prompt_ids) + len(completion_ids)}


def build_dataset(tokenizer, records: Sequence[dict], system: str | None, max_length: int, name: str):
    """Tokenized datasets.Dataset of `records`. Examples cut at `max_length` are reported; those
    left without any completion token teach nothing and are dropped."""
    from datasets import Dataset
    from tqdm import tqdm

    rows = [tokenize_record(tokenizer, record, system, max_length)
            for record in tqdm(records, desc=f"tokenize {name}", leave=False)]
    cut = sum(row.pop("length") > max_length for row in rows)
    kept = [row for row in rows if 1 in row["completion_mask"]]
    if not kept:
        raise TuneproofError(f"train.max_length: {max_length} tokens do not reach the completion of any {name} "
                             "example (the prompt alone is longer); raise train.max_length")
    if cut:
        print(f"\ntrain: {cut}/{len(rows)} {name} examples are longer than train.max_length={max_length} and lose "
              f"the end of their completion ({len(rows) - len(kept)} lose all of it and are dropped); "
              "raise train.max_length to keep them whole")
    return Dataset.from_list(kept)


# ----------------------------------------------------------------------------- model


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def check_liger(use_liger: bool) -> None:
    """Fail fast when Liger kernels are asked for but not installed (they are optional)."""
    if use_liger and not liger_installed():
        raise TuneproofError("train.use_liger: true needs the liger-kernel package (pip install liger-kernel; "
                             "CUDA + Triton); install it or set train.use_liger: false")


def check_distributed(params: TrainParams, gpus: int) -> None:
    """Fail fast on multi-process settings that cannot run on this machine with `gpus` CUDA devices
    (0: CPU processes), before any process is launched."""
    if params.num_processes < 1:
        raise TuneproofError(f"train.num_processes: {params.num_processes} is not a process count; use 1 or more")
    if params.num_processes == 1:
        return
    if gpus and params.num_processes > gpus:
        raise TuneproofError(f"train.num_processes: {params.num_processes} processes but {gpus} GPU(s) visible; "
                             "use at most one process per GPU")
    if params.distributed == "fsdp" and params.method == "qlora":
        raise TuneproofError("train.distributed: fsdp cannot shard a 4-bit (qlora) base here; use "
                             "train.distributed: ddp with qlora, or fsdp with method lora or full")
    if params.distributed == "fsdp" and not gpus:
        raise TuneproofError("train.distributed: fsdp needs CUDA GPUs (accelerate runs FSDP only on accelerators); "
                             "use train.distributed: ddp on CPU")


def check_method(method: str, device) -> None:
    """Fail fast where a method cannot run: QLoRA needs bitsandbytes to quantize on `device`."""
    if method != "qlora":
        return
    try:
        import bitsandbytes.functional as bnb_functional
        import torch

        bnb_functional.quantize_4bit(torch.ones(64, device=device), quant_type="nf4")
    except Exception as exc:  # noqa: BLE001 - any failure means 4-bit is unavailable here
        raise TuneproofError(
            f"train.method: 'qlora' needs bitsandbytes 4-bit quantization on {device.type}, which failed "
            f"here ({type(exc).__name__}: {exc}); use train.method: lora") from exc


def load_base_model(base_dir: str | Path, method: str, device, gradient_checkpointing: bool,
                    attn_implementation: str = "sdpa"):
    """The base model to train: plain (lora, full) or 4-bit NF4 and k-bit-prepared (qlora)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = select_dtype(device)
    kwargs = {}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        # each DDP worker quantizes onto its own GPU (torchrun's LOCAL_RANK), not all onto cuda:0
        kwargs["device_map"] = {"": torch.device(device.type, int(os.environ.get("LOCAL_RANK", 0)))
                                if device.type == "cuda" else device}
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=dtype, use_safetensors=True, trust_remote_code=False,
        attn_implementation=attn_implementation, **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return model


def lora_config(params: TrainParams, model):
    """peft LoraConfig for lora/qlora; None for a full fine-tune."""
    if params.method == "full":
        return None
    from peft import LoraConfig

    targets, layers = params.lora.target_modules, None
    if params.lora.last_layers is not None:
        n = model.config.num_hidden_layers
        if not 0 < params.lora.last_layers <= n:
            raise TuneproofError(f"train.lora.last_layers: {params.lora.last_layers} is not between 1 and the "
                                 f"model's {n} layers; set it in that range or null (all layers)")
        layers = list(range(n - params.lora.last_layers, n))
        if targets == "all-linear":  # peft takes a layer subset only with explicit module names
            targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if ".layers." in name and type(module).__name__.startswith("Linear")})
    return LoraConfig(r=params.lora.r, lora_alpha=params.lora.alpha, lora_dropout=params.lora.dropout,
                      target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")


def sft_config(params: TrainParams, output_dir: str | Path, device):
    """TRL SFTConfig for `params`. bf16 only on CUDA that supports it (TRL defaults to bf16=True,
    which on these CPUs is ~17x slower); validation and a checkpoint every eval_steps, best kept."""
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        seed=params.seed, data_seed=params.seed,
        learning_rate=params.learning_rate, lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio, weight_decay=params.weight_decay,  # <1: a share of the steps
        num_train_epochs=params.num_epochs, max_steps=params.max_steps or -1,
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
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=params.logging_steps, report_to="none",  # curves: LossCurves (dvclive) below
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight gets a gradient: skip DDP's graph search
    )


# ----------------------------------------------------------------------------- logging


def _curve_points(logs: dict) -> dict[str, float]:
    return {CURVES[key]: value for key, value in logs.items() if key in CURVES}


def make_loss_curves(curves_dir: str | Path):
    """A TrainerCallback writing dvclive loss curves indexed by the optimizer step.

    Not transformers' DVCLiveCallback: that one numbers points by log call (train and eval
    points interleave), logs timing values and every TrainingArguments field, and cannot replay
    the history of a resumed run. This one redraws the restored log history on resume."""
    from transformers import TrainerCallback

    class LossCurves(TrainerCallback):
        def __init__(self):
            self.live = None

        def on_train_begin(self, args, state, control, **kwargs):
            from dvclive import Live

            if not state.is_world_process_zero:  # one writer: the other processes log the same points
                return

            # dvcyaml=None: dvc.yaml declares these plots; save_dvc_exp=False: `dvc exp run` saves experiments
            self.live = Live(str(curves_dir), save_dvc_exp=False, dvcyaml=None)
            for entry in state.log_history:  # non-empty only when resuming
                self._log(entry["step"], entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self._log(state.global_step, logs or {})

        def _log(self, step: int, logs: dict) -> None:
            points = _curve_points(logs)
            if points and self.live is not None:
                self.live.step = step
                for name, value in points.items():
                    self.live.log_metric(name, value)

        def on_train_end(self, args, state, control, **kwargs):
            if self.live is None:
                return
            self.live.end()
            # dvclive always writes its own summary; metrics/train.json is the stage's one metrics file
            Path(self.live.metrics_file).unlink(missing_ok=True)

    return LossCurves()


# ----------------------------------------------------------------------------- provenance & resume


def base_model_info(base_dir: str | Path) -> dict:
    """What the base model is: base_model's tuneproof_source.json plus the weights' sha256."""
    base_dir = Path(base_dir)
    source = base_dir / "tuneproof_source.json"
    info = read_json(source) if source.is_file() else {}
    weights = sorted(glob.glob(str(base_dir / "*.safetensors")))
    if not weights:
        raise TuneproofError(f"{base_dir}: no *.safetensors weights; run the base_model stage (dvc repro base_model)")
    return {**info, "path": str(base_dir),
            "weights_sha256": {Path(w).name: sha256_file(w) for w in weights}}


def run_fingerprint(params: TrainParams, system: str | None, base: dict, data: dict) -> str:
    """sha256 of everything that determines the training trajectory: checkpoints are resumed only
    by a run with the same fingerprint."""
    return sha256_text(dumps({"params": dataclasses.asdict(params), "prompt_system": system,
                              "base_model": base, "data": data}))


def resumable_checkpoint(checkpoints: str | Path, fingerprint: str, reset: bool = True) -> str | None:
    """The last checkpoint of an interrupted run with this fingerprint, else None. Checkpoints of
    any other run (other params, data or base model) are deleted when `reset` (the main process;
    the others only read, after it): they must not be resumed."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = Path(checkpoints)
    marker = checkpoints / FINGERPRINT
    if marker.is_file() and read_json(marker).get("fingerprint") == fingerprint:
        last = get_last_checkpoint(str(checkpoints))
        if last is not None:
            return last
    if not reset:
        return None
    clear_checkpoints(checkpoints)
    write_json(marker, {"fingerprint": fingerprint})
    return None


def clear_checkpoints(checkpoints: str | Path) -> None:
    """After a successful run the adapter holds the result; checkpoints (with optimizer state:
    ~3x the model for a full fine-tune) are only useful to resume, so they go. The fingerprint
    file stays, so the dvc.yaml output exists and is the same small file on every re-run. A folder
    without it that holds anything was not made by this stage and is refused, never emptied."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return
    entries = [p for p in checkpoints.iterdir() if p.name != FINGERPRINT]
    if entries and not (checkpoints / FINGERPRINT).is_file():
        raise TuneproofError(f"train.checkpoints: {checkpoints} holds files no train run made (e.g. {entries[0].name}); "
                             "name an empty or new folder, e.g. models/checkpoints")
    for path in entries:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# ----------------------------------------------------------------------------- training


def validation_sample(records: Sequence[dict], n: int | None, seed: int) -> list[dict]:
    """`n` validation records drawn with `seed` (all when n is None or larger): the loss on a
    few dozen records ranks checkpoints as well as on all, at a fraction of the CPU time."""
    if n is None or n >= len(records):
        return list(records)
    return random.Random(seed).sample(list(records), n)


def build_trainer(params: TrainParams, system: str | None, base_dir: str | Path,
                  train_records: Sequence[dict], val_records: Sequence[dict],
                  checkpoints: str | Path, curves_dir: str | Path, callbacks: Sequence = ()):
    """The SFTTrainer for `params` (one path for lora, qlora and full), ready to train."""
    import torch
    from transformers import EarlyStoppingCallback

    from tuneproof.sft import SharedPrefixSFTTrainer, common_prompt_prefix

    device = select_device()
    check_method(params.method, device)
    check_liger(params.use_liger)
    tokenizer = load_tokenizer(base_dir)
    train_ds = build_dataset(tokenizer, train_records, system, params.max_length, "train")
    val_ds = build_dataset(tokenizer, val_records, system, params.max_length, "validation")
    prefix = []
    if params.share_prefix and not params.gradient_checkpointing:
        prompts = [row["input_ids"][:row["completion_mask"].index(1)] if 1 in row["completion_mask"]
                   else row["input_ids"] for ds in (train_ds, val_ds) for row in ds]
        prefix = common_prompt_prefix(prompts)
    model = load_base_model(base_dir, params.method, device, params.gradient_checkpointing,
                            params.attn_implementation)
    extra = [make_loss_curves(curves_dir), *callbacks]
    if params.early_stopping_patience is not None:
        extra.append(EarlyStoppingCallback(params.early_stopping_patience, params.early_stopping_threshold))
    trainer = SharedPrefixSFTTrainer(
        model=model, args=sft_config(params, checkpoints, device), train_dataset=train_ds, eval_dataset=val_ds,
        processing_class=tokenizer, peft_config=lora_config(params, model),
        callbacks=extra, shared_prefix=prefix)
    if params.method == "qlora" and select_dtype(device) == torch.float32:
        # TRL casts QLoRA adapters to bf16 (the paper's recipe for CUDA); on CPU that is slow and
        # mismatches the fp32 compute dtype, so keep them fp32 (the optimizer is created in train()).
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if params.method != "full" and params.lora.plus_lr_ratio:
        from peft.optimizers import create_loraplus_optimizer

        # LoRA+ (peft): B starts at zero and gets a larger step than A, so a short run moves further
        trainer.optimizer = create_loraplus_optimizer(
            trainer.model, torch.optim.AdamW, lr=params.learning_rate,
            loraplus_lr_ratio=params.lora.plus_lr_ratio, weight_decay=params.weight_decay)
    return trainer


def save_result(trainer, out_dir: str | Path, info: dict) -> None:
    """Atomically write the trained adapter (or full model), the tokenizer and tuneproof_train.json.
    Every process calls it (FSDP gathers the sharded weights from all of them); the main one writes."""
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if not trainer.is_world_process_zero():
        return
    with atomic_path(out_dir) as tmp:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(
            tmp, safe_serialization=True, state_dict=state_dict)
        trainer.processing_class.save_pretrained(tmp)
        write_json(tmp / ADAPTER_INFO, info)


def train(params: TrainParams, system: str | None, base_dir: str | Path, split_dir: str | Path,
          adapter_dir: str | Path, metrics_file: str | Path, curves_dir: str | Path,
          callbacks: Sequence = ()):
    """Train, resuming an interrupted run with the same fingerprint; write the adapter dir, the
    metrics file and the curves. Returns (trainer, info) where info is tuneproof_train.json.
    Under accelerate launch every process runs it; the main one writes the outputs."""
    import torch

    train_records, all_val = read_split(split_dir, "train"), read_split(split_dir, "val")
    val_records = validation_sample(all_val, params.val_records, params.seed)
    base = base_model_info(base_dir)
    data = {name: {"sha256": sha256_file(Path(split_dir) / f"{name}.jsonl"), "records": len(records)}
            for name, records in (("train", train_records), ("val", all_val))}
    fingerprint = run_fingerprint(params, system, base, data)
    check_distributed(params, torch.cuda.device_count())
    processes = process_state(select_device())  # one process unless started by accelerate launch (main)
    with processes.main_process_first():  # the main process clears stale checkpoints before the others look
        resume_from = resumable_checkpoint(params.checkpoints, fingerprint, reset=processes.is_main_process)
    if resume_from and processes.is_main_process:
        print(f"train: resuming the interrupted run from {resume_from}")
    trainer = build_trainer(params, system, base_dir, train_records, val_records, params.checkpoints,
                            curves_dir, callbacks)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before FSDP shards them
    trainer.train(resume_from_checkpoint=resume_from)

    state = trainer.state
    train_losses = [e["loss"] for e in state.log_history if "loss" in e]
    evals = [e for e in state.log_history if "eval_loss" in e]
    metrics = {
        "method": params.method,
        "steps": state.global_step,
        "best_step": state.best_global_step,
        "best_val_loss": state.best_metric,
        "last_val_loss": evals[-1]["eval_loss"] if evals else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "stopped_early": state.global_step < state.max_steps,
        "trainable_params": trainable,
        "num_processes": trainer.args.world_size,
    }
    info = {
        "params": dataclasses.asdict(params), "method": params.method, "seed": params.seed,
        "prompt_system": system, "base_model": base, "data": data, "fingerprint": fingerprint,
        "best_step": metrics["best_step"], "best_val_loss": metrics["best_val_loss"],
        "steps": metrics["steps"], "stopped_early": metrics["stopped_early"],
        "resumed_from_step": int(resume_from.rsplit("-", 1)[1]) if resume_from else None,
        "val_records_used": len(val_records), "shared_prefix_tokens": len(trainer.shared_prefix),
        "num_processes": metrics["num_processes"],
    }
    save_result(trainer, adapter_dir, info)
    trainer.accelerator.wait_for_everyone()  # no process still reads or writes a checkpoint
    if trainer.is_world_process_zero():
        write_json(metrics_file, metrics)
        clear_checkpoints(params.checkpoints)
    return trainer, info


def main(params_file: str = "params.yaml") -> None:
    params = load_section(TrainParams, "train", params_file)
    paths = load_section(Paths, "paths", params_file)
    prompt = load_section(Prompt, "prompt", params_file)
    if params.num_processes > 1 and not in_launched_process():
        import torch

        check_distributed(params, torch.cuda.device_count())
        run_launched(launch_command("stages.train", [params_file], params.num_processes, params.distributed))
        return
    check_output_path(params.checkpoints, "train.checkpoints")
    trainer, info = train(params, prompt.system, paths.base_model, paths.split, paths.output("adapter"),
                          paths.metrics_file("train"), Path(paths.metrics) / CURVES_DIR)
    if trainer.is_world_process_zero():
        print(f"train: {params.method} -> {paths.adapter} (best step {info['best_step']} of {info['steps']}, "
              f"val loss {info['best_val_loss']:.4f}{', stopped early' if info['stopped_early'] else ''})")


if __name__ == "__main__":
    run_main(lambda: main(*sys.argv[1:2]))  # optional params file: accelerate launch passes it to each process
