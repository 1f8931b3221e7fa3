"""Stage `evaluate`: the fine-tune (a peft adapter made here) through the shared predict path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from demo_project import demo_records, setup_project
from stages import evaluate
from tuneproof.records import sample_records
from tuneproof.generation import generate
from tuneproof.io import TuneproofError, read_json, read_jsonl
from tuneproof.modeling import load_model, load_tokenizer
from tuneproof.predict import build_prompts


def make_adapter(model_dir: Path, out_dir: Path) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved like the train stage saves one."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(model_dir, device=torch.device("cpu")),
                           LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(out_dir)
    load_tokenizer(model_dir).save_pretrained(out_dir)
    return out_dir


def test_sample_records_is_seeded_sorted_and_bounded():
    train = demo_records(20, seed=3)
    sample = sample_records(train, 5, seed=0)
    assert len(sample) == 5 and all(r in train for r in sample)
    assert [r["id"] for r in sample] == sorted(r["id"] for r in sample)
    assert sample_records(list(reversed(train)), 5, seed=0) == sample
    assert sample_records(train, 5, seed=1) != sample
    assert len(sample_records(train, 50, seed=0)) == 20
    assert sample_records(train, 0, seed=0) == []


def test_main_scores_the_finetune_on_test_and_a_train_sample(project_dir, tiny_model_dir):
    train, test = demo_records(20, seed=1), demo_records(5, seed=2, first_id=100)
    params = setup_project(project_dir, tiny_model_dir, train, test, evaluate={"train_sample": 4})
    adapter = make_adapter(tiny_model_dir, project_dir / params["paths"]["adapter"])
    evaluate.main()
    out = project_dir / params["paths"]["evaluate"]
    test_rows = read_jsonl(out / "test.jsonl")
    train_rows = read_jsonl(out / "train_sample.jsonl")
    assert [r["id"] for r in test_rows] == [r["id"] for r in test]
    assert len(train_rows) == 4 and {r["id"] for r in train_rows} <= {r["id"] for r in train}
    metrics = read_json(project_dir / params["paths"]["metrics"] / "evaluate.json")
    tokenizer = load_tokenizer(tiny_model_dir)
    assert set(metrics) == {"finetune", "train_sample", "cost"}
    tokens = sum(len(tokenizer(r["prediction"], add_special_tokens=False)["input_ids"]) for r in test_rows)
    cost = metrics["cost"]  # measured on the test split: its seconds and the tokens actually generated
    assert cost["device"] == "cpu" and cost["batch_size"] == params["generate"]["batch_size"]
    assert cost["seconds_per_answer"] > 0
    assert cost["tokens_per_second"] == pytest.approx(tokens / (cost["seconds_per_answer"] * len(test)), rel=0.01)
    assert set(metrics["finetune"]) == set(metrics["train_sample"]) == set(test_rows[0]["scores"]) | {"macro_f1"}

    # The rows are the adapter's greedy outputs on the zero-shot prompts (here decoded one at a
    # time without the prefix cache), not the base model's.
    prompts = build_prompts(tokenizer, test, params["prompt"]["system"])
    tuned = generate(load_model(tiny_model_dir, adapter), tokenizer, prompts, 6, 1, prefix_cache=False)
    base = generate(load_model(tiny_model_dir), tokenizer, prompts, 6, 1, prefix_cache=False)
    assert [r["prediction"] for r in test_rows] == tuned
    assert tuned != base


def test_main_without_adapter_says_run_train(project_dir, tiny_model_dir):
    setup_project(project_dir, tiny_model_dir, demo_records(4, seed=1), demo_records(2, seed=2, first_id=50))
    with pytest.raises(TuneproofError, match="run the train stage first"):
        evaluate.main()
