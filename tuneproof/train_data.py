"""Training examples: each record as TRL's pre-tokenized prompt-completion example.

A record becomes exactly the prompt baseline and evaluate serve (prompting.format_prompt) followed
by prompting.completion_target (answer + end-of-turn). Prompt and completion are tokenized
separately without special tokens, so the trained prompt ids are the served prompt ids (no extra
BOS, no token merged across the boundary, one EOS); TRL builds the labels from `completion_mask`,
so the loss covers completion tokens only. `tuneproof check-data` (tuneproof.data_check) measures
token lengths with the same `example_ids`.
"""

from __future__ import annotations

from typing import Sequence

from tuneproof.io import TuneproofError
from tuneproof.progress import progress
from tuneproof.prompting import completion_target, format_prompt


def example_ids(tokenizer, record: dict, system: str | None) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of `record` as training sees it, untruncated."""
    prompt_ids = tokenizer(format_prompt(tokenizer, record, system), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion_target(tokenizer, record), add_special_tokens=False)["input_ids"]
    return prompt_ids, completion_ids


def tokenize_record(tokenizer, record: dict, system: str | None, max_length: int) -> dict:
    """TRL's pre-tokenized prompt-completion example: the served prompt ids, then the completion
    ids, and `completion_mask` (1 on completion tokens) from which TRL builds the labels.
    Truncation keeps the start, so the prompt stays exactly as served; `length` is the untruncated
    token count."""
    prompt_ids, completion_ids = example_ids(tokenizer, record, system)
    return {"input_ids": (prompt_ids + completion_ids)[:max_length],
            "completion_mask": ([0] * len(prompt_ids) + [1] * len(completion_ids))[:max_length],
            "length": len(prompt_ids) + len(completion_ids)}


def build_dataset(tokenizer, records: Sequence[dict], system: str | None, max_length: int, name: str):
    """Tokenized datasets.Dataset of `records`. Examples cut at `max_length` are reported; those
    left without any completion token teach nothing and are dropped."""
    from datasets import Dataset

    rows = [tokenize_record(tokenizer, record, system, max_length)
            for record in progress(records, desc=f"tokenize {name}", unit="record")]
    cut = sum(row.pop("length") > max_length for row in rows)
    kept = [row for row in rows if 1 in row["completion_mask"]]
    if not kept:
        raise TuneproofError(f"train.max_length: {max_length} tokens do not reach the completion of any {name} "
                             "example (the prompt alone is longer); raise train.max_length")
    if cut:
        print(f"\ntrain: {cut}/{len(rows)} {name} examples are longer than train.max_length={max_length} and lose "
              f"the end of their completion ({len(rows) - len(kept)} lose all of it and are dropped); "
              "raise train.max_length to keep them whole")
    return Dataset.from_list(kept)


def prompt_part(row: dict) -> list[int]:
    """The prompt ids of a tokenized example (all of it when truncation left no completion)."""
    mask = row["completion_mask"]
    return row["input_ids"][:mask.index(1)] if 1 in mask else row["input_ids"]
