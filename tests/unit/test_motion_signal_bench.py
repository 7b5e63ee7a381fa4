"""benchmarks/motion_signal.py: the motion of an AU's landmarks at its label changes and elsewhere,
against numbers worked out by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("motion_signal_bench", ROOT / "benchmarks" / "motion_signal.py")
ms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ms)


def _video(n: int = 6) -> dict:
    # One video of 6 frames, AU1 (brow landmarks 19-24) off until frame 3 and on from it. The
    # eyes 36 and 45 are 40 px apart. The store's step-1 differences: every landmark drifts 2 px
    # right (a head shift the stable landmarks remove), and at frames 2 and 3 (whose t-1, t+1 straddle
    # the onset) the brows rise 4 px more.
    lms = np.zeros((n, 68, 2), np.float32)
    lms[:, 45, 0] = 40.0
    diff = np.zeros((n, 1, 68, 2), np.float32)
    diff[:, 0, :, 0] = 2.0
    diff[2:4, 0, 19:25, 1] = -4.0
    return {"subject": np.array(["S1"] * n), "video": np.array(["V1"] * n), "frame_order": np.arange(n),
            "landmarks": lms.reshape(n, -1), "landmark_diff": diff.reshape(n, -1),
            "labels": np.array([[0], [0], [0], [1], [1], [1]], np.int8)}


def test_motion_at_onsets_and_elsewhere_by_hand() -> None:
    (rec,) = ms.motion_signal(_video(), (1,), (1,))
    # Frames 1-4 have both neighbours; 2 and 3 straddle the onset: brows moved 4 px = 0.1 eye
    # distances there, nothing (after the bridge) at 1 and 4.
    assert (rec["n_change"], rec["n_elsewhere"]) == (2, 2)
    assert rec["at_change"] == pytest.approx(0.1)
    assert rec["elsewhere"] == pytest.approx(0.0)


def test_unknown_labels_are_left_out() -> None:
    video = _video()
    video["labels"][3, 0] = -1   # frames 2 (1 vs 3) and 4 (3 vs 5) compare with it
    (rec,) = ms.motion_signal(video, (1,), (1,))
    assert (rec["n_change"], rec["n_elsewhere"]) == (1, 1)   # frame 3 (2 vs 4), frame 1 (0 vs 2)
    assert rec["at_change"] == pytest.approx(0.1)
