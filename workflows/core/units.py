"""The resumable unit driver of the stages that run work units on a Ray Data actor pool
(``workflows.preprocess``: one unit is a video or a chunk of one; ``workflows.label``: one
``frames/<stem>.parquet`` file).

Each stage lists its pending work items (dicts with a ``stem``; a unit whose completion marker is
done is not pending), and gives a pipeline of them (``unit_pool``: a class UDF on an actor pool,
one unit per call, actors restarted when they die, a unit retried ``unit_retries`` times). The
UDF writes a unit's outputs, each atomically, then, last, its marker (``write_atomic_text``), and
returns one stats row per unit. ``run_units`` drives it: progress lines (``UnitProgress``), one
more pass on a fresh pool for units whose actor was lost, and the stems that still failed; the
stage reports those (``UnitsFailed``) and a rerun of the same command does only what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from components import storage

__all__ = ["FAULT_ENV", "UnitsFailed", "UnitProgress", "UnitsRun", "run_units", "unit_pool", "check_pool_options",
           "marker_done", "write_atomic_text", "die_once", "remove_torn_writes"]

FAULT_ENV = "FACSFLOW_FAULT_KILL_UNIT"
"""Fault injection for tests: the actor processing the unit with this stem SIGKILLs itself after
writing the unit's frames and rejects (``facsflow label``: its labels) and before its marker, once
per store and stage (the worst moment for a machine to vanish), leaving beside them the half-written
temp file of a write it was in the middle of, as a machine that vanishes does."""


class UnitsFailed(RuntimeError):
    """Some units did not finish; their frames are not in the store. Rerunning retries them."""


def check_pool_options(cfg: Any) -> None:
    """The checks every stage that runs units on an actor pool (preprocess, label) makes of its
    ``actors``, ``actor_cpus``, ``unit_retries`` and ``log_every_s`` options."""
    for name, ok, want in (("actors", cfg.actors >= 0, ">= 0"), ("actor_cpus", cfg.actor_cpus > 0, "> 0"),
                           ("unit_retries", cfg.unit_retries >= 0, ">= 0"),
                           ("log_every_s", cfg.log_every_s >= 0, ">= 0")):
        if not ok:
            raise ValueError(f"{name} must be {want}, got {getattr(cfg, name)}")


def write_atomic_text(uri: str, text: str) -> None:
    """Write a small file so that it is either absent or complete (temp name, then move)."""
    if storage.is_remote(uri):
        storage.write_text(uri, text)  # an object PUT is atomic
        return
    fs, path = storage.resolve(uri)
    parent, name = path.rsplit("/", 1)
    tmp = f"{parent}/.tmp-{os.getpid()}-{name}"
    storage.write_text(tmp, text)
    fs.move(tmp, path)


def marker_done(uri: str) -> bool:
    """A marker counts only when complete JSON (a torn write means the unit is redone)."""
    try:
        json.loads(storage.read_text(uri))
    except (FileNotFoundError, OSError, ValueError):
        return False
    return True


def die_once(out: str, stem: str, fault_unit: str, stage: str = "", torn_beside: str = "") -> None:
    """Fault injection (``FAULT_ENV``): SIGKILL this process when ``stem`` is ``fault_unit``, once
    per store and stage (a sentinel under ``<out>/_fault/[<stage>/]`` remembers it fired), first
    leaving a torn temp file in the folder of ``torn_beside`` (local stores)."""
    if not fault_unit or stem != fault_unit:
        return
    sentinel = storage.join(out, "_fault", *([stage] if stage else []), f"{stem}.fired")
    if storage.exists(sentinel):
        return
    storage.write_text(sentinel, "")
    if torn_beside and not storage.is_remote(torn_beside):
        fs, path = storage.resolve(torn_beside)
        with fs.open_output_stream(f"{path.rsplit('/', 1)[0]}/.tmp-fault-{os.getpid()}.parquet") as f:
            f.write(b"PAR1" + b"\0" * 64)  # a Parquet header and no footer: a write cut short
    os.kill(os.getpid(), signal.SIGKILL)


def remove_torn_writes(out: str, folders: tuple[str, ...], logger: logging.Logger) -> int:
    """Delete the temp files (``.tmp-*``) that writers killed mid-write left in ``out``'s
    ``folders``; return how many, and say so on the stage's ``logger`` when there were any. Call
    it when no writer of the stage runs: before the units start and after the last one finished. Readers never list them (``storage.list_files`` and
    pyarrow's dataset discovery skip dot files), but a person's ``rglob("*.parquet")`` over the
    folder would hit a file with no footer. Object stores have none (a PUT is atomic)."""
    if storage.is_remote(out):
        return 0
    import pyarrow.fs as pafs

    fs, base = storage.resolve(out)
    removed = 0
    for name in folders:
        path = f"{base.rstrip('/')}/{name}"
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            continue
        for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
            if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
                fs.delete_file(info.path)
                removed += 1
    if removed:
        logger.info("%s: removed %d temp file(s) that writers killed mid-write left", out, removed)
    return removed


class UnitProgress:
    """Periodic log lines a person can follow: units and frames done, frames/s, and two counts.

    Each finished unit's stats row has ``frames``, ``started``, ``seconds``, ``stem`` and the
    ``counts`` keys (preprocess: rows and rejects written; ``workflows.label``: rows labelled and
    left unknown). ``items`` names what ``frames`` counts in the line; ``logger`` the stage's."""

    def __init__(self, units: int, frames: int, every_s: float, stage: str, counts: tuple[str, str],
                 items: str, logger: logging.Logger) -> None:
        self.units, self.frames, self.every_s, self.log = units, frames, every_s, logger
        self.stage, self.counts, self.items = stage, counts, items
        self.last = time.perf_counter()
        self.done_units = self.done_frames = 0
        self.totals = {k: 0 for k in counts}
        self.first_start, self.last_end = float("inf"), 0.0

    def update(self, row: dict[str, Any]) -> None:
        self.done_units += 1
        self.done_frames += int(row["frames"])
        for k in self.counts:
            self.totals[k] += int(row[k])
        self.first_start = min(self.first_start, float(row["started"]))
        self.last_end = max(self.last_end, float(row["started"]) + float(row["seconds"]))
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done_units == self.units:
            self.last = now
            # Frames/s since the first unit started: actor start-up is not held against it.
            rate = self.done_frames / max(time.time() - self.first_start, 1e-9)
            eta = int(max(0, self.frames - self.done_frames) / max(rate, 1e-9))
            (a, b), items = self.counts, self.items
            self.log.info("%s: %d/%d units, %d/%d %s, %.1f %s/s, ETA %d:%02d, %d %s, %d %s (last: %s, %.1f s)",
                          self.stage, self.done_units, self.units, self.done_frames, self.frames, items, rate,
                          items, eta // 60, eta % 60, self.totals[a], a, self.totals[b], b, row["stem"],
                          float(row["seconds"]))


def unit_pool(udf: type, items: list[dict[str, Any]], kwargs: dict[str, Any], actors: int, *, actor_cpus: float,
              unit_retries: int, actor_gpus: float = 0.0) -> Any:
    """The Ray Data pipeline over work items: ``udf(**kwargs)`` once per actor, one unit per call,
    one stats row per finished unit."""
    import ray

    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # A unit that failed (after its retries) is reported at the end, not fatal to the rest.
    # More failures than a whole pool's units in flight (2 per actor: a lost node) mean
    # something systemic (an unwritable store, a broken install): then Ray Data stops the run.
    ds.context.max_errored_blocks = max(8, 2 * actors + len(items) // 100)
    with warnings.catch_warnings():
        # Ray 2.60 has no named map_batches parameter for actor restarts and retries; the
        # remote-args route is deprecated for Ray 2.64 (revisit when the pin moves).
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            udf, batch_size=1, fn_constructor_kwargs=kwargs,
            # All actors requested at once; work starts as soon as one is up (a cluster may
            # not fit them all yet). Two units in flight per actor keep it busy between units.
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors,
                                               max_tasks_in_flight_per_actor=2),
            num_cpus=actor_cpus, num_gpus=actor_gpus or None,
            # Restart a dead actor always; retry its unit only unit_retries times (Ray Data's
            # default retries forever: a unit that kills its actor every time would hang).
            max_restarts=-1, max_task_retries=unit_retries,
        )


