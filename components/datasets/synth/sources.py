"""Source faces for the synthetic generator: photos in, aligned face canvases with 68 landmarks out.

Each face found in a source photo is one identity (one identity group: folds must never split
it). The default source is scikit-image's public-domain astronaut portrait (Eileen Collins,
NASA). Faces are found with dlib's HOG detector and 68-point shape predictor
(``components.faces``) and aligned onto a square canvas of the frame size with the face
spanning about half of it, leaving background for head motion and occluders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from components.faces import AlignedFace, DlibHogDetector, DlibLandmarker

__all__ = ["IMAGE_SUFFIXES", "FACE_MARGINS", "DEFAULT_SOURCE", "SourceFace", "SourceError",
           "read_photos", "find_faces"]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""Files under ``--faces`` read as photos (case-insensitive)."""

FACE_MARGINS: tuple[float, ...] = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25)
"""``align_face`` margins tried for the canvas, widest first (0.5: the brow-to-chin span is
half the frame side; 0.25: two thirds). The widest that stays inside the photo is used."""

DEFAULT_SOURCE = "skimage.data.astronaut"
"""Name recorded for the default photo."""


class SourceError(ValueError):
    """No usable source photo or face; the message names the folder or file."""


@dataclass
class SourceFace:
    """One face of one source photo, aligned onto the frame canvas."""

    photo: str
    """Photo file name (or ``DEFAULT_SOURCE``)."""
    face_index: int
    """Index of the face in its photo (largest first)."""
    group: str
    """Identity group: every pseudo-subject made from this face shares it."""
    canvas: np.ndarray
    """uint8 (size, size, 3) RGB aligned canvas."""
    landmarks: np.ndarray
    """float32 (68, 2) landmarks in canvas pixels."""
    score: float
    """Detector score of the face in its photo."""


def read_photos(faces_dir: "str | Path | None") -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8) for every readable photo in ``faces_dir`` (sorted by name).

    ``None`` gives the astronaut. Raises ``SourceError`` for a missing folder or one without
    any readable photo.
    """
    if faces_dir is None:
        from skimage import data

        return [(DEFAULT_SOURCE, np.ascontiguousarray(data.astronaut()))]
    folder = Path(faces_dir)
    if not folder.is_dir():
        raise SourceError(f"--faces folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    photos = []
    for p in files:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            photos.append((p.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    if not photos:
        raise SourceError(
            f"no readable photo ({', '.join(sorted(IMAGE_SUFFIXES))}) in --faces folder {folder}"
        )
    return photos


def _group_name(photo: str, face_index: int, taken: set[str]) -> str:
    stem = Path(photo).stem if photo != DEFAULT_SOURCE else "astronaut"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    name = f"{base}_face{face_index}"
    if name in taken:
        name = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', photo)}_face{face_index}"
    taken.add(name)
    return name


def _fitting_alignment(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> "AlignedFace":
    """``align_face`` with the widest of ``FACE_MARGINS`` whose canvas lies inside the photo."""
    from components.faces import align_face

    h, w = rgb.shape[:2]
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    for margin in FACE_MARGINS:
        aligned = align_face(rgb, landmarks, size=size, margin=margin)
        m = np.vstack([aligned.matrix.astype(np.float64), [0, 0, 1]])
        back = (np.hstack([corners, np.ones((4, 1))]) @ np.linalg.inv(m).T)[:, :2]
        if back.min() >= -1 and back[:, 0].max() <= w and back[:, 1].max() <= h:
            break
    return aligned


@lru_cache(maxsize=1)
def _face_models() -> "tuple[DlibHogDetector, DlibLandmarker]":
    """dlib's detector and shape predictor, loaded once per process (a few seconds each)."""
    from components.faces import DlibHogDetector, DlibLandmarker

    return DlibHogDetector(upsample=1, threshold=0.0), DlibLandmarker()


def find_faces(photos: list[tuple[str, np.ndarray]], size: int, min_score: float = 0.5,
               min_iod: float = 24.0, max_faces_per_photo: int = 0) -> tuple[list[SourceFace], list[str]]:
    """Detect, landmark and align every usable face: (faces, reasons for skipped photos/faces).

    A face is used when dlib's detector score is >= ``min_score`` (drops badges and patterns
    that look face-like) and its eye centres are >= ``min_iod`` pixels apart (smaller faces
    would be upscaled into mush). ``max_faces_per_photo`` 0 keeps all.
    """
    detector, landmarker = _face_models()
    faces: list[SourceFace] = []
    skipped: list[str] = []
    taken: set[str] = set()
    for name, rgb in photos:
        found = [f for f in detector.detect(rgb) if f.score >= min_score]
        if not found:
            skipped.append(f"{name}: no face with detector score >= {min_score}")
            continue
        if max_faces_per_photo > 0:
            found = found[:max_faces_per_photo]
        marks = landmarker.fit(rgb, np.stack([f.box for f in found]))
        for k, (face, lm) in enumerate(zip(found, marks)):
            iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
            if iod < min_iod:
                skipped.append(f"{name} face {k}: eye distance {iod:.0f} px < {min_iod:.0f} px")
                continue
            aligned = _fitting_alignment(rgb, lm, size)
            # Same similarity, but where the canvas still reaches past the photo, stretch its
            # edge instead of black bars (a give-away border) or a mirror (a second half-face).
            canvas = cv2.warpAffine(rgb, aligned.matrix, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            faces.append(SourceFace(photo=name, face_index=k, group=_group_name(name, k, taken),
                                    canvas=canvas, landmarks=aligned.landmarks, score=face.score))
    return faces, skipped
