import json

import pytest

from stages import base_model
from tuneproof.checkpoints import base_model_info
from tuneproof.config import SOURCE_INFO
from tuneproof.io import TuneproofError


def test_local_dir_is_materialised_with_tokenizer_and_template(tiny_model_dir, tmp_path):
    out = tmp_path / "base"
    info = base_model.materialise(str(tiny_model_dir), out)
    assert info["model_type"] == "llama"
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / SOURCE_INFO).read_text())["source"] == str(tiny_model_dir)
    assert base_model_info(out)["source"] == str(tiny_model_dir)  # what train records as the base model
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith("<|im_start|>")


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(TuneproofError, match="not a model directory"):
        base_model.materialise(str(tmp_path / "nope"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bin_only_weights_are_refused(tiny_model_dir, tmp_path):
    src = tmp_path / "binonly"
    src.mkdir()
    (src / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (src / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(TuneproofError, match="safetensors only"):
        base_model.materialise(str(src), tmp_path / "out")


@pytest.mark.slow
def test_embedded_gguf_becomes_trainable_checkpoint(embedded_model_dir):
    from transformers import AutoModelForCausalLM
    out = embedded_model_dir
    info = json.loads((out / SOURCE_INFO).read_text())
    assert info["model_type"] == "llama" and 100e6 < info["parameters"] < 200e6
    model = AutoModelForCausalLM.from_pretrained(out)
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None  # Trainer refuses GGUF-quantized models
