"""Params sections shared by several stages (paths, task, prompt). Stage-specific sections
are declared beside their stage in stages/<name>.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every file and folder the pipeline reads or writes; dvc.yaml interpolates the same keys."""

    raw: str                # the input JSONL (prompt/completion or chat messages)
    base_model: str         # trainable safetensors checkpoint + tokenizer
    dedup: str              # dedup outputs: records.jsonl, clusters.json
    split: str              # split outputs: train/val/test.jsonl, audit.json
    baseline: str           # per-example predictions of each prompted strategy
    adapter: str            # the fine-tuned adapter (or full model) with its config and data hashes
    evaluate: str           # per-example predictions of the fine-tune
    probe: str              # general-ability probe outputs
    reports: str            # report.md and plots
    release: str            # the hand-over folder: the adapter as trained + its model card (README.md)
    metrics: str            # one metrics JSON per stage: <metrics>/<stage>.json

    def metrics_file(self, stage: str) -> Path:
        return Path(self.metrics) / f"{stage}.json"


@dataclass(frozen=True)
class Task:
    """What the records are: used by split (stratify), scoring and compare."""

    label_field: str | None = None  # "completion" = whole completion is a label; a key = that JSON field; null = no label


@dataclass(frozen=True)
class Prompt:
    """How a record becomes the chat the model sees, identically in baseline, train and evaluate."""

    system: str | None = None  # system prompt; null keeps the chat template's own default
