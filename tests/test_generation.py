"""The shared generation path on a tiny random model: batching, prefix cache, stopping, ranking."""

from __future__ import annotations

import pytest
import torch

from tuneproof.generation import (generate, label_log_likelihoods, rank_classify, shared_prefix_length,
                                  stop_token_ids, supports_shared_prefix_attention)
from tuneproof.modeling import load_model, load_tokenizer
from tuneproof.prompting import completion_target, format_prompt

SYSTEM = "You sort short messages. Answer with one word: ham or spam, then stop."
TEXTS = ["hi", "win a free prize now, call 0800 to claim your cash reward today",
         "are we still on for lunch?", "URGENT! your account is blocked", "ok",
         "the quick brown fox jumps over the lazy dog and then some more words follow"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny model with its matrices re-drawn at a larger scale: at the default init its
    logits are nearly flat and greedy decoding repeats one token, which would compare nothing."""
    return sharpened(load_model(tiny_model_dir, device=torch.device("cpu"))), load_tokenizer(tiny_model_dir)


def sharpened(model):
    """`model` with its matrices re-drawn at scale 0.5 (seeded), so greedy outputs differ by prompt."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def prompts_for(tokenizer, texts=TEXTS, system=SYSTEM):
    return [format_prompt(tokenizer, {"messages": [{"role": "user", "content": t}]}, system) for t in texts]


def test_generate_params_reject_non_positive_counts():
    from tuneproof.generation import GenerateParams
    from tuneproof.io import TuneproofError
    from tuneproof.params import from_dict

    assert from_dict(GenerateParams, {"max_new_tokens": 1, "batch_size": 1}, "generate").max_new_tokens == 1
    for key in ("max_new_tokens", "batch_size"):
        with pytest.raises(TuneproofError, match=f"generate.{key}: 0 is not a positive count"):
            from_dict(GenerateParams, {key: 0}, "generate")


def test_shared_prefix_length_leaves_a_suffix():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter keeps one token
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0
    assert shared_prefix_length([]) == 0


def test_batched_prefix_cached_and_one_at_a_time_outputs_are_identical(tiny):
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=4, prefix_cache=True)
    no_cache = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=4, prefix_cache=False)
    alone = [generate(model, tokenizer, [p], max_new_tokens=12, batch_size=1, prefix_cache=False)[0]
             for p in prompts]
    assert batched == no_cache == alone
    assert len(set(alone)) > 1 and all(alone)  # a real comparison: distinct, non-empty outputs


def greedy_ids(model, tokenizer, prompt: str, n: int) -> list[int]:
    """n greedy tokens by plain argmax over full forwards (no cache, no padding, no generate())."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        for _ in range(n):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, -n:].tolist()


def test_output_is_the_greedy_continuation_cut_at_max_new_tokens(tiny):
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)
    expected = []
    for prompt in prompts:
        new = greedy_ids(model, tokenizer, prompt, 5)
        assert not set(new) & set(stop_token_ids(model, tokenizer))
        expected.append(tokenizer.decode(new, skip_special_tokens=True))
    assert generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=4) == expected


def test_generation_stops_at_the_models_end_of_turn_token(tiny, monkeypatch):
    model, tokenizer = tiny
    prompt = prompts_for(tokenizer)[1]
    new = greedy_ids(model, tokenizer, prompt, 10)
    # Pretend the chat's end-of-turn is a token the model emits a few steps in.
    cut = next(j for j in range(2, 10) if new[j] not in new[:j])
    monkeypatch.setattr(model.generation_config, "eos_token_id", [tokenizer.eos_token_id, new[cut]])
    assert new[cut] in stop_token_ids(model, tokenizer)
    stopped = generate(model, tokenizer, [prompt], max_new_tokens=10, batch_size=1)
    assert stopped == [tokenizer.decode(new[:cut], skip_special_tokens=True)]
    assert stopped != [tokenizer.decode(new, skip_special_tokens=True)]


def test_softcapped_model_is_decoded_by_the_library_and_matches_greedy(tiny):
    """Gemma 2 soft-caps attention scores, which shared_prefix_attention does not: such a model is
    decoded by transformers' generate() instead, with the same greedy outputs."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    _, tokenizer = tiny
    small = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=tokenizer.pad_token_id,
                 eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    gemma = Gemma2ForCausalLM(Gemma2Config(**small, attn_logit_softcapping=50.0, attn_implementation="eager")).eval()
    assert not supports_shared_prefix_attention(gemma, 100)
    assert supports_shared_prefix_attention(LlamaForCausalLM(LlamaConfig(**small)), 100)
    windowed = LlamaForCausalLM(LlamaConfig(**small))
    windowed.config.sliding_window = 64  # a window shorter than the sequence changes attention
    assert supports_shared_prefix_attention(windowed, 64) and not supports_shared_prefix_attention(windowed, 65)
    sharpened(gemma)
    prompts = prompts_for(tokenizer)[:3]
    expected = [tokenizer.decode(greedy_ids(gemma, tokenizer, p, 5), skip_special_tokens=True) for p in prompts]
    assert generate(gemma, tokenizer, prompts, max_new_tokens=5, batch_size=3) == expected


def naive_log_likelihood(model, tokenizer, prompt: str, target: str) -> float:
    """Sum of log p(target tokens) from one unbatched, uncached forward over prompt + target."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    t = tokenizer(target, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([p + t])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return float(sum(logp[len(p) - 1 + j, tok] for j, tok in enumerate(t)))


@pytest.mark.parametrize("prefix_cache, batch_size", [(True, 6), (False, 3), (True, 1)])
def test_label_log_likelihoods_match_unbatched_full_forward(tiny, prefix_cache, batch_size):
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)
    labels = ["ham", "spam", "not sure at all"]  # different token lengths: targets are padded
    targets = [completion_target(tokenizer, {"completion": lab}) for lab in labels]
    got = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size, prefix_cache)
    expected = [[naive_log_likelihood(model, tokenizer, p, t) for t in targets] for p in prompts]
    assert [v for row in got for v in row] == pytest.approx([v for row in expected for v in row], abs=1e-4)


def test_rank_classify_picks_the_most_likely_label(tiny):
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)
    labels = ["ham", "spam", "not sure at all", "x"]
    picked = rank_classify(model, tokenizer, prompts, labels, batch_size=8)
    targets = [completion_target(tokenizer, {"completion": lab}) for lab in labels]
    for prompt, choice in zip(prompts, picked):
        scores = [naive_log_likelihood(model, tokenizer, prompt, t) for t in targets]
        assert choice == labels[max(range(len(labels)), key=scores.__getitem__)]


@pytest.mark.slow
def test_real_model_batched_with_prefix_cache_equals_one_at_a_time():
    from pathlib import Path

    base = Path(__file__).resolve().parents[1] / "models" / "base"
    if not (base / "model.safetensors").is_file():
        pytest.skip("models/base not materialised (run `dvc repro base_model`)")
    model, tokenizer = load_model(base, device=torch.device("cpu")), load_tokenizer(base)
    system = "You triage support tickets. Answer with one line of JSON: intent, priority, reply."
    prompts = prompts_for(tokenizer, ["My order 12345 arrived broken, urgent!", "How do I reset my password?",
                                      "Please cancel my subscription, no rush. Thanks, Anna"], system)
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=3, prefix_cache=True)
    alone = [generate(model, tokenizer, [p], max_new_tokens=10, batch_size=1, prefix_cache=False)[0] for p in prompts]
    assert batched == alone and all(alone)
