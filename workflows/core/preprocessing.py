"""Preprocess a dataset into the Parquet feature store with Ray Data: the logic of the
``preprocess`` stage (its entry: ``workflows/preprocess.py``), which ``facsflow demo`` composes too.

``python -m workflows.preprocess --dataset D --root DIR --out STORE [--config YAML] [--set K=V] [--address A]``

One unit of work is a video, or a fixed chunk of a long one (``store.chunk_frames``). The driver
walks the adapter's units one at a time and writes each pending unit's frame records to
``<out>/_plan/`` (so neither the driver nor the object store holds the dataset's frame list);
the Ray Data dataset is only the small list of work items. Each actor loads the face models
once, processes one unit per call, writes ``frames/<dataset>/<subject>/<video>[.cNNNN].parquet``
and ``rejects/...`` for it and then, last and atomically, its completion marker
``_markers/...json``. Output file names depend on the unit and the config only, so a unit that
runs twice (a retry after its actor died, a rerun after a crash) overwrites its own files:
resuming a crashed run gives exactly the rows of an uninterrupted one. ``workflows.core.units``
drives the units (as it does ``facsflow label``'s).

A unit whose actor dies (node lost, out of memory, killed) is retried ``unit_retries`` times on
a restarted actor; a unit that still fails does not stop the others, and the run ends with an
error naming it (rerun the same command to retry only what is missing). ``store.json`` is
written when every unit has finished, so a half-built store is never mistaken for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from components import storage
from components.configuration import save_yaml, to_dict
from components.datasets.base import build_adapter, unit_origin
from components.faces.pipeline import FacePipelineConfig
from components.store.neutral import NEUTRAL_DIR
from components.store.rows import StoreConfig, plan_chunks
from components.store.schema import SCHEMA_VERSION
from workflows.core.preprocess_actor import UnitProcessor, unit_stem, written_counts
from workflows.core.units import (FAULT_ENV, UnitProgress, UnitsFailed, check_pool_options, marker_done,
                                  remove_torn_writes, run_units, unit_pool)

log = logging.getLogger("facsflow.preprocess")

_WRITTEN = ("frames", "rejects", "_markers", NEUTRAL_DIR)
"""The store's folders that preprocessing writes files into."""

__all__ = ["PreprocessConfig", "UnitsFailed", "InputsLost", "Plan", "plan_items", "run_preprocess", "unit_stem",
           "result_fingerprint", "min_chunk_overlap", "FAULT_ENV", "UnitProgress"]


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
    """Skip units that already have a completion marker (False: clear the store's frames/,
    rejects/ and markers first and process everything again)."""
    unit_retries: int = 3
    """Times a unit is retried on a restarted actor after its actor died (node lost, out of
    memory, killed); a unit that still fails is reported and the run exits with an error."""
    log_every_s: float = 10.0
    """Least seconds between progress lines (units done / total, frames/s); 0: one per unit."""

    def __post_init__(self) -> None:
        check_pool_options(self)
        if self.actor_gpus < 0:
            raise ValueError(f"actor_gpus must be >= 0, got {self.actor_gpus}")
        need = min_chunk_overlap(self.face, self.store)
        if self.store.chunk_frames > 0 and self.store.chunk_overlap < need:
            raise ValueError(
                f"store.chunk_overlap={self.store.chunk_overlap} is too small for chunking: it must "
                f"be >= face.detect_every + max(store.diff_steps) - 1 = {need}. A chunk's tracker "
                "must reach a detection frame, and then every stored difference step, before the "
                "chunk's first frame for chunked results to equal whole-video results.")


def min_chunk_overlap(face: FacePipelineConfig, store: StoreConfig) -> int:
    """Least warm-up overlap for chunked results to equal whole-video results.

    Frames processed before the first detection frame of a chunk's warm-up come from the chunk's
    own first detection, not the whole video's track; that detection frame lies at most
    ``detect_every - 1`` frames after the warm-up start, and the differences of the chunk's first
    frame read ``max(diff_steps)`` frames further back.
    """
    return max(face.detect_every, face.detect_every + max(store.diff_steps, default=0) - 1)


