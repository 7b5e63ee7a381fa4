"""The one inference path: checkpoint(s) → AU probabilities.

Evaluation, batch prediction (``facsflow predict``), the Python ``Detector`` API and Ray Serve
all call ``Predictor``. It has an image entry point (``predict_image``: still images; members that
declare they need video are left out and the answer names the members that voted) and a sequence
entry point (``predict_video``: tracked faces, temporal landmark differences, every member).
Models load once, when the Predictor is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from components.batches import BatchBuilder
from components.checkpoint import load_checkpoint, model_from_checkpoint
from components.ensemble import EnsembleManifest, Member, combine
from components.faces.transforms import landmark_diffs
from components.models.base import InputSpec
from components.training import to_device

__all__ = ["Predictor", "LoadedMember", "combine_outputs"]


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
        ckpt = load_checkpoint(path)
        member = Member(name=ckpt["model_name"], checkpoint=str(path), model_name=ckpt["model_name"],
                        input_spec=ckpt["input_spec"], preprocess=ckpt["preprocess"],
                        thresholds=list(ckpt["thresholds"]))
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
        out = lm.model(mb)
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
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from components.faces.pipeline import FacePipeline, FacePipelineConfig

            cfg = self._face_config or FacePipelineConfig(
                align_size=int(self.manifest.members[0].preprocess.get("image_size", 112)))
            if self.needs_blendshapes and not cfg.gives_blendshapes:
                cfg = dataclasses.replace(cfg, landmarker="mediapipe")  # only MediaPipe gives them
            self._pipeline = FacePipeline(cfg)
        return self._pipeline

    def predict_image(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        """Every face in a still image: box, score, 68 landmarks, AU probabilities."""
        results = self.pipeline.process_image(rgb)
        if not results:
            return []
        batch = {"crop": [r.aligned.crop for r in results],
                 "landmarks": [r.aligned.landmarks.reshape(-1) for r in results]}
        if all(r.blendshapes is not None for r in results):
            batch["blendshapes"] = [r.blendshapes for r in results]
        ans = self.predict_aligned(batch, video=False)
        return [self._face_answer(r, ans, k) for k, r in enumerate(results)]

    def predict_video(self, frames: Iterable[np.ndarray], fps: float = 30.0) -> list[dict[str, Any]]:
        """Per-frame answers for the tracked face(s) of a video; frames without a face have
        ``success = 0``. Members that need temporal landmarks get l_{t+s} - l_{t-s}."""
        pipe = self.pipeline
        pipe.reset()
        per_frame: list[list[Any]] = []
        for t, rgb in enumerate(frames):
            per_frame.append(pipe.step(rgb, t))
        rows: list[dict[str, Any]] = []
        by_face: dict[int, list[tuple[int, Any]]] = {}
        for t, faces in enumerate(per_frame):
            if not faces:
                rows.append({"frame": t, "face_id": -1, "timestamp": t / fps, "success": 0})
            for r in faces:
                by_face.setdefault(int(r.face.face_id), []).append((t, r))
        steps = self.diff_steps
        for face_id, seq in by_face.items():
            lms = np.stack([r.aligned.landmarks for _, r in seq]).astype(np.float32)
            batch: dict[str, Any] = {"crop": [r.aligned.crop for _, r in seq],
                                     "landmarks": list(lms.reshape(len(seq), -1))}
            if all(r.blendshapes is not None for _, r in seq):
                batch["blendshapes"] = [r.blendshapes for _, r in seq]
            if steps:
                d, v = landmark_diffs(lms, steps)
                batch["landmark_diff"] = list(d.reshape(len(seq), -1))
                batch["diff_valid"] = list(v)
            ans = self.predict_aligned(batch, video=True, store_diff_steps=steps)
            for k, (t, r) in enumerate(seq):
                row = self._face_answer(r, ans, k)
                row.update({"frame": t, "timestamp": t / fps, "success": 1})
                rows.append(row)
        rows.sort(key=lambda r: (r["frame"], r["face_id"]))
        return rows

    def _face_answer(self, r: Any, ans: dict[str, Any], k: int) -> dict[str, Any]:
        out = {"face_id": int(r.face.face_id), "box": [float(x) for x in r.face.box],
               "score": float(r.face.score), "landmarks": np.asarray(r.face.landmarks).round(2).tolist(),
               "probs": {f"AU{a}": float(p) for a, p in zip(self.aus, ans["probs"][k])},
               "occurrence": {f"AU{a}": int(o) for a, o in zip(self.aus, ans["occurrence"][k])},
               "members": ans["members"]}
        if "intensity" in ans:
            out["intensity"] = {f"AU{a}": float(x) for a, x in zip(self.aus, ans["intensity"][k])}
        return out


def combine_outputs(manifest: EnsembleManifest, use: Sequence[int],
                    outs: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """The ensemble answer from the outputs of members ``use`` (indices into ``manifest.members``).

    ``outs[k]`` is ``Predictor.member_probs`` of member ``use[k]``: ``probs`` (N, n_AU) and
    optionally ``intensity``. Applies the manifest's rule, weights and thresholds; members left
    out (image requests skip video members) drop out of the weights, and for ``best_per_au`` an
    AU whose chosen member is left out falls back to the weighted mean of the members used.
    Needs no model, so a Serve combiner replica calls it with the manifest alone.
    """
    use = list(use)
    weights = [manifest.weights[i] for i in use]
    thr = [manifest.members[i].thresholds for i in use]
    probs_list = [o["probs"] for o in outs]
    if manifest.rule == "best_per_au":
        chosen = [use.index(c) if c in use else -1 for c in manifest.choice]
        scores = combine(probs_list, "mean", weights, thr).copy()
        for a, c in enumerate(chosen):
            if c >= 0:
                scores[:, a] = probs_list[c][:, a]
    else:
        scores = combine(probs_list, manifest.rule, weights, thr)
    n_aus = len(manifest.aus)
    thresholds = np.asarray(manifest.thresholds if manifest.rule != "vote" else [0.5] * n_aus)
    result = {"probs": scores, "occurrence": (scores >= thresholds).astype(np.int8),
              "members": [manifest.members[i].name for i in use],
              "member_probs": {manifest.members[i].name: o["probs"] for i, o in zip(use, outs)}}
    intens = [o["intensity"] for o in outs if "intensity" in o]
    if intens:
        result["intensity"] = np.mean(intens, axis=0)
    return result
