"""The models of the one inference path: an ``InferencePlan``'s checkpoints → AU probabilities.

Evaluation, batch prediction (``facsflow predict``), the Python ``Detector`` API, the label
teacher and Ray Serve's member stages all answer through ``components.inference``'s orchestration
with a ``Predictor``'s members. Its entry points inject in-process calls into that orchestration:
``predict_image`` (still images: members that need video are left out and the answer names the
members that voted), ``predict_video`` (tracked faces, temporal landmark differences, every
member, the plan's smoothing) and ``predict_store_rows`` (feature-store rows as tracks). Models
load once, when the Predictor is built; the face pipeline on first use, as the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from components import inference
from components.batches import BatchBuilder
from components.checkpoint import load_checkpoint, model_from_checkpoint
from components.ensemble import EnsembleManifest, Member
from components.models.base import InputSpec
from components.plan import InferencePlan, plan_for, resolve_ensemble
from components.training import to_device

__all__ = ["Predictor", "LoadedMember", "CPU_CHUNK_ROWS", "forward_rows"]

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

    def __init__(self, plan: "InferencePlan | EnsembleManifest", device: str = "cpu") -> None:
        self.plan = plan if isinstance(plan, InferencePlan) else plan_for(plan)
        self.manifest = self.plan.manifest
        self.aus = list(self.manifest.aus)
        self.device = torch.device(device)
        self.members: list[LoadedMember] = []
        for m in self.manifest.members:
            ckpt = load_checkpoint(m.checkpoint)
            model, spec = model_from_checkpoint(ckpt)
            missing = [a for a in self.aus if a not in ckpt["aus"]]
            if missing:
                raise ValueError(f"member {m.name} does not predict AU(s) {missing}")
            self.members.append(LoadedMember(m, model.to(self.device), spec,
                                             [list(ckpt["aus"]).index(a) for a in self.aus]))
        self._pipeline = None

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", faces: "dict[str, Any] | None" = None,
                        smooth_window: "int | None" = None) -> "Predictor":
        """A single-model Predictor straight from a checkpoint (``faces``: face pipeline fields over
        the checkpoint's record)."""
        from components.models.registry import init_provenance

        ckpt = load_checkpoint(path)
        member = Member(name=ckpt["model_name"], checkpoint=str(path), model_name=ckpt["model_name"],
                        input_spec=ckpt["input_spec"], preprocess=ckpt["preprocess"],
                        thresholds=list(ckpt["thresholds"]),
                        init=ckpt.get("init") or init_provenance(ckpt.get("pretrained")))
        manifest = EnsembleManifest(aus=list(ckpt["aus"]), members=[member], thresholds=list(ckpt["thresholds"]))
        return cls(plan_for(manifest, str(path), faces, smooth_window), device)

    @classmethod
    def from_manifest(cls, directory: "str | None", device: str = "cpu", faces: "dict[str, Any] | None" = None,
                      smooth_window: "int | None" = None) -> "Predictor":
        """From an ensemble folder; the built-in detector when ``directory`` is empty."""
        return cls(resolve_ensemble(directory, faces, smooth_window), device)

    # ----------------------------------------------------------------- members
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

    def member(self, index: int, store_diff_steps: Sequence[int] = ()) -> Any:
        """``member_probs`` of member ``index`` as a one-argument call (``forward_member``'s)."""
        return lambda batch: self.member_probs(index, batch, store_diff_steps)

    def answer_tracks(self, tracks: Sequence["inference.FaceTrack"], video: bool, source: str = "",
                      name: str = "input", steps: "Sequence[int] | None" = None,
                      smooth: bool = True) -> list[dict[str, Any]]:
        """The orchestration (``components.inference.answer_tracks``) with this process's members
        and combination; ``steps``: the difference steps the tracks carry (default the plan's)."""
        have = tuple(self.plan.steps if steps is None else steps)
        return inference.answer_tracks(
            self.plan, tracks, video,
            lambda i, requests: inference.forward_member(self.member(i, have), requests),
            lambda use, outs, window: inference.combine_track(self.manifest, use, outs, window),
            source, name, smooth)

    # ----------------------------------------------------------------- entry points
    @property
    def pipeline(self) -> Any:
        """The plan's face pipeline (loaded on first use)."""
        if self._pipeline is None:
            from components.faces.pipeline import FacePipeline

            self._pipeline = FacePipeline(self.plan.face_config())
        return self._pipeline

    def predict_image(self, rgb: np.ndarray, source: str = "", name: str = "image") -> list[dict[str, Any]]:
        """Every face in a still image: box, score, 68 landmarks, AU probabilities."""
        tracks = inference.image_tracks(self.pipeline.process_image(rgb))
        return inference.image_rows(tracks, self.answer_tracks(tracks, False, source, name), self.aus)

    def predict_video(self, frames: Iterable[np.ndarray], fps: float = 30.0, source: str = "",
                      name: str = "video") -> list[dict[str, Any]]:
        """Per-frame answers for the tracked face(s) of a video; frames without a face have
        ``success = 0``. Every member votes; members that need temporal landmarks get
        l_{t+s} - l_{t-s}; probabilities are smoothed over the plan's ``smooth_window`` frames."""
        pipe = self.pipeline
        pipe.reset()
        if pipe.identities() is None:  # a segment at a time: memory flat in the video's length
            from components.video_segments import iter_video_segments

            return [r for seg in iter_video_segments(self, frames, fps, name, source or inference.request_id())
                    for r in seg.rows]
        # Re-identification regroups the whole video's faces: it is answered whole.
        tracks, n = inference.track_video(pipe.step, frames, self.plan.steps, pipe.identities())
        answers = self.answer_tracks(tracks, True, source, name)
        return inference.video_rows(tracks, answers, n, fps, self.aus)

    def predict_store_rows(self, rows: dict[str, Any], store_diff_steps: Sequence[int]) -> dict[str, Any]:
        """The ensemble answer for feature-store rows (``probs``, ``member_probs``, ``intensity``),
        in the rows' order: each video's rows one track, unsmoothed (evaluation smooths whole
        videos once every row is scored). ``store_diff_steps``: the steps the store holds."""
        from components.store.tracks import store_answer, store_tracks

        tracks, where = store_tracks(rows)
        answers = self.answer_tracks(tracks, True, "store", "store", store_diff_steps, smooth=False)
        return store_answer(len(rows["landmarks"]), where, answers)


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

