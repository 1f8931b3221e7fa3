"""Two systems' per-example rows paired by test id, and the primary metric compared on them.

A per-example metric is compared by the paired bootstrap of its mean. `macro_f1` is a corpus
metric that no row carries: it is recomputed from the rows' labels on every resample of test ids
(tuneproof.stats.paired_bootstrap_macro_f1), and wherever one number per example is needed
(McNemar, the novel/familiar split, sample differences) the row's label accuracy stands in.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tuneproof.io import TuneproofError
from tuneproof.scoring import CORPUS_METRIC, NO_LABEL
from tuneproof.stats import BootstrapResult, macro_f1, paired_bootstrap, paired_bootstrap_macro_f1

LABEL_METRICS = ("accuracy", CORPUS_METRIC)  # metrics a label-only system (e.g. a constant answer) can be scored on
PAIR = ("fine-tune", "baseline")             # default names of the two systems, for error messages


def per_example_metric(metric: str) -> str:
    """The per-example metric standing in for `metric`: label accuracy for macro-F1, else itself."""
    return "accuracy" if metric == CORPUS_METRIC else metric


def example_score(row: dict, metric: str) -> float:
    """One row's score on `metric` (for macro_f1: whether its predicted label is the true one)."""
    if metric == CORPUS_METRIC:
        return float(str(row.get("predicted_label")) == str(row.get("label")))
    return row["scores"][metric]


def scores_metric(rows: Sequence[dict], metric: str) -> bool:
    """Can `metric` be computed from these rows (macro_f1 from their labels, else their scores)?"""
    if metric == CORPUS_METRIC:
        return bool(rows) and all("label" in r and "predicted_label" in r for r in rows)
    return bool(rows) and all(metric in r["scores"] for r in rows)


def aligned(a_rows: Sequence[dict], b_rows: Sequence[dict], names: tuple[str, str] = PAIR) -> tuple[list[dict], list[dict]]:
    """Both systems' rows in the same id order; error if they were not scored on the same test set."""
    a, b = {row["id"]: row for row in a_rows}, {row["id"]: row for row in b_rows}
    for name, rows, by_id in ((names[0], a_rows, a), (names[1], b_rows, b)):
        if len(by_id) != len(rows):  # a repeated id would be silently collapsed into one pair
            seen: set = set()
            repeated = sorted({r["id"] for r in rows if r["id"] in seen or seen.add(r["id"])})[:5]
            raise TuneproofError(f"{name}'s rows repeat test ids {repeated}; each id must be scored once; re-run it")
    if set(a) != set(b):
        missing, extra = sorted(set(b) - set(a))[:5], sorted(set(a) - set(b))[:5]
        raise TuneproofError(f"{names[1]} and {names[0]} were scored on different test sets "
                             f"(only in {names[1]}: {missing}, only in {names[0]}: {extra}); re-run both")
    ids = sorted(a)
    return [a[i] for i in ids], [b[i] for i in ids]


def paired_primary(a_rows: Sequence[dict], b_rows: Sequence[dict], metric: str,
                   names: tuple[str, str] = PAIR) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, a's per-example scores, b's), aligned by id; macro_f1 gives label accuracy per example."""
    a, b = aligned(a_rows, b_rows, names)
    a_scores = np.array([example_score(r, metric) for r in a], float)
    b_scores = np.array([example_score(r, metric) for r in b], float)
    bad = [r["id"] for r, x, y in zip(a, a_scores, b_scores) if not (np.isfinite(x) and np.isfinite(y))]
    if bad:
        raise TuneproofError(f"per-example {metric} scores of {names[0]} or {names[1]} are not finite for test ids "
                             f"{bad[:5]}; re-run the stage that scored them")
    return [r["id"] for r in a], a_scores, b_scores


def label_set(*row_lists: Sequence[dict]) -> list[str]:
    """Every true label the rows carry, and every predicted one that is a label (not "<none>")."""
    return sorted({str(r[key]) for rows in row_lists for r in rows for key in ("label", "predicted_label")
                   if r.get(key) is not None and r[key] != NO_LABEL})


def label_score(true: Sequence[str], pred: Sequence[str], metric: str, labels: Sequence[str]) -> float:
    """Accuracy or macro-F1 (over `labels`) of predicted labels."""
    if metric == CORPUS_METRIC:
        return macro_f1(true, pred, labels)
    return float(np.mean([t == p for t, p in zip(true, pred)]))


def paired_gain(a_rows: Sequence[dict], b_rows: Sequence[dict], metric: str, n_resamples: int, seed: int,
                confidence: float, names: tuple[str, str] = PAIR,
                labels: Sequence[str] | None = None) -> tuple[BootstrapResult, float, float]:
    """Paired bootstrap of metric(a) - metric(b) over the same test ids, and each system's score on
    the whole test set. macro_f1 is recomputed on every resample over `labels` (default: the pair's
    label set; pass one set to compare more than two systems on the same footing)."""
    if metric != CORPUS_METRIC:
        _, a, b = paired_primary(a_rows, b_rows, metric, names)
        return paired_bootstrap(a, b, n_resamples, seed, confidence), float(a.mean()), float(b.mean())
    a_aligned, b_aligned = aligned(a_rows, b_rows, names)
    labels = label_set(a_aligned, b_aligned) if labels is None else labels
    true = [str(r["label"]) for r in a_aligned]
    pred_a, pred_b = [str(r["predicted_label"]) for r in a_aligned], [str(r["predicted_label"]) for r in b_aligned]
    boot = paired_bootstrap_macro_f1(true, pred_a, pred_b, labels, n_resamples, seed, confidence)
    return boot, macro_f1(true, pred_a, labels), macro_f1(true, pred_b, labels)
