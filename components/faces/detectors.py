"""Face detectors behind one small interface: ``detect(rgb) -> list[Face]``.

Backends:
- ``DlibHogDetector``: dlib's frontal HOG + linear SVM detector (fast on CPU, frontal faces).
- ``MtcnnDetector``: MTCNN from facenet-pytorch (weights ship inside the wheel, no download).
- ``RetinaFaceDetector`` (``components.faces.retinaface``): RetinaFace MobileNet-0.25, pose-robust.

Models load once in ``__init__`` (one per actor / replica), never per call.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from components.faces.types import Face
from components.geometry import check_rgb

__all__ = [
    "FaceDetector",
    "DlibHogDetector",
    "MtcnnDetector",
    "build_detector",
    "DETECTORS",
    "check_rgb",
]


def _sorted_by_area(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB image."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (HxWx3 uint8), landmarks None, sorted by box area, largest first."""
        ...


class DlibHogDetector:
    """dlib's HOG frontal face detector.

    The score is the SVM margin returned by ``run``; detections with margin below
    ``threshold`` are dropped (dlib's ``adjust_threshold``; 0 is dlib's default operating point).
    """

    def __init__(self, upsample: int = 1, threshold: float = 0.0) -> None:
        import dlib

        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (HxWx3 uint8), largest first."""
        rgb = check_rgb(rgb)
        rects, scores, _ = self._detector.run(rgb, self.upsample, self.threshold)
        h, w = rgb.shape[:2]
        faces = []
        for r, s in zip(rects, scores):
            # dlib boxes may reach past the image border; clip so crops and IoU stay meaningful.
            box = np.array(
                [max(r.left(), 0), max(r.top(), 0), min(r.right() + 1, w), min(r.bottom() + 1, h)],
                dtype=np.float32,
            )
            faces.append(Face(box=box, score=float(s)))
        return _sorted_by_area(faces)


class MtcnnDetector:
    """MTCNN (P-Net, R-Net, O-Net cascade) from facenet-pytorch; score is O-Net's probability."""

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        device: str = "cpu",
        min_score: float = 0.9,
    ) -> None:
        from facenet_pytorch import MTCNN

        if len(thresholds) != 3:
            raise ValueError(f"thresholds must have 3 values (P, R, O nets), got {thresholds}")
        self.min_score = float(min_score)
        self._mtcnn = MTCNN(
            min_face_size=int(min_face_size),
            thresholds=list(thresholds),
            select_largest=False,
            keep_all=True,
            device=device,
        )

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (HxWx3 uint8) with probability >= ``min_score``, largest first."""
        import torch

        rgb = check_rgb(rgb)
        h, w = rgb.shape[:2]
        with torch.no_grad():
            boxes, probs = self._mtcnn.detect(rgb)
        if boxes is None:
            return []
        faces = []
        for b, p in zip(boxes, probs):
            if p is None or p < self.min_score:
                continue
            box = np.array(
                [max(b[0], 0.0), max(b[1], 0.0), min(b[2], w), min(b[3], h)], dtype=np.float32
            )
            if box[2] > box[0] and box[3] > box[1]:
                faces.append(Face(box=box, score=float(p)))
        return _sorted_by_area(faces)


def _retinaface(**opts: Any) -> FaceDetector:
    from components.faces.retinaface import RetinaFaceDetector  # imports this module

    return RetinaFaceDetector(**opts)


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "dlib": DlibHogDetector,
    "mtcnn": MtcnnDetector,
    "retinaface": _retinaface,
}
"""Detector name -> constructor; ``build_detector`` reads it."""


def build_detector(name: str, **opts: Any) -> FaceDetector:
    """Build a detector by name ('dlib', 'mtcnn', 'retinaface'); ``opts`` go to its constructor."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown face detector {name!r}; known: {sorted(DETECTORS)}") from None
    return cls(**opts)
