"""Per-AU threshold tuning picks the hand-computed best grid value; ties go towards 0.5."""

import numpy as np
import pytest

from components.thresholds import DEFAULT_GRID, apply_thresholds, tune_thresholds

pytestmark = pytest.mark.filterwarnings("error")


def test_tune_thresholds_constructed_example():
    # AU a: probs 0.1 0.3 0.45 0.6 0.8 0.9, labels 0 1 1 0 1 1. F1 by threshold:
    #   0.05-0.10: TP4 FP2 -> 0.800    0.15-0.30: TP4 FP1 -> 0.889 (best)
    #   0.35-0.45: TP3 FP1 FN1 -> 0.750  0.50-0.60: TP2 FP1 FN2 -> 0.571
    #   0.65-0.80: TP2 FN2 -> 0.667    0.85-0.90: 0.4    0.95: 0
    #   best plateau 0.15..0.30 -> the value closest to 0.5: 0.30.
    # AU b: probs 0.2 0.4 0.6 0.8, labels 0 0 1 1 (+ 2 unknown rows): F1 = 1 for thresholds
    #   0.45..0.60 -> closest to 0.5 is 0.5 itself.
    # AU c: no positive in validation -> default 0.5.
    probs = np.array([[0.1, 0.2, 0.9], [0.3, 0.4, 0.8], [0.45, 0.6, 0.1],
                      [0.6, 0.8, 0.2], [0.8, 0.99, 0.3], [0.9, 0.01, 0.4]])
    labels = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, -1], [1, -1, 0], [1, -1, 0]])
    np.testing.assert_allclose(tune_thresholds(probs, labels), [0.30, 0.5, 0.5])


def test_uninformative_small_scores_fall_back_to_all_positive_or_a_low_cut():
    # AU a: every prob under 0.01, labels 1 0 1 0: thresholds >= 0.01 predict nothing (F1 0);
    #   0.0 predicts all positive: TP2 FP2 -> 0.667, the best.
    # AU b: probs 0.004 0.015 0.025 0.04, labels 0 0 1 1: only 0.02 gives TP2 FP0 -> F1 1;
    #   0.0: TP2 FP2 -> 0.667; 0.01: TP2 FP1 -> 0.8; 0.03: TP1 FN1 -> 0.667.
    probs = np.array([[0.002, 0.004], [0.001, 0.015], [0.004, 0.025], [0.003, 0.04]])
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(tune_thresholds(probs, labels), [0.0, 0.02])


def test_grid_and_apply():
    np.testing.assert_allclose(DEFAULT_GRID[[0, 1, 4, 13, 22]], [0.0, 0.01, 0.05, 0.5, 0.95])
    assert DEFAULT_GRID.size == 23
    out = apply_thresholds(np.array([[0.5, 0.49], [0.2, 0.8]]), [0.5, 0.5])
    np.testing.assert_array_equal(out, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(apply_thresholds(np.array([[0.3, 0.7]]), [0.2, 0.8]), [[1, 0]])
    with pytest.raises(ValueError, match="do not fit"):
        apply_thresholds(np.zeros((2, 3)), [0.5, 0.5])


def test_refuses_test_subjects():
    with pytest.raises(ValueError, match="validation subjects only"):
        tune_thresholds(np.zeros((2, 1)), np.zeros((2, 1), int),
                        val_subjects=["s1", "s2"], test_subjects=["s2", "s3"])


def test_validation_decisions_of_an_epoch():
    from components.thresholds import validation_decisions

    # AU a ranks its positives first but stays below 0.5; AU b is confident and right.
    probs = np.array([[0.3, 0.9], [0.2, 0.8], [0.1, 0.1], [0.05, 0.2]])
    labels = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    d = validation_decisions(probs, labels, [1, 2])
    np.testing.assert_allclose(d["val_thresholds"], [0.2, 0.5])
    assert d["val_tuned_mean_f1"] == pytest.approx(1.0) and d["val_tuned_mean_accuracy"] == pytest.approx(1.0)
    assert d["val_positive_rate"] == pytest.approx(2 / 8)
    assert d["val_all_positive_f1"] == pytest.approx(2 / 3)   # 2·0.5 / (1 + 0.5) for both AUs
    fixed = validation_decisions(probs, labels, [1, 2], tune=False)
    assert fixed["val_thresholds"] == [0.5, 0.5]
    assert fixed["val_tuned_mean_f1"] == pytest.approx(0.5)
    nothing = validation_decisions(probs, -np.ones_like(labels), [1, 2])
    assert nothing["val_thresholds"] == [0.5, 0.5] and nothing["val_positive_rate"] == 0.0


def test_evaluate_names_the_checkpoints_thresholds():
    from workflows.core.evaluation import EvaluateConfig, _checkpoint_threshold_source

    assert EvaluateConfig().tune_thresholds is False   # the checkpoint's, chosen in training
    assert _checkpoint_threshold_source({"train_config": {"tune_thresholds": True}}) == (
        "checkpoint: tuned on validation subjects in training")
    assert _checkpoint_threshold_source({"train_config": {}}) == "checkpoint: default 0.5"
