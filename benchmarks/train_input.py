"""Samples/s per CPU core of the training data path alone, the old path and the new side by side.

    .venv/bin/python benchmarks/train_input.py [--store STORE] [--copies 4] [--models M ...]
        [--epochs 2] [--batch-size 64] [--results benchmarks/results]

Both paths start from the same Parquet rows and end at the batch a worker's ``train_step`` receives,
augmentation on:

- ``old``: one Ray Data ``map_batches`` task per block decodes, augments (OpenCV affine and colour
  jitter, flip) and builds ``model_input`` per sample, then ships float32 images through the object
  store (the path before the split; reproduced here as ``_old_transform`` so both run in one go).
- ``new``: Ray Data decodes each row to a uint8 crop at the model's size (``RowDecoder``); the
  consumer runs ``model_batch`` (batched augmentation and input transform, torch on CPU here; on
  the GPU in training).

Ray gets one CPU; cores used = 1 (Ray Data) + the consumer process's CPU time / wall time (its
share of a second core: the new path's transform, both paths' batch collation). Per-core rate =
samples/s / cores used; the new path's CPU-side rate leaves out the transform's CPU time (on a
GPU worker it runs on the device). Epoch 1 is warm-up. Without a GPU the script prints the projection: CPUs to
feed one GPU = ``train_step`` samples/s on an H200 (train_gpu.json) / the new per-core rate.
Writes ``train_input.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ("baseline_mobilenetv3_112", "baseline_resnet18_224")


def _gpu_train_step(gpu: dict[str, Any], model: str) -> "float | None":
    """fp32 ``train_step`` samples/s alone on the GPU of train_gpu.json: the Ray Train step's
    reference (batch 256) where it measured this model, else the families table (batch 128)."""
    ray_train = gpu.get("ray_train") or {}
    if ray_train.get("model") == model:
        return ray_train["runs"]["fp32"]["train_step_alone_samples_per_s"]
    rows = [r for r in (gpu.get("families") or {}).get("rows", []) if r["model"] == model and r["precision"] == "fp32"]
    return rows[0]["train_samples_per_s"] if rows else None


def _old_transform(batch: dict[str, Any], spec: dict[str, Any], n_aus: int, augment: dict[str, float]) -> dict:
    """The old per-sample path: decode, OpenCV affine + flip + colour jitter, ``model_input``."""
    import cv2

    from components.faces.transforms import hflip_sample, model_input
    from components.models.base import InputSpec
    from components.store.rows import decode_jpeg

    sp = InputSpec.from_dict(spec)
    rng = np.random.default_rng()
    n = len(batch["image"])
    images = np.zeros((n, sp.num_channels, sp.image_size, sp.image_size), np.float32)
    lms_out = np.zeros((n, 68, 2), np.float32)
    for i in range(n):
        img = decode_jpeg(batch["image"][i])
        lms = np.asarray(batch["landmarks"][i], np.float32).reshape(68, 2)
        s = img.shape[0]
        scale = 1.0 + rng.uniform(-augment["scale_jitter"], augment["scale_jitter"])
        tx, ty = rng.uniform(-augment["crop_jitter"], augment["crop_jitter"], size=2) * s
        c = (s - 1) / 2.0
        m = np.array([[scale, 0, (1 - scale) * c + tx], [0, scale, (1 - scale) * c + ty]], np.float32)
        img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        lms = (lms @ m[:, :2].T + m[:, 2]).astype(np.float32)
        if rng.random() < 0.5:
            img, lms = hflip_sample(img, lms)
        b = 1.0 + rng.uniform(-augment["brightness"], augment["brightness"])
        k = 1.0 + rng.uniform(-augment["contrast"], augment["contrast"])
        f = img.astype(np.float32)
        img = np.clip((f - f.mean()) * k + f.mean() * b, 0, 255).astype(np.uint8)
        images[i] = model_input(img, lms, sp)
        lms_out[i] = lms * sp.image_size / s
    labels = np.full((n, n_aus), -1.0, np.float32)
    for i, v in enumerate(batch["labels"]):
        if v is not None and len(v):
            labels[i] = np.asarray(v, np.float32)
    return {"image": images, "landmarks": lms_out, "labels": labels}


def _measure(kind: str, files: list[str], info: dict[str, Any], spec: Any, epochs: int, batch_size: int) -> dict:
    import torch

    from components.batches import AugmentConfig, model_batch
    from components.configuration import to_dict
    from workflows.core.store_reader import read_store_frames, transformed_dataset

    augment = AugmentConfig()
    if kind == "old":
        ds = read_store_frames(files, ["image", "landmarks", "labels"], num_cpus=1.0).map_batches(
            _old_transform, batch_size=32, batch_format="numpy", num_cpus=1.0,
            fn_kwargs={"spec": spec.to_dict(), "n_aus": len(info["aus"]), "augment": to_dict(augment)})
    else:
        ds = transformed_dataset(files, info, spec, 1.0)
    rng = torch.Generator().manual_seed(0)
    epochs_out = []
    for _ in range(epochs):
        t0, c0, seen, transform_s = time.perf_counter(), time.process_time(), 0, 0.0
        kwargs = {"dtypes": torch.float32} if kind == "old" else {}
        for batch in ds.iter_torch_batches(batch_size=batch_size, drop_last=True, **kwargs):
            if kind == "new":
                t1 = time.process_time()
                batch = model_batch(batch, spec, augment, rng)
                transform_s += time.process_time() - t1
            seen += len(batch["labels"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cores = 1.0 + cpu / wall
        # What stays on CPUs when the worker has a GPU: everything but the batched transform.
        cpu_side = seen / (wall + cpu - transform_s)
        epochs_out.append({"samples": seen, "wall_s": round(wall, 2), "consumer_cpu_s": round(cpu, 2),
                           "transform_cpu_s": round(transform_s, 2), "cores": round(cores, 2),
                           "samples_per_s": round(seen / wall, 1), "per_core": round(seen / wall / cores, 1),
                           "per_core_cpu_side": round(cpu_side, 1)})
    later = epochs_out[1:] or epochs_out
    image = spec.num_channels * spec.image_size ** 2 * 4 if kind == "old" else spec.image_size ** 2 * 3
    return {"epochs": epochs_out, "per_core": round(float(np.mean([e["per_core"] for e in later])), 1),
            "per_core_cpu_side": round(float(np.mean([e["per_core_cpu_side"] for e in later])), 1),
            "samples_per_s": round(float(np.mean([e["samples_per_s"] for e in later])), 1),
            "image_bytes_per_sample": image}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="an existing feature store (default: build one in --workdir)")
    p.add_argument("--workdir", default="/tmp/facsflow-bench-input")
    p.add_argument("--copies", type=int, default=4, help="replicas of each synthetic video when building")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray
    import torch

    import train_overhead
    from components.models.registry import input_spec
    from components.store.splits import frames_files, store_info
    from workflows.core.runtime import init_ray, torch_single_thread

    torch_single_thread()
    init_ray(num_cpus=1)
    ray.data.DataContext.get_current().enable_progress_bars = False
    store = args.store or train_overhead.build_store(Path(args.workdir), args.copies)
    info, files = store_info(store), frames_files(store)
    rows: dict[str, Any] = {}
    for model in args.models:
        spec = input_spec(model, pretrained="")
        rows[model] = {kind: _measure(kind, files, info, spec, args.epochs, args.batch_size) for kind in ("old", "new")}
        rows[model]["speedup_per_core"] = round(rows[model]["new"]["per_core"] / rows[model]["old"]["per_core"], 2)
        rows[model]["speedup_cpu_side"] = round(rows[model]["new"]["per_core_cpu_side"]
                                                / rows[model]["old"]["per_core_cpu_side"], 2)
    ray.shutdown()
    print(f"store {store}: {sum(e['samples'] for e in rows[args.models[0]]['old']['epochs'][:1])} rows/epoch, "
          f"store crops {info['image_size']} px, {os.cpu_count()} cores on the machine (shared)")
    print("per core: all on CPU (new: transform on this CPU too) | CPU side (new: transform on the GPU)")
    print(f"{'model':26s} {'old':>7s} {'new':>7s} {'x':>5s} | {'old':>7s} {'new':>7s} {'x':>5s} | "
          f"{'old B/img':>9s} {'new B/img':>9s}")
    for model, r in rows.items():
        o, n = r["old"], r["new"]
        print(f"{model:26s} {o['per_core']:7.1f} {n['per_core']:7.1f} {r['speedup_per_core']:5.2f} | "
              f"{o['per_core_cpu_side']:7.1f} {n['per_core_cpu_side']:7.1f} {r['speedup_cpu_side']:5.2f} | "
              f"{o['image_bytes_per_sample']:9d} {n['image_bytes_per_sample']:9d}")
    gpu = json.loads((args.results / "train_gpu.json").read_text()) if (args.results / "train_gpu.json").is_file() else {}
    projection = {}
    for model, r in rows.items():
        step = _gpu_train_step(gpu, model)
        if step:
            new = r["new"]["per_core_cpu_side"]
            projection[model] = {"gpu_train_step_samples_per_s": step, "new_per_core_cpu_side": new,
                                 "cpus_to_feed": round(step / new, 1),
                                 "old_cpus_to_feed": round(step / r["old"]["per_core"], 1)}
            print(f"{model}: {step:.0f} samples/s ({gpu.get('device', 'GPU')} train_step fp32) / {new:.1f} per core "
                  f"(CPU side) = {step / new:.1f} CPUs (old path: {step:.0f} / {r['old']['per_core']:.1f} = "
                  f"{step / r['old']['per_core']:.1f})")
    out = {"store": store, "rows": rows, "projection": projection, "device": "cpu",
           "cuda": torch.cuda.is_available()}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "train_input.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
