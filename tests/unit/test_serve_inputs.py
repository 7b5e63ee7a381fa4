"""What the Serve app accepts, without Serve: every refusal has the right HTTP status and says
what was wrong; limits are checked before decoding (header) and while decoding (real frames)."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from PIL import Image

from components.serving_inputs import BadInput, Limits, VideoReader, check_content_type, decode_image, read_body, video_file



def _encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


@contextmanager
def _refused(status: int, match: str) -> Iterator[None]:
    """Expect a BadInput with this HTTP status and a message matching ``match``."""
    with pytest.raises(BadInput, match=match) as info:
        yield
    assert info.value.status == status, (info.value.status, info.value.message)


@pytest.mark.parametrize("ctype,kind,want", [
    ("image/jpeg", "image", "image/jpeg"), ("Image/PNG; charset=binary", "image", "image/png"),
    ("", "image", ""), ("application/octet-stream", "video", "application/octet-stream"),
    ("video/mp4", "video", "video/mp4"), ("video/x-unknown", "video", "video/x-unknown"),
])
def test_accepted_content_types_are_normalised(ctype: str, kind: str, want: str) -> None:
    assert check_content_type(ctype, kind) == want


@pytest.mark.parametrize("ctype,kind,match", [
    ("image/gif", "image", "image type 'image/gif' is not supported: send JPEG, PNG or WebP"),
    ("text/plain", "image", "'text/plain' is not an image"),
    ("image/jpeg", "video", "'image/jpeg' is not a video"),
])
def test_wrong_content_types_are_415_with_what_to_send(ctype: str, kind: str, match: str) -> None:
    with _refused(415, match):
        check_content_type(ctype, kind)


def test_image_decodes_to_rgb_with_exif_orientation_applied() -> None:
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)                                   # left half red
    assert decode_image(_encode(rgb, "PNG"), 10_000).shape == (20, 40, 3)
    exif = Image.Exif()
    exif[0x0112] = 6                                            # orientation: rotate 90° clockwise
    out = decode_image(_encode(rgb, "JPEG", exif=exif, quality=95), 10_000, expected_format="JPEG")
    assert out.shape == (40, 20, 3)                             # upright: portrait
    assert out[:15, :, 0].mean() > 200 and out[25:, :, 0].mean() < 60   # red on top after rotation


@pytest.mark.parametrize("body,status,match", [
    (b"", 400, "empty body"),
    (b"%PDF-1.4 not an image" * 10, 400, "not a JPEG, PNG or WebP image"),
])
def test_non_images_are_400(body: bytes, status: int, match: str) -> None:
    with _refused(status, match):
        decode_image(body, 10_000)


def test_other_formats_and_mismatched_types_are_415() -> None:
    rgb = np.full((8, 8, 3), 128, np.uint8)
    with _refused(415, "image format BMP is not supported"):
        decode_image(_encode(rgb, "BMP"), 10_000)
    with _refused(415, "the content type says JPEG but the body is PNG"):
        decode_image(_encode(rgb, "PNG"), 10_000, expected_format="JPEG")


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 6000 x 6000 of one colour: 36 Mpixel in a PNG of about 100 kB (a small decompression bomb).
    bomb = _encode(np.zeros((6000, 6000, 3), np.uint8), "PNG", optimize=True)
    assert len(bomb) < 500_000
    with _refused(413, "6000x6000 = 36000000 pixels exceeds the limit of 1000000 pixels"):
        decode_image(bomb, 1_000_000)


def test_truncated_jpeg_is_400_corrupt() -> None:
    rng = np.random.default_rng(0)
    jpeg = _encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    with _refused(400, "the JPEG image is truncated or corrupt"):
        decode_image(jpeg[: len(jpeg) // 2], 10_000)


def _request(body: bytes, declared: "int | None", chunk: int = 1000):
    from starlette.requests import Request

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]

    async def receive():
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def test_body_is_read_whole_under_the_limit_and_refused_over_it() -> None:
    body = bytes(range(256)) * 20
    assert asyncio.run(read_body(_request(body, len(body)), 10_000)) == body
    with _refused(413, "request body of 5120 bytes exceeds the limit of 5000 bytes"):
        asyncio.run(read_body(_request(body, len(body)), 5000))
    # A client that declares no length (chunked) is cut off while streaming.
    with _refused(413, "request body exceeds the limit of 5000 bytes"):
        asyncio.run(read_body(_request(body, None), 5000))


def _video(path: Path, frames: int, fps: float = 10.0, size=(64, 48)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        w.write(np.full((size[1], size[0], 3), i * 8 % 255, np.uint8))
    w.release()
    return path


def test_video_frames_are_decoded_and_counted(tmp_path: Path) -> None:
    reader = VideoReader(str(_video(tmp_path / "v.avi", 12)), Limits())
    frames = list(reader)
    assert len(frames) == reader.decoded == reader.claimed_frames == 12
    assert frames[0].shape == (48, 64, 3) and reader.fps == 10.0


def test_video_over_the_frame_and_duration_limits_is_413(tmp_path: Path) -> None:
    path = str(_video(tmp_path / "v.avi", 30))                 # 30 frames at 10 fps = 3 s
    with _refused(413, "video has 30 frames, more than the limit of 20"):
        VideoReader(path, Limits(max_video_frames=20))
    with _refused(413, "video lasts 3.0 s, more than the limit of 2 s"):
        VideoReader(path, Limits(max_video_seconds=2.0))
    with _refused(413, "video frames of 64x48 exceed the limit of 1000 pixels"):
        VideoReader(path, Limits(max_video_frame_pixels=1000))


def test_header_that_understates_length_is_still_cut_at_the_limit(tmp_path: Path) -> None:
    reader = VideoReader(str(_video(tmp_path / "v.avi", 30)), Limits(max_video_frames=40))
    reader.limits = Limits(max_video_frames=25)                 # as if the header had claimed fewer
    with _refused(413, "video is longer than the limit of 25 frames"):
        list(reader)
    assert reader.decoded == 26


def test_still_image_and_garbage_posted_as_video_are_refused(tmp_path: Path) -> None:
    still = _encode(np.zeros((16, 16, 3), np.uint8), "JPEG")
    with video_file(still, "video/mp4") as path:
        with _refused(415, "still JPEG image: POST it to /v1/predict"):
            VideoReader(path, Limits())
    with video_file(b"\x00\x01 not a video" * 100, "video/mp4") as path:
        assert path.endswith(".mp4")
        with _refused(400, "not a readable video"):
            VideoReader(path, Limits())
    assert not Path(path).exists(), "the upload's temporary file is removed"
    with _refused(400, "empty body"):
        with video_file(b"", "video/mp4"):
            pass
