"""ICC(3,1), MAE and Pearson against worked examples, with -1 (unknown) excluded."""

import math

import numpy as np
import pytest

from components.metrics.intensity import evaluate_intensity, icc_3_1, icc_3_1_matrix, mae, pearson

pytestmark = pytest.mark.filterwarnings("error")


def test_icc_shrout_fleiss_table():
    # Shrout & Fleiss (1979) Table 2: 6 targets x 4 judges. Their ANOVA: BMS 11.24,
    # JMS 32.49, EMS 1.02 and ICC(3,1) = .71. Exactly: grand mean 127/24; row means
    # 6, 3, 6.5, 4, 7.5, 4.75 -> SS_targets = 1349/24, BMS = 1349/120; SS_judges = 2339/24;
    # SS_total = 4055/24 -> SS_E = 367/24, EMS = 367/360;
    # ICC(3,1) = (BMS - EMS) / (BMS + 3 EMS) = 3680/5148 = 0.714841.
    y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                  [6, 2, 4, 7]])
    assert icc_3_1_matrix(y) == pytest.approx(0.7148407148)


def test_icc_two_raters_by_hand_with_unknown_excluded():
    # pred 1 2 3 4 vs true 2 2 4 5 (the 5th pair has true = -1 and is dropped).
    # grand 23/8; row means 1.5 2 3.5 4.5 -> SS_targets = 2 * 5.6875 = 11.375, BMS = 3.791667;
    # column means 2.5, 3.25 -> SS_raters = 4 * 2 * 0.375^2 = 1.125; SS_total = 12.875;
    # SS_E = 0.375, EMS = 0.125; ICC = (3.791667 - 0.125) / (3.791667 + 0.125) = 44/47.
    pred = np.array([1.0, 2, 3, 4, 0])
    true = np.array([2, 2, 4, 5, -1])
    assert icc_3_1(pred, true) == pytest.approx(0.9361702128)
    # Per AU on 2-D input; a constant AU has no variance: undefined, not a warning.
    both = icc_3_1(np.c_[pred, np.ones(5)], np.c_[true, np.ones(5)])
    assert both[0] == pytest.approx(0.9361702128)
    assert math.isnan(both[1])


def test_mae_and_pearson_by_hand_with_unknown_excluded():
    # Known pairs (1,2) (2,1) (3,4): MAE = (1 + 1 + 1) / 3 = 1.
    # dp = -1 0 1, dt = -1/3 -4/3 5/3: r = 2 / sqrt(2 * 14/3) = sqrt(3/7) = 0.654654.
    pred = np.array([1.0, 2, 3, 10])
    true = np.array([2, 1, 4, -1])
    assert mae(pred, true) == pytest.approx(1.0)
    assert pearson(pred, true) == pytest.approx(0.6546536707)
    assert math.isnan(pearson(np.array([1.0, 2]), np.array([3, 3])))
    assert math.isnan(mae(np.array([1.0]), np.array([-1])))


def test_evaluate_intensity_reports_per_au_and_means():
    pred = np.array([[1.0, 1], [2, 2], [3, 3], [4, 0]])
    true = np.array([[2, 1], [2, 2], [4, 3], [5, -1]])
    out = evaluate_intensity(pred, true, [6, 12])
    assert out["per_au"]["AU6"]["icc"] == pytest.approx(0.9361702128)
    assert out["per_au"]["AU12"] == pytest.approx({"icc": 1.0, "mae": 0.0, "pearson": 1.0})
    assert out["mean_mae"] == pytest.approx((0.75 + 0.0) / 2)
    with pytest.raises(ValueError, match="same 1-D or 2-D shape"):
        mae(np.zeros(3), np.zeros(4))
