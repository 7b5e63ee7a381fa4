"""Samples/s per CPU core of the training data path alone, the old path and the new side by side.

    .venv/bin/python benchmarks/train_input.py [--store STORE] [--copies 16] [--models M ...]
        [--epochs 2] [--batch-size 64] [--kinds old decode cached] [--results benchmarks/results]

All paths start from the same store rows and end at the batch a worker's ``train_step`` receives,
augmentation on:

- ``old``: one Ray Data ``map_batches`` task per block decodes, augments (OpenCV affine and colour
  jitter, flip) and builds ``model_input`` per sample, then ships float32 images through the object
  store (the path before the split; reproduced here as ``_old_transform`` so all run in one go).
- ``decode``: Ray Data decodes each row to a uint8 crop at the model's size every epoch
  (``RowDecoder``, ``crop_cache=False``); the consumer runs ``model_batch`` (batched augmentation
  and input transform, torch on CPU here; on the GPU in training).
- ``cached`` (the new path, training's default): Ray Data reads the store's crop cache (uint8
  crops decoded at the model's size once, ``workflows.core.crop_cache``; built before the timed
  epochs, its build time is printed) in whole blocks; the consumer runs ``model_batch``.

Ray gets one CPU. Two per-core rates, both printed and written:

- ``per_core`` (the definition of the first runs): cores used = 1 (Ray Data's CPU, counted whole)
  + the consumer process's CPU time / wall time; per-core rate = samples/s / cores used. It
  charges Ray a whole core even while its tasks wait on a full object store, which the cached
  path's light tasks mostly do.
- ``per_cpu_s``: samples per CPU-second actually spent, in this process (the consumer) and every
  process below it (Ray's raylet, GCS and workers: /proc, Linux), so Ray's idle time is not
  charged and its own overhead is. Unlike wall-clock rates it does not move with the load other
  programs put on this shared machine (except through Ray's idle polling, which grows with each
  epoch's wall time: ``net_of_idle`` leaves out the tree's idle CPU rate, measured for 5 s before
  the runs, times the epoch's wall time).

Each has a CPU-side variant that leaves out the transform's CPU time (on a GPU worker it runs on
the device). Epoch 1 is warm-up. The projection: CPUs to feed one GPU = ``train_step`` samples/s
on an H200 (train_gpu.json) / the new CPU-side per-CPU-second rate. Writes ``train_input.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")   # as init_ray gives training workers (read once by torch)
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ("baseline_mobilenetv3_112", "baseline_resnet18_224")
KINDS = ("old", "decode", "cached")
SPEEDUP_KEYS = ("per_core", "per_core_cpu_side", "per_cpu_s", "per_cpu_s_cpu_side", "per_cpu_s_net_of_idle",
                "per_cpu_s_cpu_side_net_of_idle")


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and every live process below it (/proc), each
    with its reaped children's (a Ray worker that exits mid-epoch moves into the raylet's count)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / tick   # utime stime cutime cstime
    mine, total = {os.getpid()}, 0.0
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        total += cpu.get(pid, 0.0)
    return total


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


def _idle_cpu_per_s(seconds: float = 5.0) -> float:
    """CPU-seconds per second the process tree burns with nothing to do (Ray's raylet, GCS and idle
    workers polling): charged to every epoch in proportion to its wall time, so on a loaded
    machine, where epochs take longer, it weighs on ``per_cpu_s`` more."""
    c0, t0 = _tree_cpu_s(), time.perf_counter()
    time.sleep(seconds)
    return (_tree_cpu_s() - c0) / (time.perf_counter() - t0)


def _measure(kind: str, files: list[str], info: dict[str, Any], spec: Any, epochs: int, batch_size: int,
             cache: "tuple[str, str] | None", idle: float) -> dict:
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
        ds = transformed_dataset(files, info, spec, 1.0, cache=cache if kind == "cached" else None)
    rng = torch.Generator().manual_seed(0)
    # One image tensor for every batch, as the training loop keeps one (model_batch's image_out).
    image = torch.empty((batch_size, spec.num_channels, spec.image_size, spec.image_size))
    epochs_out = []
    for _ in range(epochs):
        t0, c0, tree0, seen, transform_s = time.perf_counter(), time.process_time(), _tree_cpu_s(), 0, 0.0
        kwargs = {"dtypes": torch.float32} if kind == "old" else {}
        for batch in ds.iter_torch_batches(batch_size=batch_size, drop_last=True, **kwargs):
            if kind != "old":
                t1 = time.process_time()
                batch = model_batch(batch, spec, augment, rng, image_out=image)
                transform_s += time.process_time() - t1
            seen += len(batch["labels"])
        wall, cpu, tree = time.perf_counter() - t0, time.process_time() - c0, _tree_cpu_s() - tree0
        cores = 1.0 + cpu / wall
        epochs_out.append({"samples": seen, "wall_s": round(wall, 2), "consumer_cpu_s": round(cpu, 2),
                           "all_cpu_s": round(tree, 2), "transform_cpu_s": round(transform_s, 2),
                           "cores": round(cores, 2), "samples_per_s": round(seen / wall, 1),
                           "per_core": round(seen / wall / cores, 1),
                           # What stays on CPUs when the worker has a GPU: all but the batched transform.
                           "per_core_cpu_side": round(seen / (wall + cpu - transform_s), 1),
                           "per_cpu_s": round(seen / tree, 1),
                           "per_cpu_s_cpu_side": round(seen / max(tree - transform_s, 1e-9), 1),
                           "per_cpu_s_net_of_idle": round(seen / max(tree - idle * wall, 1e-9), 1),
                           "per_cpu_s_cpu_side_net_of_idle": round(seen / max(tree - idle * wall - transform_s, 1e-9), 1)})
    later = epochs_out[1:] or epochs_out
    # What a sample's image costs through the object store: float32 model input (old), or uint8
    # crops at min(model size, stored size) (the worker upsizes: upsize_batch).
    side = min(spec.image_size, int(info.get("image_size") or spec.image_size))
    image = spec.num_channels * spec.image_size ** 2 * 4 if kind == "old" else side ** 2 * 3
    out = {"epochs": epochs_out, "image_bytes_per_sample": image}
    for key in ("per_core", "per_core_cpu_side", "per_cpu_s", "per_cpu_s_cpu_side", "per_cpu_s_net_of_idle",
                "per_cpu_s_cpu_side_net_of_idle", "samples_per_s"):
        out[key] = round(float(np.mean([e[key] for e in later])), 1)
    return out


def _projection(rows: dict[str, Any], gpu: dict[str, Any]) -> dict[str, Any]:
    """CPUs to feed one GPU's ``train_step`` with the new path (CPU side) and with the old one."""
    out = {}
    for model, r in rows.items():
        step = _gpu_train_step(gpu, model)
        if not step or "cached" not in r or "old" not in r:
            continue
        new, old = r["cached"]["per_cpu_s_cpu_side"], r["old"]["per_cpu_s"]
        out[model] = {"gpu_train_step_samples_per_s": step, "new_per_cpu_s_cpu_side": new,
                      "cpus_to_feed": round(step / new, 1), "old_per_cpu_s": old,
                      "old_cpus_to_feed": round(step / old, 1)}
        print(f"{model}: {step:.0f} samples/s ({gpu.get('device', 'GPU')} train_step fp32) / {new:.1f} per "
              f"CPU-second (new path, CPU side) = {step / new:.1f} CPUs (old path: {step:.0f} / {old:.1f} = "
              f"{step / old:.1f})")
    return out