@dataclass
class UnitsRun:
    """What ``run_units`` did: its progress (units, frames, first start, last end), the nodes
    that processed units, and the stems that did not finish."""

    progress: UnitProgress
    nodes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run_units(cfg: Any, items: list[dict[str, Any]], rows: Callable[[list[dict[str, Any]], int], Any],
              progress: UnitProgress, again: str = "running them again",
              on_row: "Callable[[dict[str, Any]], None] | None" = None) -> UnitsRun:
    """Run ``items`` through ``rows(pending, actors)`` (a ``unit_pool``) on the connected Ray cluster.

    ``cfg`` has the pool options (``check_pool_options``): ``actors`` (0: one per available CPU
    / ``actor_cpus``) and ``unit_retries`` (0: no second pass). Each stats row goes to
    ``progress`` and ``on_row``; units still pending after the passes are returned as failed.
    """
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    actors = min(cfg.actors or max(1, int(cpus // cfg.actor_cpus)), len(items))
    nodes: set[str] = set()
    finished: set[str] = set()
    pending = items
    # A lost node fails its units' tasks faster than Ray declares the node dead (the actor
    # task retries hit a dead address and run out within a second): such units get one more
    # pass here, on a fresh actor pool on the nodes that are left.
    for attempt in range(2 if cfg.unit_retries else 1):
        if attempt:
            progress.log.warning("%d unit(s) failed (actor or node lost?); %s: %s",
                                 len(pending), again, ", ".join(it["stem"] for it in pending[:5]))
        for row in rows(pending, min(actors, len(pending))).iter_rows():
            progress.update(row)
            finished.add(row["stem"])
            nodes.add(row["node"])
            if on_row is not None:
                on_row(row)
        pending = [it for it in pending if it["stem"] not in finished]
        if not pending:
            break
    return UnitsRun(progress, sorted(nodes), sorted(it["stem"] for it in pending))
