"""The million-row run's two benchmark-only steps (benchmarks/scale.py runs them as stages):

- ``scale_up``: a store of N rows made from a small real store (synthetic frames through the real
  ``facsflow preprocess``: RetinaFace, MediaPipe, aligned JPEG crops, landmarks, blendshapes),
  written through the store's own writer (``storage.write_table_atomic`` with the base files'
  Parquet metadata, ``FRAMES_SCHEMA``) by parallel Ray Data tasks, one batch of output videos per
  task: every output video gets a new subject (its own identity group), video, frame numbers and
  sample ids, and its rows are a run of the base rows (wrapping) with small perturbations (Gaussian
  noise: 0.3 px on landmarks, 0.1 px on their temporal differences, 0.01 on blendshapes and
  geometry, 0.01 on the detection score), so no two rows are equal; the crops and labels are the
  base rows' own (re-encoding a million JPEGs would cost more CPU than the run it feeds); each video
  also gets its ``neutral/`` table, as preprocessing writes it (``components.store.neutral``). A task
  holds the base store (a few MB) and one output video at a time: memory does not grow with N.
  This is a benchmark's way to a big store, not a product feature: real stores come from
  ``facsflow preprocess``.
- ``build_cache``: the store's crop cache at the model's size (``workflows.core.crop_cache.
  ensure_crop_cache``, what ``facsflow train`` runs the first time a model of that size trains on
  the store): every row's JPEG decoded once, over the whole store.
- ``data_pass``: one pass over every row of a store through training's input path: the same Ray
  Dataset training builds (``workflows.core.store_reader.transformed_dataset`` reading the crop
  cache, ``RowDecoder``) and the worker's per-batch half (``components.batches.model_batch`` with
  the default augmentation and the model's input transform), on the driver as a training worker
  runs it. ``cache=False``: the per-epoch decode path (``--no-crop-cache``) instead.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["scale_up", "build_cache", "data_pass"]

NOISE = {"landmarks": 0.3, "landmark_diff": 0.1, "blendshapes": 0.01, "geometry": 0.01}
"""Standard deviation of the Gaussian noise added to each list column of a copied row."""


@functools.lru_cache(maxsize=1)
def _base_rows(base: str) -> Any:
    """The base store's rows as one table (sorted by file: videos stay in frame order), and the
    Parquet metadata its files carry (schema version, AU list, diff steps, image size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(base) / "frames").rglob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).combine_chunks()
    return table, tables[0].schema.metadata


def _noisy_list(column: Any, sd: float, rng: np.random.Generator, clip: "tuple[float, float] | None" = None) -> Any:
    """A fixed-width list<float32> column plus Gaussian noise (nulls stay null)."""
    import pyarrow as pa

    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if arr.null_count == len(arr):
        return arr
    lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    values = values + rng.normal(0.0, sd, values.shape).astype(np.float32)
    if clip is not None:
        values = np.clip(values, *clip)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()),
                                    mask=arr.is_null()).cast(arr.type)


def _write_videos(batch: dict[str, np.ndarray], base: str, out: str, rows_per_video: int, total_rows: int,
                  videos_per_subject: int, fps: float) -> dict[str, np.ndarray]:
    """Ray Data task: write the output videos numbered in ``batch['id']`` (``ray.data.range``)."""
    import pyarrow as pa

    from components import storage
    from components.datasets.base import sample_id
    from components.store.neutral import write_video_neutral
    from workflows.core.units import write_atomic_text

    table, meta = _base_rows(base)
    n_base = table.num_rows
    written, nbytes = [], []
    for j in batch["id"].tolist():
        n = min(rows_per_video, total_rows - j * rows_per_video)
        rng = np.random.default_rng(j)
        start = (j * 7919) % n_base   # a prime stride: neighbouring videos start apart in the base
        rows = table.take(pa.array((start + np.arange(n)) % n_base))
        dataset = str(rows.column("dataset")[0])
        subject, video = f"X{j // videos_per_subject:06d}", f"V{j % videos_per_subject:02d}"
        frames = np.arange(n, dtype=np.int32)
        cols = {
            "sample_id": pa.array([sample_id(dataset, subject, video, int(f)) for f in frames]),
            "subject": pa.array([subject] * n), "group": pa.array([subject] * n),
            "video": pa.array([video] * n), "frame": pa.array(frames), "frame_order": pa.array(frames),
            "timestamp": pa.array(frames / fps), "face_id": pa.array(np.zeros(n, np.int16)),
            "det_score": pa.array(np.clip(rows.column("det_score").to_numpy()
                                          + rng.normal(0, 0.01, n), 0, 1).astype(np.float32)),
        }
        for name, sd in NOISE.items():
            if name in rows.schema.names:
                cols[name] = _noisy_list(rows.column(name), sd, rng,
                                         (0.0, 1.0) if name == "blendshapes" else None)
        for name, values in cols.items():
            i = rows.schema.get_field_index(name)
            rows = rows.set_column(i, rows.schema.field(i), values.cast(rows.schema.field(i).type))
        uri = str(Path(out) / "frames" / dataset / subject / f"{video}.parquet")
        storage.write_table_atomic(rows, uri, meta)
        # Its face's running neutral over the video, as preprocessing writes it beside the rows
        # (the built-in teacher and blendshape members join it; components.store.neutral).
        write_video_neutral(out, [f"{dataset}/{subject}/{video}"])
        # The unit's completion marker, as preprocessing writes it (label reads its row count).
        write_atomic_text(str(Path(out) / "_markers" / dataset / subject / f"{video}.json"),
                          json.dumps({"rows": n, "rejects": 0}))
        written.append(n)
        nbytes.append(Path(uri).stat().st_size)
    return {"rows": np.array(written), "bytes": np.array(nbytes)}


