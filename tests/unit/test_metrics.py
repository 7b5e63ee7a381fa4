"""Occurrence metrics against numbers worked out by hand (in the comments), with unknown
labels, an AU without positives, the trivial predictors, fold aggregation and shared AUs.
Any NumPy warning (e.g. a division by zero) fails a test."""

import math

import numpy as np
import pytest

from components.metrics.occurrence import (abaw_score, accuracy_per_au, aggregate_folds, all_positive_f1,
                                base_rate_random_f1, evaluate_occurrence, f1_per_au, mean_f1,
                                precision_per_au, recall_per_au, restrict_to_aus, shared_aus,
                                total_accuracy, trivial_report)

pytestmark = pytest.mark.filterwarnings("error")

# 6 samples x 2 AUs, -1 = unknown.
# AU1: known rows 0,1,2,3,5 -> TP rows 0,5 (2), FN row 1, FP row 2, TN row 3; row 4 ignored.
#      F1 = 2*2 / (4 + 1 + 1) = 2/3; precision = recall = 2/3; accuracy = 3/5.
# AU2: known rows 0,2,3,4 -> TP row 2, FP rows 3,4, TN row 0, FN none.
#      F1 = 2 / (2 + 2) = 1/2; precision 1/3; recall 1; accuracy 2/4.
LABELS = np.array([[1, 0], [1, -1], [0, 1], [0, 0], [-1, 0], [1, -1]])
PREDS = np.array([[1, 0], [0, 1], [1, 1], [0, 1], [1, 1], [1, 0]])
PROBS = np.array([[0.9, 0.1], [0.2, 0.7], [0.7, 0.8], [0.4, 0.5], [0.6, 0.95], [0.55, 0.3]])


def test_f1_precision_recall_accuracy_with_unknowns():
    np.testing.assert_allclose(f1_per_au(PREDS, LABELS), [2 / 3, 0.5])
    np.testing.assert_allclose(precision_per_au(PREDS, LABELS), [2 / 3, 1 / 3])
    np.testing.assert_allclose(recall_per_au(PREDS, LABELS), [2 / 3, 1.0])
    np.testing.assert_allclose(accuracy_per_au(PREDS, LABELS), [0.6, 0.5])
    # mean F1 = (2/3 + 1/2) / 2 = 7/12; total accuracy = (3 + 2) / (5 + 4) = 5/9.
    assert mean_f1(PREDS, LABELS) == pytest.approx(0.5833333333)
    assert total_accuracy(PREDS, LABELS) == pytest.approx(0.5555555556)
    # ABAW = 0.5 * 7/12 + 0.5 * 5/9 = 41/72.
    assert abaw_score(PREDS, LABELS) == pytest.approx(0.5694444444)


def test_evaluate_occurrence_thresholds_probabilities_at_half():
    out = evaluate_occurrence(PROBS, LABELS, [1, 2])
    # PROBS >= 0.5 reproduces PREDS (0.5 itself counts as positive).
    assert out["per_au"]["AU1"]["f1"] == pytest.approx(0.6666666667)
    assert out["per_au"]["AU2"] == pytest.approx({
        "f1": 0.5, "precision": 0.3333333333, "recall": 1.0, "accuracy": 0.5,
        "base_rate": 0.25, "pred_rate": 0.75, "n_known": 4, "n_positive": 1, "threshold": 0.5})
    assert out["mean_f1"] == pytest.approx(0.5833333333)
    assert out["accuracy"] == pytest.approx(0.5555555556)
    assert out["mean_accuracy"] == pytest.approx(0.55)
    assert out["abaw"] == pytest.approx(0.5694444444)
    assert out["f1_excluded_aus"] == []
    # Per-AU thresholds: 0.95 for AU2 leaves only row 4 (label 0) positive: TP 0, FP 1,
    # FN 1 -> F1 0.
    out = evaluate_occurrence(PROBS, LABELS, [1, 2], thresholds=[0.5, 0.95])
    assert out["per_au"]["AU2"]["f1"] == 0.0
    assert out["thresholds"] == [0.5, 0.95]


def test_au_without_positives_is_undefined_and_left_out_without_warning():
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, -1], [-1, 0], [1, 0]])
    preds = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [1, 0]])
    f1 = f1_per_au(preds, labels)
    assert f1[0] == pytest.approx(2 / 3)
    assert math.isnan(f1[1])
    assert math.isnan(precision_per_au(preds, labels)[1])
    assert math.isnan(recall_per_au(preds, labels)[1])
    assert accuracy_per_au(preds, labels)[1] == 1.0
    assert mean_f1(preds, labels) == pytest.approx(2 / 3)
    out = evaluate_occurrence(preds.astype(float), labels, [1, 2])
    assert out["per_au"]["AU2"]["f1"] is None
    assert out["f1_excluded_aus"] == ["AU2"]
    assert out["mean_f1"] == pytest.approx(2 / 3)
    # One false positive on an AU without positives: F1 = 0/(0+1+0) = 0, defined, but the AU
    # still has no positive label, so it stays out of the mean, as for every predictor.
    preds[0, 1] = 1
    assert f1_per_au(preds, labels)[1] == 0.0
    assert mean_f1(preds, labels) == pytest.approx(2 / 3)
    # The trivial predictors are averaged over the same AU: all-positive F1 on AU1 is
    # 2 * 0.6 / 1.6 = 0.75 (AU2's 0 is reported but not averaged).
    rep = trivial_report(labels, [1, 2])
    assert rep["all_positive"]["f1"] == {"AU1": pytest.approx(0.75), "AU2": 0.0}
    assert rep["all_positive"]["mean_f1"] == pytest.approx(0.75)
    assert rep["base_rate_random"]["f1"]["AU2"] is None
    assert rep["base_rate_random"]["mean_f1"] == pytest.approx(0.6)


