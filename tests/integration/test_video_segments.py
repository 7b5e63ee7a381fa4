"""A video answered a segment at a time (components/video_segments.py) gives the rows of the
whole-video answer (track every frame, answer every track, then smooth: what
``Predictor.predict_video`` did before), on a real clip cut into small segments, for the
built-in detector (running neutral, smoothing) and for an ensemble whose video member reads
landmark differences over whole member segments; carried on from a pickled carry with a fresh
Predictor (a restarted replica), the rows are the same again."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_media


def _frames(n: int) -> list[np.ndarray]:
    from components.datasets.video_io import iter_video_frames

    media = require_media("WolfgangLanger_Pexels.mp4")
    return [rgb for _, rgb in iter_video_frames(media / "WolfgangLanger_Pexels.mp4", 0, n)]


def _whole(pred, frames: list[np.ndarray], fps: float) -> list[dict]:
    """The whole-video answer, step by step as components.inference lays it out."""
    from components import inference

    pipe = pred.pipeline
    pipe.reset()
    tracks, n = inference.track_video(pipe.step, frames, pred.plan.steps, None)
    answers = pred.answer_tracks(tracks, True, "clip", "clip.mp4")
    return inference.video_rows(tracks, answers, n, fps, pred.aus)


def _same(a: list[dict], b: list[dict]) -> None:
    assert [(r["frame"], r["face_id"], r["success"]) for r in a] == [(r["frame"], r["face_id"], r["success"]) for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys(), x["frame"]
        for k in x:
            if isinstance(x[k], dict) and k != "pose" and k != "gaze":
                np.testing.assert_allclose(list(x[k].values()), list(y[k].values()), atol=1e-6, err_msg=f"{k} {x['frame']}")
            else:
                assert x[k] == y[k], (k, x["frame"])


@pytest.mark.parametrize("ensemble", ["builtin", "builtin_face_leaves", "video_member"])
def test_segment_wise_rows_equal_the_whole_video_rows(ensemble: str, tmp_path: Path) -> None:
    from components.predictor import Predictor
    from components.video_segments import iter_video_segments
    from tests.serving_fixtures import make_ensemble

    if ensemble.startswith("builtin"):
        make = lambda: Predictor.from_manifest(None)  # noqa: E731
        frames = _frames(140)
        if ensemble == "builtin_face_leaves":  # 40 black frames: the face comes back as face 1
            frames = frames[:70] + [np.zeros_like(frames[0])] * 40 + frames[70:]
    else:  # an image member and a To-Sequence member reading landmark differences (steps 1, 2)
        ens = make_ensemble(tmp_path / "ens")
        make = lambda: Predictor.from_manifest(str(ens), faces={"detector": "dlib"})  # noqa: E731
        frames = _frames(140)
    pred = make()
    whole = _whole(pred, frames, 24.0)
    found = sum(r["success"] for r in whole)
    assert found > 0.9 * (len(frames) - 40 * ensemble.endswith("leaves"))  # the face is found: rows carry answers
    if ensemble.endswith("leaves"):
        assert {r["face_id"] for r in whole} == {-1, 0, 1}
    segments, carries = [], []
    for seg in iter_video_segments(pred, frames, 24.0, "clip.mp4", "clip", segment_frames=64):
        segments.append(seg)
        carries.append(pickle.dumps(seg.carry))  # the carry is updated in place: stored as yielded
    assert len(segments) >= 3
    assert [s.first for s in segments[1:]] == [s.stop for s in segments[:-1]] and segments[-1].stop == len(frames)
    _same([r for s in segments for r in s.rows], whole)
    # Carried on after the second segment from its pickled carry, by a fresh Predictor.
    carry = pickle.loads(carries[1])
    assert carry.frames == 128 and (ensemble != "builtin_face_leaves" or list(carry.tracks) == [1])
    fresh = make()
    rest = list(iter_video_segments(fresh, frames[carry.frames:], 24.0, "clip.mp4", "clip", carry, 64))
    _same([r for s in segments[:2] for r in s.rows] + [r for s in rest for r in s.rows], whole)