def scale_up(base: str, out: str, rows: int, rows_per_video: int = 500, videos_per_subject: int = 2,
             task_videos: int = 8) -> dict[str, Any]:
    """Write a store of ``rows`` rows at ``out`` from the store ``base`` (module docstring); return
    its counts. Needs a connected Ray."""
    import ray.data

    if (Path(out) / "store.json").exists():
        raise SystemExit(f"{out} exists: delete it first (scale_up writes a new store)")
    info = json.loads((Path(base) / "store.json").read_text())
    n_videos = -(-rows // rows_per_video)
    t0 = time.perf_counter()
    ds = ray.data.range(n_videos).map_batches(
        _write_videos, batch_size=task_videos, batch_format="numpy",
        fn_kwargs={"base": str(base), "out": str(out), "rows_per_video": rows_per_video, "total_rows": rows,
                   "videos_per_subject": videos_per_subject, "fps": 25.0})
    written = done = 0
    nbytes = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        written += int(batch["rows"].sum())
        nbytes += int(batch["bytes"].sum())
        done += len(batch["rows"])
    if written != rows:
        raise RuntimeError(f"scale_up wrote {written} rows, expected {rows}")
    info.update(frames_in=rows, units=n_videos, scaled_from=str(base),
                scaled_how="benchmarks/scale_store.py scale_up: base rows under new ids, perturbed")
    (Path(out) / "store.json").write_text(json.dumps(info))
    return {"rows": written, "videos": done, "subjects": -(-n_videos // videos_per_subject),
            "frames_bytes": nbytes, "seconds": round(time.perf_counter() - t0, 2)}


def _cache_of(store: str, model: str, data_cpus: float) -> "tuple[str, Any, Any, str]":
    """(store, its info, the model's input spec, its crop cache root), building the cache if absent."""
    from components.models.registry import input_spec
    from components.store.crop_cache import crop_cache_size
    from components.store.splits import store_info
    from workflows.core.crop_cache import ensure_crop_cache

    info, spec = store_info(store), input_spec(model)
    size = crop_cache_size(spec.image_size, info.get("image_size"))
    return store, info, spec, ensure_crop_cache(store, info, size, data_cpus)


def build_cache(store: str, model: str = "baseline_mobilenetv3_112", data_cpus: float = 1.0) -> dict[str, Any]:
    """The crop cache of ``store`` for ``model`` (removed first, so the figures are a build); rows,
    seconds and bytes. Needs a connected Ray."""
    import shutil

    shutil.rmtree(Path(store) / "crop_cache", ignore_errors=True)
    t0 = time.perf_counter()
    root = _cache_of(store, model, data_cpus)[3]
    done = json.loads((Path(root) / "cache.json").read_text())
    nbytes = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
    return {"rows": int(done["rows"]), "files": int(done["files"]), "size_px": int(done["size"]),
            "cache_bytes": nbytes, "seconds": round(time.perf_counter() - t0, 2)}


def data_pass(store: str, model: str = "baseline_mobilenetv3_112", batch_size: int = 32,
              data_cpus: float = 1.0, max_seconds: float = 0.0, cache: bool = True) -> dict[str, Any]:
    """One pass over every row of ``store`` through training's input path (module docstring);
    rows and seconds. ``max_seconds`` > 0 stops the pass after that long (``complete`` False: a
    bounded pass, for a run that must end in time). Needs a connected Ray."""
    import torch

    from components.batches import AugmentConfig, model_batch
    from components.models.registry import input_spec
    from components.store.splits import frames_files, store_info
    from workflows.core.store_reader import transformed_dataset

    files = frames_files(store)
    if cache:
        _, info, spec, root = _cache_of(store, model, data_cpus)
        ds = transformed_dataset(files, info, spec, data_cpus, cache=(store, root))
    else:
        spec = input_spec(model)
        ds = transformed_dataset(files, store_info(store), spec, data_cpus)
    gen = torch.Generator()
    gen.manual_seed(0)
    augment = AugmentConfig()
    image = torch.empty((batch_size, spec.num_channels, spec.image_size, spec.image_size))   # as training keeps one
    t0 = time.perf_counter()
    rows = 0
    first = None
    for batch in ds.iter_torch_batches(batch_size=batch_size, local_shuffle_buffer_size=512):
        out = model_batch(batch, spec, augment, gen, image_out=image)
        rows += int(out["image"].shape[0])
        first = first if first is not None else time.perf_counter() - t0
        if max_seconds and time.perf_counter() - t0 > max_seconds:
            break
    total = int(json.loads((Path(store) / "store.json").read_text())["frames_in"])
    return {"rows": rows, "complete": rows >= total, "store_rows": total, "files": len(files), "model": model,
            "batch_size": batch_size, "crop_cache": cache,
            "first_batch_s": round(first or 0.0, 2), "seconds": round(time.perf_counter() - t0, 2)}
