"""The `compare` section of params.yaml, typed, and its range checks. Each knob's meaning is
commented once, in params.yaml; the defaults equal it (tests/test_compare.py checks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneproof.drift import DriftParams
from tuneproof.params import require


@dataclass(frozen=True)
class LeakageParams:
    """compare.leakage: the re-check of the test prompts against the train file the adapter saw."""

    threshold: float = 0.8
    shingle_size: int = 3
    num_perm: int = 128


@dataclass(frozen=True)
class ForgettingParams:
    """compare.forgetting: limits on the probe's general-ability losses."""

    max_loss_increase: float = 0.10
    max_kl: float = 0.5
    max_instruction_drop: float = 0.15


@dataclass(frozen=True)
class OverfittingParams:
    """compare.overfitting: train-sample vs test gap, val loss after its best step."""

    max_train_test_gap: float = 0.15
    max_val_rise: float = 0.10


@dataclass(frozen=True)
class KnowledgeParams:
    """compare.knowledge: when the answers look like missing knowledge (USE RAG)."""

    novelty_threshold: float = 0.5


@dataclass(frozen=True)
class CompareParams:
    """compare: the bar the fine-tune must clear, the bootstrap that measures it, and each
    check's limits (the nested sections)."""

    min_gain: float = 0.05
    target: float = 0.95
    bootstrap_resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0
    min_test_records: int = 30
    max_collapse_excess: float = 0.1
    leakage: LeakageParams = field(default_factory=LeakageParams)
    forgetting: ForgettingParams = field(default_factory=ForgettingParams)
    overfitting: OverfittingParams = field(default_factory=OverfittingParams)
    knowledge: KnowledgeParams = field(default_factory=KnowledgeParams)
    drift: DriftParams = field(default_factory=DriftParams)


SHARE = "a share in [0, 1]"


def _ranges(p: CompareParams) -> tuple:
    """(dotted key, value, in range, what to use) of every compare knob."""
    leak, forget, over, drift = p.leakage, p.forgetting, p.overfitting, p.drift
    return (
        ("min_gain", p.min_gain, 0.0 <= p.min_gain < 1.0, "a gain in [0, 1)"),
        ("target", p.target, 0.0 < p.target <= 1.0, "a score in (0, 1]"),
        ("bootstrap_resamples", p.bootstrap_resamples, p.bootstrap_resamples >= 1000, "at least 1000 resamples"),
        ("confidence", p.confidence, 0.5 <= p.confidence < 1.0, "a level in [0.5, 1), e.g. 0.95"),
        ("min_test_records", p.min_test_records, p.min_test_records >= 1, "1 or more"),
        ("max_collapse_excess", p.max_collapse_excess, 0.0 <= p.max_collapse_excess <= 1.0, SHARE),
        ("leakage.threshold", leak.threshold, 0.0 < leak.threshold <= 1.0, "a Jaccard similarity in (0, 1]"),
        ("leakage.shingle_size", leak.shingle_size, leak.shingle_size >= 1, "1 or more words"),
        ("leakage.num_perm", leak.num_perm, leak.num_perm >= 2, "at least 2 permutations"),
        ("forgetting.max_loss_increase", forget.max_loss_increase, forget.max_loss_increase >= 0.0, "0 or more"),
        ("forgetting.max_kl", forget.max_kl, forget.max_kl >= 0.0, "0 or more nats"),
        ("forgetting.max_instruction_drop", forget.max_instruction_drop,
         0.0 <= forget.max_instruction_drop <= 1.0, SHARE),
        ("overfitting.max_train_test_gap", over.max_train_test_gap, 0.0 <= over.max_train_test_gap <= 1.0, SHARE),
        ("overfitting.max_val_rise", over.max_val_rise, over.max_val_rise >= 0.0, "0 or more"),
        ("knowledge.novelty_threshold", p.knowledge.novelty_threshold,
         0.0 <= p.knowledge.novelty_threshold <= 1.0, SHARE),
        ("drift.max_auc", drift.max_auc, 0.5 <= drift.max_auc < 1.0, "an AUC in [0.5, 1), e.g. 0.7"),
        ("drift.folds", drift.folds, drift.folds >= 2, "2 or more folds"),
        ("drift.min_prompts", drift.min_prompts, drift.min_prompts >= drift.folds,
         f"at least compare.drift.folds ({drift.folds}) prompts"),
        ("drift.max_prompts", drift.max_prompts, drift.max_prompts >= drift.min_prompts,
         "at least compare.drift.min_prompts"),
        ("drift.top_terms", drift.top_terms, drift.top_terms >= 1, "1 or more"),
        ("drift.examples", drift.examples, drift.examples >= 0, "0 or more"))


def validate(params: CompareParams, params_file: str = "params.yaml") -> None:
    """Every compare knob in its range, named by its key."""
    for key, value, ok, expected in _ranges(params):
        require(ok, f"compare.{key}", value, expected, params_file)