def result_fingerprint(cfg: PreprocessConfig) -> str:
    """Hash of the settings that decide the stored rows (not actors, retries or paths)."""
    keep = {"dataset": cfg.dataset, "adapter_options": to_dict(cfg.adapter_options),
            "face": to_dict(cfg.face), "store": to_dict(cfg.store), "schema_version": SCHEMA_VERSION}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


class InputsLost(RuntimeError):
    """The written store does not account for every input frame (a unit's files replaced by
    another's, or rows missing): the store is left unfinished (no store.json)."""


@dataclass
class Plan:
    """What a run has to do: the pending work items and what the dataset holds in all."""

    items: list[dict[str, Any]]
    """Pending units: stem, plan file (pickled VideoUnit), chunk index/start/stop, frames."""
    aus: tuple[int, ...]
    frames_in: int
    """Input frames of the whole dataset (finished units included)."""
    units_total: int
    """Units (chunks) of the whole dataset."""
    expected: dict[str, int] = field(default_factory=dict)
    """Stem of every unit (chunk) of the whole dataset → input frames it must account for (an
    empty unit: 1, its "unreadable" reject)."""
    videos: dict[str, list[str]] = field(default_factory=dict)
    """Each video's stem → its units' stems in chunk order (the running neutral spans them)."""


def plan_items(cfg: PreprocessConfig) -> Plan:
    """Walk the adapter's units one at a time; write each pending unit to ``<out>/_plan/``."""
    from workflows.core.runtime import UserError

    adapter = build_adapter(cfg.dataset, cfg.root, **cfg.adapter_options)
    items: list[dict[str, Any]] = []
    total = n_units = 0
    subjects: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    expected: dict[str, int] = {}
    videos: dict[str, list[str]] = {}
    for unit in adapter.units():
        subjects.setdefault(unit.subject, {"group": unit.group, "split": str(unit.meta.get("split", ""))})
        chunks = plan_chunks(len(unit.frames), cfg.store.chunk_frames)
        total += len(unit.frames)
        n_units += len(chunks)
        base = unit_stem(unit)
        if base in seen:
            # Adapters refuse duplicate keys themselves (components.datasets.base.unique_units);
            # this guards any adapter: two units never write one file, whatever their keys.
            raise UserError(f"{cfg.root}: {seen[base]} and {unit_origin(unit)} would share the store "
                            f"files {base}.* (video {unit.key!r}); rename or move one of them")
        seen[base] = unit_origin(unit)
        plan_uri = storage.join(cfg.out, "_plan", f"{base}.pkl")
        written = False
        for chunk in chunks:
            stem = unit_stem(unit, chunk, len(chunks))
            expected[stem] = chunk.stop - chunk.start if unit.frames else 1
            videos.setdefault(base, []).append(stem)
            if cfg.resume and marker_done(storage.join(cfg.out, "_markers", f"{stem}.json")):
                continue
            if not written:
                fs, path = storage.resolve(plan_uri)
                fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                with fs.open_output_stream(path) as f:
                    f.write(pickle.dumps(unit, protocol=pickle.HIGHEST_PROTOCOL))
                written = True
            items.append({"stem": stem, "plan": plan_uri, "chunk": chunk.index, "start": chunk.start,
                          "stop": chunk.stop, "frames": chunk.stop - chunk.start})
    storage.write_json(storage.join(cfg.out, "subjects.json"), subjects)
    return Plan(items, tuple(adapter.aus), total, n_units, expected, videos)


def _clear(cfg: PreprocessConfig, names: tuple[str, ...]) -> None:
    fs, base = storage.resolve(cfg.out)
    for name in names:
        path = f"{base.rstrip('/')}/{name}"
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)


def _check_same_config(cfg: PreprocessConfig, fingerprint: str) -> None:
    """Resuming a store made with other settings would mix two kinds of rows: refuse."""
    from workflows.core.runtime import UserError

    uri = storage.join(cfg.out, "_run.json")
    if not cfg.resume or not storage.exists(uri):
        return
    previous = json.loads(storage.read_text(uri)).get("result_sha256")
    if previous and previous != fingerprint:
        raise UserError(
            f"{cfg.out} was made with other dataset/face/store settings than this run's; resuming "
            "would mix rows of both. Use --no-resume to rebuild it, or another --out.")


