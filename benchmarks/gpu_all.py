"""Every GPU figure the scaling plan needs, in one command, for the first time a GPU is lent.

    .venv/bin/python benchmarks/gpu_all.py [--device cuda] [--results benchmarks/results] [--quick]

1. training: ``benchmarks/train_overhead.py`` (its GPU section: ``train_step`` samples/s with
   float32 and with bf16 autocast, batch 64+) once per ``--train-batch-sizes`` → ``train_gpu.json``;
   the largest bf16 figure goes into ``train.json`` as ``gpu_samples_per_s_per_worker``.
2. serving: member forward passes (the default ensemble's image members, eval mode, no grad) in
   float32 and bf16 autocast at each ``--serve-batch-sizes`` → ``serve_gpu.json``; the best goes
   into ``serve.json`` as ``gpu_images_per_s`` (the face pipeline runs on CPU and is not in it).
3. preprocessing: the real ``run_preprocess`` on the talking-head video with MTCNN detection on
   the device (one actor holding half a GPU) beside dlib on CPU → ``preprocess_gpu.json`` (merged
   into ``preprocess.json`` under ``gpu``).

Then ``benchmarks/scaling_plan.py`` prints its GPU rows from the merged files. ``--device cpu``
runs the same steps on CPU (a dry run of the script on a machine without a GPU); ``--quick``
shortens every step. With ``--device cuda`` and no CUDA device it stops at once (exit 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import update_json  # noqa: E402

MEMBERS = ("baseline_resnet18_112", "baseline_mobilenetv3_112")
"""The default ensemble's image members (serve_bench's composition)."""
VIDEO = ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"


def train_figures(args: argparse.Namespace) -> dict[str, Any]:
    """train_overhead.py per batch size (it measures the GPU itself when CUDA is there)."""
    out: dict[str, Any] = {}
    for bs in args.train_batch_sizes:
        path = Path(tempfile.mkdtemp(prefix="facsflow-gpu-train-")) / "train.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "train_overhead.py"), "--batch-size", str(bs),
               "--epochs", "2", "--json", str(path)] + (["--max-steps", "4", "--copies", "1"] if args.quick else [])
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        out[str(bs)] = json.loads(path.read_text())
    return out


def _batch(model: Any, n: int, device: str) -> dict[str, Any]:
    import torch

    spec = model.input_spec()
    c, s = spec.num_channels, spec.image_size
    batch = {"image": torch.randn(n, c, s, s), "landmarks": torch.rand(n, 68, 2) * s,
             "landmark_diff": torch.randn(n, len(spec.diff_steps), 68, 2),
             "diff_valid": torch.ones(n, len(spec.diff_steps), dtype=torch.bool),
             "video_index": torch.zeros(n, dtype=torch.long), "frame_order": torch.arange(n)}
    return {k: v.to(device) for k, v in batch.items()}


def serve_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Member images/s on the device, float32 and bf16 autocast, per batch size."""
    import torch

    from components.models.registry import build_model

    aus = [1, 2, 4, 6, 12, 15, 25, 26]
    rows = []
    for name in MEMBERS:
        model = build_model(name, aus).to(args.device).eval()
        for bs in args.serve_batch_sizes:
            batch = _batch(model, bs, args.device)
            for amp in ("fp32", "bf16"):
                with torch.no_grad(), torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                                                     enabled=amp == "bf16"):
                    for _ in range(3):   # warm-up: cuDNN autotuning, allocator
                        model(batch)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    reps = 3 if args.quick else 30
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        model(batch)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                rate = reps * bs / (time.perf_counter() - t0)
                rows.append({"model": name, "batch_size": bs, "precision": amp, "images_per_s": round(rate, 1)})
                print(f"serve member {name} batch {bs} {amp}: {rate:,.0f} images/s", flush=True)
    return {"rows": rows, "best_images_per_s": max(r["images_per_s"] for r in rows)}


def preprocess_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing workflow on the video: MTCNN on the device against dlib on CPU."""
    import shutil

    from components.faces.pipeline import FacePipelineConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess
    from workflows.runtime import ray_session

    work = Path(tempfile.mkdtemp(prefix="facsflow-gpu-pre-"))
    (work / "videos").mkdir()
    shutil.copy(VIDEO, work / "videos" / VIDEO.name)
    gpu = args.device.startswith("cuda")
    out: dict[str, Any] = {}
    with ray_session():
        for label, face, gpus in (("dlib_cpu", FacePipelineConfig(detector="dlib"), 0.0),
                                  (f"mtcnn_{args.device}", FacePipelineConfig(detector="mtcnn", device=args.device),
                                   0.5 if gpu else 0.0)):
            cfg = PreprocessConfig(dataset="media", root=str(work / "videos"), out=str(work / label), face=face,
                                   actors=1, actor_cpus=1.0, actor_gpus=gpus, log_every_s=0)
            r = run_preprocess(cfg)
            out[label] = {"frames_per_s": round(r["rows"] / max(r["seconds"], 1e-9), 1), "seconds": r["seconds"],
                          "rows": r["rows"], "startup_seconds": r.get("startup_seconds")}
            print(f"preprocess {label}: {out[label]}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="torch device: cuda, cuda:1, or cpu for a dry run")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON goes")
    p.add_argument("--train-batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--serve-batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--skip", nargs="*", default=[], choices=["train", "serve", "preprocess"])
    p.add_argument("--quick", action="store_true", help="short runs (checks the script, not the figures)")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_all: no CUDA device on this machine (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    tag = {"device": name, "quick": args.quick, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    suffix = "" if args.device.startswith("cuda") else "_dryrun"
    if "train" not in args.skip:
        t = train_figures(args)
        update_json(args.results / f"train_gpu{suffix}.json", "by_batch_size", t, tag)
        best = max((r.get("gpu", {}).get("samples_per_s_bf16") or 0.0 for r in t.values()), default=0.0)
        if best and not suffix:
            update_json(args.results / "train.json", "gpu", {"by_batch_size": {k: r["gpu"] for k, r in t.items()}, **tag},
                        {"gpu_samples_per_s_per_worker": best})
    if "serve" not in args.skip:
        s = serve_figures(args)
        update_json(args.results / f"serve_gpu{suffix}.json", "members", s, tag)
        if not suffix:
            update_json(args.results / "serve.json", "gpu_members", {**s, **tag},
                        {"gpu_images_per_s": s["best_images_per_s"]})
    if "preprocess" not in args.skip:
        pr = preprocess_figures(args)
        update_json(args.results / f"preprocess_gpu{suffix}.json", "workflow", pr, tag)
        if not suffix:
            update_json(args.results / "preprocess.json", "gpu", {**pr, **tag})
    print(f"results in {args.results}; next: python benchmarks/scaling_plan.py", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
