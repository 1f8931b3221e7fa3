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
def test_real_model_batched_with_prefix_cache_equals_one_at_a_time(embedded_model_dir):
    base = embedded_model_dir
    model, tokenizer = load_model(base, device=torch.device("cpu")), load_tokenizer(base)
    system = "You triage support tickets. Answer with one line of JSON: intent, priority, reply."
    prompts = prompts_for(tokenizer, ["My order 12345 arrived broken, urgent!", "How do I reset my password?",
                                      "Please cancel my subscription, no rush. Thanks, Anna"], system)
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=3, prefix_cache=True)
    alone = [generate(model, tokenizer, [p], max_new_tokens=10, batch_size=1, prefix_cache=False)[0] for p in prompts]
    assert batched == alone and all(alone)


# --- rank classification over a token trie (issue 17) ---

@torch.inference_mode()
def reference_label_log_likelihoods(model, tokenizer, prompts, targets, batch_size, prefix_cache=True):
    """label_log_likelihoods as it was before the token trie (kept here, and used by bench/rank.py,
    as the reference): each prompt's cache repeated for every target, targets right-padded after it."""
    from tuneproof.generation import _length_batches, _PrefixBatcher, _tokenize

    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    token_lists = _tokenize(tokenizer, prompts)
    target_lists = _tokenize(tokenizer, targets)
    n_targets = len(target_lists)
    t_width = max(len(t) for t in target_lists)
    t_ids = torch.tensor([t + [pad_id] * (t_width - len(t)) for t in target_lists])
    t_mask = torch.tensor([[1] * len(t) + [0] * (t_width - len(t)) for t in target_lists])
    batcher = _PrefixBatcher(model, token_lists, pad_id, prefix_cache)
    device = batcher.device
    t_ids, t_mask = t_ids.to(device), t_mask.to(device)
    scores = [[] for _ in prompts]
    per_batch = max(1, batch_size // n_targets)
    for batch in _length_batches([len(t) for t in token_lists], per_batch):
        ids, mask, cache = batcher.batch([token_lists[i] for i in batch])
        extra = {"cache": cache} if cache is not None else {}
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids[:, len(batcher.prefix):], attention_mask=mask,
                    position_ids=positions[:, len(batcher.prefix):], use_cache=True, logits_to_keep=1,
                    **extra)
        b = len(batch)
        first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        cache = out.cache
        cache.batch_repeat_interleave(n_targets)
        rep_mask = mask.repeat_interleave(n_targets, dim=0)
        cont_ids = t_ids.repeat(b, 1)
        cont_mask = t_mask.repeat(b, 1)
        cont_pos = (positions[:, -1:].repeat_interleave(n_targets, dim=0) + 1
                    + torch.arange(t_width, device=device))
        cont = model(input_ids=cont_ids, attention_mask=torch.cat([rep_mask, cont_mask], dim=1),
                     position_ids=cont_pos, cache=cache, use_cache=True)
        logp = torch.log_softmax(cont.logits[:, :-1].float(), dim=-1)
        rest = logp.gather(-1, cont_ids[:, 1:, None])[..., 0] * cont_mask[:, 1:]
        first = first_logp.repeat_interleave(n_targets, dim=0).gather(-1, cont_ids[:, :1])[:, 0]
        total = (first + rest.sum(-1)).view(b, n_targets)
        for r, i in enumerate(batch):
            scores[i] = total[r].tolist()
    return scores


# Shared leading tokens (card_*, top_up_*), labels that are prefixes of others (spam / spam offer,
# card / card_arrival), one-token to many-token labels, duplicates of nothing.
TRIE_LABELS = ["card", "card_arrival", "card_linking", "card_arrival_late", "spam", "spam offer", "ham",
               "top_up", "top_up_failed", "top_up_limits", "x", "refund not showing up"]


