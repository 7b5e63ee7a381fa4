"""Media files on disk: which files are frames, how frame numbers are read from their names,
and the ``media`` adapter (plain folders of videos and images, no labels, for prediction).

Dataset copies differ in how frame files are named (``7.jpg``, ``0007.jpg``, ``00007.jpg``):
``index_frame_files`` maps a folder's images by frame *number*, whatever the padding.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from components.datasets.base import (FrameRecord, LayoutError, VideoUnit, distinct_units,
                                      register_adapter)

__all__ = [
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "natural_key",
    "frame_number",
    "FrameIndex",
    "index_frame_files",
    "find_dirs",
    "find_dir",
    "MediaAdapter",
]

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""Lower-case suffixes read as still images."""
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""Lower-case suffixes read as videos."""

_NUMBER = re.compile(r"^(?:frame[_-]?|img[_-]?)?(\d+)$", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically ('T2' < 'T10', 'SN2' < 'SN10')."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in _DIGITS.split(text))


def frame_number(name: str) -> "int | None":
    """Frame number in an image file name ('0007.jpg', '7.png', 'frame_0007.jpg' → 7), or None."""
    stem, ext = os.path.splitext(name)
    if ext.lower() not in IMAGE_EXTS:
        return None
    m = _NUMBER.match(stem)
    return int(m.group(1)) if m else None


class FrameIndex(dict):
    """Frame number → file path of one frame folder; ``duplicates`` lists names that collided
    (e.g. both ``7.jpg`` and ``0007.jpg``: the first in sorted order wins)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[str] = []


def index_frame_files(folder: "str | Path", names: "Iterable[str] | None" = None) -> FrameIndex:
    """Map frame number → path for the numbered images directly inside ``folder``.

    ``names`` may pass an already-read listing (saves a second directory read on huge trees).
    """
    folder = Path(folder)
    if names is None:
        names = os.listdir(folder)
    index = FrameIndex()
    for name in sorted(names):
        n = frame_number(name)
        if n is None:
            continue
        if n in index:
            index.duplicates.append(name)
            continue
        index[n] = folder / name
    return index


def find_dirs(root: "str | Path", name: str, max_depth: int = 4,
              skip: Iterable[str] = ()) -> list[Path]:
    """Directories called ``name`` (case-insensitive) at the shallowest depth under ``root``
    (0 = root itself) where there is one, sorted.

    A breadth-first search that stops at the first depth with a match, never lists a folder
    deeper than ``max_depth - 1`` and never enters folders named in ``skip``: frame folders
    hold thousands of files and listing them to look for a label folder would dominate.
    """
    root = Path(root)
    skipped = {s.lower() for s in skip}
    frontier = [root]
    for depth in range(max_depth + 1):
        found = sorted(d for d in frontier if d.name.lower() == name.lower())
        if found or depth == max_depth:
            return found
        nxt: list[Path] = []
        for d in frontier:
            if d.name.lower() in skipped:
                continue
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except (NotADirectoryError, PermissionError, FileNotFoundError):
                continue
            nxt.extend(Path(e.path) for e in entries if e.is_dir())
        frontier = nxt
    return []


def find_dir(root: "str | Path", name: str, usual: Iterable[str] = (), max_depth: int = 4,
             skip: Iterable[str] = ()) -> "Path | None":
    """The folder ``name``: the first of the ``usual`` relative paths that exists, else the
    first ``find_dirs`` match, else None."""
    root = Path(root)
    for rel in usual:
        if (root / rel).is_dir():
            return root / rel
    found = find_dirs(root, name, max_depth, skip)
    return found[0] if found else None


@register_adapter("media")
class MediaAdapter:
    """Plain folders of videos and images, without labels (``facsflow predict`` inputs).

    Every video file is one unit (``video`` = its path relative to the root, suffix kept:
    ``clip.mp4`` and ``clip.jpg``, or ``a/face.jpg`` and ``b/face.jpg``, are different inputs and
    stay different videos); every loose image is a unit of one frame. The subject is the file's
    parent folder relative to the root ('.' at the top level) unless ``subject`` is given.
    Labels are empty.
    """

    name = "media"

    def __init__(self, root: Path, subject: str = "", recursive: bool = True,
                 verify_count: bool = True) -> None:
        self.root = Path(root)
        self.aus: tuple[int, ...] = ()
        self.subject = subject
        self.recursive = recursive
        self.verify_count = verify_count

    def _files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        pattern = "**/*" if self.recursive else "*"
        return sorted((p for p in self.root.glob(pattern) if p.is_file()),
                      key=lambda p: natural_key(p.relative_to(self.root).as_posix()))

    @distinct_units
    def units(self) -> Iterator[VideoUnit]:
        """One unit per video, one single-frame unit per image, sorted by relative path."""
        from components.datasets.video_io import video_frame_count

        base = self.root.parent if self.root.is_file() else self.root
        for path in self._files():
            ext = path.suffix.lower()
            if ext not in VIDEO_EXTS and ext not in IMAGE_EXTS:
                continue
            rel = path.relative_to(base)
            subject = self.subject or (rel.parent.as_posix() or ".")
            video = rel.as_posix()
            meta: dict[str, Any] = {"path": str(path), "warnings": []}
            if ext in IMAGE_EXTS:
                rec = FrameRecord(frame=0, timestamp=0.0, source=str(path), source_kind="image")
                yield VideoUnit("media", subject, video, (), [rec], meta=meta)
                continue
            try:
                count = video_frame_count(path, verify=self.verify_count)
            except LayoutError as err:
                # An unreadable video is one unit of zero frames with the reason in its warnings:
                # the preprocess stage records it rather than the whole job failing.
                log.warning("%s", err)
                meta["warnings"].append(str(err))
                yield VideoUnit("media", subject, video, (), [], meta=meta)
                continue
            fps = count.fps if count.fps > 0 else 0.0
            if count.header_frames != count.frames:
                msg = (f"{path}: header says {count.header_frames} frames, "
                       f"{count.frames} decodable")
                log.warning("%s", msg)
                meta["warnings"].append(msg)
            # A truncated file keeps the frames its header promises: the ones that do not decode
            # end in the store's rejects ("unreadable") instead of vanishing.
            n = max(count.header_frames, count.frames)
            frames = [FrameRecord(frame=i, timestamp=(i / fps if fps else float(i)),
                                  source=str(path), source_kind="video", video_frame=i)
                      for i in range(n)]
            yield VideoUnit("media", subject, video, (), frames, fps=fps, meta=meta)
