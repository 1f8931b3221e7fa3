"""Params sections shared by several stages (paths, task, prompt), and the names of the
files that cross a stage boundary. Stage-specific sections are declared beside
their stage (the train section: tuneproof.train_config)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from tuneproof.io import TuneproofError, check_output_path

# Outputs replaced as a whole folder: such a folder must hold no other path of this section.
WHOLE_FOLDER_OUTPUTS = ("base_model", "baseline", "adapter", "evaluate", "probe", "release")
INPUTS = ("raw", "production")  # the user's files: never an output path

# Provenance files that cross a stage boundary, by name inside a paths.* folder.
SOURCE_INFO = "tuneproof_source.json"  # in <paths.base_model>: where base_model got the weights (read by train)
ADAPTER_INFO = "tuneproof_train.json"  # in <paths.adapter>: train's resolved params, base model, data hashes

# Data files that cross a stage boundary.
DEDUP_RECORDS = "records.jsonl"   # in <paths.dedup>: the canonical records dedup kept (read by split)
DEDUP_CLUSTERS = "clusters.json"  # in <paths.dedup>: every merged group, for people to check
SPLITS = ("train", "val", "test")  # in <paths.split>: one split_file(name) each (read by baseline, train, evaluate, compare)
SPLIT_AUDIT = "audit.json"        # in <paths.split>: split's contamination audit (compare reuses its measure)


def split_file(name: str) -> str:
    """File name of split `name` (one of SPLITS) inside <paths.split>."""
    return f"{name}.jsonl"


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
    sweep: str              # fine-tune configurations compared on val (`tuneproof sweep-pick --record`)
    production: str | None  # a JSONL sample of production prompts, or a folder of them; None: no sample
    distill: str            # optional distill stage: records.jsonl (the teacher's answers), failures.json

    def output(self, key: str) -> Path:
        """paths.<key> checked as something a stage may write (tuneproof.io.check_output_path),
        and never the input file or a folder holding another path of this section."""
        path = check_output_path(getattr(self, key), f"paths.{key}")
        resolved = path.resolve()
        for other in (f.name for f in fields(self) if f.name != key and getattr(self, f.name) is not None):
            other_path = Path(getattr(self, other)).resolve()
            if resolved == other_path and (other in INPUTS or key in WHOLE_FOLDER_OUTPUTS):
                raise TuneproofError(f"paths.{key}: {getattr(self, key)!r} is also paths.{other}; give each its own path")
            if key in WHOLE_FOLDER_OUTPUTS and resolved in other_path.parents:
                raise TuneproofError(f"paths.{key}: {getattr(self, key)!r} holds paths.{other} "
                                     f"({getattr(self, other)!r}), and this stage replaces the whole folder; "
                                     "give it a folder of its own, e.g. outputs/" + key)
        if resolved.exists() and not resolved.is_dir():  # every output of this section is a folder
            raise TuneproofError(f"paths.{key}: {getattr(self, key)!r} is a file, and this stage writes a folder "
                                 "there; name a folder (the file is left alone)")
        return path

    def metrics_file(self, stage: str) -> Path:
        return self.output("metrics") / f"{stage}.json"


@dataclass(frozen=True)
class Task:
    """What the records are: used by split (stratify), scoring and compare."""

    label_field: str | None = None  # "completion" = whole completion is a label; a key = that JSON field; null = no label


@dataclass(frozen=True)
class Prompt:
    """How a record becomes the chat the model sees, identically in baseline, train and evaluate."""

    system: str | None = None  # system prompt; null keeps the chat template's own default
