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

from tuneproof import recipe
from tuneproof.cli_util import run_main
from tuneproof.config import Paths, Prompt, Task
from tuneproof.distributed import in_launched_process, launch_command, process_state, run_launched
from tuneproof.io import (TuneproofError, atomic_path, check_output_path, dumps, read_json, read_jsonl,
                          sha256_file, sha256_text, write_json)
from tuneproof.modeling import load_tokenizer, select_device, select_dtype
from tuneproof.generation import GenerateParams
from tuneproof.params import load_section
from tuneproof.progress import progress, to_log, trainer_progress
from tuneproof.prompting import completion_target, format_prompt
from tuneproof.records import label_of, read_split
from tuneproof.scoring import ScoreParams, build_scorer

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
    target_modules: str | list[str] = "auto"     # "all-linear", module names, e.g. [q_proj, v_proj], or auto (the preset's)
    last_layers: int | None = None               # adapt only the last N transformer layers (null = all): backprop stops below them
    plus_lr_ratio: float | None = None           # LoRA+: the B matrices learn this many times faster than A (null = plain LoRA)


@dataclass(frozen=True)
class TrainParams:
    method: Literal["lora", "qlora", "full"] = "lora"  # what is trained (see module docstring)
    preset: Literal["auto", "data", "demo"] = "auto"  # fills the knobs left at auto (tuneproof.recipe): auto = demo only for the bundled demo file
    seed: int = 0                                # seeds adapter init, data order and dropout
    learning_rate: float | Literal["auto"] = "auto"  # peak LR (data preset: 2e-4 LoRA / 1e-5 full at width 4096, x sqrt(4096 / width))
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"  # LR decay after warmup
    warmup_ratio: float = 0.05                   # share of the optimizer steps spent warming up
    weight_decay: float = 0.0                    # AdamW weight decay
    num_epochs: float | Literal["auto"] = "auto"  # passes over the (balanced) train split (data preset: 3 up to 1k records, 2 up to 5k, else 1)
    max_steps: int | Literal["auto"] | None = "auto"  # optimizer steps; overrides num_epochs (null: from num_epochs and max_examples)
    max_examples: int | Literal["auto"] | None = "auto"  # cap on training examples seen (data preset: 768 on CPU, none on CUDA); null = no cap
    balance: Literal["auto", "none", "sqrt", "full"] = "auto"  # label tasks: repeat minority-label records (sqrt: sqrt(majority/class) times); auto = the preset's
    select_by: Literal["primary", "loss"] = "primary"  # checkpoint kept and early stopping: score.primary of decoded val records, or val loss
    replay: float = 0.0                          # general examples (the base model's own answers) mixed in, as a share of the train examples; 0 = off
    replay_prompts: str = "eval/replay_prompts.jsonl"  # general requests whose base-model answers are replayed
    batch_size: int = 4                          # training sequences per micro-batch
    eval_batch_size: int = 16                    # validation sequences per forward pass (no gradients: larger is cheap)
    gradient_accumulation_steps: int = 1         # micro-batches per optimizer step
    gradient_checkpointing: bool = False         # recompute activations: less memory, ~30% slower
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"  # attention kernel (flash_attention_2 needs flash-attn)
    use_liger: bool = False                      # Liger fused kernels (RMSNorm, SwiGLU, RoPE, fused loss); needs liger-kernel, CUDA
    max_length: int = 768                        # tokens per example; longer ones lose the end of their completion
    group_by_length: bool | Literal["auto"] = "auto"  # batch examples of similar length (less padding); data preset: off (length can give the label away)
    share_prefix: bool = True                    # encode the prompts' common opening (system prompt) once per batch
    val_records: int | Literal["auto"] | None = "auto"  # validation records (a seeded sample) for the loss and the decoded score; null = all
    eval_steps: int | Literal["auto"] = "auto"   # optimizer steps between validations (and checkpoints); data preset: ~6 per run
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

    rows = [tokenize_record(tokenizer, record, system, max_length)
            for record in progress(records, desc=f"tokenize {name}", unit="record")]
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


def sft_config(params: TrainParams, output_dir: str | Path, device, best_metric: str = "eval_loss"):
    """TRL SFTConfig for resolved `params`. bf16 only on CUDA that supports it (TRL defaults to
    bf16=True, which on these CPUs is ~17x slower); validation and a checkpoint every eval_steps,
    the best by `best_metric` kept (eval_loss: lowest; a decoded score such as eval_accuracy: highest)."""
    import torch
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
        logging_steps=params.logging_steps, report_to="none",  # curves: LossCurves (dvclive) below
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every trainable weight gets a gradient: skip DDP's graph search
    )


# ----------------------------------------------------------------------------- logging


