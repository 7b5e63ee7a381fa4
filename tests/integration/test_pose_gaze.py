"""Head pose, gaze and emotion scores on real faces of ../shared/media (RetinaFace + MediaPipe).

Known motions stand in for ground truth: an in-plane rotation of a still by a known angle is a
known roll; a mirrored still has the opposite yaw and horizontal gaze; in WolfgangLanger_Pexels.mp4
the woman turns her head towards the image right over frames 338-362 (checked on the frames by eye:
the nose moves to the image right), a real head turn, so no warped still is needed for yaw.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.conftest import require_media


def _rgb(name: str) -> np.ndarray:
    from components.au_detector import read_image

    return read_image(require_media(name) / name)


@pytest.fixture(scope="module")
def pipe():
    from components.faces.pipeline import FacePipeline, FacePipelineConfig

    return FacePipeline(FacePipelineConfig(detector="retinaface", landmarker="mediapipe"))


def _info(pipe, rgb: np.ndarray) -> dict:
    from components.inference import face_info

    faces = pipe.process_image(rgb)
    assert faces, "no face found"
    return face_info(faces[0])


def _rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """``rgb`` on a canvas padded by a third of its side (edges repeated), turned about the centre
    by ``degrees`` counter-clockwise in the image (cv2's sign), so the face stays whole."""
    pad = max(rgb.shape[:2]) // 3
    big = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    h, w = big.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_in_plane_rotation_is_roll_with_its_sign(pipe) -> None:
    """Roll > 0 is clockwise in the image, so turning the image counter-clockwise by a lowers roll by a."""
    rgb = _rgb("0-f15-hao-ph.jpg")
    base = _info(pipe, _rotated(rgb, 0.0))["pose"]["roll"]
    for a in (-20, -10, 10, 20):
        roll = _info(pipe, _rotated(rgb, a))["pose"]["roll"]
        assert abs((roll - base) + a) < 3.0, (a, roll, base)


def test_mirror_flips_yaw_and_horizontal_gaze(pipe) -> None:
    """single_face.jpg has a visible yaw (~8 degrees, face to the image left): mirrored, it is the
    opposite. No still of the media looks clearly sideways (|gaze_angle_x| <= 0.06 rad on all), so
    for gaze only the sum's smallness is checked, with a tolerance of 0.06 rad."""
    rgb = _rgb("single_face.jpg")
    orig, mirror = _info(pipe, rgb), _info(pipe, np.ascontiguousarray(rgb[:, ::-1]))
    assert orig["pose"]["yaw"] > 4.0 and mirror["pose"]["yaw"] < -4.0
    assert abs(orig["pose"]["yaw"] + mirror["pose"]["yaw"]) < 2.0
    assert abs(orig["pose"]["roll"] + mirror["pose"]["roll"]) < 2.0
    assert abs(orig["gaze"]["angle_x"] + mirror["gaze"]["angle_x"]) < 0.06


def test_a_head_turn_in_a_video_gives_a_monotone_yaw(pipe) -> None:
    from components.datasets.video_io import iter_video_frames

    name = "WolfgangLanger_Pexels.mp4"
    path = require_media(name) / name
    yaw = []
    for t, rgb in iter_video_frames(path):
        if t > 362:
            break
        if t >= 338 and t % 2 == 0:
            yaw.append(_info(pipe, rgb)["pose"]["yaw"])
    steps = np.diff(yaw)
    assert yaw[0] - yaw[-1] > 5.0, yaw  # turns towards the image right: yaw falls
    assert steps.max() < 0.5, yaw  # and never turns back by more than tracking noise


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    from components.au_detector import Detector

    mp = pytest.MonkeyPatch()
    mp.setenv("FACSFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield Detector.pretrained()
    mp.undo()


def test_builtin_table_and_answers_carry_pose_gaze_and_emotions(builtin) -> None:
    from components.au_detector import POSE_COLUMNS, openface_columns
    from components.emotion import EMOTION_PROTOTYPES

    media = require_media("0-f15-hao-ph.jpg")
    df = builtin.predict_image(media / "0-f15-hao-ph.jpg")
    assert list(df.columns) == openface_columns(builtin.aus, builtin.has_intensity)
    emotions = [f"emotion_{e}" for e in EMOTION_PROTOTYPES]
    assert set(POSE_COLUMNS + emotions) <= set(df.columns)
    row = df.iloc[0]
    assert np.isfinite(row[POSE_COLUMNS].to_numpy(float)).all()
    assert abs(row["pose_Rz"]) < np.radians(10) and abs(row["pose_Ry"]) < np.radians(10)  # a frontal portrait
    assert row[emotions].astype(float).idxmax() == "emotion_happiness"  # the posed happy face
    face = builtin.predictor.predict_image(_rgb("0-f15-hao-ph.jpg"))[0]
    assert set(face["pose"]) == {"pitch", "yaw", "roll"} and set(face["gaze"]) == {"angle_x", "angle_y"}
    assert set(face["emotions"]) == set(EMOTION_PROTOTYPES)
    np.testing.assert_allclose(np.radians(face["pose"]["roll"]), row["pose_Rz"], atol=1e-6)
    json.dumps(face, allow_nan=False)  # answers stay strict JSON
    none = builtin.predict_image(require_media("free-mountain-vector-01.jpg") / "free-mountain-vector-01.jpg")
    assert none.loc[0, "success"] == 0 and none[POSE_COLUMNS + emotions].isna().all(axis=None)
