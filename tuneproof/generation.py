"""The one generation path: batched greedy decoding and rank classification.

Baseline, evaluate and the probes all generate here, so every system is decoded the same way.

Speed on CPU comes from three things (see bench/generate.py for measured ratios):
  * batching: the weights are read once per decode step for the whole batch; prompts are
    sorted by length so a batch holds similar lengths and little padding;
  * a shared-prefix cache: the system prompt (and fixed few-shot turns) open every prompt, so
    their key/value cache is computed once and copied into each batch instead of re-running
    hundreds of prompt tokens per record;
  * a preallocated (static) key/value cache: with long shared prompts, decoding is bound by
    memory traffic over the cache, and a growing cache re-copies all of it at every step
    (1.5x slower on few-shot prompts here).
Each batch is laid out as `[shared prefix | left padding | own suffix]`; the attention mask
hides the padding and position ids follow the mask, so every row sees exactly the tokens it
would see alone (batched and one-at-a-time outputs are compared in tests and the bench).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from tuneproof.prompting import completion_target

# Below this many shared tokens a prefix cache saves less than copying it costs.
MIN_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class GenerateParams:
    """params.yaml `generate:` — how every system (baseline and fine-tune) is decoded."""

    max_new_tokens: int = 64    # generation stops here or at the end-of-turn token; demo answers are <= ~45 tokens
    batch_size: int = 16        # prompts decoded together (CPU: ~16 keeps one decode step near its batch-1 cost)
    prefix_cache: bool = True   # compute the prompts' shared opening (system prompt, fixed shots) once


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos plus any the model's generation config adds
    (chat models often end a turn with a token other than their document eos)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update([configured] if isinstance(configured, int) else configured)
    return sorted(i for i in ids if i is not None)


def _tokenize(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    # The chat template already wrote every special token, so the tokenizer must add none.
    return tokenizer(list(prompts), add_special_tokens=False)["input_ids"]


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix common to all lists, leaving every list at least one token."""
    if not token_lists:
        return 0
    limit = min(len(t) for t in token_lists) - 1
    first = token_lists[0]
    n = 0
    while n < limit and all(t[n] == first[n] for t in token_lists):
        n += 1
    return n


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


class _PrefixBatcher:
    """Builds `[prefix | pad | suffix]` batches and, when enabled, the prefix's cache."""

    def __init__(self, model, token_lists: Sequence[Sequence[int]], pad_id: int, use_cache: bool):
        self.device = _model_device(model)
        self.config = model.config
        self.pad_id = pad_id
        n = shared_prefix_length(token_lists) if use_cache else 0
        self.prefix = list(token_lists[0][:n]) if n >= MIN_PREFIX_TOKENS else []
        self.cache = None
        if self.prefix:
            ids = torch.tensor([self.prefix], device=self.device)
            self.cache = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                               logits_to_keep=1).cache

    def batch(self, rows: Sequence[Sequence[int]], static_tokens: int | None = None):
        """(input_ids, attention_mask, cache) for `rows` (full prompt token lists).

        With `static_tokens` (tokens to be generated), the cache is a preallocated StaticCache
        sized for the whole batch, holding the prefix when there is one; otherwise it is a
        growing DynamicCache (the prefix's, repeated per row) or None without a prefix.
        """
        from transformers import StaticCache

        p = len(self.prefix)
        suffixes = [list(r[p:]) for r in rows]
        width = max(len(s) for s in suffixes)
        ids = [self.prefix + [self.pad_id] * (width - len(s)) + s for s in suffixes]
        mask = [[1] * p + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        cache = None
        if static_tokens is not None:
            cache = StaticCache(config=self.config, max_cache_len=p + width + static_tokens)
            for layer_idx, layer in enumerate(self.cache.layers if self.cache is not None else []):
                size = (len(rows), -1, -1, -1)
                cache.update(layer.keys.expand(size), layer.values.expand(size), layer_idx)
        elif self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(rows))
        return (torch.tensor(ids, device=self.device), torch.tensor(mask, device=self.device), cache)


