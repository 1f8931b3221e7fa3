"""Loading models and tokenizers the same way in every stage, with sensible device handling:
CUDA (bf16 where supported) when present, else CPU fp32 (these CPUs have no fast bf16)."""

from __future__ import annotations

from pathlib import Path

import torch

from tuneproof.io import TuneproofError

ADAPTER_CONFIG = "adapter_config.json"


def select_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def select_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA that supports it; fp32 elsewhere (CPU bf16 ran 17x slower here)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(model_dir: str | Path, padding_side: str = "left"):
    """Tokenizer with a pad token; left padding so batched generation continues each prompt."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(model_dir: str | Path, adapter_dir: str | Path | None = None,
               device: torch.device | None = None):
    """Base model (safetensors only), optionally with a peft adapter or a full fine-tune in
    `adapter_dir`, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    device = device or select_device()
    source = Path(model_dir)
    if adapter_dir is not None and not (Path(adapter_dir) / ADAPTER_CONFIG).is_file():
        source = Path(adapter_dir)  # a full fine-tune is a complete model directory
        if not (source / "config.json").is_file():
            raise TuneproofError(f"{adapter_dir}: neither a peft adapter ({ADAPTER_CONFIG}) nor a model (config.json)")
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=select_dtype(device), use_safetensors=True, trust_remote_code=False)
    if adapter_dir is not None and source == Path(model_dir):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    return model.to(device).eval()
