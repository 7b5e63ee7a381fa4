"""Serving benchmark: @serve.batch on/off, Serve's overhead over the in-process Predictor, and
video frames/s per core for the default ensemble and its fastest member.

    .venv/bin/python benchmarks/serve_bench.py [--ensemble DIR] [--requests 200] [--video PATH]
                                               [--json benchmarks/results/serve.json]
    .venv/bin/python benchmarks/serve_bench.py --overhead [--requests 80]   # 4. alone, minutes

Prints, side by side:
1. (staged layout: member deployments of their own) requests/s of a member deployment called
   through its handle by 32 concurrent single-face requests, and of the whole app over HTTP at
   concurrency 16, with dynamic batching
   (max_batch_size 16) and without (``max_batch_size 0``: each request runs alone); the mean
   batch a member really ran is reported too;
2. per-image latency of the in-process ``Predictor`` and of Serve over HTTP (one request at a
   time) on the same photos: the difference is Serve's overhead;
3. video prediction frames/s per core (CPU seconds of this single-threaded process) on a
   640x360 video, end to end (decode, detect/track, align, members, combine), for the ensemble
   and for its fastest member alone, plus the served /v1/predict/video figure;
4. (``--overhead``, under ``"overhead"`` in the JSON) Serve's CPU per image over HTTP at
   concurrency 1 and 8 against the in-process Predictor on the same four photos, as a ratio,
   with p50/p99 and the idle app's background CPU, for the fused and the staged layout
   (``AppArgs.layout``) one after the other.

Without ``--ensemble`` the default composition is built with seeded random weights (speed does
not depend on them): ResNet-18 and MobileNetV3 image members at 112 px and a To-Sequence video
member. No GPU figure is produced on a CPU-only machine (the JSON says so). Results go under
``"bench"`` in the JSON file, with ``video_frames_per_s_per_core`` at its top level.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import MEDIA, RESULTS, machine, ray_cpu_seconds, run_load, start_app, update_json  # noqa: E402

PHOTOS = ["single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"]
VIDEO_FACES = {"detector": "dlib", "policy": "tracked", "detect_every": 6, "detect_scale": 0.5}
"""Face settings for 640x360 video (components.faces: detection at half size finds faces >= 80 px)."""


def default_ensemble(out: Path) -> str:
    from tests.serving_fixtures import make_ensemble

    return str(make_ensemble(out, [("resnet18", "baseline_resnet18_112", {}),
                                   ("mobilenetv3", "baseline_mobilenetv3_112", {}),
                                   ("tosequence", "to_sequence_small", {"diff_steps": (1, 2)})]))


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def photo_predictor(ensemble: str) -> Any:
    """The in-process Predictor the photo figures compare Serve with (the ensemble's recorded face
    pipeline, every face: what the app answers with)."""
    from components.predictor import Predictor

    return Predictor.from_manifest(ensemble, faces={"policy": "all"})


def in_process_images(ensemble: str, rounds: int) -> dict[str, Any]:
    """Per-image latency and CPU of the in-process Predictor (dlib, every face)."""
    pred = photo_predictor(ensemble)
    images = [_rgb(MEDIA / n) for n in PHOTOS]
    pred.predict_image(images[0])
    lat, cpu0 = [], time.process_time()
    for _ in range(rounds):
        for img in images:
            t = time.perf_counter()
            pred.predict_image(img)
            lat.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    return {"images": len(lat), "p50_ms": round(1000 * float(np.median(lat)), 1),
            "cpu_ms_per_image": round(1000 * cpu / len(lat), 1), "images_per_s_per_core": round(len(lat) / cpu, 2)}


def served_sequential(url: str, rounds: int) -> dict[str, Any]:
    import httpx

    bodies = [(MEDIA / n).read_bytes() for n in PHOTOS]
    lat = []
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post("/v1/predict", content=bodies[0], headers={"content-type": "image/jpeg"})
        cpu0 = ray_cpu_seconds()
        for _ in range(rounds):
            for b in bodies:
                t = time.perf_counter()
                r = c.post("/v1/predict", content=b, headers={"content-type": "image/jpeg"})
                r.raise_for_status()
                lat.append(time.perf_counter() - t)
        cpu = ray_cpu_seconds() - cpu0
    # CPU of every Serve process (proxy, controller, replicas) per request: on a shared machine
    # this is the overhead figure that load from other work does not distort.
    return {"images": len(lat), "p50_ms": round(1000 * float(np.median(lat)), 1),
            "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1),
            "cpu_ms_per_image": round(1000 * cpu / len(lat), 1)}


def member_handle_rps(ensemble: str, n: int, concurrency: int = 32) -> dict[str, Any]:
    """Single-face requests straight to Member0's handle: the dynamic batching in isolation."""
    from dataclasses import asdict

    from ray import serve

    from components.ensemble import EnsembleManifest
    from components.faces.pipeline import FacePipeline, FacePipelineConfig

    man = EnsembleManifest.load(ensemble)
    face = FacePipeline(FacePipelineConfig(detector="dlib", policy="all")).process_image(_rgb(MEDIA / PHOTOS[0]))[0]
    steps = sorted({1} | {s for m in man.members for s in m.input_spec.get("diff_steps", [])})
    req = {"member": asdict(man.members[0]), "aus": list(man.aus), "steps": steps,
           "crop": face.aligned.crop[None], "landmarks": face.aligned.landmarks.reshape(1, -1)}
    handle = serve.get_deployment_handle("Member0", "facsflow")

    async def go() -> tuple[float, list[int]]:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with sem:
                return int((await handle.predict.remote(req))["batch_faces"])

        await asyncio.gather(*[one() for _ in range(16)])
        t = time.perf_counter()
        sizes = await asyncio.gather(*[one() for _ in range(n)])
        return time.perf_counter() - t, sizes

    cpu0 = ray_cpu_seconds()
    wall, sizes = asyncio.run(go())
    cpu = ray_cpu_seconds() - cpu0
    return {"requests": n, "concurrency": concurrency, "requests_per_s": round(n / wall, 1),
            "requests_per_cpu_s": round(n / cpu, 1), "mean_batch_faces": round(float(np.mean(sizes)), 2),
            "member": man.members[0].name}


