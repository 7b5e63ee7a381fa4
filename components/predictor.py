"""The models of the one inference path: checkpoint(s) → AU probabilities.

Evaluation, batch prediction (``facsflow predict``), the Python ``Detector`` API and Ray Serve
all run ``components.inference``'s orchestration with a ``Predictor``'s members. It has an image
entry point (``predict_image``: still images; members that declare they need video are left out
and the answer names the members that voted) and a sequence entry point (``predict_video``:
tracked faces, temporal landmark differences, every member, smoothing as an option), both the
orchestration run in process; Serve runs the same steps across its deployments. Models load
once, when the Predictor is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from components import inference
from components.batches import BatchBuilder
from components.checkpoint import load_checkpoint, model_from_checkpoint
from components.ensemble import EnsembleManifest, Member
from components.inference import SMOOTH_WINDOW, combine_outputs
from components.models.base import InputSpec
from components.training import to_device

__all__ = ["Predictor", "LoadedMember", "combine_outputs", "CPU_CHUNK_ROWS", "forward_rows"]

CPU_CHUNK_ROWS = 16
"""Rows per forward pass of a rows-independent member on CPU. Convolutions on one thread run
faster per face on batches that stay in cache (figures: docs/measurements.md): a video's
segment or a Serve batch is cut into chunks of this size. On a GPU the whole batch goes at once."""


@dataclass
class LoadedMember:
    member: Member
    model: torch.nn.Module
    spec: InputSpec
    au_index: list[int]


class Predictor:
    """An ensemble (possibly of one) ready to answer; build once, call many times."""

    def __init__(self, manifest: EnsembleManifest, device: str = "cpu", face_config: Any = None) -> None:
        self.manifest = manifest
        self.aus = list(manifest.aus)
        self.device = torch.device(device)
        self.members: list[LoadedMember] = []
        for m in manifest.members:
            ckpt = load_checkpoint(m.checkpoint)
            model, spec = model_from_checkpoint(ckpt)
            missing = [a for a in self.aus if a not in ckpt["aus"]]
            if missing:
                raise ValueError(f"member {m.name} does not predict AU(s) {missing}")
            self.members.append(LoadedMember(m, model.to(self.device), spec,
                                             [list(ckpt["aus"]).index(a) for a in self.aus]))
        self._face_config = face_config
        self._pipeline = None

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", face_config: Any = None) -> "Predictor":
        """A single-model Predictor straight from a checkpoint."""
        from components.models.registry import init_provenance

        ckpt = load_checkpoint(path)
        member = Member(name=ckpt["model_name"], checkpoint=str(path), model_name=ckpt["model_name"],
                        input_spec=ckpt["input_spec"], preprocess=ckpt["preprocess"],
                        thresholds=list(ckpt["thresholds"]),
                        init=ckpt.get("init") or init_provenance(ckpt.get("pretrained")))
        return cls(EnsembleManifest(aus=list(ckpt["aus"]), members=[member],
                                    thresholds=list(ckpt["thresholds"])), device, face_config)

    @classmethod
    def from_manifest(cls, directory: str, device: str = "cpu", face_config: Any = None) -> "Predictor":
        return cls(EnsembleManifest.load(directory), device, face_config)

    # ----------------------------------------------------------------- face-level core
    @property
    def diff_steps(self) -> tuple[int, ...]:
        return tuple(sorted({s for m in self.members for s in m.spec.diff_steps}))

    @property
    def needs_blendshapes(self) -> bool:
        """Whether a member reads MediaPipe blendshapes (the face pipeline then uses MediaPipe)."""
        return any(m.spec.blendshapes for m in self.members)

    def image_members(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if not m.spec.needs_video]

    @torch.no_grad()
    def member_probs(self, index: int, batch: dict[str, Any], store_diff_steps: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """One member's probabilities (and intensity) for a batch of aligned faces."""
        lm = self.members[index]
        builder = BatchBuilder(lm.spec, store_diff_steps or lm.spec.diff_steps, len(self.aus))
        # Labels are not the model's business here (and may follow another dataset's AU list).
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "intensities")}
        mb = to_device(builder(inputs), self.device)
        chunk = CPU_CHUNK_ROWS if self.device.type == "cpu" else 0
        out = forward_rows(lm.model, mb, chunk)
        res = {"probs": torch.sigmoid(out["logits"].float()).cpu().numpy()[:, lm.au_index]}
        if "intensity" in out:
            res["intensity"] = out["intensity"].float().cpu().numpy()[:, lm.au_index]
        return res

    def predict_aligned(self, batch: dict[str, Any], video: bool = False,
                        store_diff_steps: Sequence[int] = ()) -> dict[str, Any]:
        """Ensemble answer for aligned faces.

        ``batch``: ``crop`` (list of RGB crops) or ``image`` (JPEG bytes), ``landmarks`` (N, 136)
        in crop coordinates, and for video members ``landmark_diff``/``diff_valid``.
        """
        use = list(range(len(self.members))) if video else self.image_members()
        if not use:
            raise ValueError("no member of this ensemble answers still images (all need video)")
        outs = [self.member_probs(i, batch, store_diff_steps) for i in use]
        return combine_outputs(self.manifest, use, outs)

    # ----------------------------------------------------------------- images and videos
    @property
    def plan(self) -> "inference.InferencePlan":
        """Members, difference steps and crop size the orchestration uses for this ensemble."""
        return inference.plan_for(self.manifest)

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from components.faces.pipeline import FacePipeline, FacePipelineConfig

            cfg = self._face_config or FacePipelineConfig(align_size=self.plan.align_size)
            if self.needs_blendshapes and not cfg.gives_blendshapes:
                cfg = dataclasses.replace(cfg, landmarker="mediapipe")  # only MediaPipe gives them
            self._pipeline = FacePipeline(cfg)
        return self._pipeline

    def answer_tracks(self, tracks: Sequence["inference.FaceTrack"], video: bool, source: str = "",
                      name: str = "input", smooth_window: int = 1) -> list[dict[str, Any]]:
        """The combined answer of each track: the orchestration's member and combination steps
        in process (``member_inputs`` → ``forward_member`` → ``gather_outputs`` → ``combine_track``)."""
        plan = self.plan
        use = plan.video_use if video else plan.image_use
        if not use:
            raise ValueError("no member of this ensemble answers still images (all need video)")
        if not tracks:
            return []
        inputs = inference.member_inputs(tracks, source or inference.request_id(), name, video)
        per_member = [inference.gather_outputs(tracks, inputs, inference.forward_member(
            self, i, [inp.batch for inp in inputs], plan.steps)) for i in use]
        return [inference.combine_track(self.manifest, use, [outs[t] for outs in per_member],
                                        smooth_window if video else 1) for t in range(len(tracks))]

    def predict_image(self, rgb: np.ndarray, source: str = "", name: str = "image") -> list[dict[str, Any]]:
        """Every face in a still image: box, score, 68 landmarks, AU probabilities."""
        tracks = inference.image_tracks(self.pipeline.process_image(rgb))
        answers = self.answer_tracks(tracks, video=False, source=source, name=name)
        return [inference.face_answer(t.info[0], a, 0, self.aus) for t, a in zip(tracks, answers)]

    def predict_video(self, frames: Iterable[np.ndarray], fps: float = 30.0, smooth_window: int = SMOOTH_WINDOW,
                      source: str = "", name: str = "video") -> list[dict[str, Any]]:
        """Per-frame answers for the tracked face(s) of a video; frames without a face have
        ``success = 0``. Every member votes; members that need temporal landmarks get
        l_{t+s} - l_{t-s}; probabilities are smoothed over ``smooth_window`` frames (1: none)."""
        pipe = self.pipeline
        pipe.reset()
        tracks, n = inference.track_video(pipe.step, frames, self.plan.steps)
        answers = self.answer_tracks(tracks, video=True, source=source, name=name, smooth_window=smooth_window)
        return inference.video_rows(tracks, answers, n, fps, self.aus)


def forward_rows(model: torch.nn.Module, batch: dict[str, Any], chunk: int = 0) -> dict[str, torch.Tensor]:
    """``model(batch)``'s ``logits`` (and ``intensity``), computed ``chunk`` rows at a time when
    the model's rows are independent (``AUModel.rows_independent``) and the batch is longer;
    else in one pass. Entries of ``batch`` with one item per row are cut; others pass whole."""
    n = len(batch["image"]) if "image" in batch else 0
    if chunk <= 0 or n <= chunk or not getattr(model, "rows_independent", False):
        return model(batch)
    keys = ("logits", "intensity")
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, chunk):
        sub = {k: (v[start:start + chunk] if hasattr(v, "__len__") and not isinstance(v, str) and len(v) == n else v)
               for k, v in batch.items()}
        out = model(sub)
        for k in keys:
            if k in out:
                parts.setdefault(k, []).append(out[k])
    return {k: torch.cat(v) for k, v in parts.items()}

