"""Loading models and tokenizers the same way in every stage, with sensible device handling:
CUDA (bf16 where supported) when present, else CPU fp32 (these CPUs have no fast bf16).
`load_model` serves a model (base, or with its fine-tune); `load_base_model` and `lora_config`
set one up for training by train.method (lora, qlora, full), after `check_method`/`check_liger`
have refused what this machine cannot run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tuneproof.io import TuneproofError

if TYPE_CHECKING:  # only for annotations: serving (evaluate, probe) does not depend on the train section
    from tuneproof.train_config import TrainParams

ADAPTER_CONFIG = "adapter_config.json"


def select_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def select_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA that supports it; fp32 elsewhere (a CPU without bf16 units emulates it, many times slower)."""
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


def liger_installed() -> bool:
    """Is the optional liger-kernel package importable here?"""
    return importlib.util.find_spec("liger_kernel") is not None


def check_liger(use_liger: bool) -> None:
    """Fail fast when Liger kernels are asked for but not installed (they are optional)."""
    if use_liger and not liger_installed():
        raise TuneproofError("train.use_liger: true needs the liger-kernel package (pip install liger-kernel; "
                             "CUDA + Triton); install it or set train.use_liger: false")


def check_method(method: str, device: torch.device) -> None:
    """Fail fast where a method cannot run: QLoRA needs bitsandbytes to quantize on `device`."""
    if method != "qlora":
        return
    try:
        import bitsandbytes.functional as bnb_functional

        bnb_functional.quantize_4bit(torch.ones(64, device=device), quant_type="nf4")
    except Exception as exc:  # noqa: BLE001 - any failure means 4-bit is unavailable here
        raise TuneproofError(
            f"train.method: 'qlora' needs bitsandbytes 4-bit quantization on {device.type}, which failed "
            f"here ({type(exc).__name__}: {exc}); use train.method: lora") from exc


def load_base_model(base_dir: str | Path, method: str, device: torch.device, gradient_checkpointing: bool,
                    attn_implementation: str = "sdpa"):
    """The base model to train: plain (lora, full) or 4-bit NF4 and k-bit-prepared (qlora)."""
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