def video_per_core(ensemble: "str | None", checkpoint: "str | None", video: Path) -> dict[str, Any]:
    """End-to-end frames per CPU second of the in-process Detector on one video."""
    from components.au_detector import Detector

    det = (Detector.from_ensemble(ensemble, faces=VIDEO_FACES) if ensemble
           else Detector.from_checkpoint(checkpoint, faces=VIDEO_FACES))
    det.has_intensity  # noqa: B018 - load and warm every member before timing
    cpu0, t0 = time.process_time(), time.perf_counter()
    df = det.predict_video(video)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"frames": len(df), "with_face": int(df["success"].sum()), "cpu_s": round(cpu, 2),
            "frames_per_s_per_core": round(len(df) / cpu, 1), "wall_frames_per_s": round(len(df) / wall, 1)}


def fastest_member(ensemble: str) -> tuple[str, str, dict[str, float]]:
    """(name, checkpoint, ms per face of each member) from a timed 32-face forward pass."""
    from components.geometry import crop_template
    from components.predictor import Predictor

    pred = Predictor.from_manifest(ensemble)
    steps = pred.plan.steps
    n = 32
    batch: dict[str, Any] = {"crop": [np.full((112, 112, 3), 128, np.uint8)] * n,
                             "landmarks": [crop_template(112).reshape(-1)] * n}
    if steps:
        batch["landmark_diff"] = [np.zeros(len(steps) * 136, np.float32)] * n
        batch["diff_valid"] = [np.zeros(len(steps), bool)] * n
    ms = {}
    for i, m in enumerate(pred.members):
        pred.member_probs(i, batch, steps)
        t = time.process_time()
        for _ in range(3):
            pred.member_probs(i, batch, steps)
        ms[m.member.name] = round(1000 * (time.process_time() - t) / (3 * n), 2)
    best = min(ms, key=ms.get)
    return best, next(m.member.checkpoint for m in pred.members if m.member.name == best), ms


def served_video(url: str, video: Path) -> dict[str, Any]:
    import httpx

    cpu0, t0 = ray_cpu_seconds(), time.perf_counter()
    r = httpx.post(f"{url}/v1/predict/video", content=video.read_bytes(), headers={"content-type": "video/mp4"},
                   timeout=600)
    r.raise_for_status()
    wall, cpu = time.perf_counter() - t0, ray_cpu_seconds() - cpu0
    n = r.json()["n_frames"]
    return {"frames": n, "wall_frames_per_s": round(n / wall, 1), "frames_per_s_per_serve_core": round(n / cpu, 1)}


def idle_cores(seconds: float = 30.0) -> float:
    """CPU cores the started app's processes use with no request in flight (background loops)."""
    time.sleep(5.0)
    c0, t0 = ray_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return round((ray_cpu_seconds() - c0) / (time.perf_counter() - t0), 3)


