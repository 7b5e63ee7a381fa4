"""DISFA adapter on tiny copies in the real layout: both cameras, intensities → occurrence,
a truncated label file and a video/label length mismatch reported, malformed lines."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.datasets import LayoutError, build_adapter
from components.datasets.video_io import read_frame_source


AUS = (1, 2, 4, 6, 9, 12, 25, 26)


def write_video(path: Path, n: int, base: int = 0, fps: float = 20.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 64))
    for i in range(n):
        w.write(np.full((64, 64, 3), base + 40 * i, np.uint8))
    w.release()


def write_labels(root: Path, sn: str, n: int, intensity=lambda au, f: 0,
                 lengths: "dict[int, int] | None" = None) -> None:
    d = root / "ActionUnit_Labels" / sn
    d.mkdir(parents=True, exist_ok=True)
    for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):
        m = (lengths or {}).get(au, n)
        (d / f"{sn}_au{au}.txt").write_text(
            "".join(f"{f},{intensity(au, f)}\n" for f in range(1, m + 1)))


def test_left_camera_intensities_and_occurrence(tmp_path: Path) -> None:
    write_video(tmp_path / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi", 5)
    write_video(tmp_path / "Videos_RightCamera" / "RightVideoSN001_comp.avi", 5, base=20)
    # AU1 intensity = frame - 1 (0..4); AU12 = 2 on odd frames; everything else 0.
    write_labels(tmp_path, "SN001", 5,
                 lambda au, f: f - 1 if au == 1 else (2 if au == 12 and f % 2 else 0))
    (unit,) = build_adapter("disfa", tmp_path).units()
    assert (unit.subject, unit.video, unit.aus) == ("SN001", "left", AUS)
    assert unit.fps == pytest.approx(20.0)
    assert [f.frame for f in unit.frames] == [1, 2, 3, 4, 5]
    assert [f.video_frame for f in unit.frames] == [0, 1, 2, 3, 4]
    assert [f.intensities[0] for f in unit.frames] == [0, 1, 2, 3, 4]
    assert [f.labels[0] for f in unit.frames] == [0, 0, 1, 1, 1]        # intensity >= 2
    assert [f.labels[5] for f in unit.frames] == [1, 0, 1, 0, 1]        # AU12
    assert unit.frames[2].timestamp == pytest.approx(2 / 20)
    assert unit.frames[0].source.endswith("Videos_LeftCamera/LeftVideoSN001_comp.avi")
    assert unit.frames[0].source_kind == "video"
    assert unit.meta["warnings"] == []
    assert read_frame_source(unit.frames[3])[10, 10, 0] == pytest.approx(120, abs=4)


def test_right_camera_is_selectable(tmp_path: Path) -> None:
    write_video(tmp_path / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi", 5)
    write_video(tmp_path / "Videos_RightCamera" / "RightVideoSN001_comp.avi", 5, base=20)
    write_labels(tmp_path, "SN001", 5)
    (unit,) = build_adapter("disfa", tmp_path, camera="right").units()
    assert unit.video == "right"
    assert unit.frames[0].source.endswith("Videos_RightCamera/RightVideoSN001_comp.avi")
    assert read_frame_source(unit.frames[0])[10, 10, 0] == pytest.approx(20, abs=4)
    with pytest.raises(ValueError, match="camera must be 'left' or 'right'"):
        build_adapter("disfa", tmp_path, camera="top")


def test_truncated_label_file_is_reported_not_cut(tmp_path: Path) -> None:
    write_video(tmp_path / "Videos_LeftCamera" / "LeftVideoSN002_comp.avi", 5)
    write_labels(tmp_path, "SN002", 5, lambda au, f: 3, lengths={1: 3})
    (unit,) = build_adapter("disfa", tmp_path).units()
    assert len(unit.frames) == 5
    assert [f.labels[0] for f in unit.frames] == [1, 1, 1, -1, -1]
    assert [f.labels[1] for f in unit.frames] == [1] * 5
    (warning,) = unit.meta["warnings"]
    assert "SN002_au1.txt: 3" in warning and "longest 5 frames" in warning


def test_labels_longer_than_video_keep_frames_without_pixels(tmp_path: Path) -> None:
    write_video(tmp_path / "Videos_LeftCamera" / "LeftVideoSN003_comp.avi", 5)
    write_labels(tmp_path, "SN003", 6)
    write_labels(tmp_path, "SN004", 5)                     # no video at all
    sn3, sn4 = build_adapter("disfa", tmp_path).units()
    assert len(sn3.frames) == 6
    assert (sn3.frames[5].source, sn3.frames[5].source_kind) == ("", "image")
    assert sn3.frames[4].source_kind == "video"
    assert "5 video frames but 6 label lines" in sn3.meta["warnings"][0]
    assert len(sn4.frames) == 5 and all(f.source == "" for f in sn4.frames)
    assert "left video not found" in sn4.meta["warnings"][0]


def test_malformed_label_line_names_file_and_line(tmp_path: Path) -> None:
    write_labels(tmp_path, "SN001", 3)
    bad = tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au4.txt"
    bad.write_text("1,0\n2,x\n3,0\n")
    with pytest.raises(LayoutError, match=rf"{bad}: line 2: non-numeric intensity 'x'"):
        list(build_adapter("disfa", tmp_path).units())
    bad.write_text("1,0\n2,7\n")
    with pytest.raises(LayoutError, match=rf"{bad}: line 2: intensity 7 outside 0-5"):
        list(build_adapter("disfa", tmp_path).units())


def test_aus_must_be_coded_in_disfa(tmp_path: Path) -> None:
    write_labels(tmp_path, "SN001", 2)
    with pytest.raises(ValueError, match=r"AU\(s\) \[7\] are not coded in DISFA"):
        build_adapter("disfa", tmp_path, aus=[1, 7])
    (unit,) = build_adapter("disfa", tmp_path, aus=[5, 20]).units()
    assert unit.aus == (5, 20) and unit.frames[0].labels == (0, 0)