def test_all_unknown_au_gives_nan_everywhere_quietly():
    labels = np.array([[1, -1], [0, -1]])
    preds = np.array([[1, 1], [0, 0]])
    assert math.isnan(f1_per_au(preds, labels)[1])
    assert math.isnan(accuracy_per_au(preds, labels)[1])
    assert math.isnan(all_positive_f1(labels)[1])
    assert total_accuracy(preds, labels) == 1.0


def test_trivial_predictors_by_hand():
    # p = 0.25 -> all-positive F1 = 2p / (1 + p) = 0.4; base-rate random = p = 0.25.
    labels = np.array([[1], [0], [0], [0]])
    assert all_positive_f1(labels)[0] == pytest.approx(0.4)
    assert base_rate_random_f1(labels)[0] == pytest.approx(0.25)
    # Base rates of LABELS: AU1 3/5 = 0.6, AU2 1/4 = 0.25.
    # all-positive F1: 1.2/1.6 = 0.75 and 0.4 -> mean 0.575; random: 0.6, 0.25 -> 0.425.
    # all-positive total accuracy = 4 positives / 9 known; random expected accuracy =
    # (5 * (0.36 + 0.16) + 4 * (0.0625 + 0.5625)) / 9 = 5.1 / 9.
    rep = trivial_report(LABELS, [1, 2])
    assert rep["all_positive"]["f1"] == pytest.approx({"AU1": 0.75, "AU2": 0.4})
    assert rep["all_positive"]["mean_f1"] == pytest.approx(0.575)
    assert rep["all_positive"]["accuracy"] == pytest.approx(0.4444444444)
    assert rep["base_rate_random"]["mean_f1"] == pytest.approx(0.425)
    assert rep["base_rate_random"]["accuracy"] == pytest.approx(0.5666666667)
    assert rep["best"] == "all_positive"
    # The all-positive formula agrees with scoring an actual all-ones prediction.
    np.testing.assert_allclose(all_positive_f1(LABELS), f1_per_au(np.ones_like(LABELS), LABELS))


def test_base_rate_random_undefined_when_au_never_occurs():
    labels = np.array([[0], [0], [-1]])
    assert math.isnan(base_rate_random_f1(labels)[0])
    assert all_positive_f1(labels)[0] == 0.0


def test_aggregate_folds_mean_and_sample_std():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    fold_a = evaluate_occurrence(np.array([[1, 1], [0, 0], [1, 0], [0, 0]]), labels, [1, 2])
    labels_b = np.array([[1, 1], [0, 0], [1, 0], [0, 1]])
    fold_b = evaluate_occurrence(np.array([[1, 1], [1, 0], [0, 0], [0, 1]]), labels_b, [1, 2])
    # Fold a: AU1 F1 1; AU2 has no positive (one FP: F1 0) and is not scored -> mean_f1 1.
    # Fold b: AU1 TP1 FP1 FN1 -> 0.5, AU2 1 -> mean 0.75.
    # Over folds: mean 0.875, std sqrt(2 * 0.125^2 / 1) = 0.1767767.
    agg = aggregate_folds([fold_a, fold_b])
    assert agg["n_folds"] == 2
    assert agg["mean_f1"] == pytest.approx({"mean": 0.875, "std": 0.1767766953, "n": 2})
    assert agg["per_au"]["AU1"]["f1"] == pytest.approx({"mean": 0.75, "std": 0.3535533906,
                                                        "n": 2})
    assert agg["per_au"]["AU2"]["f1"] == {"mean": 1.0, "std": None, "n": 1}
    with pytest.raises(ValueError, match="AU list"):
        aggregate_folds([fold_a, evaluate_occurrence(labels * 1.0, labels, [1, 4])])


def test_shared_aus_and_restriction():
    assert shared_aus("disfa", "bp4d") == (1, 2, 4, 6, 12)
    assert shared_aus([12, 6, 1], "disfa") == (12, 6, 1)
    arr = np.arange(16).reshape(2, 8)  # columns follow DISFA: 1 2 4 6 9 12 25 26
    np.testing.assert_array_equal(restrict_to_aus(arr, "disfa", (12, 1)), [[5, 0], [13, 8]])
    with pytest.raises(ValueError, match="share no AU"):
        shared_aus([9], [10])
    with pytest.raises(ValueError, match=r"AU\(s\) \[7\]"):
        restrict_to_aus(arr, "disfa", (7,))


def test_bad_labels_and_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"labels\[0, 1\] = 9"):
        f1_per_au(np.zeros((1, 2)), np.array([[1, 9]]))
    with pytest.raises(ValueError, match="does not match labels"):
        f1_per_au(np.zeros((2, 2)), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        f1_per_au(np.full((1, 1), 0.7), np.ones((1, 1), int))
    with pytest.raises(ValueError, match="has 2 AUs but the arrays have 3"):
        evaluate_occurrence(np.zeros((1, 3)), np.zeros((1, 3), int), [1, 2])
