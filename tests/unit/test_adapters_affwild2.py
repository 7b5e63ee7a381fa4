"""Aff-Wild2 / ABAW adapter on small copies in the real layouts: Train_Set + Validation_Set,
the old AU_Set folder, cropped_aligned with a missing crop, raw videos with _left/_right."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.datasets import LayoutError, build_adapter


HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def write_labels(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def write_crops(folder: Path, frames: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in frames:
        cv2.imwrite(str(folder / f"{f:05d}.jpg"), np.full((16, 16, 3), f, np.uint8))


def write_video(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for i in range(n):
        w.write(np.full((64, 64, 3), 30 * i, np.uint8))
    w.release()


ONES = ",".join(["1"] * 12)
ZEROS = ",".join(["0"] * 12)
UNKNOWN = ",".join(["-1"] * 12)


def test_train_and_validation_sets_with_a_missing_crop(tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "AU_Detection_Challenge"
    write_labels(ann / "Train_Set" / "video2.txt", [ONES, UNKNOWN, ZEROS])
    write_labels(ann / "Validation_Set" / "10-60-1280x720.txt", [ZEROS, ONES])
    write_crops(tmp_path / "cropped_aligned" / "video2", [1, 3])          # frame 2: no face
    write_crops(tmp_path / "cropped_aligned" / "10-60-1280x720", [1, 2])
    units = list(build_adapter("affwild2", tmp_path).units())

    assert [u.video for u in units] == ["10-60-1280x720", "video2"]
    val, train = units
    assert (val.meta["split"], train.meta["split"]) == ("validation", "train")
    assert train.subject == "video2" and train.prealigned
    assert [f.frame for f in train.frames] == [1, 2, 3]
    assert train.frames[0].labels == (1,) * 12
    assert train.frames[1].labels == (-1,) * 12              # all unknown: still yielded
    assert train.frames[1].source == "" and train.frames[1].source_kind == "image"
    assert train.frames[2].source.endswith("cropped_aligned/video2/00003.jpg")
    assert train.meta["warnings"] == ["video2: 1 of 3 labelled frames have no cropped image "
                                      "(rejected as missing image)"]
    assert val.meta["warnings"] == []


def test_old_au_set_layout_and_eight_au_header(tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "AU_Set"
    write_labels(ann / "Train_Set" / "v1.txt", ["1,0,1,0,1,0,1,0"],
                 header="AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25")
    write_crops(tmp_path / "cropped_aligned" / "v1", [1])
    (unit,) = build_adapter("affwild2", tmp_path).units()
    # ABAW order 1,2,4,6,7,10,12,15,23,24,25,26: AU7, 10, 23, 24, 26 are not in the file.
    assert unit.frames[0].labels == (1, 0, 1, 0, -1, -1, 1, 0, -1, -1, 0, -1)
    assert "header lacks AU(s) [7, 10, 23, 24, 26]" in unit.meta["warnings"][0]
    (unit,) = build_adapter("affwild2", tmp_path, aus=[1, 2, 4, 6, 12, 15, 20, 25]).units()
    assert unit.frames[0].labels == (1, 0, 1, 0, 1, 0, 1, 0) and unit.meta["warnings"] == []


def test_raw_videos_with_left_and_right_faces(tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "AU_Detection_Challenge" / "Train_Set"
    write_labels(ann / "pair_left.txt", [ONES, ZEROS, ONES, ZEROS])
    write_labels(ann / "pair_right.txt", [ZEROS] * 4)
    write_labels(ann / "solo.txt", [ZEROS] * 3)
    write_video(tmp_path / "videos" / "batch1" / "pair.avi", 4)
    write_video(tmp_path / "videos" / "solo.avi", 4)
    left, right, solo = build_adapter("affwild2", tmp_path, mode="video").units()

    assert (left.subject, left.meta["face"], right.subject, right.meta["face"]) == (
        "pair_left", "left", "pair_right", "right")
    assert left.frames[0].source == right.frames[0].source == str(
        tmp_path / "videos" / "batch1" / "pair.avi")
    assert [f.video_frame for f in left.frames] == [0, 1, 2, 3]
    assert left.frames[2].timestamp == pytest.approx(2 / 30)
    assert not left.prealigned and left.meta["warnings"] == []
    assert solo.meta["face"] == ""
    assert len(solo.frames) == 4 and solo.frames[3].labels == (-1,) * 12
    assert "4 video frames but 3 label lines" in solo.meta["warnings"][0]


def test_malformed_label_value_names_file_and_line(tmp_path: Path) -> None:
    path = write_labels(tmp_path / "annotations" / "AU_Detection_Challenge" / "Train_Set" /
                        "v.txt", [ZEROS, ZEROS.replace("0", "2", 1)])
    write_crops(tmp_path / "cropped_aligned" / "v", [1, 2])
    with pytest.raises(LayoutError, match=rf"{path}: line 3, AU1: value 2"):
        list(build_adapter("affwild2", tmp_path).units())
    write_labels(path, [ZEROS], header="AU1,Valence")
    with pytest.raises(LayoutError, match=rf"{path}: line 1, column 2: header cell 'Valence'"):
        list(build_adapter("affwild2", tmp_path).units())


def test_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no annotations/AU_Detection_Challenge"):
        list(build_adapter("affwild2", tmp_path).units())
    write_labels(tmp_path / "annotations" / "AU_Detection_Challenge" / "Train_Set" / "v.txt",
                 [ZEROS])
    with pytest.raises(LayoutError, match="no cropped_aligned folder"):
        list(build_adapter("affwild2", tmp_path).units())
