"""Detect-then-track for video: a detector every ``detect_every`` frames, landmark refits between.

Between detections the box of each face is derived from its previous landmarks and the
landmark model refits inside it. The box is the dlib "canonical box": the square in which
dlib's mean shape (``TEMPLATE_68`` before normalisation, in detector-box units) lands on the
landmarks by a least-squares similarity on ``STABLE_POINTS``. That is the box convention the
dlib shape predictor was trained with, so tracked frames see the same kind of box as detection
frames and the landmarks do not drift with the box.

Loss of a face is caught two ways: every detection frame confirms or rejects each tracked face
by IoU with a fresh detection (appearance check), and on tracked frames a refit is rejected
(and the frame re-detected) when it is geometrically implausible: non-finite points, a face
under ``min_face`` pixels, a centre outside the frame, a scale change beyond
``max_scale_change`` or a jump beyond ``max_shift`` box sides since the previous frame, or a
shape that a similarity cannot bring within ``max_shape_residual`` of the mean shape.

Which frames detect depends only on the frame index and ``detect_every`` (and on losses), never
on how videos are split among workers. On a detection frame the landmarks depend on that frame
alone (detector box, fit, refit in the canonical box), so a fresh tracker started anywhere
gives the same faces as a whole-video run from its first detection frame on (for the same
chosen face): chunks that overlap their predecessor by at least ``detect_every`` frames, with
the overlap discarded, reproduce the whole-video result.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from components.faces.detectors import FaceDetector, check_rgb
from components.faces.landmarks import LandmarkModel
from components.faces.types import Face
from components.geometry import STABLE_POINTS, TEMPLATE_68, similarity_transform

__all__ = ["FaceTracker", "canonical_box", "shape_residual", "box_iou", "Policy"]

Policy = Literal["largest", "tracked", "all"]

# dlib's mean shape in its own detector-box units ([0, 1] is the box): TEMPLATE_68 was min-max
# normalised from it with these per-axis bounds (see components.geometry).
_DLIB_MIN = np.array([0.0294, 0.1627], dtype=np.float32)
_DLIB_SPAN = np.array([0.9706 - 0.0294, 1.0697 - 0.1627], dtype=np.float32)
_MEAN_SHAPE_BOX = TEMPLATE_68 * _DLIB_SPAN + _DLIB_MIN


def canonical_box(landmarks: np.ndarray) -> np.ndarray:
    """The square box (4,) x0,y0,x1,y1 in which dlib's mean shape best fits ``landmarks`` (68, 2)."""
    idx = list(STABLE_POINTS)
    m = similarity_transform(_MEAN_SHAPE_BOX[idx], np.asarray(landmarks, dtype=np.float32)[idx])
    side = float(np.sqrt(abs(np.linalg.det(m[:, :2].astype(np.float64)))))
    cx, cy = m[:, :2] @ np.array([0.5, 0.5], dtype=np.float32) + m[:, 2]
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def shape_residual(landmarks: np.ndarray) -> float:
    """RMS distance of ``landmarks`` to the similarity-fitted mean shape, in face-box sides."""
    lm = np.asarray(landmarks, dtype=np.float32)
    m = similarity_transform(_MEAN_SHAPE_BOX, lm)
    fitted = _MEAN_SHAPE_BOX @ m[:, :2].T + m[:, 2]
    side = float(np.sqrt(abs(np.linalg.det(m[:, :2].astype(np.float64)))))
    return float(np.sqrt(((fitted - lm) ** 2).sum(1).mean()) / max(side, 1e-6))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x0,y0,x1,y1 (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class _Track:
    __slots__ = ("face_id", "landmarks", "box", "score", "missed")

    def __init__(self, face_id: int, landmarks: np.ndarray, score: float) -> None:
        self.face_id = face_id
        self.landmarks = landmarks
        self.box = canonical_box(landmarks)
        self.score = score
        self.missed = 0


class FaceTracker:
    """Faces with landmarks, frame by frame, through one video (call ``reset`` between videos).

    Policies: 'tracked' follows one face (the largest at the start, then the detection with the
    best IoU to it); 'largest' switches to the largest face at every detection frame; 'all'
    follows every detected face with ids kept by greedy IoU matching.
    """

    def __init__(
        self,
        detector: FaceDetector,
        landmarker: LandmarkModel,
        detect_every: int = 6,
        policy: Policy = "tracked",
        min_iou: float = 0.3,
        detect_scale: float = 1.0,
        max_missed: int = 1,
        min_face: float = 24.0,
        max_scale_change: float = 1.25,
        max_shift: float = 0.5,
        max_shape_residual: float = 0.1,
        refit_on_detect: bool = True,
    ) -> None:
        """Args:
            detector, landmarker: the models (loaded once, by the caller).
            detect_every: run the detector on frames whose index is a multiple of this.
            policy: 'tracked', 'largest' or 'all' (see the class docstring).
            min_iou: least IoU between a detection and a tracked face's box to call them one face.
            detect_scale: detect on the frame resized by this factor (< 1 is faster; boxes are
                scaled back). 0.5 with dlib upsample=1 costs about a quarter of 1.0 and finds
                faces >= 80 px at full size (enough for 640x360 talking-head video).
            max_missed: detection frames a tracked face may go unconfirmed before it is dropped.
            min_face: smallest plausible face-box side in pixels on tracked frames.
            max_scale_change: largest plausible box-side ratio between consecutive frames.
            max_shift: largest plausible centre motion between frames, in box sides.
            max_shape_residual: largest plausible ``shape_residual`` of a refit.
            refit_on_detect: on detection frames fit landmarks a second time inside the
                canonical box of the first fit, so every frame's landmarks come from the same
                box convention whatever the detector (less jitter at detection frames).
        """
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if policy not in ("largest", "tracked", "all"):
            raise ValueError(f"policy must be 'largest', 'tracked' or 'all', got {policy!r}")
        if not 0.0 < detect_scale <= 4.0:
            raise ValueError(f"detect_scale must be in (0, 4], got {detect_scale}")
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {min_iou}")
        self.detector = detector
        self.landmarker = landmarker
        self.detect_every = int(detect_every)
        self.policy = policy
        self.min_iou = float(min_iou)
        self.detect_scale = float(detect_scale)
        self.max_missed = int(max_missed)
        self.min_face = float(min_face)
        self.max_scale_change = float(max_scale_change)
        self.max_shift = float(max_shift)
        self.max_shape_residual = float(max_shape_residual)
        self.refit_on_detect = bool(refit_on_detect)
        self.detections = 0
        """How many frames ran the detector since the last reset."""
        self.reset()

    def reset(self) -> None:
        """Forget all faces (start of a new video)."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.detections = 0

    def state(self) -> dict:
        """What the tracker carries from one frame to the next (faces followed, next id,
        detections), as plain data: a server that answers a stream frame by frame without
        keeping a tracker per client sends it along with each frame (``restore``)."""
        return {"tracks": [{"face_id": t.face_id, "landmarks": t.landmarks, "score": t.score, "missed": t.missed}
                           for t in self._tracks], "next_id": self._next_id, "detections": self.detections}

    def restore(self, state: "dict | None") -> None:
        """Continue from ``state`` (``state()`` of the frame before); None: a fresh start."""
        self.reset()
        if not state:
            return
        for d in state["tracks"]:
            t = _Track(int(d["face_id"]), np.asarray(d["landmarks"], np.float32), float(d["score"]))
            t.missed = int(d["missed"])
            self._tracks.append(t)
        self._next_id, self.detections = int(state["next_id"]), int(state["detections"])

    def step(self, rgb: np.ndarray, index: int) -> list[Face]:
        """Faces with landmarks in frame ``index`` (frames must come in order)."""
        rgb = check_rgb(rgb, f"frame {index}")
        if index % self.detect_every == 0 or not self._tracks:
            return self._detect_step(rgb)
        refits = self._refit(rgb)
        if refits is None:
            return self._detect_step(rgb)
        for track, lm in zip(self._tracks, refits):
            track.landmarks = lm
            track.box = canonical_box(lm)
        return [self._as_face(t, tracked=True) for t in self._tracks]

    def _as_face(self, t: _Track, tracked: bool) -> Face:
        return Face(box=t.box.copy(), score=t.score, landmarks=t.landmarks.copy(),
                    face_id=t.face_id, tracked=tracked)

    def _plausible(self, prev: np.ndarray, lm: np.ndarray, shape: tuple[int, ...]) -> bool:
        if not np.all(np.isfinite(lm)):
            return False
        box = canonical_box(lm)
        side, prev_side = box[2] - box[0], prev[2] - prev[0]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        pcx, pcy = (prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2
        return bool(
            side >= self.min_face
            and 0 <= cx < shape[1] and 0 <= cy < shape[0]
            and 1 / self.max_scale_change <= side / prev_side <= self.max_scale_change
            and np.hypot(cx - pcx, cy - pcy) <= self.max_shift * prev_side
            and shape_residual(lm) <= self.max_shape_residual
        )

    def _refit(self, rgb: np.ndarray) -> list[np.ndarray] | None:
        """Refit every track inside its canonical box; None when any refit is implausible."""
        boxes = np.stack([t.box for t in self._tracks])
        fitted = self.landmarker.fit(rgb, boxes)
        for t, lm in zip(self._tracks, fitted):
            if not self._plausible(t.box, lm, rgb.shape):
                return None
        return list(fitted)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Detections (no landmarks) in ``rgb``, run at ``detect_scale``, boxes in full-size pixels."""
        self.detections += 1
        if self.detect_scale == 1.0:
            return self.detector.detect(rgb)
        small = cv2.resize(rgb, None, fx=self.detect_scale, fy=self.detect_scale,
                           interpolation=cv2.INTER_AREA if self.detect_scale < 1 else cv2.INTER_LINEAR)
        faces = self.detector.detect(small)
        for f in faces:
            f.box = f.box / self.detect_scale
        return faces

    def fit_detections(self, rgb: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        """Landmarks (68, 2) for each detection (refitted in its canonical box if configured).

        A landmarker that rejects a face (MediaPipe finding none in the crop) gives NaN points;
        those stay NaN here and ``accepted`` drops them.
        """
        if not faces:
            return []
        lms = self.landmarker.fit(rgb, np.stack([f.box for f in faces]))
        if self.refit_on_detect:
            ok = [i for i, lm in enumerate(lms) if np.all(np.isfinite(lm))]
            if ok:
                lms = lms.copy()
                lms[ok] = self.landmarker.fit(rgb, np.stack([canonical_box(lms[i]) for i in ok]))
        return list(lms)

    @staticmethod
    def accepted(faces: list[Face], lms: list[np.ndarray]) -> tuple[list[Face], list[np.ndarray]]:
        """The detections whose landmark fit succeeded (finite points), with their landmarks."""
        keep = [i for i, lm in enumerate(lms) if np.all(np.isfinite(lm))]
        return [faces[i] for i in keep], [lms[i] for i in keep]

    def _detect_step(self, rgb: np.ndarray) -> list[Face]:
        faces = self.detect(rgb)
        if self.policy != "all" and faces:
            faces = self._choose_single(faces)
        faces, lms = self.accepted(faces, self.fit_detections(rgb, faces))
        boxes = [canonical_box(lm) for lm in lms]
        # Greedy IoU matching, best pairs first, between tracks and fresh detections.
        pairs = sorted(
            ((box_iou(t.box, b), ti, di) for ti, t in enumerate(self._tracks) for di, b in enumerate(boxes)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        new_tracks: list[_Track] = []
        for iou, ti, di in pairs:
            if iou < self.min_iou or ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            track = self._tracks[ti]
            track.landmarks, track.box, track.score, track.missed = lms[di], boxes[di], faces[di].score, 0
            new_tracks.append(track)
        for di in range(len(faces)):
            if di not in used_d:
                new_tracks.append(_Track(self._new_id(), lms[di], faces[di].score))
        if self.policy == "all" or not faces:
            new_tracks += self._survivors(rgb, [t for ti, t in enumerate(self._tracks) if ti not in used_t])
        fresh = {id(t) for t in new_tracks if t.missed == 0}
        self._tracks = sorted(new_tracks, key=lambda t: t.face_id)
        if self.policy != "all":
            self._tracks = self._tracks[:1]
        return [self._as_face(t, tracked=id(t) not in fresh) for t in self._tracks]

    def _survivors(self, rgb: np.ndarray, unmatched: list[_Track]) -> list[_Track]:
        """Unconfirmed tracks kept (refit on this frame) for up to ``max_missed`` detection frames.

        A frontal detector misses a face for a few frames of head turn without the face being
        gone; the landmark refit still follows it.
        """
        keep = [t for t in unmatched if t.missed < self.max_missed]
        if not keep:
            return []
        fitted = self.landmarker.fit(rgb, np.stack([t.box for t in keep]))
        out = []
        for t, lm in zip(keep, fitted):
            if self._plausible(t.box, lm, rgb.shape):
                t.landmarks, t.box, t.missed = lm, canonical_box(lm), t.missed + 1
                out.append(t)
        return out

    def _choose_single(self, faces: list[Face]) -> list[Face]:
        """The one detection a single-face policy keeps (faces come largest first)."""
        if self.policy == "tracked" and self._tracks:
            track = self._tracks[0]
            best = max(faces, key=lambda f: box_iou(track.box, f.box))
            if box_iou(track.box, best.box) >= self.min_iou:
                return [best]
            if track.missed < self.max_missed:
                return []  # keep following the old face for now (see ``_survivors``)
        return faces[:1]

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
