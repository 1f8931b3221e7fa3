"""The one generation path: batched greedy decoding and rank classification.

Baseline, evaluate and the probes all generate here, so every system is decoded the same way.

Speed on CPU comes from three things (see bench/generate.py for measured ratios):
  * batching: the weights are read once per decode step for the whole batch; prompts are
    sorted by length so a batch holds similar lengths and little padding;
  * a shared-prefix cache: the system prompt (and fixed few-shot turns) open every prompt, so
    their keys/values are computed once instead of re-running hundreds of prompt tokens per record;
  * shared-prefix ("cascade") attention while decoding: each row's cache holds only its own
    tokens, and every decode step scores the batch's queries against the one copy of the prefix
    in a single matrix product. A per-row copy of the prefix would make each step read batch x
    prefix keys and values, which is what bounds decoding on CPU (bench/generate.py measures it).
Each batch holds `[left padding | own suffix | generated]`; the attention mask hides the padding
and position ids continue after the prefix, so every row sees exactly the tokens it would see
alone (batched and one-at-a-time outputs are compared in tests and the bench).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Sequence

import torch

from tuneproof.io import TuneproofError
from tuneproof.progress import progress
from tuneproof.prompting import completion_target

# Below this many shared tokens a prefix cache saves less than copying it costs.
MIN_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class GenerateParams:
    """params.yaml `generate` — how every system (baseline and fine-tune) is decoded."""

    max_new_tokens: int = 48
    batch_size: int = 128
    prefix_cache: bool = True

    def __post_init__(self):
        for key in ("max_new_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise TuneproofError(f"generate.{key}: {getattr(self, key)} is not a positive count; use 1 or more")


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


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each generated text, counted as it was generated (no special tokens added)."""
    return [len(ids) for ids in _tokenize(tokenizer, texts)] if texts else []


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


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """(ids, mask) of `rows` left-padded to the longest: generation continues every row at the end."""
    width = max(len(r) for r in rows)
    return ([[pad_id] * (width - len(r)) + list(r) for r in rows],
            [[0] * (width - len(r)) + [1] * len(r) for r in rows])


class _PrefixBatcher:
    """The prompts' shared prefix (when long enough and enabled) and its key/value cache."""

    def __init__(self, model, token_lists: Sequence[Sequence[int]], pad_id: int, use_cache: bool):
        self.device = _model_device(model)
        self.pad_id = pad_id
        n = shared_prefix_length(token_lists) if use_cache else 0
        self.prefix = list(token_lists[0][:n]) if n >= MIN_PREFIX_TOKENS else []
        self.cache = None
        if self.prefix:
            ids = torch.tensor([self.prefix], device=self.device)
            self.cache = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                               logits_to_keep=1).cache

    def batch(self, rows: Sequence[Sequence[int]]):
        """(input_ids, attention_mask, cache) for `rows` (full prompt token lists) laid out as
        `[prefix | left padding | own suffix]`, the prefix's cache repeated per row (or None)."""
        p = len(self.prefix)
        own_ids, own_mask = _left_padded([r[p:] for r in rows], self.pad_id)
        ids = [self.prefix + r for r in own_ids]
        mask = [[1] * p + m for m in own_mask]
        cache = None
        if self.cache is not None:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(rows))
        return (torch.tensor(ids, device=self.device), torch.tensor(mask, device=self.device), cache)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per layer, the prefix's (keys transposed [kv_heads, head_dim, P], values [kv_heads, P,
        head_dim]), laid out for shared_prefix_attention's matrix products; None without a prefix."""
        if self.cache is None:
            return None
        return [(layer.keys[0].transpose(-1, -2).contiguous(), layer.values[0].contiguous())
                for layer in self.cache.layers]


