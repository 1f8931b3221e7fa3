"""The one prompt formatter: baseline, train and evaluate all build prompts here.

A record becomes chat messages (configured system prompt, optional few-shot turns, the record's
own turns), rendered with the model's chat template exactly as it will be served.
"""

from __future__ import annotations

from typing import Sequence


def build_messages(record: dict, system: str | None, shots: Sequence[dict] = ()) -> list[dict]:
    """Chat messages for `record`: system prompt (unless the record brings its own, or `system`
    is None, which leaves the template's default), then each shot as a user/assistant pair,
    then the record's own turns before the answer."""
    turns = list(record["messages"])
    messages: list[dict] = []
    if turns[0]["role"] == "system":
        messages.append(turns.pop(0))
    elif system is not None:
        messages.append({"role": "system", "content": system})
    for shot in shots:
        shot_turns = [t for t in shot["messages"] if t["role"] != "system"]
        messages.extend(shot_turns)
        messages.append({"role": "assistant", "content": shot["completion"]})
    messages.extend(turns)
    return messages


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt string the model is served: chat template plus the assistant header."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def format_prompt(tokenizer, record: dict, system: str | None, shots: Sequence[dict] = ()) -> str:
    """Record -> served prompt string (the single entry point every stage uses)."""
    return render_prompt(tokenizer, build_messages(record, system, shots))


def completion_target(tokenizer, record: dict) -> str:
    """What training teaches the model to emit after the prompt: the answer, then end-of-turn."""
    return record["completion"] + tokenizer.eos_token
