"""Identity across cuts (components.faces.identity): a video assembled from the shared clips,
person A, no face, person A again, person B, keeps A's ``face_id`` across the gap and gives B
another; without re-identification A comes back under a new id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_media


def _frames(path: Path, n: int, size: tuple[int, int] = (640, 360)) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    cap.release()
    return out


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int, int]]]:
    """A (single_face.mp4, 36 frames), no face (no_face.mp4, 24), A again (24), B
    (WolfgangLanger_Pexels.mp4, 36) at 640x360, 30 fps; and (part, first, last frame) of each."""
    import cv2

    media = require_media("single_face.mp4", "no_face.mp4", "WolfgangLanger_Pexels.mp4")
    parts = [("A", _frames(media / "single_face.mp4", 36)), ("none", _frames(media / "no_face.mp4", 24)),
             ("A", _frames(media / "single_face.mp4", 60)[36:60]), ("B", _frames(media / "WolfgangLanger_Pexels.mp4", 36))]
    path = tmp_path_factory.mktemp("cuts") / "cuts.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    spans, t = [], 0
    for name, frames in parts:
        for f in frames:
            writer.write(f)
        spans.append((name, t, t + len(frames) - 1))
        t += len(frames)
    writer.release()
    return path, spans


def _ids(df, first: int, last: int) -> set[int]:
    rows = df[(df["frame"] >= first) & (df["frame"] <= last) & (df["success"] == 1)]
    return set(rows["face_id"].tolist())


def test_a_person_keeps_their_face_id_across_a_gap_and_another_gets_a_new_one(cut_video) -> None:
    import torch

    from components.au_detector import Detector

    torch.set_num_threads(1)
    path, spans = cut_video
    (_, a0, a1), (_, n0, n1), (_, r0, r1), (_, b0, b1) = spans
    plain = Detector.pretrained(faces={"policy": "all"}).predict_video(path)
    det = Detector.pretrained(faces={"policy": "all", "reidentify": True})
    df = det.predict_video(path)
    assert _ids(df, n0, n1) == set() and _ids(plain, n0, n1) == set()  # the gap has no face
    a, again, b = _ids(df, a0, a1), _ids(df, r0, r1), _ids(df, b0, b1)
    assert len(a) == 1 and again == a, (a, again)
    assert len(b) == 1 and not b & a, (a, b)
    # The tracker alone: A comes back as somebody new.
    assert _ids(plain, r0, r1) and not _ids(plain, r0, r1) & _ids(plain, a0, a1)
