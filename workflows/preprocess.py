"""Preprocess a dataset into the Parquet feature store with Ray Data.

``python -m workflows.preprocess --dataset D --root DIR --out STORE [--config YAML] [--address A]``

One unit of work is a video (or a fixed chunk of a long one). Each actor loads the face models
once, processes its unit, writes ``frames/`` and ``rejects/`` Parquet for it and then an atomic
completion marker; a rerun skips units whose marker exists, so a crashed run resumed gives exactly
the rows of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import re
import time
from dataclasses import dataclass, field
from typing import Any

from components import storage
from components.configuration import load_yaml, save_yaml, to_dict
from components.datasets.base import VideoUnit, build_adapter
from components.faces.pipeline import FacePipelineConfig
from components.preprocessing import Chunk, StoreConfig, plan_chunks
from components.schema import SCHEMA_VERSION, store_metadata

log = logging.getLogger("facsflow.preprocess")

__all__ = ["PreprocessConfig", "run_preprocess", "main"]


@dataclass
class PreprocessConfig:
    """Everything a preprocessing run needs; saved as ``<out>/preprocess.yaml``."""

    dataset: str = "media"
    """Adapter name: bp4d, bp4d+, disfa, affwild2, manifest, media, synthetic."""
    root: str = ""
    """Dataset root folder (or URI)."""
    out: str = ""
    """Feature store to write (local path or s3:// URI)."""
    adapter_options: dict[str, Any] = field(default_factory=dict)
    """Adapter options, e.g. {images: DIR} for BP4D or {camera: right} for DISFA."""
    face: FacePipelineConfig = field(default_factory=FacePipelineConfig)
    """Detector, landmarks, tracking and alignment."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """Stored temporal differences, JPEG quality and chunking."""
    actors: int = 0
    """Preprocessing actors (0: one per available CPU / actor_cpus)."""
    actor_cpus: float = 1.0
    """CPUs reserved per actor (fractions allowed)."""
    actor_gpus: float = 0.0
    """GPUs per actor (FAN landmarks batch on the GPU)."""
    resume: bool = True
    """Skip units that already have a completion marker."""

    def __post_init__(self) -> None:
        if self.actors < 0:
            raise ValueError(f"actors must be >= 0, got {self.actors}")
        if self.actor_cpus <= 0:
            raise ValueError(f"actor_cpus must be > 0, got {self.actor_cpus}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def unit_stem(unit: VideoUnit, chunk: Chunk, n_chunks: int) -> str:
    """``<dataset>/<subject>/<video>[.cNNNN]``: where a unit's files and marker live."""
    stem = f"{_safe(unit.dataset)}/{_safe(unit.subject)}/{_safe(unit.video)}"
    return stem if n_chunks == 1 else f"{stem}.c{chunk.index:04d}"


class UnitProcessor:
    """Ray Data class UDF: face models load once per actor in ``__init__``."""

    def __init__(self, face: dict[str, Any], store: dict[str, Any], out: str, aus: list[int]) -> None:
        from components.configuration import from_dict
        from components.faces.pipeline import FacePipeline
        from workflows.runtime import torch_single_thread

        torch_single_thread()
        self.store = from_dict(StoreConfig, store)
        self.pipeline = FacePipeline(from_dict(FacePipelineConfig, face))
        self.out = out
        self.meta = store_metadata(aus, self.store.diff_steps, self.pipeline.config.align_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import ray

        from components.preprocessing import process_unit

        stats: dict[str, list[Any]] = {"stem": [], "rows": [], "rejects": [], "seconds": [], "node": []}
        for blob, stem in zip(batch["item"], batch["stem"]):
            unit, chunk = pickle.loads(blob)
            t0 = time.perf_counter()
            res = process_unit(unit, self.pipeline, self.store, chunk)
            storage.write_table_atomic(res.frames, storage.join(self.out, "frames", f"{stem}.parquet"), self.meta)
            storage.write_table_atomic(res.rejects, storage.join(self.out, "rejects", f"{stem}.parquet"), self.meta)
            storage.write_text(storage.join(self.out, "_markers", f"{stem}.json"),
                               json.dumps({"rows": res.frames.num_rows, "rejects": res.rejects.num_rows}))
            stats["stem"].append(stem)
            stats["rows"].append(res.frames.num_rows)
            stats["rejects"].append(res.rejects.num_rows)
            stats["seconds"].append(time.perf_counter() - t0)
            stats["node"].append(ray.get_runtime_context().get_node_id())
        return stats


def plan_items(cfg: PreprocessConfig) -> tuple[list[dict[str, Any]], tuple[int, ...], int]:
    """(work items not yet done, AU list, total frames) for the configured dataset."""
    adapter = build_adapter(cfg.dataset, cfg.root, **cfg.adapter_options)
    items: list[dict[str, Any]] = []
    total = 0
    subjects: dict[str, dict[str, str]] = {}
    for unit in adapter.units():
        subjects.setdefault(unit.subject, {"group": unit.group, "split": str(unit.meta.get("split", ""))})
        chunks = plan_chunks(len(unit.frames), cfg.store.chunk_frames)
        total += len(unit.frames)
        for chunk in chunks:
            stem = unit_stem(unit, chunk, len(chunks))
            if cfg.resume and storage.exists(storage.join(cfg.out, "_markers", f"{stem}.json")):
                continue
            items.append({"item": pickle.dumps((unit, chunk)), "stem": stem, "frames": chunk.stop - chunk.start})
    storage.write_json(storage.join(cfg.out, "subjects.json"), subjects)
    return items, tuple(adapter.aus), total


def run_preprocess(cfg: PreprocessConfig) -> dict[str, Any]:
    """Run preprocessing on the connected Ray cluster; return a summary."""
    import ray

    from workflows.runtime import UserError

    if not cfg.root or not cfg.out:
        raise UserError("preprocess needs --root and --out")
    if not storage.is_remote(cfg.root):
        import os

        if not os.path.isdir(cfg.root):
            raise UserError(f"dataset root not found: {cfg.root}")
    t0 = time.perf_counter()
    items, aus, total = plan_items(cfg)
    storage.makedirs(cfg.out)
    cfg_text = json.dumps(to_dict(cfg), sort_keys=True)
    info = {"schema_version": SCHEMA_VERSION, "dataset": cfg.dataset, "aus": list(aus),
            "diff_steps": list(cfg.store.diff_steps), "image_size": cfg.face.align_size,
            "config_sha256": hashlib.sha256(cfg_text.encode()).hexdigest()}
    storage.write_json(storage.join(cfg.out, "store.json"), info)
    if not storage.is_remote(cfg.out):
        save_yaml(cfg, storage.join(cfg.out, "preprocess.yaml"))
    log.info("%d frames in %s; %d unit(s) to process (%s already done)", total, cfg.root, len(items),
             "resume" if cfg.resume else "no resume")
    summary: dict[str, Any] = {"store": cfg.out, "frames_in": total, "units": len(items), "rows": 0,
                               "rejects": 0, "nodes": []}
    if items:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        actors = cfg.actors or max(1, int(cpus // cfg.actor_cpus))
        actors = min(actors, len(items))
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        out = ds.map_batches(
            UnitProcessor, batch_size=1,
            fn_constructor_kwargs={"face": to_dict(cfg.face), "store": to_dict(cfg.store),
                                   "out": cfg.out, "aus": list(aus)},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_cpus=cfg.actor_cpus, num_gpus=cfg.actor_gpus or None,
        )
        nodes = set()
        for row in out.iter_rows():
            summary["rows"] += row["rows"]
            summary["rejects"] += row["rejects"]
            nodes.add(row["node"])
        summary["nodes"] = sorted(nodes)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facsflow preprocess",
        description="Detect, track and align faces of a dataset into a Parquet feature store "
                    "(<out>/frames/ and <out>/rejects/), in parallel with Ray Data.")
    p.add_argument("--dataset", required=True, help="dataset layout: bp4d, bp4d+, disfa, affwild2, manifest, media")
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--out", required=True, help="feature store folder or s3:// URI to write")
    p.add_argument("--images", help="BP4D/BP4D+: folder holding the <Subj>/<Task>/ frame folders")
    p.add_argument("--config", help="YAML with a PreprocessConfig (see workflows/configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set face.detect_every=4 (repeatable)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--no-resume", action="store_true", help="reprocess units that already have a marker")
    return p


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    overrides = [f"dataset={args.dataset}", f"root={args.root}", f"out={args.out}", *args.set]
    if args.images:
        overrides.append(f"adapter_options.images={args.images}")
    if args.no_resume:
        overrides.append("resume=false")
    return load_yaml(PreprocessConfig, args.config, overrides)


def main(argv: "list[str] | None" = None) -> int:
    from workflows.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = config_from_args(args)
    with ray_session(args.address):
        summary = run_preprocess(cfg)
    print(f"feature store: {cfg.out}/frames ({summary['rows']} rows), {cfg.out}/rejects "
          f"({summary['rejects']} rejects); {summary['frames_in']} input frames, {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
