"""Manifest and media adapters, and frame reading (images, zip members, videos, damage)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.datasets import FrameRecord, LayoutError, build_adapter
from components.datasets.video_io import (FrameReadError, iter_video_frames, read_frame_source,
                                          video_frame_count)



def write_image(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


def write_video(path: Path, n: int, noise: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) if noise else \
            np.full((64, 64, 3), 25 * i, np.uint8)
        w.write(img)
    w.release()


def test_manifest_with_au01_headers_paths_and_videos(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "s1" / "a.png", 10)
    write_image(tmp_path / "imgs" / "s1" / "b.png", 20)
    write_video(tmp_path / "clips" / "c.avi", 5)
    (tmp_path / "manifest.csv").write_text(
        "path,subject,group,AU12,AU01,AU4\n"
        "imgs/s1/b.png,s1,fam,1,,0\n"
        "imgs/s1/a.png,s1,fam,0,1,-1\n"
        "imgs/s1/gone.png,s2,fam,1,1,1\n")
    ad = build_adapter("manifest", tmp_path)
    assert ad.aus == (12, 1, 4)                                # the columns' order
    u1, u2 = ad.units()
    assert (u1.subject, u1.video, u1.group) == ("s1", "imgs/s1", "fam")
    # no frame column: frame = row order inside the unit
    assert [(f.frame, Path(f.source).name, f.labels) for f in u1.frames] == [
        (0, "b.png", (1, -1, 0)), (1, "a.png", (0, 1, -1))]
    assert u2.frames[0].source == "" and "not found" in u2.meta["warnings"][0]

    (tmp_path / "videos.csv").write_text(
        "video,frame,subject,1\nclips/c.avi,3,p,1\nclips/c.avi,1,p,0\n")
    (unit,) = build_adapter("manifest", tmp_path, manifest=tmp_path / "videos.csv",
                            dataset="lab").units()
    assert (unit.dataset, unit.video, unit.aus, unit.fps) == ("lab", "clips/c", (1,), 10.0)
    assert [(f.frame, f.video_frame, f.labels) for f in unit.frames] == [(1, 1, (0,)),
                                                                        (3, 3, (1,))]
    assert unit.frames[1].timestamp == pytest.approx(0.3)
    assert read_frame_source(unit.frames[1])[5, 5, 2] == pytest.approx(75, abs=4)


@pytest.mark.parametrize("csv_text, message", [
    ("path,subject,AU3\nx.png,s,1\n", r"line 1: AU\(s\) \[3\] are not in the AU catalogue"),
    ("path,AU1\nx.png,1\n", "line 1: no 'subject' column"),
    ("path,subject,AU1\nx.png,s,1\ny.png,s,yes\n", "line 3, column 'AU1': non-numeric cell 'yes'"),
    ("path,subject,AU1\nx.png,s,2\n", r"line 2, column 'AU1': label 2 \(expected 1, 0 or -1\)"),
    ("path,subject,group\nx.png,s,g1\ny.png,s,g2\n", "line 3: subject 's' in group 'g2'"),
    ("path,subject,frame\nx.png,s,1\ny.png,s,1\n", "line 3: frame 1 of s/. already listed"),
])
def test_malformed_manifest_names_file_and_line(tmp_path: Path, csv_text: str,
                                                message: str) -> None:
    (tmp_path / "manifest.csv").write_text(csv_text)
    with pytest.raises(LayoutError, match=message) as err:
        list(build_adapter("manifest", tmp_path).units())
    assert str(tmp_path / "manifest.csv") in str(err.value)


def test_media_folder_videos_and_loose_images(tmp_path: Path) -> None:
    write_video(tmp_path / "talks" / "t1.avi", 5)
    write_image(tmp_path / "photo.jpg", 90)
    write_image(tmp_path / "talks" / "still.png", 30)
    (tmp_path / "notes.txt").write_text("not media")
    ad = build_adapter("media", tmp_path)
    units = list(ad.units())
    assert ad.aus == ()
    assert [(u.subject, u.video, len(u.frames)) for u in units] == [
        (".", "photo.jpg", 1), ("talks", "talks/still.png", 1), ("talks", "talks/t1.avi", 5)]
    video = units[2]
    assert [f.video_frame for f in video.frames] == [0, 1, 2, 3, 4]
    assert video.fps == 10.0 and video.frames[4].timestamp == pytest.approx(0.4)
    assert all(f.labels == () for u in units for f in u.frames)
    assert units[0].frames[0].source_kind == "image"


def test_truncated_video_stops_and_reports(tmp_path: Path, caplog) -> None:
    good = tmp_path / "good.avi"
    write_video(good, 10, noise=True)
    bad = tmp_path / "media" / "bad.avi"
    bad.parent.mkdir()
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) * 55 // 100])
    count = video_frame_count(bad)
    assert (count.header_frames, count.frames) == (10, 5)
    frames = iter_video_frames(bad)
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4]
    assert (frames.decoded, frames.truncated, frames.expected) == (5, True, 10)
    assert "bad.avi: decoded 5 of 10 frames from frame 0" in caplog.text
    part = iter_video_frames(good, 3, 6)
    assert [(i, rgb.shape) for i, rgb in part] == [(3, (64, 64, 3)), (4, (64, 64, 3)),
                                                  (5, (64, 64, 3))]
    assert not part.truncated
    (unit,) = build_adapter("media", tmp_path / "media").units()
    assert len(unit.frames) == 10                        # the undecodable 5 become rejects
    assert "header says 10 frames, 5 decodable" in unit.meta["warnings"][0]


def test_read_frame_source_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "zero.jpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg at all")
    cases = [(FrameRecord(1, 0.0, "", "image"), "missing image", "frame 1: no image"),
             (FrameRecord(1, 0.0, str(tmp_path / "none.jpg"), "image"), "missing image",
              "none.jpg: image file not found"),
             (FrameRecord(1, 0.0, str(empty), "image"), "unreadable", "zero.jpg: empty file"),
             (FrameRecord(1, 0.0, str(junk), "image"), "unreadable",
              "junk.jpg: not a decodable image")]
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        ok, buf = cv2.imencode(".png", np.full((4, 4, 3), (10, 20, 30), np.uint8))
        zf.writestr("T1/1.png", buf.tobytes())
    cases.append((FrameRecord(2, 0.0, f"{tmp_path / 's.zip'}::T1/2.png", "zip"),
                  "missing image", "s.zip::T1/2.png: no such member"))
    for record, reason, message in cases:
        with pytest.raises(FrameReadError, match=message) as err:
            read_frame_source(record)
        assert err.value.reason == reason
        # preprocessing maps FileNotFoundError to the "missing image" reject
        assert isinstance(err.value, FileNotFoundError) == (reason == "missing image")
    rgb = read_frame_source(FrameRecord(1, 0.0, f"{tmp_path / 's.zip'}::T1/1.png", "zip"))
    assert rgb[0, 0].tolist() == [30, 20, 10]              # BGR written, RGB read


def test_frame_files_indexed_by_number_and_label_folders_found_shallow(tmp_path: Path) -> None:
    from components.datasets.media import find_dirs, frame_number, index_frame_files

    assert [frame_number(n) for n in ("7.jpg", "0007.PNG", "00007.jpeg", "frame_0007.jpg",
                                      "7.txt", "a7.jpg")] == [7, 7, 7, 7, None, None]
    for name in ("0007.jpg", "7.jpg", "12.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    index = index_frame_files(tmp_path)
    assert {n: p.name for n, p in index.items()} == {7: "0007.jpg", 12: "12.png"}
    assert index.duplicates == ["7.jpg"]

    (tmp_path / "a" / "AU_OCC").mkdir(parents=True)
    (tmp_path / "b" / "c" / "AU_OCC").mkdir(parents=True)
    (tmp_path / "frames" / "AU_OCC").mkdir(parents=True)
    assert find_dirs(tmp_path, "au_occ") == [tmp_path / "a" / "AU_OCC",
                                              tmp_path / "frames" / "AU_OCC"]
    assert find_dirs(tmp_path, "AU_OCC", skip=("a", "frames")) == [
        tmp_path / "b" / "c" / "AU_OCC"]
    assert find_dirs(tmp_path, "AU_OCC", max_depth=1) == []


def test_a_plain_folder_without_manifest_reads_as_unlabeled_media(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    img = np.full((48, 64, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "alice" / "face.jpg"), img)
    cv2.imwrite(str(tmp_path / "alice" / "face.png"), img)
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(img)
    writer.release()
    adapter = build_adapter("manifest", tmp_path)
    units = list(adapter.units())
    assert adapter.aus == ()
    assert [(u.dataset, u.subject, u.video, len(u.frames)) for u in units] == [
        ("manifest", "alice", "alice/face.jpg", 1), ("manifest", "alice", "alice/face.png", 1),
        ("manifest", ".", "clip.avi", 3)]
    assert all(u.aus == () and all(f.labels == () for f in u.frames) for u in units)
    with pytest.raises(LayoutError, match="no manifest.csv, so no labels"):
        build_adapter("manifest", tmp_path, aus=[12])
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        build_adapter("manifest", tmp_path, manifest=str(tmp_path / "other.csv"))
