"""The `train` params section (params.yaml `train`, `train.lora`): what the train stage, the
sweep tooling, `tuneproof check-data` and bench/ read. Knobs at `auto` are filled by
tuneproof.recipe.resolve_params before training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    method: Literal["lora", "qlora", "full"] = "lora"  # lora: peft adapter; qlora: the adapter on a 4-bit base; full: every weight
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
