"""The HTTP ingress of the Serve app (FastAPI): endpoints, the web page, API key, retries.

The ingress holds the ensemble manifest (swapped atomically by ``reconfigure``), sends each
request through the face pipeline, the member deployments (concurrently; a call that fails
because a replica died is retried once) and the combiner, and shapes the answer as JSON or,
on request, CSV (the columns of ``components.detector``). It loads no model itself.

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

from workflows.serve_deployments import probe_batch
from workflows.serve_inputs import BadInput, Limits, check_content_type, read_body

log = logging.getLogger("facsflow.serve")

__all__ = ["AUService", "IngressSettings", "api", "STATIC_FILES"]

STATIC = Path(__file__).parent / "static"
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
    video_chunk: int = Field(32, ge=1)
    smooth_window: int = Field(5, ge=1)


@dataclass(frozen=True)
class Served:
    """One manifest, ready to route: replaced whole on reconfigure, so a request sees one."""

    ensemble: str
    manifest: Any
    members: list[dict[str, Any]]
    image_use: list[int]
    video_use: list[int]
    steps: list[int]
    align_size: int


def _needs_video(spec: dict[str, Any]) -> bool:
    return bool(spec.get("diff_steps")) or int(spec.get("window", 0) or 0) > 0


def load_served(ensemble: str, slots: int) -> Served:
    """Read a manifest and check it fits the app's member deployments."""
    from components.ensemble import EnsembleManifest

    man = EnsembleManifest.load(ensemble)
    if len(man.members) > slots:
        raise ValueError(f"{ensemble}: {len(man.members)} members but the application has {slots} member "
                         f"deployments: redeploy with members={len(man.members)} (user_config cannot add deployments)")
    n = len(man.members)
    return Served(
        ensemble=ensemble, manifest=man, members=[asdict(m) for m in man.members],
        image_use=[i for i, m in enumerate(man.members) if not _needs_video(m.input_spec)],
        video_use=list(range(n)),
        steps=sorted({1} | {int(s) for m in man.members for s in m.input_spec.get("diff_steps", [])}),
        align_size=max(int(m.preprocess.get("image_size", 112)) for m in man.members))


def _model_card(man: Any) -> dict[str, Any]:
    card = dict(man.model_card)
    trained = sorted({m.trained_on for m in man.members if m.trained_on})
    card.setdefault("trained_on", trained)
    if "data_note" not in card:
        synthetic = any("synth" in d or d == "manifest" for d in trained)
        card["data_note"] = ("trained on facsflow's SYNTHETIC data: not a validated AU detector for real faces"
                             if synthetic else f"trained on {', '.join(trained) or 'unrecorded data'}")
    return card


def _floats(a: np.ndarray, digits: int = 5) -> list:
    return np.round(np.asarray(a, np.float64), digits).tolist()


@serve.deployment(name="AUService", max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.25},
                  health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(api)
