"""Agreement with a teacher (components.metrics.agreement) on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.metrics.agreement import pearson_per_au, teacher_agreement, teacher_decisions

NAN = float("nan")
SOFT = np.array([[0.9, 0.2, NAN], [0.4, 0.35, 0.5], [0.6, NAN, 0.1], [0.1, 0.1, 0.2]])
PROBS = np.array([[0.8, 0.6, 0.5], [0.7, 0.2, 0.5], [0.3, 0.9, 0.5], [0.2, 0.1, 0.5]])
TEACHER_THR = [0.5, 0.3, None]   # the teacher does not predict AU 4


def test_teacher_decisions_threshold_per_au_and_keep_unknowns() -> None:
    assert teacher_decisions(SOFT, TEACHER_THR).tolist() == [[1, 0, -1], [0, 1, -1], [1, -1, -1], [0, 0, -1]]
    with pytest.raises(ValueError, match="3 thresholds"):
        teacher_decisions(SOFT[:, :2], TEACHER_THR)


def test_agreement_f1_and_correlation_by_hand() -> None:
    res = teacher_agreement(PROBS, [0.5, 0.5, 0.5], SOFT, TEACHER_THR, [1, 2, 4])
    # AU1: student [1,1,0,0] vs teacher [1,0,1,0]: TP 1, FP 1, FN 1 -> 2/(2+1+1) = 0.5.
    # AU2: student [1,0,1,0] vs teacher [0,1,?,0]: TP 0, FP 1, FN 1 -> 0. AU4: nothing known.
    assert res["agreement_f1"] == {1: 0.5, 2: 0.0, 4: None}
    assert res["mean_agreement_f1"] == 0.25
    # AU1: dx [.3,.2,-.2,-.3], dy [.4,-.1,.1,-.4]: 0.20 / sqrt(0.26 * 0.34).
    r1 = 0.20 / math.sqrt(0.26 * 0.34)
    # AU2 over rows 0, 1, 3: dx [.3,-.1,-.2], dy [-1/60, 8/60, -7/60]: 0.005 / sqrt(0.14 * 0.19/6).
    r2 = 0.005 / math.sqrt(0.14 * 0.19 / 6)
    assert res["correlation"][1] == pytest.approx(r1, abs=1e-9)
    assert res["correlation"][2] == pytest.approx(r2, abs=1e-9)
    assert res["correlation"][4] is None          # the student's AU 4 is constant
    assert res["mean_correlation"] == pytest.approx((r1 + r2) / 2, abs=1e-9)
    assert res["n_rows"] == 4 and res["n_known"] == {1: 4, 2: 3, 4: 0}


def test_student_thresholds_change_agreement_not_correlation() -> None:
    res = teacher_agreement(PROBS, [0.75, 0.5, 0.5], SOFT, TEACHER_THR, [1, 2, 4])
    # AU1 at 0.75: student [1,0,0,0] vs teacher [1,0,1,0]: TP 1, FN 1 -> 2/3.
    assert res["agreement_f1"][1] == pytest.approx(2 / 3)
    assert res["correlation"][1] == pytest.approx(0.20 / math.sqrt(0.26 * 0.34))


def test_pearson_needs_two_known_rows() -> None:
    assert np.isnan(pearson_per_au(np.array([[0.1], [0.2]]), np.array([[0.3], [NAN]]))).all()
