"""From feature-store rows to model batches: decode, augment, then the family's input transform.

Runs on CPU inside Ray Data (training, evaluation, batch prediction) so accelerators do not wait.
The order is fixed: augmentation first (random crop, horizontal flip with the left/right landmark
swap, colour jitter), then ``components.faces.transforms.model_input`` (mask, gray, Sobel), the
same function serving calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.faces.transforms import hflip_sample, model_input
from components.models.base import InputSpec
from components.store.rows import decode_jpeg
from components.video_key import subject_index, video_index

__all__ = ["AugmentConfig", "BatchBuilder", "VIDEO_BATCH_ROWS"]

VIDEO_BATCH_ROWS = 64
"""Rows per batch when store rows are read in video order for prediction (evaluation's Ray Data
inference) and for pairwise-rank's mapping step: that family reads its video context G from the
batch's frames of the same video, so training and test batches must be cut alike."""


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (never applied at evaluation or prediction)."""

    crop_jitter: float = 0.06
    """Random translation of the crop, as a fraction of its side (random crop)."""
    scale_jitter: float = 0.06
    """Random zoom in/out, as a fraction."""
    flip: bool = True
    """Random horizontal flip with the left/right landmark swap (bilateral AUs keep labels)."""
    brightness: float = 0.2
    """Colour jitter: brightness factor range ±."""
    contrast: float = 0.2
    """Colour jitter: contrast factor range ±."""

    def __post_init__(self) -> None:
        for name in ("crop_jitter", "scale_jitter", "brightness", "contrast"):
            v = getattr(self, name)
            if not 0.0 <= v < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {v}")


def _affine_jitter(img: np.ndarray, lms: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    s = img.shape[0]
    scale = 1.0 + rng.uniform(-cfg.scale_jitter, cfg.scale_jitter)
    tx, ty = rng.uniform(-cfg.crop_jitter, cfg.crop_jitter, size=2) * s
    c = (s - 1) / 2.0
    m = np.array([[scale, 0, (1 - scale) * c + tx], [0, scale, (1 - scale) * c + ty]], np.float32)
    out = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return out, (lms @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _colour_jitter(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    b = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    c = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    f = img.astype(np.float32)
    mean = f.mean()
    return np.clip((f - mean) * c + mean * b, 0, 255).astype(np.uint8)


def _blendshapes(col: Any, n: int, batch_ids: "Sequence[str] | None" = None) -> np.ndarray:
    """float32 (n, 52) from a column of 52-float rows; a missing row (None) is an error naming it."""
    out = np.zeros((n, 52), np.float32)
    ids = batch_ids if batch_ids is not None else [f"row {i}" for i in range(n)]
    for i, v in enumerate(col):
        if v is None or len(v) != 52:
            raise ValueError(f"{ids[i]}: blendshapes must be 52 floats, got "
                             f"{'none' if v is None else len(v)} (preprocess with landmarker='mediapipe')")
        out[i] = np.asarray(v, np.float32)
    return out


class BatchBuilder:
    """Callable on a columnar batch (dict of numpy arrays) of feature-store rows.

    Output keys: image (B,C,S,S) float32, landmarks (B,68,2), landmark_diff (B,k,68,2) for the
    steps the model declares (zeros and a False ``diff_valid`` where missing), labels (B,n_AU)
    float32 with -1 unknown (a teacher's probability in [0, 1] instead where the batch has
    ``soft_labels``, ``workflows.label``, and the row's own label is unknown), ``hard_labels``
    (B,n_AU) where the builder has ``teacher_thresholds`` and the batch ``soft_labels``: the same
    labels with each teacher probability replaced by the teacher's decision (1 at or above its
    threshold, 0 below, -1 unknown), for the loss terms defined on binary labels (lrp-arl-ff's
    circle loss, pairwise-rank's pair orders), intensity (B,n_AU)
    float32 (-1 where the store has none), and the id columns sample_id, dataset, subject, video,
    frame_order as passthrough, ``blendshapes`` (B, 52) when the batch has them (required when the
    model declares them), ``geometry`` (B, K) and ``neutral`` (B, 52 + K) when the model declares
    geometry and every row has them, video_index (``components.video_key``: CRC32 of dataset/subject/video)
    for families that pair or window frames within a video, and subject_index (CRC32 of
    dataset/subject) for those that group frames by person.
    """

    def __init__(self, spec: InputSpec, store_diff_steps: Sequence[int], n_aus: int,
                 augment: "AugmentConfig | None" = None, seed: int = 0,
                 au_index: "Sequence[int] | None" = None,
                 teacher_thresholds: "Sequence[float | None] | None" = None) -> None:
        missing = [s for s in spec.diff_steps if s not in store_diff_steps]
        if missing:
            raise ValueError(
                f"the model needs landmark differences for steps {missing} but the feature store "
                f"has {list(store_diff_steps)}: preprocess with store.diff_steps including them"
            )
        self.spec = spec
        self.diff_index = [list(store_diff_steps).index(s) for s in spec.diff_steps]
        self.n_store_steps = len(store_diff_steps)
        self.n_aus = n_aus
        self.au_index = list(au_index) if au_index is not None else None
        thr = None if teacher_thresholds is None else np.array(
            [np.nan if t is None else float(t) for t in teacher_thresholds], np.float32)
        self.teacher_thresholds = thr[self.au_index] if thr is not None and self.au_index is not None else thr
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def _labels(self, col: Any, key: str) -> np.ndarray:
        out = np.full((len(col), self.n_aus), -1.0, np.float32)
        for i, v in enumerate(col):
            if v is not None and len(v):
                arr = np.asarray(v, np.float32)
                out[i] = arr[self.au_index] if self.au_index is not None else arr
        return out

    def _merged_labels(self, batch: dict[str, Any], n: int) -> "tuple[np.ndarray, np.ndarray | None]":
        """``labels``, with a teacher's ``soft_labels`` (probabilities, NaN unknown; the batch has
        them only where training chose the teacher's labels) filling every cell without one; and
        ``hard_labels`` (the teacher's decisions filling them instead) where the builder has the
        teacher's thresholds, else None."""
        labels = self._labels(batch.get("labels", [None] * n), "labels")
        soft = batch.get("soft_labels")
        if soft is None:
            return labels, None
        soft = self._labels(soft, "soft_labels")  # -1 for a row without them, NaN stays NaN
        fill = (labels < 0) & (soft >= 0)
        merged = np.where(fill, soft, labels).astype(np.float32)
        if self.teacher_thresholds is None:
            return merged, None
        thr = np.broadcast_to(self.teacher_thresholds, soft.shape)
        with np.errstate(invalid="ignore"):
            decided = np.where(np.isnan(thr), -1.0, (soft >= thr).astype(np.float32))
        return merged, np.where(fill, decided, labels).astype(np.float32)

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        spec = self.spec
        crops = batch.get("crop")
        n = len(crops) if crops is not None else len(batch["image"])
        images = np.zeros((n, spec.num_channels, spec.image_size, spec.image_size), np.float32)
        lms_out = np.zeros((n, 68, 2), np.float32)
        flipped = np.zeros(n, bool)
        for i in range(n):
            img = crops[i] if crops is not None else decode_jpeg(batch["image"][i])
            lms = np.asarray(batch["landmarks"][i], np.float32).reshape(68, 2)
            if self.augment is not None:
                img, lms = _affine_jitter(img, lms, self.rng, self.augment)
                if self.augment.flip and self.rng.random() < 0.5:
                    img, lms = hflip_sample(img, lms)
                    flipped[i] = True
                img = _colour_jitter(img, self.rng, self.augment)
            scale = spec.image_size / img.shape[0]
            images[i] = model_input(img, lms, spec)
            lms_out[i] = lms * scale
        k = len(self.diff_index)
        diffs = np.zeros((n, k, 68, 2), np.float32)
        valid = np.zeros((n, k), bool)
        if k and "landmark_diff" in batch:
            for i in range(n):
                d = np.asarray(batch["landmark_diff"][i], np.float32).reshape(self.n_store_steps, 68, 2)
                v = np.asarray(batch["diff_valid"][i], bool)
                d = d[self.diff_index]
                if flipped[i]:  # mirror the motion too: swap left/right points, negate x
                    d = d[:, list(LEFT_RIGHT_LANDMARK_PERMUTATION)] * np.array([-1.0, 1.0], np.float32)
                diffs[i] = d
                valid[i] = v[self.diff_index]
        out = {
            "image": images, "landmarks": lms_out, "landmark_diff": diffs, "diff_valid": valid,
            "intensity": self._labels(batch.get("intensities", [None] * n), "intensities"),
        }
        out["labels"], hard = self._merged_labels(batch, n)
        if hard is not None:
            out["hard_labels"] = hard
        col = batch.get("blendshapes")
        if spec.blendshapes and col is None:
            raise ValueError("the model reads blendshapes but the batch has none: build the feature "
                             "store (or run the face pipeline) with landmarker='mediapipe'")
        if spec.blendshapes or (col is not None and all(v is not None for v in col)):
            # MediaPipe blendshapes are not geometric: augmentation leaves them as they are.
            out["blendshapes"] = _blendshapes(col, n, batch.get("sample_id"))
        for key in ("geometry", "neutral"):  # optional: readers fall back without them
            col = batch.get(key)
            if spec.geometry and col is not None and all(v is not None for v in col):
                out[key] = np.stack([np.asarray(v, np.float32) for v in col])
        for key in ("sample_id", "dataset", "subject", "video", "frame_order"):
            if key in batch:
                out[key] = np.asarray(batch[key])
        index = video_index(batch)  # pairs and windows are per (dataset, subject, video)
        if index is not None:
            out["video_index"] = index
        person = subject_index(batch)  # pairwise-rank's cross-fitting groups by person
        if person is not None:
            out["subject_index"] = person
        return out
