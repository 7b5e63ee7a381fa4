"""68-point landmark models behind one interface: ``fit(rgb, boxes) -> (N, 68, 2)``.

Backends:
- ``DlibLandmarker``: dlib's ensemble-of-regression-trees shape predictor, with the
  ``shape_predictor_68_face_landmarks.dat`` file that the face-recognition-models wheel ships.
- ``FanLandmarker``: FAN (2D-FAN-4) from face-alignment. Its weights are not in the wheel:
  face-alignment downloads them into the torch hub cache on first use. facsflow never downloads
  weights at run time, so the cache must be pre-seeded (see ``FanLandmarker``).
- ``MediaPipeLandmarker`` (``components.faces.mediapipe_mesh``): MediaPipe's Face Landmarker on a
  crop around each box; the 478-point mesh and 52 blendshapes come with the 68 points.

Points are iBUG-68, (x, y) in image pixels, float32.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from components.faces.detectors import check_rgb

__all__ = [
    "LandmarkModel",
    "DlibLandmarker",
    "FanLandmarker",
    "build_landmarker",
    "LANDMARKERS",
    "dlib_predictor_path",
    "fan_weights_path",
]

_DLIB_68 = "models/shape_predictor_68_face_landmarks.dat"


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes: expected shape (N, 4) x0,y0,x1,y1, got {np.shape(boxes)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("boxes: non-finite coordinates")
    return arr


@runtime_checkable
class LandmarkModel(Protocol):
    """Anything that fits 68 landmarks inside given face boxes."""

    def fit(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks float32 (N, 68, 2) in image pixels, one set per box of ``boxes`` (N, 4)."""
        ...


def dlib_predictor_path() -> Path:
    """Path of dlib's 68-point shape predictor inside the face-recognition-models package.

    Located with ``importlib`` rather than by importing the package, whose ``__init__`` needs
    ``pkg_resources`` (absent from recent setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib 68-point shape predictor: package 'face-recognition-models' is not installed "
            "(pip install face-recognition-models)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _DLIB_68
    if not path.is_file():
        raise FileNotFoundError(
            f"dlib 68-point shape predictor not found at {path}; reinstall face-recognition-models"
        )
    return path


class DlibLandmarker:
    """dlib's regression-tree 68-point shape predictor (cost per face: docs/measurements.md)."""

    def __init__(self, predictor_path: str | Path | None = None) -> None:
        import dlib

        self._dlib = dlib
        path = Path(predictor_path) if predictor_path is not None else dlib_predictor_path()
        if not path.is_file():
            raise FileNotFoundError(f"dlib shape predictor file not found: {path}")
        self._predictor = dlib.shape_predictor(str(path))

    def fit(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks float32 (N, 68, 2) in image pixels for each box (N, 4) x0,y0,x1,y1."""
        rgb = check_rgb(rgb)
        boxes = _check_boxes(boxes)
        out = np.empty((len(boxes), 68, 2), dtype=np.float32)
        for i, b in enumerate(boxes):
            # dlib rectangles are inclusive on the right/bottom edge; our boxes are exclusive.
            rect = self._dlib.rectangle(
                int(round(b[0])), int(round(b[1])), int(round(b[2])) - 1, int(round(b[3])) - 1
            )
            shape = self._predictor(rgb, rect)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out


def fan_weights_path() -> Path:
    """Where face-alignment looks for the 2D-FAN-4 weights: the torch hub checkpoint cache.

    The file name is the last path component of face-alignment's download URL for '2DFAN-4'
    (``2DFAN4-11f355bf06.pth.tar`` in face-alignment 1.5).
    """
    import torch.hub
    from urllib.parse import urlparse

    from face_alignment.api import models_urls

    name = Path(urlparse(models_urls["2DFAN-4"]).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


class FanLandmarker:
    """FAN 2D landmarks (face-alignment, 2D-FAN-4), fed with our own boxes.

    face-alignment's own detector is not used: we build it with the 'folder' detector, which
    loads no weights, and pass boxes through ``get_landmarks_from_image(detected_faces=...)``.

    Weights must already be in the torch hub cache (``fan_weights_path()``); without network a
    missing file raises a RuntimeError saying what to copy where.
    """

    def __init__(
        self, device: str = "cpu", batch_size: int = 8, flip_input: bool = False
    ) -> None:
        import face_alignment

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device
        try:
            # compile=False: torch.compile warm-up costs minutes on CPU and gains little here.
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                flip_input=flip_input,
                face_detector="folder",
                compile=False,
                max_batch_size=int(batch_size),
            )
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            target = fan_weights_path()
            raise RuntimeError(
                f"FAN landmark weights could not be loaded ({type(exc).__name__}: {exc}). "
                f"facsflow does not download weights at run time: pre-seed the torch hub cache "
                f"with {target.name} in {target.parent}/ . On a machine with network run "
                f"python -c 'import face_alignment; face_alignment.FaceAlignment("
                f"face_alignment.LandmarksType.TWO_D, device=\"cpu\", face_detector=\"folder\", "
                f"compile=False)' then copy {target} to the same path on this machine "
                f"(or set TORCH_HOME to a directory whose hub/checkpoints/ holds it)."
            ) from exc

    def fit(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks float32 (N, 68, 2) in image pixels for each box (N, 4) x0,y0,x1,y1."""
        rgb = check_rgb(rgb)
        boxes = _check_boxes(boxes)
        if len(boxes) == 0:
            return np.zeros((0, 68, 2), dtype=np.float32)
        preds = self._fa.get_landmarks_from_image(rgb, detected_faces=[b for b in boxes])
        return np.stack([np.asarray(p, dtype=np.float32)[:, :2] for p in preds])


def _mediapipe(**opts: Any) -> LandmarkModel:
    from components.faces.mediapipe_mesh import MediaPipeLandmarker  # imports this module

    return MediaPipeLandmarker(**opts)


LANDMARKERS: dict[str, Callable[..., LandmarkModel]] = {
    "dlib": DlibLandmarker,
    "fan": FanLandmarker,
    "mediapipe": _mediapipe,
}
"""Landmarker name -> constructor; ``build_landmarker`` reads it."""


def build_landmarker(name: str, **opts: Any) -> LandmarkModel:
    """Build a landmark model by name ('dlib', 'fan', 'mediapipe'); ``opts`` go to its constructor."""
    try:
        cls = LANDMARKERS[name]
    except KeyError:
        raise KeyError(f"unknown landmark model {name!r}; known: {sorted(LANDMARKERS)}") from None
    return cls(**opts)
