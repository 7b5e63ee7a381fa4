"""The HTTP ingress of the Serve app (FastAPI): endpoints, the web page, API key, retries.

The ingress holds the ensemble manifest (swapped atomically by ``reconfigure``) and moves each
request through the steps of ``components.inference`` (the orchestration ``predict``, the
``Detector`` and evaluation run in process): the face pipeline deployment (tracks), the member
deployments (``member_inputs``: every face track keyed by this request's id, videos in segments;
concurrently; a call that fails because a replica died is retried once), the combiner (per
track) and the answer rows, as JSON or, on request, CSV (the columns of ``components.au_detector``).
In the staged layout it loads no model itself; in the fused one (``AppArgs.layout``) it builds
those same stage classes in its own replica and calls them without a Serve hop.

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
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from ray import serve
from ray.exceptions import RayActorError

from components.inference import (
    SMOOTH_WINDOW, InferencePlan, face_answer, gather_outputs, member_inputs, plan_for, request_id, video_rows,
)
from workflows.serve.deployments import Combiner, FacePipelineDeployment, MemberModel, probe_batch
from components.serving_inputs import BadInput, Limits, check_content_type, read_body

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
    fused: "dict[str, Any] | None" = None
    """The 'fused' layout (``AppArgs.layout``): the stages' constructor arguments (``faces``,
    ``member``), built in this replica instead of called through handles."""


@dataclass(frozen=True)
class Served:
    """One manifest, ready to route: replaced whole on reconfigure, so a request sees one."""

    ensemble: str
    manifest: Any
    members: list[dict[str, Any]]
    plan: InferencePlan


def load_served(ensemble: str, slots: int) -> Served:
    """Read a manifest and check it fits the app's member deployments."""
    from components.ensemble import EnsembleManifest

    man = EnsembleManifest.load(ensemble)
    if len(man.members) > slots:
        raise ValueError(f"{ensemble}: {len(man.members)} members but the application has {slots} member "
                         f"deployments: redeploy with members={len(man.members)} (user_config cannot add deployments)")
    return Served(ensemble=ensemble, manifest=man, members=[asdict(m) for m in man.members], plan=plan_for(man))


@serve.deployment(name="AUService", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.25},
                  health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(api)