def shared_prefix_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                            scaling: float | None = None, prefix=None, **kwargs):
    """Attention over `[shared prefix | the row's own cache]` without a per-row copy of the prefix.

    `prefix` is _PrefixBatcher.layers() (None: plain SDPA on the row's own keys). `key`/`value`
    hold only the rows' own tokens; `attention_mask` is a boolean [batch, 1, q, own keys] mask
    (True: attend); every query sees the whole prefix. Prompt encoding (q > 1, compute-bound)
    runs SDPA on the prefix copied in front of the own keys; decoding (q = 1, bound by reading
    the cache) scores the whole batch against the one prefix copy in one product per kv head and
    takes a single softmax over prefix and own scores, which is exact attention over both.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if prefix is None or query.shape[2] > 1:
        if prefix is not None:
            keys_t, values = prefix[module.layer_idx]
            size = (key.shape[0], -1, -1, -1)
            key = torch.cat([keys_t.transpose(-1, -2)[None].expand(size), key], dim=2)
            value = torch.cat([values[None].expand(size), value], dim=2)
            seen = attention_mask.new_ones(*attention_mask.shape[:3], values.shape[1])
            attention_mask = torch.cat([seen, attention_mask], dim=-1)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    keys_t, values = prefix[module.layer_idx]
    batch, heads, _, dim = query.shape
    kv_heads, p, value_dim = values.shape
    group = heads // kv_heads  # query head h reads kv head h // group (repeat_kv's order)
    q = query.reshape(batch, kv_heads, group, dim) * (scaling if scaling is not None else dim ** -0.5)
    scores_prefix = torch.matmul(q.transpose(0, 1).reshape(kv_heads, batch * group, dim), keys_t)
    scores_prefix = scores_prefix.view(kv_heads, batch, group, p).transpose(0, 1)
    scores_own = torch.matmul(q, key.transpose(-1, -2)).masked_fill(~attention_mask, torch.finfo(query.dtype).min)
    probs = torch.softmax(torch.cat([scores_prefix, scores_own], dim=-1).float(), dim=-1).to(query.dtype)
    out = torch.matmul(probs[..., p:], value)
    out_prefix = torch.matmul(probs[..., :p].transpose(0, 1).reshape(kv_heads, batch * group, p), values)
    out = out + out_prefix.view(kv_heads, batch, group, value_dim).transpose(0, 1)
    return out.reshape(batch, 1, heads, value_dim), None


SHARED_PREFIX_ATTENTION = "tuneproof_shared_prefix"


def supports_shared_prefix_attention(model, longest: int) -> bool:
    """Whether shared_prefix_attention computes this model's attention exactly for sequences of up
    to `longest` tokens: plain softmax attention, no score soft-capping, no attention sinks, and
    any sliding window at least as long as the sequence. Other models (Gemma 2/3, gpt-oss, ...)
    are decoded by transformers' own generate(), without the prefix cache."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(config, "sliding_window", None)
    return (getattr(config, "attn_logit_softcapping", None) is None
            and (window is None or window >= longest)
            and not any(hasattr(module, "sinks") for module in model.modules()))