def _curve_points(logs: dict, extra: Sequence[str] = ()) -> dict[str, float]:
    names = {**CURVES, **{key: key.replace("eval_", "eval/", 1) for key in extra}}
    return {names[key]: value for key, value in logs.items() if key in names}


def make_loss_curves(curves_dir: str | Path, extra: Sequence[str] = ()):
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
            points = _curve_points(logs, extra)
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


# ----------------------------------------------------------------------------- recipe


def resolve_params(params: TrainParams, train_labels: Sequence[str | None], on_cpu: bool,
                   hidden_size: int | None, demo_data: bool) -> tuple[TrainParams, dict]:
    """`params` with every `auto` knob filled from the preset (tuneproof.recipe), and what was
    chosen and why (recorded in tuneproof_train.json and printed)."""
    preset = params.preset if params.preset != "auto" else ("demo" if demo_data else "data")
    n_labels = len({label for label in train_labels if label is not None})
    defaults = recipe.DEMO if preset == "demo" else recipe.data_preset(
        params.method, len(train_labels), on_cpu, hidden_size, n_labels)
    pick = lambda key, value: defaults[key] if value == recipe.AUTO else value  # noqa: E731
    balance = pick("balance", params.balance)
    repeats = recipe.balance_repeats(train_labels, balance)
    n_examples = sum(repeats.get(str(label), 1) if label is not None else 1 for label in train_labels)
    epochs, max_examples = pick("num_epochs", params.num_epochs), pick("max_examples", params.max_examples)
    effective_batch = params.batch_size * params.gradient_accumulation_steps * params.num_processes
    steps, cadence = recipe.steps_and_eval_cadence(n_examples, epochs, max_examples, effective_batch)
    max_steps = pick("max_steps", params.max_steps)
    if max_steps is not None:
        steps, cadence = max_steps, max(1, max_steps // recipe.EVALS_PER_RUN)
    eval_steps = params.eval_steps if params.eval_steps != recipe.AUTO else (defaults["eval_steps"] or cadence)
    resolved = dataclasses.replace(
        params, preset=preset, learning_rate=pick("learning_rate", params.learning_rate), num_epochs=epochs,
        group_by_length=pick("group_by_length", params.group_by_length),
        max_steps=steps, max_examples=max_examples, eval_steps=min(eval_steps, steps), balance=balance,
        val_records=pick("val_records", params.val_records),
        lora=dataclasses.replace(params.lora, target_modules=pick("target_modules", params.lora.target_modules)))
    why = ("paths.raw is the bundled demo file" if demo_data else "your data") if params.preset == "auto" else "train.preset"
    return resolved, {"preset": preset, "why": why, "balance_repeats": repeats, "train_examples": n_examples,
                      "examples_seen": steps * effective_batch, "epochs_seen": round(steps * effective_batch / n_examples, 3)}


def val_metrics_fn(tokenizer, records: Sequence[dict], system: str | None, scorer, gen):
    """model -> aggregate scores of `records` decoded through the one generation path and scored by
    the one scorer: the checkpoint is chosen by what evaluate will measure, not by a loss that a
    collapsed model can keep low."""
    from tuneproof.predict import predict_and_score

    def score(model) -> dict[str, float]:
        return scorer.aggregate(predict_and_score(model, tokenizer, records, scorer, system, gen, desc="validate"))

    return score


# ----------------------------------------------------------------------------- training


def validation_sample(records: Sequence[dict], n: int | None, seed: int) -> list[dict]:
    """`n` validation records drawn with `seed` (all when n is None or larger): the loss on a
    few dozen records ranks checkpoints as well as on all, at a fraction of the CPU time."""
    if n is None or n >= len(records):
        return list(records)
    return random.Random(seed).sample(list(records), n)


def build_trainer(params: TrainParams, system: str | None, base_dir: str | Path,
                  train_records: Sequence[dict], val_records: Sequence[dict],
                  checkpoints: str | Path, curves_dir: str | Path, callbacks: Sequence = (), scoring=None):
    """The SFTTrainer for resolved `params` (one path for lora, qlora and full), ready to train.
    `scoring` (Scorer, GenerateParams) decodes and scores the val records at each validation;
    with train.select_by: primary its score.primary picks the checkpoint and drives early stopping."""
    import torch
    from transformers import EarlyStoppingCallback

    from tuneproof.sft import SharedPrefixSFTTrainer, common_prompt_prefix

    unresolved = [f.name for f in dataclasses.fields(params) if f.name != "preset" and getattr(params, f.name) == recipe.AUTO]
    if unresolved or params.lora.target_modules == recipe.AUTO:
        raise ValueError(f"train params still at auto: {unresolved or ['lora.target_modules']}; resolve_params first")
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
    val_fn, best_metric, curve_names = None, "eval_loss", []
    if scoring is not None:
        scorer, gen = scoring
        val_fn = val_metrics_fn(tokenizer, val_records, system, scorer, gen)
        curve_names = [f"eval_{scorer.params.primary}"]
        if params.select_by == "primary":
            best_metric = curve_names[0]
    extra = [make_loss_curves(curves_dir, curve_names), *callbacks]
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
          callbacks: Sequence = (), label_field: str | None = None, scoring=None, demo_data: bool = False):
    """Resolve the recipe, then train, resuming an interrupted run with the same fingerprint; write
    the adapter dir, the metrics file and the curves. Returns (trainer, info) where info is
    tuneproof_train.json. Under accelerate launch every process runs it; the main one writes."""
    import torch

    train_records, all_val = read_split(split_dir, "train"), read_split(split_dir, "val")
    labels = [label_of(r, label_field) for r in train_records]
    hidden = read_json(Path(base_dir) / "config.json").get("hidden_size") if (Path(base_dir) / "config.json").is_file() else None
    params, chosen = resolve_params(params, labels, select_device().type == "cpu", hidden, demo_data)
    data = {name: {"sha256": sha256_file(Path(split_dir) / f"{name}.jsonl"), "records": len(records)}
            for name, records in (("train", train_records), ("val", all_val))}
    train_records = recipe.balanced(train_records, labels, chosen["balance_repeats"])
    if not 0.0 <= params.replay <= 1.0:
        raise TuneproofError(f"train.replay: {params.replay} is not a share; use 0 (off) to 1")
    if params.replay > 0:
        from tuneproof.modeling import load_model

        n_replay = round(params.replay * len(train_records))
        general = recipe.replay_records(load_model(base_dir), load_tokenizer(base_dir), params.replay_prompts,
                                        n_replay, params.seed, scoring[1].batch_size if scoring else 16)
        train_records = [*train_records, *general]
        chosen["replay_examples"] = len(general)
    val_records = validation_sample(all_val, params.val_records, params.seed)
    base = base_model_info(base_dir)
    fingerprint = run_fingerprint(params, system, base, data)
    check_distributed(params, torch.cuda.device_count())
    processes = process_state(select_device())  # one process unless started by accelerate launch (main)
    with processes.main_process_first():  # the main process clears stale checkpoints before the others look
        resume_from = resumable_checkpoint(params.checkpoints, fingerprint, reset=processes.is_main_process)
    if resume_from and processes.is_main_process:
        print(f"train: resuming the interrupted run from {resume_from}")
    if processes.is_main_process:
        print(f"train: {chosen['preset']} recipe ({chosen['why']}): lr {params.learning_rate:g}, {params.max_steps} steps "
              f"x {chosen['examples_seen'] // params.max_steps} = {chosen['epochs_seen']} passes over "
              f"{chosen['train_examples']} examples (balance {params.balance}), validating every {params.eval_steps} "
              f"steps on {len(val_records)} records, checkpoint by {params.select_by}")
    trainer = build_trainer(params, system, base_dir, train_records, val_records, params.checkpoints,
                            curves_dir, callbacks, scoring)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before FSDP shards them
    trainer.train(resume_from_checkpoint=resume_from)

    state = trainer.state
    train_losses = [e["loss"] for e in state.log_history if "loss" in e]
    evals = [e for e in state.log_history if "eval_loss" in e]
    selected_by = trainer.args.metric_for_best_model
    metrics = {
        "method": params.method,
        "preset": chosen["preset"],
        "learning_rate": params.learning_rate,
        "balance": params.balance,
        "steps": state.global_step,
        "best_step": state.best_global_step,
        "selected_by": selected_by,
        "best_val_score": state.best_metric,
        "best_val_loss": min((e["eval_loss"] for e in evals), default=None),
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
        "resumed_from_step": int(resume_from.rsplit("-", 1)[1]) if resume_from else None, "recipe": chosen,
        "selected_by": selected_by, "best_val_score": metrics["best_val_score"],
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
    label_field = load_section(Task, "task", params_file).label_field
    records = [*read_split(paths.split, "train"), *read_split(paths.split, "val")]
    scorer = build_scorer(load_section(ScoreParams, "score", params_file), label_field, records)
    scoring = (scorer, load_section(GenerateParams, "generate", params_file))
    trainer, info = train(params, prompt.system, paths.base_model, paths.split, paths.output("adapter"),
                          paths.metrics_file("train"), Path(paths.metrics) / CURVES_DIR,
                          label_field=label_field, scoring=scoring, demo_data=recipe.is_demo_data(paths.raw))
    if trainer.is_world_process_zero():
        print(f"train: {params.method} -> {paths.adapter} (best step {info['best_step']} of {info['steps']} by "
              f"{info['selected_by']} {info['best_val_score']:.4f}{', stopped early' if info['stopped_early'] else ''})")


if __name__ == "__main__":
    run_main(lambda: main(*sys.argv[1:2]))  # optional params file: accelerate launch passes it to each process
