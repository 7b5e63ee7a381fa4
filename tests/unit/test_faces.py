"""Unit tests of the Ray-free face geometry and model-input transforms (no media, no models
except the FAN offline-failure check)."""

from __future__ import annotations

import numpy as np
import pytest

from components.configuration import ConfigError, from_dict
from components.faces import (
    TEMPLATE_68,
    Face,
    align_face,
    background_mask,
    box_iou,
    build_detector,
    build_landmarker,
    crop_template,
    hflip_sample,
    landmark_diffs,
    model_input,
    similarity_transform,
    sobel_magnitude,
    to_gray,
    transform_points,
)
from components.faces.pipeline import FacePipelineConfig
from components.models.base import InputSpec



# ----------------------------------------------------------------------------- alignment
def test_similarity_transform_recovers_rotation_scale_translation():
    # 90 degrees counter-clockwise (in x-right, y-down pixels), scale 2, shift (3, -1).
    src = np.array([[0, 0], [1, 0], [0, 1], [2, 3]], dtype=np.float32)
    dst = np.array([[3, -1], [3, 1], [1, -1], [-3, 3]], dtype=np.float32)
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m, [[0, -2, 3], [2, 0, -1]], atol=1e-5)
    np.testing.assert_allclose(transform_points(src, m), dst, atol=1e-5)


def test_similarity_transform_never_reflects():
    src = np.array([[0, 0], [4, 0], [0, 2], [1, 3]], dtype=np.float32)
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # best proper rotation, not the mirror


