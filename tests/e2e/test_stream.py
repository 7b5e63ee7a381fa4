"""``/v1/stream`` on the running app: per-connection tracking with the in-process answers, bad and
oversized frames, the API key."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import require_media
from tests.e2e.conftest import APP_ARGS

FRAMES = 8


def _jpegs(name: str) -> list[bytes]:
    """``FRAMES`` JPEG frames of a media file (a still repeated), at most 640 px wide."""
    path = require_media(name) / name
    if path.suffix == ".jpg":
        return [path.read_bytes()] * FRAMES
    cap, out = cv2.VideoCapture(str(path)), []
    while len(out) < FRAMES:
        ok, bgr = cap.read()
        assert ok
        scale = min(1.0, 640 / bgr.shape[1])
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    cap.release()
    return out


def _ws(served: Any, query: str = "", **kw: Any) -> Any:
    from websockets.sync.client import connect

    return connect(served.url.replace("http://", "ws://") + "/v1/stream" + query, max_size=2**24, **kw)


def _stream(served: Any, frames: list[bytes], inject: "dict[int, bytes] | None" = None) -> list[dict[str, Any]]:
    """Send frames one at a time, each after the previous answer (no drops); all replies."""
    replies = []
    with _ws(served) as ws:
        for i, data in enumerate(frames):
            for extra in (inject or {}).get(i, []):
                ws.send(extra)
                replies.append(json.loads(ws.recv(timeout=120)))
            ws.send(data)
            replies.append(json.loads(ws.recv(timeout=120)))
    return replies


@pytest.fixture(scope="module")
def session_factory(served):
    """In-process LiveSessions with the app's ensemble, video face pipeline and smoothing."""
    from components.live import LiveSession
    from components.predictor import Predictor

    predictor = Predictor.from_manifest(str(served.ensemble), "cpu", APP_ARGS["video_faces"])
    return lambda: LiveSession.of(predictor)


def _in_process(session: Any, frames: list[bytes]) -> list[list[dict[str, Any]]]:
    from components.serving_inputs import decode_image

    return [session.push(decode_image(f, 10**8), i) for i, f in enumerate(frames)]


def test_three_clients_get_their_own_tracks_and_the_in_process_answers(served, session_factory) -> None:
    names = ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "0-f15-hao-ph.jpg"]
    streams = {n: _jpegs(n) for n in names}
    # The first client also sends garbage and a text message: each gets an error, the stream goes on.
    inject = {3: [b"not a jpeg at all", "hello"]}
    results: dict[str, list[dict[str, Any]]] = {}

    def client(name: str) -> None:
        results[name] = _stream(served, streams[name], inject if name == names[0] else None)

    threads = [threading.Thread(target=client, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == set(names)
    errors = [r for r in results[names[0]] if "error" in r]
    assert len(errors) == 2 and "JPEG" in errors[0]["error"] and errors[1]["frame"] is None
    for name in names:
        answered = [r for r in results[name] if "rows" in r]
        # Binary messages are numbered as they come: the garbage took frame number 3.
        numbers = [n for n in range(FRAMES + 1) if n != 3] if name == names[0] else list(range(FRAMES))
        assert [r["frame"] for r in answered] == numbers
        # Equal to a session of its own in process: no client's tracks or history leak into another's.
        expected = _in_process(session_factory(), streams[name])
        for reply, rows in zip(answered, expected):
            got = reply["rows"]
            assert [r["face_id"] for r in got] == [r["face_id"] for r in rows]
            for a, b in zip(got, rows):
                assert a["success"] == b["success"] == 1, name
                np.testing.assert_allclose(a["box"], b["box"], atol=0.01)
                np.testing.assert_allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-4)


def test_oversized_frame_closes_with_1009(served) -> None:
    from websockets.exceptions import ConnectionClosed

    limit = APP_ARGS["limits"]["max_body_bytes"]
    with _ws(served) as ws:
        ws.send(b"\xff" * (limit + 1))
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=30)
    assert e.value.rcvd.code == 1009 and "over the limit" in e.value.rcvd.reason


def test_stream_needs_the_api_key_when_one_is_set(served, client) -> None:
    from websockets.exceptions import ConnectionClosed

    from workflows.serve.app import rollout

    frame = _jpegs("0-f15-hao-ph.jpg")[0]
    rollout(str(served.ensemble), api_key="s3cret-key")
    try:
        deadline = time.monotonic() + 60
        while client.get("/v1/models").status_code != 401 and time.monotonic() < deadline:
            time.sleep(0.5)
        with _ws(served, "?api_key=wrong") as ws, pytest.raises(ConnectionClosed) as e:
            ws.send(frame)
            ws.recv(timeout=30)
        assert e.value.rcvd.code == 1008
        with _ws(served, additional_headers={"X-API-Key": "s3cret-key"}) as ws:
            ws.send(frame)
            assert json.loads(ws.recv(timeout=60))["rows"][0]["success"] == 1
        with _ws(served, "?api_key=s3cret-key") as ws:
            ws.send(frame)
            assert "rows" in json.loads(ws.recv(timeout=60))
    finally:
        rollout(str(served.ensemble), api_key="")
        deadline = time.monotonic() + 60
        while client.get("/v1/models").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
