"""A teacher's soft labels for store rows (components.teacher) through the built-in's real
Predictor: hand-computed probabilities from the blendshape table, NaN for an AU the teacher does
not predict and for a row without the teacher's input (no blendshapes)."""

from __future__ import annotations

import numpy as np

from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES
from components.store.rows import encode_jpeg
from components.teacher import label_columns, teacher_soft_labels


def _rows(blendshapes: list) -> dict:
    n = len(blendshapes)
    face = encode_jpeg(np.full((112, 112, 3), 128, np.uint8), 90)
    return {"sample_id": [f"d/s/v/{i:06d}" for i in range(n)], "dataset": ["d"] * n, "subject": ["s"] * n,
            "video": ["v"] * n, "frame_order": list(range(n)), "image": [face] * n,
            "landmarks": [[56.0] * 136] * n, "landmark_diff": [[]] * n, "diff_valid": [[]] * n,
            "blendshapes": blendshapes}


def test_label_columns_map_the_labels_au_list_onto_the_teachers() -> None:
    assert label_columns([1, 6, 12], [12, 3, 1]) == [2, -1, 0]


def test_builtin_soft_labels_by_hand_with_unknowns(tmp_path) -> None:
    from components.builtin import builtin_ensemble_dir
    from components.predictor import Predictor

    teacher = Predictor.from_manifest(builtin_ensemble_dir(tmp_path))
    b = np.zeros(52, np.float32)
    b[BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 0.8
    b[BLENDSHAPE_NAMES.index("mouthSmileRight")] = 0.4
    b[BLENDSHAPE_NAMES.index("browInnerUp")] = 0.3
    rows = _rows([b.tolist(), None, b.tolist()])
    # Rows without geometry: blendshapes alone. AU12 = 0.5 * 0.8 + 0.5 * 0.4 = 0.6 and AU1 =
    # browInnerUp = 0.3, less the population neutral (0): each row is the first frame of its own
    # track (batch_rows 1), which has no earlier frames for a person's neutral. AU3: unknown.
    soft = teacher_soft_labels(teacher, rows, [12, 3, 1], store_diff_steps=[], batch_rows=1)
    assert soft.dtype == np.float32 and soft.shape == (3, 3)
    np.testing.assert_allclose(soft[[0, 2]][:, [0, 2]], [[0.6, 0.3], [0.6, 0.3]], atol=1e-6)
    assert np.isnan(soft[:, 1]).all()
    assert np.isnan(soft[1]).all()  # the row without blendshapes: the teacher had no input
