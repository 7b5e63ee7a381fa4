"""BP4D and BP4D+ adapters.

Labels: ``AUCoding/AU_OCC/<Subj>_<Task>.csv`` (or ``AU_OCC/`` anywhere under the root): a
header row of AU numbers whose first cell heads the frame-number column, then one row per
coded frame; 1 = present, 0 = absent, 9 = not coded (→ -1). Intensities (BP4D+ and the FERA
copies of BP4D): ``AU_INT/AUxx/<Subj>_<Task>_AUxx.csv`` rows ``frame,intensity`` (0-5, 9 →
-1).

Frames: copies differ in where the ``<Subj>/<Task>/`` folders sit and in the padding of the
file names (``7.jpg``, ``0007.jpg``, ``00007.jpg``), so the folders are found anywhere under
the root (or under ``images=DIR``) and frames are matched to label rows by number. BP4D+
images may instead sit in per-subject zip archives (``F001.zip`` holding ``F001/T1/0001.jpg``
or ``T1/0001.jpg``): those frames get ``source_kind='zip'`` and ``source='<zip>::<member>'``.

Only coded frames are yielded (the image folders often hold the whole task, the coding a
segment of it); a coded frame without an image is yielded with ``source=''`` so that
preprocessing rejects it as "missing image", and the unit's ``meta['warnings']`` says so.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from components.au import DATASET_AUS, validate_au_list
from components.datasets.base import (FrameRecord, LayoutError, VideoUnit, distinct_units,
                                      register_adapter)
from components.datasets.folds import read_groups
from components.datasets.media import find_dir, frame_number, index_frame_files, natural_key
from components.datasets.video_io import ZIP_SEP

__all__ = ["BP4DAdapter", "BP4DPlusAdapter", "read_occurrence_csv", "read_intensity_csv"]

log = logging.getLogger(__name__)

_UNKNOWN = 9
_AU_HEADER = re.compile(r"^\s*(?:AU)?0*(\d+)\s*$", re.IGNORECASE)
_LABEL_NAME = re.compile(r"^(?P<subject>.+)_(?P<task>[^_]+)$")


def _int(text: str, path: Path, line: int, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value == value and value.is_integer():
            return int(value)
    raise LayoutError(f"{path}: line {line}, column {column!r}: non-numeric cell {text!r}")


def read_occurrence_csv(path: Path, aus: Sequence[int]) -> tuple[dict[int, tuple[int, ...]],
                                                                  list[int]]:
    """Parse an AU_OCC file: frame → labels in ``aus`` order (9 → -1), plus the AUs of ``aus``
    the header lacks (their labels are -1). Raises LayoutError naming file and line."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise LayoutError(f"{path}: empty label file")
    header = rows[0]
    columns: dict[int, int] = {}
    for j, cell in enumerate(header[1:], start=1):
        m = _AU_HEADER.match(cell)
        if not m:
            raise LayoutError(f"{path}: line 1, column {j + 1}: header cell {cell!r} "
                              "is not an AU number")
        columns[int(m.group(1))] = j
    missing = [a for a in aus if a not in columns]
    labels: dict[int, tuple[int, ...]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise LayoutError(f"{path}: line {line}: {len(row)} cells, header has {len(header)}")
        frame = _int(row[0], path, line, header[0] or "frame")
        if frame in labels:
            raise LayoutError(f"{path}: line {line}: frame {frame} appears twice")
        out = []
        for au in aus:
            if au not in columns:
                out.append(-1)
                continue
            j = columns[au]
            v = _int(row[j], path, line, header[j])
            if v not in (0, 1, _UNKNOWN):
                raise LayoutError(f"{path}: line {line}, AU{au}: value {v} (expected 0, 1 or 9)")
            out.append(-1 if v == _UNKNOWN else v)
        labels[frame] = tuple(out)
    return labels, missing


def read_intensity_csv(path: Path) -> dict[int, int]:
    """Parse an AU_INT file of ``frame,intensity`` rows (0-5, 9 → -1); a non-numeric first row
    is taken as a header. Raises LayoutError naming file and line."""
    out: dict[int, int] = {}
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if line == 1 and not any(c.strip().lstrip("-").isdigit() for c in row):
                continue
            if len(row) < 2:
                raise LayoutError(f"{path}: line {line}: expected 'frame,intensity'")
            frame = _int(row[0], path, line, "frame")
            value = _int(row[1], path, line, "intensity")
            if value == _UNKNOWN:
                value = -1
            elif not 0 <= value <= 5:
                raise LayoutError(f"{path}: line {line}: intensity {value} outside 0-5 (or 9)")
            out[frame] = value
    return out


@register_adapter("bp4d")
class BP4DAdapter:
    """BP4D: one unit per ``<Subj>_<Task>`` label file, frames matched by number.

    Options: ``images`` (folder to search for frames instead of the root), ``aus`` (AU list,
    default ``DATASET_AUS[name]``), ``fps`` (25, the BP4D capture rate), ``zips`` (also look
    inside zip archives for frames), ``groups`` (CSV of subject → identity group, see
    ``folds.read_groups``; default each subject its own group).
    """

    name = "bp4d"

    def __init__(self, root: Path, images: "str | Path | None" = None,
                 aus: "Sequence[int] | None" = None, fps: float = 25.0, zips: bool = True,
                 groups: "str | Path | None" = None) -> None:
        self.root = Path(root)
        self.images = Path(images) if images else None
        if self.images is not None and not self.images.is_dir():
            raise FileNotFoundError(f"{self.name}: images folder not found: {self.images}")
        self.aus = validate_au_list(aus) if aus else DATASET_AUS[self.name]
        self.fps = float(fps)
        self.zips = zips
        self.groups = read_groups(groups) if groups else {}

    def _label_dir(self, name: str) -> "Path | None":
        return find_dir(self.root, name, (f"AUCoding/{name}", name), max_depth=3)

    def _label_files(self) -> list[tuple[str, str, Path]]:
        occ = self._label_dir("AU_OCC")
        if occ is None:
            raise LayoutError(f"{self.root}: no AU_OCC folder (expected AUCoding/AU_OCC/"
                              "<Subj>_<Task>.csv) under the root")
        out = []
        for path in occ.glob("*.csv"):
            m = _LABEL_NAME.match(path.stem)
            if not m:
                raise LayoutError(f"{path}: label file name is not <Subject>_<Task>.csv")
            out.append((m.group("subject"), m.group("task"), path))
        if not out:
            raise LayoutError(f"{occ}: no <Subj>_<Task>.csv label files")
        return sorted(out, key=lambda t: (natural_key(t[0]), natural_key(t[1])))

    def _scan_frames(self, pairs: set[tuple[str, str]]) -> tuple[dict, dict, dict]:
        """One walk of the image tree: frame index per (subject, task), duplicates, zip files."""
        base = self.images or self.root
        wanted = {(s.upper(), t.upper()): (s, t) for s, t in pairs}
        folders: dict[tuple[str, str], Any] = {}
        duplicates: dict[tuple[str, str], list[str]] = {}
        zips: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted((d for d in dirnames if d.upper() not in ("AU_OCC", "AU_INT")),
                                 key=natural_key)
            here = Path(dirpath)
            key = wanted.get((here.parent.name.upper(), here.name.upper()))
            if key is not None and any(frame_number(f) is not None for f in filenames):
                if key in folders:
                    duplicates.setdefault(key, []).append(str(here))
                else:
                    folders[key] = index_frame_files(here, filenames)
                dirnames[:] = []
            if self.zips:
                zips.extend(here / f for f in sorted(filenames) if f.lower().endswith(".zip"))
        zipped: dict[tuple[str, str], dict[int, str]] = {}
        for zpath in zips:
            self._index_zip(zpath, wanted, folders, zipped)
        return folders, zipped, duplicates

    @staticmethod
    def _index_zip(zpath: Path, wanted: dict, folders: dict, zipped: dict) -> None:
        try:
            with zipfile.ZipFile(zpath) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            log.warning("%s: skipped, not a readable zip archive (%s)", zpath, err)
            return
        for member in sorted(names):
            parts = member.rstrip("/").split("/")
            if len(parts) < 2:
                continue
            n = frame_number(parts[-1])
            if n is None:
                continue
            subject = parts[-3] if len(parts) >= 3 else zpath.stem
            key = wanted.get((subject.upper(), parts[-2].upper()))
            if key is None:
                key = wanted.get((zpath.stem.upper(), parts[-2].upper()))
            if key is None or key in folders:
                continue
            zipped.setdefault(key, {}).setdefault(n, f"{zpath}{ZIP_SEP}{member}")

    def _intensities(self, subject: str, task: str, int_dirs: dict[int, Path],
                     warnings: list[str]) -> dict[int, dict[int, int]]:
        out: dict[int, dict[int, int]] = {}
        for au in self.aus:
            d = int_dirs.get(au)
            files = sorted(d.glob(f"{subject}_{task}_*.csv")) if d else []
            if files:
                out[au] = read_intensity_csv(files[0])
        if int_dirs and not out:
            warnings.append(f"no AU_INT files for {subject}_{task}: intensities unknown (-1)")
        return out

    def _int_dirs(self) -> dict[int, Path]:
        base = self._label_dir("AU_INT")
        dirs: dict[int, Path] = {}
        if base is not None:
            for d in sorted(base.iterdir()):
                m = _AU_HEADER.match(d.name)
                if d.is_dir() and m:
                    dirs[int(m.group(1))] = d
        return dirs

    @distinct_units
    def units(self) -> Iterator[VideoUnit]:
        """One unit per label file, sorted by subject then task (natural order)."""
        label_files = self._label_files()
        folders, zipped, duplicates = self._scan_frames({(s, t) for s, t, _ in label_files})
        int_dirs = self._int_dirs()
        has_int = bool(set(int_dirs) & set(self.aus))
        for subject, task, path in label_files:
            yield self._unit(subject, task, path, folders, zipped, duplicates,
                             int_dirs if has_int else {})

    def _unit(self, subject: str, task: str, path: Path, folders: dict, zipped: dict,
              duplicates: dict, int_dirs: dict[int, Path]) -> VideoUnit:
        warnings: list[str] = []
        labels, missing_aus = read_occurrence_csv(path, self.aus)
        if missing_aus:
            warnings.append(f"{path}: header lacks AU(s) {missing_aus}: labelled -1")
        key = (subject, task)
        folder = folders.get(key)
        kind = "image"
        index: dict[int, str] = {}
        if folder is not None:
            index = {n: str(p) for n, p in folder.items()}
            if folder.duplicates:
                warnings.append(f"{subject}/{task}: frame numbers named twice, kept the first "
                                f"of {folder.duplicates[:3]}")
        elif key in zipped:
            index, kind = zipped[key], "zip"
        if key in duplicates:
            warnings.append(f"{subject}/{task}: several frame folders, used the first; others "
                            f"{duplicates[key]} (pass images=DIR to choose)")
        intens = self._intensities(subject, task, int_dirs, warnings) if int_dirs else {}
        frames: list[FrameRecord] = []
        missing: list[int] = []
        for n in sorted(labels):
            src = index.get(n, "")
            if not src:
                missing.append(n)
            it = tuple(intens.get(au, {}).get(n, -1) for au in self.aus) if int_dirs else ()
            frames.append(FrameRecord(frame=n, timestamp=n / self.fps, source=src,
                                      source_kind=kind if src else "image", labels=labels[n],
                                      intensities=it))
        if not index:
            warnings.append(f"{path}: no frame folder {subject}/{task} found: all "
                            f"{len(labels)} labelled frames have no image")
        elif missing:
            warnings.append(f"{path}: {len(missing)} of {len(labels)} labelled frames have no "
                            f"image (first: {missing[0]})")
        for au, values in intens.items():
            extra = set(values) - set(labels)
            if extra:
                warnings.append(f"AU_INT AU{au} for {subject}_{task}: {len(extra)} frames not in "
                                f"{path.name} (first: {min(extra)})")
        for w in warnings:
            log.warning("%s", w)
        meta: dict[str, Any] = {"label_file": str(path), "warnings": warnings,
                                "unlabelled_images": len(set(index) - set(labels))}
        return VideoUnit(self.name, subject, task, self.aus, frames, fps=self.fps, meta=meta,
                         group=self.groups.get(subject, ""))


@register_adapter("bp4d+")
class BP4DPlusAdapter(BP4DAdapter):
    """BP4D+ (MMSE): the BP4D layout; frames often in per-subject zips, intensities in AU_INT."""

    name = "bp4d+"
