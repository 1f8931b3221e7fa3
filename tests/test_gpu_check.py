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


def test_flops_per_token_counts_frozen_adapter_and_attention_work():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    base = LlamaForCausalLM(config)
    # per layer: q 16x16, k 16x8, v 16x8, o 16x16, gate/up 16x32 each, down 32x16; plus lm_head 100x16
    matmul = 2 * (256 + 128 + 128 + 256 + 3 * 512) + 1600
    attention = 3 * 2 * 2 * 10 * 16  # 3 x (2 x layers x seq x hidden)
    assert gpu_check.flops_per_token(base, 10, "full") == 6 * matmul + attention
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    adapter = 2 * (2 * 16 + 16 * 2)  # A (2x16) and B (16x2) per layer
    assert gpu_check.flops_per_token(model, 10, "lora") == 4 * matmul + 6 * adapter + attention


def test_peak_lookup_prefers_the_specific_card_name():
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.4
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert gpu_check.peak_tflops("NVIDIA H200", None) == 989.4
    assert gpu_check.peak_tflops("Some Future GPU", None) is None
    assert gpu_check.peak_tflops("Some Future GPU", 123.0) == 123.0
