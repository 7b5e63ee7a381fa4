"""The face pipeline: detect, fit landmarks, track and align, for still images and videos.

One ``FacePipeline`` holds its models (loaded once in ``__init__``) and a ``FaceTracker``.
Ray-free; preprocessing actors, the ``Predictor`` and Serve replicas each own one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

import cv2
import numpy as np

from components.faces.detectors import FaceDetector, build_detector, check_rgb
from components.faces.landmarks import LandmarkModel, build_landmarker
from components.faces.tracking import FaceTracker, canonical_box
from components.faces.types import Face
from components.geometry import AlignedFace, align_face

__all__ = ["FacePipelineConfig", "FaceResult", "FacePipeline"]


@dataclass
class FacePipelineConfig:
    """How faces are found, followed and cropped (saved with every feature store and run)."""

    detector: Literal["dlib", "mtcnn", "retinaface"] = "retinaface"
    """Face detector: 'retinaface' (MobileNet-0.25 RetinaFace: profiles to ~60 degrees, small
    faces; the default: the fastest here and it finds faces dlib misses), 'dlib' (HOG, frontal)
    or 'mtcnn' (facenet-pytorch)."""
    landmarker: Literal["dlib", "fan", "mediapipe"] = "dlib"
    """68-point landmark model: 'dlib' (regression trees), 'fan' (2D-FAN-4; weights must be
    pre-seeded in the torch hub cache) or 'mediapipe' (Face Landmarker: 478-point mesh and 52
    blendshapes too, which the ``blendshape`` member reads)."""
    detect_every: int = 6
    """Run the detector on frames whose index is a multiple of this; refit landmarks between."""
    policy: Literal["largest", "tracked", "all"] = "tracked"
    """'tracked': one face, followed by IoU; 'largest': the largest at each detection; 'all'."""
    align_size: int = 112
    """Side of the aligned face crop in pixels."""
    margin: float = 0.25
    """Padding around the template in the aligned crop, as a fraction of the face size."""
    detect_scale: float = 1.0
    """Resize factor of the frame before detection. 0.5 with dlib_upsample=1 costs a quarter of
    1.0 and still finds faces >= 80 px (video; figures: docs/measurements.md); 1.0 keeps faces
    down to 40 px for photos."""
    dlib_upsample: int = 1
    """dlib detector: upsamplings of the image before detection (1 finds faces >= 40 px)."""
    mtcnn_min_face_size: int = 20
    """MTCNN: smallest face side searched for, in pixels."""
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    """MTCNN: P-, R- and O-net acceptance thresholds."""
    min_score: float = 0.9
    """MTCNN and RetinaFace: smallest face probability kept."""
    retinaface_max_side: int = 1280
    """RetinaFace: larger images are downscaled to this longer side before detection."""
    mesh_crop_scale: float = 2.0
    """MediaPipe landmarker: side of the square crop around a face box, in box sides."""
    device: str = "cpu"
    """Torch device for MTCNN and FAN ('cpu', 'cuda', 'cuda:1')."""
    min_iou: float = 0.3
    """Least IoU for a detection and a tracked face to count as the same face."""
    max_missed: int = 1
    """Detection frames a tracked face may go unconfirmed before it is dropped."""
    refit_on_detect: bool = True
    """On detection frames refit landmarks in the landmark-derived box (uniform box convention)."""
    realign_prealigned: bool = False
    """For pre-aligned dataset crops (Aff-Wild2 cropped_aligned): warp them onto our template
    too, instead of keeping the dataset's own alignment (only resized to ``align_size``)."""
    reidentify: bool = False
    """Videos: keep one ``face_id`` per person across cuts and re-entries, from FaceNet embeddings
    of the crops (``components.faces.identity``; off by default: the encoder's licence leaves
    commercial use unclear, and it costs an embedding every few frames)."""
    identity_distance: float = 1.0
    """``reidentify``: largest embedding distance that counts as one person."""

    def __post_init__(self) -> None:
        if self.detector not in ("dlib", "mtcnn", "retinaface"):
            raise ValueError(f"detector must be 'dlib', 'mtcnn' or 'retinaface', got {self.detector!r}")
        if self.landmarker not in ("dlib", "fan", "mediapipe"):
            raise ValueError(f"landmarker must be 'dlib', 'fan' or 'mediapipe', got {self.landmarker!r}")
        if self.retinaface_max_side < 64:
            raise ValueError(f"retinaface_max_side must be >= 64, got {self.retinaface_max_side}")
        if not 1.0 <= self.mesh_crop_scale <= 4.0:
            raise ValueError(f"mesh_crop_scale must be in [1, 4], got {self.mesh_crop_scale}")
        if self.policy not in ("largest", "tracked", "all"):
            raise ValueError(f"policy must be 'largest', 'tracked' or 'all', got {self.policy!r}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.align_size < 16:
            raise ValueError(f"align_size must be >= 16, got {self.align_size}")
        if not 0.0 <= self.margin < 2.0:
            raise ValueError(f"margin must be in [0, 2), got {self.margin}")
        if not 0.0 < self.detect_scale <= 4.0:
            raise ValueError(f"detect_scale must be in (0, 4], got {self.detect_scale}")
        if self.dlib_upsample < 0:
            raise ValueError(f"dlib_upsample must be >= 0, got {self.dlib_upsample}")
        if self.mtcnn_min_face_size < 1:
            raise ValueError(f"mtcnn_min_face_size must be >= 1, got {self.mtcnn_min_face_size}")
        if len(self.mtcnn_thresholds) != 3 or not all(0 < t < 1 for t in self.mtcnn_thresholds):
            raise ValueError(f"mtcnn_thresholds must be 3 values in (0, 1), got {self.mtcnn_thresholds}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {self.max_missed}")

    def detector_options(self) -> dict[str, Any]:
        """Constructor options of the configured detector."""
        if self.detector == "dlib":
            return {"upsample": self.dlib_upsample}
        if self.detector == "retinaface":
            return {"min_score": min(self.min_score, 0.99), "max_side": self.retinaface_max_side}
        return {"min_face_size": self.mtcnn_min_face_size, "thresholds": tuple(self.mtcnn_thresholds),
                "device": self.device, "min_score": self.min_score}

    def landmarker_options(self) -> dict[str, Any]:
        """Constructor options of the configured landmark model."""
        if self.landmarker == "mediapipe":
            return {"crop_scale": self.mesh_crop_scale}
        return {} if self.landmarker == "dlib" else {"device": self.device}

    @property
    def gives_blendshapes(self) -> bool:
        """Whether faces come with MediaPipe's mesh and blendshapes (the 'mediapipe' landmarker)."""
        return self.landmarker == "mediapipe"

    def crop_record(self) -> dict[str, Any]:
        """The fields that decide what a face crop looks like (detector, landmarker, crop size and
        margin, detection options), as a feature store, its checkpoints and ensembles record them:
        a model is answered with the crops it learnt from. Which faces are followed (policy,
        tracking) and where models run (device) are the caller's business and left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_RECORDED}


_NOT_RECORDED = frozenset({"policy", "detect_every", "device", "min_iou", "max_missed", "refit_on_detect",
                           "realign_prealigned", "reidentify", "identity_distance"})
"""FacePipelineConfig fields that ``crop_record`` leaves out (they do not change a face's crop)."""


@dataclass
class FaceResult:
    """One face in one frame: where it is in the image and its aligned crop."""

    face: Face
    """Box, score, landmarks (image pixels), face id and whether it was tracked."""
    aligned: AlignedFace
    """Aligned crop, landmarks in crop pixels, image-to-crop matrix."""
    mesh: "np.ndarray | None" = None
    """float32 (478, 3) MediaPipe face mesh in image pixels ('mediapipe' landmarker only)."""
    blendshapes: "np.ndarray | None" = None
    """float32 (52,) MediaPipe blendshape scores in ``BLENDSHAPE_NAMES`` order ('mediapipe' only)."""
    geometry: "np.ndarray | None" = None
    """float32 (K,) AU geometry of the mesh in the pose-normalised face frame
    (``components.faces.au_geometry.geometry_features``; 'mediapipe' only)."""


class FacePipeline:
    """Detect, landmark, track and align faces as ``config`` says; models load here, once."""

    def __init__(
        self,
        config: FacePipelineConfig | None = None,
        detector: FaceDetector | None = None,
        landmarker: LandmarkModel | None = None,
        encoder: Any = None,
    ) -> None:
        """``detector`` / ``landmarker`` (and ``encoder``, ``reidentify``'s face encoder) may be
        given to share already loaded models."""
        self.config = config or FacePipelineConfig()
        self._encoder = encoder
        c = self.config
        self.detector = detector or build_detector(c.detector, **c.detector_options())
        self.landmarker = landmarker or build_landmarker(c.landmarker, **c.landmarker_options())
        self.tracker = FaceTracker(
            self.detector, self.landmarker, detect_every=c.detect_every, policy=c.policy,
            min_iou=c.min_iou, detect_scale=c.detect_scale, max_missed=c.max_missed,
            refit_on_detect=c.refit_on_detect,
        )

    def _results(self, rgb: np.ndarray, faces: list[Face]) -> list[FaceResult]:
        c = self.config
        return self._with_mesh([FaceResult(f, align_face(rgb, f.landmarks, c.align_size, c.margin))
                                for f in faces])

    def _with_mesh(self, results: list[FaceResult]) -> list[FaceResult]:
        """Attach the mesh, blendshapes and AU geometry of the landmark fit each face came from (MediaPipe)."""
        from components.faces.au_geometry import geometry_features

        mesh_for = getattr(self.landmarker, "mesh_for", None)
        if mesh_for is not None:
            for r in results:
                fit = mesh_for(r.face.landmarks)
                if fit is not None:
                    r.mesh, r.blendshapes = fit.mesh, fit.blendshapes
                    r.geometry = geometry_features(fit.mesh)
        return results

    def process_image(self, rgb: np.ndarray) -> list[FaceResult]:
        """Every face of a still image (all detections, largest first, ids 0, 1, ...)."""
        rgb = check_rgb(rgb)
        faces = self.tracker.detect(rgb)
        faces, lms = self.tracker.accepted(faces, self.tracker.fit_detections(rgb, faces))
        for i, (f, lm) in enumerate(zip(faces, lms)):
            f.landmarks, f.face_id = lm, i
        return self._results(rgb, faces)

    def reset(self) -> None:
        """Forget tracked faces: call before each new video."""
        self.tracker.reset()

    def identities(self) -> "Callable[[dict[int, list[tuple[int, FaceResult]]]], dict[int, list[tuple[int, FaceResult]]]] | None":
        """With ``reidentify``: the call that gives a video's tracked faces one id per person
        (``components.faces.identity.reidentify``; the encoder loads on first use); else None."""
        if not self.config.reidentify:
            return None
        from components.faces.identity import FaceEncoder, reidentify

        if self._encoder is None:
            self._encoder = FaceEncoder(self.config.device)
        encoder, distance = self._encoder, self.config.identity_distance
        return lambda tracks: reidentify(tracks, encoder, lambda r: r.aligned.crop, distance)

    def step(self, rgb: np.ndarray, index: int) -> list[FaceResult]:
        """Faces of frame ``index`` of the current video (frames in order)."""
        rgb = check_rgb(rgb, f"frame {index}")
        return self._results(rgb, self.tracker.step(rgb, index))

    def process_frames(self, frames: Iterable[np.ndarray]) -> Iterator[list[FaceResult]]:
        """Faces of each frame of one video, in order (resets the tracker first)."""
        self.reset()
        for index, rgb in enumerate(frames):
            yield self.step(rgb, index)

    def prealigned(self, crop: np.ndarray) -> list[FaceResult]:
        """One face from a crop that a dataset already aligned (the face fills the crop); none
        when the landmarker rejects it.

        Landmarks are fitted inside the whole crop as the box, then refitted inside the
        landmark-derived box. Unless ``realign_prealigned``, the aligned crop is the input
        resized to ``align_size`` (its matrix a pure scale). Score is 1.0 (no detector ran).
        """
        crop = check_rgb(crop, "pre-aligned crop")
        h, w = crop.shape[:2]
        whole = np.array([[0, 0, w, h]], dtype=np.float32)
        lm = self.landmarker.fit(crop, whole)[0]
        if not np.all(np.isfinite(lm)):
            return []  # the landmarker rejected the face
        lm = self.landmarker.fit(crop, canonical_box(lm)[None])[0]
        if not np.all(np.isfinite(lm)):
            return []
        face = Face(box=whole[0], score=1.0, landmarks=lm)
        size = self.config.align_size
        if self.config.realign_prealigned:
            return self._with_mesh([FaceResult(face, align_face(crop, lm, size, self.config.margin))])
        sx, sy = size / w, size / h
        # Pixel-centre convention: x' = (x + 0.5) * s - 0.5.
        matrix = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]], dtype=np.float32)
        resized = crop if (h, w) == (size, size) else cv2.resize(
            crop, (size, size), interpolation=cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR)
        crop_lm = (lm * np.array([sx, sy], dtype=np.float32) + matrix[:, 2]).astype(np.float32)
        return self._with_mesh([FaceResult(face, AlignedFace(crop=np.ascontiguousarray(resized), landmarks=crop_lm,
                                                             matrix=matrix))])
