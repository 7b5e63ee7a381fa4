"""The Serve deployments behind the ingress: face pipeline, one per member model, combiner.

Each runs one step of ``components.inference`` (the orchestration ``predict``, the ``Detector``
and evaluation run in process) and only moves data and batches:

- ``FacePipelineDeployment`` (CPU): decodes the client's image or video under the limits, then
  ``image_tracks`` / ``track_video`` (detect, 68 landmarks, track, align, temporal landmark
  differences) with the face pipeline the request's plan names (the one the ensemble's stores
  were built with, ``components.plan``); returns the face tracks.
- ``MemberModel`` (one deployment per member slot, GPU when given one): ``forward_member`` of a
  single-member ``Predictor`` over dynamically batched requests (``@serve.batch``); requests
  from different clients share a forward pass only where their video keys differ, so a member
  that pairs or windows frames (pairwise-rank) never mixes clients' frames. A request names the
  member it wants (checkpoint and AU order, from the ingress's manifest), so during a rollout a
  replica answers for whichever manifest the ingress already uses, loading that member on first
  use; ``reconfigure`` preloads the new one.
- ``Combiner``: ``combine_track``: the manifest's rule, weights and thresholds, and smoothing of
  one video track's probabilities (paper 002 §3).

Each replica loads its models once, in ``__init__``, and its health check runs a real
inference (a detection, a member forward pass, a combination).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from ray import serve

from components.serving_inputs import IMAGE_TYPES, BadInput, Limits, VideoReader, decode_image, video_file

__all__ = ["FacePipelineDeployment", "MemberModel", "Combiner", "probe_batch", "CACHED_MEMBERS"]

_ROUTING = ("member", "aus", "steps")
"""Keys of a member request that name the member; the others are the batch of rows."""
CACHED_MEMBERS = 2
"""Loaded models a member replica keeps per member it serves: the current manifest's and the
previous one's, so requests still in flight during a rollout find theirs."""
HEALTH = {"health_check_period_s": 10, "health_check_timeout_s": 30}


def probe_batch(align_size: int, steps: "tuple[int, ...]" = (), n: int = 1) -> dict[str, np.ndarray]:
    """A neutral aligned input: mid-gray crops with the template landmarks, no motion."""
    from components.geometry import crop_template

    lms = crop_template(align_size).reshape(1, -1).repeat(n, 0)
    batch: dict[str, np.ndarray] = {"crop": np.full((n, align_size, align_size, 3), 128, np.uint8),
                                    "landmarks": lms.astype(np.float32),
                                    "blendshapes": np.zeros((n, 52), np.float32)}
    if steps:
        batch["landmark_diff"] = np.zeros((n, len(steps) * 136), np.float32)
        batch["diff_valid"] = np.zeros((n, len(steps)), bool)
    return batch


def _error(e: BadInput) -> dict[str, Any]:
    return {"error": e.message, "status": e.status}


