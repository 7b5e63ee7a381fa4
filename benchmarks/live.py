"""Real-time budget of live answering: ``facsflow live`` from a file, and ``/v1/stream`` latency.

    .venv/bin/python benchmarks/live.py [--json benchmarks/results/live.json] [--seconds 10]

1. ``live`` (``workflows.live.run_live``) on WolfgangLanger_Pexels.mp4 and single_face.mp4 from
   ../shared/media, one face, the built-in detector, torch and OpenCV on one thread: played at
   the file's own rate (``realtime``: answered frames/s and dropped %, the real-time figure) and
   as fast as answered (every frame: the processing rate). Per setting of ``detect_every`` and
   ``detect_scale`` (what limits the rate: detection frames cost more than tracked ones), with the
   share of time per stage measured in process (face pipeline, members and combination).
2. ``/v1/stream`` against a local Serve app (fused layout, the built-in): frames of
   single_face.mp4 as JPEG sent at 15 and 30 frames/s on one connection for ``--seconds``;
   latency per frame from send to its answer, p50/p99, answered and dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")


def live_figures(video: Path, faces: dict[str, Any]) -> dict[str, Any]:
    """Realtime and as-fast-as-answered runs of ``run_live`` on ``video`` and a stage split."""
    from workflows.live import LiveConfig, run_live

    base = dict(source=str(video), out="", smooth_window=5, **faces)
    out: dict[str, Any] = {}
    sink = open("/dev/null", "w")
    stdout, sys.stdout = sys.stdout, sink  # rows go to stdout without --out
    try:
        for realtime in (True, False):
            res = run_live(LiveConfig(realtime=realtime, status_seconds=1e9, **base))
            out["realtime" if realtime else "every_frame"] = res
    finally:
        sys.stdout = stdout
        sink.close()
    out["stages"] = stage_split(video, faces)
    return out


def stage_split(video: Path, faces: dict[str, Any], frames: int = 120) -> dict[str, float]:
    """Milliseconds per frame in the face pipeline (decode excluded) and in members + combination."""
    from components.datasets.video_io import iter_video_frames
    from components.inference import image_tracks
    from components.live import LiveSession
    from components.predictor import Predictor

    pred = Predictor.from_manifest(None, "cpu", faces)
    session = LiveSession.of(pred)
    rgbs = [rgb for _, rgb in zip(range(frames), (f for _, f in iter_video_frames(video)))]
    pipe_s = answer_s = 0.0
    for i, rgb in enumerate(rgbs):
        t0 = time.perf_counter()
        tracks = image_tracks(session._pipeline.step(rgb, session.index))
        t1 = time.perf_counter()
        session.answer(tracks, i, None, lambda t: pred.answer_tracks(t, True, session.source, "live", smooth=False))
        pipe_s, answer_s = pipe_s + t1 - t0, answer_s + time.perf_counter() - t1
    n = max(len(rgbs), 1)
    return {"face_pipeline_ms": round(1000 * pipe_s / n, 2), "members_combine_ms": round(1000 * answer_s / n, 2),
            "frames": n}


def stream_figures(seconds: float) -> dict[str, Any]:
    """p50/p99 latency over /v1/stream at 15 and 30 frames/s sent (a local fused app, the built-in)."""
    import cv2
    import ray
    from ray import serve
    from websockets.sync.client import connect

    from tests.e2e.conftest import free_port
    from workflows.core.runtime import init_ray
    from workflows.serve.app import start

    cap, jpegs = cv2.VideoCapture(str(MEDIA / "single_face.mp4")), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    init_ray(num_cpus=2)
    out: dict[str, Any] = {}
    try:
        url = start("", "127.0.0.1", free_port(), app={"ingress": {"max_replicas": 1}})
        for fps in (15, 30):
            sent: dict[int, float] = {}
            lat, dropped, errors = [], 0, 0
            with connect(url.replace("http://", "ws://") + "/v1/stream", max_size=2**24) as ws:
                done = threading.Event()

                def receive() -> None:
                    nonlocal dropped, errors
                    while not done.is_set() or len(lat) + dropped + errors < len(sent):
                        try:
                            msg = json.loads(ws.recv(timeout=5))
                        except TimeoutError:
                            return
                        if "rows" in msg:
                            lat.append(time.perf_counter() - sent[msg["frame"]])
                        elif msg.get("dropped"):
                            dropped += 1
                        else:
                            errors += 1

                reader = threading.Thread(target=receive)
                reader.start()
                t0, n = time.perf_counter(), 0
                while time.perf_counter() - t0 < seconds:
                    time.sleep(max(0.0, t0 + n / fps - time.perf_counter()))
                    sent[n] = time.perf_counter()
                    ws.send(jpegs[n % len(jpegs)])
                    n += 1
                done.set()
                reader.join()
            ms = np.asarray(lat) * 1000
            out[f"{fps}_fps"] = {"sent": n, "answered": len(lat), "dropped": dropped, "errors": errors,
                                 "dropped_pct": round(100 * dropped / max(n, 1), 1),
                                 "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
                                 "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}
            print(f"/v1/stream at {fps} frames/s: {out[f'{fps}_fps']}")
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import torch_single_thread

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "live.json"))
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds streamed per rate")
    args = ap.parse_args(argv)
    torch_single_thread()
    settings = {"default": {}, "detect_every_12_scale_0.5": {"detect_every": 12, "detect_scale": 0.5}}
    results: dict[str, Any] = {"device": "cpu, one thread", "live": {}}
    for video in VIDEOS:
        for name, faces in settings.items():
            res = live_figures(MEDIA / video, faces)
            results["live"][f"{video}:{name}"] = res
            print(f"live {video} {name}: realtime {res['realtime']['fps']} frames/s, dropped "
                  f"{res['realtime']['dropped_pct']}%; every frame {res['every_frame']['fps']} frames/s; {res['stages']}")
    try:
        results["stream"] = stream_figures(args.seconds)
    except Exception as e:  # noqa: BLE001 - the live figures are kept; the JSON says why stream has none
        results["stream"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
