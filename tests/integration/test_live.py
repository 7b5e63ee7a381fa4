"""``facsflow live`` from a file source: the rows ``predict`` gives on the same frames, and frames
dropped (counted, never queued) when answering falls behind a file played at its own rate."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_media


@pytest.fixture(scope="module")
def detector():
    """The built-in as ``predict`` runs it, with the face fields live defaults to (detection
    every 12 frames on a half-size frame, where predict's plan detects every 6 at full size)."""
    from components.au_detector import Detector
    from workflows.live import LiveConfig

    return Detector.pretrained(smooth_window=1, faces=LiveConfig().faces())


def test_live_rows_match_predict_on_the_same_frames(tmp_path, detector):
    """Smoothing off on both sides, no frame dropped: the built-in needs no video context, so
    live's causal answers (with its default face fields, no flag) are predict's on the same face
    fields, row for row (same tracking, same members)."""
    from workflows.live import main

    video = require_media("single_face.mp4") / "single_face.mp4"
    out = tmp_path / "rows.csv"
    assert main(["--source", str(video), "--no-realtime", "--smooth-window", "1", "--out", str(out)]) == 0
    live = pd.read_csv(out)
    batch = detector.predict_video(video)
    assert len(live) == len(batch) == 72 and (live["success"] == 1).all()
    assert (live["frame"].to_numpy() == batch["frame"].to_numpy()).all()
    assert (live["face_id"].to_numpy() == batch["face_id"].to_numpy()).all()
    for prefix in ("x_", "y_"):
        cols = [c for c in batch.columns if c.startswith(prefix)]
        np.testing.assert_allclose(live[cols].to_numpy(), batch[cols].to_numpy(), atol=0.011)  # CSV rounds to 0.01
    probs = [c for c in batch.columns if c.endswith("_p")]
    np.testing.assert_allclose(live[probs].to_numpy(), batch[probs].to_numpy(), atol=1e-5)


def test_live_causal_smoothing_is_a_trailing_mean(detector):
    """With a window, each answer is the mean of the face's last answers (never a later one)."""
    from components.datasets.video_io import iter_video_frames
    from components.live import LiveSession

    video = require_media("single_face.mp4") / "single_face.mp4"
    frames = [rgb for _, rgb in iter_video_frames(video)][:12]
    raw_session, smooth_session = LiveSession.of(detector.predictor, 1), LiveSession.of(detector.predictor, 5)
    raw = [raw_session.push(f, i)[0] for i, f in enumerate(frames)]
    smooth = [smooth_session.push(f, i)[0] for i, f in enumerate(frames)]
    for t in (0, 3, 11):
        for au, p in smooth[t]["probs"].items():
            expected = np.mean([raw[k]["probs"][au] for k in range(max(0, t - 4), t + 1)])
            assert p == pytest.approx(expected, abs=1e-6)
            assert smooth[t]["raw_probs"][au] == pytest.approx(raw[t]["probs"][au], abs=1e-6)


def test_live_counts_frames_dropped_behind_a_realtime_file(tmp_path):
    """A file played at its own fps with an answerer slower than it: frames are dropped and
    counted (answered + dropped = captured), and every answered frame is a fresh one."""
    from workflows.live import LiveConfig, run_live

    video = require_media("single_face.mp4") / "single_face.mp4"
    frames: list[int] = []

    def slow(rows: list[dict]) -> None:
        frames.append(rows[0]["frame"])
        time.sleep(0.1)  # a consumer at under 10 frames/s behind a 30 frames/s file

    res = run_live(LiveConfig(source=str(video), out=str(tmp_path / "rows.parquet"), realtime=True,
                              smooth_window=1), on_rows=slow)
    assert res["captured"] == 72
    assert res["dropped"] > 20 and res["answered"] + res["dropped"] == res["captured"]
    assert frames == sorted(set(frames)) and len(frames) == res["answered"]
    assert len(pd.read_parquet(tmp_path / "rows.parquet")) == res["rows"] == res["answered"]


def test_live_finds_a_face_again_on_the_frame_it_comes_back(detector):
    """Between detections live follows the face from its landmarks; when the face goes (frames
    without one) and comes back between two detection frames, the lost track is noticed at once
    and the face is detected again on the first frame it is back, not at the next detection."""
    from components.datasets.video_io import iter_video_frames
    from components.live import LiveSession

    media = require_media("single_face.mp4", "no_face.mp4")
    face = [rgb for _, rgb in iter_video_frames(media / "single_face.mp4")][:5]
    empty = [rgb for _, rgb in iter_video_frames(media / "no_face.mp4")][:4]
    session = LiveSession.of(detector.predictor, 1)
    assert session._pipeline.tracker.detect_every == 12
    frames = face + empty + face  # frames 9-13 have the face again; none of them a detection frame
    rows = [session.push(rgb, i)[0] for i, rgb in enumerate(frames)]
    assert [r["success"] for r in rows] == [1] * 5 + [0] * 4 + [1] * 5
    assert rows[9]["face_id"] == rows[0]["face_id"] + 1  # a new track, found on its first frame
