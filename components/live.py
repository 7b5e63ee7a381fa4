"""Causal answers for live video: a camera, a stream, or a file played as it comes.

``LiveSession`` answers one frame at a time with the one orchestration
(``components.inference.answer_tracks``, or ``answer_tracks_async`` where the members are Serve
stages), using only frames already seen. What differs from ``predict_video`` (which sees the
whole video) and why:

- faces: the face pipeline's tracker follows faces from frame to frame, as in ``track_video``;
  its frame index counts the frames answered (a dropped frame is never seen), so
  ``detect_every`` counts answered frames;
- temporal landmark differences: diff_t = l_t - l_{t-2s}, the same span 2s as the centred
  l_{t+s} - l_{t-s} of ``track_video`` (paper 000 eq. 2) shifted s frames back so that no future
  frame is needed; valid once the face has 2s answered frames behind it. A member that reads
  differences sees the motion of frame t-s at frame t: it arrives s frames late;
- members with a frame window (``InputSpec.window``): the face's last ``window`` frames go with
  the current one as one segment, and the current frame's output is kept;
- smoothing: a trailing moving mean over the face's last ``smooth_window`` answers instead of the
  centred mean of ``predict``: an answer never waits for a later frame, and a change shows
  after (window - 1) / 2 frames of lag where the centred mean shows it on time, slurred both ways.

With ``smooth_window`` 1 and members that need no video context (the built-in), a session's
rows equal ``Predictor.predict_video``'s on the same frames when none is dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import numpy as np

from components.faces.au_geometry import NeutralTracker

from components.inference import FaceTrack, face_answer, image_tracks, request_id
from components.plan import InferencePlan

if TYPE_CHECKING:
    from components.predictor import Predictor

__all__ = ["LiveSession", "Answer", "AnswerAsync"]

Answer = Callable[[list[FaceTrack]], list[dict[str, Any]]]
"""``answer(tracks)``: one unsmoothed combined answer per track (``Predictor.answer_tracks`` with
``video`` True and ``smooth`` False, or the same orchestration over Serve stages)."""
AnswerAsync = Callable[[list[FaceTrack]], Awaitable[list[dict[str, Any]]]]
"""``Answer`` awaited (``answer_tracks_async``)."""


@dataclass
class _Face:
    """What a session remembers of one tracked face: its last frames, newest last."""

    frames: deque = field(default_factory=deque)
    """One-frame ``FaceTrack``s with their causal differences, as many as the context needs."""
    landmarks: deque = field(default_factory=deque)
    """(136,) crop landmarks of the last 2 * max(step) + 1 answered frames."""
    probs: deque = field(default_factory=deque)
    """(n_AU,) unsmoothed probabilities of the last ``smooth_window`` answers."""
    neutral: NeutralTracker = field(default_factory=NeutralTracker)
    """The face's person-specific neutral, from its answered frames (as ``member_inputs`` has it
    over a whole track)."""


class LiveSession:
    """One live source's state (tracker, per-face history) answered frame by frame.

    ``push(rgb)`` runs the session's own face pipeline (a ``Predictor``'s models, its own
    tracker) and the Predictor's members; ``answer`` / ``answer_async`` take the current frame's
    faces as one-frame tracks from elsewhere (a Serve face stage) with the members injected.
    Every answer is keyed by this session's ``source`` id, so member passes never mix sessions.
    """

    def __init__(self, plan: InferencePlan, smooth_window: "int | None" = None, source: str = "",
                 name: str = "live", predictor: "Predictor | None" = None) -> None:
        self.plan = plan
        self.smooth_window = int(plan.smooth_window if smooth_window is None else smooth_window)
        if self.smooth_window < 1:
            raise ValueError(f"smooth_window must be >= 1, got {self.smooth_window}")
        self.source = source or request_id()
        self.name = name
        self.steps = tuple(plan.steps)
        self.context = plan.window
        """Past frames each face's segment carries for members with a frame window."""
        self.index = 0
        """Frames answered so far (the tracker's frame index)."""
        self._faces: dict[int, _Face] = {}
        self.predictor = predictor
        self._pipeline: Any = None
        if predictor is not None:
            from components.faces.pipeline import FacePipeline

            shared = predictor.pipeline  # the models load once per Predictor; the tracker is ours
            self._pipeline = FacePipeline(shared.config, detector=shared.detector, landmarker=shared.landmarker)

    @classmethod
    def of(cls, predictor: "Predictor", smooth_window: "int | None" = None, source: str = "") -> "LiveSession":
        """A session answered in process by ``predictor`` (its plan, models and face pipeline)."""
        return cls(predictor.plan, smooth_window, source, predictor=predictor)

    # ------------------------------------------------------------------ per frame
    def push(self, rgb: np.ndarray, frame: "int | None" = None, timestamp: "float | None" = None) -> list[dict[str, Any]]:
        """The rows of the next frame (RGB uint8): one per tracked face, or one ``success`` 0
        row. ``frame`` / ``timestamp``: the source's frame number and seconds (default: frames
        answered so far, and that over 30 frames/s)."""
        if self.predictor is None or self._pipeline is None:
            raise RuntimeError("push needs a session made with a Predictor (LiveSession.of)")
        faces = image_tracks(self._pipeline.step(rgb, self.index))
        pred = self.predictor
        return self.answer(faces, frame, timestamp,
                           lambda tracks: pred.answer_tracks(tracks, True, self.source, self.name, smooth=False))

    def answer(self, faces: Sequence[FaceTrack], frame: "int | None", timestamp: "float | None",
               answer: Answer) -> list[dict[str, Any]]:
        """The rows of the frame whose faces (one-frame tracks with tracker ids) are ``faces``."""
        tracks = self._prepare(faces)
        return self._finish(tracks, answer(tracks) if tracks else [], frame, timestamp)

    async def answer_async(self, faces: Sequence[FaceTrack], frame: "int | None", timestamp: "float | None",
                           answer: AnswerAsync) -> list[dict[str, Any]]:
        """``answer`` with the orchestration awaited (Serve's stages)."""
        tracks = self._prepare(faces)
        return self._finish(tracks, await answer(tracks) if tracks else [], frame, timestamp)

    # ------------------------------------------------------------------ the causal steps
    def _prepare(self, faces: Sequence[FaceTrack]) -> list[FaceTrack]:
        """Each face's segment: its causal differences and, for windowed members, its context."""
        keep = int(max(self.steps, default=0)) * 2 + 1
        seen = {int(f.face_id) for f in faces}
        for gone in set(self._faces) - seen:
            del self._faces[gone]  # a lost face never comes back under its id (the tracker's rule)
        tracks = []
        for f in faces:
            hist = self._faces.setdefault(int(f.face_id), _Face(landmarks=deque(maxlen=keep),
                                                               frames=deque(maxlen=self.context + 1),
                                                               probs=deque(maxlen=self.smooth_window)))
            hist.landmarks.append(np.asarray(f.landmarks[0], np.float32))
            now = FaceTrack(face_id=f.face_id, frames=[self.index], crop=f.crop, landmarks=f.landmarks, info=f.info,
                            blendshapes=f.blendshapes, geometry=f.geometry, steps=self.steps)
            if f.blendshapes is not None:
                now.neutral = hist.neutral.push(f.blendshapes[0], None if f.geometry is None else f.geometry[0])[None]
            if self.steps:
                past = list(hist.landmarks)
                diffs, valid = [], []
                for s in self.steps:
                    back = len(past) - 1 - 2 * s
                    diffs.append(past[-1] - past[max(back, 0)])  # clamped at the first frame, as track_video
                    valid.append(back >= 0)
                now.landmark_diff = np.concatenate(diffs)[None].astype(np.float32)
                now.diff_valid = np.asarray(valid, bool)[None]
            hist.frames.append(now)
            tracks.append(_joined(list(hist.frames)) if self.context else now)
        return tracks

    def _finish(self, tracks: list[FaceTrack], answers: Sequence[dict[str, Any]], frame: "int | None",
                timestamp: "float | None") -> list[dict[str, Any]]:
        """Rows of the current frame: each face's last answer, smoothed by its trailing mean."""
        frame = self.index if frame is None else int(frame)
        timestamp = round(frame / 30.0 if timestamp is None else float(timestamp), 4)
        self.index += 1
        rows = []
        for track, ans in zip(tracks, answers):
            hist = self._faces[int(track.face_id)]
            last = {k: (v[-1:] if isinstance(v, np.ndarray) else v) for k, v in ans.items()}
            hist.probs.append(last["probs"][0])
            if self.smooth_window > 1:
                last["raw_probs"] = last["probs"]
                last["probs"] = np.mean(np.stack(hist.probs), axis=0)[None]
                last["occurrence"] = (last["probs"] >= self.plan.thresholds).astype(np.int8)
            row = face_answer(track.info[-1], last, 0, self.plan.aus)
            motion = track.motion()[-1] if track.steps else []
            row.update(frame=frame, timestamp=timestamp, success=1,
                       motion={f"s{s}": float(m) for s, m in zip(track.steps, motion)})
            rows.append(row)
        rows.sort(key=lambda r: r["face_id"])
        return rows or [{"frame": frame, "timestamp": timestamp, "face_id": -1, "success": 0}]


def _joined(frames: list[FaceTrack]) -> FaceTrack:
    """One face's last frames (one-frame tracks, oldest first) as one track, for windowed members."""
    def stack(attr: str) -> "np.ndarray | None":
        values = [getattr(f, attr) for f in frames]
        return None if any(v is None for v in values) else np.concatenate(values)

    last = frames[-1]
    return FaceTrack(face_id=last.face_id, frames=[f.frames[0] for f in frames], crop=stack("crop"),
                     landmarks=stack("landmarks"), info=[f.info[0] for f in frames], landmark_diff=stack("landmark_diff"),
                     diff_valid=stack("diff_valid"), steps=last.steps, blendshapes=stack("blendshapes"),
                     geometry=stack("geometry"), neutral=stack("neutral"))