def test_similarity_transform_rejects_coincident_points():
    with pytest.raises(ValueError, match="identical"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def test_template_is_unit_square_and_left_right_symmetric():
    assert TEMPLATE_68.shape == (68, 2)
    np.testing.assert_allclose(TEMPLATE_68.min(0), [0, 0], atol=1e-4)
    np.testing.assert_allclose(TEMPLATE_68.max(0), [1, 1], atol=1e-4)
    # outer eye corners mirror each other about x = 0.5; the chin is on the axis
    assert TEMPLATE_68[36, 0] + TEMPLATE_68[45, 0] == pytest.approx(1.0, abs=1e-4)
    assert TEMPLATE_68[8].tolist() == pytest.approx([0.5, 1.0])


def test_crop_template_literal_positions():
    t = crop_template(112, 0.25)
    # chin (0.5, 1.0): x = 0.75 / 1.5 * 112 - 0.5, y = 1.25 / 1.5 * 112 - 0.5
    assert t[8].tolist() == pytest.approx([55.5, 92.8333], abs=1e-3)


def test_align_face_puts_template_landmarks_on_template_positions():
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    landmarks = TEMPLATE_68 * 200 + np.array([50, 30], dtype=np.float32)
    nose = np.round(landmarks[30]).astype(int)
    image[nose[1] - 2 : nose[1] + 3, nose[0] - 2 : nose[0] + 3] = 255
    out = align_face(image, landmarks, size=112, margin=0.25)
    assert out.crop.shape == (112, 112, 3) and out.crop.dtype == np.uint8
    np.testing.assert_allclose(out.landmarks, crop_template(112, 0.25), atol=1e-3)
    # scale 112 / 1.5 / 200 = 0.37333, no rotation
    np.testing.assert_allclose(out.matrix[:, :2], [[0.37333, 0], [0, 0.37333]], atol=1e-4)
    # the white nose-tip mark lands at the template nose tip in the crop
    cx, cy = np.round(crop_template(112, 0.25)[30]).astype(int)
    assert out.crop[cy, cx, 0] > 100
    assert out.crop[5, 5, 0] == 0


def test_align_face_rejects_bad_landmarks():
    with pytest.raises(ValueError, match="landmarks"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros((5, 2)))


# ----------------------------------------------------------------------------- transforms
def _ramp_sequence() -> np.ndarray:
    """4 frames; every landmark of frame t sits at (t^2, 10 t)."""
    xs = np.array([0, 1, 4, 9], dtype=np.float32)
    ys = np.array([0, 10, 20, 30], dtype=np.float32)
    return np.broadcast_to(np.stack([xs, ys], 1)[:, None, :], (4, 68, 2)).copy()


def test_landmark_diffs_step_one_with_clamped_edges():
    diffs, valid = landmark_diffs(_ramp_sequence(), [1])
    assert diffs.shape == (4, 1, 68, 2) and valid.shape == (4, 1)
    # t=0: l1-l0 (clamped), t=1: l2-l0, t=2: l3-l1, t=3: l3-l2 (clamped)
    np.testing.assert_array_equal(diffs[:, 0, 17], [[1, 10], [4, 20], [8, 20], [5, 10]])
    np.testing.assert_array_equal(valid[:, 0], [False, True, True, False])


def test_landmark_diffs_step_two_is_invalid_everywhere_in_four_frames():
    diffs, valid = landmark_diffs(_ramp_sequence(), [1, 2])
    np.testing.assert_array_equal(diffs[:, 1, 0], [[4, 20], [9, 30], [9, 30], [8, 20]])
    assert not valid[:, 1].any()


def test_landmark_diffs_rejects_bad_input():
    with pytest.raises(ValueError, match="steps"):
        landmark_diffs(_ramp_sequence(), [0])
    with pytest.raises(ValueError, match="T, 68, 2"):
        landmark_diffs(np.zeros((4, 5, 2)), [1])


def test_background_mask_keeps_forehead_and_drops_corners():
    lm = crop_template(112, 0.25)
    mask = background_mask(112, lm)
    assert mask.shape == (112, 112) and mask.dtype == bool
    brow_y = lm[17:27, 1].min()  # about 18 px from the top
    assert mask[int(brow_y) - 10, 56]  # forehead above the brows
    assert mask[5, 56]  # forehead reaches the top of a crop with margin 0.25
    assert mask[int(lm[30, 1]), int(lm[30, 0])]  # nose tip
    for y, x in [(0, 0), (0, 111), (111, 0), (111, 111)]:
        assert not mask[y, x]
    assert not mask[108, 56]  # below the chin (y 92.8)


def test_hflip_twice_is_identity_and_swaps_eye_corners():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    lm = crop_template(112, 0.25) + rng.normal(0, 2, (68, 2)).astype(np.float32)
    f_crop, f_lm = hflip_sample(crop, lm)
    # index 36 (image-left outer eye corner) now holds the mirrored 45 and vice versa
    assert f_lm[36].tolist() == pytest.approx([111 - lm[45, 0], lm[45, 1]])
    assert f_lm[45].tolist() == pytest.approx([111 - lm[36, 0], lm[36, 1]])
    np.testing.assert_array_equal(f_crop[:, 0], crop[:, 111])
    b_crop, b_lm = hflip_sample(f_crop, f_lm)
    np.testing.assert_array_equal(b_crop, crop)
    np.testing.assert_allclose(b_lm, lm, atol=1e-5)


def test_hflip_of_symmetric_template_is_the_template():
    lm = crop_template(112, 0.25)
    np.testing.assert_allclose(hflip_sample(np.zeros((112, 112, 3), np.uint8), lm)[1], lm, atol=1e-3)


def test_sobel_step_edge_has_its_maximum_on_the_edge():
    gray = np.zeros((20, 20), dtype=np.float32)
    gray[:, 10:] = 1.0
    mag = sobel_magnitude(gray)
    assert mag.max() == pytest.approx(1.0)
    assert set(np.unique(np.argmax(mag, axis=1))) <= {9, 10}
    assert mag[:, :8].max() == 0 and mag[:, 12:].max() == 0
    assert sobel_magnitude(np.full((8, 8), 0.3, np.float32)).max() == 0


def test_to_gray_range():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = 255
    g = to_gray(img)
    assert g.dtype == np.float32 and g[0, 0] == pytest.approx(1.0) and g[1, 1] == 0


@pytest.mark.parametrize(
    "spec, channels",
    [
        (InputSpec(channels="rgb"), 3),
        (InputSpec(channels="gray"), 1),
        (InputSpec(channels="gray+sobel", mask=True), 2),
        (InputSpec(image_size=64, channels="rgb", mask=True), 3),
        (InputSpec(image_size=224, channels="gray+sobel"), 2),
    ],
)
def test_model_input_shapes_and_channels(spec, channels):
    crop = np.full((112, 112, 3), 200, dtype=np.uint8)
    x = model_input(crop, crop_template(112, 0.25), spec)
    s = spec.image_size
    assert x.shape == (channels, s, s) and x.dtype == np.float32
    centre = x[:, s // 2, s // 2]
    if spec.channels == "rgb":
        np.testing.assert_allclose(centre, (200 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), atol=1e-4)
    else:
        assert centre[0] == pytest.approx(200 / 255 * 2 - 1, abs=1e-4)
    if spec.mask:  # background is black before normalisation
        expected = -0.485 / 0.229 if spec.channels == "rgb" else -1.0
        assert x[0, 0, 0] == pytest.approx(expected, abs=1e-4)


def test_model_input_rejects_non_square_crop():
    with pytest.raises(ValueError, match="square"):
        model_input(np.zeros((100, 112, 3), np.uint8), crop_template(112), InputSpec())


# ----------------------------------------------------------------------------- types, factories, config
def test_face_validates_landmarks_and_area():
    f = Face(box=[10, 20, 30, 60], score=1)
    assert f.area == 800 and f.box.dtype == np.float32
    with pytest.raises(ValueError, match="68, 2"):
        Face(box=[0, 0, 1, 1], score=0, landmarks=np.zeros((5, 2)))
    assert box_iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(1 / 3)


def test_factories_name_known_backends():
    with pytest.raises(KeyError, match=r"\['dlib', 'mtcnn', 'retinaface'\]"):
        build_detector("retina")
    with pytest.raises(KeyError, match=r"\['dlib', 'fan', 'mediapipe'\]"):
        build_landmarker("pfld")


def test_detector_rejects_bad_image():
    det = build_detector("dlib")
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        det.detect(np.zeros((10, 10), np.uint8))


def test_pipeline_config_checks_and_yaml_round_trip():
    cfg = from_dict(FacePipelineConfig, {"detector": "mtcnn", "mtcnn_thresholds": [0.5, 0.6, 0.7]})
    assert cfg.mtcnn_thresholds == (0.5, 0.6, 0.7)
    assert cfg.detector_options()["thresholds"] == (0.5, 0.6, 0.7)
    with pytest.raises(ConfigError, match="detect_every"):
        from_dict(FacePipelineConfig, {"detect_every": 0})
    with pytest.raises(ConfigError, match="policy"):
        from_dict(FacePipelineConfig, {"policy": "biggest"})


def test_fan_without_cached_weights_says_which_cache_to_seed(tmp_path, monkeypatch):
    """No network and an empty torch hub cache: a RuntimeError naming the file to pre-seed."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Point downloads at a closed local port so this never fetches weights, network or not.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(RuntimeError) as err:
        build_landmarker("fan", device="cpu")
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert "2DFAN4-11f355bf06.pth.tar" in msg
    assert "face_alignment.FaceAlignment(" in msg
