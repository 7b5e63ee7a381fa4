"""Frames of a live source for ``components.live``: a camera index, a stream URL, or a file.

A capture thread reads the source into a slot that holds one frame. A camera or a stream never
waits for its reader: when the answering falls behind, the frame in the slot is replaced by the
newer one and counted as dropped, so memory stays one frame whatever the lag and the answers stay
current. A file is played at its own frame rate (``realtime``: the thread sleeps to the file's
fps and drops like a camera) or as fast as the reader takes frames (no frame dropped: what
``predict`` sees).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LiveFrame", "FrameSource", "open_capture"]


@dataclass
class LiveFrame:
    """One captured frame."""

    frame: int
    """Frame number at the source (counting dropped frames)."""
    timestamp: float
    """Seconds: frame / fps for a file, since the first frame for a camera or stream."""
    rgb: np.ndarray
    """RGB uint8 (H, W, 3)."""


def open_capture(source: str) -> Any:
    """An OpenCV capture of ``source``: a camera index ("0"), a URL (rtsp://, http://) or a file."""
    import cv2

    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise ValueError(f"cannot open the live source {source!r} (a camera index, a stream URL or a video file)")
    return cap


class FrameSource:
    """The latest frame of ``source``, read by a capture thread (a bounded slot of one frame)."""

    def __init__(self, source: str, realtime: bool = True, max_frames: int = 0) -> None:
        from pathlib import Path

        self.source = str(source)
        self.is_file = not self.source.isdigit() and "://" not in self.source and Path(self.source).is_file()
        self.realtime = bool(realtime) or not self.is_file
        """Whether frames come at the source's pace (dropped when the reader is slower)."""
        self.max_frames = int(max_frames)
        self._cap = open_capture(self.source)
        fps = float(self._cap.get(5) or 0.0)  # cv2.CAP_PROP_FPS
        self.fps = fps if fps > 0 else 30.0
        self.captured = 0
        """Frames read from the source."""
        self.dropped = 0
        """Frames replaced in the slot before the reader took them."""
        self._slot: "LiveFrame | None" = None
        self._ended = False
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="facsflow-capture", daemon=True)

    def __enter__(self) -> "FrameSource":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the capture thread and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._cap.release()

    def _run(self) -> None:
        import cv2

        start = time.monotonic()
        try:
            while not self._stop.is_set() and (not self.max_frames or self.captured < self.max_frames):
                ok, bgr = self._cap.read()
                if not ok:
                    break
                n = self.captured
                if self.is_file:
                    stamp = n / self.fps
                    if self.realtime:
                        delay = start + stamp - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                else:
                    stamp = time.monotonic() - start
                self._put(LiveFrame(n, round(stamp, 4), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                self.captured += 1
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _put(self, item: LiveFrame) -> None:
        with self._cond:
            if not self.realtime:  # a file as fast as it is read: wait for the reader
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
            elif self._slot is not None:
                self.dropped += 1
            self._slot = item
            self._cond.notify_all()

    def get(self, timeout: "float | None" = None) -> "LiveFrame | None":
        """The newest frame not yet taken (waiting for one); None once the source has ended
        (or ``timeout`` seconds passed without a frame)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slot is not None or self._ended or self._stop.is_set(), timeout):
                return None
            item, self._slot = self._slot, None
            self._cond.notify_all()
            return item
