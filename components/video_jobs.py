"""Video jobs: a video answered a segment at a time into storage, resumable and cancellable.

A job is a folder ``<root>/<id>/`` on a local path or any pyarrow filesystem URI (``s3://``, a
shared filesystem): the one source of truth about it, so any process that can read the folder
can report on it and any process that can write it can carry it on.

- ``job.json``: what to answer (``input``: a local path or URI of the video; ``name``);
- ``status.json``: ``state`` (queued, running, done, failed, cancelled), ``frames_done`` /
  ``frames_total``, ``fps``, ``eta_s``, ``error``, ``segments`` (parts written), ``runs`` (how
  many times a runner took it up) and ``resumed_from`` (the frame the last one started at), times;
- ``parts/part-NNNNNN.parquet``: the rows of each finished job segment, in the columns of
  ``facsflow predict`` (``components.au_detector.rows_to_openface``), frames in order;
- ``carry.pkl``: the segment-wise answer's state after the last part
  (``components.video_segments.SegmentCarry``), written after its part, so a job that dies is
  carried on from the first unfinished segment (a part written without its carry is written
  again, under the same name: every frame's rows land once);
- ``cancel``: a marker; the job stops before its next part.

``run_job`` runs one job in the calling process (the Serve jobs deployment, ``facsflow
predict``); ``result_table`` reads a finished job's rows. The carry is unpickled from the job's
own folder: the jobs root must be storage only the service writes (like a checkpoint folder).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components import storage
from components.inference import SEGMENT_FRAMES
from components.video_segments import JOB_SEGMENT_FRAMES, SegmentCarry, iter_video_segments

log = logging.getLogger("facsflow.jobs")

__all__ = ["STATES", "FINAL_STATES", "UnknownJob", "new_job", "read_status", "list_jobs", "request_cancel",
           "cancel_requested", "run_job", "result_parts", "result_table", "pending_jobs", "write_status"]

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")


class UnknownJob(KeyError):
    """No job of that id under the jobs root."""

    def __str__(self) -> str:
        return f"no job {self.args[0]!r}"


def _dir(root: str, job_id: str) -> str:
    if not job_id or any(c in job_id for c in "/\\.") or len(job_id) > 64:
        raise UnknownJob(job_id)
    return storage.join(root, job_id)


def _write_bytes(uri: str, data: bytes) -> None:
    """Either absent or complete: a temp name then a move (an object PUT is atomic already)."""
    fs, path = storage.resolve(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = path if storage.is_remote(uri) else f"{parent}/.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    if tmp != path:
        fs.move(tmp, path)


def _read_bytes(uri: str) -> bytes:
    fs, path = storage.resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def new_job(root: str, input_uri: str, name: str = "", job_id: str = "") -> dict[str, Any]:
    """A queued job answering the video at ``input_uri``; returns its status."""
    job_id = job_id or uuid.uuid4().hex[:16]
    d = _dir(root, job_id)
    name = name or input_uri.rstrip("/").rsplit("/", 1)[-1]
    _write_bytes(storage.join(d, "job.json"), json.dumps({"id": job_id, "input": input_uri, "name": name}).encode())
    status = {"id": job_id, "name": name, "input": input_uri, "state": "queued", "frames_done": 0,
              "frames_total": None, "fps": None, "eta_s": None, "error": "", "segments": 0,
              "created": time.time(), "updated": time.time(), "cpu_s": 0.0, "wall_s": 0.0}
    write_status(root, job_id, status)
    return status


def write_status(root: str, job_id: str, status: dict[str, Any]) -> None:
    status["updated"] = time.time()
    _write_bytes(storage.join(_dir(root, job_id), "status.json"), json.dumps(status).encode())


def read_status(root: str, job_id: str) -> dict[str, Any]:
    """The job's status (``UnknownJob`` when there is none)."""
    try:
        return json.loads(_read_bytes(storage.join(_dir(root, job_id), "status.json")))
    except (FileNotFoundError, ValueError):
        raise UnknownJob(job_id) from None
    except OSError as e:
        if "not found" in str(e).lower() or "no such file" in str(e).lower():
            raise UnknownJob(job_id) from None
        raise


def list_jobs(root: str) -> list[dict[str, Any]]:
    """Every job's status under ``root``, oldest first."""
    out = []
    for uri in storage.list_files(root, "/status.json"):
        job_id = uri[:-len("/status.json")].rsplit("/", 1)[-1]
        try:
            out.append(read_status(root, job_id))
        except UnknownJob:
            continue
    return sorted(out, key=lambda s: s.get("created", 0))


def pending_jobs(root: str) -> list[str]:
    """Ids of jobs not finished (queued, or running when their worker died), oldest first."""
    return [s["id"] for s in list_jobs(root) if s["state"] not in FINAL_STATES]


def request_cancel(root: str, job_id: str) -> dict[str, Any]:
    """Mark the job cancelled: a queued job at once, a running one before its next part."""
    status = read_status(root, job_id)
    if status["state"] in FINAL_STATES:
        return status
    _write_bytes(storage.join(_dir(root, job_id), "cancel"), b"")
    if status["state"] == "queued":
        status["state"] = "cancelled"
        write_status(root, job_id, status)
    return status


def cancel_requested(root: str, job_id: str) -> bool:
    return storage.exists(storage.join(_dir(root, job_id), "cancel"))


def _part(root: str, job_id: str, index: int) -> str:
    return storage.join(_dir(root, job_id), "parts", f"part-{index:06d}.parquet")


