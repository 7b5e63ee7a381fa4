"""Every GPU figure the scaling plan needs, in one command, for the first time a GPU is lent.

    .venv/bin/python benchmarks/gpu_all.py [--device cuda] [--results benchmarks/results] [--quick]
        [--workdir DIR] [--skip STEP ...]

Steps, in this order (each writes its JSON as soon as it ends, so a run cut short keeps what it had):

1. ``families``: ``train_step`` samples/s (float32 and bf16 autocast) and eval forward images/s
   of each family's registered model (``--families``), on real batches built from the benchmark
   store by the training ``BatchBuilder`` (batch ``--family-batch-size``); random initial weights
   (throughput does not depend on them, and a GPU node need not hold the weight packages)
   → ``train_gpu.json`` ``families``.
2. ``serve``: member forward passes (the default ensemble's image members, eval mode, no grad) in
   float32 and bf16 autocast at each ``--serve-batch-sizes`` → ``serve_gpu.json``; the best goes
   into ``serve.json`` as ``gpu_images_per_s`` (the face pipeline runs on CPU and is not in it).
3. ``ray_train``: the real Ray Train loop (``workflows.core.training.run_training``: one worker holding
   the GPU, Ray Data decoding and augmenting on CPU tasks) with float32 and with bf16, batch
   ``--ray-batch-size``: samples/s per epoch as the loop reports them (epoch 1 is warm-up), its
   waits for data, and GPU utilisation sampled from the driver; set beside ``train_step`` alone on
   the same model and batch size, the share of the GPU's pace the input pipeline keeps up with
   → ``train_gpu.json`` ``ray_train``; bf16 ``train_step`` alone goes into ``train.json`` as
   ``gpu_samples_per_s_per_worker`` (what one GPU consumes: ``scaling_plan.py`` sizes the input
   pipeline from it) and the loop's own bf16 rate as ``gpu_ray_loop_samples_per_s``.
4. ``fed``: the input path's share of the GPU's pace with the batched worker-side transform: the
   real Ray Train loop for ``--fed-models`` (bf16, and fp32 at 8 CPUs) with Ray Data held to each
   of ``--fed-cpus`` CPUs (``ExecutionResources`` limit of the driver's DataContext, which the
   training datasets inherit), beside ``train_step`` alone on the same model and batch size
   → ``train_gpu.json`` ``fed``. The goal: fed >= 90 % at 8 CPUs.
5. ``overhead``: ``benchmarks/train_overhead.py`` once per ``--train-batch-sizes`` (its CPU loops
   and its GPU ``train_step`` section) → ``train_gpu.json`` ``by_batch_size``.
6. ``preprocess``: the real ``run_preprocess`` on the talking-head video with MTCNN detection on
   the device (one actor holding half a GPU) beside dlib on CPU → ``preprocess_gpu.json`` (merged
   into ``preprocess.json`` under ``gpu``); needs dlib and facenet-pytorch on the GPU node.

The store is ``train_overhead.build_store``'s: built in ``--workdir`` from ../shared/media when
absent (a node without the face packages gets one built elsewhere, copied to ``DIR/store``) and
replicated there. Then ``benchmarks/scaling_plan.py`` prints its GPU rows from the merged files.
``--device cpu`` runs the same steps on CPU (a dry run of the script on a machine without a GPU);
``--quick`` shortens every step. With ``--device cuda`` and no CUDA device it stops at once (exit 2).
One GPU is one Ray Train worker: the DDP all-reduce across GPUs is not in these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve_load import update_json  # noqa: E402

MEMBERS = ("baseline_resnet18_112", "baseline_mobilenetv3_112")
"""The default ensemble's image members (serve_bench's composition)."""
VIDEO = ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"


FAMILIES = ("baseline_mobilenetv3_112", "baseline_resnet18_224", "to_sequence", "lrp_arl_ff", "sev_net",
            "pairwise_rank")
"""One registered model per family (the papers' input sizes where the registry has them)."""


def _store(args: argparse.Namespace, copies: int) -> str:
    import train_overhead

    return train_overhead.build_store(Path(args.workdir), copies)


def _train_config(args: argparse.Namespace, store: str, model: str, batch_size: int, amp: str, **kw: Any) -> Any:
    from components.store.splits import SplitConfig
    from components.training import OptimConfig
    from workflows.train import TrainConfig

    return TrainConfig(model=model, model_kwargs={"pretrained": ""}, data=store, batch_size=batch_size,
                       optim=OptimConfig(amp=amp), split=SplitConfig(folds="kfold", k=3), **kw)


def family_figures(args: argparse.Namespace) -> dict[str, Any]:
    """train_step samples/s and eval images/s per family, float32 and bf16, on real batches."""
    import torch

    import train_overhead
    from components.store.splits import load_split, store_info

    bs = args.family_batch_size
    store = _store(args, max(1, -(-2 * bs // 64)))   # 64+ training rows per copy: two batches at least
    info = store_info(store)
    rows = []
    for name in args.families:
        try:
            cfg = _train_config(args, store, name, bs, "none")
            files = load_split(store, info, cfg.split).files["train"]
            batches = list(train_overhead._batches(files, info, cfg, augment=True))[:2]
            if not batches:
                raise RuntimeError(f"the store has fewer than {bs} training rows")
            for amp in ("none", "bf16"):
                run_cfg = _train_config(args, store, name, bs, amp)
                rate, util = train_overhead.model_only(batches, info, run_cfg, args.device,
                                                       passes=1 if args.quick else 10)
                model, _, _ = train_overhead._model_and_optimiser(run_cfg, info["aus"], torch.device(args.device))
                model.eval()
                gpu_batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
                with torch.no_grad(), torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                                                     enabled=amp == "bf16"):
                    model(gpu_batches[0])
                    train_overhead._sync(torch.device(args.device))
                    t0, reps = time.perf_counter(), 1 if args.quick else 10
                    for _ in range(reps):
                        for b in gpu_batches:
                            model(b)
                    train_overhead._sync(torch.device(args.device))
                infer = reps * len(gpu_batches) * bs / (time.perf_counter() - t0)
                key = "fp32" if amp == "none" else "bf16"
                rows.append({"model": name, "batch_size": bs, "precision": key, "train_samples_per_s": round(rate, 1),
                             "train_gpu_busy_pct": util, "infer_images_per_s": round(infer, 1)})
                print(f"family {name} batch {bs} {key}: train {rate:,.0f} samples/s (GPU busy {util}%), "
                      f"inference {infer:,.0f} images/s", flush=True)
                del model
        except Exception as e:   # one family's failure must not cost the others' figures
            rows.append({"model": name, "batch_size": bs, "error": f"{type(e).__name__}: {e}"})
            print(f"family {name}: FAILED {type(e).__name__}: {e}", flush=True)
    return {"rows": rows, "init": "random (throughput does not depend on the weights)"}


def ray_train_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The real Ray Train loop on the device, float32 and bf16, beside train_step alone."""
    import statistics

    import torch

    import train_overhead
    from components.store.splits import load_split, store_info
    from workflows.train import run_training

    gpu = args.device.startswith("cuda")
    bs = args.ray_batch_size
    store = _store(args, 2 if args.quick else args.copies)
    info = store_info(store)
    out: dict[str, Any] = {"model": args.ray_model, "batch_size": bs, "workers": 1, "gpu": gpu,
                           "data_cpus": args.data_cpus, "worker_cpus": args.worker_cpus, "runs": {}}
    for amp in ("none", "bf16"):
        key = "fp32" if amp == "none" else "bf16"
        cfg = _train_config(args, store, args.ray_model, bs, amp, out=str(Path(args.workdir) / "runs"),
                            name=f"gpu-{key}-{int(time.time())}", epochs=2 if args.quick else args.ray_epochs,
                            workers=1, gpu=gpu, worker_cpus=args.worker_cpus, data_cpus=args.data_cpus,
                            early_stop_patience=0, keep_best=1, max_failures=0,
                            max_steps_per_epoch=2 if args.quick else 0)
        sampler = train_overhead._UtilisationSampler() if gpu else None
        summary = run_training(cfg)
        busy = sampler.stop() if sampler else None
        hist = summary["history"][1:] or summary["history"]   # epoch 1: worker start, first reads
        files = load_split(store, info, cfg.split).files["train"]
        batches = list(train_overhead._batches(files, info, cfg, augment=True))[:4]
        step_rate, _ = train_overhead.model_only(batches, info, cfg, args.device, passes=1 if args.quick else 5)
        loop = statistics.fmean(h["samples_per_s"] for h in hist)
        out["runs"][key] = {
            "samples_per_s": round(loop, 1), "train_step_alone_samples_per_s": round(step_rate, 1),
            "fed_pct": round(100.0 * loop / step_rate, 1), "gpu_busy_pct_whole_run": busy,
            "first_batch_s": round(statistics.fmean(h["first_batch_s"] for h in hist), 2),
            "data_wait_s_per_epoch": round(statistics.fmean(h["data_wait_s"] for h in hist), 2),
            "samples_per_epoch": hist[-1]["samples_all_workers"], "epochs_measured": len(hist)}
        print(f"Ray Train {args.ray_model} batch {bs} {key}: {loop:,.0f} samples/s; train_step alone "
              f"{step_rate:,.0f} ({out['runs'][key]['fed_pct']}% of it); waits for data "
              f"{out['runs'][key]['data_wait_s_per_epoch']} s/epoch; GPU busy {busy}%", flush=True)
        if gpu:
            torch.cuda.empty_cache()
    return out


def fed_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Fed % (Ray Train loop samples/s over train_step alone) per model, precision and data CPUs."""
    import statistics

    import ray.data
    from ray.data import ExecutionResources

    import train_overhead
    from components.store.splits import load_split, store_info
    from workflows.train import run_training

    gpu = args.device.startswith("cuda")
    bs = args.ray_batch_size
    store = _store(args, 2 if args.quick else args.copies)
    info = store_info(store)
    ctx = ray.data.DataContext.get_current()
    before = ctx.execution_options.resource_limits
    rows = []
    try:
        for model in args.fed_models:
            alone: dict[str, float] = {}
            for cpus in args.fed_cpus:
                for amp in ("bf16", "none") if cpus == 8 else ("bf16",):
                    key = "fp32" if amp == "none" else "bf16"
                    ctx.execution_options.resource_limits = ExecutionResources(cpu=cpus)
                    cfg = _train_config(args, store, model, bs, amp, out=str(Path(args.workdir) / "runs"),
                                        name=f"fed-{model}-{key}-{cpus}-{int(time.time())}",
                                        epochs=2 if args.quick else args.ray_epochs, workers=1, gpu=gpu,
                                        worker_cpus=args.worker_cpus, data_cpus=args.data_cpus,
                                        early_stop_patience=0, keep_best=1, max_failures=0,
                                        max_steps_per_epoch=2 if args.quick else 0)
                    hist = run_training(cfg)["history"]
                    hist = hist[1:] or hist
                    if key not in alone:
                        files = load_split(store, info, cfg.split).files["train"]
                        batches = list(train_overhead._batches(files, info, cfg, augment=True))[:4]
                        alone[key], _ = train_overhead.model_only(batches, info, cfg, args.device,
                                                                  passes=1 if args.quick else 5)
                    loop = statistics.fmean(h["samples_per_s"] for h in hist)
                    rows.append({"model": model, "precision": key, "data_cpus": cpus, "batch_size": bs,
                                 "samples_per_s": round(loop, 1), "train_step_alone_samples_per_s": round(alone[key], 1),
                                 "fed_pct": round(100.0 * loop / alone[key], 1),
                                 "data_wait_s_per_epoch": round(statistics.fmean(h["data_wait_s"] for h in hist), 2)})
                    print(f"fed {model} {key} {cpus} CPUs: {loop:,.0f} samples/s of {alone[key]:,.0f} "
                          f"({rows[-1]['fed_pct']}%)", flush=True)
    finally:
        ctx.execution_options.resource_limits = before
    return {"rows": rows, "input_path": "uint8 crops at the model size read from the store's crop cache by Ray Data, "
                                        "batched augmentation + transform on the GPU"}


def train_figures(args: argparse.Namespace) -> dict[str, Any]:
    """train_overhead.py per batch size (it measures the GPU itself when CUDA is there)."""
    out: dict[str, Any] = {}
    for bs in args.train_batch_sizes:
        path = Path(tempfile.mkdtemp(prefix="facsflow-gpu-train-")) / "train.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "train_overhead.py"), "--batch-size", str(bs),
               "--epochs", "2", "--json", str(path), "--workdir", str(args.workdir)]
        cmd += ["--max-steps", "4", "--copies", "1"] if args.quick else []
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
    from workflows.core.runtime import ray_session

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
    p.add_argument("--workdir", default="/tmp/facsflow-bench-train", help="benchmark store (DIR/store) and runs")
    p.add_argument("--copies", type=int, default=384, help="replicas of each store video for the Ray Train runs")
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--family-batch-size", type=int, default=128)
    p.add_argument("--ray-model", default="baseline_mobilenetv3_112")
    p.add_argument("--ray-batch-size", type=int, default=256)
    p.add_argument("--ray-epochs", type=int, default=3, help="epochs per Ray Train run (the first is warm-up)")
    p.add_argument("--worker-cpus", type=float, default=2.0)
    p.add_argument("--data-cpus", type=float, default=1.0)
    p.add_argument("--fed-models", nargs="+", default=["baseline_mobilenetv3_112", "baseline_resnet18_224"])
    p.add_argument("--fed-cpus", type=int, nargs="+", default=[4, 8, 14], help="CPUs Ray Data may use, per run")
    p.add_argument("--train-batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--serve-batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--skip", nargs="*", default=[], choices=list(STEPS))
    p.add_argument("--quick", action="store_true", help="short runs (checks the script, not the figures)")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_all: no CUDA device on this machine (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    tag = {"device": name, "quick": args.quick, "torch": torch.__version__,
           "machine": {"gpu": name, "cpus": os.cpu_count(), "python": platform.python_version()},
           "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    suffix = "" if args.device.startswith("cuda") else "_dryrun"
    from workflows.core.runtime import ray_session

    failed: list[str] = []
    with ray_session():
        for step in STEPS:
            if step in args.skip:
                continue
            print(f"== {step}", flush=True)
            t0 = time.perf_counter()
            try:
                STEPS[step](args, suffix, tag)
            except Exception:   # a lease is short: one step's failure must not cost the later steps
                traceback.print_exc()
                failed.append(step)
            print(f"== {step} {'FAILED' if step in failed else 'done'} in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"results in {args.results}; next: python benchmarks/scaling_plan.py", flush=True)
    if failed:
        print(f"gpu_all: failed steps: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _families_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    update_json(args.results / f"train_gpu{suffix}.json", "families", {**family_figures(args), **tag}, tag)


def _ray_train_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    r = ray_train_figures(args)
    update_json(args.results / f"train_gpu{suffix}.json", "ray_train", {**r, **tag}, tag)
    bf16 = r["runs"].get("bf16") or {}
    if bf16 and not suffix:
        # What one GPU worker consumes (train_step alone, bf16): the scaling plan sizes the input
        # pipeline that feeds it from this; the Ray loop's own rate says how far it was fed here.
        update_json(args.results / "train.json", "gpu", {"ray_train": r, **tag},
                    {"gpu_samples_per_s_per_worker": bf16["train_step_alone_samples_per_s"],
                     "gpu_ray_loop_samples_per_s": bf16["samples_per_s"]})


def _serve_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    s = serve_figures(args)
    update_json(args.results / f"serve_gpu{suffix}.json", "members", s, tag)
    if not suffix:
        update_json(args.results / "serve.json", "gpu_members", {**s, **tag}, {"gpu_images_per_s": s["best_images_per_s"]})


def _fed_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    update_json(args.results / f"train_gpu{suffix}.json", "fed", {**fed_figures(args), **tag}, tag)


def _overhead_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    update_json(args.results / f"train_gpu{suffix}.json", "by_batch_size", train_figures(args), tag)


def _preprocess_step(args: argparse.Namespace, suffix: str, tag: dict[str, Any]) -> None:
    pr = preprocess_figures(args)
    update_json(args.results / f"preprocess_gpu{suffix}.json", "workflow", pr, tag)
    if not suffix:
        update_json(args.results / "preprocess.json", "gpu", {**pr, **tag})


STEPS = {"families": _families_step, "serve": _serve_step, "ray_train": _ray_train_step,
         "fed": _fed_step, "overhead": _overhead_step, "preprocess": _preprocess_step}


if __name__ == "__main__":
    raise SystemExit(main())
