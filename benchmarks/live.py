"""Real-time budget of live answering: ``facsflow live`` on one CPU core, and ``/v1/stream`` latency.

    .venv/bin/python benchmarks/live.py [--json benchmarks/results/live.json] [--seconds 10] [--no-stream | --no-live]

1. ``live`` (``workflows.live.run_live``, the built-in, one face) on WolfgangLanger_Pexels.mp4 and
   single_face.mp4 from ../shared/media, the whole process pinned to one CPU core
   (``os.sched_setaffinity``: capture thread, MediaPipe's and onnxruntime's threads included;
   torch, OpenCV and onnxruntime also set to one thread). Per face setting (``live``: the
   defaults of ``facsflow live --source FILE``; ``predict``: the built-in plan's, as ``facsflow
   predict`` runs): every frame answered (``--no-realtime``): frames per CPU-second (answered /
   process CPU time, robust to other processes on the machine), wall frames/s, and CPU ms per
   frame (p50, p99, share over the 33 ms of a 30 frames/s source: what drops frames on an idle
   core); played at the file's own rate (the default, ``realtime``): answered frames/s and
   dropped % (on a loaded machine these measure the load too). Model loading is left out: the
   clock starts at the first answered frame.
2. Per-step CPU cost (ms per frame, process CPU time, so MediaPipe's own threads count) of the
   live path on pre-decoded frames: decode, detector, landmarker, tracker, alignment, AU
   geometry, pose and gaze, members and combination, the causal steps, CSV writing.
3. How live's rows differ from ``predict``'s defaults (the fast face settings; the live rows
   equal predict's on the same settings: tests/integration/test_live.py).
4. ``/v1/stream`` on a local Serve app (the built-in, default layout and limits): frames of
   WolfgangLanger_Pexels.mp4 as JPEG sent on one WebSocket at 15 and 30 frames/s for
   ``--seconds``; latency per answered frame from send to answer, p50/p99; answered, dropped
   (a newer frame came first, or over the connection's frame rate limit) and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/live.py` from the checkout: the repository's packages (tests.e2e for a free port)
MEDIA = ROOT.parent / "shared" / "media"
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")
PREDICT_FACES = {"detect_every": 6, "detect_scale": 1.0}
"""The built-in plan's face settings (``FacePipelineConfig`` defaults), which ``predict`` runs."""


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """This process (every thread, and threads started inside) on one CPU core; restored after."""
    before = os.sched_getaffinity(0)
    core = max(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


def live_run(video: Path, realtime: bool, faces: "dict[str, Any] | None") -> dict[str, Any]:
    """One ``run_live`` (rows to a CSV file, as ``--out rows.csv``): counts, frames per CPU-second
    and wall frames/s from the first answered frame to the end. ``faces``: LiveConfig face fields
    over its defaults (None: the defaults)."""
    from workflows.live import LiveConfig, run_live

    first: list[float] = []
    cpu_at: list[float] = []

    def clock(rows: list[dict[str, Any]]) -> None:
        cpu_at.append(time.process_time())
        if not first:
            first.extend((cpu_at[0], time.perf_counter()))

    with tempfile.TemporaryDirectory() as tmp:
        res = run_live(LiveConfig(source=str(video), out=f"{tmp}/rows.csv", realtime=realtime, smooth_window=5,
                                  status_seconds=1e9, **(faces or {})), on_rows=clock)
    cpu, wall = time.process_time() - first[0], time.perf_counter() - first[1]
    n = res["answered"] - 1
    per_frame = np.diff(cpu_at) * 1000  # CPU ms of each frame (its capture included): load-proof
    budget = 1000 / 30
    return {"captured": res["captured"], "answered": res["answered"], "dropped": res["dropped"],
            "dropped_pct": res["dropped_pct"], "frames_per_cpu_s": round(n / max(cpu, 1e-9), 1),
            "wall_fps": round(n / max(wall, 1e-9), 1), "cpu_ms_per_frame": round(1000 * cpu / max(n, 1), 2),
            "cpu_ms_p50": round(float(np.percentile(per_frame, 50)), 2),
            "cpu_ms_p99": round(float(np.percentile(per_frame, 99)), 2),
            "over_33ms_pct": round(100 * float((per_frame > budget).mean()), 2)}


STEPS = {  # timer key: (module, owner, function)
    "tracker": ("components.faces.tracking", "FaceTracker", "step"),
    "detector": ("components.faces.tracking", "FaceTracker", "detect"),
    "mesh": ("components.faces.mediapipe_mesh", "MediaPipeLandmarker", "fit_mesh"),
    "mesh_crop": ("components.faces.mediapipe_mesh", "MediaPipeLandmarker", "_crop"),
    "align": ("components.faces.pipeline", None, "align_face"),
    "geometry": ("components.faces.au_geometry", None, "geometry_features"),
    "pose": ("components.faces.pose", None, "pose_gaze_info"),
    "pipeline": ("components.faces.pipeline", "FacePipeline", "step"),
    "tracks": ("components.live", None, "image_tracks"),  # as LiveSession.push calls it
    "push": ("components.live", "LiveSession", "push"),
    "members": ("components.predictor", "Predictor", "answer_tracks"),
    "csv": ("workflows.live", "RowSink", "write"),
}
"""The calls the step table times (process CPU time, inclusive; the table subtracts nested ones)."""


@contextlib.contextmanager
def timed_steps(totals: dict[str, float]) -> Iterator[None]:
    """Add each ``STEPS`` call's process CPU seconds to ``totals`` while inside; originals restored."""
    saved = []
    for key, (module, owner, name) in STEPS.items():
        target = importlib.import_module(module)
        target = getattr(target, owner) if owner else target
        original = getattr(target, name)

        def timed(*a: Any, _f: Any = original, _k: str = key, **kw: Any) -> Any:
            t0 = time.process_time()
            try:
                return _f(*a, **kw)
            finally:
                totals[_k] = totals.get(_k, 0.0) + time.process_time() - t0

        setattr(target, name, functools.wraps(original)(timed))
        saved.append((target, name, original))
    try:
        yield
    finally:
        for target, name, original in saved:
            setattr(target, name, original)


def step_table(video: Path, faces: "dict[str, Any] | None", frames: int = 300) -> dict[str, float]:
    """CPU ms per frame of each step of live's path (face pipeline, members, causal steps, CSV)
    on up to ``frames`` pre-decoded frames (decode measured on its own)."""
    import cv2

    from components.au_detector import Detector
    from components.live import LiveSession
    from components.predictor import Predictor
    from workflows.live import LiveConfig, RowSink

    cfg = LiveConfig(source=str(video), smooth_window=5, **(faces or {}))
    cap, rgbs = cv2.VideoCapture(str(video)), []
    t0 = time.process_time()
    while len(rgbs) < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        rgbs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    decode = (time.process_time() - t0) / max(len(rgbs), 1)
    cap.release()
    pred = Predictor.from_manifest(cfg.ensemble, "cpu", cfg.faces(), cfg.smooth_window)
    session = LiveSession.of(pred, cfg.smooth_window)
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, timed_steps(totals):
        sink = RowSink(f"{tmp}/rows.csv", pred.aus, Detector(pred).has_intensity)
        session.push(rgbs[0], 0)  # first call: lazy loads
        totals.clear()
        t0 = time.process_time()
        for i, rgb in enumerate(rgbs[1:], 1):
            sink.write(session.push(rgb, i))
        total = time.process_time() - t0
        sink.close()
    ms = {k: 1000 * v / max(len(rgbs) - 1, 1) for k, v in totals.items()}
    g = ms.get
    table = {
        "decode + BGR->RGB (capture thread)": 1000 * decode,
        "detector (RetinaFace, resize incl.)": g("detector", 0),
        "landmarker crop (warp to 256 px)": g("mesh_crop", 0),
        "landmarker (MediaPipe mesh + blendshapes)": g("mesh", 0) - g("mesh_crop", 0),
        "tracker (canonical box, plausibility)": g("tracker", 0) - g("detector", 0) - g("mesh", 0),
        "alignment (112 px crop)": g("align", 0),
        "AU geometry": g("geometry", 0),
        "pose + gaze": g("pose", 0),
        "face results, tracks (other)": g("pipeline", 0) - g("tracker", 0) - g("align", 0) - g("geometry", 0)
        + g("tracks", 0) - g("pose", 0),
        "members + combination": g("members", 0),
        "causal steps (neutral, differences, smoothing)": g("push", 0) - g("pipeline", 0) - g("tracks", 0) - g("members", 0),
        "CSV writing": g("csv", 0),
    }
    table = {k: round(v, 2) for k, v in table.items()}
    table["total (measured, decode excl.)"] = round(1000 * total / max(len(rgbs) - 1, 1), 2)
    table["frames"] = len(rgbs) - 1
    table["detections"] = session._pipeline.tracker.detections
    return table


def rows_vs_predict(video: Path) -> dict[str, Any]:
    """How live's default face settings change the rows against ``predict``'s (both unsmoothed,
    every frame): probabilities, occurrences and landmarks."""
    from components.au_detector import Detector
    from workflows.live import LiveConfig

    fast = Detector.pretrained(smooth_window=1, faces=LiveConfig().faces()).predict_video(video)
    base = Detector.pretrained(smooth_window=1).predict_video(video)
    both = (fast["success"] == 1).to_numpy() & (base["success"] == 1).to_numpy()
    probs = [c for c in base.columns if c.endswith("_p")]
    occ = [c for c in base.columns if c.endswith("_c")]
    dp = np.abs(fast.loc[both, probs].to_numpy() - base.loc[both, probs].to_numpy())
    xy = [c for c in base.columns if c[:2] in ("x_", "y_")]
    dl = np.abs(fast.loc[both, xy].to_numpy() - base.loc[both, xy].to_numpy())
    agree = (fast.loc[both, occ].to_numpy() == base.loc[both, occ].to_numpy()).mean()
    return {"frames": int(len(base)), "both_found": int(both.sum()),
            "found_live_only": int(((fast["success"] == 1) & (base["success"] == 0)).sum()),
            "found_predict_only": int(((fast["success"] == 0) & (base["success"] == 1)).sum()),
            "prob_abs_diff_mean": round(float(dp.mean()), 4), "prob_abs_diff_p99": round(float(np.percentile(dp, 99)), 4),
            "prob_abs_diff_max": round(float(dp.max()), 4), "occurrence_agreement_pct": round(100 * float(agree), 2),
            "landmark_px_diff_mean": round(float(dl.mean()), 3), "landmark_px_diff_max": round(float(dl.max()), 2)}


def stream_figures(seconds: float, video: Path) -> dict[str, Any]:
    """p50/p99 latency over /v1/stream at 15 and 30 frames/s sent (a local app, the built-in)."""
    import cv2
    import ray
    from ray import serve
    from websockets.sync.client import connect

    from tests.e2e.conftest import free_port
    from workflows.core.runtime import init_ray
    from workflows.serve.app import start

    cap, jpegs = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        jpegs.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    init_ray(num_cpus=2)
    out: dict[str, Any] = {"clip": video.name, "jpeg_kb": round(float(np.mean([len(j) for j in jpegs])) / 1024, 1)}
    try:
        t0 = time.perf_counter()
        try:
            url = start("", "127.0.0.1", free_port(), app={"ingress": {"max_replicas": 1}})
        except Exception as e:  # noqa: BLE001 - say what failed and where, then give up on this part
            raise RuntimeError(f"the Serve app (built-in, one ingress replica) did not deploy after "
                               f"{time.perf_counter() - t0:.0f} s: {type(e).__name__}: {e}"[:600]) from None
        out["deploy_s"] = round(time.perf_counter() - t0, 1)
        ws_url = url.replace("http://", "ws://") + "/v1/stream"
        with connect(ws_url, max_size=2**24, open_timeout=60) as ws:  # warm-up: lazy loads, first detection
            for j in jpegs[:5]:
                ws.send(j)
                json.loads(ws.recv(timeout=120))
        for fps in (15, 30):
            out[f"{fps}_fps"] = _stream_at(ws_url, jpegs, fps, seconds)
            print(f"/v1/stream at {fps} frames/s: {out[f'{fps}_fps']}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def _stream_at(ws_url: str, jpegs: list[bytes], fps: float, seconds: float) -> dict[str, Any]:
    """One client sending ``jpegs`` at ``fps`` for ``seconds``: latency per answered frame."""
    from websockets.sync.client import connect

    sent: dict[int, float] = {}
    lat: list[float] = []
    served_s: list[float] = []
    counts = {"dropped_newer": 0, "dropped_rate": 0, "errors": 0}
    with connect(ws_url, max_size=2**24, open_timeout=60) as ws:
        done = threading.Event()

        def receive() -> None:
            while not done.is_set() or len(lat) + sum(counts.values()) < len(sent):
                try:
                    msg = json.loads(ws.recv(timeout=10))
                except TimeoutError:
                    return
                if "rows" in msg:
                    lat.append(time.perf_counter() - sent[msg["frame"]])
                    served_s.append(float(msg.get("seconds", 0.0)))
                elif msg.get("dropped"):
                    counts["dropped_rate" if "limit" in msg.get("error", "") else "dropped_newer"] += 1
                else:
                    counts["errors"] += 1

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
    dropped = counts["dropped_newer"] + counts["dropped_rate"]
    return {"sent": n, "answered": len(lat), **counts, "dropped_pct": round(100 * dropped / max(n, 1), 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "server_p50_ms": round(1000 * float(np.median(served_s)), 1) if served_s else None}


def machine() -> dict[str, Any]:
    """The machine and its load, for reading absolute figures."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import torch_single_thread

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "live.json"))
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds streamed per rate")
    ap.add_argument("--no-stream", action="store_true", help="leave out the /v1/stream part")
    ap.add_argument("--no-live", action="store_true", help="only the /v1/stream part")
    args = ap.parse_args(argv)
    missing = [v for v in VIDEOS if not (MEDIA / v).is_file()]
    if missing:
        print(f"real media missing under {MEDIA}: {', '.join(missing)}", file=sys.stderr)
        return 2
    torch_single_thread()
    results: dict[str, Any] = {"machine_at_start": machine(), "live": {}, "steps_ms": {}, "rows_vs_predict": {}}
    with one_core() as core:
        results["pinned_core"] = core
        for video in () if args.no_live else VIDEOS:
            for name, faces in (("live", None), ("predict", PREDICT_FACES)):
                res = {"every_frame": live_run(MEDIA / video, False, faces),
                       "realtime": live_run(MEDIA / video, True, faces)}
                results["live"][f"{video}:{name}"] = res
                e = res["every_frame"]
                print(f"live {video} [{name} faces]: every frame {e['frames_per_cpu_s']} frames/CPU-s "
                      f"({e['wall_fps']} wall; CPU ms per frame p50 {e['cpu_ms_p50']}, p99 {e['cpu_ms_p99']}, "
                      f"{e['over_33ms_pct']}% over 33 ms); realtime {res['realtime']['wall_fps']} frames/s, "
                      f"dropped {res['realtime']['dropped_pct']}%", flush=True)
        for video in () if args.no_live else VIDEOS:
            for name, faces in (("live", None), ("predict", PREDICT_FACES)):
                table = step_table(MEDIA / video, faces)
                results["steps_ms"][f"{video}:{name}"] = table
                print(f"steps, ms CPU per frame, {video} [{name} faces]:")
                for k, v in table.items():
                    print(f"  {k:48s} {v}")
    for video in () if args.no_live else VIDEOS:
        results["rows_vs_predict"][video] = rows_vs_predict(MEDIA / video)
        print(f"live defaults vs predict's, {video}: {results['rows_vs_predict'][video]}", flush=True)
    results["machine_after_live"] = machine()
    if not args.no_stream:
        try:
            results["stream"] = stream_figures(args.seconds, MEDIA / VIDEOS[0])
        except Exception as e:  # noqa: BLE001 - the live figures are kept; the JSON says why stream has none
            results["stream"] = {"error": f"{type(e).__name__}: {e}"[:700]}
            print(f"/v1/stream: no figures: {results['stream']['error']}", file=sys.stderr)
        results["machine_after_stream"] = machine()
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
