"""Aff-Wild2 / ABAW AU-detection adapter.

Labels: ``annotations/AU_Detection_Challenge/{Train_Set,Validation_Set}/<video>.txt`` (older
copies: ``AU_Set/{Train_Set,Validation_Set}``); first line the header ``AU1,AU2,...``, then
line ``i + 1`` holds frame ``i`` (1-indexed), values 1/0/-1 (-1 = not labelled). Frames
labelled all -1 are still yielded (they are real frames and temporal neighbours).

Pixels, ``mode='cropped'`` (default): ``cropped_aligned/<video>/%05d.jpg`` (1-indexed, frames
matched by number), faces already aligned (``VideoUnit.prealigned``); a labelled frame whose
crop is missing (no face found by the organisers) is yielded with ``source=''`` and ends in
the store's rejects as "missing image". ``mode='video'``: the raw videos (any of .mp4/.avi/...
under ``videos=DIR`` or the root); frame ``i`` is video frame ``i - 1``.

Two-person videos have two label files, ``<name>_left.txt`` and ``<name>_right.txt``: two
subjects, both reading the same raw video ``<name>.*``, with ``meta['face']`` = 'left' or
'right' telling preprocessing which face to keep. Each video is one subject (Aff-Wild2 has
roughly one person per video); ``meta['split']`` is 'train' or 'validation'.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from components.au import DATASET_AUS, validate_au_list
from components.datasets.base import (FrameRecord, LayoutError, VideoUnit, distinct_units,
                                      register_adapter)
from components.datasets.folds import read_groups
from components.datasets.media import VIDEO_EXTS, find_dir, index_frame_files, natural_key
from components.datasets.video_io import video_frame_count

__all__ = ["AffWild2Adapter", "read_abaw_labels", "SPLITS"]

log = logging.getLogger(__name__)

SPLITS = {"train_set": "train", "validation_set": "validation"}
"""Annotation folder (lower case) → the split name put in ``meta['split']``."""

_USUAL_SETS = ("annotations/AU_Detection_Challenge", "AU_Detection_Challenge")
_HEAVY = ("cropped_aligned", "videos", "batch1", "batch2")
"""Folders of frames or videos: never listed while looking for the annotations."""
_HEADER_AU = re.compile(r"^\s*AU0*(\d+)\s*$", re.IGNORECASE)
_FACE_SUFFIX = re.compile(r"^(?P<base>.+)_(?P<face>left|right)$")


def read_abaw_labels(path: Path) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Parse an ABAW AU file: (header AUs, one tuple of 1/0/-1 per frame in frame order).

    Raises LayoutError naming file and line for a bad header, a wrong cell count or a value
    other than -1, 0, 1."""
    with open(path) as fh:
        lines = fh.read().splitlines()
    if not lines:
        raise LayoutError(f"{path}: empty label file")
    header = []
    for j, cell in enumerate(lines[0].split(","), start=1):
        m = _HEADER_AU.match(cell)
        if not m:
            raise LayoutError(f"{path}: line 1, column {j}: header cell {cell!r} is not AU<n>")
        header.append(int(m.group(1)))
    rows: list[tuple[int, ...]] = []
    for line, text in enumerate(lines[1:], start=2):
        if not text.strip():
            if any(t.strip() for t in lines[line:]):
                raise LayoutError(f"{path}: line {line}: empty line inside the labels")
            break
        cells = text.split(",")
        if len(cells) != len(header):
            raise LayoutError(f"{path}: line {line}: {len(cells)} values, header has "
                              f"{len(header)}")
        row = []
        for j, c in enumerate(cells):
            try:
                v = int(float(c))
            except ValueError:
                raise LayoutError(f"{path}: line {line}, AU{header[j]}: non-numeric cell "
                                  f"{c.strip()!r}") from None
            if v not in (-1, 0, 1):
                raise LayoutError(f"{path}: line {line}, AU{header[j]}: value {v} "
                                  "(expected 1, 0 or -1)")
            row.append(v)
        rows.append(tuple(row))
    return tuple(header), rows