def _unit_rows(cfg: PreprocessConfig, items: list[dict[str, Any]], aus: Any, actors: int) -> Any:
    """The Ray Data pipeline over work items: one stats row per finished unit."""
    return unit_pool(UnitProcessor, items,
                     {"face": to_dict(cfg.face), "store": to_dict(cfg.store), "out": cfg.out, "aus": list(aus),
                      "fault_unit": os.environ.get(FAULT_ENV, "")},
                     actors, actor_cpus=cfg.actor_cpus, actor_gpus=cfg.actor_gpus, unit_retries=cfg.unit_retries)


def _count_written(cfg: PreprocessConfig, plan: Plan, ran: set[str], summary: dict[str, Any]) -> None:
    """Fill the summary's counts from the store's files and check every input is accounted for.

    Counted from what was written, not from the actors' reports: when ``face.jpg`` and
    ``face.png`` once shared one video id, the run reported 3 rows for 3 files and the store held 2.
    Raises ``InputsLost`` naming the units whose files do not hold one row or reject per frame.
    """
    counts = {stem: written_counts(cfg.out, stem) for stem in plan.expected}
    summary["rows"] = sum(counts[s][0] for s in ran)
    summary["rejects"] = sum(counts[s][1] for s in ran)
    summary["store_rows"] = sum(c[0] for c in counts.values())
    summary["store_rejects"] = sum(c[1] for c in counts.values())
    lost = sorted(f"{s} ({counts[s][2]} of {n})" for s, n in plan.expected.items() if counts[s][2] != n)
    if lost:
        raise InputsLost(f"{len(lost)} unit(s) of {cfg.out} do not account for every input frame in "
                         f"frames/ or rejects/ (frames accounted of expected): {', '.join(lost[:5])}")


IN_DRIVER_VIDEOS = 4
"""At most this many videos' running neutral is written by the driver itself (a Ray task took
~5 s for one photo, most of it a worker's start); more go to Ray tasks across the cluster."""


def _write_neutral(cfg: PreprocessConfig, plan: Plan, ran: set[str]) -> int:
    """Rows that carry blendshapes get their face's running neutral over the whole video
    (``components.store.neutral``), Ray tasks over groups of videos: every video with a unit
    this run wrote, or without a neutral table for each of its units (a store written before
    them, resumed). Returns the videos written; 0 where the face pipeline gives no blendshapes."""
    if not cfg.face.gives_blendshapes:
        return 0
    import ray

    from components.store.neutral import write_video_neutral

    def stems(folder: str) -> set[str]:  # one listing per folder, not a stat per unit (object stores)
        root = storage.join(cfg.out, folder).rstrip("/") + "/"
        return {f[len(root):-len(".parquet")] for f in storage.list_files(root, ".parquet")}

    frames, written = stems("frames"), stems(NEUTRAL_DIR)
    todo = [video for video in plan.videos.values()
            if any(s in ran or (s in frames and s not in written) for s in video)]
    if not todo:
        return 0
    t0 = time.perf_counter()

    def write(videos: list[list[str]]) -> int:
        return sum(write_video_neutral(cfg.out, stems) for stems in videos)

    if len(todo) <= IN_DRIVER_VIDEOS:  # a Ray worker's start and imports cost more than these
        rows = write(todo)
    else:
        tasks = max(1, min(len(todo), 4 * int(ray.cluster_resources().get("CPU", 1))))
        task = ray.remote(num_cpus=min(1.0, cfg.actor_cpus))(write)
        rows = sum(ray.get([task.remote(todo[i::tasks]) for i in range(tasks)]))
    log.info("running neutral of %d rows of %d video(s) written to %s/ in %.1f s", rows, len(todo),
             NEUTRAL_DIR, time.perf_counter() - t0)
    return len(todo)


