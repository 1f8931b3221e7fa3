"""bench/gpu_check.sh: the GPU device check runs on CPU in its --tiny mode, and its MFU
arithmetic is right (the GPU figures themselves are in bench/RESULTS.md, never a test)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402


def test_tiny_mode_runs_every_check_and_prints_the_figures_last(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable,
                               "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    checks = {r["check"]: r for r in figures["results"]}
    assert set(checks) == {"train lora", "generate", "train qlora"}
    lora = checks["train lora"]
    assert lora["tokens_per_s"] > 0 and lora["peak_mem_gib"] > 0 and lora["mfu"] is None  # no known peak on CPU
    assert math.isfinite(lora["first_loss"]) and math.isfinite(lora["last_loss"])
    assert checks["generate"]["tokens_per_s"] > 0
    last_lines = proc.stdout.strip().splitlines()[-4:]
    assert last_lines[0].startswith("check") and last_lines[1].startswith("train lora")


def test_refuses_a_full_run_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full run would start")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode != 0 and "no CUDA device here; run with --tiny" in proc.stderr


def _measured_flops_per_token(method: str, seq_len: int):
    """(model, FLOPs per token of one forward + backward, counted by torch's FlopCounterMode). Eager
    attention, so its matmuls are counted (in full: the causal mask does not skip them); the input
    embeddings require a gradient, so autograd computes every input gradient, as the formula does."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    model = LlamaForCausalLM(config)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    ids = torch.randint(0, 100, (1, seq_len))
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        model(inputs_embeds=embeds, labels=ids).loss.backward()
    return model, counter.get_total_flops() / seq_len


@pytest.mark.parametrize("method", ["full", "lora"])
def test_flops_per_token_match_torchs_flop_counter(method):
    # Measured, not re-typed: per token, weight matmuls cost the same at any length and attention
    # grows with it, so two lengths separate them; the formula counts the causal half of attention.
    model, short = _measured_flops_per_token(method, 10)
    _, long = _measured_flops_per_token(method, 20)
    weights, attention_at_10 = 2 * short - long, long - short
    assert gpu_check.flops_per_token(model, 10, method) == pytest.approx(weights + attention_at_10 / 2)
