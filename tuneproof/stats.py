"""Paired significance for per-example scores (see ../shared/METHODS.md, "The bar and the comparison").

* Paired bootstrap (Koehn 2004): resample test ids with replacement, the SAME ids for both
  systems, and take percentiles of metric(a) - metric(b).
* McNemar's exact test for binary scores: two-sided binomial test on the discordant pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class BootstrapResult:
    mean_diff: float   # metric(a) - metric(b) on the full test set
    ci_low: float      # lower percentile of the resampled differences
    ci_high: float     # upper percentile
    n: int             # paired examples
    n_resamples: int
    confidence: float


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                     seed: int = 0, confidence: float = 0.95) -> BootstrapResult:
    """Percentile CI of mean(a) - mean(b) under paired resampling of examples."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1 or len(a_arr) == 0:
        raise ValueError("paired_bootstrap needs two non-empty score lists of equal length")
    diff = a_arr - b_arr
    rng = np.random.default_rng(seed)
    # Resample in chunks so B x n indices never need to sit in memory at once.
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // len(diff))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, len(diff), size=(stop - start, len(diff)))
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return BootstrapResult(float(diff.mean()), float(low), float(high), len(diff), n_resamples, confidence)


@dataclass(frozen=True)
class McNemarResult:
    a_only: int    # b in the usual notation: a right, b wrong
    b_only: int    # c: b right, a wrong
    p_value: float


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemarResult:
    """McNemar's exact test on paired binary scores (1 = correct)."""
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError("mcnemar_exact needs two score lists of equal length")
    if not np.isin(a_arr, (0, 1)).all() or not np.isin(b_arr, (0, 1)).all():
        raise ValueError("mcnemar_exact needs binary (0/1) scores")
    a_only = int(((a_arr == 1) & (b_arr == 0)).sum())
    b_only = int(((a_arr == 0) & (b_arr == 1)).sum())
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(binomtest(a_only, discordant, 0.5).pvalue)
    return McNemarResult(a_only, b_only, p)
