"""BP4D / BP4D+ adapters on small copies built in the real layouts (padding variants, nested
frame folders, per-subject zips, AU_INT intensities, missing images, malformed files)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.datasets import LayoutError, build_adapter
from components.datasets.video_io import read_frame_source


# BP4D's AU_OCC header codes more AUs than the 12 we use; 3 and 5 must be ignored.
HEADER = ["0", "1", "2", "3", "4", "5", "6", "7", "10", "12", "14", "15", "17", "23", "24"]


def occ_row(frame: int, value: int, au1: int = 0) -> list[int]:
    """A row with AU1 = ``au1`` and every other AU = ``value``."""
    return [frame, au1] + [value] * (len(HEADER) - 2)


def write_occ(root: Path, name: str, rows: list[list[object]]) -> Path:
    path = root / "AUCoding" / "AU_OCC" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(map(str, r)) for r in [HEADER] + rows) + "\n")
    return path


def jpg(path: Path, value: int) -> bytes:
    img = np.full((8, 8, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


def test_frames_found_at_any_depth_and_any_padding(tmp_path: Path) -> None:
    write_occ(tmp_path, "F001_T1", [occ_row(1, 0, au1=1), occ_row(2, 9), occ_row(3, 1)])
    write_occ(tmp_path, "F001_T2", [occ_row(7, 0), occ_row(8, 0)])
    write_occ(tmp_path, "M002_T10", [occ_row(10, 1)])
    for n in (1, 2, 3):                                          # unpadded, one level down
        jpg(tmp_path / "images" / "F001" / "T1" / f"{n}.jpg", 10 * n)
    for n in (7, 8):                                             # 4 digits, three levels down
        jpg(tmp_path / "a" / "b" / "2D" / "F001" / "T2" / f"{n:04d}.jpg", 10 * n)
    jpg(tmp_path / "M002" / "T10" / "00010.jpg", 100)            # 5 digits, at the root
    units = list(build_adapter("bp4d", tmp_path).units())

    assert [(u.subject, u.video) for u in units] == [("F001", "T1"), ("F001", "T2"),
                                                      ("M002", "T10")]
    t1 = units[0]
    assert t1.aus == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    assert [f.frame for f in t1.frames] == [1, 2, 3]
    assert t1.frames[0].labels == (1,) + (0,) * 11
    assert t1.frames[1].labels == (0,) + (-1,) * 11            # 9 = not coded → -1
    assert t1.frames[2].labels == (0,) + (1,) * 11
    assert t1.frames[2].timestamp == pytest.approx(3 / 25)
    assert t1.frames[1].source == str(tmp_path / "images" / "F001" / "T1" / "2.jpg")
    assert units[1].frames[0].source.endswith("2D/F001/T2/0007.jpg")
    assert units[2].frames[0].source.endswith("M002/T10/00010.jpg")
    assert all(f.source_kind == "image" and f.intensities == () for u in units for f in u.frames)
    assert all(u.meta["warnings"] == [] for u in units)
    assert read_frame_source(units[2].frames[0])[0, 0, 0] == pytest.approx(100, abs=3)


def test_labelled_frame_without_image_is_kept_and_reported(tmp_path: Path, caplog) -> None:
    write_occ(tmp_path, "F001_T1", [occ_row(n, 0) for n in (1, 2, 3)])
    jpg(tmp_path / "F001" / "T1" / "001.jpg", 1)
    jpg(tmp_path / "F001" / "T1" / "003.jpg", 3)
    jpg(tmp_path / "F001" / "T1" / "004.jpg", 4)                 # unlabelled image: not a frame
    with caplog.at_level(logging.WARNING):
        (unit,) = build_adapter("bp4d", tmp_path).units()
    assert [f.frame for f in unit.frames] == [1, 2, 3]
    assert unit.frames[1].source == "" and unit.frames[1].source_kind == "image"
    assert unit.meta["unlabelled_images"] == 1
    assert unit.meta["warnings"] == [
        f"{tmp_path / 'AUCoding/AU_OCC/F001_T1.csv'}: 1 of 3 labelled frames have no image "
        "(first: 2)"]
    assert "F001_T1.csv: 1 of 3 labelled frames have no image" in caplog.text


def test_images_option_chooses_between_two_copies(tmp_path: Path) -> None:
    write_occ(tmp_path, "F001_T1", [occ_row(1, 0)])
    jpg(tmp_path / "copy_a" / "F001" / "T1" / "1.jpg", 50)
    jpg(tmp_path / "copy_b" / "F001" / "T1" / "0001.jpg", 200)
    (unit,) = build_adapter("bp4d", tmp_path).units()
    assert unit.frames[0].source.endswith("copy_a/F001/T1/1.jpg")
    assert "several frame folders" in unit.meta["warnings"][0]
    (unit,) = build_adapter("bp4d", tmp_path, images=tmp_path / "copy_b").units()
    assert unit.frames[0].source.endswith("copy_b/F001/T1/0001.jpg")
    assert unit.meta["warnings"] == []


def test_bp4d_plus_zips_and_intensities(tmp_path: Path) -> None:
    write_occ(tmp_path, "F001_T1", [occ_row(1, 0), occ_row(2, 1)])
    write_occ(tmp_path, "M001_T2", [occ_row(5, 0)])
    (tmp_path / "2D").mkdir()
    with zipfile.ZipFile(tmp_path / "2D" / "F001.zip", "w") as zf:
        zf.writestr("F001/T1/0001.jpg", jpg(tmp_path / "scratch" / "a.jpg", 40))
        zf.writestr("F001/T1/0002.jpg", jpg(tmp_path / "scratch" / "b.jpg", 80))
    with zipfile.ZipFile(tmp_path / "2D" / "M001.zip", "w") as zf:   # members without subject
        zf.writestr("T2/5.jpg", jpg(tmp_path / "scratch" / "c.jpg", 120))
    au06 = tmp_path / "AUCoding" / "AU_INT" / "AU06"
    au06.mkdir(parents=True)
    (au06 / "F001_T1_AU06.csv").write_text("1,3\n2,9\n")
    au12 = tmp_path / "AUCoding" / "AU_INT" / "AU12"
    au12.mkdir(parents=True)
    (au12 / "F001_T1_AU12.csv").write_text("1,0\n2,5\n")

    f001, m001 = build_adapter("bp4d+", tmp_path).units()
    assert f001.dataset == "bp4d+"
    first = f001.frames[0]
    assert first.source_kind == "zip"
    assert first.source == f"{tmp_path / '2D' / 'F001.zip'}::F001/T1/0001.jpg"
    # AU order 1,2,4,6,7,10,12,...: AU6 is position 3, AU12 position 6.
    assert first.intensities == (-1, -1, -1, 3, -1, -1, 0, -1, -1, -1, -1, -1)
    assert f001.frames[1].intensities[3] == -1 and f001.frames[1].intensities[6] == 5
    assert m001.frames[0].source.endswith("M001.zip::T2/5.jpg")
    assert m001.frames[0].intensities == (-1,) * 12
    assert "no AU_INT files for M001_T2" in m001.meta["warnings"][0]
    assert read_frame_source(f001.frames[1])[4, 4, 1] == pytest.approx(80, abs=3)


def test_non_numeric_cell_names_file_and_line(tmp_path: Path) -> None:
    rows = [occ_row(n, 0) for n in range(1, 20)]
    rows[15][4] = "x"                                            # data row 16 = file line 17
    path = write_occ(tmp_path, "F001_T1", rows)
    with pytest.raises(LayoutError, match=rf"{path}: line 17, column '4': non-numeric cell 'x'"):
        list(build_adapter("bp4d", tmp_path).units())


def test_bad_value_and_missing_label_folder(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no AU_OCC folder"):
        list(build_adapter("bp4d", tmp_path).units())
    path = write_occ(tmp_path, "F001_T1", [occ_row(1, 0), occ_row(2, 3)])
    with pytest.raises(LayoutError, match=rf"{path}: line 3, AU2: value 3"):
        list(build_adapter("bp4d", tmp_path).units())
