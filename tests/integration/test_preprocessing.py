"""Unit processing on real media with the real dlib pipeline: every input frame lands in exactly
one of frames/rejects, with a reason; chunking depends on the config only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.datasets.base import build_adapter
from components.faces.pipeline import FacePipeline, FacePipelineConfig
from components.store.rows import Chunk, StoreConfig, decode_jpeg, plan_chunks, process_unit
from tests.conftest import require_media



def test_plan_chunks_depends_on_config_only() -> None:
    assert plan_chunks(10, 0) == [Chunk(0, 0, 10)]
    assert plan_chunks(10, 4) == [Chunk(0, 0, 4), Chunk(1, 4, 8), Chunk(2, 8, 10)]
    assert plan_chunks(4, 4) == [Chunk(0, 0, 4)]


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(FacePipelineConfig(detector="dlib", landmarker="dlib", align_size=112))


def _bad_media(tmp: Path) -> Path:
    media = require_media("single_face.jpg", "free-mountain-vector-01.jpg", "single_face.mp4")
    root = tmp / "media"
    root.mkdir()
    shutil.copy(media / "single_face.jpg", root / "a_face.jpg")
    shutil.copy(media / "free-mountain-vector-01.jpg", root / "b_drawing.jpg")
    (root / "c_zero.jpg").write_bytes(b"")
    (root / "d_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    # A truncated MJPG AVI: the first half decodes, the frames its header promises beyond do not.
    import cv2

    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    writer = cv2.VideoWriter(str(tmp / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(40):
        ok, frame = cap.read()
        writer.write(frame)
    writer.release()
    data = (tmp / "full.avi").read_bytes()
    (root / "e_truncated.avi").write_bytes(data[: len(data) // 2])
    # An mp4 cut in half loses its index (moov atom): it cannot be opened at all.
    mp4 = (media / "single_face.mp4").read_bytes()
    (root / "f_unopenable.mp4").write_bytes(mp4[: len(mp4) // 2])
    return root


def test_every_frame_lands_once_with_a_reason(tmp_path: Path, pipeline: FacePipeline) -> None:
    root = _bad_media(tmp_path)
    units = list(build_adapter("media", root).units())
    total_in, rows, rejects = 0, [], []
    for unit in units:
        res = process_unit(unit, pipeline, StoreConfig(diff_steps=(1, 2)))
        total_in += len(unit.frames)
        rows += res.frames.to_pylist()
        rejects += res.rejects.to_pylist()
    ids = [r["sample_id"] for r in rows] + [r["sample_id"] for r in rejects]
    # the unopenable video had no frames to list: it is one reject of its own
    assert len(ids) == len(set(ids)) == total_in + 1
    reasons = {Path(r["source"]).name: r["reason"] for r in rejects}
    assert reasons["b_drawing.jpg"] == "no face"
    assert reasons["c_zero.jpg"] == "unreadable"
    assert reasons["d_corrupt.jpg"] == "unreadable"
    face = [r for r in rows if r["source"].endswith("a_face.jpg")]
    assert len(face) == 1 and len(face[0]["landmarks"]) == 136
    assert decode_jpeg(face[0]["image"]).shape == (112, 112, 3)
    assert reasons["f_unopenable.mp4"] == "unreadable"
    video_rows = [r for r in rows if r["video"].startswith("e_truncated")]
    assert 10 < len(video_rows) < 40  # the decodable half of the video was kept
    cut = [r for r in rejects if r["video"].startswith("e_truncated")]
    assert cut and {r["reason"] for r in cut} == {"unreadable"}
    assert len(video_rows) + len(cut) == 40
    # Temporal differences: valid inside the video, flagged at its first frame.
    first = min(video_rows, key=lambda r: r["frame_order"])
    assert first["diff_valid"] == [False, False]
    mid = sorted(video_rows, key=lambda r: r["frame_order"])[5]
    assert mid["diff_valid"] == [True, True] and len(mid["landmark_diff"]) == 2 * 136


def test_chunked_video_gives_the_same_rows(pipeline: FacePipeline) -> None:
    media = require_media("single_face.mp4")
    unit = next(u for u in build_adapter("media", media).units() if u.video.startswith("single_face") and len(u.frames) > 1)
    store = StoreConfig(diff_steps=(1,), chunk_frames=30, chunk_overlap=12)
    whole = process_unit(unit, pipeline, store).frames.to_pylist()
    parts = []
    for chunk in plan_chunks(len(unit.frames), store.chunk_frames):
        parts += process_unit(unit, pipeline, store, chunk).frames.to_pylist()
    assert [r["sample_id"] for r in parts] == [r["sample_id"] for r in whole]
    assert len(whole) == len(unit.frames)