class AUService:
    """HTTP face of the application; the manifest is the single source of routing truth."""

    def __init__(self, faces: Any, members: list[Any], combiner: Any, settings: dict[str, Any]) -> None:
        self.settings = IngressSettings(**settings)
        self.faces, self.members, self.combiner = faces, list(members), combiner
        self.api_key = self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
        if self.settings.require_api_key and not self.api_key:
            raise ValueError("this app is reachable beyond loopback: set api_key (or FACSFLOW_API_KEY in the "
                             "replicas' environment) so clients must send X-API-Key")
        self.served = load_served(self.settings.ensemble, self.settings.slots)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``ensemble`` rolls out a new manifest, ``api_key`` rotates the key,
        both without a restart (a key set here wins over the args and the environment)."""
        if config.get("ensemble") and config["ensemble"] != self.served.ensemble:
            self.served = load_served(config["ensemble"], self.settings.slots)
            log.info("now serving %s", config["ensemble"])
        if "api_key" in config:
            key = str(config["api_key"] or "") or self.settings.api_key or os.environ.get("FACSFLOW_API_KEY", "")
            if self.settings.require_api_key and not key:
                raise ValueError("user_config removes the API key of an app reachable beyond loopback")
            self.api_key = key

    # ------------------------------------------------------------------ plumbing
    async def _call(self, method: Any, *args: Any) -> Any:
        """A deployment call, retried once when the replica serving it died or was unreachable;
        a second failure is a 503 for the client."""
        try:
            return await method.remote(*args)
        except RayActorError as e:
            log.warning("retrying once after a replica failure (%s)", type(e).__name__)
        try:
            return await method.remote(*args)
        except RayActorError as e:
            raise BadInput(503, f"a backend replica failed twice ({type(e).__name__}); try again shortly") from None

    async def _member(self, st: Served, i: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        req = {"member": st.members[i], "aus": list(st.manifest.aus), "steps": st.steps, **batch}
        return await self._call(self.members[i].predict, req)

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
        from components.detector import rows_to_openface

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
            batch = probe_batch(st.align_size, tuple(st.steps))
            outs = await asyncio.gather(*[self._member(st, i, batch) for i in st.video_use])
            await self._call(self.combiner.combine, st.manifest, st.video_use, outs)
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
                         "needs_video": _needs_video(m["input_spec"]), "answers_images": i in st.image_use,
                         "trained_on": m["trained_on"], "thresholds": m["thresholds"], "val_f1": m["val_f1"]}
                        for i, m in enumerate(st.members)],
            "provenance": man.provenance, "model_card": _model_card(man),
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
            res = await self._call(self.faces.image, body, ctype, st.align_size)
            if "error" in res:
                raise BadInput(res["status"], res["error"])
            faces = res["faces"]
            if faces:
                batch = {k: res[k] for k in ("crop", "landmarks", "blendshapes") if res.get(k) is not None}
                outs = await asyncio.gather(*[self._member(st, i, batch) for i in st.image_use])
                ans = await self._call(self.combiner.combine, st.manifest, st.image_use, outs)
        except BadInput as e:
            log.info("predict: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        aus = list(st.manifest.aus)
        for k, f in enumerate(faces):
            f["probs"] = dict(zip((f"AU{a}" for a in aus), _floats(ans["probs"][k])))
            f["occurrence"] = dict(zip((f"AU{a}" for a in aus), ans["occurrence"][k].astype(int).tolist()))
            if "intensity" in ans:
                f["intensity"] = dict(zip((f"AU{a}" for a in aus), _floats(ans["intensity"][k], 4)))
            f["members"] = list(ans["members"])
        log.info("predict: %d bytes, %d faces, %.3f s", len(body), len(faces), time.perf_counter() - t0)
        if self._wants_csv(request):
            rows = [dict(f, frame=0, timestamp=0.0, success=1) for f in faces] or [{"frame": 0, "success": 0}]
            return self._csv(rows, aus)
        return JSONResponse({"faces": faces, "n_faces": len(faces), "aus": aus, "width": res["width"],
                             "height": res["height"], **self._members_info(st, st.image_use),
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
            res = await self._call(self.faces.video, body, ctype, st.align_size, st.steps)
            if "error" in res:
                raise BadInput(res["status"], res["error"])
            if not res["faces"]:
                raise BadInput(422, f"no face found in any of the {res['n_frames']} frames of the video")
            rows = await self._video_rows(st, res)
        except BadInput as e:
            log.info("predict/video: refused (%d) %s", e.status, e.message)
            return self._fail(e)
        log.info("predict/video: %d bytes, %d frames, %d faces, %.3f s", len(body), res["n_frames"],
                 len(res["faces"]), time.perf_counter() - t0)
        aus = list(st.manifest.aus)
        if self._wants_csv(request):
            return self._csv(rows, aus)
        return JSONResponse({"fps": res["fps"], "n_frames": res["n_frames"], "width": res["width"],
                             "height": res["height"], "aus": aus, "face_ids": [f["face_id"] for f in res["faces"]],
                             "smoothing": {"window": self.settings.smooth_window, "method": "centred moving mean"},
                             "diff_steps": st.steps, **self._members_info(st, st.video_use), "rows": rows,
                             "seconds": round(time.perf_counter() - t0, 4)})

    async def _video_rows(self, st: Served, res: dict[str, Any]) -> list[dict[str, Any]]:
        chunk = self.settings.video_chunk
        keys = ("crop", "landmarks", "landmark_diff", "diff_valid")
        keys += ("blendshapes",) if all("blendshapes" in f for f in res["faces"]) else ()

        async def member_over_face(face: dict[str, Any], i: int) -> dict[str, np.ndarray]:
            parts = await asyncio.gather(*[
                self._member(st, i, {k: face[k][lo:lo + chunk] for k in keys})
                for lo in range(0, len(face["frames"]), chunk)])
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "batch_faces"}

        async def one_face(face: dict[str, Any]) -> dict[str, Any]:
            outs = await asyncio.gather(*[member_over_face(face, i) for i in st.video_use])
            return await self._call(self.combiner.combine, st.manifest, st.video_use, outs,
                                    self.settings.smooth_window)

        answers = await asyncio.gather(*[one_face(f) for f in res["faces"]])
        fps, aus = res["fps"], [f"AU{a}" for a in st.manifest.aus]
        with_face: set[int] = set()
        rows: list[dict[str, Any]] = []
        for face, ans in zip(res["faces"], answers):
            for k, t in enumerate(face["frames"]):
                with_face.add(t)
                row = {"frame": t, "timestamp": round(t / fps, 4), "success": 1, **face["info"][k],
                       "probs": dict(zip(aus, _floats(ans["probs"][k]))),
                       "occurrence": dict(zip(aus, ans["occurrence"][k].astype(int).tolist())),
                       "motion": dict(zip((f"s{s}" for s in st.steps), _floats(face["motion"][k], 4)))}
                if "raw_probs" in ans:
                    row["raw_probs"] = dict(zip(aus, _floats(ans["raw_probs"][k])))
                if "intensity" in ans:
                    row["intensity"] = dict(zip(aus, _floats(ans["intensity"][k], 4)))
                rows.append(row)
        rows += [{"frame": t, "timestamp": round(t / fps, 4), "face_id": -1, "success": 0}
                 for t in range(res["n_frames"]) if t not in with_face]
        rows.sort(key=lambda r: (r["frame"], r["face_id"]))
        return rows