def overhead(ensemble: str, port: int, requests: int, layout: str) -> dict[str, Any]:
    """Serve's CPU per image (app ``layout``: 'fused' or 'staged', ``AppArgs.layout``) against
    the in-process Predictor, side by side in one run: rounds
    that alternate the four photos in process (from their file bytes: decode, faces, members,
    combination, in this process) and over HTTP one at a time (concurrency 1), so a slower or
    faster spell of the machine falls on both; then concurrency 8 (``requests`` each way). Serve's
    CPU is that of every process of the app (replicas, proxy, controller, Ray's own daemons: what
    a machine serving it pays); the idle app's background is reported beside it. The
    concurrency-1 rounds are ``requests`` / 4."""
    import httpx
    from ray import serve

    from components.serving_inputs import Limits, decode_image

    pred = photo_predictor(ensemble)
    bodies = [(MEDIA / n).read_bytes() for n in PHOTOS]
    max_pixels = Limits().max_image_pixels
    stages = {"faces": {"max_replicas": 1}, "member": {"max_replicas": 1}} if layout == "staged" else {}
    url = start_app(ensemble, port, layout=layout, ingress={"max_replicas": 1}, **stages)
    try:
        served_sequential(url, 1)   # warm: every deployment has answered once
        pred.predict_image(decode_image(bodies[0], max_pixels))
        out: dict[str, Any] = {"idle_cores": idle_cores()}
        local_cpu, served_cpu, local_lat, served_lat, ratios = 0.0, 0.0, [], [], []
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(max(1, requests // len(PHOTOS))):
                c0 = time.process_time()
                for b in bodies:
                    t = time.perf_counter()
                    pred.predict_image(decode_image(b, max_pixels))
                    local_lat.append(time.perf_counter() - t)
                c_local = time.process_time() - c0
                c0 = ray_cpu_seconds()
                for b in bodies:
                    t = time.perf_counter()
                    client.post("/v1/predict", content=b, headers={"content-type": "image/jpeg"}).raise_for_status()
                    served_lat.append(time.perf_counter() - t)
                c_served = ray_cpu_seconds() - c0
                local_cpu, served_cpu = local_cpu + c_local, served_cpu + c_served
                ratios.append(c_served / c_local)

        def pct(lat: list[float], q: float) -> float:
            return round(1000 * float(np.percentile(lat, q)), 1)

        out["in_process"] = {"images": len(local_lat), "p50_ms": pct(local_lat, 50),
                             "cpu_ms_per_image": round(1000 * local_cpu / len(local_lat), 1),
                             "note": "from the file bytes (decode_image, as the face pipeline deployment does)"}
        out["concurrency_1"] = {"images": len(served_lat), "p50_ms": pct(served_lat, 50),
                                "p99_ms": pct(served_lat, 99),
                                "cpu_ms_per_image": round(1000 * served_cpu / len(served_lat), 1),
                                "round_ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                                "note": "rounds alternate with the in-process ones"}
        c8 = [run_load(url, b, "image/jpeg", requests // len(PHOTOS), 8) for b in bodies]
        lat8 = {k: round(float(np.mean([r[k] for r in c8])), 1) for k in ("p50_ms", "p99_ms")}
        n8, cpu8 = sum(r["succeeded"] for r in c8), sum(r["serve_cpu_s"] for r in c8)
        out["concurrency_8"] = {"images": n8, "errors": sum(r["errors"] for r in c8), **lat8,
                                "note": "p50/p99: mean over the four photos' runs",
                                "cpu_ms_per_image": round(1000 * cpu8 / max(1, n8), 1)}
    finally:
        serve.delete("facsflow")
    local_ms = out["in_process"]["cpu_ms_per_image"]
    for key in ("concurrency_1", "concurrency_8"):
        out[key]["cpu_ratio_to_in_process"] = round(out[key]["cpu_ms_per_image"] / local_ms, 2)
    return out


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ensemble", help="ensemble folder (default: the default composition, random weights)")
    p.add_argument("--requests", type=int, default=200, help="HTTP requests per throughput run")
    p.add_argument("--member-requests", type=int, default=400, help="handle requests per member run")
    p.add_argument("--rounds", type=int, default=5, help="passes over the photos for latency")
    p.add_argument("--video", type=Path, default=MEDIA / "WolfgangLanger_Pexels.mp4", help="640x360 video")
    p.add_argument("--port", type=int, default=8791)
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--overhead", action="store_true",
                   help="only Serve's CPU per image against in process (concurrency 1 and 8, idle cores), "
                        "for each layout")
    p.add_argument("--layouts", nargs="+", default=["fused", "staged"], choices=["fused", "staged"],
                   help="app layouts --overhead measures, one after the other (AppArgs.layout)")
    args = p.parse_args(argv)
    import torch
    from ray import serve

    from workflows.core.runtime import torch_single_thread
    from workflows.serve.app import AppArgs, app_layout

    torch_single_thread()
    torch.set_num_threads(1)
    info = machine()
    if args.overhead:
        with tempfile.TemporaryDirectory() as tmp:
            ensemble = args.ensemble or default_ensemble(Path(tmp) / "ensemble")
            res = {"machine": info, "ensemble": args.ensemble or "default composition, random weights",
                   "layouts": {}}
            for layout in args.layouts:
                r = res["layouts"][layout] = overhead(ensemble, args.port, args.requests, layout)
                for key in ("concurrency_1", "concurrency_8"):
                    print(f"{layout} {key}: p50 {r[key]['p50_ms']} ms, CPU {r[key]['cpu_ms_per_image']} ms/image = "
                          f"{r[key]['cpu_ratio_to_in_process']}x in process ({r['in_process']['cpu_ms_per_image']} ms)")
                print(f"{layout} idle app: {r['idle_cores']} cores", flush=True)
            res["default_layout_here"] = app_layout(AppArgs(ensemble=ensemble))  # Ray is up: its GPUs decide
        update_json(args.json, "overhead", res)
        print(f"results: {args.json}")
        return 0
    out: dict[str, Any] = {"machine": info}
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = args.ensemble or default_ensemble(Path(tmp) / "ensemble")
        out["ensemble"] = args.ensemble or "default composition (resnet18, mobilenetv3, tosequence), random weights"
        name, ckpt, ms = fastest_member(ensemble)
        out["member_ms_per_face"], out["fastest_member"] = ms, name
        print(f"member forward ms/face (1 core): {ms}; fastest: {name}", flush=True)
        out["video"] = {"file": args.video.name, "faces": VIDEO_FACES,
                        "ensemble": video_per_core(ensemble, None, args.video),
                        "fastest_member": video_per_core(None, ckpt, args.video)}
        print(f"video frames/s per core: ensemble {out['video']['ensemble']['frames_per_s_per_core']}, "
              f"fastest member {out['video']['fastest_member']['frames_per_s_per_core']}", flush=True)
        out["in_process"] = in_process_images(ensemble, args.rounds)
        runs: dict[str, Any] = {}
        for label, size in (("batched", 16), ("unbatched", 0)):
            url = start_app(ensemble, args.port, max_batch_size=size, layout="staged", ingress={"max_replicas": 1},
                            faces={"max_replicas": 1}, member={"max_replicas": 1}, video_faces=VIDEO_FACES)
            try:
                body = (MEDIA / PHOTOS[0]).read_bytes()
                run_load(url, body, "image/jpeg", 16, 8)
                runs[label] = {"max_batch_size": size,
                               "member_handle": member_handle_rps(ensemble, args.member_requests),
                               "http": run_load(url, body, "image/jpeg", args.requests, 16)}
                if label == "batched":
                    runs[label]["sequential"] = served_sequential(url, args.rounds)
                    runs[label]["video"] = served_video(url, args.video)
            finally:
                serve.delete("facsflow")
            h, m = runs[label]["http"], runs[label]["member_handle"]
            print(f"{label:>9}: member {m['requests_per_s']} req/s, {m['requests_per_cpu_s']} req per Serve CPU-s "
                  f"(mean batch {m['mean_batch_faces']}), "
                  f"HTTP {h['throughput_rps']} req/s p50 {h['p50_ms']} ms p99 {h['p99_ms']} ms errors {h['errors']}",
                  flush=True)
        serve.shutdown()
    out["serve"] = runs
    seq, local = runs["batched"]["sequential"], out["in_process"]
    out["serve_overhead_ms_p50"] = round(seq["p50_ms"] - local["p50_ms"], 1)
    out["serve_overhead_cpu_ms_per_image"] = round(seq["cpu_ms_per_image"] - local["cpu_ms_per_image"], 1)
    out["gpu"] = "not measured: no GPU on this machine"
    print(f"one image at a time: in-process p50 {local['p50_ms']} ms / {local['cpu_ms_per_image']} CPU-ms, "
          f"Serve p50 {seq['p50_ms']} ms / {seq['cpu_ms_per_image']} CPU-ms (overhead "
          f"{out['serve_overhead_ms_p50']} ms wall, {out['serve_overhead_cpu_ms_per_image']} CPU-ms); "
          f"served video {runs['batched']['video']}")
    update_json(args.json, "bench", out,
                {"video_frames_per_s_per_core": out["video"]["ensemble"]["frames_per_s_per_core"]})
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
