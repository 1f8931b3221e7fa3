"""The significance code agrees with scipy/statsmodels reference implementations."""

import numpy as np
import pytest
from scipy.stats import bootstrap
from statsmodels.stats.contingency_tables import mcnemar

from tuneproof.stats import mcnemar_exact, paired_bootstrap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_bootstrap_matches_scipy_percentile_bootstrap(seed):
    rng = np.random.default_rng(seed)
    a = (rng.random(200) < 0.7).astype(float)
    b = (rng.random(200) < 0.5).astype(float)
    ours = paired_bootstrap(a, b, n_resamples=20_000, seed=seed)
    ref = bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, vectorized=False,
                    n_resamples=20_000, method="percentile", random_state=seed).confidence_interval
    assert ours.mean_diff == pytest.approx(np.mean(a - b))
    # Different random streams: agreement is within Monte Carlo error, far below the CI width.
    assert ours.ci_low == pytest.approx(ref.low, abs=0.01)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.01)


def test_paired_bootstrap_is_seeded_and_paired():
    a = np.array([1, 1, 1, 0, 1, 1, 0, 1] * 10, dtype=float)
    assert paired_bootstrap(a, a, 1000, seed=3).ci_low == 0.0  # paired: identical systems never differ
    first, second = paired_bootstrap(a, 1 - a, 1000, seed=3), paired_bootstrap(a, 1 - a, 1000, seed=3)
    assert first == second


@pytest.mark.parametrize("a_only,b_only,both,neither", [(12, 3, 40, 5), (0, 0, 10, 10), (7, 7, 1, 1), (30, 1, 0, 0)])
def test_mcnemar_exact_matches_statsmodels(a_only, b_only, both, neither):
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    ours = mcnemar_exact(a, b)
    ref = mcnemar([[both, a_only], [b_only, neither]], exact=True)
    assert (ours.a_only, ours.b_only) == (a_only, b_only)
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_mcnemar_rejects_non_binary():
    with pytest.raises(ValueError):
        mcnemar_exact([0.5, 1], [1, 0])
