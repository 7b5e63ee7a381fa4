"""Build (once) and find the crop cache of a feature store at a model's input size
(``components.store.crop_cache``): a Ray Data pass over the store's frames files, one task per
file, run the first time a model of that size trains on the store (or after the store changed)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from components import storage
from components.store.crop_cache import (CACHE_VERSION, READ_COLUMNS, cache_file, cache_key, cache_root,
                                         crop_cache_table)
from components.store.splits import frames_files

__all__ = ["ensure_crop_cache"]

log = logging.getLogger("facsflow.train")


def _build_files(batch: dict[str, Any], store: str, root: str, size: int, n_steps: int, n_aus: int
                 ) -> dict[str, np.ndarray]:
    """Ray Data task: writes the cache file of each frames file in the batch; returns their row counts."""
    import pyarrow.parquet as pq

    rows = []
    for src in batch["src"]:
        fs, path = storage.resolve(str(src))
        with fs.open_input_file(path) as f:
            have = set(pq.read_schema(f).names)
            f.seek(0)
            table = pq.read_table(f, columns=[c for c in READ_COLUMNS if c in have])
        data = table.to_pydict()
        n = table.num_rows
        for missing in set(READ_COLUMNS) - have:   # an older store: no differences or intensities
            data[missing] = [[] for _ in range(n)]
        try:
            out = crop_cache_table(data, size, n_steps, n_aus)
        except ValueError as e:
            raise ValueError(f"{src}: {e}") from None
        # Uncompressed: decoded crops barely compress (zstd kept 97 % of a 112 px cache's bytes),
        # and every epoch would pay the decompression.
        storage.write_table_atomic(out, cache_file(store, root, str(src)), compression="none")
        rows.append(n)
    return {"rows": np.asarray(rows, np.int64)}


def ensure_crop_cache(store: str, info: dict[str, Any], size: int, data_cpus: float) -> str:
    """The root of ``store``'s crop cache at ``size`` px, built now when absent or stale (its key
    covers store.json and every frames file's name, size and modification time); a stale cache
    of the same size is removed once the new one is complete."""
    import ray.data

    frames = frames_files(store)
    key = cache_key(store, size, frames)
    root = cache_root(store, size, key)
    marker = storage.join(root, "cache.json")
    if storage.exists(marker):
        log.info("crop cache %s: %d files at %d px, up to date", root, len(frames), size)
        return root
    t0 = time.perf_counter()
    log.info("crop cache %s: decoding %d frames files at %d px (once for this store and size)",
             root, len(frames), size)
    # Two tasks per CPU, each over a run of files: a task per small file costs more than its work.
    tasks = max(1, min(len(frames), 2 * int(ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items([{"src": f} for f in frames], override_num_blocks=tasks)
    done = ds.map_batches(_build_files, batch_size=None, batch_format="numpy", num_cpus=data_cpus,
                          fn_kwargs={"store": store, "root": root, "size": int(size),
                                     "n_steps": len(info["diff_steps"]), "n_aus": len(info["aus"])}).take_all()
    rows = sum(int(r["rows"]) for r in done)
    storage.write_json(marker, {"version": CACHE_VERSION, "key": key, "size": int(size), "files": len(frames),
                                "rows": rows})
    parent = storage.join(store, "crop_cache")
    fs, path = storage.resolve(parent)
    import pyarrow.fs as pafs

    for entry in fs.get_file_info(pafs.FileSelector(path)):
        if entry.type == pafs.FileType.Directory and entry.base_name.startswith(f"{int(size)}px-") \
                and not root.endswith("/" + entry.base_name):
            fs.delete_dir(entry.path)   # the cache of the store as it was before
    log.info("crop cache %s: %d rows in %.1f s", root, rows, time.perf_counter() - t0)
    return root