@contextlib.contextmanager
def _attention_implementation(model, name: str):
    """Run `model` with attention implementation `name`, restoring its own afterwards."""
    from transformers import AttentionInterface

    AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def _length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so a too-large batch
    fails at once); ties keep input order, so the grouping is deterministic. Batches are
    evened out (130 rows at batch_size 64 -> 44/44/42, not 64/64/2): a straggler batch of 2
    would pay nearly a full batch's decode steps."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n_batches = -(-len(order) // max(1, batch_size))
    size = -(-len(order) // n_batches) if n_batches else 1
    return [order[i:i + size] for i in range(0, len(order), size)]


def _cut_at_stop(rows: list[list[int]], stops: Sequence[int]) -> list[list[int]]:
    return [row[:next((j for j, tok in enumerate(row) if tok in stops), len(row))] for row in rows]


def _greedy_batch(model, batcher: _PrefixBatcher, rows: Sequence[Sequence[int]], max_new_tokens: int,
                  stops: Sequence[int]) -> list[list[int]]:
    """Greedy continuations of `rows` (full prompt token lists starting with the prefix), each
    cut before its first stop token. Stops early once every row has stopped."""
    from transformers import StaticCache

    device, p = batcher.device, len(batcher.prefix)
    own_ids, own_mask = _left_padded([r[p:] for r in rows], batcher.pad_id)
    ids, width = torch.tensor(own_ids, device=device), len(own_ids[0])
    # keys a row may attend to among its own cache slots: its suffix now, each new token as it comes
    keys_seen = torch.zeros(len(rows), width + max_new_tokens, dtype=torch.bool, device=device)
    keys_seen[:, :width] = torch.tensor(own_mask, dtype=torch.bool)
    positions = p + (keys_seen[:, :width].long().cumsum(-1) - 1).clamp(min=0)
    # causal over the own slots; the diagonal stays open so a padding position attends to itself
    # (a fully masked row gives NaN, which would leak through the softmax's zero weights)
    causal = torch.ones(width, width + max_new_tokens, dtype=torch.bool, device=device).tril()
    diagonal = torch.eye(width, width + max_new_tokens, dtype=torch.bool, device=device)
    cache = StaticCache(config=model.config, max_cache_len=width + max_new_tokens)
    layers = batcher.layers()
    logits = model(input_ids=ids, attention_mask=(causal[None, None] & keys_seen[:, None, None]) | diagonal,
                   position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1, prefix=layers).logits
    position = positions[:, -1:]
    stop_ids = torch.tensor(list(stops), device=device)
    stopped = torch.zeros(len(rows), dtype=torch.bool, device=device)
    tokens = []
    for step in range(max_new_tokens):
        token = logits[:, -1].argmax(-1)
        tokens.append(token)
        stopped |= torch.isin(token, stop_ids)
        if step == max_new_tokens - 1 or bool(stopped.all()):
            break
        keys_seen[:, width + step] = True
        position = position + 1
        logits = model(input_ids=token[:, None], attention_mask=keys_seen[:, None, None], position_ids=position,
                       cache=cache, use_cache=True, prefix=layers).logits
    return _cut_at_stop(torch.stack(tokens, dim=1).tolist(), stops)


def _library_greedy_batch(model, batcher: _PrefixBatcher, rows: Sequence[Sequence[int]], max_new_tokens: int,
                          stops: Sequence[int]) -> list[list[int]]:
    """transformers' generate() on left-padded `rows`, for models shared_prefix_attention cannot run."""
    from transformers import GenerationConfig

    padded_ids, padded_mask = _left_padded(rows, batcher.pad_id)
    ids = torch.tensor(padded_ids, device=batcher.device)
    mask = torch.tensor(padded_mask, device=batcher.device)
    width = ids.shape[1]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=list(stops),
                              pad_token_id=batcher.pad_id)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return _cut_at_stop(out[:, width:].tolist(), stops)


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
             prefix_cache: bool = True, desc: str = "generate") -> list[str]:
    """Greedy completions of rendered `prompts` (same order), each cut at the first end-of-turn
    token and decoded without special tokens."""
    if not prompts:
        return []
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    token_lists = _tokenize(tokenizer, prompts)
    own_loop = supports_shared_prefix_attention(model, max(len(t) for t in token_lists) + max_new_tokens)
    batcher = _PrefixBatcher(model, token_lists, pad_id, prefix_cache and own_loop)
    decode_batch = _greedy_batch if own_loop else _library_greedy_batch
    outputs: list[str] = [""] * len(prompts)
    batches = _length_batches([len(t) for t in token_lists], batch_size)
    with _attention_implementation(model, SHARED_PREFIX_ATTENTION) if own_loop else contextlib.nullcontext():
        for batch in progress(batches, desc=desc, unit="batch"):
            rows = decode_batch(model, batcher, [token_lists[i] for i in batch], max_new_tokens, stops)
            for row, i in zip(rows, batch):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    return outputs


def _token_trie(targets: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[list[int]]]:
    """The token trie over `targets`: each node's token and parent (-1: the prompt), parents
    first, and each target's nodes in order. Targets sharing leading tokens share those nodes."""
    index: dict[tuple[int, int], int] = {}
    tokens: list[int] = []
    parents: list[int] = []
    paths: list[list[int]] = []
    for target in targets:
        node, path = -1, []
        for token in target:
            if (node, token) not in index:
                index[node, token] = len(tokens)
                tokens.append(token)
                parents.append(node)
            node = index[node, token]
            path.append(node)
        paths.append(path)
    return tokens, parents, paths


@dataclass(frozen=True)
class _LabelTrie:
    """The targets' trie laid out for scoring. Every node is scored once from its parent's
    next-token distribution; only inner nodes (those with children) run through the model, since
    a target's last token is scored but its own next-token distribution is never needed."""

    n_nodes: int
    paths: torch.Tensor           # [targets, longest] each target's nodes, padded with n_nodes (a zero score)
    inner_tokens: torch.Tensor    # [inner] in run order: parents first, so each is cached before its children
    inner_depths: torch.Tensor    # [inner] 0 for a target's first token
    visible: torch.Tensor         # [inner, inner] bool, [i, j]: inner node j is node i or one of its ancestors
    spans: list[tuple[int, int]]  # run-order [start, end) of the inner nodes run by each forward
    scored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # per forward: the nodes scored
    # from its logits, the place of each node's parent among them, each node's token


def _run_order(paths: list[list[int]], inner: set[int], nodes_per_forward: int) -> tuple[dict[int, int], list]:
    """The inner nodes in run order, parents first (node -> its place in the cache after the
    prompt), and each forward's [start, end) in it: at most `nodes_per_forward` nodes each."""
    slot = {node: i for i, node in enumerate(dict.fromkeys(n for path in paths for n in path if n in inner))}
    spans = [(start, min(start + nodes_per_forward, len(slot))) for start in range(0, len(slot), nodes_per_forward)]
    return slot, spans or [(0, 0)]  # single-token targets: the one forward runs the prompts alone


