"""The face pipeline on real photographs and videos from ../shared/media (see NOTICE.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from components.faces import (
    FacePipeline,
    FacePipelineConfig,
    FaceTracker,
    build_detector,
    build_landmarker,
    crop_template,
)
from components.geometry import STABLE_POINTS
from tests.conftest import require_media


ONE_FACE = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


@pytest.fixture(scope="module")
def detectors():
    return {"dlib": build_detector("dlib"), "mtcnn": build_detector("mtcnn")}


@pytest.fixture(scope="module")
def dlib_landmarks():
    return build_landmarker("dlib")


def _rgb(name: str) -> np.ndarray:
    path = require_media(name) / name
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"unreadable image {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _frames(name: str, every: int = 1, limit: int | None = None) -> list[np.ndarray]:
    path: Path = require_media(name) / name
    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while limit is None or len(out) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    assert out, f"no frames read from {path}"
    return out


@pytest.mark.parametrize("name", ONE_FACE)
@pytest.mark.parametrize("backend", ["dlib", "mtcnn"])
def test_one_face_in_single_face_photos(detectors, backend, name):
    faces = detectors[backend].detect(_rgb(name))
    assert len(faces) == 1
    assert faces[0].landmarks is None and faces[0].area > 100 * 100


def test_mtcnn_finds_all_five_faces_in_group_photo(detectors):
    assert len(detectors["mtcnn"].detect(_rgb("multi_face.jpg"))) == 5


def test_dlib_finds_at_least_four_faces_in_group_photo(detectors):
    # The HOG detector misses the fifth, smallest face at the top left (about 80x110 px)
    # even with one upsampling; MTCNN finds it.
    faces = detectors["dlib"].detect(_rgb("multi_face.jpg"))
    assert len(faces) >= 4
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)


@pytest.mark.parametrize("backend", ["dlib", "mtcnn"])
def test_no_face_in_landscape_drawing(detectors, backend):
    assert detectors[backend].detect(_rgb("free-mountain-vector-01.jpg")) == []


def test_no_face_in_animation_video(detectors, dlib_landmarks):
    pipe = FacePipeline(FacePipelineConfig(), detector=detectors["dlib"], landmarker=dlib_landmarks)
    frames = _frames("no_face.mp4", every=12)
    assert len(frames) >= 8
    assert all(pipe.process_image(f) == [] for f in frames)


def test_dlib_landmarks_follow_face_anatomy(detectors, dlib_landmarks):
    rgb = _rgb("0-f15-hao-ph.jpg")
    face = detectors["dlib"].detect(rgb)[0]
    lm = dlib_landmarks.fit(rgb, face.box[None])[0]
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # eye corners left to right
    assert lm[27, 1] < lm[30, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]  # brow-nose-mouth-chin
    x0, y0, x1, y1 = face.box
    assert (x0 - 20 < lm[:, 0]).all() and (lm[:, 0] < x1 + 20).all() and (lm[:, 1] < y1 + 40).all()


@pytest.mark.parametrize("backend", ["dlib", "mtcnn"])
def test_pipeline_aligns_stable_points_near_template(detectors, dlib_landmarks, backend):
    pipe = FacePipeline(FacePipelineConfig(detector=backend), detector=detectors[backend],
                        landmarker=dlib_landmarks)
    (res,) = pipe.process_image(_rgb("single_face.jpg"))
    assert res.aligned.crop.shape == (112, 112, 3)
    idx = list(STABLE_POINTS)
    err = np.linalg.norm(res.aligned.landmarks[idx] - crop_template(112, 0.25)[idx], axis=1)
    assert err.mean() < 3.0  # pixels in a 112 crop whose eyes are ~45 px apart


def test_prealigned_crop_gets_the_same_landmarks(detectors, dlib_landmarks):
    pipe = FacePipeline(FacePipelineConfig(), detector=detectors["dlib"], landmarker=dlib_landmarks)
    (res,) = pipe.process_image(_rgb("0-f1-su-ph.jpg"))
    (pre,) = pipe.prealigned(res.aligned.crop)
    np.testing.assert_array_equal(pre.aligned.crop, res.aligned.crop)
    assert np.abs(pre.aligned.landmarks - res.aligned.landmarks).mean() < 1.5


def test_tracking_keeps_one_face_with_landmarks_on_every_frame(detectors, dlib_landmarks):
    frames = _frames("WolfgangLanger_Pexels.mp4", limit=120)
    tracker = FaceTracker(detectors["dlib"], dlib_landmarks, detect_every=6, policy="tracked")
    per_frame = [tracker.step(f, i) for i, f in enumerate(frames)]
    assert [len(p) for p in per_frame] == [1] * 120
    assert {p[0].face_id for p in per_frame} == {0}
    assert tracker.detections == 20  # every 6th frame, no re-detection after a lost track
    assert [p[0].tracked for p in per_frame[:7]] == [False] + [True] * 5 + [False]
    lms = np.stack([p[0].landmarks for p in per_frame])
    iod = np.linalg.norm(lms[:, 36] - lms[:, 45], axis=1)
    assert (iod > 40).all()  # a ~220 px face
    step = np.linalg.norm(np.diff(lms[:, list(STABLE_POINTS)], axis=0), axis=2).mean(1) / iod[1:]
    assert step.max() < 0.2  # no jump to another face or a lost fit


def test_chunked_tracking_matches_whole_video_after_first_detection(detectors, dlib_landmarks):
    """A worker that starts mid-video agrees with a whole-video run from its first detection frame."""
    frames = _frames("WolfgangLanger_Pexels.mp4", limit=40)
    whole = FaceTracker(detectors["dlib"], dlib_landmarks, detect_every=6)
    full = [whole.step(f, i) for i, f in enumerate(frames)]
    chunk = FaceTracker(detectors["dlib"], dlib_landmarks, detect_every=6)
    part = {i: chunk.step(frames[i], i) for i in range(21, 40)}
    for i in range(24, 40):  # 24 is the first multiple of 6 in the chunk
        np.testing.assert_array_equal(part[i][0].landmarks, full[i][0].landmarks)
    assert not np.array_equal(part[21][0].landmarks, full[21][0].landmarks)


def test_all_policy_keeps_ids_for_five_faces(detectors, dlib_landmarks):
    """A pan over the group photo: each face keeps its id across detections and tracked frames."""
    rgb = _rgb("multi_face.jpg")
    frames = [np.ascontiguousarray(np.roll(rgb, 3 * i, axis=1)) for i in range(8)]
    tracker = FaceTracker(detectors["mtcnn"], dlib_landmarks, detect_every=4, policy="all")
    per_frame = [tracker.step(f, i) for i, f in enumerate(frames)]
    assert [len(p) for p in per_frame] == [5] * 8
    first = {f.face_id: f.box for f in per_frame[0]}
    assert sorted(first) == [0, 1, 2, 3, 4]
    for i, faces in enumerate(per_frame):
        for f in faces:  # each id moved with the pan, 3 px per frame
            assert f.box[0] - first[f.face_id][0] == pytest.approx(3 * i, abs=6)
