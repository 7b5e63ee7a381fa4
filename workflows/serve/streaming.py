"""One ``/v1/stream`` WebSocket connection of the ingress (``AUService.stream``).

Frames come in faster or slower than they are answered; a receiver keeps the newest one in a
slot of one (an older frame still waiting is dropped, with a message) and refuses frames over
the connection's rate, an answerer takes frames from the slot in order, one at a time, through
the face stage (the tracker's state travels with each frame) and the members
(``components.live.LiveSession.answer_async``: causal tracking and smoothing, as ``facsflow
live``). Neither queue grows: memory per connection is one frame and one face history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from components.live import LiveSession
from components.serving_inputs import BadInput

if TYPE_CHECKING:
    from fastapi import WebSocket

log = logging.getLogger("facsflow.serve")

__all__ = ["StreamConnection", "FrameRate"]


class FrameRate:
    """A connection's frame rate limit as a token bucket: ``fps`` frames a second on average,
    bursts of up to one second's worth. A client sending at exactly the limit (a 30 frames/s
    camera against the default 30) keeps every frame whatever its jitter, where a count over the
    last second refused the frames whose predecessor 30 frames back came a millisecond late
    (``benchmarks/live.py`` saw 25 of 301 frames refused so)."""

    def __init__(self, fps: float, now: float) -> None:
        self.fps = float(fps)
        self.tokens = self.fps
        self.at = now

    def allow(self, now: float) -> bool:
        """Whether a frame arriving at ``now`` (seconds, monotonic) is within the limit."""
        self.tokens = min(self.fps, self.tokens + (now - self.at) * self.fps)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class StreamConnection:
    """One connection's session, slot and tracker state; ``run`` until the client leaves."""

    def __init__(self, service: Any, ws: WebSocket) -> None:
        self.service, self.ws = service, ws
        self.served = service.served  # one plan for the connection's life, whatever rolls out
        self.session = LiveSession(self.served.plan, name="stream")
        self.limits = service.settings.limits
        self.slot: "tuple[int, bytes] | None" = None
        self.ready = asyncio.Event()
        self.closed: "tuple[int, str] | None" = None
        self.sending = asyncio.Lock()
        self.state: Any = None
        self.started = time.monotonic()

    async def send(self, message: dict[str, Any]) -> None:
        async with self.sending:
            if self.closed is None:
                await self.ws.send_json(message)

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
            log.info("stream: closed %d %s", code, reason)
            await self.ws.close(code, reason[:120])
        self.ready.set()

    async def run(self) -> None:
        answerer = asyncio.create_task(self.answer_frames())
        try:
            await self.receive_frames()
        finally:
            self.closed = self.closed or (1000, "")
            self.ready.set()
            await answerer

    async def receive_frames(self) -> None:
        rate = FrameRate(self.limits.max_stream_fps, time.monotonic())
        frame = 0
        while self.closed is None:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is None:
                await self.send({"frame": None, "error": "send each frame as a binary message of JPEG bytes"})
                continue
            n, frame = frame, frame + 1
            if len(data) > self.limits.max_body_bytes:
                await self.close(1009, f"frame {n}: {len(data)} bytes, over the limit of {self.limits.max_body_bytes}")
                return
            if not rate.allow(time.monotonic()):
                await self.send({"frame": n, "dropped": True,
                                 "error": f"over the limit of {self.limits.max_stream_fps:g} frames/s: frame dropped"})
                continue
            if self.slot is not None:
                await self.send({"frame": self.slot[0], "dropped": True,
                                 "error": "a newer frame came before this one was answered: frame dropped"})
            self.slot = (n, data)
            self.ready.set()

    async def answer_frames(self) -> None:
        svc, st = self.service, self.served
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.slot is None:
                if self.closed is not None:
                    return
                continue
            (n, data), self.slot = self.slot, None
            t0 = time.perf_counter()
            try:
                res = await svc.stages.stream(data, "", st.video_faces, self.state, self.session.index)
                if "error" not in res:
                    rows = await self.session.answer_async(
                        res["tracks"], n, time.monotonic() - self.started,
                        lambda tracks: svc._answers(st, tracks, True, self.session.source, "stream", smooth=False))
            except BadInput as e:  # a backend replica failed twice: this frame is lost, not the stream
                res = {"error": e.message, "status": e.status}
            if "error" in res:
                if res["status"] == 413:
                    await self.close(1009, f"frame {n}: {res['error']}"[:120])
                    return
                await self.send({"frame": n, "error": res["error"]})
                continue
            self.state = res["state"]
            await self.send({"frame": n, "rows": rows, "width": res["width"], "height": res["height"],
                             "seconds": round(time.perf_counter() - t0, 4)})
            if self.slot is not None:
                self.ready.set()