def _label_trie(targets: Sequence[Sequence[int]], nodes_per_forward: int, device) -> _LabelTrie:
    """`targets`' token trie, run `nodes_per_forward` inner nodes per forward at most."""
    tokens, parents, paths = _token_trie(targets)
    slot, spans = _run_order(paths, set(parents) - {-1}, nodes_per_forward)
    forward_of = [k for k, (start, end) in enumerate(spans) for _ in range(start, end)]
    depths: list[int] = []
    for parent in parents:
        depths.append(0 if parent == -1 else depths[parent] + 1)
    ancestors = [(i, slot[a]) for i, node in enumerate(slot) for a in _ancestry(node, parents)]
    visible = torch.zeros(len(slot), len(slot), dtype=torch.bool)
    visible[[i for i, _ in ancestors], [j for _, j in ancestors]] = True
    scored: list[tuple[list[int], list[int], list[int]]] = [([], [], []) for _ in spans]
    for node, parent in enumerate(parents):
        # scored from its parent's logits, which a forward keeps as [the prompts' last token (first
        # forward only) | the span's nodes]
        forward = 0 if parent == -1 else forward_of[slot[parent]]
        nodes, at, next_tokens = scored[forward]
        nodes.append(node)
        at.append(0 if parent == -1 else slot[parent] - spans[forward][0] + (forward == 0))
        next_tokens.append(tokens[node])
    longest = max(len(p) for p in paths)
    def as_tensor(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return _LabelTrie(len(tokens), as_tensor([p + [len(tokens)] * (longest - len(p)) for p in paths]),
                      as_tensor([tokens[n] for n in slot]), as_tensor([depths[n] for n in slot]),
                      visible.to(device), spans, [tuple(map(as_tensor, s)) for s in scored])


def _ancestry(node: int, parents: Sequence[int]) -> list[int]:
    """`node` and its ancestors up to the trie's root (the prompt, -1, excluded)."""
    chain = []
    while node != -1:
        chain.append(node)
        node = parents[node]
    return chain


def _score_nodes(node_logp: torch.Tensor, logits: torch.Tensor, nodes, at, tokens) -> None:
    """node_logp[:, nodes] = log p(tokens | logits[:, at]), each node scored from its parent's
    logits: gathered logits minus their log-normaliser, not a full [rows, positions, vocab] log-softmax."""
    logits = logits.float()
    node_logp[:, nodes] = logits[:, at, tokens] - torch.logsumexp(logits, dim=-1)[:, at]


def _trie_scores(model, batcher: _PrefixBatcher, rows: Sequence[Sequence[int]], trie: _LabelTrie) -> torch.Tensor:
    """[rows, targets] summed target log-probs. Each prompt's own tokens run once, attending to the
    one copy of the shared prefix; the trie's inner nodes run on that cache (the first span in
    the same forward), each attending to its prompt and its own ancestors (a tree mask) at the
    position it has in prompt + target, so it sees exactly what it would see there. Nothing of
    the prompt is copied per target."""
    from transformers import DynamicCache

    device, p, b = batcher.device, len(batcher.prefix), len(rows)
    own_ids, own_mask = _left_padded([r[p:] for r in rows], batcher.pad_id)
    seen = torch.tensor(own_mask, dtype=torch.bool, device=device)  # [rows, own keys]: False on left padding
    width = seen.shape[1]
    positions = p + (seen.long().cumsum(-1) - 1).clamp(min=0)
    node_positions = positions[:, -1:] + 1 + trie.inner_depths  # a target's token j sits j + 1 after the prompt's last
    # causal over the own tokens; the diagonal stays open so a padding position attends to itself (no NaN)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    prompt_mask = (causal & seen[:, None]) | torch.eye(width, dtype=torch.bool, device=device)
    cache, layers = DynamicCache(), batcher.layers()  # no config: no sliding-window layer may drop keys
    node_logp = torch.zeros(b, trie.n_nodes + 1, device=device)  # last column: trie.paths' padding
    for forward, (start, end) in enumerate(trie.spans):
        ids = trie.inner_tokens[None, start:end].expand(b, -1)
        mask = torch.cat([seen[:, None].expand(-1, end - start, -1),
                          trie.visible[None, start:end, :end].expand(b, -1, -1)], dim=-1)
        span_positions = node_positions[:, start:end]
        if forward == 0:  # the prompts' own tokens lead the first forward, seeing none of the trie
            ids = torch.cat([torch.tensor(own_ids, device=device), ids], dim=1)
            mask = torch.cat([torch.cat([prompt_mask, mask.new_zeros(b, width, end)], dim=-1), mask], dim=1)
            span_positions = torch.cat([positions, span_positions], dim=1)
        logits = model(input_ids=ids, attention_mask=mask[:, None], position_ids=span_positions, cache=cache,
                       use_cache=True, logits_to_keep=end - start + (forward == 0), prefix=layers).logits
        _score_nodes(node_logp, logits, *trie.scored[forward])
    return node_logp[:, trie.paths].sum(-1)


def _copied_cache_scores(model, batcher: _PrefixBatcher, rows: Sequence[Sequence[int]],
                         targets: Sequence[Sequence[int]], targets_per_forward: int) -> torch.Tensor:
    """[rows, targets] summed target log-probs for models shared_prefix_attention cannot run
    (soft-capping, sinks, short sliding windows): the prompts run once with the model's own
    attention, then each group of targets runs right-padded on per-target copies of their caches
    (rows x targets_per_forward copies at a time)."""
    ids, mask, _ = batcher.batch(rows)  # this batcher holds no prefix: the prompts run whole
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    first_logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts every target's token 0
    b, columns = len(rows), []
    for start in range(0, len(targets), targets_per_forward):
        group = targets[start:start + targets_per_forward]
        n, width = len(group), max(len(t) for t in group)
        t_ids = torch.tensor([list(t) + [batcher.pad_id] * (width - len(t)) for t in group], device=batcher.device)
        t_mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in group], device=batcher.device)
        cache = copy.deepcopy(out.cache)
        cache.batch_repeat_interleave(n)  # row r * n + k = prompt r, target k
        cont_ids, cont_mask = t_ids.repeat(b, 1), t_mask.repeat(b, 1)
        cont_pos = positions[:, -1:].repeat_interleave(n, dim=0) + 1 + torch.arange(width, device=batcher.device)
        cont = model(input_ids=cont_ids, attention_mask=torch.cat([mask.repeat_interleave(n, dim=0), cont_mask], dim=1),
                     position_ids=cont_pos, cache=cache, use_cache=True)
        # Token j of a target is predicted by the logits after token j-1 (token 0: after the prompt).
        logp = torch.log_softmax(cont.logits[:, :-1].float(), dim=-1)
        rest = (logp.gather(-1, cont_ids[:, 1:, None])[..., 0] * cont_mask[:, 1:]).sum(-1)
        first = first_logp.repeat_interleave(n, dim=0).gather(-1, cont_ids[:, :1])[:, 0]
        columns.append((first + rest).view(b, n))
    return torch.cat(columns, dim=1)