def result_parts(root: str, job_id: str) -> Iterator[pa.Table]:
    """A finished job's parts, frames in order (``ValueError`` unless it is done): check first,
    then read one part at a time."""
    status = read_status(root, job_id)
    if status["state"] != "done":
        raise ValueError(f"job {job_id} is {status['state']}, not done: no result yet")
    fs, _ = storage.resolve(root)

    def parts() -> Iterator[pa.Table]:
        for i in range(int(status["segments"])):
            yield pq.read_table(storage.resolve(_part(root, job_id, i))[1], filesystem=fs)

    return parts()


def result_table(root: str, job_id: str) -> pa.Table:
    """Every row of a finished job (``result_parts`` joined)."""
    return pa.concat_tables(list(result_parts(root, job_id)))


class _Stop(Exception):
    """The job was cancelled (or its runner is shutting down) between two member segments."""


def _local_video(uri: str, workdir: str) -> str:
    """A local path to read the video from: the path itself, or a copy of a remote object."""
    if not storage.is_remote(uri):
        return storage.resolve(uri)[1]
    fs, path = storage.resolve(uri)
    local = os.path.join(workdir, "input" + os.path.splitext(path)[1])
    with fs.open_input_stream(path) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return local


def _frames(reader: Any, first: int, tick: Callable[[int], bool]) -> Iterator[np.ndarray]:
    """The reader's frames; every member segment ``tick(frames read)``, and a stop when it says so."""
    for index, rgb in reader:
        if index > first and index % SEGMENT_FRAMES == 0 and tick(index):
            raise _Stop()
        yield rgb


def run_job(detector: Any, root: str, job_id: str, segment_frames: int = JOB_SEGMENT_FRAMES,
            stop: "Callable[[], bool] | None" = None) -> dict[str, Any]:
    """Run (or carry on) job ``job_id`` to its end with ``detector`` (a
    ``components.au_detector.Detector``) and return its final status.

    Frames stream from the video (a remote one is copied to a temporary file first); each job
    segment's rows become a part, then the carry and the status are written. ``stop()`` (checked
    every member segment, with the job's cancel marker) ends the run early: the job is
    cancelled when its marker is there, else left running for another runner to carry on.
    """
    from components.au_detector import rows_to_openface
    from components.datasets.base import LayoutError
    from components.datasets.video_io import iter_video_frames, video_frame_count

    status = read_status(root, job_id)
    if status["state"] in FINAL_STATES:
        return status
    d = _dir(root, job_id)
    spec = json.loads(_read_bytes(storage.join(d, "job.json")))

    def halted() -> bool:
        return cancel_requested(root, job_id) or bool(stop and stop())

    carry_uri = storage.join(d, "carry.pkl")
    carry: "SegmentCarry | None" = pickle.loads(_read_bytes(carry_uri)) if storage.exists(carry_uri) else None
    workdir = tempfile.mkdtemp(prefix="facsflow-job-")
    cpu0, wall0, done0 = time.process_time(), time.perf_counter(), carry.frames if carry else 0
    cpu_before, wall_before = float(status.get("cpu_s", 0.0)), float(status.get("wall_s", 0.0))
    try:
        path = _local_video(spec["input"], workdir)
        count = video_frame_count(path, verify=False)
        fps = count.fps or 30.0
        status.update(state="running", frames_total=count.header_frames or None, error="",
                      runs=int(status.get("runs", 0)) + 1, resumed_from=done0)
        write_status(root, job_id, status)
        log.info("job %s: %s from frame %d of %d", job_id, spec["input"], done0, count.header_frames)
        reader = iter_video_frames(path, start=done0, exact_seek=True)
        intensity = detector.has_intensity

        def progress(done: int, segments: "int | None" = None) -> None:
            wall = time.perf_counter() - wall0
            rate = (done - done0) / max(wall, 1e-9)
            total = status["frames_total"]
            status.update(frames_done=done, fps=round(rate, 2),
                          eta_s=round(max(0, total - done) / rate, 1) if total and rate > 0 else None,
                          cpu_s=round(cpu_before + time.process_time() - cpu0, 2), wall_s=round(wall_before + wall, 2))
            if segments is not None:
                status["segments"] = segments
            write_status(root, job_id, status)

        def tick(done: int) -> bool:
            if halted():
                return True
            progress(done)
            return False

        for seg in iter_video_segments(detector.predictor, _frames(reader, done0, tick), fps, spec["name"],
                                       job_id, carry, segment_frames):
            if halted():
                raise _Stop()
            table = pa.Table.from_pandas(rows_to_openface(seg.rows, detector.aus, intensity), preserve_index=False)
            storage.write_table_atomic(table, _part(root, job_id, seg.index))
            _write_bytes(carry_uri, pickle.dumps(seg.carry))
            progress(seg.carry.frames, seg.carry.segments)
        if status["frames_done"] == 0:
            raise ValueError(f"{spec['input']}: no frame could be decoded")
        if reader.truncated:
            log.warning("job %s: %s ended at frame %d of the %d its header claims", job_id, spec["input"],
                        status["frames_done"], count.header_frames)
        status.update(state="done", eta_s=0.0, frames_total=status["frames_done"])
    except _Stop:
        if not cancel_requested(root, job_id):
            return status  # a runner shutting down: the job stays running for the next one
        status["state"] = "cancelled"
    except (LayoutError, OSError, ValueError) as e:
        status.update(state="failed", error=f"{spec['input']}: frame {status['frames_done']} or after: {e}"
                      if status["frames_done"] else str(e))
        log.warning("job %s failed: %s", job_id, status["error"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write_status(root, job_id, status)
    return status
