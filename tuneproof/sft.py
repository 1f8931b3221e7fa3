"""TRL's SFTTrainer with the prompts' shared opening computed once per batch.

Every training prompt opens with the same tokens (chat template + system prompt: ~250 of the
demo's ~340 tokens per example). Run as-is, each row re-encodes them, so most of a CPU step is
spent on text that is identical in every row. Here the shared prefix runs once per batch (batch
size 1, with gradients, because LoRA changes its keys and values), its key/value cache is
repeated over the batch, and the rows run only their own suffix on top of it. The forward pass
and the gradients are the same as the plain path's (tests compare them); the cost per step
drops from B x (prefix + suffix) to prefix + B x suffix tokens.

Requires right-padded batches whose rows all start with the prefix (the prefix must end inside
every prompt, so the first suffix position is a prompt token with label -100), and no gradient
checkpointing (recomputing a layer would append to the cache twice).
"""

from __future__ import annotations

from typing import Sequence

import torch
from trl import SFTTrainer

from tuneproof.generation import MIN_PREFIX_TOKENS, shared_prefix_length


def common_prompt_prefix(prompt_ids: Sequence[Sequence[int]]) -> list[int]:
    """The token prefix shared by all prompts, leaving each prompt at least one own token;
    empty when it is too short to be worth a separate pass."""
    n = shared_prefix_length(prompt_ids)
    return list(prompt_ids[0][:n]) if n >= MIN_PREFIX_TOKENS else []


class SharedPrefixSFTTrainer(SFTTrainer):
    """SFTTrainer that encodes `shared_prefix` once per batch (see module docstring)."""

    def __init__(self, *args, shared_prefix: Sequence[int] = (), val_metrics=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_metrics = val_metrics  # model -> {metric: value} of decoded val records, or None
        if shared_prefix and self.args.activation_checkpointing:
            raise ValueError("a shared prefix cache cannot be combined with activation checkpointing")
        self.shared_prefix = torch.tensor(list(shared_prefix), dtype=torch.long)

    def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
        """The loss loop, plus the decoded val scores as `<prefix>_<metric>`: added here, before
        Trainer logs them and its callbacks (early stopping, best checkpoint) read them."""
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.val_metrics is not None:
            model = self.accelerator.unwrap_model(self.model)
            was_training = model.training
            model.eval()
            scores = self.val_metrics(model)
            model.train(was_training)
            output.metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        p = len(self.shared_prefix)
        # return_outputs would run the model a second time on the cache the first pass extended
        if p and "attention_mask" in inputs and not return_outputs:
            ids = inputs["input_ids"]
            if not torch.equal(ids[:, :p].cpu(), self.shared_prefix.expand(len(ids), -1)):
                raise ValueError("a batch row does not start with the shared prefix")
            # logits_to_keep=1: the prefix positions carry no labels, so skip their LM head
            cache = model(input_ids=ids[:1, :p], use_cache=True, logits_to_keep=1).cache
            cache.batch_repeat_interleave(len(ids))
            # Position ids follow from the cache length; the attention mask keeps its full width.
            inputs = {**inputs, "input_ids": ids[:, p:], "labels": inputs["labels"][:, p:], "cache": cache}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