@torch.inference_mode()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                          batch_size: int, prefix_cache: bool = True,
                          desc: str = "rank") -> list[list[float]]:
    """log P(target | prompt) summed over the target's tokens, for every prompt x target.

    `targets` are full completions as the model must emit them (label + end-of-turn token), so
    a label that is a prefix of another ("spam" vs "spam offer") is not favoured. Each prompt
    runs once; the targets' tokens run as one token trie on that prompt's cache (targets sharing
    leading tokens share their forward pass, and no target copies the prompt's cache).
    Memory: a forward runs at most batch_size x (longest target) trie tokens in all, the tokens of
    batch_size right-padded targets: as many prompts at once as their tries fit in that (at most
    batch_size), or one prompt whose trie takes several forwards.
    """
    if not prompts:
        return []
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    token_lists = _tokenize(tokenizer, prompts)
    target_lists = _tokenize(tokenizer, targets)
    longest_target = max(map(len, target_lists))
    as_trie = supports_shared_prefix_attention(model, max(map(len, token_lists)) + longest_target)
    batcher = _PrefixBatcher(model, token_lists, pad_id, prefix_cache and as_trie)
    budget = batch_size * longest_target
    trie = _label_trie(target_lists, budget, batcher.device) if as_trie else None
    per_batch = (min(batch_size, max(1, budget // max(1, len(trie.inner_tokens)))) if as_trie
                 else max(1, batch_size // len(target_lists)))
    scores: list[list[float]] = [[] for _ in prompts]
    batches = _length_batches([len(t) for t in token_lists], per_batch)
    with _attention_implementation(model, SHARED_PREFIX_ATTENTION) if as_trie else contextlib.nullcontext():
        for batch in progress(batches, desc=desc, unit="batch"):
            rows = [token_lists[i] for i in batch]
            total = (_trie_scores(model, batcher, rows, trie) if as_trie
                     else _copied_cache_scores(model, batcher, rows, target_lists, min(batch_size, len(targets))))
            for row, i in zip(total.tolist(), batch):
                scores[i] = row
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
