"""The `train` params section (params.yaml `train`, `train.lora`, where every key is documented):
what the train stage, the sweep tooling, `tuneproof check-data` and bench/ read. Knobs at `auto`
are filled by tuneproof.recipe.resolve_params before training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LoraParams:
    """params.yaml `train.lora`: the adapter shape (lora and qlora)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "auto"
    last_layers: int | None = None
    plus_lr_ratio: float | None = None


@dataclass(frozen=True)
class TrainParams:
    """params.yaml `train`."""

    method: Literal["lora", "qlora", "full"] = "lora"
    preset: Literal["auto", "data", "demo"] = "auto"
    seed: int = 0
    learning_rate: float | Literal["auto"] = "auto"
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    num_epochs: float | Literal["auto"] = "auto"
    max_steps: int | Literal["auto"] | None = "auto"
    max_examples: int | Literal["auto"] | None = "auto"
    balance: Literal["auto", "none", "sqrt", "full"] = "auto"
    select_by: Literal["primary", "loss"] = "primary"
    replay: float = 0.0
    replay_prompts: str = "eval/replay_prompts.jsonl"
    batch_size: int = 4
    eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    use_liger: bool = False
    max_length: int = 768
    group_by_length: bool | Literal["auto"] = "auto"
    share_prefix: bool = True
    val_records: int | Literal["auto"] | None = "auto"
    eval_steps: int | Literal["auto"] = "auto"
    logging_steps: int = 3
    early_stopping_patience: int | None = 3
    early_stopping_threshold: float = 0.0
    checkpoints: str = "models/checkpoints"
    num_processes: int = 1
    distributed: Literal["ddp", "fsdp"] = "ddp"
    lora: LoraParams = field(default_factory=LoraParams)
