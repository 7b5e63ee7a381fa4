"""Video jobs on Serve: the ingress answers ``/v1/jobs`` at once; ``VideoJobs`` runs the jobs.

A job's state and partial results live in the jobs folder (``AppArgs.jobs_dir``: a local path,
or on a cluster a shared path or URI every replica can reach; ``components.video_jobs`` says
what is in it). The ingress writes a new job there (the uploaded video streamed to
``<jobs_dir>/<id>/input<ext>``, or the client's URI recorded), tells ``VideoJobs`` and answers 202;
``GET`` reads the status and results from the folder, ``DELETE`` leaves the cancel marker.

``VideoJobs`` (one replica) builds a ``Detector`` once and runs queued jobs one after another in
a worker thread, each a segment at a time (``components.video_segments``). When its replica
dies, Serve starts another, whose ``__init__`` carries on every job the folder says is queued or
running, from the first segment without a part: every frame's rows land once. Two replicas
would run the same job twice, so the deployment has exactly one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from ray import serve

from components import storage
from components import video_jobs as vj
from components.serving_inputs import BadInput
from components.video_segments import JOB_SEGMENT_FRAMES

log = logging.getLogger("facsflow.serve")

__all__ = ["JobsArgs", "VideoJobs", "default_jobs_dir", "create_job", "result_chunks"]

VIDEO_SUFFIXES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-msvideo": ".avi",
                  "video/avi": ".avi", "video/x-matroska": ".mkv"}


def default_jobs_dir() -> str:
    """``$FACSFLOW_CACHE/jobs`` (``components.cache``): right for one machine; a cluster gives a
    shared path or URI instead."""
    from components.cache import cache_root

    return str(cache_root() / "jobs")


@dataclass
class JobsArgs:
    """Constructor arguments of ``VideoJobs`` (from ``AppArgs``)."""

    jobs_dir: str
    ensemble: str
    video_faces: dict[str, Any] = field(default_factory=dict)
    smooth_window: "int | None" = None
    segment_frames: int = JOB_SEGMENT_FRAMES
    use_gpu: bool = False
    """Members on the replica's GPU (``AppArgs.jobs.num_gpus`` > 0)."""


@serve.deployment(name="VideoJobs", num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25},
                  health_check_period_s=10, health_check_timeout_s=30)
class VideoJobs:
    """Runs the jobs of the jobs folder, one at a time, in a worker thread."""

    def __init__(self, args: JobsArgs) -> None:
        from components.au_detector import Detector
        from workflows.core.runtime import torch_single_thread

        import torch

        torch_single_thread()
        self.args = args
        device = "cuda" if args.use_gpu and torch.cuda.is_available() else "cpu"
        self.detector = Detector.from_ensemble(args.ensemble, device, args.video_faces, args.smooth_window)
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._closing = threading.Event()
        storage.makedirs(args.jobs_dir)
        carried = vj.pending_jobs(args.jobs_dir)
        for job_id in carried:  # what a replica that died left queued or running
            self._queue.put(job_id)
        if carried:
            log.info("carrying on %d unfinished job(s): %s", len(carried), ", ".join(carried))
        self._thread = threading.Thread(target=self._work, name="facsflow-jobs", daemon=True)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        """Queue a job the ingress wrote to the folder."""
        self._queue.put(job_id)

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the job worker thread has stopped")

    def __del__(self) -> None:
        # Serve stopping the replica: the job in hand stops before its next member segment and
        # stays 'running' in the folder for the next replica to carry on.
        self._closing.set()

    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                status = vj.run_job(self.detector, self.args.jobs_dir, job_id, self.args.segment_frames,
                                    self._closing.is_set)
                log.info("job %s: %s, %s frames", job_id, status["state"], status["frames_done"])
            except vj.UnknownJob:
                log.warning("job %s: not in %s", job_id, self.args.jobs_dir)
            except Exception as e:  # noqa: BLE001 - one job's failure must not stop the worker
                log.exception("job %s failed", job_id)
                try:
                    status = vj.read_status(self.args.jobs_dir, job_id)
                    status.update(state="failed", error=f"{type(e).__name__}: {e}")
                    vj.write_status(self.args.jobs_dir, job_id, status)
                except Exception:  # noqa: BLE001 - the folder itself is unreachable: logged above
                    pass


async def create_job(request: Any, jobs_dir: str, max_bytes: int) -> dict[str, Any]:
    """A queued job from a ``POST /v1/jobs``: JSON ``{"uri": ..., "name": ...}`` naming a video the
    cluster can read (a local path or a pyarrow filesystem URI such as ``s3://``), or the video's
    bytes with a ``video/*`` content type (``?name=`` names it), streamed into the job's folder."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadInput(400, "the JSON body does not parse: send {\"uri\": \"<path or s3://...>\"}") from None
        uri = body.get("uri") if isinstance(body, dict) else None
        if not isinstance(uri, str) or not uri:
            raise BadInput(400, "JSON body needs \"uri\": a video path or URI the cluster can read")
        if not await asyncio.to_thread(storage.exists, uri):
            raise BadInput(400, f"{uri}: no such video where the service can read it")
        return await asyncio.to_thread(vj.new_job, jobs_dir, uri, str(body.get("name") or ""))
    if not ctype.startswith("video/"):
        raise BadInput(415, f"content type {ctype!r}: send JSON {{\"uri\": ...}} or the video's bytes with a "
                            "video/* Content-Type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BadInput(413, f"request body of {int(declared)} bytes exceeds the job limit of {max_bytes} bytes")
    job_id = os.urandom(8).hex()
    uri = storage.join(jobs_dir, job_id, "input" + VIDEO_SUFFIXES.get(ctype, ".mp4"))
    fs, path = storage.resolve(uri)
    await asyncio.to_thread(lambda: fs.create_dir(path.rsplit("/", 1)[0], recursive=True))
    size = 0
    out = await asyncio.to_thread(fs.open_output_stream, path)
    try:
        chunks: AsyncIterator[bytes] = request.stream()
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise BadInput(413, f"request body exceeds the job limit of {max_bytes} bytes")
            await asyncio.to_thread(out.write, chunk)
    finally:
        await asyncio.to_thread(out.close)
    if not size:
        raise BadInput(400, "empty body (0 bytes): send the video's bytes, or JSON {\"uri\": ...}")
    name = request.query_params.get("name") or f"upload{VIDEO_SUFFIXES.get(ctype, '.mp4')}"
    return await asyncio.to_thread(vj.new_job, jobs_dir, uri, name, job_id)


def result_chunks(jobs_dir: str, job_id: str, fmt: str) -> Iterator[bytes]:
    """A finished job's rows as CSV or Parquet bytes, a part at a time (memory: one part)."""
    import tempfile

    import pyarrow.parquet as pq

    parts = vj.result_parts(jobs_dir, job_id)
    if fmt == "csv":
        for i, part in enumerate(parts):
            yield part.to_pandas().to_csv(index=False, header=i == 0).encode()
        return
    with tempfile.TemporaryFile() as f:
        writer = None
        for part in parts:
            writer = writer or pq.ParquetWriter(f, part.schema, compression="zstd")
            writer.write_table(part)
        if writer is not None:
            writer.close()
        f.seek(0)
        while chunk := f.read(1 << 20):
            yield chunk