def open_store(store: "str | None", workdir: str, copies: int) -> tuple[str, dict[str, Any], list[str]]:
    """One thread for torch, an embedded Ray of one CPU without progress bars, and the store
    (``store``, or one built in ``workdir`` from ``copies`` replicas): its path, info and files.
    Shared by this script and train_input_stages.py."""
    import ray

    import train_overhead
    from components.store.splits import frames_files, store_info
    from workflows.core.runtime import init_ray, torch_single_thread

    torch_single_thread()
    init_ray(num_cpus=1)
    ray.data.DataContext.get_current().enable_progress_bars = False
    store = store or train_overhead.build_store(Path(workdir), copies)
    return store, store_info(store), frames_files(store)


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="an existing feature store (default: build one in --workdir)")
    p.add_argument("--workdir", default="/tmp/facsflow-bench-input")
    p.add_argument("--copies", type=int, default=16, help="replicas of each synthetic video when building")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray
    import torch

    from components.models.registry import input_spec
    from components.store.crop_cache import crop_cache_size
    from workflows.core.crop_cache import ensure_crop_cache

    store, info, files = open_store(args.store, args.workdir, args.copies)
    rows: dict[str, Any] = {}
    builds: dict[str, float] = {}
    idle = _idle_cpu_per_s()
    for model in args.models:
        spec = input_spec(model, pretrained="")
        t0 = time.perf_counter()
        size = crop_cache_size(spec.image_size, info.get("image_size"))
        cache = (store, ensure_crop_cache(store, info, size, 1.0)) if "cached" in args.kinds else None
        builds[model] = round(time.perf_counter() - t0, 1)
        rows[model] = {kind: _measure(kind, files, info, spec, args.epochs, args.batch_size, cache, idle)
                       for kind in args.kinds}
        for kind in args.kinds:
            if kind != "old" and "old" in args.kinds:
                for key in SPEEDUP_KEYS:
                    rows[model][f"{kind}_speedup_{key}"] = round(rows[model][kind][key] / rows[model]["old"][key], 2)
    ray.shutdown()
    load = os.getloadavg()
    print(f"store {store}: {rows[args.models[0]][args.kinds[0]]['epochs'][0]['samples']} rows/epoch, store crops "
          f"{info['image_size']} px, {os.cpu_count()} cores on the machine (shared; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}); crop cache build (once, or found): "
          + ", ".join(f"{m} {s} s" for m, s in builds.items()))
    print("per_core: samples/s / (1 Ray CPU + consumer CPU share); per_cpu_s: samples per CPU-second of "
          "every process; cpu side: transform left out (on the GPU in training)")
    print(f"Ray's idle processes: {idle:.2f} CPU-s per second (net of idle: that much per second of each "
          "epoch left out)")
    names = ("per_core", "cpu side", "per_cpu_s", "cpu side", "net idle", "cpu side")
    print(f"{'model':26s} {'path':7s} " + " ".join(f"{k:>9s} {'x old':>6s}" for k in names) + f" {'B/img':>7s}")
    for model, r in rows.items():
        for kind in args.kinds:
            m = r[kind]
            cells = []
            for key in SPEEDUP_KEYS:
                cells += [f"{m[key]:9.1f}", f"{r.get(f'{kind}_speedup_{key}', 1.0):6.2f}"]
            print(f"{model:26s} {kind:7s} " + " ".join(cells) + f" {m['image_bytes_per_sample']:7d}")
    gpu_file = args.results / "train_gpu.json"
    gpu = json.loads(gpu_file.read_text()) if gpu_file.is_file() else {}
    out = {"store": store, "rows": rows, "crop_cache_build_s": builds, "idle_cpu_per_s": round(idle, 3),
           "projection": _projection(rows, gpu),
           "load_average": [round(x, 2) for x in load], "device": "cpu", "cuda": torch.cuda.is_available()}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "train_input.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
