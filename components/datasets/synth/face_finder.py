"""The synthetic generator's one use of the face pipeline: finding and landmarking the faces of
its source photos.

Data flows one way, from data sets to preprocessing and the face pipeline (``components.faces``);
the generator only needs the template and the alignment, which live in ``components.geometry``.
Source photos are the exception: their faces must be found and given 68 landmarks before they
can be animated. This module is the only place in ``components.datasets.synth`` that imports
``components.faces``, and ``generate`` takes what it returns as a parameter (``find``), so a
caller can pass any other ``FaceFinder``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from components.datasets.synth.sources import FaceFinder, PhotoFace

if TYPE_CHECKING:
    from components.faces import DlibHogDetector, DlibLandmarker

__all__ = ["dlib_face_finder"]


@lru_cache(maxsize=1)
def _face_models() -> "tuple[DlibHogDetector, DlibLandmarker]":
    """dlib's detector and shape predictor, loaded once per process (a few seconds each)."""
    from components.faces import DlibHogDetector, DlibLandmarker

    return DlibHogDetector(upsample=1, threshold=0.0), DlibLandmarker()


def dlib_face_finder() -> FaceFinder:
    """A ``FaceFinder`` with dlib's HOG detector and 68-point shape predictor; the models load
    on the first photo, once per process."""

    def find(rgb: np.ndarray, min_score: float, max_faces: int) -> list[PhotoFace]:
        detector, landmarker = _face_models()
        found = [f for f in detector.detect(rgb) if f.score >= min_score]
        if max_faces > 0:
            found = found[:max_faces]
        if not found:
            return []
        marks = landmarker.fit(rgb, np.stack([f.box for f in found]))
        return [PhotoFace(score=f.score, landmarks=lm) for f, lm in zip(found, marks)]

    return find
