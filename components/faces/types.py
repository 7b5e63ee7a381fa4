"""Plain data types shared by the face pipeline: one detected (and possibly tracked) face."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Face"]


@dataclass
class Face:
    """One face in one image, in image pixel coordinates."""

    box: np.ndarray
    """float32 (4,): x0, y0, x1, y1."""
    score: float
    """Detector confidence (dlib: SVM margin, MTCNN: probability); carried over while tracking."""
    landmarks: np.ndarray | None = None
    """float32 (68, 2) iBUG-68 points (x, y) in image pixels, or None before landmark fitting."""
    face_id: int = 0
    """Stable id across frames of one video (0 for still images and single-face policies)."""
    tracked: bool = False
    """True when the box came from the previous frame's landmarks rather than a fresh detection."""

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.score = float(self.score)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
            if self.landmarks.shape != (68, 2):
                raise ValueError(f"Face.landmarks must be (68, 2), got {self.landmarks.shape}")

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for a degenerate box)."""
        w = max(float(self.box[2] - self.box[0]), 0.0)
        h = max(float(self.box[3] - self.box[1]), 0.0)
        return w * h
