"""Reading pixels of frame records: images, zip members and video frames (OpenCV).

Everything returns RGB ``uint8`` arrays of shape (H, W, 3). Errors name the file and carry a
``reason`` that matches the feature store's reject reasons ('missing image', 'unreadable').
"""

from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from components.datasets.base import FrameRecord, LayoutError

__all__ = [
    "FrameReadError",
    "MissingFrameError",
    "FrameCount",
    "loop_video",
    "ZIP_SEP",
    "decode_image",
    "read_frame_source",
    "video_frame_count",
    "VideoFrames",
    "iter_video_frames",
]

log = logging.getLogger(__name__)

ZIP_SEP = "::"
"""Separator between a zip archive path and a member name in ``FrameRecord.source``."""


class FrameReadError(OSError):
    """A frame whose pixels cannot be read; ``reason`` is a feature-store reject reason."""

    reason = "unreadable"


class MissingFrameError(FrameReadError, FileNotFoundError):
    """No pixels for the frame at all (empty source, missing file or zip member)."""

    reason = "missing image"


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8; ``where`` names the file in the error."""
    if not data:
        raise FrameReadError(f"{where}: empty file (0 bytes)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FrameReadError(f"{where}: not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_ZIP_LOCK = threading.Lock()


@lru_cache(maxsize=8)
def _open_zip(path: str) -> zipfile.ZipFile:
    # Per-subject archives hold thousands of members; re-reading the central directory for every
    # frame would dominate the cost, so a few archives stay open per process.
    return zipfile.ZipFile(path)


def _read_zip_member(source: str) -> bytes:
    archive, _, member = source.partition(ZIP_SEP)
    if not Path(archive).is_file():
        raise MissingFrameError(f"{archive}: zip archive not found")
    try:
        with _ZIP_LOCK:
            zf = _open_zip(archive)
        return zf.read(member)
    except KeyError:
        raise MissingFrameError(f"{source}: no such member in the archive") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise FrameReadError(f"{archive}: unreadable zip archive ({err})") from None


def read_frame_source(record: FrameRecord) -> np.ndarray:
    """Pixels of one frame record as RGB uint8.

    Images and zip members are decoded directly; a 'video' record is decoded by seeking to
    ``video_frame`` (slow: the preprocess actor streams videos with ``iter_video_frames``).
    Raises ``FrameReadError`` naming the file, with ``reason`` 'unreadable' for anything that
    does not decode, or its subclass ``MissingFrameError`` (also a ``FileNotFoundError``),
    reason 'missing image', for an empty source or a missing file or zip member.
    """
    src = record.source
    if not src:
        raise MissingFrameError(f"frame {record.frame}: no image for this labelled frame")
    if record.source_kind == "zip":
        return decode_image(_read_zip_member(src), src)
    if record.source_kind == "image":
        path = Path(src)
        if not path.is_file():
            raise MissingFrameError(f"{src}: image file not found")
        return decode_image(path.read_bytes(), src)
    if record.source_kind == "video":
        if not Path(src).is_file():
            raise MissingFrameError(f"{src}: video file not found")
        frames = iter(iter_video_frames(src, record.video_frame, record.video_frame + 1))
        try:
            for _, rgb in frames:
                return rgb
        except LayoutError as err:
            raise FrameReadError(str(err)) from None
        finally:
            frames.close()
        raise FrameReadError(f"{src}: frame {record.video_frame} could not be decoded")
    raise FrameReadError(f"{src}: unknown source kind {record.source_kind!r}")


@dataclass(frozen=True)
class FrameCount:
    """Frame count of a video file: what the container claims and what really decodes."""

    frames: int
    """Frames that can be read (equals ``header_frames`` unless the file is damaged)."""
    header_frames: int
    """``CAP_PROP_FRAME_COUNT`` as reported by the container (may be 0 or wrong)."""
    fps: float
    """Frames per second from the container (0.0 when unknown)."""


def _open_video(path: "str | Path") -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"{path}: video file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise LayoutError(f"{path}: cannot be opened as a video")
    return cap


def _count_by_decoding(cap: cv2.VideoCapture) -> int:
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def video_frame_count(path: "str | Path", verify: bool = True) -> FrameCount:
    """Frame count and fps of a video. ``verify`` checks the header's count cheaply (the last
    claimed frame reads, the one after does not) and decodes the whole file only when the
    check fails (damaged files, containers without a count). Raises LayoutError if unreadable.
    """
    cap = _open_video(path)
    try:
        header = max(0, int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not verify:
            return FrameCount(header, header, fps)
        if header > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, header - 1)
            if cap.read()[0] and not cap.grab():
                return FrameCount(header, header, fps)
        return FrameCount(_count_by_decoding(cap), header, fps)
    finally:
        cap.release()


class VideoFrames:
    """Iterator over ``(index, rgb)`` of frames ``start <= index < stop`` of one video.

    A damaged or truncated file ends the iteration early instead of raising: afterwards
    ``decoded`` says how many frames were read, ``truncated`` whether fewer than requested
    came, and a warning naming the file has been logged.
    """

    def __init__(self, path: "str | Path", start: int = 0, stop: "int | None" = None,
                 exact_seek: bool = False) -> None:
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"{path}: bad frame range [{start}, {stop})")
        self.path = Path(path)
        self.start = start
        self.stop = stop
        self.exact_seek = exact_seek
        self.decoded = 0
        self.expected: "int | None" = None
        self.truncated = False
        self.fps = 0.0

    def _seek(self, cap: cv2.VideoCapture) -> cv2.VideoCapture:
        if self.start == 0:
            return cap
        if not self.exact_seek:
            cap.set(cv2.CAP_PROP_POS_FRAMES, self.start)
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == self.start:
                return cap
        # Container seeking failed or was declined: reopen and step frame by frame, which
        # is slower but lands on exactly the same frame as a sequential decode.
        cap.release()
        cap = _open_video(self.path)
        for _ in range(self.start):
            if not cap.grab():
                break
        return cap

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.decoded, self.truncated = 0, False
        cap = _open_video(self.path)
        try:
            header = max(0, int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            end = self.stop if self.stop is not None else (header or None)
            self.expected = None if end is None else max(0, end - self.start)
            cap = self._seek(cap)
            index = self.start
            while self.stop is None or index < self.stop:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                self.decoded += 1
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            cap.release()
        if self.expected is not None and self.decoded < self.expected:
            self.truncated = True
            log.warning("%s: decoded %d of %d frames from frame %d (truncated or damaged)",
                        self.path, self.decoded, self.expected, self.start)


def iter_video_frames(path: "str | Path", start: int = 0, stop: "int | None" = None,
                      exact_seek: bool = False) -> VideoFrames:
    """Frames ``start <= index < stop`` (0-based) of a video as ``(index, rgb)``.

    Returns a ``VideoFrames`` iterable; after iterating, ``.decoded`` and ``.truncated`` report
    how a damaged file ended. ``exact_seek`` steps from frame 0 instead of trusting the
    container's seek. Raises LayoutError when the file is missing or not a video.
    """
    return VideoFrames(path, start, stop, exact_seek)


def loop_video(source: "str | Path", out: "str | Path", frames: int, width: int = 320,
               fps: "float | None" = None, every: int = 1) -> Path:
    """A long video from a short real clip, for tests and benchmarks of long videos: the clip's
    frames (every ``every``-th), resized to ``width`` pixels wide, played forwards then backwards
    (no cut for a tracker to lose the face at) until ``frames`` frames are written (MJPG in an
    AVI, at ``fps``, default the clip's / ``every``). Holds the resized clip, never the output."""
    clip = [cv2.resize(rgb, (width, round(rgb.shape[0] * width / rgb.shape[1])), interpolation=cv2.INTER_AREA)
            for i, rgb in iter_video_frames(source) if i % every == 0]
    if not clip:
        raise LayoutError(f"{source}: no frame could be decoded")
    rate = fps or (video_frame_count(source, verify=False).fps or 30.0) / every
    h, w = clip[0].shape[:2]
    out = Path(out)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), float(rate), (w, h))
    cycle = clip + clip[-2:0:-1] if len(clip) > 2 else clip
    try:
        for n in range(frames):
            writer.write(cv2.cvtColor(cycle[n % len(cycle)], cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return out
