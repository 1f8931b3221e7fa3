"""General-ability probe: rule checks, loss/KL against the base, the stage end to end."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from conftest import ROOT
from params_file import set_params
from stages import probe
from tuneproof.modeling import load_model, load_tokenizer


@pytest.mark.parametrize("answer,check,expected", [
    ("The answer is 42.", {"type": "number", "value": 42}, True),
    ("41", {"type": "number", "value": 42}, False),
    ("Paris!", {"type": "contains", "value": "paris"}, True),
    ("apple", {"type": "contains", "value": "APPLE", "case_sensitive": True}, False),
    ("deep blue water", {"type": "word_count", "value": 3}, True),
    ("deep blue", {"type": "word_count", "value": 3}, False),
    ('Sure: {"name": "Tom", "age": 30}', {"type": "json_keys", "value": ["name", "age"]}, True),
    ('{"name": "Tom"}', {"type": "json_keys", "value": ["name", "age"]}, False),
    ("Yes, it is.", {"type": "starts_with", "value": "yes"}, True),
    ("No.", {"type": "starts_with", "value": "yes"}, False),
])
def test_instruction_rules(answer, check, expected):
    assert probe.check_instruction(answer, check) is expected


def test_shipped_probe_sets_load():
    assert len(probe.read_passages("eval/general_text.txt")) >= 10
    rows = probe.load_instructions("eval/general_instructions.jsonl")
    assert len(rows) >= 20 and {r["check"]["type"] for r in rows} >= {"number", "word_count", "json_keys"}


def make_adapter(tiny_model_dir, out, perturb: float):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(perturb)
    model.save_pretrained(out)
    return out


def test_untouched_adapter_has_zero_kl_and_equal_loss(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_model_dir)
    passages = ["the quick brown fox jumps over the lazy dog", "hello how are you"]
    same = load_model(tiny_model_dir, make_adapter(tiny_model_dir, tmp_path / "zero", 0.0))
    result = probe.text_loss_and_kl(None, same, tokenizer, passages, 64)
    assert result["kl"] == pytest.approx(0.0, abs=1e-6)
    assert result["finetune_loss"] == pytest.approx(result["base_loss"], rel=1e-6)
    moved = load_model(tiny_model_dir, make_adapter(tiny_model_dir, tmp_path / "moved", 0.5))
    result = probe.text_loss_and_kl(None, moved, tokenizer, passages, 64)
    assert result["kl"] > 1e-3
    # Same numbers with the base loaded separately (the full fine-tune path).
    separate = probe.text_loss_and_kl(load_model(tiny_model_dir), moved, tokenizer, passages, 64)
    assert separate["kl"] == pytest.approx(result["kl"], rel=1e-4)


def test_stage_writes_metrics_and_per_instruction_rows(tiny_model_dir, project_dir):
    adapter = make_adapter(tiny_model_dir, project_dir / "adapter", 0.1)
    set_params(project_dir, paths={"base_model": str(tiny_model_dir), "adapter": str(adapter)},
               generate={"max_new_tokens": 4})
    shutil.copytree(ROOT / "eval", project_dir / "eval")
    probe.main()
    checks = {row["id"]: row["check"] for row in map(json.loads, (ROOT / "eval" / "general_instructions.jsonl").open())}
    metrics = yaml.safe_load((project_dir / "metrics" / "probe.json").read_text())
    assert set(metrics) >= {"base", "finetune", "kl_base_finetune"}
    for name in ("base", "finetune"):  # each pass rate is its rows' share passed, each row re-checked
        rows = [json.loads(line) for line in
                (project_dir / "outputs" / "probe" / f"instructions_{name}.jsonl").read_text().splitlines()]
        assert len(rows) == metrics["instructions"] == 30
        assert [row["passed"] for row in rows] == [int(probe.check_instruction(row["prediction"], checks[row["id"]]))
                                                   for row in rows]
        assert metrics[name]["instruction_pass"] == pytest.approx(sum(row["passed"] for row in rows) / 30)
