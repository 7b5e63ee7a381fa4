"""Serve an ensemble over HTTP with Ray Serve.

``python -m workflows.serve --ensemble DIR [--host 127.0.0.1] [--port 8000]`` or
``serve run workflows.serve:build_app ensemble=DIR``. The application is built from typed
arguments (the ensemble folder), never from a lookup at import time.

Endpoints: ``POST /v1/predict`` (image bytes → per face: box, score, 68 landmarks, AU
probabilities and occurrences, the members that voted), ``GET /v1/models``, ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve

log = logging.getLogger("facsflow.serve")

__all__ = ["AppArgs", "AUService", "build_app", "main", "decode_image"]

api = FastAPI(title="facsflow", description="Facial Action Unit detection")

MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


class AppArgs(BaseModel):
    """Typed application arguments (``serve run workflows.serve:build_app ensemble=DIR``)."""

    ensemble: str
    num_cpus: float = 0.5
    api_key: str = ""


class BadInput(ValueError):
    """A client error: answered with 4xx and a JSON message."""


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """JPEG/PNG/WebP bytes → RGB; rejects empty, non-image, truncated and oversized input."""
    import cv2

    if not data:
        raise BadInput("empty body: send the image bytes (JPEG, PNG or WebP)")
    arr = np.frombuffer(data, np.uint8)
    from PIL import Image
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - anything PIL cannot identify is not an image
        raise BadInput("the body is not a JPEG, PNG or WebP image") from None
    if w * h > max_pixels:
        raise BadInput(f"image has {w}x{h} pixels, more than the limit of {max_pixels}")
    bgr = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadInput("the image could not be decoded (truncated or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=8,
                  health_check_period_s=10, health_check_timeout_s=30)
@serve.ingress(api)
class AUService:
    """Ingress + face pipeline + ensemble in one replica (models load once, in __init__)."""

    def __init__(self, ensemble: str, api_key: str = "") -> None:
        from components.ensemble import EnsembleManifest
        from components.predictor import Predictor
        from workflows.runtime import torch_single_thread

        torch_single_thread()
        self.manifest = EnsembleManifest.load(ensemble)
        self.predictor = Predictor(self.manifest)
        self.api_key = api_key
        self._probe = np.zeros((112, 112, 3), np.uint8)

    def check_health(self) -> None:
        """Run a real inference on a blank face-free image: the pipeline and models answer."""
        self.predictor.predict_image(self._probe)

    def _auth(self, request: Request) -> "JSONResponse | None":
        if self.api_key and request.headers.get("x-api-key") != self.api_key:
            return JSONResponse({"error": "missing or wrong X-API-Key header"}, status_code=401)
        return None

    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "members": [m.name for m in self.manifest.members]}

    @api.get("/v1/models")
    def models(self) -> dict[str, Any]:
        man = self.manifest
        return {"aus": man.aus, "rule": man.rule, "weights": man.weights, "thresholds": man.thresholds,
                "members": [{"name": m.name, "model": m.model_name, "input": m.input_spec,
                             "needs_video": bool(m.input_spec.get("diff_steps") or m.input_spec.get("window"))}
                            for m in man.members],
                "model_card": man.model_card}

    @api.post("/v1/predict")
    async def predict(self, request: Request) -> JSONResponse:
        denied = self._auth(request)
        if denied:
            return denied
        ctype = request.headers.get("content-type", "")
        if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
            return JSONResponse({"error": f"content type {ctype!r} is not an image type"}, status_code=415)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}"}, status_code=413)
        t0 = time.perf_counter()
        try:
            rgb = decode_image(body)
        except BadInput as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        faces = self.predictor.predict_image(rgb)
        return JSONResponse({"faces": faces, "aus": self.manifest.aus, "n_faces": len(faces),
                             "seconds": round(time.perf_counter() - t0, 4)})


def build_app(args: "dict[str, Any] | AppArgs") -> Any:
    """Serve application builder (typed args; used by `serve run`/`serve build` and `facsflow serve`)."""
    a = args if isinstance(args, AppArgs) else AppArgs(**args)
    return AUService.options(ray_actor_options={"num_cpus": a.num_cpus}).bind(a.ensemble, a.api_key)


def start(ensemble: str, host: str = "127.0.0.1", port: int = 8000, api_key: str = "",
          blocking: bool = False) -> str:
    """Start the app on the connected Ray; return its base URL."""
    import os

    from workflows.runtime import UserError

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        raise UserError(f"binding {host} exposes the service beyond this machine: set --api-key "
                        "(or FACSFLOW_API_KEY) so clients must send X-API-Key")
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app({"ensemble": os.path.abspath(ensemble) if "://" not in ensemble else ensemble,
                         "api_key": api_key}),
              name="facsflow", route_prefix="/", blocking=blocking)
    return f"http://{host}:{port}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facsflow serve",
                                description="Serve an ensemble over HTTP with Ray Serve (POST /v1/predict).")
    p.add_argument("--ensemble", required=True, help="ensemble folder (ensemble.json)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (beyond loopback needs --api-key)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require this X-API-Key header (default: FACSFLOW_API_KEY)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray)")
    return p


def main(argv: "list[str] | None" = None) -> int:
    import os

    from workflows.runtime import configure_logging, init_ray

    args = build_parser().parse_args(argv)
    configure_logging()
    init_ray(args.address)
    key = args.api_key if args.api_key is not None else os.environ.get("FACSFLOW_API_KEY", "")
    url = start(args.ensemble, args.host, args.port, key)
    print(f"serving {args.ensemble} at {url} (POST {url}/v1/predict); Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
