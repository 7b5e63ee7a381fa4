"""The batched input path (``components.faces.batched``, ``components.batches.model_batch``)
against the per-sample reference (``components.faces.transforms.model_input``) and the
augmentation's declared distribution (``AugmentConfig``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.batches import AugmentConfig, model_batch
from components.faces.batched import augment_batch, draw_augment, hull_mask_batch, model_input_batch, upsize_batch
from components.faces.transforms import background_mask, model_input
from components.geometry import TEMPLATE_68
from components.models.base import InputSpec

NUMERIC_TOLERANCE = 1e-4
"""Max abs difference on normalised inputs, measured 3e-6 (Sobel's float summation order);
resize, gray (OpenCV's fixed-point luma) and normalisation agree exactly."""
WARP_TOLERANCE = 0.02
"""Max abs difference in [0, 255] between the separable warp and ``grid_sample``: float rounding of
two blends against one four-corner sum, measured 0.005 at 224 px."""
UPSIZE_PIXEL_FRACTION = 0.15
"""Share of upsized pixels that may differ by one level from OpenCV's INTER_LINEAR resize."""
MASK_PIXEL_FRACTION = 0.005
"""Share of mask pixels that may differ from OpenCV's fillConvexPoly: its boundary is its line
algorithm's, here the half-planes' at pixel centres half a pixel out; measured 0.13 %."""


def _faces(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = np.stack([cv2.GaussianBlur((rng.random((size, size, 3)) * 255).astype(np.uint8), (7, 7), 2)
                      for _ in range(n)])
    t = np.asarray(TEMPLATE_68, np.float32)
    lms = np.stack([(t - t.mean(0)) * size * rng.uniform(0.6, 0.9) + size / 2 + rng.normal(0, 1.5, (68, 2))
                    for _ in range(n)]).astype(np.float32)
    return crops, lms


@pytest.mark.parametrize("size", [112, 224])
@pytest.mark.parametrize("channels", ["rgb", "gray", "gray+sobel"])
def test_deterministic_transform_equals_model_input(size: int, channels: str) -> None:
    crops, lms = _faces(16, size)
    spec = InputSpec(image_size=size, channels=channels)
    ref = np.stack([model_input(c, lm, spec) for c, lm in zip(crops, lms)])
    new = model_input_batch(torch.from_numpy(crops).permute(0, 3, 1, 2), torch.from_numpy(lms), spec).numpy()
    assert np.abs(ref - new).max() <= NUMERIC_TOLERANCE


def test_mask_matches_the_reference_but_for_boundary_pixels() -> None:
    crops, lms = _faces(32, 112, seed=1)
    ref = np.stack([background_mask(112, lm) for lm in lms])
    new = hull_mask_batch(torch.from_numpy(lms), 112).numpy()
    assert (ref != new).mean() <= MASK_PIXEL_FRACTION
    assert 0.3 < new.mean() < 0.9
    # Points in any order and inner points off the hull give the same mask (random landmarks).
    rand = np.random.default_rng(2).uniform(20, 90, size=(4, 68, 2)).astype(np.float32)
    ref = np.stack([background_mask(112, lm) for lm in rand])
    assert (ref != hull_mask_batch(torch.from_numpy(rand), 112).numpy()).mean() <= MASK_PIXEL_FRACTION


def test_augmentation_statistics_follow_the_config() -> None:
    cfg = AugmentConfig(crop_jitter=0.06, scale_jitter=0.06, brightness=0.2, contrast=0.2)
    n, size = 20000, 112
    d = draw_augment(n, size, cfg, torch.Generator().manual_seed(0))
    for values, half, centre in ((d.scale, cfg.scale_jitter, 1.0), (d.tx / size, cfg.crop_jitter, 0.0),
                                 (d.ty / size, cfg.crop_jitter, 0.0), (d.brightness, cfg.brightness, 1.0),
                                 (d.contrast, cfg.contrast, 1.0)):
        v = values.numpy()
        assert abs(v.mean() - centre) < 0.02 * half * 5
        assert centre - half <= v.min() < centre - 0.95 * half and centre + 0.95 * half < v.max() <= centre + half
        assert abs(v.std() - half / np.sqrt(3)) < 0.03 * half       # uniform on [-half, half]
    assert abs(d.flip.float().mean().item() - 0.5) < 0.02
    assert not draw_augment(100, size, AugmentConfig(flip=False)).flip.any()


def _warped_grid(d, size: int) -> torch.Tensor:
    """``grid_sample``'s normalised grid (align_corners False) of a ``size`` crop's pixel centres
    zoomed, shifted and flipped by the draws ``d``: the reference the warp is checked against."""
    s, c = size, (size - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    xs = torch.where(d.flip.view(-1, 1, 1), (s - 1) - xs, xs)
    gx = (xs - c - d.tx.view(-1, 1, 1)) / d.scale.view(-1, 1, 1) + c
    gy = (ys - c - d.ty.view(-1, 1, 1)) / d.scale.view(-1, 1, 1) + c
    return torch.stack([(2.0 * gx + 1.0) / s - 1.0, (2.0 * gy + 1.0) / s - 1.0], dim=-1)


@pytest.mark.parametrize("size", [31, 112, 224])
def test_separable_warp_equals_one_grid_sample(size: int) -> None:
    """The two 1-D passes sample what one bilinear ``grid_sample`` (reflection, align_corners
    False) over the zoomed, shifted, flipped pixel centres samples, borders included."""
    crops, lms = _faces(16, size, seed=3)
    cfg = AugmentConfig(crop_jitter=0.2, scale_jitter=0.3, brightness=0.0, contrast=0.0)
    d = draw_augment(16, size, cfg, torch.Generator().manual_seed(4))
    out, _ = augment_batch(torch.from_numpy(crops).permute(0, 3, 1, 2), torch.from_numpy(lms), d)
    grid = _warped_grid(d, size)
    ref = torch.nn.functional.grid_sample(torch.from_numpy(crops).permute(0, 3, 1, 2).float(), grid,
                                          mode="bilinear", padding_mode="reflection", align_corners=False)
    assert (out - ref).abs().max().item() <= WARP_TOLERANCE


FOLD_MEAN_LEVELS = 1.0
"""Mean abs difference in [0, 255] between the warp reading a small crop as grown to the model's
size (one bilinear resampling) and growing it first (``upsize_batch``, rounded to levels) then
warping (two): the second interpolation's blur and the rounding; measured 0.26 at 112 → 224 and
0.29 at 112 → 160 (max 2.7 / 3.3) on the blurred noise of ``_faces``."""


@pytest.mark.parametrize("small,size", [(112, 224), (112, 160)])
def test_warp_of_a_smaller_crop_is_one_resampling_at_the_model_size(small: int, size: int) -> None:
    """Training reads 112 px crop-cache rows for a 224 px model: ``augment_batch(..., size)``
    samples the small crop where the upsized crop's warped pixel centres fall, (v + 0.5) small /
    size - 0.5: one ``grid_sample`` of the small crop over the warped grid (zoomed in and shifted
    little, so no position needs the reflection, which the same-size test covers)."""
    crops, lms = _faces(8, small, seed=6)
    big_lms = (torch.from_numpy(lms) + 0.5) * (size / small) - 0.5
    d = draw_augment(8, size, AugmentConfig(crop_jitter=0.02, scale_jitter=0.0, brightness=0.0, contrast=0.0),
                     torch.Generator().manual_seed(7))
    d.scale = torch.linspace(1.1, 1.3, 8)
    out, moved = augment_batch(torch.from_numpy(crops).permute(0, 3, 1, 2), big_lms, d, size)
    out = out.clone()   # a work buffer: the next call writes it
    assert out.shape == (8, 3, size, size)
    grid = _warped_grid(d, size)
    ref = torch.nn.functional.grid_sample(torch.from_numpy(crops).permute(0, 3, 1, 2).float(), grid,
                                          mode="bilinear", padding_mode="border", align_corners=False)
    assert (out - ref).abs().max().item() <= WARP_TOLERANCE
    # The same picture and landmarks as growing the crop first and warping that (two resamplings).
    grown = upsize_batch(torch.from_numpy(crops), size).clone().permute(0, 3, 1, 2)
    two, moved_two = augment_batch(grown, big_lms, d)
    assert torch.equal(moved, moved_two)
    assert (out - two).abs().mean().item() <= FOLD_MEAN_LEVELS
    # No jitter: exactly the upsized crop (up to its rounding to levels).
    one = torch.ones(8)
    d.scale, d.tx, d.ty, d.flip = one, 0 * one, 0 * one, torch.zeros(8, dtype=torch.bool)
    still, _ = augment_batch(torch.from_numpy(crops).permute(0, 3, 1, 2), big_lms, d, size)
    assert (still - grown.float()).abs().max().item() <= 0.5 + 1e-3


@pytest.mark.parametrize("small,size", [(112, 224), (56, 112), (112, 160)])
def test_upsize_is_opencvs_linear_resize(small: int, size: int) -> None:
    crops, _ = _faces(8, small, seed=5)
    ref = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])
    new = upsize_batch(torch.from_numpy(crops), size).numpy()
    diff = np.abs(ref.astype(int) - new.astype(int))
    # OpenCV's fixed-point arithmetic rounds some pixels one level the other way (measured 6 % at
    # 2x, 12 % at 112 → 160).
    assert diff.max() <= 1 and (diff > 0).mean() < UPSIZE_PIXEL_FRACTION


def test_augmentation_moves_landmarks_with_the_pixels_and_flip_swaps_them() -> None:
    size = 64
    img = torch.zeros(2, 3, size, size)
    img[:, :, 20, 10] = 255.0                                           # one bright pixel at (x=10, y=20)
    lms = torch.zeros(2, 68, 2)
    lms[:, 36] = torch.tensor([10.0, 20.0])
    one = torch.ones(2)
    d = draw_augment(2, size, AugmentConfig(), None)
    d.scale, d.tx, d.ty = torch.tensor([1.0, 1.25]), torch.tensor([3.0, -2.0]), torch.tensor([0.0, 4.0])
    d.flip, d.brightness, d.contrast = torch.tensor([False, True]), one, one
    out, moved = augment_batch(img, lms, d)
    for i in range(2):
        peak = divmod(int(out[i, 0].argmax()), size)
        # The bright pixel lands where its landmark went; a flipped one under its mirror partner 45.
        x, y = moved[i, 45 if d.flip[i] else 36].tolist()
        assert abs(peak[1] - x) <= 1 and abs(peak[0] - y) <= 1
    assert LEFT_RIGHT_LANDMARK_PERMUTATION[45] == 36


def test_model_batch_zooms_all_motion_and_mirrors_flipped_rows_only() -> None:
    crops, lms = _faces(64, 32)
    diffs = torch.zeros(64, 1, 68, 2)
    diffs[:, 0, 48] = torch.tensor([3.0, -2.0])
    batch = {"crop": torch.from_numpy(crops), "landmarks": torch.from_numpy(lms), "crop_scale": torch.ones(64),
             "landmark_diff": diffs}
    out = model_batch(batch, InputSpec(image_size=32), AugmentConfig(), torch.Generator().manual_seed(1))
    # model_batch draws first from its generator: the same seed gives its zooms and flips.
    draw = draw_augment(64, 32, AugmentConfig(), torch.Generator().manual_seed(1))
    flipped, zoom = draw.flip, draw.scale
    assert 10 < int(flipped.sum()) < 54 and float(zoom.std()) > 0.01
    moved = out["landmark_diff"][:, 0]
    # A zoom by z moves two points' difference by z; a flip puts point 48's motion on 54, x negated.
    torch.testing.assert_close(moved[~flipped, 48], torch.tensor([3.0, -2.0]) * zoom[~flipped, None])
    torch.testing.assert_close(moved[flipped, 54], torch.tensor([-3.0, -2.0]) * zoom[flipped, None])
    assert not moved[flipped, 48].any() and not moved[~flipped, 54].any()
    assert out["image"].shape == (64, 3, 32, 32)
