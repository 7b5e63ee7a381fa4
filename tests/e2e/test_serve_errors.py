"""Every bad input gets a 4xx JSON error that says what was wrong, and the app keeps serving.

Limits come from the test app's config (tests/e2e/conftest.py): 2 MB image bodies, 4 Mpixel
images, 10 s videos.
"""

from __future__ import annotations

import io
import os

import pytest

from tests.conftest import require_media



def _png(width: int, height: int, mode: str = "L", fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, fmt)
    return buf.getvalue()


def _jpeg() -> bytes:
    return (require_media("single_face.jpg") / "single_face.jpg").read_bytes()


def _media(name: str) -> bytes:
    return (require_media(name) / name).read_bytes()


# (case id, path, body factory, content type, status, words the error must contain)
CASES = [
    ("zero-bytes", "/v1/predict", lambda: b"", "image/jpeg", 400, "empty body"),
    ("not-an-image", "/v1/predict", lambda: b"%PDF-1.4 hello", "image/jpeg", 400, "not a JPEG, PNG or WebP"),
    ("truncated-jpeg", "/v1/predict", lambda: _jpeg()[: len(_jpeg()) // 2], "image/jpeg", 400, "truncated"),
    ("wrong-content-type", "/v1/predict", _jpeg, "text/plain", 415, "'text/plain' is not an image"),
    ("unsupported-image-type", "/v1/predict", lambda: _png(40, 40, "RGB", "GIF"), "image/gif", 415, "image/gif"),
    ("content-type-lies", "/v1/predict", _jpeg, "image/png", 415, "says PNG but the body is JPEG"),
    ("oversize-body", "/v1/predict", lambda: os.urandom(2_000_001), "image/jpeg", 413,
     "exceeds the limit of 2000000 bytes"),
    # 25 Mpixel of zeros compress to ~25 kB: refused from the header, before any decoding.
    ("decompression-bomb", "/v1/predict", lambda: _png(5000, 5000), "image/png", 413, "5000x5000 = 25000000 pixels"),
    ("video-zero-bytes", "/v1/predict/video", lambda: b"", "video/mp4", 400, "empty body"),
    ("video-not-a-video", "/v1/predict/video", lambda: os.urandom(40_000), "video/mp4", 400, "not a readable video"),
    ("video-is-a-photo", "/v1/predict/video", _jpeg, "video/mp4", 415, "still JPEG image"),
    ("video-wrong-type", "/v1/predict/video", lambda: _media("single_face.mp4"), "image/jpeg", 415, "not a video"),
    ("video-too-long", "/v1/predict/video", lambda: _media("WolfgangLanger_Pexels.mp4"), "video/mp4", 413,
     "lasts 19.7 s, more than the limit of 10 s"),
    ("video-without-face", "/v1/predict/video", lambda: _media("no_face.mp4"), "video/mp4", 422, "no face found"),
]


@pytest.mark.parametrize("path,body,ctype,status,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_the_app_stays_healthy(client, path, body, ctype, status, words) -> None:
    r = client.post(path, content=body(), headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert words in r.json()["error"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_after_all_the_bad_inputs_a_good_one_still_works(client) -> None:
    r = client.post("/v1/predict", content=_jpeg(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["n_faces"] == 1


def test_binding_beyond_loopback_needs_an_api_key() -> None:
    from workflows.core.runtime import UserError
    from workflows.serve.app import start

    with pytest.raises(UserError, match="set --api-key"):
        start("/nonexistent", host="0.0.0.0", port=1)
