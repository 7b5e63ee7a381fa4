"""The HTTP ingress of the Serve app (FastAPI): endpoints, the web page, API key, retries.

``/v1/stream`` (WebSocket) answers a live stream frame by frame with a
``components.live.LiveSession`` per connection (causal tracking and smoothing, as ``facsflow
live``); the tracker's state travels with each frame to the face stage (``FacePipelineDeployment.
stream``), so no stage keeps per-client state.

The ingress holds the ensemble's ``InferencePlan`` (``components.plan``; swapped atomically by
``reconfigure``) and answers each request with the one orchestration ``predict``, the
``Detector`` and evaluation run in process (``components.inference.answer_tracks_async``): the
face pipeline stage gives tracks (with the face pipeline the plan names), the members answer
their requests (every face track keyed by this request's id, videos in segments; concurrently),
the combiner each track, and the rows go out as JSON or, on request, CSV (the columns of
``components.au_detector``). How a stage is reached (Serve handles, or the same classes in this
replica) is the ``stages`` object ``build_app`` gives it (``workflows.serve.stages``).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at runtime.
"""

import asyncio
import hmac
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from ray import serve

from components.inference import answer_tracks_async, image_rows, request_id, video_rows
from components.plan import SMOOTH_WINDOW, InferencePlan, plan_for
from components.serving_inputs import BadInput, Limits, check_content_type, read_body
from workflows.serve.deployments import probe_batch
from workflows.serve.streaming import StreamConnection

log = logging.getLogger("facsflow.serve")

__all__ = ["AUService", "IngressSettings", "api", "STATIC_FILES"]

STATIC = Path(__file__).resolve().parents[1] / "static"  # workflows/static, beside the stages
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
"""The web page's files (served from workflows/static; nothing else under it is reachable)."""
def _open_path(path: str) -> bool:
    """Answered without the API key: the page itself (it carries no data) and the health probe."""
    return path in ("/", "/healthz") or path.startswith("/static/")

api = FastAPI(title="facsflow", description="Facial Action Unit detection with an ensemble of models",
              docs_url="/docs", redoc_url=None)


class IngressSettings(BaseModel):
    """What the ingress needs besides its handles (built from AppArgs by ``build_app``)."""

    ensemble: str
    slots: int = Field(ge=1)
    limits: Limits = Limits()
    api_key: str = ""
    require_api_key: bool = False
    smooth_window: int = Field(SMOOTH_WINDOW, ge=1)
    image_faces: dict[str, Any] = {}
    """Face pipeline fields over the plan's for still images (``AppArgs.image_faces``)."""
    video_faces: dict[str, Any] = {}
    """Face pipeline fields over the plan's for videos (``AppArgs.video_faces``)."""
    jobs_dir: str = ""
    """The video jobs' folder (``AppArgs.jobs_dir``; ``workflows.serve.jobs``)."""


@dataclass(frozen=True)
class Served:
    """One manifest's plan, ready to route: replaced whole on reconfigure, so a request sees one."""

    plan: InferencePlan
    members: list[dict[str, Any]]
    """The members as plain dicts, the part of a member request that names its member."""
    image_faces: dict[str, Any]
    """The face pipeline fields of still-image requests."""
    video_faces: dict[str, Any]
    """The face pipeline fields of video requests."""

    @property
    def ensemble(self) -> str:
        return self.plan.directory

    @property
    def manifest(self) -> Any:
        return self.plan.manifest


def load_served(ensemble: str, settings: IngressSettings) -> Served:
    """Read a manifest, make its plan and check it fits the app's member deployments."""
    from components.ensemble import EnsembleManifest

    man = EnsembleManifest.load(ensemble)
    if len(man.members) > settings.slots:
        raise ValueError(f"{ensemble}: {len(man.members)} members but the application has {settings.slots} member "
                         f"deployments: redeploy with members={len(man.members)} (user_config cannot add deployments)")
    plan = plan_for(man, ensemble, smooth_window=settings.smooth_window)
    return Served(plan, [asdict(m) for m in man.members], asdict(plan.face_config(**settings.image_faces)),
                  asdict(plan.face_config(**settings.video_faces)))


@serve.deployment(name="AUService", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.25},
                  health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(api)
