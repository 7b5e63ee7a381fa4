"""Evaluation's switch for serving's smoothing: store rows scored on a local Ray with
``smooth_window`` are each video's raw probabilities smoothed over its own frames in order
(paper 002 §3), the orchestration's option that serving applies."""

from __future__ import annotations

import numpy as np

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
