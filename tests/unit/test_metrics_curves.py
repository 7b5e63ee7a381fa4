"""PR curve, average precision and co-occurrence against hand-worked examples."""

import math

import numpy as np
import pytest

from components.metrics.curves import average_precision, cooccurrence, pr_curve, pr_curves_summary

pytestmark = pytest.mark.filterwarnings("error")

# Known entries sorted by score: 0.9(+) 0.8(-) 0.8(+) 0.3(-) 0.1(+); the 0.5 one is unknown.
# Thresholds 0.9, 0.8, 0.3, 0.1 -> TP 1,2,2,3  FP 0,1,2,2
# precision 1, 2/3, 1/2, 3/5; recall 1/3, 2/3, 2/3, 1.
# AP = 1/3 * 1 + 1/3 * 2/3 + 0 * 1/2 + 1/3 * 3/5 = 0.7555...
SCORES = np.array([0.9, 0.8, 0.8, 0.3, 0.1, 0.5])
LABELS = np.array([1, 0, 1, 0, 1, -1])


def test_pr_curve_ties_and_unknowns_by_hand():
    c = pr_curve(SCORES, LABELS)
    np.testing.assert_allclose(c["thresholds"], [0.9, 0.8, 0.3, 0.1])
    np.testing.assert_allclose(c["precision"], [1, 2 / 3, 0.5, 0.6])
    np.testing.assert_allclose(c["recall"], [1 / 3, 2 / 3, 2 / 3, 1])
    assert average_precision(SCORES, LABELS) == pytest.approx(0.7555555556)


def test_pr_curve_without_positives_is_none():
    assert pr_curve([0.2, 0.9], [0, -1]) is None
    assert math.isnan(average_precision([0.2, 0.9], [0, -1]))
    summary = pr_curves_summary(np.c_[SCORES, SCORES], np.c_[LABELS, np.zeros(6, int)])
    assert summary[1] is None
    assert summary[0]["ap"] == pytest.approx(0.7555555556)
    assert summary[0]["recall"][-1] == 1.0


def test_cooccurrence_by_hand():
    labels = np.array([[1, 1, 0, 0], [1, 0, -1, 0], [0, 1, 1, 0], [1, 1, 1, 0]])
    # AU0 on rows 0,1,3: AU1 on in 2 of 3 -> 2/3; AU2 known in rows 0,3, on in row 3 -> 1/2.
    # AU1 on rows 0,2,3: AU0 on 0,3 -> 2/3; AU2 on 2,3 -> 2/3.
    # AU2 on rows 2,3: AU0 on 3 -> 1/2; AU1 on both -> 1. AU3 never on: NaN row.
    c = cooccurrence(labels)
    np.testing.assert_allclose(c[:3, :3], [[1, 2 / 3, 0.5], [2 / 3, 1, 2 / 3], [0.5, 1, 1]])
    np.testing.assert_allclose(c[:3, 3], 0.0)
    assert np.isnan(c[3]).all()
    # Predictions scored on the labels' known entries only: the 1 at the unknown is ignored.
    preds = np.array([[1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    cp = cooccurrence(preds, labels >= 0)
    assert cp[0, 2] == pytest.approx(0.5)
