"""The significance code agrees with scipy/statsmodels/sklearn reference implementations."""

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import f1_score
from statsmodels.stats.contingency_tables import mcnemar

from tuneproof.stats import macro_f1, mcnemar_exact, paired_bootstrap, paired_bootstrap_macro_f1


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


LABELS = ["a", "b", "c", "d"]  # "d" is neither a true nor a predicted label: F1 0, still averaged


def label_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True labels (incl. "x", outside the label set) and two systems' predictions (incl. "<none>")."""
    rng = np.random.default_rng(seed)
    true = rng.choice(["a", "b", "c", "x"], n, p=[0.6, 0.25, 0.1, 0.05])
    pred_a = np.where(rng.random(n) < 0.8, true, rng.choice(["a", "b", "c", "<none>"], n))
    pred_b = np.where(rng.random(n) < 0.6, true, rng.choice(["a", "<none>"], n))
    return true, pred_a, pred_b


def sk_macro_f1(true, pred) -> float:
    return f1_score(true, pred, labels=LABELS, average="macro", zero_division=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_matches_sklearn(seed):
    true, pred_a, pred_b = label_case(seed)
    assert macro_f1(true, pred_a, LABELS) == pytest.approx(sk_macro_f1(true, pred_a))
    assert macro_f1(true, pred_b, LABELS) == pytest.approx(sk_macro_f1(true, pred_b))
    assert macro_f1(["a"], ["<none>"], ["a"]) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_paired_bootstrap_macro_f1_matches_sklearn_on_the_same_resamples(seed):
    true, pred_a, pred_b = label_case(seed)
    ours = paired_bootstrap_macro_f1(true, pred_a, pred_b, LABELS, n_resamples=400, seed=seed)
    full = sk_macro_f1(true, pred_a) - sk_macro_f1(true, pred_b)
    assert ours.mean_diff == pytest.approx(full) and ours.n == 300 and ours.n_resamples == 400
    assert ours.ci_low < full < ours.ci_high
    # 400 x 300 indices fit one chunk: the resampled ids are the generator's first draw
    idx = np.random.default_rng(seed).integers(0, len(true), size=(400, len(true)))
    diffs = np.array([sk_macro_f1(true[i], pred_a[i]) - sk_macro_f1(true[i], pred_b[i]) for i in idx])
    centred = diffs - (diffs.mean() - full)  # bias-corrected: the resamples' mean moved onto the estimate
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(np.percentile(centred, [2.5, 97.5])))


def test_macro_f1_interval_holds_its_estimate_with_many_small_classes():
    """77 classes of ~2 test records (banking77-like): resampled macro-F1 runs low, and the plain
    percentile interval of a clear gain missed the gain itself; the corrected one holds it."""
    rng = np.random.default_rng(0)
    labels = [f"c{i}" for i in range(77)]
    true = np.array([labels[i % 77] for i in range(182)])
    good = np.where(rng.random(182) < 0.7, true, rng.choice(labels, 182))
    constant = np.array([labels[0]] * 182)
    result = paired_bootstrap_macro_f1(true, good, constant, labels, n_resamples=2000, seed=0)
    assert result.ci_low < result.mean_diff < result.ci_high


def test_paired_bootstrap_macro_f1_is_paired_and_checks_its_input():
    true, pred_a, _ = label_case(3)
    same = paired_bootstrap_macro_f1(true, pred_a, pred_a, LABELS, 500, seed=3)
    assert (same.mean_diff, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap_macro_f1(true, pred_a[:-1], pred_a, LABELS)
    with pytest.raises(ValueError):
        paired_bootstrap_macro_f1(true, pred_a, pred_a, [])
