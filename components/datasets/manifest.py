"""Manifest adapter: a CSV that lists frames of any other data set.

Columns (header names are case-insensitive):

- ``path``: an image file, relative to the root; or, without ``path``, ``video`` (a video
  file, relative to the root) plus ``frame`` (0-based frame index in that video);
- ``subject`` (required); ``video`` (with ``path``: a sequence name grouping rows into one
  unit; default the image's folder); ``frame`` (the frame number; default the row order inside
  its unit); ``group`` (identity group for folds; default the subject);
- AU columns, named ``AU1``, ``AU01`` or ``1``: 1, 0, or -1 / empty for unknown. The AU list is
  taken from these columns in the order they appear and checked against the catalogue.

Rows are grouped into units by (subject, video); each unit's frames are sorted by frame.

A root without ``manifest.csv`` (and no ``manifest`` option) is read as a plain folder of
unlabeled videos and images, exactly as the ``media`` dataset reads it (one unit per video, one
per loose image, subject = the parent folder), with no AU list: what a teacher labels for
distillation.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from components.au import validate_au_list
from components.datasets.base import (FrameRecord, LayoutError, VideoUnit, distinct_units,
                                      register_adapter)
from components.datasets.media import MediaAdapter, natural_key

__all__ = ["ManifestAdapter", "au_columns"]

log = logging.getLogger(__name__)

_AU_COLUMN = re.compile(r"^\s*(?:AU)?0*(\d+)\s*$", re.IGNORECASE)
_KNOWN = {"path", "subject", "video", "frame", "group"}


def au_columns(header: Sequence[str]) -> dict[int, str]:
    """AU number → column name for the AU columns of a manifest header, in header order."""
    out: dict[int, str] = {}
    for name in header:
        m = _AU_COLUMN.match(name)
        if m and name.strip().lower() not in _KNOWN:
            au = int(m.group(1))
            if au in out:
                raise LayoutError(f"AU{au} appears twice in the manifest header "
                                  f"({out[au]!r}, {name!r})")
            out[au] = name
    return out


def _label(text: str, path: Path, line: int, column: str) -> int:
    t = text.strip()
    if t == "":
        return -1
    try:
        v = int(float(t))
    except ValueError:
        raise LayoutError(f"{path}: line {line}, column {column!r}: non-numeric cell {t!r}") from None
    if v not in (-1, 0, 1):
        raise LayoutError(f"{path}: line {line}, column {column!r}: label {v} "
                          "(expected 1, 0 or -1)")
    return v


@register_adapter("manifest")
class ManifestAdapter:
    """Frames listed in a CSV manifest (see the module docstring for the columns).

    Options: ``manifest`` (the CSV; default ``<root>/manifest.csv``), ``aus`` (a subset or
    reordering of the manifest's AU columns), ``dataset`` (the name written into sample ids).
    """

    name = "manifest"

    def __init__(self, root: Path, manifest: "str | Path | None" = None,
                 aus: "Sequence[int] | None" = None, dataset: str = "manifest") -> None:
        self.root = Path(root)
        self.path = Path(manifest) if manifest else self.root / "manifest.csv"
        self.dataset = dataset
        self._folder: "MediaAdapter | None" = None
        if not self.path.is_file():
            if manifest or not self.root.is_dir():
                raise FileNotFoundError(f"manifest not found: {self.path}")
            if aus:
                raise LayoutError(f"{self.root}: no manifest.csv, so no labels: AU(s) {list(aus)} cannot be "
                                  "read (a plain folder is unlabeled; give a manifest with AU columns)")
            log.info("%s has no manifest.csv: reading it as a plain folder of unlabeled videos and images",
                     self.root)
            self._folder = MediaAdapter(self.root)
            self.aus = ()
            return
        with open(self.path, newline="") as fh:
            header = next(csv.reader(fh), [])
        self._columns = {h.strip().lower(): h for h in header}
        try:
            cols = au_columns(header)
        except LayoutError as err:
            raise LayoutError(f"{self.path}: line 1: {err}") from None
        if "subject" not in self._columns:
            raise LayoutError(f"{self.path}: line 1: no 'subject' column")
        if "path" not in self._columns and not {"video", "frame"} <= set(self._columns):
            raise LayoutError(f"{self.path}: line 1: needs a 'path' column or 'video' and "
                              "'frame' columns")
        try:
            found = validate_au_list(list(cols)) if cols else ()
        except ValueError as err:
            raise LayoutError(f"{self.path}: line 1: {err}") from None
        if aus:
            extra = [a for a in aus if a not in cols]
            if extra:
                raise LayoutError(f"{self.path}: AU(s) {extra} requested but not in the "
                                  f"manifest columns {list(found)}")
            found = validate_au_list(aus)
        self._au_col = cols
        self.aus: tuple[int, ...] = tuple(found)

    def _cell(self, row: dict, key: str) -> str:
        col = self._columns.get(key)
        return (row.get(col) or "").strip() if col else ""

    @distinct_units
    def units(self) -> Iterator[VideoUnit]:
        """Units sorted by (subject, video), frames sorted by frame number."""
        if self._folder is not None:
            for unit in self._folder.units():
                yield replace(unit, dataset=self.dataset)
            return
        by_path = "path" in self._columns
        units: dict[tuple[str, str], dict[str, Any]] = {}
        groups: dict[str, tuple[str, int]] = {}
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                line = reader.line_num
                if not any((v or "").strip() for v in row.values()):
                    continue
                subject = self._cell(row, "subject")
                if not subject:
                    raise LayoutError(f"{self.path}: line {line}: empty subject")
                group = self._cell(row, "group") or subject
                if groups.setdefault(subject, (group, line))[0] != group:
                    raise LayoutError(f"{self.path}: line {line}: subject {subject!r} in group "
                                      f"{group!r}, but in {groups[subject][0]!r} at line "
                                      f"{groups[subject][1]}")
                labels = tuple(_label(row.get(self._au_col[a]) or "", self.path, line,
                                      self._au_col[a]) for a in self.aus)
                frame_text = self._cell(row, "frame")
                if by_path:
                    rel = self._cell(row, "path")
                    if not rel:
                        raise LayoutError(f"{self.path}: line {line}: empty path")
                    src = self.root / rel
                    video = self._cell(row, "video") or (Path(rel).parent.as_posix() or ".")
                    kind = "image"
                else:
                    rel = self._cell(row, "video")
                    if not rel or not frame_text:
                        raise LayoutError(f"{self.path}: line {line}: empty video or frame")
                    src = self.root / rel
                    video = Path(rel).with_suffix("").as_posix()
                    kind = "video"
                unit = units.setdefault((subject, video), {"group": group, "rows": []})
                if kind == "video":
                    # One unit reads one video file: 'clip.mp4' and 'clip.avi' of one subject
                    # would share the video id 'clip' and their frames would interleave.
                    first = unit.setdefault("file", (src, line))
                    if first[0] != src:
                        raise LayoutError(f"{self.path}: line {line}: {src} and {first[0]} (line "
                                          f"{first[1]}) both give video {subject}/{video}; list one")
                if frame_text:
                    try:
                        frame = int(frame_text)
                    except ValueError:
                        raise LayoutError(f"{self.path}: line {line}, column 'frame': "
                                          f"non-numeric cell {frame_text!r}") from None
                else:
                    frame = len(unit["rows"])
                unit["rows"].append((frame, line, src, kind, labels))
        for (subject, video) in sorted(units, key=lambda k: (natural_key(k[0]), natural_key(k[1]))):
            yield self._unit(subject, video, units[(subject, video)])

    @staticmethod
    def _fps(rows: list, warnings: list[str]) -> float:
        """Frame rate of a video unit (timestamps = frame / fps); 0.0 for image units."""
        from components.datasets.video_io import video_frame_count

        src, kind = rows[0][2], rows[0][3]
        if kind != "video" or not src.is_file():
            return 0.0
        try:
            count = video_frame_count(src, verify=False)
        except LayoutError as err:
            warnings.append(str(err))
            return 0.0
        beyond = [r[0] for r in rows if r[0] >= count.header_frames]
        if count.header_frames and beyond:
            warnings.append(f"{src}: {len(beyond)} listed frame(s) at or past the video's "
                            f"{count.header_frames} frames (first: {min(beyond)})")
        return count.fps

    def _unit(self, subject: str, video: str, unit: dict[str, Any]) -> VideoUnit:
        warnings: list[str] = []
        frames: list[FrameRecord] = []
        seen: dict[int, int] = {}
        missing = []
        fps = self._fps(unit["rows"], warnings)
        for frame, line, src, kind, labels in sorted(unit["rows"], key=lambda r: r[0]):
            if frame in seen:
                raise LayoutError(f"{self.path}: line {line}: frame {frame} of {subject}/{video} "
                                  f"already listed at line {seen[frame]}")
            seen[frame] = line
            exists = src.is_file()
            if not exists:
                missing.append(str(src))
            frames.append(FrameRecord(
                frame=frame, timestamp=frame / fps if fps else float(frame), source=str(src) if exists else "",
                source_kind=kind if exists else "image", labels=labels,
                video_frame=frame if kind == "video" and exists else -1))
        if missing:
            warnings.append(f"{self.path}: {len(missing)} listed file(s) of {subject}/{video} not "
                            f"found (first: {missing[0]}): rejected as missing image")
        for w in warnings:
            log.warning("%s", w)
        return VideoUnit(self.dataset, subject, video, self.aus, frames, group=unit["group"],
                         fps=fps, meta={"manifest": str(self.path), "warnings": warnings})