class AUService:
    """HTTP face of the application; the manifest is the single source of routing truth."""

    def __init__(self, stages: Any, settings: dict[str, Any], jobs: Any = None) -> None:
        self.settings = IngressSettings(**settings)
        self.jobs = jobs
        """Handle to the ``VideoJobs`` deployment (``workflows.serve.jobs``)."""
        self.stages = stages.start(self.settings.ensemble)
        self.api_key = self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
        if self.settings.require_api_key and not self.api_key:
            raise ValueError("this app is reachable beyond loopback: set api_key (or FACSFLOW_API_KEY in the "
                             "replicas' environment) so clients must send X-API-Key")
        self.served = load_served(self.settings.ensemble, self.settings)
        self.streams = 0
        """Open ``/v1/stream`` connections in this replica."""

    async def check_health(self) -> None:
        """The stages' health checks that run in this replica (``workflows.serve.stages``)."""
        await self.stages.check_health()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``ensemble`` rolls out a new manifest, ``api_key`` rotates the key,
        both without a restart (a key set here wins over the args and the environment)."""
        if config.get("ensemble") and config["ensemble"] != self.served.ensemble:
            served = load_served(config["ensemble"], self.settings)
            self.stages.reconfigure(config)  # members in this replica load before a request names them
            self.served = served
            log.info("now serving %s", config["ensemble"])
        if "api_key" in config:
            key = str(config["api_key"] or "") or self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
            if self.settings.require_api_key and not key:
                raise ValueError("user_config removes the API key of an app reachable beyond loopback")
            self.api_key = key

    # ------------------------------------------------------------------ plumbing
    def _member_request(self, st: Served, slot: int, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"member": st.members[slot], "aus": list(st.manifest.aus), "steps": list(st.plan.steps), **batch}

    async def _answers(self, st: Served, tracks: list[Any], video: bool, source: str = "", name: str = "",
                       smooth: bool = True) -> list[dict[str, Any]]:
        """The orchestration over this app's stages: one answer per track, the tracks keyed by a
        fresh request id (or a stream's own) so batches never mix clients."""
        async def run_member(slot: int, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return list(await asyncio.gather(*[self.stages.member(slot, self._member_request(st, slot, b))
                                               for b in requests]))

        return await answer_tracks_async(st.plan, tracks, video, run_member,
                                         lambda use, outs, window: self.stages.combine(st.manifest, use, outs, window),
                                         source or request_id(), name or ("video" if video else "image"), smooth)

    def _denied(self, request: Request) -> "JSONResponse | None":
        if not self.api_key or _open_path(request.url.path):
            return None
        if hmac.compare_digest(request.headers.get("x-api-key", ""), self.api_key):
            return None
        return JSONResponse({"error": "missing or wrong X-API-Key header"}, status_code=401)

    @staticmethod
    def _wants_csv(request: Request) -> bool:
        fmt = request.query_params.get("format", "").lower()
        return fmt == "csv" or (not fmt and "text/csv" in request.headers.get("accept", ""))

    def _csv(self, rows: list[dict[str, Any]], aus: list[int]) -> Response:
        from components.au_detector import rows_to_openface

        return Response(rows_to_openface(rows, aus).to_csv(index=False), media_type="text/csv")

    @staticmethod
    def _fail(e: BadInput) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status)

    def _members_info(self, st: Served, use: list[int]) -> dict[str, Any]:
        voted = [st.members[i]["name"] for i in use]
        left = [{"name": m["name"], "reason": "needs video (temporal landmarks or a frame window)"}
                for i, m in enumerate(st.members) if i not in use]
        return {"members_voted": voted, "members_left_out": left}

    # ------------------------------------------------------------------ web page
    @api.get("/", include_in_schema=False)
    def page(self) -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type=STATIC_FILES["index.html"])

    @api.get("/static/{name}", include_in_schema=False)
    def static(self, name: str) -> Response:
        if name not in STATIC_FILES:
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])

    # ------------------------------------------------------------------ API
    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        """End to end on a neutral probe: a detection, every member's forward pass, a combination."""
        st, t0 = self.served, time.perf_counter()
        try:
            batch = probe_batch(st.plan.align_size, st.plan.steps)
            use = list(st.plan.video_use)
            outs = await asyncio.gather(*[self.stages.member(i, self._member_request(st, i, batch)) for i in use])
            await self.stages.combine(st.manifest, use, list(outs), 1)
            await self.stages.probe_faces()
        except Exception as e:  # noqa: BLE001 - any failure means unhealthy, said as such
            log.error("health probe failed: %s", type(e).__name__)
            return JSONResponse({"status": "unhealthy", "error": type(e).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "ensemble": st.ensemble, "members": [m["name"] for m in st.members],
                             "seconds": round(time.perf_counter() - t0, 4)})

    @api.get("/v1/models")
    def models(self, request: Request) -> Response:
        """Members, their inputs, the AU list, provenance and the model card."""
        from components.au import CATALOGUE
        from components.faces.identity import identity_card

        denied = self._denied(request)
        if denied:
            return denied
        st = self.served
        man = st.manifest
        return JSONResponse({
            "ensemble": st.ensemble, "rule": man.rule, "weights": man.weights, "thresholds": man.thresholds,
            "aus": [{"number": a, "name": CATALOGUE[a].name, "region": CATALOGUE[a].region} for a in man.aus],
            "members": [{"name": m["name"], "model": m["model_name"], "input": m["input_spec"],
                         "needs_video": i not in st.plan.image_use, "answers_images": i in st.plan.image_use,
                         "trained_on": m["trained_on"], "init": m.get("init", {}), "thresholds": m["thresholds"],
                         "val_f1": m["val_f1"]}
                        for i, m in enumerate(st.members)],
            "provenance": man.provenance, "model_card": man.card(),
            "faces": {k: st.image_faces[k] for k in ("detector", "landmarker", "align_size")},
            **({"identity": identity_card()} if st.video_faces.get("reidentify") else {}),
            "limits": self.settings.limits.model_dump(), "smoothing_window": st.plan.smooth_window})

    @api.post("/v1/predict")
    async def predict(self, request: Request) -> Response:
        """An image (JPEG/PNG/WebP bytes) → every face: box, score, landmarks, AUs."""
        denied = self._denied(request)
        if denied:
            return denied
        st, t0 = self.served, time.perf_counter()
        try:
            ctype = check_content_type(request.headers.get("content-type", ""), "image")
            body = await read_body(request, self.settings.limits.max_body_bytes)
            if not body:
                raise BadInput(400, "empty body (0 bytes): send the image bytes (JPEG, PNG or WebP)")
            res = await self.stages.image(body, ctype, st.image_faces)
            if "error" in res:
                raise BadInput(res["status"], res["error"])
            answers = await self._answers(st, res["tracks"], video=False)
        except BadInput as e:
            log.info("predict: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        aus = list(st.manifest.aus)
        faces = image_rows(res["tracks"], answers, aus)
        log.info("predict: %d bytes, %d faces, %.3f s", len(body), len(faces), time.perf_counter() - t0)
        if self._wants_csv(request):
            rows = [dict(f, frame=0, timestamp=0.0, success=1) for f in faces] or [{"frame": 0, "success": 0}]
            return self._csv(rows, aus)
        return JSONResponse({"faces": faces, "n_faces": len(faces), "aus": aus, "width": res["width"],
                             "height": res["height"], **self._members_info(st, st.plan.image_use),
                             "seconds": round(time.perf_counter() - t0, 4)})

    @api.post("/v1/predict/video")
    async def predict_video(self, request: Request) -> Response:
        """A video file → per-frame rows for the tracked face(s), smoothed over time."""
        denied = self._denied(request)
        if denied:
            return denied
        st, t0 = self.served, time.perf_counter()
        try:
            ctype = check_content_type(request.headers.get("content-type", ""), "video")
            body = await read_body(request, self.settings.limits.max_video_bytes)
            res = await self.stages.video(body, ctype, st.video_faces, list(st.plan.steps))
            if "error" in res:
                raise BadInput(res["status"], res["error"])
            if not res["tracks"]:
                raise BadInput(422, f"no face found in any of the {res['n_frames']} frames of the video")
            answers = await self._answers(st, res["tracks"], video=True)
        except BadInput as e:
            log.info("predict/video: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        log.info("predict/video: %d bytes, %d frames, %d faces, %.3f s", len(body), res["n_frames"],
                 len(res["tracks"]), time.perf_counter() - t0)
        aus = list(st.manifest.aus)
        rows = video_rows(res["tracks"], answers, res["n_frames"], res["fps"], aus)
        if self._wants_csv(request):
            return self._csv(rows, aus)
        return JSONResponse({"fps": res["fps"], "n_frames": res["n_frames"], "width": res["width"],
                             "height": res["height"], "aus": aus, "face_ids": [t.face_id for t in res["tracks"]],
                             "smoothing": {"window": st.plan.smooth_window, "method": "centred moving mean"},
                             "diff_steps": list(st.plan.steps), **self._members_info(st, st.plan.video_use),
                             "rows": rows, "seconds": round(time.perf_counter() - t0, 4)})

    # ------------------------------------------------------------------ video jobs
    @api.post("/v1/jobs", status_code=202)
    async def create_job(self, request: Request) -> Response:
        """A long video as a job: JSON ``{"uri": ...}`` or the video's bytes; 202 with its id at once."""
        from workflows.serve.jobs import create_job

        denied = self._denied(request)
        if denied:
            return denied
        try:
            status = await create_job(request, self.settings.jobs_dir, self.settings.limits.max_job_bytes)
        except BadInput as e:
            log.info("jobs: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        try:
            await self.jobs.submit.remote(status["id"])
        except Exception as e:  # noqa: BLE001 - the job is in the folder: a restarted runner takes it up
            log.warning("job %s: runner not reached (%s); it starts when the runner is back", status["id"],
                        type(e).__name__)
        log.info("job %s: queued %s", status["id"], status["input"])
        return JSONResponse({**status, "url": f"/v1/jobs/{status['id']}"}, status_code=202)

    @api.get("/v1/jobs")
    async def list_jobs(self, request: Request) -> Response:
        from components.video_jobs import list_jobs

        return self._denied(request) or JSONResponse({"jobs": await asyncio.to_thread(list_jobs, self.settings.jobs_dir)})

    async def _job(self, request: Request, job_id: str, call: Any) -> Any:
        from components.video_jobs import UnknownJob

        denied = self._denied(request)
        if denied:
            return denied
        try:
            return await asyncio.to_thread(call, self.settings.jobs_dir, job_id)
        except UnknownJob as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    @api.get("/v1/jobs/{job_id}")
    async def job(self, request: Request, job_id: str) -> Response:
        """State (queued, running, done, failed, cancelled), frames_done / frames_total, fps, eta_s, error."""
        from components.video_jobs import read_status

        res = await self._job(request, job_id, read_status)
        return res if isinstance(res, Response) else JSONResponse(res)

    @api.delete("/v1/jobs/{job_id}")
    async def cancel_job(self, request: Request, job_id: str) -> Response:
        """Cancel: a queued job at once, a running one before its next segment."""
        from components.video_jobs import request_cancel

        res = await self._job(request, job_id, request_cancel)
        return res if isinstance(res, Response) else JSONResponse(res, status_code=202)

    @api.get("/v1/jobs/{job_id}/result")
    async def job_result(self, request: Request, job_id: str) -> Response:
        """A done job's rows (``?format=csv`` or ``parquet``), the columns of ``facsflow predict``."""
        from fastapi.responses import StreamingResponse

        from components.video_jobs import read_status
        from workflows.serve.jobs import result_chunks

        fmt = request.query_params.get("format", "csv").lower()
        if fmt not in ("csv", "parquet"):
            return JSONResponse({"error": f"format {fmt!r}: csv or parquet"}, status_code=400)
        res = await self._job(request, job_id, read_status)
        if isinstance(res, Response):
            return res
        if res["state"] != "done":
            return JSONResponse({"error": f"job {job_id} is {res['state']}, not done: no result",
                                 "state": res["state"]}, status_code=409)
        media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
        return StreamingResponse(result_chunks(self.settings.jobs_dir, job_id, fmt), media_type=media)

    # ------------------------------------------------------------------ live stream
    @api.websocket("/v1/stream")
    async def stream(self, ws: WebSocket) -> None:
        """A live stream: binary messages of JPEG (or PNG/WebP) frames in, one JSON text message
        per frame out: ``{"frame", "rows", "width", "height", "seconds"}`` (rows as ``facsflow
        live``'s: tracked faces, causal smoothing), ``{"frame", "error"}`` for a frame that is not
        an image (the next frames are still answered), ``{"frame", "dropped": true, "error"}`` for
        a frame over the rate limit or sent while an older one was still waiting.

        API key: the ``X-API-Key`` header or, from a browser (which cannot set headers), the
        ``?api_key=`` query. Close codes: 1008 missing or wrong key, 1009 a frame over
        ``max_body_bytes`` or ``max_video_frame_pixels``, 1013 this replica already holds
        ``max_streams`` connections (try again later)."""
        key = ws.headers.get("x-api-key") or ws.query_params.get("api_key", "")
        await ws.accept()
        limits = self.settings.limits
        if self.api_key and not hmac.compare_digest(key, self.api_key):
            await ws.close(1008, "missing or wrong API key: X-API-Key header or ?api_key= query")
            return
        if self.streams >= limits.max_streams:
            await ws.close(1013, f"this replica already holds {limits.max_streams} streams: try again later")
            return
        self.streams += 1
        try:
            await StreamConnection(self, ws).run()
        except WebSocketDisconnect:
            pass
        finally:
            self.streams -= 1

