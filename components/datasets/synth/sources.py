"""Source faces for the synthetic generator: photos in, aligned face canvases with 68 landmarks out.

Each face found in a source photo is one identity (one identity group: folds must never split
it). The default source is scikit-image's public-domain astronaut portrait (Eileen Collins,
NASA). Faces are found and landmarked by a ``FaceFinder`` that the caller passes in (the
generator's is dlib's HOG detector and 68-point shape predictor, ``synth.face_finder``) and
aligned (``components.geometry``) onto a square canvas of the frame size with the face spanning
about half of it, leaving background for head motion and occluders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from components.geometry import AlignedFace, align_face

__all__ = ["IMAGE_SUFFIXES", "FACE_MARGINS", "DEFAULT_SOURCE", "SourceFace", "SourceError", "PhotoFace",
           "FaceFinder", "read_photos", "find_faces"]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""Files under ``--faces`` read as photos (case-insensitive)."""

FACE_MARGINS: tuple[float, ...] = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25)
"""``align_face`` margins tried for the canvas, widest first (0.5: the brow-to-chin span is
half the frame side; 0.25: two thirds). The widest that stays inside the photo is used."""

DEFAULT_SOURCE = "skimage.data.astronaut"
"""Name recorded for the default photo."""


class SourceError(ValueError):
    """No usable source photo or face; the message names the folder or file."""


@dataclass(frozen=True)
class PhotoFace:
    """One face a ``FaceFinder`` found in a photo."""

    score: float
    """Detector score."""
    landmarks: np.ndarray
    """float32 (68, 2) iBUG-68 landmarks in photo pixels."""


FaceFinder = Callable[[np.ndarray, float, int], list[PhotoFace]]
"""``find(rgb, min_score, max_faces)``: the faces of an RGB uint8 photo whose detector score is
>= ``min_score``, largest first, at most ``max_faces`` (0: all), with their landmarks."""


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


def _fitting_alignment(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> AlignedFace:
    """``align_face`` with the widest of ``FACE_MARGINS`` whose canvas lies inside the photo."""
    h, w = rgb.shape[:2]
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    for margin in FACE_MARGINS:
        aligned = align_face(rgb, landmarks, size=size, margin=margin)
        m = np.vstack([aligned.matrix.astype(np.float64), [0, 0, 1]])
        back = (np.hstack([corners, np.ones((4, 1))]) @ np.linalg.inv(m).T)[:, :2]
        if back.min() >= -1 and back[:, 0].max() <= w and back[:, 1].max() <= h:
            break
    return aligned


def find_faces(photos: list[tuple[str, np.ndarray]], size: int, find: FaceFinder, min_score: float = 0.5,
               min_iod: float = 24.0, max_faces_per_photo: int = 0) -> tuple[list[SourceFace], list[str]]:
    """Find (with ``find``), align and keep every usable face: (faces, reasons for skipped
    photos/faces).

    A face is used when its detector score is >= ``min_score`` (drops badges and patterns
    that look face-like) and its eye centres are >= ``min_iod`` pixels apart (smaller faces
    would be upscaled into mush). ``max_faces_per_photo`` 0 keeps all.
    """
    faces: list[SourceFace] = []
    skipped: list[str] = []
    taken: set[str] = set()
    for name, rgb in photos:
        found = find(rgb, min_score, max_faces_per_photo)
        if not found:
            skipped.append(f"{name}: no face with detector score >= {min_score}")
            continue
        for k, face in enumerate(found):
            lm = face.landmarks
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
