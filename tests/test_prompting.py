"""Formatter identity: baseline (zero-shot), evaluate and train serve a record the same prompt."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from demo_project import demo_records
from stages import baseline, evaluate
from tuneproof import predict
from tuneproof.config import EvaluateParams, Prompt
from tuneproof.generation import GenerateParams
from tuneproof.modeling import load_tokenizer
from tuneproof.params import load_section
from tuneproof.prompting import build_messages, format_prompt
from tuneproof.scoring import ScoreParams, build_scorer
from tuneproof.train_data import tokenize_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured_prompts(monkeypatch):
    """Replace generation with a recorder of the prompts the stages serve."""
    seen: list[str] = []

    def fake_generate(model, tokenizer, prompts, *args, **kwargs):
        seen.extend(prompts)
        return ["{}"] * len(prompts)

    monkeypatch.setattr(predict, "generate", fake_generate)
    return seen


def test_baseline_zero_shot_evaluate_and_train_serve_identical_prompts(tiny_model_dir, captured_prompts):
    tokenizer = load_tokenizer(tiny_model_dir)
    system = load_section(Prompt, "prompt", ROOT / "params.yaml").system
    assert system and "intent" in system  # the project's real system prompt
    train, test = demo_records(8, seed=1), demo_records(3, seed=2, first_id=100)
    score = load_section(ScoreParams, "score", ROOT / "params.yaml")
    scorer = build_scorer(score, "intent", [*train, *test])
    gen = GenerateParams()

    baseline.run_strategy("zero_shot", None, None, tokenizer, train, test, scorer, system, gen, seed=0, desc="zero_shot")
    baseline_prompts = list(captured_prompts)
    captured_prompts.clear()
    model = SimpleNamespace(device="cpu")  # generation is captured: the model is only asked where it runs
    evaluate.run_evaluate(model, tokenizer, train, test, scorer, system, gen, EvaluateParams(train_sample=0))
    assert captured_prompts == baseline_prompts
    for record, served in zip(test, baseline_prompts):
        assert served == format_prompt(tokenizer, record, system)
        train_ids = tokenize_record(tokenizer, record, system, max_length=4096)
        prompt_ids = [t for t, m in zip(train_ids["input_ids"], train_ids["completion_mask"]) if m == 0]
        assert prompt_ids == tokenizer(served, add_special_tokens=False)["input_ids"]
        assert served.startswith("<|im_start|>system\n" + system)
        assert served.endswith(record["messages"][-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n")


def test_few_shot_prompt_puts_shots_between_system_and_record():
    record = {"messages": [{"role": "user", "content": "q"}], "completion": "a"}
    shot = {"messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": "sq"}],
            "completion": "sa"}
    assert build_messages(record, "sys", [shot]) == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "sq"},
        {"role": "assistant", "content": "sa"}, {"role": "user", "content": "q"}]
