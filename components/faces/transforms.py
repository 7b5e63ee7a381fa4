"""Model-input transforms shared by training, prediction and serving.

They run after augmentation, on an aligned crop and its landmarks, and are never stored in the
feature store: the background mask, grayscale, the Sobel edge map, channel normalisation, the
temporal landmark differences and the horizontal flip that keeps landmark identities.

Coordinates follow OpenCV's pixel-centre convention: pixel i covers [i - 0.5, i + 0.5).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.models.base import InputSpec

__all__ = [
    "FOREHEAD_FRACTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "background_mask",
    "to_gray",
    "sobel_magnitude",
    "resize_sample",
    "model_input",
    "landmark_diffs",
    "hflip_sample",
]

FOREHEAD_FRACTION = 0.4
"""How far above the brows the mask reaches, as a fraction of the brow-to-chin distance.

By the facial-thirds rule the forehead (brow to hairline) is about half the brow-to-chin
distance; 0.4 keeps most forehead skin (AU1/AU2 wrinkles) while leaving the hairline out."""

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_BROWS = list(range(17, 27))
_CHIN = 8


def _check_landmarks(landmarks: np.ndarray, what: str = "landmarks") -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"{what}: expected finite (68, 2) points, got shape {lm.shape}")
    return lm


def background_mask(size: int, landmarks: np.ndarray) -> np.ndarray:
    """Face region of a size x size crop: True on the face, False on the background.

    The region is the convex hull of the 68 landmarks plus the brow points (17-26) moved
    "up the face" (from the chin towards the brows' centre) by ``FOREHEAD_FRACTION`` of the
    brow-to-chin distance, so the forehead is kept. This replaces the pre-trained face
    semantic segmentation network of the to-sequence paper (000, sec. 2.2.1), which facsflow
    does not ship.
    """
    lm = _check_landmarks(landmarks)
    brows = lm[_BROWS]
    axis = brows.mean(0) - lm[_CHIN]
    height = float(np.linalg.norm(axis))
    mask = np.zeros((size, size), dtype=np.uint8)
    if height < 1e-6:
        return mask.astype(bool)
    forehead = brows + FOREHEAD_FRACTION * axis
    pts = np.concatenate([lm, forehead])
    hull = cv2.convexHull(pts.astype(np.float32))
    # fillConvexPoly with 4 fractional bits keeps sub-pixel landmark positions.
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601 weights) of an HxWx3 uint8 RGB image as float32 in [0, 1]."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"to_gray: expected HxWx3 uint8 RGB, got {arr.shape} {arr.dtype}")
    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a float HxW image with 3x3 Sobel kernels, divided by its maximum.

    The edge channel of the to-sequence static module (paper 000, sec. 2.2.1). A flat image
    gives all zeros.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.ndim != 2:
        raise ValueError(f"sobel_magnitude: expected an HxW image, got shape {g.shape}")
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    mag = cv2.magnitude(gx, gy)
    peak = float(mag.max())
    return mag / peak if peak > 1e-8 else np.zeros_like(mag)


def resize_sample(crop: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a square crop to size x size and scale its landmarks (pixel-centre convention)."""
    lm = _check_landmarks(landmarks)
    h, w = crop.shape[:2]
    if (h, w) == (size, size):
        return crop, lm
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interp)
    scale = np.array([size / w, size / h], dtype=np.float32)
    return out, ((lm + 0.5) * scale - 0.5).astype(np.float32)


def model_input(crop_rgb: np.ndarray, landmarks: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The image tensor a model declared in ``spec`` reads: float32 (C, S, S).

    Steps: resize to ``spec.image_size`` (landmarks scaled with it); when ``spec.mask``, set the
    background to black (``background_mask``) before computing channels, as the paper segments
    before the grayscale/Sobel step (000, sec. 2.2.1); then
    - 'rgb': (x/255 - ImageNet mean) / ImageNet std, 3 channels;
    - 'gray': (g - 0.5) / 0.5, 1 channel;
    - 'gray+sobel': gray as above and the Sobel magnitude of the (masked) gray, also mapped
      from [0, 1] to [-1, 1], 2 channels.
    """
    arr = np.asarray(crop_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"model_input: crop must be HxWx3 uint8 RGB, got {arr.shape} {arr.dtype}")
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"model_input: crop must be square, got {arr.shape[:2]}")
    size = spec.image_size
    img, lm = resize_sample(arr, landmarks, size)
    if spec.mask:
        img = img * background_mask(size, lm)[:, :, None].astype(np.uint8)
    if spec.channels == "rgb":
        x = (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    gray = to_gray(np.ascontiguousarray(img))
    planes = [gray] if spec.channels == "gray" else [gray, sobel_magnitude(gray)]
    return np.stack([(p - 0.5) / 0.5 for p in planes]).astype(np.float32)


def landmark_diffs(
    landmarks_seq: np.ndarray, steps: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal landmark differences diff_t = l_{t+s} - l_{t-s} (paper 000, sec. 2.2.2, eq. 2).

    ``landmarks_seq`` is (T, 68, 2), frames in video order. Returns ``diffs`` float32
    (T, len(steps), 68, 2) and ``valid`` bool (T, len(steps)). The paper defines diff_t only for
    s <= t < T - s; at the video edges the out-of-range index is clamped to the first/last frame
    (so every frame gets a value) and ``valid`` is False there.
    """
    seq = np.asarray(landmarks_seq, dtype=np.float32)
    if seq.ndim != 3 or seq.shape[1:] != (68, 2):
        raise ValueError(f"landmark_diffs: expected (T, 68, 2), got {seq.shape}")
    steps = [int(s) for s in steps]
    if any(s < 1 for s in steps):
        raise ValueError(f"landmark_diffs: steps must be >= 1, got {steps}")
    t_len = len(seq)
    t = np.arange(t_len)
    diffs = np.zeros((t_len, len(steps), 68, 2), dtype=np.float32)
    valid = np.zeros((t_len, len(steps)), dtype=bool)
    for k, s in enumerate(steps):
        ahead, behind = t + s, t - s
        diffs[:, k] = seq[np.minimum(ahead, t_len - 1)] - seq[np.maximum(behind, 0)]
        valid[:, k] = (behind >= 0) & (ahead <= t_len - 1)
    return diffs, valid


def hflip_sample(crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a crop left-right and its landmarks, swapping left/right landmark identities.

    x' = (W - 1) - x (pixel centres), then ``flipped[i] = mirrored[perm[i]]`` with
    ``LEFT_RIGHT_LANDMARK_PERMUTATION``, so index 36 stays "the image-left outer eye corner".
    """
    lm = _check_landmarks(landmarks)
    arr = np.asarray(crop)
    if arr.ndim not in (2, 3):
        raise ValueError(f"hflip_sample: expected HxW or HxWxC crop, got {arr.shape}")
    w = arr.shape[1]
    mirrored = lm.copy()
    mirrored[:, 0] = (w - 1) - mirrored[:, 0]
    return np.ascontiguousarray(arr[:, ::-1]), mirrored[list(LEFT_RIGHT_LANDMARK_PERMUTATION)]
