"""Subject bootstrap, paired bootstrap and sign-flip test: hand-checkable cases,
determinism for a seed, and agreement of the fast count path with the generic one."""

import numpy as np
import pytest

from components.metrics.occurrence import mean_f1
from components.metrics.resampling import (bootstrap_ci, bootstrap_occurrence, paired_bootstrap,
                                           sign_flip_test)

pytestmark = pytest.mark.filterwarnings("error")


def _mean_f1_at_half(probs, labels):
    return mean_f1((probs >= 0.5).astype(int), labels)


def _toy(seed=0, n=400, k=3, n_subj=8):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.3).astype(int)
    labels[rng.random((n, k)) < 0.1] = -1
    probs = np.clip(0.45 * labels.clip(0) + 0.6 * rng.random((n, k)), 0, 1)
    subjects = np.array([f"S{i}" for i in rng.integers(0, n_subj, n)])
    return probs, labels, subjects


def test_two_subject_bootstrap_by_hand():
    # Subject A: perfect (F1 1); subject B: TP 0, FP 1, FN 1 (F1 0); both pooled: TP 1, FP 1,
    # FN 1 -> 0.5. A replicate is A twice (p 1/4, F1 1), B twice (1/4, F1 0) or one each
    # (1/2, F1 0.5), so the 95% percentile interval is [0, 1] around the estimate 0.5.
    labels = np.array([[1], [0], [1], [0]])
    probs = np.array([[0.9], [0.1], [0.1], [0.9]])
    ci = bootstrap_ci(_mean_f1_at_half, probs, labels, ["A", "A", "B", "B"], n_boot=2000)
    assert (ci["estimate"], ci["low"], ci["high"]) == (0.5, 0.0, 1.0)
    assert ci["n_subjects"] == 2


def test_bootstrap_contains_estimate_and_is_deterministic():
    probs, labels, subjects = _toy()
    a = bootstrap_ci(_mean_f1_at_half, probs, labels, subjects, n_boot=200, seed=3)
    b = bootstrap_ci(_mean_f1_at_half, probs, labels, subjects, n_boot=200, seed=3)
    c = bootstrap_ci(_mean_f1_at_half, probs, labels, subjects, n_boot=200, seed=4)
    assert a == b
    assert a != c
    assert a["low"] < a["estimate"] < a["high"]
    assert a["estimate"] == pytest.approx(_mean_f1_at_half(probs, labels))


def test_count_bootstrap_equals_generic_bootstrap():
    probs, labels, subjects = _toy(seed=1)
    fast = bootstrap_occurrence((probs >= 0.5).astype(int), labels, subjects, n_boot=300, seed=7)
    slow = bootstrap_ci(_mean_f1_at_half, probs, labels, subjects, n_boot=300, seed=7)
    for key in ("estimate", "low", "high"):
        assert fast["mean_f1"][key] == pytest.approx(slow[key], abs=1e-12)
    assert fast["accuracy"]["low"] < fast["accuracy"]["estimate"] < fast["accuracy"]["high"]


def test_identical_subjects_give_a_zero_width_interval():
    labels = np.tile([[1], [0], [1]], (4, 1))
    preds = np.tile([[1], [1], [0]], (4, 1))
    # Every subject alone has TP 1, FP 1, FN 1 -> F1 0.5; every replicate is 0.5.
    ci = bootstrap_occurrence(preds, labels, np.repeat(["a", "b", "c", "d"], 3), n_boot=50)
    assert (ci["mean_f1"]["low"], ci["mean_f1"]["high"]) == (0.5, 0.5)


def test_paired_bootstrap_same_model_and_clearly_better_model():
    probs, labels, subjects = _toy(seed=2)
    preds = (probs >= 0.5).astype(int)
    same = paired_bootstrap(preds, preds, labels, subjects, n_boot=200)
    assert (same["difference"], same["low"], same["high"], same["p_value"]) == (0, 0, 0, 1.0)
    oracle = labels.clip(0)
    better = paired_bootstrap(oracle, preds, labels, subjects, n_boot=200, seed=1)
    assert better["a"] == 1.0
    assert better["difference"] == pytest.approx(1.0 - _mean_f1_at_half(probs, labels))
    assert better["low"] > 0
    # No replicate difference is as far from the estimate as 0 is: p = 1 / (200 + 1).
    assert better["p_value"] == pytest.approx(1 / 201)
    with pytest.raises(ValueError, match="statistic"):
        paired_bootstrap(preds, preds, labels, subjects, statistic="auc")


def test_sign_flip_exact_by_hand():
    # 5 folds all in favour of a: only the all-plus and all-minus patterns reach the observed
    # |mean|, p = 2 / 32.
    a = [0.60, 0.70, 0.65, 0.62, 0.68]
    b = [0.50, 0.65, 0.63, 0.54, 0.65]
    out = sign_flip_test(a, b)
    assert out["p_value"] == pytest.approx(0.0625)
    assert out["mean_difference"] == pytest.approx(0.056)
    assert out["exact"] and out["min_p"] == pytest.approx(0.0625)
    # d = 0.1, -0.1, 0.2: signed sums 0.2 -0.2 0.4 0 0 -0.4 0.2 -0.2; |sum| >= 0.2 in 6 of 8.
    assert sign_flip_test([0.6, 0.4, 0.7], [0.5, 0.5, 0.5])["p_value"] == pytest.approx(0.75)


def test_bootstrap_needs_two_subjects():
    with pytest.raises(ValueError, match="at least 2 subjects"):
        bootstrap_occurrence(np.ones((3, 1), int), np.ones((3, 1), int), ["a"] * 3)
    with pytest.raises(ValueError, match="one entry per sample"):
        bootstrap_occurrence(np.ones((3, 1), int), np.ones((3, 1), int), ["a", "b"])