@serve.deployment(name="FacePipeline", max_ongoing_requests=4, ray_actor_options={"num_cpus": 0.25}, **HEALTH)
class FacePipelineDeployment:
    """Detection, landmarks, tracking and alignment as each request's plan says (its face
    pipeline fields); detector and landmark models load once per replica and configuration."""

    def __init__(self, args: Any) -> None:
        from workflows.core.runtime import torch_single_thread

        torch_single_thread()
        self.limits = Limits(**args.limits)
        self._models: dict[tuple, Any] = {}
        # dlib's detectors and shape predictor crash (SIGSEGV/abort) when threads share them, and
        # Serve runs sync methods on a thread pool: one face pass at a time per replica.
        self._lock = threading.Lock()
        self._probe: dict[str, Any] = dict(args.preload[0]) if args.preload else {}
        for faces in args.preload:
            self._pipeline(faces)

    def _pipeline(self, faces: dict[str, Any]) -> Any:
        """A fresh pipeline (own tracker state) for face pipeline fields ``faces``, sharing this
        replica's loaded models (a configuration not seen before loads its models here)."""
        from components.faces.detectors import build_detector
        from components.faces.landmarks import build_landmarker
        from components.faces.pipeline import FacePipeline, FacePipelineConfig

        cfg = FacePipelineConfig(**faces)
        dkey = ("det", cfg.detector, tuple(sorted(cfg.detector_options().items())))
        lkey = ("lm", cfg.landmarker, tuple(sorted(cfg.landmarker_options().items())))
        if dkey not in self._models:
            self._models[dkey] = build_detector(cfg.detector, **cfg.detector_options())
        if lkey not in self._models:
            self._models[lkey] = build_landmarker(cfg.landmarker, **cfg.landmarker_options())
        encoder = None
        if cfg.reidentify:
            if "encoder" not in self._models:
                from components.faces.identity import FaceEncoder

                self._models["encoder"] = FaceEncoder(cfg.device)
            encoder = self._models["encoder"]
        return FacePipeline(cfg, detector=self._models[dkey], landmarker=self._models[lkey], encoder=encoder)

    def image(self, data: bytes, content_type: str, faces: dict[str, Any]) -> dict[str, Any]:
        """Every face of one image as one-frame tracks (or an error)."""
        from components.inference import image_tracks

        try:
            rgb = decode_image(data, self.limits.max_image_pixels, IMAGE_TYPES.get(content_type, ""))
        except BadInput as e:
            return _error(e)
        with self._lock:
            results = self._pipeline(faces).process_image(rgb)
        return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "tracks": image_tracks(results)}

    def video(self, data: bytes, content_type: str, faces: dict[str, Any], steps: list[int]) -> dict[str, Any]:
        """The tracked face(s) of a video, frame by frame, with temporal landmark differences."""
        from components.inference import track_video

        try:
            with video_file(data, content_type) as path:
                reader = VideoReader(path, self.limits)
                with self._lock:
                    pipe = self._pipeline(faces)

                def step(rgb: np.ndarray, t: int) -> list[Any]:
                    with self._lock:  # per frame, so image requests interleave with a long video
                        return pipe.step(rgb, t)

                tracks, _ = track_video(step, reader, steps, pipe.identities())
        except BadInput as e:
            return _error(e)
        return {"fps": reader.fps, "n_frames": reader.decoded, "width": reader.width, "height": reader.height,
                "tracks": tracks}

    def stream(self, data: bytes, content_type: str, faces: dict[str, Any], state: "dict[str, Any] | None",
               index: int) -> dict[str, Any]:
        """The faces of one frame of a stream (one-frame tracks with tracker ids), the tracker
        continued from ``state`` (the previous frame's, None at the first) and its new state: the
        client's tracking travels with its frames, so any replica answers any frame."""
        from components.inference import image_tracks

        try:
            rgb = decode_image(data, self.limits.max_video_frame_pixels, IMAGE_TYPES.get(content_type, ""))
        except BadInput as e:
            return _error(e)
        with self._lock:
            pipe = self._pipeline(faces)
            pipe.tracker.restore(state)
            results = pipe.step(rgb, index)
            state = pipe.tracker.state()
        return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "tracks": image_tracks(results),
                "state": state}

    def check_health(self) -> None:
        """A real detection and landmark pass on a small blank image, unless a request holds
        the models right now (that pass is then the proof of life, and waiting for it could
        outlast the health-check timeout)."""
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            self._pipeline({**self._probe, "align_size": 64}).process_image(np.full((96, 96, 3), 127, np.uint8))
        finally:
            self._lock.release()

    def probe(self) -> bool:
        """``check_health`` on request (the ingress's /healthz)."""
        self.check_health()
        return True


