"""Typed records of what crosses into compare: the files other stages write, read once here so
the verdict and the report read fields, not nested `.get` chains.

    BaselineMetrics  <paths.metrics>/baseline.json (stages/baseline.py): strategies apart from the summaries
    EvaluateMetrics  <paths.metrics>/evaluate.json (stages/evaluate.py)
    TrainMetrics     <paths.metrics>/train.json (tuneproof.trainer.run_metrics)
    TrainInfo        <paths.adapter>/ADAPTER_INFO (tuneproof.trainer.adapter_info)
    CompareInputs    all of them with the per-example rows and the split files: compare's input
    Evidence         compare's output: checks, signals, verdict (reports/evidence.json)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from tuneproof.config import ADAPTER_INFO, SPLIT_AUDIT, TEACHER_KEY, Paths, split_file
from tuneproof.drift import load_production
from tuneproof.io import read_json, read_jsonl, sha256_file
from tuneproof.records import line_values

NOT_STRATEGIES = ("best", "trivial", "selection")  # summary entries of metrics/baseline.json beside the strategies
REFERENCE_PREFIX = "reference_"  # <paths.baseline>/reference_<name>.jsonl: a trivial reference's per-example rows


@dataclass(frozen=True)
class BaselineMetrics:
    strategies: dict[str, dict]     # prompted strategy -> its test metrics, in the file's order
    best: dict                      # {"strategy": name, **its metrics}: the bar the fine-tune must clear
    trivial: dict                   # trivial references: majority_label, majority_accuracy, tfidf_logreg, ...
    selection: dict                 # how the prompted side was tuned on val

    @classmethod
    def from_json(cls, data: dict) -> BaselineMetrics:
        strategies = {k: v for k, v in data.items() if isinstance(v, dict) and k not in NOT_STRATEGIES}
        return cls(strategies, data["best"], data.get("trivial") or {}, data.get("selection") or {})

    @property
    def best_strategy(self) -> str:
        return self.best["strategy"]

    @property
    def majority_label(self) -> str | None:
        return self.trivial.get("majority_label")


@dataclass(frozen=True)
class EvaluateMetrics:
    finetune: dict                  # the fine-tune's test metrics
    train_sample: dict | None       # its metrics on a train sample; None when none was scored
    cost: dict | None = None        # seconds_per_answer, tokens_per_second, device, batch_size (test split)

    @classmethod
    def from_json(cls, data: dict) -> EvaluateMetrics:
        return cls(data["finetune"], data.get("train_sample"), data.get("cost"))


@dataclass(frozen=True)
class TrainMetrics:
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    best_step: int | None = None
    steps: int | None = None

    @classmethod
    def from_json(cls, data: dict | None) -> TrainMetrics | None:
        if data is None:
            return None
        return cls(*(data.get(f.name) for f in dataclasses.fields(cls)))


@dataclass(frozen=True)
class TrainInfo:
    """The adapter's provenance; every field None (or empty) when the file or the key is absent."""

    method: str | None = None
    seed: int | None = None
    params: dict = field(default_factory=dict)       # train's resolved params, as written
    recipe: dict = field(default_factory=dict)       # the preset chosen and why
    base_model: dict = field(default_factory=dict)   # source, model_type, parameters
    train_sha256: str | None = None                  # sha256 of the train split the adapter saw
    steps: int | None = None
    best_step: int | None = None
    selected_by: str | None = None
    best_val_score: float | None = None
    stopped_early: bool | None = None

    @classmethod
    def from_json(cls, data: dict | None) -> TrainInfo:
        data = data or {}
        plain = {f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name != "train_sha256"}
        dicts = {name: data.get(name) or {} for name in ("params", "recipe", "base_model")}
        return cls(**{**plain, **dicts}, train_sha256=data.get("data", {}).get("train", {}).get("sha256"))


def _teacher_details(raw: str) -> dict[str, dict] | None:
    """paths.raw's distill details by record id (objects with the answer's measured `seconds`);
    None when the file was not distilled. A raw file's own `teacher` field (say, who wrote the
    answer) is not a distill teacher."""
    details = {rid: value for rid, value in line_values(raw, TEACHER_KEY).items()
               if isinstance(value, dict) and "seconds" in value}
    return details or None


@dataclass(frozen=True)
class CompareInputs:
    baseline_rows: dict[str, list[dict]]    # per-example test rows of each prompted strategy
    baseline: BaselineMetrics
    finetune_rows: list[dict]               # the fine-tune's per-example test rows
    evaluate: EvaluateMetrics
    test: list[dict]                        # the split's test records
    train: list[dict]                       # the split's train records
    train_sha256: str                       # of the train split file now
    audit: dict                             # the split stage's contamination audit
    train_info: TrainInfo = field(default_factory=TrainInfo)
    train_metrics: TrainMetrics | None = None
    probe: dict | None = None               # metrics/probe.json; None: the probe did not run
    train_sample_rows: list[dict] | None = None
    reference_rows: dict[str, list[dict]] = field(default_factory=dict)  # trivial references' test rows
    production: list[dict] | None = None    # production prompts; None: no sample given
    teacher: dict[str, dict] | None = None  # paths.raw's TEACHER_KEY details by record id; None: not distilled
    metrics_dir: str = "metrics"            # for error messages

    @classmethod
    def load(cls, paths: Paths) -> CompareInputs:
        """Everything compare reads, from the paths section."""
        baseline = BaselineMetrics.from_json(read_json(paths.metrics_file("baseline")))
        baseline_dir, evaluate_dir, split_dir = Path(paths.baseline), Path(paths.evaluate), Path(paths.split)
        return cls(
            baseline_rows={name: read_jsonl(baseline_dir / f"{name}.jsonl") for name in baseline.strategies},
            baseline=baseline, finetune_rows=read_jsonl(evaluate_dir / "test.jsonl"),
            evaluate=EvaluateMetrics.from_json(read_json(paths.metrics_file("evaluate"))),
            test=read_jsonl(split_dir / split_file("test")), train=read_jsonl(split_dir / split_file("train")),
            train_sha256=sha256_file(split_dir / split_file("train")), audit=read_json(split_dir / SPLIT_AUDIT),
            train_info=TrainInfo.from_json(_optional_json(Path(paths.adapter) / ADAPTER_INFO)),
            train_metrics=TrainMetrics.from_json(_optional_json(paths.metrics_file("train"))),
            probe=_optional_json(paths.metrics_file("probe")),
            train_sample_rows=_optional_jsonl(evaluate_dir / "train_sample.jsonl"),
            reference_rows={path.stem[len(REFERENCE_PREFIX):]: read_jsonl(path)
                            for path in sorted(baseline_dir.glob(f"{REFERENCE_PREFIX}*.jsonl"))},
            production=load_production(paths.production), teacher=_teacher_details(paths.raw),
            metrics_dir=paths.metrics)


@dataclass(frozen=True)
class Evidence:
    """All checks, triage signals, the verdict and next steps; `to_json` is reports/evidence.json."""

    verdict: str
    reasons: list[str]
    next_steps: list[str]
    primary: str                    # score.primary
    best_strategy: str              # the prompted strategy the fine-tune is measured against
    checks: dict[str, dict]         # name -> tuneproof.verdict_advice.check(...)
    signals: dict                   # tuneproof.triage.triage(...)
    versus: dict[str, dict]         # prompted strategy -> the fine-tune's gain over it
    confidence: float
    teacher: dict | None = None     # tuneproof.teacher.teacher_reference; None: the data was not distilled

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _optional_json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def _optional_jsonl(path: Path) -> list[dict] | None:
    return read_jsonl(path) if path.is_file() else None
