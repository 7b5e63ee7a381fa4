"""Batch building: flip mirrors landmarks and their temporal differences; model-input shapes."""

from __future__ import annotations

import numpy as np
import pytest

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.batches import AugmentConfig, BatchBuilder
from components.models.base import InputSpec
from components.store.rows import encode_jpeg



def _rows(n: int = 4, steps: int = 2) -> dict:
    rng = np.random.default_rng(0)
    crop = (rng.random((112, 112, 3)) * 255).astype(np.uint8)
    lms = rng.uniform(20, 90, size=(68, 2)).astype(np.float32)
    diff = np.zeros((steps, 68, 2), np.float32)
    diff[:, 48] = [3.0, -2.0]  # right mouth corner moves right and up
    return {"image": [encode_jpeg(crop, 95)] * n, "landmarks": [lms.reshape(-1)] * n,
            "landmark_diff": [diff.reshape(-1)] * n, "diff_valid": [[True] * steps] * n,
            "labels": [[1, -1, 0]] * n, "intensities": [[]] * n,
            "sample_id": np.array([f"s{i}" for i in range(n)])}


def test_eval_batch_shapes_and_unknown_labels() -> None:
    spec = InputSpec(image_size=64, channels="gray+sobel", mask=True, diff_steps=(2,))
    out = BatchBuilder(spec, (1, 2), 3)(_rows())
    assert out["image"].shape == (4, 2, 64, 64)
    assert out["landmark_diff"].shape == (4, 1, 68, 2)
    np.testing.assert_array_equal(out["labels"][0], [1, -1, 0])
    np.testing.assert_array_equal(out["intensity"][0], [-1, -1, -1])  # no intensities in store
    assert out["landmarks"][0, 0, 0] == pytest.approx(_rows()["landmarks"][0][0] * 64 / 112, rel=1e-5)


def test_flip_mirrors_temporal_differences() -> None:
    spec = InputSpec(image_size=112, diff_steps=(1,))
    aug = AugmentConfig(crop_jitter=0.0, scale_jitter=0.0, flip=True, brightness=0.0, contrast=0.0)
    out = BatchBuilder(spec, (1, 2), 3, augment=aug, seed=3)(_rows(n=16))
    flipped = [i for i in range(16) if out["landmark_diff"][i, 0, 48].tolist() != [3.0, -2.0]]
    assert 0 < len(flipped) < 16
    i = flipped[0]
    # After a mirror, the motion of point 48 appears at its mirror partner 54 with x negated.
    assert LEFT_RIGHT_LANDMARK_PERMUTATION[54] == 48
    np.testing.assert_allclose(out["landmark_diff"][i, 0, 54], [-3.0, -2.0])
    np.testing.assert_allclose(out["landmark_diff"][i, 0, 48], [0.0, 0.0])


def test_missing_steps_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"steps \[8\]"):
        BatchBuilder(InputSpec(diff_steps=(8,)), (1, 2), 3)
