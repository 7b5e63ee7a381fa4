"""Where the training input path spends its CPU, stage by stage, per sample, at 112 and 224 px.

    .venv/bin/python benchmarks/train_input_stages.py [--store STORE] [--rows 512]
        [--results benchmarks/results]

CPU microseconds per sample (process CPU time, one torch/OpenCV thread), each stage alone:

- store path, per epoch: Parquet read of the store's columns; JPEG decode; resize to the model's
  size; ``RowDecoder`` whole (decode, resize, lists to arrays, labels).
- crop cache, per epoch: Parquet read of the cache files; ``cached_columns`` + ``RowDecoder``
  (numpy views, no per-row work). The cache holds crops at min(model size, stored size): the
  224 px model's worker grows the store's 112 px crops (inside ``model_batch``: the augmentation's
  warp samples them at 224 px, ``upsize_batch`` without augmentation).
- Ray Data, crop cache: the epoch through ``iter_torch_batches`` with no transform, as CPU of
  this process (collation, object-store reads) and of Ray's processes (read tasks, block and
  batch handling, object-store writes), from a streaming read and from a materialised dataset
  (the object store already holds the blocks: collation and transfer alone).
- the torch transform, batch 64: ``model_batch`` with augmentation (the worker's per-epoch half),
  without it (evaluation and Serve), and the previous implementation's ``grid_sample`` warp for
  comparison (``_grid_sample_warp``: one bilinear ``grid_sample`` over the whole batch).

Writes ``train_input_stages.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")   # as init_ray gives training workers (read once by torch)

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ("baseline_mobilenetv3_112", "baseline_resnet18_224")


def _per_sample_us(fn: Callable[[], Any], n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` CPU times of ``fn`` (after one warm-up call), in µs per sample."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return round(best / n * 1e6, 1)


def _grid_sample_warp(crops: Any, draw: Any) -> Any:
    """The warp as the previous implementation ran it: one ``grid_sample`` (bilinear, reflection)
    over the batch, float32 NCHW, the sampling grid built per call."""
    import torch
    import torch.nn.functional as F

    b, s = crops.shape[0], crops.shape[1]
    images = crops.permute(0, 3, 1, 2).float()
    scale, tx, ty = (t.view(b, 1, 1) for t in (draw.scale, draw.tx, draw.ty))
    c = (s - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    xs = torch.where(draw.flip.view(b, 1, 1), (s - 1) - xs, xs)
    gx, gy = (xs - c - tx) / scale + c, (ys - c - ty) / scale + c
    grid = torch.stack([(2.0 * gx + 1.0) / s - 1.0, (2.0 * gy + 1.0) / s - 1.0], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _ray_epoch(ds: Any, batch_size: int) -> dict[str, float]:
    from train_input import _tree_cpu_s

    t0, c0, tree0, seen = time.perf_counter(), time.process_time(), _tree_cpu_s(), 0
    for batch in ds.iter_torch_batches(batch_size=batch_size, drop_last=True):
        seen += len(batch["labels"])
    wall, cpu, tree = time.perf_counter() - t0, time.process_time() - c0, _tree_cpu_s() - tree0
    return {"consumer_us": round(cpu / seen * 1e6, 1), "ray_us": round((tree - cpu) / seen * 1e6, 1),
            "wall_us": round(wall / seen * 1e6, 1)}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="an existing feature store (default: train_input.py's)")
    p.add_argument("--workdir", default="/tmp/facsflow-bench-input")
    p.add_argument("--copies", type=int, default=16)
    p.add_argument("--rows", type=int, default=512, help="rows of the in-process stages")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import torch

    from components.batches import AugmentConfig, RowDecoder, model_batch
    from components.faces.batched import draw_augment, upsize_batch
    from components.faces.transforms import resize_sample
    from components.models.registry import input_spec
    from components.store.crop_cache import cache_file, cached_columns, crop_cache_size
    from components.store.rows import decode_jpeg
    from workflows.core.crop_cache import ensure_crop_cache
    from workflows.core.store_reader import CACHE_COLUMNS, COLUMNS, transformed_dataset

    from train_input import open_store

    store, info, files = open_store(args.store, args.workdir, args.copies)
    columns = [c for c in COLUMNS if c in pq.read_schema(files[0]).names]
    picked, n = [], 0
    for f in files:
        picked.append(f)
        n += pq.read_metadata(f).num_rows
        if n >= args.rows:
            break
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in picked])
    batch = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}
    images = list(batch["image"])
    decoded = [decode_jpeg(b) for b in images]
    lms = [np.asarray(v, np.float32).reshape(68, 2) for v in batch["landmarks"]]
    rows: dict[str, Any] = {}
    for model in MODELS:
        spec = input_spec(model, pretrained="")
        size = spec.image_size
        side = crop_cache_size(size, info.get("image_size"))
        root = ensure_crop_cache(store, info, side, 1.0)
        cached = [cache_file(store, root, f) for f in picked]
        decoder = RowDecoder(spec, info["diff_steps"], len(info["aus"]))
        r: dict[str, Any] = {
            "store_parquet_read": _per_sample_us(lambda: [pq.read_table(f, columns=columns) for f in picked], n),
            "jpeg_decode": _per_sample_us(lambda: [decode_jpeg(b) for b in images], n),
            "resize_to_model_size": _per_sample_us(lambda: [resize_sample(d, lm, size) for d, lm in zip(decoded, lms)], n),
            "row_decoder_from_store": _per_sample_us(lambda: decoder(batch), n),
            "cache_parquet_read": _per_sample_us(lambda: [pq.read_table(f, columns=CACHE_COLUMNS) for f in cached], n),
        }
        ctable = pa.concat_tables([pq.read_table(f, columns=CACHE_COLUMNS) for f in cached])
        r["row_decoder_from_cache"] = _per_sample_us(
            lambda: decoder(cached_columns(ctable, side, len(info["diff_steps"]), len(info["aus"]))), n)
        ds = transformed_dataset(files, info, spec, 1.0, cache=(store, root))
        _ray_epoch(ds, 64)                                       # warm-up: workers, first reads
        r["ray_streaming_cache"] = _ray_epoch(ds, 64)
        mat = ds.materialize()
        r["ray_materialised_cache"] = _ray_epoch(mat, 64)
        out = decoder(cached_columns(ctable.slice(0, 64), side, len(info["diff_steps"]), len(info["aus"])))
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in out.items()}
        gen = torch.Generator().manual_seed(0)
        image = torch.empty((64, spec.num_channels, size, size))   # kept across batches, as training does
        r["model_batch_augmented"] = _per_sample_us(
            lambda: model_batch(tensors, spec, AugmentConfig(), gen, image_out=image), 64)
        r["model_batch_plain"] = _per_sample_us(lambda: model_batch(tensors, spec, None), 64)
        draw = draw_augment(64, size, AugmentConfig(), gen)
        full = tensors["crop"] if side == size else upsize_batch(tensors["crop"], size).clone()
        r["grid_sample_warp_before"] = _per_sample_us(lambda: _grid_sample_warp(full, draw), 64)
        rows[model] = r
    ray.shutdown()
    load = os.getloadavg()
    print(f"store {store}: {n} rows in-process, stored crops {info['image_size']} px; CPU µs per sample, one "
          f"thread; {os.cpu_count()} cores (shared; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(f"{'stage':34s} " + " ".join(f"{m:>26s}" for m in MODELS))
    for key in rows[MODELS[0]]:
        vals = [rows[m][key] for m in MODELS]
        if isinstance(vals[0], dict):
            for sub in vals[0]:
                print(f"{key + ' ' + sub:34s} " + " ".join(f"{v[sub]:26.1f}" for v in vals))
        else:
            print(f"{key:34s} " + " ".join(f"{v:26.1f}" for v in vals))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "train_input_stages.json").write_text(json.dumps(
        {"store": store, "rows_in_process": n, "us_per_sample": rows, "load_average": [round(x, 2) for x in load],
         "device": "cpu"}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
