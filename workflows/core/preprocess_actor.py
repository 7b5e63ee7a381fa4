"""What one preprocessing actor does, and where a unit's files live in the feature store.

``UnitProcessor`` is the Ray Data class UDF of ``workflows.core.preprocessing``: it loads the face models
once, then per call reads one unit's frame records from the run's plan file, runs
``components.store.rows.process_unit`` on its chunk and writes ``frames/<stem>.parquet``,
``rejects/<stem>.parquet`` and, last and atomically, the completion marker ``_markers/<stem>.json``
(``workflows.core.units`` drives the units).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import time
from typing import Any

from components import storage
from components.datasets.base import VideoUnit
from components.faces.pipeline import FacePipelineConfig
from components.store.rows import Chunk, StoreConfig
from components.store.schema import store_metadata
from workflows.core.units import die_once, write_atomic_text

__all__ = ["UnitProcessor", "unit_stem", "written_counts"]


def _safe(name: str) -> str:
    """A file-name part for ``name``; distinct names never share one.

    Names that need changing (other characters, or a leading '.' or '_', which pyarrow and Ray
    skip as hidden when they read a folder) get a hash of the original appended.
    """
    clean = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)
    if clean == name and name and not name.startswith((".", "_")):
        return name
    tag = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{clean.lstrip('._') or 'root'}~{tag}"


def unit_stem(unit: VideoUnit, chunk: "Chunk | None" = None, n_chunks: int = 1) -> str:
    """``<dataset>/<subject>/<video>[.cNNNN]``: where a unit's files and marker live."""
    stem = f"{_safe(unit.dataset)}/{_safe(unit.subject)}/{_safe(unit.video)}"
    return stem if n_chunks == 1 or chunk is None else f"{stem}.c{chunk.index:04d}"


class UnitProcessor:
    """Ray Data class UDF: face models load once per actor in ``__init__``; one unit per call."""

    def __init__(self, face: dict[str, Any], store: dict[str, Any], out: str, aus: list[int],
                 fault_unit: str = "") -> None:
        import cv2

        from components.configuration import from_dict
        from components.faces.pipeline import FacePipeline

        # One thread per actor: actors are the unit of parallelism.
        cv2.setNumThreads(1)
        face_cfg = from_dict(FacePipelineConfig, face)
        if face_cfg.detector == "mtcnn" or face_cfg.landmarker == "fan":
            from workflows.core.runtime import torch_single_thread

            torch_single_thread()
        self.store = from_dict(StoreConfig, store)
        self.pipeline = FacePipeline(face_cfg)
        self.out = out
        self.meta = store_metadata(aus, self.store.diff_steps, face_cfg.align_size)
        self.fault_unit = fault_unit
        self._unit_path = ""
        self._unit: "VideoUnit | None" = None

    def _load_unit(self, path: str) -> VideoUnit:
        # Chunks of one video tend to follow each other: keep the last unit read.
        if path != self._unit_path:
            fs, p = storage.resolve(path)
            with fs.open_input_stream(p) as f:
                self._unit = pickle.loads(f.read())
            self._unit_path = path
        assert self._unit is not None
        return self._unit

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import ray

        from components.store.rows import process_unit

        stats: dict[str, list[Any]] = {"stem": [], "frames": [], "rows": [], "rejects": [],
                                       "seconds": [], "started": [], "node": []}
        for stem, plan, start, stop, index in zip(batch["stem"], batch["plan"], batch["start"],
                                                  batch["stop"], batch["chunk"]):
            started, t0 = time.time(), time.perf_counter()
            unit = self._load_unit(str(plan))
            res = process_unit(unit, self.pipeline, self.store, Chunk(int(index), int(start), int(stop)))
            frames_uri = storage.join(self.out, "frames", f"{stem}.parquet")
            storage.write_table_atomic(res.frames, frames_uri, self.meta)
            storage.write_table_atomic(res.rejects, storage.join(self.out, "rejects", f"{stem}.parquet"), self.meta)
            die_once(self.out, str(stem), self.fault_unit, torn_beside=frames_uri)
            write_atomic_text(storage.join(self.out, "_markers", f"{stem}.json"),
                              json.dumps({"rows": res.frames.num_rows, "rejects": res.rejects.num_rows}))
            stats["stem"].append(str(stem))
            stats["frames"].append(int(stop) - int(start))
            stats["rows"].append(res.frames.num_rows)
            stats["rejects"].append(res.rejects.num_rows)
            stats["seconds"].append(time.perf_counter() - t0)
            stats["started"].append(started)
            stats["node"].append(ray.get_runtime_context().get_node_id())
        return stats


def written_counts(out: str, stem: str) -> tuple[int, int, int]:
    """(rows, rejects, input frames accounted for) of one unit (or chunk) as its store files hold
    them: read back, not taken from the actor's report, so a file another unit overwrote shows.

    A frame is accounted for when it has at least one row (one per face) or a reject; an
    unopenable video's one reject (frame -1) accounts for the unit.
    """
    import pyarrow.parquet as pq

    rows = rejects = 0
    seen: set[int] = set()
    for folder in ("frames", "rejects"):
        uri = storage.join(out, folder, f"{stem}.parquet")
        if not storage.exists(uri):
            continue
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as f:
            frames = pq.read_table(f, columns=["frame"]).column("frame").to_pylist()
        if folder == "frames":
            rows = len(frames)
        else:
            rejects = len(frames)
        seen.update(frames)
    return rows, rejects, len(seen)