def _length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so a too-large batch
    fails at once); ties keep input order, so the grouping is deterministic. Batches are
    evened out (130 rows at batch_size 64 -> 44/44/42, not 64/64/2): a straggler batch of 2
    would pay nearly a full batch's decode steps."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n_batches = -(-len(order) // max(1, batch_size))
    size = -(-len(order) // n_batches) if n_batches else 1
    return [order[i:i + size] for i in range(0, len(order), size)]


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
             prefix_cache: bool = True, desc: str = "generate") -> list[str]:
    """Greedy completions of rendered `prompts` (same order), each cut at the first end-of-turn
    token and decoded without special tokens."""
    from transformers import GenerationConfig

    if not prompts:
        return []
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    # disable_compile: a static cache would trigger torch.compile on CUDA, recompiling per batch shape.
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=stops, pad_token_id=pad_id, disable_compile=True)
    token_lists = _tokenize(tokenizer, prompts)
    batcher = _PrefixBatcher(model, token_lists, pad_id, prefix_cache)
    outputs: list[str] = [""] * len(prompts)
    batches = _length_batches([len(t) for t in token_lists], batch_size)
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False):
        ids, mask, cache = batcher.batch([token_lists[i] for i in batch], static_tokens=max_new_tokens)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, cache=cache)
        for row, i in zip(out[:, ids.shape[1]:].tolist(), batch):
            end = next((j for j, tok in enumerate(row) if tok in stops), len(row))
            outputs[i] = tokenizer.decode(row[:end], skip_special_tokens=True)
    return outputs


@torch.inference_mode()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                          batch_size: int, prefix_cache: bool = True,
                          desc: str = "rank") -> list[list[float]]:
    """log P(target | prompt) summed over the target's tokens, for every prompt x target.

    `targets` are full completions as the model must emit them (label + end-of-turn token), so
    a label that is a prefix of another ("spam" vs "spam offer") is not favoured. Each prompt
    is run once; its cache is repeated for every target, whose tokens are right-padded after it.
    """
    if not prompts:
        return []
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
    scores: list[list[float]] = [[] for _ in prompts]
    # A batch of `b` prompts scores b * n_targets continuations at once.
    per_batch = max(1, batch_size // n_targets)
    for batch in tqdm(_length_batches([len(t) for t in token_lists], per_batch), desc=desc,
                      unit="batch", leave=False):
        ids, mask, cache = batcher.batch([token_lists[i] for i in batch])
        extra = {"cache": cache} if cache is not None else {}
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids[:, len(batcher.prefix):], attention_mask=mask,
                    position_ids=positions[:, len(batcher.prefix):], use_cache=True, logits_to_keep=1,
                    **extra)
        b = len(batch)
        first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts target token 0
        cache = out.cache
        cache.batch_repeat_interleave(n_targets)  # row r*n_targets + k = prompt r, target k
        rep_mask = mask.repeat_interleave(n_targets, dim=0)
        cont_ids = t_ids.repeat(b, 1)
        cont_mask = t_mask.repeat(b, 1)
        cont_pos = positions[:, -1:].repeat_interleave(n_targets, dim=0) + 1 + torch.arange(t_width, device=device)
        cont = model(input_ids=cont_ids, attention_mask=torch.cat([rep_mask, cont_mask], dim=1),
                     position_ids=cont_pos, cache=cache, use_cache=True)
        # Token j of a target is predicted by the logits after token j-1 (token 0: after the prompt).
        logp = torch.log_softmax(cont.logits[:, :-1].float(), dim=-1)
        rest = logp.gather(-1, cont_ids[:, 1:, None])[..., 0] * cont_mask[:, 1:]
        first = first_logp.repeat_interleave(n_targets, dim=0).gather(-1, cont_ids[:, :1])[:, 0]
        total = (first + rest.sum(-1)).view(b, n_targets)
        for r, i in enumerate(batch):
            scores[i] = total[r].tolist()
    return scores


def rank_classify(model, tokenizer, prompts: Sequence[str], labels: Sequence[str], batch_size: int,
                  prefix_cache: bool = True, desc: str = "rank") -> list[str]:
    """Rank classification: for each prompt, the label whose completion (label + end-of-turn)
    has the highest total log-probability.

    Length bias: the score is the SUM of token log-probs, i.e. the probability that the model
    emits exactly this label and stops, which is what a generated answer would be judged on.
    Longer labels pay for every extra token; mean-per-token scoring would instead reward long
    labels with predictable tails. Ties go to the label listed first.
    """
    # The same target training teaches (answer + end-of-turn), built by the shared formatter.
    targets = [completion_target(tokenizer, {"completion": label}) for label in labels]
    scores = label_log_likelihoods(model, tokenizer, prompts, targets, batch_size, prefix_cache, desc)
    return [labels[max(range(len(labels)), key=lambda k: (row[k], -k))] for row in scores]
