"""From feature-store rows to model batches, in two halves split by what changes per epoch.

``RowDecoder`` (CPU; Ray Data's task in training): what never changes, per row: decode the JPEG,
shrink to the model's size (``crop_cache.decode_crops``; a smaller crop grows on the worker:
``faces.batched.upsize_batch``, or the augmentation's warp), landmarks in the model-size crop's pixel-centre
coordinates, the model's difference steps, labels. It yields compact uint8 crops (``crop``,
(B, S, S, 3)): a quarter of the bytes of the float32 image, and a quarter again for a 112 px model
on a 224 px store. ``model_batch`` (torch, batched, on the training worker's device): what does
change, augmentation (affine jitter, flip with the left/right landmark swap and the motion mirror,
colour jitter; ``components.faces.batched``), then the model's input transform (mask, gray, Sobel,
normalisation). ``BatchBuilder`` chains both on CPU for evaluation, prediction and Serve, so a
model's input has one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.models.base import InputSpec
from components.store.crop_cache import decode_crops
from components.video_key import subject_index, video_index

if TYPE_CHECKING:
    import torch

__all__ = ["AugmentConfig", "BatchBuilder", "RowDecoder", "model_batch", "VIDEO_BATCH_ROWS"]

_CPU_CHUNK_PIXELS = 8 * 224 * 224
"""Crop pixels ``model_batch`` transforms at once on a CPU: 8 crops at 224 px, 32 at 112 (the
float intermediates of a chunk, a few MB, stay in cache; whole 64-crop batches ran 2-3x slower
per crop on this 2-core machine)."""

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


class RowDecoder:
    """Callable on a columnar batch (dict of numpy arrays) of feature-store rows: the per-row,
    deterministic half of ``BatchBuilder`` (Ray Data runs it in training).

    Output keys: crop (B,S,S,3) uint8 at the model's size (smaller, from a crop cache of a store
    with smaller crops: ``model_batch`` upsizes it), landmarks (B,68,2) in its pixel-centre
    coordinates, crop_scale (B,) model size / crop size, landmark_diff (B,k,68,2) for the
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
    geometry and every row has them, video_index (``components.video_key``: CRC32 of the face track's key,
    dataset/subject/video[#face]) for families that pair or window frames within a video, and subject_index (CRC32 of
    dataset/subject) for those that group frames by person.
    """

    def __init__(self, spec: InputSpec, store_diff_steps: Sequence[int], n_aus: int,
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

    def _labels(self, col: Any, key: str) -> np.ndarray:
        if isinstance(col, np.ndarray) and col.ndim == 2:   # the crop cache's fixed-size rows, -1 unknown
            arr = col.astype(np.float32)
            return arr[:, self.au_index] if self.au_index is not None else arr
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
        size = spec.image_size
        if "crop_scale" in batch:   # rows of the crop cache: decoded at min(model size, stored size)
            out_crops, lms_out, crop_scale = batch["crop"], batch["landmarks"], batch["crop_scale"]
            side = out_crops.shape[1]
            if side > size:
                raise ValueError(f"crop cache rows are {side} px, the model reads {size} px")
            if side < size:
                # Stored crops smaller than the model's: ``model_batch`` upsizes them on the worker
                # (``upsize_batch``, as for store rows: ``decode_crops``); landmarks move to that size now.
                lms_out = ((lms_out + 0.5) * (size / side) - 0.5).astype(np.float32)
                crop_scale = (crop_scale * (size / side)).astype(np.float32)
        else:
            crops = batch.get("crop")
            images = crops if crops is not None else batch["image"]
            out_crops, lms_out, crop_scale = decode_crops(images, batch["landmarks"], size)
        n = len(out_crops)
        k = len(self.diff_index)
        diffs = np.zeros((n, k, 68, 2), np.float32)
        valid = np.zeros((n, k), bool)
        col = batch.get("landmark_diff")
        if k and isinstance(col, np.ndarray) and col.ndim == 4:   # the crop cache's (B, steps, 68, 2)
            diffs, valid = col[:, self.diff_index], batch["diff_valid"][:, self.diff_index]
        elif k and col is not None:
            for i in range(n):
                d = np.asarray(col[i], np.float32).reshape(self.n_store_steps, 68, 2)
                diffs[i] = d[self.diff_index]
                valid[i] = np.asarray(batch["diff_valid"][i], bool)[self.diff_index]
        out = {
            "crop": out_crops, "landmarks": lms_out, "crop_scale": crop_scale,
            "landmark_diff": diffs, "diff_valid": valid,
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
        # Pairs and windows are per face track (dataset, subject, video, face); pairwise-rank's cross-fitting groups
        # by person. The crop cache has both computed.
        index = batch["video_index"] if "video_index" in batch else video_index(batch)
        if index is not None:
            out["video_index"] = index
        person = batch["subject_index"] if "subject_index" in batch else subject_index(batch)
        if person is not None:
            out["subject_index"] = person
        return out


def model_batch(batch: dict[str, Any], spec: InputSpec, augment: "AugmentConfig | None" = None,
                generator: "torch.Generator | None" = None, image_out: "torch.Tensor | None" = None
                ) -> dict[str, Any]:
    """The per-epoch half: ``RowDecoder``'s batch as torch tensors (on any device; the crops stay
    uint8 until here; smaller than the model's size: upsized, ``upsize_batch``, or with
    ``augment`` resampled to it by the warp itself) → the model's batch on the same device. With
    ``augment``: affine jitter,
    flip (landmarks swap left/right; the temporal differences of flipped rows too, x negated) and
    colour jitter, drawn from ``generator``; then ``model_input_batch``. ``image`` (B,C,S,S)
    float32 replaces ``crop``; ``landmarks`` come back in the convention models read (crop pixels
    x model size / crop size) and ``landmark_diff`` in the same units (scaled by the zoom too
    under ``augment``); every other entry passes as it is. ``image_out``: a float32
    (>= B, C, S, S) tensor on the crops' device that ``image`` is written into (its first B rows),
    for a caller that is done with one batch before it asks for the next (the training loop: a
    fresh 38 MB image tensor per 64-crop batch at 224 px cost more in page faults than the
    transform's arithmetic on a CPU); a tensor of another shape or device is not used."""
    import torch

    from components.faces.batched import augment_batch, draw_augment, model_input_batch, upsize_batch

    crops = batch["crop"]
    crops = torch.as_tensor(crops) if not isinstance(crops, torch.Tensor) else crops
    lms = torch.as_tensor(batch["landmarks"]).to(crops.device, torch.float32)
    out = {k: v for k, v in batch.items() if k not in ("crop", "crop_scale")}
    n, size = len(crops), spec.image_size
    draw = draw_augment(n, size, augment, generator) if augment is not None else None
    shape = (spec.num_channels, size, size)
    if (image_out is not None and tuple(image_out.shape[1:]) == shape and len(image_out) >= n
            and image_out.device == crops.device and image_out.dtype == torch.float32):
        image = image_out[:n]
    else:
        image = torch.empty((n, *shape), device=crops.device, dtype=torch.float32)
    moved = torch.empty_like(lms)
    # On a CPU, a few crops at a time: the float intermediates stay in cache (a GPU takes the batch whole).
    step = n if crops.device.type != "cpu" else max(1, _CPU_CHUNK_PIXELS // (size * size))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        chunk, chunk_lms = crops[lo:hi], lms[lo:hi]
        if draw is not None:   # the warp reads a smaller crop as grown to ``size``: one resampling
            images, chunk_lms = augment_batch(chunk.permute(0, 3, 1, 2), chunk_lms, draw.rows(lo, hi), size)
        else:
            images = (chunk if chunk.shape[1] == size else upsize_batch(chunk, size)).permute(0, 3, 1, 2)
        moved[lo:hi] = chunk_lms
        model_input_batch(images, chunk_lms, spec, out=image[lo:hi])
    scale = torch.as_tensor(batch["crop_scale"]).to(lms.device, torch.float32).view(-1, 1, 1)
    diffs = out.get("landmark_diff")
    if isinstance(diffs, torch.Tensor) and diffs.ndim == 4 and diffs.shape[1]:
        # Motion in the units of the landmarks the model reads: the store's crop pixels x model
        # size / crop size, times the zoom the warp applied (a difference of two moved points).
        diffs = diffs.float() * scale.to(diffs.device).view(-1, 1, 1, 1)
        if draw is not None:
            diffs = diffs * draw.scale.to(diffs.device, torch.float32).view(-1, 1, 1, 1)
            flip = draw.flip.to(diffs.device).view(-1, 1, 1, 1)
            mirrored = diffs[:, :, list(LEFT_RIGHT_LANDMARK_PERMUTATION)] * torch.tensor([-1.0, 1.0], device=diffs.device)
            diffs = torch.where(flip, mirrored, diffs)
        out["landmark_diff"] = diffs
    out["image"] = image
    out["landmarks"] = moved + 0.5 * (1.0 - scale)   # pixel-centre → crop pixels x scale
    return out


class BatchBuilder(RowDecoder):
    """``RowDecoder`` then ``model_batch`` on CPU, with numpy in and out: the whole path from
    store rows (or serving's decoded ``crop`` column) to a model batch, for evaluation, prediction,
    Serve and tests. Output keys: image (B,C,S,S) float32, landmarks (B,68,2), and the rest of
    ``RowDecoder``'s (less ``crop`` and ``crop_scale``). ``seed`` seeds the augmentation (None:
    fresh randomness)."""

    def __init__(self, spec: InputSpec, store_diff_steps: Sequence[int], n_aus: int,
                 augment: "AugmentConfig | None" = None, seed: "int | None" = 0,
                 au_index: "Sequence[int] | None" = None,
                 teacher_thresholds: "Sequence[float | None] | None" = None) -> None:
        import torch

        super().__init__(spec, store_diff_steps, n_aus, au_index=au_index, teacher_thresholds=teacher_thresholds)
        self.augment = augment
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        import torch

        rows = super().__call__(batch)
        tensors = {k: torch.from_numpy(v) if v.dtype.kind in "fiub" else v for k, v in rows.items()}
        out = model_batch(tensors, self.spec, self.augment, self.generator)
        return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