def run_preprocess(cfg: PreprocessConfig) -> dict[str, Any]:
    """Run preprocessing on the connected Ray cluster; return a summary.

    Keys: store, frames_in (whole dataset), units (processed by this run), rows, rejects (this
    run's units), store_rows, store_rejects (the whole store; all four counted from the written
    files), nodes (node ids that processed units), seconds (wall, all of it), startup_seconds
    (until the first unit started: planning, actor start, model loading) and
    processing_seconds (first unit started to last unit finished), neutral_videos (videos whose
    running neutral this run wrote, ``components.store.neutral``; rows with blendshapes only).
    Raises ``UnitsFailed`` when some units could not be finished (the others are kept; rerun to
    retry them).
    """
    from workflows.core.runtime import UserError

    if not cfg.root or not cfg.out:
        raise UserError("preprocess needs --root and --out")
    if not storage.is_remote(cfg.root) and not os.path.isdir(cfg.root):
        raise UserError(f"dataset root not found: {cfg.root}")
    t0, wall0 = time.perf_counter(), time.time()
    fingerprint = result_fingerprint(cfg)
    _check_same_config(cfg, fingerprint)
    storage.makedirs(cfg.out)
    if not cfg.resume:
        ours = any(storage.exists(storage.join(cfg.out, n)) for n in ("_run.json", "store.json"))
        theirs = any(storage.exists(storage.join(cfg.out, n)) for n in ("frames", "rejects"))
        if theirs and not ours:
            raise UserError(f"{cfg.out} has frames/ or rejects/ but is not a facsflow feature store: "
                            "refusing to clear it for --no-resume; choose another --out")
        log.info("--no-resume: clearing frames/, rejects/ and markers of %s", cfg.out)
        _clear(cfg, ("frames", "rejects", "_markers", "_plan", "_fault", NEUTRAL_DIR))
    # store.json marks a finished store: absent while a run is under way or after a crash.
    if storage.exists(storage.join(cfg.out, "store.json")):
        fs, path = storage.resolve(storage.join(cfg.out, "store.json"))
        fs.delete_file(path)
    remove_torn_writes(cfg.out, _WRITTEN, log)
    storage.write_json(storage.join(cfg.out, "_run.json"),
                       {"result_sha256": fingerprint, "config": to_dict(cfg)})
    if not storage.is_remote(cfg.out):
        save_yaml(cfg, storage.join(cfg.out, "preprocess.yaml"))
    plan = plan_items(cfg)
    items = plan.items
    todo_frames = sum(it["frames"] for it in items)
    log.info("%s: %d frames in %d unit(s); %d unit(s) (%d frames) to process%s", cfg.root,
             plan.frames_in, plan.units_total, len(items), todo_frames,
             "" if cfg.resume else " (no resume)")
    summary: dict[str, Any] = {"store": cfg.out, "frames_in": plan.frames_in, "units": len(items),
                               "rows": 0, "rejects": 0, "nodes": [], "startup_seconds": 0.0,
                               "processing_seconds": 0.0}
    failed: list[str] = []
    if items:
        progress = UnitProgress(len(items), todo_frames, cfg.log_every_s, stage="preprocess",
                                counts=("rows", "rejects"), items="frames", logger=log)
        run = run_units(cfg, items, lambda pending, actors: _unit_rows(cfg, pending, plan.aus, actors), progress)
        summary["nodes"] = run.nodes
        if progress.done_units:
            summary["startup_seconds"] = round(progress.first_start - wall0, 3)
            summary["processing_seconds"] = round(progress.last_end - progress.first_start, 3)
        failed = run.failed
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if failed:
        raise UnitsFailed(
            f"{len(failed)} of {len(items)} unit(s) did not finish (e.g. {', '.join(failed[:5])}); "
            f"their frames are not in {cfg.out}. Rerun the same command to retry only those.")
    _count_written(cfg, plan, {it["stem"] for it in items}, summary)
    summary["neutral_videos"] = _write_neutral(cfg, plan, {it["stem"] for it in items})
    remove_torn_writes(cfg.out, _WRITTEN, log)  # an actor lost mid-write (its node gone) left its temp file
    _clear(cfg, ("_plan",))
    info = {"schema_version": SCHEMA_VERSION, "dataset": cfg.dataset, "aus": list(plan.aus),
            "diff_steps": list(cfg.store.diff_steps), "image_size": cfg.face.align_size,
            "faces": cfg.face.crop_record(), "config_sha256": fingerprint, "frames_in": plan.frames_in, "units": plan.units_total}
    storage.write_json(storage.join(cfg.out, "store.json"), info)
    return summary
