"""Evaluation's switch for serving's smoothing: store rows scored on a local Ray with
``smooth_window`` are each video's raw probabilities smoothed over its own frames in order
(paper 002 §3), the orchestration's option that serving applies; the faces of one photo (or
video) are separate tracks."""

from __future__ import annotations

import os

import numpy as np

from tests.conftest import require_media
from tests.serving_fixtures import make_member


MEMBER = "baseline_resnet18_112"
"""Seeded random weights whose answers vary from face to face (the serving fixtures' seeded
MobileNet answers every input alike, and smoothing a constant would prove nothing)."""


def test_store_scores_smoothed_per_video_as_served(tiny_store, tmp_path) -> None:
    from components.inference import smooth_by_video
    from components.store.splits import frames_files, store_info
    from workflows.core.store_scoring import predict_store_files

    ckpt = make_member(tmp_path / "member", MEMBER)
    files = frames_files(tiny_store["store"])
    steps = list(store_info(tiny_store["store"])["diff_steps"])
    raw = predict_store_files(files, ckpt, "checkpoint", steps, actor_cpus=0.5)
    smooth = predict_store_files(files, ckpt, "checkpoint", steps, actor_cpus=0.5, smooth_window=5)
    assert (raw["sample_id"] == smooth["sample_id"]).all() and len(raw["sample_id"]) > 32
    videos = {(s, v) for s, v in zip(raw["subject"], raw["video"])}
    assert len(videos) >= 2  # several videos, so grouping matters
    assert raw["probs"].std(0).max() > 1e-3  # the raw answers move from frame to frame
    np.testing.assert_allclose(smooth["probs"], smooth_by_video(raw["probs"], raw, raw["frame_order"], 5),
                               atol=1e-6)
    assert np.abs(smooth["probs"] - raw["probs"]).max() > 1e-4
    # Members' own columns stay raw; only the ensemble answer is smoothed.
    name = [k for k in raw if k.startswith("member:")][0]
    np.testing.assert_array_equal(smooth[name], raw[name])
    # By hand for one video's middle frame: the mean of the 5 raw values centred on it.
    s, v = sorted(videos)[0]
    rows = np.flatnonzero((raw["subject"] == s) & (raw["video"] == v))
    rows = rows[np.argsort(raw["frame_order"][rows])]
    k = len(rows) // 2
    np.testing.assert_allclose(smooth["probs"][rows[k]], raw["probs"][rows[k - 2:k + 3]].mean(0), atol=1e-6)


def test_the_faces_of_one_photo_are_separate_tracks_never_smoothed_together(ray_local, tmp_path) -> None:
    """A media store of multi_face.jpg (``face.policy=all``) holds its faces in one 'video' (the photo). Each is its
    own face track (``components.video_key``): read back, the rows make one track per face, and
    smoothing leaves every face's answer as it is (a one-frame track), where mixing them would
    average different people's answers."""
    import pyarrow.dataset as pads

    from components.faces.pipeline import FacePipelineConfig
    from components.store.splits import frames_files, store_info
    from components.store.tracks import store_tracks
    from workflows.core.store_scoring import predict_store_files
    from workflows.preprocess import PreprocessConfig, run_preprocess

    media = require_media("multi_face.jpg")
    root = tmp_path / "photos"
    root.mkdir()
    os.symlink(media / "multi_face.jpg", root / "multi_face.jpg")
    store = tmp_path / "store"
    run_preprocess(PreprocessConfig(dataset="media", root=str(root), out=str(store), actor_cpus=0.5, log_every_s=0,
                                    face=FacePipelineConfig(policy="all")))
    rows = pads.dataset(str(store / "frames"), format="parquet").to_table(
        columns=["sample_id", "dataset", "subject", "video", "face_id", "frame_order", "image", "landmarks"]).to_pydict()
    faces = sorted(rows["face_id"])
    assert len(set(rows["video"])) == 1 and len(faces) >= 4 and faces == sorted(set(faces)), faces
    tracks, where = store_tracks(rows)
    assert len(tracks) == len(faces) and all(len(w) == 1 for w in where)

    ckpt = make_member(tmp_path / "member", MEMBER)
    files = frames_files(str(store))
    steps = list(store_info(str(store))["diff_steps"])
    raw = predict_store_files(files, ckpt, "checkpoint", steps, actor_cpus=0.5)
    smooth = predict_store_files(files, ckpt, "checkpoint", steps, actor_cpus=0.5, smooth_window=5)
    assert np.abs(raw["probs"] - raw["probs"].mean(0)).max() > 1e-3  # the faces' answers differ
    np.testing.assert_allclose(smooth["probs"], raw["probs"], atol=1e-6)
