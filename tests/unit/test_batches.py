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


def test_motion_is_in_the_pixels_of_the_landmarks_the_model_reads() -> None:
    # Two frames of one track in a 112 px store, the second's mouth corner 3 px right and 2 up,
    # read by a 64 px model: the landmark difference the model gets is the difference of the
    # landmarks it gets (64/112 of the store's pixels), not the store's pixels.
    rows = _rows(n=2)
    second = rows["landmarks"][1].reshape(68, 2).copy()
    second[48] += [3.0, -2.0]
    rows["landmarks"] = [rows["landmarks"][0], second.reshape(-1)]
    out = BatchBuilder(InputSpec(image_size=64, diff_steps=(1,)), (1, 2), 3)(rows)
    seen = out["landmarks"][1] - out["landmarks"][0]
    np.testing.assert_allclose(out["landmark_diff"][1, 0], seen, atol=1e-5)
    np.testing.assert_allclose(out["landmark_diff"][1, 0, 48], [3.0 * 64 / 112, -2.0 * 64 / 112], rtol=1e-5)


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


def test_teacher_soft_labels_fill_only_unknown_labels() -> None:
    rows = _rows(n=3)  # own labels [1, -1, 0] each
    nan = float("nan")
    rows["soft_labels"] = [[0.2, 0.7, 0.9], [0.1, nan, 0.4], None]
    out = BatchBuilder(InputSpec(image_size=64), (1, 2), 3)(rows)
    # Known labels stay; the unknown AU takes the teacher's 0.7; NaN (teacher unknown) and a row
    # without soft labels stay unknown.
    np.testing.assert_allclose(out["labels"], [[1, 0.7, 0], [1, -1, 0], [1, -1, 0]], atol=1e-7)
    assert out["labels"].dtype == np.float32
    assert "hard_labels" not in out  # no teacher thresholds given


def test_hard_labels_take_the_teachers_decisions_where_the_teacher_fills() -> None:
    rows = _rows(n=3)  # own labels [1, -1, 0] each
    nan = float("nan")
    rows["soft_labels"] = [[0.2, 0.7, 0.9], [0.1, 0.3, 0.4], [0.9, nan, 0.1]]
    # Thresholds 0.5 and 0.35 for the first two AUs; the teacher lacks the third (None).
    out = BatchBuilder(InputSpec(image_size=64), (1, 2), 3, teacher_thresholds=[0.5, 0.35, None])(rows)
    np.testing.assert_allclose(out["labels"], [[1, 0.7, 0], [1, 0.3, 0], [1, -1, 0]], atol=1e-7)
    # Only the filled AU changes: 0.7 >= 0.35 -> 1, 0.3 < 0.35 -> 0, NaN stays unknown.
    np.testing.assert_array_equal(out["hard_labels"], [[1, 1, 0], [1, 0, 0], [1, -1, 0]])


def test_binary_loss_terms_read_the_teachers_decisions() -> None:
    """lrp-arl-ff's circle loss and pairwise-rank's pair orders see hard_labels, BCE the probabilities."""
    from types import SimpleNamespace

    import torch

    from components.losses import masked_bce
    from components.models.lrp_arl_ff.losses import multilabel_circle_loss
    from components.models.lrp_arl_ff.model import LrpArlFfModel
    from components.models.pairwise_rank.model import PairwiseRankModel

    logits = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    soft = torch.tensor([[0.9, 0.2], [0.6, 0.7]])
    hard = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    me = SimpleNamespace(bce=masked_bce, config=SimpleNamespace(circle_weight=1.0))
    parts = LrpArlFfModel.loss(me, {"logits": logits}, {"labels": soft, "hard_labels": hard})
    assert torch.allclose(parts["bce"], masked_bce(logits, soft))
    assert torch.allclose(parts["circle"], multilabel_circle_loss(logits, hard))
    assert not torch.allclose(parts["circle"], multilabel_circle_loss(logits, soft))
    ranker = SimpleNamespace(config=SimpleNamespace(rank_target="occurrence"))
    assert PairwiseRankModel.ranking_targets(ranker, {"labels": soft, "hard_labels": hard}) is hard
    assert PairwiseRankModel.ranking_targets(ranker, {"labels": soft}) is soft


def test_store_reader_joins_teacher_labels_from_the_table_beside_each_frames_file(tmp_path) -> None:
    """The teacher's soft labels reach the batch as a column joined by sample id from the label
    file of the row's own frames file (no table in task arguments); a row the table lacks keeps
    only its own labels, and label_sources 'teacher' alone drops those."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workflows.core.store_reader import _transform

    (tmp_path / "labels" / "d" / "s").mkdir(parents=True)
    pq.write_table(pa.table({"sample_id": ["s0"], "soft_labels": [[0.25, 0.5, 0.75]]}),
                   tmp_path / "labels" / "d" / "s" / "v.parquet")
    rows = {k: list(v) for k, v in _rows(n=2).items()}
    rows["path"] = [str(tmp_path / "frames" / "d" / "s" / "v.parquet")] * 2
    spec = InputSpec(image_size=64).to_dict()
    join = {"frames": str(tmp_path / "frames"), "labels": str(tmp_path / "labels"), "source": "soft_labels",
            "column": "soft_labels", "decide": None}
    both = _transform(rows, spec, [1, 2], [1, 2, 4], joins=[join])
    teacher = _transform(rows, spec, [1, 2], [1, 2, 4], joins=[join], human_labels=False)
    np.testing.assert_allclose(both["labels"], [[1, 0.5, 0], [1, -1, 0]])
    np.testing.assert_allclose(teacher["labels"], [[0.25, 0.5, 0.75], [-1, -1, -1]])
    assert both["crop"].dtype == np.uint8 and both["crop"].shape == (2, 64, 64, 3)