def test_label_trie_shares_leading_tokens_and_runs_inner_nodes_once():
    from tuneproof.generation import _label_trie

    targets = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2], [6]]
    trie = _label_trie(targets, nodes_per_forward=1, device=torch.device("cpu"))
    assert trie.n_nodes == 6  # 1, 1-2, 1-2-3, 1-2-4, 1-5, 6
    assert trie.inner_tokens.tolist() == [1, 2]  # only nodes with children run through the model
    assert trie.spans == [(0, 1), (1, 2)]
    assert trie.visible.tolist() == [[True, False], [True, True]]
    assert trie.paths.tolist() == [[0, 1, 2], [0, 1, 3], [0, 4, 6], [0, 1, 6], [5, 6, 6]]
    # forward 0 keeps the logits [prompt's last | 1]: 1 and 6 are scored from the prompt's, 1-2 and
    # 1-5 from 1's; forward 1 keeps [1-2], which scores 1-2-3 and 1-2-4
    assert [s.tolist() for s in trie.scored[0]] == [[0, 1, 4, 5], [0, 1, 1, 0], [1, 2, 5, 6]]
    assert [s.tolist() for s in trie.scored[1]] == [[2, 3], [0, 0], [3, 4]]


def test_single_token_targets_need_only_the_prompts_forward(tiny):
    from tuneproof.generation import _label_trie

    model, tokenizer = tiny
    assert _label_trie([[7], [8]], 2, torch.device("cpu")).spans == [(0, 0)]
    prompts = prompts_for(tokenizer)
    targets = [tokenizer.eos_token, "x"]
    assert [len(t) for t in tokenizer(targets, add_special_tokens=False)["input_ids"]] == [1, 1]
    got = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size=4)
    expected = reference_label_log_likelihoods(model, tokenizer, prompts, targets, batch_size=4)
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)


def test_a_forward_of_one_trie_node_scores_like_the_others(tiny):
    """Three two-token targets at batch_size 1: two trie nodes per forward, so the last forward
    runs one node (one query: shared_prefix_attention's decoding branch)."""
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)[:3]
    targets = [completion_target(tokenizer, {"completion": label}) for label in "abc"]
    assert [len(t) for t in tokenizer(targets, add_special_tokens=False)["input_ids"]] == [2, 2, 2]
    got = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size=1)
    expected = reference_label_log_likelihoods(model, tokenizer, prompts, targets, batch_size=1)
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("prefix_cache, batch_size", [(True, 64), (False, 64), (True, 5), (False, 3), (True, 1)])
def test_trie_log_likelihoods_equal_the_per_target_cache_copies(tiny, prefix_cache, batch_size):
    """The trie path gives the old path's scores and picks: several prompts per forward (64),
    more labels than batch_size (5, 3, 1; at 1 the trie takes several forwards per prompt, later
    ones reusing the shared nodes' cache), prompts of different lengths, with and without the
    shared-prefix cache."""
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)
    targets = [completion_target(tokenizer, {"completion": label}) for label in TRIE_LABELS]
    lengths = {len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets}
    assert len(lengths) > 3
    got = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size, prefix_cache)
    expected = reference_label_log_likelihoods(model, tokenizer, prompts, targets, batch_size, prefix_cache)
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)
    order = lambda scores: torch.tensor(scores).argsort(-1, descending=True).tolist()  # noqa: E731
    assert order(got) == order(expected)  # so the same pick from the labels, or from any subset of them
    assert len({tuple(row) for row in order(got)}) > 1  # a real comparison: the rankings differ by prompt


def test_trie_scores_match_an_unbatched_full_forward(tiny):
    model, tokenizer = tiny
    prompts = prompts_for(tokenizer)[:3]
    targets = [completion_target(tokenizer, {"completion": label}) for label in TRIE_LABELS[:6]]
    got = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size=4)
    expected = [[naive_log_likelihood(model, tokenizer, p, t) for t in targets] for p in prompts]
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch_size", [2, 64])
def test_softcapped_model_is_ranked_on_copied_caches_and_matches_full_forward(tiny, batch_size):
    """shared_prefix_attention cannot run Gemma 2 (soft-capping): its targets run on copies of
    the prompt's cache with the model's own attention, in groups of batch_size targets (2) or
    with several prompts at once (64), and score as one full forward would."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    _, tokenizer = tiny
    torch.manual_seed(0)
    gemma = sharpened(Gemma2ForCausalLM(Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        attn_logit_softcapping=50.0, attn_implementation="eager")).eval())
    prompts = prompts_for(tokenizer)[:3]
    targets = [completion_target(tokenizer, {"completion": label}) for label in TRIE_LABELS[:5]]
    got = label_log_likelihoods(gemma, tokenizer, prompts, targets, batch_size)
    expected = [[naive_log_likelihood(gemma, tokenizer, p, t) for t in targets] for p in prompts]
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)