@register_adapter("affwild2")
class AffWild2Adapter:
    """Aff-Wild2 AU detection (ABAW): one unit per annotation file.

    Options: ``mode`` ('cropped' or 'video'), ``images`` (the cropped_aligned folder if not
    under the root), ``videos`` (folder of raw videos, default the root), ``aus`` (default the
    12 ABAW AUs), ``fps`` (cropped mode: timestamps = (frame - 1) / fps; 0 → frame order),
    ``groups`` (CSV of video → identity group, see ``folds.read_groups``).
    """

    name = "affwild2"

    def __init__(self, root: Path, mode: str = "cropped", images: "str | Path | None" = None,
                 videos: "str | Path | None" = None, aus: "Sequence[int] | None" = None,
                 fps: float = 0.0, verify_count: bool = True,
                 groups: "str | Path | None" = None) -> None:
        if mode not in ("cropped", "video"):
            raise ValueError(f"affwild2: mode must be 'cropped' or 'video', not {mode!r}")
        self.root = Path(root)
        self.mode = mode
        self.images = Path(images) if images else None
        self.videos = Path(videos) if videos else None
        self.aus = validate_au_list(aus) if aus else DATASET_AUS["affwild2"]
        self.fps = float(fps)
        self.verify_count = verify_count
        self.groups = read_groups(groups) if groups else {}

    def label_files(self) -> list[tuple[str, str, Path]]:
        """(video name, split, path) of every annotation file, sorted by video name."""
        sets = (find_dir(self.root, "AU_Detection_Challenge", _USUAL_SETS, 4, _HEAVY)
                or find_dir(self.root, "AU_Set", ("annotations/AU_Set", "AU_Set"), 4, _HEAVY))
        if sets is None:
            raise LayoutError(f"{self.root}: no annotations/AU_Detection_Challenge (or AU_Set) "
                              "folder")
        found: dict[str, tuple[str, str, Path]] = {}
        for d in sorted(sets.iterdir()):
            split = SPLITS.get(d.name.lower())
            if split is None or not d.is_dir():
                continue
            for path in d.glob("*.txt"):
                if path.stem in found:
                    raise LayoutError(f"{path}: video {path.stem!r} also labelled in "
                                      f"{found[path.stem][2]}")
                found[path.stem] = (path.stem, split, path)
        if not found:
            raise LayoutError(f"{sets}: no Train_Set/Validation_Set label files")
        return sorted(found.values(), key=lambda t: natural_key(t[0]))

    def _cropped_dir(self) -> Path:
        if self.images is not None:
            if not self.images.is_dir():
                raise FileNotFoundError(f"affwild2: images folder not found: {self.images}")
            return self.images
        found = find_dir(self.root, "cropped_aligned", ("cropped_aligned",), 3,
                         ("annotations", "videos"))
        if found is None:
            raise LayoutError(f"{self.root}: no cropped_aligned folder (pass images=DIR, or "
                              "mode='video' for raw videos)")
        return found

    def _video_index(self) -> dict[str, Path]:
        base = self.videos or self.root
        index: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d.lower() not in ("cropped_aligned",
                                                                          "annotations"))
            for f in sorted(filenames):
                stem, ext = os.path.splitext(f)
                if ext.lower() in VIDEO_EXTS:
                    index.setdefault(stem, Path(dirpath) / f)
        return index

    @distinct_units
    def units(self) -> Iterator[VideoUnit]:
        """One unit per annotation file, sorted by video name."""
        files = self.label_files()
        if self.mode == "cropped":
            cropped = self._cropped_dir()
            for name, split, path in files:
                yield self._cropped_unit(name, split, path, cropped)
        else:
            videos = self._video_index()
            for name, split, path in files:
                yield self._video_unit(name, split, path, videos)

    def _labels(self, path: Path, warnings: list[str]) -> list[tuple[int, ...]]:
        header, rows = read_abaw_labels(path)
        col = {au: j for j, au in enumerate(header)}
        missing = [a for a in self.aus if a not in col]
        if missing:
            warnings.append(f"{path}: header lacks AU(s) {missing}: labelled -1")
        return [tuple(r[col[a]] if a in col else -1 for a in self.aus) for r in rows]

    def _meta(self, name: str, split: str, path: Path, warnings: list[str]) -> dict[str, Any]:
        m = _FACE_SUFFIX.match(name)
        return {"split": split, "label_file": str(path), "warnings": warnings,
                "face": m.group("face") if m else "",
                "raw_video": m.group("base") if m else name}

    def _cropped_unit(self, name: str, split: str, path: Path, cropped: Path) -> VideoUnit:
        warnings: list[str] = []
        labels = self._labels(path, warnings)
        folder = cropped / name
        index = index_frame_files(folder) if folder.is_dir() else {}
        if not folder.is_dir():
            warnings.append(f"{folder}: no cropped frames for {name}: all frames have no image")
        unknown = (-1,) * len(self.aus)
        n = max(len(labels), max(index, default=0))
        frames, missing = [], 0
        for f in range(1, n + 1):
            src = str(index[f]) if f in index else ""
            missing += not src and f <= len(labels)
            frames.append(FrameRecord(
                frame=f, timestamp=(f - 1) / self.fps if self.fps else float(f - 1),
                source=src, source_kind="image",
                labels=labels[f - 1] if f <= len(labels) else unknown))
        if index and missing:
            warnings.append(f"{name}: {missing} of {len(labels)} labelled frames have no "
                            "cropped image (rejected as missing image)")
        if len(labels) < n:
            warnings.append(f"{path}: {len(labels)} label lines but crops up to frame {n}; "
                            "the extra frames are labelled -1")
        for w in warnings:
            log.warning("%s", w)
        return VideoUnit("affwild2", name, name, self.aus, frames, prealigned=True,
                         fps=self.fps, meta=self._meta(name, split, path, warnings),
                         group=self.groups.get(name, ""))

    def _video_unit(self, name: str, split: str, path: Path, videos: dict[str, Path]) -> VideoUnit:
        warnings: list[str] = []
        labels = self._labels(path, warnings)
        meta = self._meta(name, split, path, warnings)
        video = videos.get(name) or videos.get(meta["raw_video"])
        fps, n_video = self.fps, 0
        if video is None:
            warnings.append(f"{name}: no raw video {meta['raw_video']}.* found: all frames "
                            "have no image")
        else:
            meta["video_path"] = str(video)
            try:
                count = video_frame_count(video, verify=self.verify_count)
                fps, n_video = count.fps or fps, count.frames
            except LayoutError as err:
                warnings.append(f"{err}: all frames have no image")
            if n_video and n_video != len(labels):
                warnings.append(f"{video}: {n_video} video frames but {len(labels)} label lines "
                                f"in {path}; no frame dropped")
        unknown = (-1,) * len(self.aus)
        frames = []
        for f in range(1, max(len(labels), n_video) + 1):
            has_pixels = f <= n_video
            frames.append(FrameRecord(
                frame=f, timestamp=(f - 1) / fps if fps else float(f - 1),
                source=str(video) if has_pixels else "",
                source_kind="video" if has_pixels else "image",
                labels=labels[f - 1] if f <= len(labels) else unknown,
                video_frame=f - 1 if has_pixels else -1))
        for w in warnings:
            log.warning("%s", w)
        return VideoUnit("affwild2", name, name, self.aus, frames, fps=fps, meta=meta,
                         group=self.groups.get(name, ""))