@serve.deployment(name="Member", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25}, **HEALTH)
class MemberModel:
    """One ensemble member (slot ``slot`` of the manifest) behind dynamic batching; with ``slot``
    None, every member of the manifest (the fused layout: one object, so one batch queue, since
    ``@serve.batch`` keeps one queue per method per process and runs a batch on the first
    request's object; ``_run`` gives each member of a batch its own forward pass)."""

    def __init__(self, ensemble: str, slot: "int | None", args: Any) -> None:
        from workflows.core.runtime import torch_single_thread

        torch_single_thread()
        import torch

        self.slot = slot
        self.device = "cuda" if args.use_gpu and torch.cuda.is_available() else "cpu"
        self.batching = args.max_batch_size > 0
        if self.batching:
            self._batched.set_max_batch_size(args.max_batch_size)
            self._batched.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        self._cache: "OrderedDict[tuple, Any]" = OrderedDict()
        self._cache_size = CACHED_MEMBERS
        self._lock = threading.Lock()
        self._current: list[dict[str, Any]] = []
        self._load_slot(ensemble)

    def _load_slot(self, ensemble: str) -> None:
        from components.plan import resolve_ensemble

        plan = resolve_ensemble(ensemble)
        manifest = plan.manifest
        n = len(manifest.members)
        # An idle slot loads nothing: this manifest has fewer members than the app has slots.
        slots = range(n) if self.slot is None else [self.slot] if self.slot < n else []
        self._cache_size = CACHED_MEMBERS * max(1, len(slots))
        current = []
        for i in slots:
            member = dataclasses.asdict(manifest.members[i])
            self._predictor(member, manifest.aus)
            # Probed as it is asked: crops at the plan's size, the plan's difference steps.
            current.append({"member": member, "aus": list(manifest.aus), "steps": plan.steps, "align": plan.align_size})
        self._current = current

    def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config``: ``{"ensemble": DIR}`` preloads this slot's member (every member with
        ``slot`` None) of a new manifest."""
        if config.get("ensemble"):
            self._load_slot(config["ensemble"])

    def _predictor(self, member: dict[str, Any], aus: list[int]) -> Any:
        from components.ensemble import EnsembleManifest, Member
        from components.predictor import Predictor

        key = (member["checkpoint"], tuple(aus))
        with self._lock:
            if key not in self._cache:
                m = Member(**member)
                self._cache[key] = Predictor(EnsembleManifest(aus=list(aus), members=[m], thresholds=m.thresholds),
                                             self.device)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            return self._cache[key]

    def _run(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``forward_member`` per member named in the batch of requests, answers split back."""
        from components.inference import forward_member

        out: list[Any] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r["member"]["checkpoint"], tuple(r["aus"]), tuple(r["steps"])), []).append(i)
        for (_, aus, steps), idx in groups.items():
            batches = [{k: v for k, v in requests[i].items() if k not in _ROUTING} for i in idx]
            res = forward_member(self._predictor(requests[idx[0]]["member"], list(aus)).member(0, steps), batches)
            for i, r in zip(idx, res):
                out[i] = r
        return out

    async def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        """Probabilities (and intensity) of the member named in ``request`` for its faces."""
        if self.batching:
            return await self._batched(request)
        return (await asyncio.to_thread(self._run, [request]))[0]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _batched(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The forward pass leaves the event loop free for new requests to queue up.
        return await asyncio.to_thread(self._run, requests)

    def check_health(self) -> None:
        """A real forward pass of this slot's member (of each member) on a neutral face."""
        for cur in self._current:
            batch = probe_batch(cur["align"], cur["steps"])
            self._run([{"member": cur["member"], "aus": cur["aus"], "steps": list(cur["steps"]), **batch}])


@serve.deployment(name="Combiner", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.25}, **HEALTH)
class Combiner:
    """The manifest's combination rule over member outputs, and smoothing over video frames."""

    def combine(self, manifest: Any, use: list[int], outs: list[dict[str, np.ndarray]],
                smooth_window: int = 1) -> dict[str, Any]:
        """``components.inference.combine_track`` for one track (smoothed when ``smooth_window`` > 1)."""
        from components.inference import combine_track

        return combine_track(manifest, use, outs, smooth_window)

    def check_health(self) -> None:
        """A real combination of two agreeing members."""
        from components.ensemble import EnsembleManifest, Member

        m = Member(name="probe", checkpoint="", model_name="", input_spec={}, preprocess={}, thresholds=[0.5])
        ans = self.combine(EnsembleManifest(aus=[12], members=[m, m]), [0, 1],
                           [{"probs": np.array([[0.75]])}, {"probs": np.array([[0.25]])}])
        if abs(float(ans["probs"][0, 0]) - 0.5) > 1e-9:
            raise RuntimeError("combiner health probe: mean of 0.75 and 0.25 is not 0.5")