class AUService:
    """HTTP face of the application; the manifest is the single source of routing truth."""

    def __init__(self, faces: Any, members: list[Any], combiner: Any, settings: dict[str, Any]) -> None:
        self.settings = IngressSettings(**settings)
        self.faces, self.members, self.combiner = faces, list(members), combiner
        if self.settings.fused is not None:  # the same stage classes, in this replica
            f = self.settings.fused
            self.faces = FacePipelineDeployment.func_or_class(*f["faces"])
            # One object for every member: @serve.batch's queue is per method and process.
            self.members = [MemberModel.func_or_class(self.settings.ensemble, None, *f["member"])] * self.settings.slots
            self.combiner = Combiner.func_or_class()
        self.api_key = self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
        if self.settings.require_api_key and not self.api_key:
            raise ValueError("this app is reachable beyond loopback: set api_key (or FACSFLOW_API_KEY in the "
                             "replicas' environment) so clients must send X-API-Key")
        self.served = load_served(self.settings.ensemble, self.settings.slots)

    async def check_health(self) -> None:
        """Fused layout: each stage's own health check (a detection, every member's forward pass,
        a combination) in this replica; staged: the stages' replicas check themselves."""
        if self.settings.fused is None:
            return
        await asyncio.to_thread(self.faces.check_health)
        await asyncio.to_thread(self.members[0].check_health)
        self.combiner.check_health()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``ensemble`` rolls out a new manifest, ``api_key`` rotates the key,
        both without a restart (a key set here wins over the args and the environment)."""
        if config.get("ensemble") and config["ensemble"] != self.served.ensemble:
            served = load_served(config["ensemble"], self.settings.slots)
            if self.settings.fused is not None:  # the new members loaded before the first request names them
                self.members[0].reconfigure(config)
            self.served = served
            log.info("now serving %s", config["ensemble"])
        if "api_key" in config:
            key = str(config["api_key"] or "") or self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
            if self.settings.require_api_key and not key:
                raise ValueError("user_config removes the API key of an app reachable beyond loopback")
            self.api_key = key

    # ------------------------------------------------------------------ plumbing
    async def _call(self, method: Any, *args: Any) -> Any:
        """A deployment call, retried once when the replica serving it died or was unreachable;
        a second failure is a 503 for the client. In the fused layout ``method`` is a stage's
        own method in this replica: awaited, or run in a worker thread when synchronous."""
        if not hasattr(method, "remote"):
            if asyncio.iscoroutinefunction(method):
                return await method(*args)
            return await asyncio.to_thread(method, *args)
        try:
            return await method.remote(*args)
        except RayActorError as e:
            log.warning("retrying once after a replica failure (%s)", type(e).__name__)
        try:
            return await method.remote(*args)
        except RayActorError as e:
            raise BadInput(503, f"a backend replica failed twice ({type(e).__name__}); try again shortly") from None

    async def _member(self, st: Served, i: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        req = {"member": st.members[i], "aus": list(st.manifest.aus), "steps": list(st.plan.steps), **batch}
        return await self._call(self.members[i].predict, req)

    async def _answers(self, st: Served, tracks: list[Any], video: bool) -> list[dict[str, Any]]:
        """The orchestration's member and combination steps across the deployments: one answer
        per track, the tracks keyed by a fresh request id so batches never mix clients."""
        use = st.plan.video_use if video else st.plan.image_use
        inputs = member_inputs(tracks, request_id(), "video" if video else "image", video)

        async def member(i: int) -> list[dict[str, np.ndarray]]:
            outs = await asyncio.gather(*[self._member(st, i, inp.batch) for inp in inputs])
            return gather_outputs(tracks, inputs, outs)

        per_member = await asyncio.gather(*[member(i) for i in use])
        smooth = self.settings.smooth_window if video else 1
        if self.settings.fused is not None:  # microseconds of numpy: no thread hop
            return [self.combiner.combine(st.manifest, use, [outs[t] for outs in per_member], smooth)
                    for t in range(len(tracks))]
        return await asyncio.gather(*[self._call(self.combiner.combine, st.manifest, use,
                                                 [outs[t] for outs in per_member], smooth)
                                      for t in range(len(tracks))])

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
            outs = await asyncio.gather(*[self._member(st, i, batch) for i in st.plan.video_use])
            await self._call(self.combiner.combine, st.manifest, st.plan.video_use, outs)
            await self._call(self.faces.probe)
        except Exception as e:  # noqa: BLE001 - any failure means unhealthy, said as such
            log.error("health probe failed: %s", type(e).__name__)
            return JSONResponse({"status": "unhealthy", "error": type(e).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "ensemble": st.ensemble, "members": [m["name"] for m in st.members],
                             "seconds": round(time.perf_counter() - t0, 4)})

    @api.get("/v1/models")
    def models(self, request: Request) -> Response:
        """Members, their inputs, the AU list, provenance and the model card."""
        from components.au import CATALOGUE

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
            "limits": self.settings.limits.model_dump(), "smoothing_window": self.settings.smooth_window})

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
            res = await self._call(self.faces.image, body, ctype, st.plan.align_size)
            if "error" in res:
                raise BadInput(res["status"], res["error"])
            answers = await self._answers(st, res["tracks"], video=False)
        except BadInput as e:
            log.info("predict: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        aus = list(st.manifest.aus)
        faces = [face_answer(t.info[0], a, 0, aus) for t, a in zip(res["tracks"], answers)]
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
            res = await self._call(self.faces.video, body, ctype, st.plan.align_size, list(st.plan.steps))
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
                             "smoothing": {"window": self.settings.smooth_window, "method": "centred moving mean"},
                             "diff_steps": list(st.plan.steps), **self._members_info(st, st.plan.video_use),
                             "rows": rows, "seconds": round(time.perf_counter() - t0, 4)})
