"""``openface_csv``: the CSV text ``facsflow live`` appends per frame is pandas' ``to_csv`` of
``rows_to_openface``, character for character (face rows, a faceless row, intensities, NaNs)."""

from __future__ import annotations

import io

import numpy as np
import pytest


def _rows(aus: list[int], intensity: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for frame in range(3):
        probs = {f"AU{a}": float(np.float32(rng.random())) for a in aus}
        row = {"frame": frame, "face_id": 0, "timestamp": frame / 23.976, "score": 0.99812345, "success": 1,
               "landmarks": (rng.random((68, 2)) * 640).round(2).tolist(),
               "pose": {"pitch": 3.5, "yaw": -12.25, "roll": 0.0} if frame else None,
               "gaze": {"angle_x": 0.01234, "angle_y": -0.2}, "probs": probs,
               "occurrence": {k: int(v >= 0.3) for k, v in probs.items()},
               "emotions": {"happiness": 0.5} if frame == 1 else None}
        if intensity:
            row["intensity"] = {k: 5 * v for k, v in probs.items()}
        rows.append(row)
    rows.append({"frame": 3, "timestamp": 0.125, "face_id": -1, "success": 0})
    return rows


@pytest.mark.parametrize("intensity", [False, True])
def test_openface_csv_is_the_tables_csv(intensity):
    from components.au_detector import openface_csv, rows_to_openface

    aus = [1, 2, 4, 6, 12, 15, 25]
    rows = _rows(aus, intensity)
    buf = io.StringIO()
    rows_to_openface(rows, aus, intensity).to_csv(buf, header=False, index=False)
    text = openface_csv(rows, aus, intensity)
    assert text == buf.getvalue()
    assert text.splitlines()[3].startswith("3,-1,0.125,0.0,0,,")  # the faceless row: ids, then empty
