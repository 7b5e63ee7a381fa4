"""Face geometry shared by the face pipeline and the synthetic generator: the canonical 68-point
template and the similarity alignment of a face onto it.

Both ``components.faces`` (preprocessing and serving) and ``components.datasets.synth`` (data
generation) need these facts, and neither may reach into the other: data flows from datasets to
preprocess and faces, never back. This module imports nothing else of ``components``.

``TEMPLATE_68`` is the mean face shape in the unit square. Source of truth: the initial
(mean) shape stored in dlib's ``shape_predictor_68_face_landmarks.dat`` (face-recognition-models
0.3.0), i.e. the mean iBUG-68 shape of the 300-W training faces in detector-box coordinates,
read once from the file's ``initial_shape`` field, min-max normalised per axis to [0, 1],
averaged with its mirror image (``LEFT_RIGHT_LANDMARK_PERMUTATION``; the asymmetry was < 3e-5)
and rounded to 4 decimals. x grows to the image right, y downward; brows touch y = 0, the chin
y = 1, the jaw ends x = 0 and 1.

Alignment fits a similarity (rotation, uniform scale, translation; no shear, no reflection)
on stable points only, so that AU motion stays in the aligned crop instead of being cancelled
by the fit: the four eye corners (36, 39, 42, 45; lids excluded, AU5/AU7 move them), the nose
bridge and tip (27-30) and the nostril base (31, 33, 35), and the two outer mouth corners
(48, 54), which fix the vertical scale; 2 of 13 points, so a smile (AU12) moves the fit by
a small fraction of the corners' own displacement. Brows (AU1/2/4), lids, lips and the jaw
contour (AU26/27, unstable at the sides) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "check_rgb",
    "TEMPLATE_68",
    "STABLE_POINTS",
    "AlignedFace",
    "similarity_transform",
    "transform_points",
    "crop_template",
    "align_face",
]

TEMPLATE_68: np.ndarray = np.array([
    (0.0000, 0.1755), (0.0034, 0.3128), (0.0175, 0.4495), (0.0450, 0.5836),  # 0-3
    (0.0965, 0.7081), (0.1756, 0.8161), (0.2724, 0.9062), (0.3792, 0.9785),  # 4-7
    (0.5000, 1.0000), (0.6208, 0.9785), (0.7276, 0.9062), (0.8244, 0.8161),  # 8-11
    (0.9035, 0.7081), (0.9550, 0.5836), (0.9825, 0.4495), (0.9966, 0.3128),  # 12-15
    (1.0000, 0.1755), (0.0953, 0.0752), (0.1573, 0.0173), (0.2448, 0.0000),  # 16-19
    (0.3354, 0.0134), (0.4202, 0.0500), (0.5798, 0.0500), (0.6646, 0.0134),  # 20-23
    (0.7552, 0.0000), (0.8427, 0.0173), (0.9047, 0.0752), (0.5000, 0.1575),  # 24-27
    (0.5000, 0.2459), (0.5000, 0.3335), (0.5000, 0.4237), (0.3985, 0.4847),  # 28-31
    (0.4473, 0.5033), (0.5000, 0.5192), (0.5527, 0.5033), (0.6015, 0.4847),  # 32-35
    (0.1960, 0.1685), (0.2500, 0.1363), (0.3149, 0.1372), (0.3718, 0.1817),  # 36-39
    (0.3109, 0.1930), (0.2463, 0.1921), (0.6282, 0.1817), (0.6851, 0.1372),  # 40-43
    (0.7500, 0.1363), (0.8040, 0.1685), (0.7537, 0.1921), (0.6891, 0.1930),  # 44-47
    (0.3057, 0.6487), (0.3772, 0.6191), (0.4496, 0.6037), (0.5000, 0.6166),  # 48-51
    (0.5504, 0.6037), (0.6228, 0.6191), (0.6943, 0.6487), (0.6251, 0.7213),  # 52-55
    (0.5548, 0.7533), (0.5000, 0.7594), (0.4452, 0.7533), (0.3749, 0.7213),  # 56-59
    (0.3355, 0.6527), (0.4489, 0.6474), (0.5000, 0.6531), (0.5511, 0.6474),  # 60-63
    (0.6645, 0.6527), (0.5521, 0.6868), (0.5000, 0.6934), (0.4479, 0.6868),  # 64-67
], dtype=np.float32)
"""Mean iBUG-68 face shape (x, y) in the unit square; see the module docstring for its source."""
TEMPLATE_68.setflags(write=False)

STABLE_POINTS: tuple[int, ...] = (36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35, 48, 54)
"""Landmarks the alignment fits: eye corners, nose bridge and tip, nostril base, mouth corners."""


def check_rgb(rgb: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``rgb`` as a C-contiguous HxWx3 uint8 array; raise ValueError naming ``what``."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8, got {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what}: empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


@dataclass
class AlignedFace:
    """An aligned face crop and how it was made."""

    crop: np.ndarray
    """uint8 (size, size, 3) RGB."""
    landmarks: np.ndarray
    """float32 (68, 2) landmarks in crop pixel coordinates."""
    matrix: np.ndarray
    """float32 (2, 3) similarity mapping image coordinates to crop coordinates."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping ``src`` (N, 2) onto ``dst`` (N, 2).

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns", eqs. 38-42, with the reflection guard: the smallest singular direction is
    negated when the best orthogonal map would be a reflection.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform: need matching (N>=2, 2) arrays, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("similarity_transform: source points are all identical")
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]]).astype(np.float32)


def transform_points(pts: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply an affine (2, 3) ``matrix`` to points (..., 2); returns float32 of the same shape."""
    pts = np.asarray(pts, dtype=np.float32)
    m = np.asarray(matrix, dtype=np.float32)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def crop_template(size: int = 112, margin: float = 0.25) -> np.ndarray:
    """Template positions (68, 2) in an aligned crop of side ``size``.

    ``margin`` pads the unit-square template by that fraction of its side on every side
    (0.25: the face spans the middle 2/3 of the crop, with room for the forehead above the
    brows that the background mask keeps). Coordinates follow OpenCV's pixel-centre
    convention (pixel i covers [i - 0.5, i + 0.5)), so the padded square spans
    [-0.5, size - 0.5] and the template's mirror axis x = 0.5 lands on (size - 1) / 2, the axis
    a horizontal flip of the crop mirrors about.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if not 0.0 <= margin < 2.0:
        raise ValueError(f"margin must be in [0, 2), got {margin}")
    return ((TEMPLATE_68 + margin) / (1.0 + 2.0 * margin) * size - 0.5).astype(np.float32)


def align_face(
    rgb: np.ndarray, landmarks: np.ndarray, size: int = 112, margin: float = 0.25
) -> AlignedFace:
    """Warp the face with ``landmarks`` (68, 2, image pixels) onto the template in a size x size crop.

    The similarity is fitted on ``STABLE_POINTS`` only; pixels outside the image are black.
    """
    rgb = check_rgb(rgb)
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"align_face: landmarks must be finite (68, 2), got {lm.shape}")
    idx = list(STABLE_POINTS)
    matrix = similarity_transform(lm[idx], crop_template(size, margin)[idx])
    crop = cv2.warpAffine(
        rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return AlignedFace(crop=crop, landmarks=transform_points(lm, matrix), matrix=matrix)
