"""What the Serve app accepts from clients: limits, body reading, image and video decoding.

Ray-free and model-free. Every refusal is a ``BadInput`` carrying the HTTP status and a message
that says what was wrong and what to send instead; the ingress turns it into a JSON error and
the replicas carry on. Client bytes are only ever decoded as images (Pillow) or videos
(OpenCV/FFmpeg), never unpickled, and no message repeats them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any, AsyncIterator, Iterator

import numpy as np
from pydantic import BaseModel, Field

__all__ = ["Limits", "BadInput", "read_body", "check_content_type", "decode_image", "video_file",
           "VideoReader", "IMAGE_TYPES", "VIDEO_SUFFIX"]

IMAGE_TYPES = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG", "image/png": "PNG",
               "image/webp": "WEBP"}
"""Accepted image content types and the Pillow format each must really be."""
VIDEO_SUFFIX = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
                "video/x-msvideo": ".avi", "video/x-matroska": ".mkv", "video/mpeg": ".mpg"}
"""File suffix given to an uploaded video of each content type (FFmpeg probes the content anyway)."""
_ANY = ("", "application/octet-stream")


class Limits(BaseModel):
    """Request limits (AppArgs.limits). Anything over a limit is answered 413 before decoding."""

    max_body_bytes: int = Field(20 * 2**20, gt=0)
    """Largest image request body, in bytes."""
    max_image_pixels: int = Field(40_000_000, gt=0)
    """Largest image, width x height, read from the header before decoding (decompression bombs)."""
    max_video_bytes: int = Field(100 * 2**20, gt=0)
    """Largest video request body, in bytes."""
    max_video_frames: int = Field(1800, gt=0)
    """Most frames decoded from one video (counted while decoding, whatever the header claims)."""
    max_video_seconds: float = Field(60.0, gt=0)
    """Longest video, frames / fps."""
    max_video_frame_pixels: int = Field(1920 * 1080, gt=0)
    """Largest video frame, width x height."""
    max_job_bytes: int = Field(20 * 2**30, gt=0)
    """Largest video uploaded to ``POST /v1/jobs`` (streamed to the jobs folder, never held whole)."""
    max_streams: int = Field(8, gt=0)
    """Most ``/v1/stream`` connections one ingress replica holds at once (more: closed 1013)."""
    max_stream_fps: float = Field(30.0, gt=0)
    """Most frames per second one ``/v1/stream`` connection sends; frames over it are dropped,
    each with a message saying so."""


class BadInput(ValueError):
    """An answer that is not a prediction: HTTP ``status`` (4xx for what the client sent, 503
    when a backend replica failed twice) and a message saying what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadInput(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    stream: AsyncIterator[bytes] = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BadInput(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(content_type: str, kind: str) -> str:
    """Normalised content type, or 415 when it cannot be an ``kind`` ('image' or 'video')."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in _ANY:
        return ctype
    if kind == "image":
        if ctype in IMAGE_TYPES:
            return ctype
        if ctype.startswith("image/"):
            raise BadInput(415, f"image type {ctype!r} is not supported: send JPEG, PNG or WebP bytes")
        raise BadInput(415, f"content type {ctype!r} is not an image: send the raw JPEG, PNG or WebP "
                            "bytes with Content-Type image/jpeg, image/png or image/webp")
    if ctype.startswith("video/"):
        return ctype
    raise BadInput(415, f"content type {ctype!r} is not a video: send the raw video bytes "
                        "(MP4, WebM, MOV, AVI) with a video/* Content-Type")


def decode_image(data: bytes, max_pixels: int, expected_format: str = "") -> np.ndarray:
    """JPEG/PNG/WebP bytes → RGB uint8 (H, W, 3), EXIF orientation applied.

    Refuses: empty bodies and non-images (400), other image formats (415), images over
    ``max_pixels`` (413, checked from the header before any pixel is decoded), and truncated or
    corrupt files (400). ``expected_format`` (from the content type) must match the content.
    """
    from PIL import Image, ImageOps

    if not data:
        raise BadInput(400, "empty body (0 bytes): send the image bytes (JPEG, PNG or WebP)")
    with warnings.catch_warnings():
        # Our own pixel limit (below Pillow's) decides; Pillow's bomb warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(BytesIO(data))
        except Image.DecompressionBombError:
            raise BadInput(413, f"image exceeds the limit of {max_pixels} pixels") from None
        except Exception:  # noqa: BLE001 - whatever Pillow cannot identify is not an image
            raise BadInput(400, "the body is not a JPEG, PNG or WebP image") from None
        with im:
            if im.format not in ("JPEG", "PNG", "WEBP"):
                raise BadInput(415, f"image format {im.format} is not supported: send JPEG, PNG or WebP")
            if expected_format and im.format != expected_format:
                raise BadInput(415, f"the content type says {expected_format} but the body is {im.format}")
            w, h = im.size
            if w * h > max_pixels:
                raise BadInput(413, f"image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                    "pixels (checked before decoding)")
            try:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
                return np.asarray(rgb)
            except Exception as e:  # noqa: BLE001 - Pillow raises OSError/SyntaxError/ValueError on bad data
                raise BadInput(400, f"the {im.format} image is truncated or corrupt ({str(e)[:80]})") from None


@contextmanager
def video_file(data: bytes, content_type: str) -> Iterator[str]:
    """The uploaded video bytes as a temporary file (OpenCV reads files), removed afterwards."""
    if not data:
        raise BadInput(400, "empty body (0 bytes): send the video bytes (MP4, WebM, MOV, AVI)")
    suffix = VIDEO_SUFFIX.get(content_type, ".bin")
    fd, path = tempfile.mkstemp(prefix="facsflow-upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


@dataclass
class VideoReader:
    """Frames of an uploaded video under the limits; iterate for RGB frames.

    Opening checks what the container claims (frame size, duration, frame count); iterating
    counts what really decodes, so a header that lies still cannot exceed the limits.
    """

    path: str
    limits: Limits
    fps: float = 0.0
    claimed_frames: int = 0
    width: int = 0
    height: int = 0
    decoded: int = 0

    def __post_init__(self) -> None:
        import cv2

        from PIL import Image

        try:
            with Image.open(self.path) as im:
                fmt = im.format
        except Exception:  # noqa: BLE001 - not a still image: good, it may be a video
            fmt = None
        if fmt:
            raise BadInput(415, f"the body is a still {fmt} image: POST it to /v1/predict")
        cap = cv2.VideoCapture(self.path)
        ok = cap.isOpened()
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) if ok else 0
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) if ok else 0
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if ok else 0.0
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0) if ok else 0.0
        cap.release()
        if not ok or self.width <= 0 or self.height <= 0:
            raise BadInput(400, "the body is not a readable video (MP4, WebM, MOV or AVI)")
        lim = self.limits
        if self.width * self.height > lim.max_video_frame_pixels:
            raise BadInput(413, f"video frames of {self.width}x{self.height} exceed the limit of "
                                f"{lim.max_video_frame_pixels} pixels")
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.claimed_frames = int(count) if 0 < count < 1e9 else 0
        if self.claimed_frames > lim.max_video_frames:
            raise BadInput(413, f"video has {self.claimed_frames} frames, more than the limit of "
                                f"{lim.max_video_frames}")
        if self.claimed_frames / self.fps > lim.max_video_seconds:
            raise BadInput(413, f"video lasts {self.claimed_frames / self.fps:.1f} s, more than the limit of "
                                f"{lim.max_video_seconds:g} s")

    @property
    def frame_limit(self) -> int:
        """Frames allowed by both the frame and the duration limit."""
        return min(self.limits.max_video_frames, int(self.limits.max_video_seconds * self.fps))

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        cap = cv2.VideoCapture(self.path)
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                self.decoded += 1
                if self.decoded > self.frame_limit:
                    raise BadInput(413, f"video is longer than the limit of {self.frame_limit} frames "
                                        f"({self.limits.max_video_seconds:g} s at {self.fps:g} fps)")
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        if not self.decoded:
            raise BadInput(400, "no frame of the video could be decoded")
