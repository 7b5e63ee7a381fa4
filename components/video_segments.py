"""A video answered a segment at a time, with the rows of the whole-video answer.

``Predictor.predict_video`` once tracked every frame, held every aligned crop and answered the
whole video at the end: memory grew with the video (py-feat users report 82 GB for 4,500 frames).
Here frames stream through the face pipeline and each face track's rows are answered as soon as
what they depend on has been seen, so what is held is a few member segments per face, whatever
the video's length. What carries across a segment's edges, and why the rows equal the
whole-video answer (``components.inference``'s steps, each with its reach):

- faces: the pipeline's tracker keeps stepping (``FaceTracker.state``/``restore`` carry it across
  a restart), so face ids and tracked landmarks are the whole video's; a face the tracker drops
  never returns under its id, so its track is answered to its end then and forgotten;
- temporal landmark differences l_{t+s} - l_{t-s} reach s rows either way: a track's rows are
  answered once max(s) later rows exist, with max(s) earlier rows kept as context;
- member inputs: members answer ``SEGMENT_FRAMES`` rows of one track per request, counted from
  the track's first row as ``member_inputs`` cuts them, so rows go to members in whole member
  segments (the last one when the video ends);
- the running neutral (``track_neutral``) is causal over the track's earlier rows: the track's
  [blendshapes, geometry] history is carried (52 + K floats per row, the only state that grows
  with the video: about 0.26 KB per face and frame);
- smoothing, a centred moving mean of ``window`` rows: a row is final once window // 2 later rows
  are answered, with window // 2 earlier answered rows kept.

Rows are final in frame order up to a watermark (the earliest frame some face track still
holds); ``iter_video_segments`` yields them a job segment (a multiple of ``SEGMENT_FRAMES``
frames) at a time together with a ``SegmentCarry``, everything needed to go on from there
(picklable: ``components.video_jobs`` stores it beside each finished segment's Parquet part).
Re-identification (``--reidentify``) regroups the faces of the whole video once it has been seen,
so it has no segment-wise form: it is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from components import inference
from components.inference import SEGMENT_FRAMES, FaceTrack

__all__ = ["JOB_SEGMENT_FRAMES", "SegmentCarry", "VideoSegment", "iter_video_segments"]

JOB_SEGMENT_FRAMES = 16 * SEGMENT_FRAMES
"""Frames per job segment (one Parquet part, one resumable step): 1,024."""


@dataclass
class _OpenTrack:
    """One face id's rows in flight (global row k of the track is ``buf[k - base]``)."""

    face_id: int
    rows: int = 0
    """Rows seen so far."""
    base: int = 0
    buf: list[dict[str, Any]] = field(default_factory=list)
    """Per row not yet given to members (and max(s) rows of context before them): frame, crop,
    landmarks, info, blendshapes, geometry."""
    history: "np.ndarray | None" = None
    """(rows, 52 + K) [blendshapes, geometry] of every row so far (the running neutral's input)."""
    blendshapes: bool = True
    geometry: bool = True
    given: int = 0
    """Rows answered by the members (a multiple of ``SEGMENT_FRAMES`` until the video ends)."""
    answered: "tuple[FaceTrack, dict[str, Any]] | None" = None
    """Rows [done - window // 2, given): the track without crops, and its unsmoothed answer."""
    done: int = 0
    """Rows whose final answer has been made."""
    final: list[dict[str, Any]] = field(default_factory=list)
    """Answer rows made, not yet past the frame watermark."""
    ended: bool = False
    """The tracker no longer follows this face: a lost face comes back under a new id
    (``FaceTracker._new_id``), so the track is whole, as at the video's end."""


@dataclass
class SegmentCarry:
    """Everything a segment-wise answer carries to the next segment (plain data, picklable)."""

    frames: int = 0
    """Frames read so far."""
    emitted: int = 0
    """Frames whose rows have been yielded (the watermark)."""
    segments: int = 0
    """Job segments yielded."""
    tracker: "dict | None" = None
    """``FaceTracker.state()`` after the last frame read."""
    tracks: dict[int, _OpenTrack] = field(default_factory=dict)


@dataclass
class VideoSegment:
    """One job segment's answer: rows of frames [first, stop), sorted by frame then face."""

    index: int
    first: int
    stop: int
    rows: list[dict[str, Any]]
    carry: SegmentCarry
    """The state after this segment (resume from here: ``iter_video_segments(..., carry=...)``)."""


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _slice(track: FaceTrack, ans: dict[str, Any], lo: int, hi: int) -> tuple[FaceTrack, dict[str, Any]]:
    """Rows [lo, hi) of a crop-less track and its answer."""
    sub = FaceTrack(face_id=track.face_id, frames=track.frames[lo:hi], crop=track.crop[lo:hi],
                    landmarks=track.landmarks[lo:hi], info=track.info[lo:hi], steps=track.steps,
                    landmark_diff=None if track.landmark_diff is None else track.landmark_diff[lo:hi],
                    diff_valid=None if track.diff_valid is None else track.diff_valid[lo:hi])
    cut = {k: (v[lo:hi] if isinstance(v, np.ndarray) else v) for k, v in ans.items() if k != "member_probs"}
    cut["member_probs"] = {m: p[lo:hi] for m, p in ans.get("member_probs", {}).items()}
    return sub, cut


def _join(a: "tuple[FaceTrack, dict[str, Any]] | None", track: FaceTrack,
          ans: dict[str, Any]) -> tuple[FaceTrack, dict[str, Any]]:
    """The crop-less ``track`` (and its answer) appended to ``a``."""
    thin = FaceTrack(face_id=track.face_id, frames=list(track.frames), crop=np.zeros((len(track.frames), 0), np.uint8),
                     landmarks=track.landmarks, info=list(track.info), landmark_diff=track.landmark_diff,
                     diff_valid=track.diff_valid, steps=track.steps)
    if a is None:
        return thin, ans
    t0, a0 = a
    joined = FaceTrack(face_id=t0.face_id, frames=t0.frames + thin.frames, crop=_cat([t0.crop, thin.crop]),
                       landmarks=_cat([t0.landmarks, thin.landmarks]), info=t0.info + thin.info, steps=t0.steps,
                       landmark_diff=None if t0.landmark_diff is None else _cat([t0.landmark_diff, thin.landmark_diff]),
                       diff_valid=None if t0.diff_valid is None else _cat([t0.diff_valid, thin.diff_valid]))
    out = {k: (_cat([v, ans[k]]) if isinstance(v, np.ndarray) else v) for k, v in a0.items() if k != "member_probs"}
    out["member_probs"] = {m: _cat([p, ans["member_probs"][m]]) for m, p in a0.get("member_probs", {}).items()}
    return joined, out


class _Segmenter:
    """The carried steps of one video (see the module docstring)."""

    def __init__(self, predictor: Any, fps: float, name: str, source: str, smooth: bool, carry: SegmentCarry) -> None:
        plan = predictor.plan
        self.predictor, self.plan, self.fps, self.name, self.source = predictor, plan, fps, name, source
        self.steps = tuple(plan.steps)
        self.reach = max(self.steps, default=0)
        self.window = plan.smooth_window if smooth else 1
        self.carry = carry

    # ------------------------------------------------------------------ faces
    def add(self, t: int, results: list[Any]) -> None:
        alive = {int(r.face.face_id) for r in results}
        for tr in self.carry.tracks.values():
            tr.ended = tr.ended or tr.face_id not in alive
        for r in results:
            fid = int(r.face.face_id)
            tr = self.carry.tracks.setdefault(fid, _OpenTrack(fid))
            if tr.rows == 0:
                tr.blendshapes, tr.geometry = r.blendshapes is not None, r.geometry is not None
            elif tr.blendshapes != (r.blendshapes is not None) or (tr.blendshapes and tr.geometry != (r.geometry is not None)):
                raise ValueError(f"{self.name}: frame {t}: face {fid} has {'no ' if r.blendshapes is None else ''}"
                                 "blendshapes/geometry unlike its earlier frames; a segment-wise answer needs "
                                 "every frame of a face to have them or none")
            tr.buf.append({"frame": t, "crop": r.aligned.crop, "info": inference.face_info(r),
                           "landmarks": np.asarray(r.aligned.landmarks, np.float32).reshape(-1),
                           "blendshapes": r.blendshapes, "geometry": r.geometry})
            if tr.blendshapes:
                value = np.concatenate([np.asarray(r.blendshapes, np.float32).reshape(-1)]
                                       + ([np.asarray(r.geometry, np.float32).reshape(-1)] if tr.geometry else []))
                tr.history = _grow(tr.history, tr.rows, value)
            tr.rows += 1

    # ------------------------------------------------------------------ members and smoothing
    def _ready(self, tr: _OpenTrack, ended: bool) -> int:
        """Rows of ``tr`` that can go to the members now."""
        if ended or tr.ended:
            return tr.rows
        return max(tr.given, (tr.rows - self.reach) // SEGMENT_FRAMES * SEGMENT_FRAMES)

    def _chunk(self, tr: _OpenTrack, hi: int) -> FaceTrack:
        """Rows [given, hi) of ``tr`` as a track with their landmark differences and neutral."""
        from components.faces.au_geometry import track_neutral
        from components.faces.transforms import landmark_diffs

        lo_ctx = max(tr.given - self.reach, 0)
        rows = tr.buf[lo_ctx - tr.base:min(hi + self.reach, tr.rows) - tr.base]
        off, n = tr.given - lo_ctx, hi - tr.given
        mine = rows[off:off + n]
        track = FaceTrack(face_id=tr.face_id, frames=[r["frame"] for r in mine],
                          crop=np.stack([r["crop"] for r in mine]),
                          landmarks=np.stack([r["landmarks"] for r in mine]), info=[r["info"] for r in mine],
                          steps=self.steps)
        if self.steps:
            d, v = landmark_diffs(np.stack([r["landmarks"] for r in rows]).reshape(-1, 68, 2), self.steps)
            track.landmark_diff, track.diff_valid = d[off:off + n].reshape(n, -1), v[off:off + n]
        if tr.blendshapes:
            track.blendshapes = np.stack([np.asarray(r["blendshapes"], np.float32) for r in mine])
            if tr.geometry:
                track.geometry = np.stack([np.asarray(r["geometry"], np.float32) for r in mine])
            hist = tr.history[:hi]
            track.neutral = track_neutral(hist[:, :52], hist[:, 52:] if tr.geometry else None, start=tr.given)
        return track

    def advance(self, ended: bool) -> None:
        """Answer every member segment that is complete, then make every row that is final."""
        todo = [(tr, self._ready(tr, ended)) for tr in self.carry.tracks.values()]
        todo = [(tr, hi) for tr, hi in todo if hi > tr.given]
        if todo:
            chunks = [self._chunk(tr, hi) for tr, hi in todo]
            answers = self.predictor.answer_tracks(chunks, True, self.source, self.name, smooth=False)
            for (tr, hi), chunk, ans in zip(todo, chunks, answers):
                tr.answered = _join(tr.answered, chunk, ans)
                tr.given = hi
                keep = max(tr.given - self.reach, 0)  # context rows for the next chunk's differences
                del tr.buf[:keep - tr.base]
                tr.base = keep
        for tr in self.carry.tracks.values():
            self._finish(tr, ended)

    def _finish(self, tr: _OpenTrack, ended: bool) -> None:
        from components.models.to_sequence import smooth_sequence

        half = self.window // 2
        ended = ended or tr.ended
        stop = tr.given if ended else max(tr.done, tr.given - half)
        if stop <= tr.done or tr.answered is None:
            return
        track, ans = tr.answered
        first = tr.given - len(track.frames)  # global row of the answered rows' first
        # combine_track smooths a track of more than one row; rows past the edges repeat the edge
        # row, which is where the answered rows begin (row 0) or end (the video's last row).
        if self.window > 1 and not (ended and tr.rows == 1):
            ans = inference.smoothed_answer(self.plan.manifest, ans, smooth_sequence(ans["probs"], self.window))
        tr.final += inference.track_rows(track, ans, self.fps, self.plan.aus, range(tr.done - first, stop - first))
        tr.done = stop
        keep = max(stop - half, first) - first
        tr.answered = _slice(track, tr.answered[1], keep, len(track.frames))

    def watermark(self, ended: bool) -> int:
        """Frames before it have every row final: the frame of each track's first row not final."""
        if ended:
            return self.carry.frames
        return min([_frame_of(tr, tr.done) for tr in self.carry.tracks.values() if tr.done < tr.rows]
                   + [self.carry.frames])

    def emit(self, ended: bool) -> VideoSegment:
        stop = self.watermark(ended)
        face_rows: list[dict[str, Any]] = []
        for tr in self.carry.tracks.values():
            n = next((i for i, r in enumerate(tr.final) if r["frame"] >= stop), len(tr.final))
            face_rows += tr.final[:n]
            del tr.final[:n]
        c = self.carry
        for fid in [f for f, tr in c.tracks.items() if tr.ended and tr.done == tr.rows and not tr.final]:
            del c.tracks[fid]  # a whole track, every row out: nothing of it is carried further
        seg = VideoSegment(c.segments, c.emitted, stop, inference.frame_rows(face_rows, range(c.emitted, stop), self.fps), c)
        c.emitted, c.segments = stop, c.segments + 1
        return seg


def _frame_of(tr: _OpenTrack, row: int) -> int:
    """The frame of global row ``row`` of ``tr``, held in its buffer or among its answered rows."""
    if row >= tr.base:
        return int(tr.buf[row - tr.base]["frame"])
    track = tr.answered[0]
    return int(track.frames[row - (tr.given - len(track.frames))])


def _grow(arr: "np.ndarray | None", n: int, value: np.ndarray) -> np.ndarray:
    """``arr[:n]`` with ``value`` appended as row n (capacity doubles: amortised O(1))."""
    if arr is None:
        arr = np.zeros((64, len(value)), np.float32)
    elif n >= len(arr):
        arr = np.concatenate([arr, np.zeros_like(arr)])
    arr[n] = value
    return arr


def iter_video_segments(predictor: Any, frames: Iterable[np.ndarray], fps: float = 30.0, name: str = "video",
                        source: str = "video", carry: "SegmentCarry | None" = None,
                        segment_frames: int = JOB_SEGMENT_FRAMES, smooth: bool = True) -> Iterator[VideoSegment]:
    """The rows of ``Predictor.predict_video`` over ``frames``, a job segment at a time.

    ``predictor``: a ``components.predictor.Predictor`` (its plan, face pipeline and members).
    ``frames``: RGB frames from frame ``carry.frames`` on (0 for a fresh start). ``carry``: a
    yielded segment's ``carry`` to resume after it (the tracker is restored from it). Each
    ``VideoSegment`` holds the final rows of frames [first, stop) (``stop`` trails the frames read
    by at most a member segment and the smoothing reach per face); the last one, yielded when the
    frames end, reaches the last frame. ``source``/``name``: the tracks' video key
    (``components.inference.member_inputs``).
    """
    if segment_frames < SEGMENT_FRAMES or segment_frames % SEGMENT_FRAMES:
        raise ValueError(f"segment_frames must be a positive multiple of {SEGMENT_FRAMES}, got {segment_frames}")
    pipe = predictor.pipeline
    if pipe.identities() is not None:
        raise ValueError("reidentify regroups the faces of a whole video: it has no segment-wise answer "
                         "(answer the video whole, without jobs, to re-identify)")
    carry = carry if carry is not None else SegmentCarry()
    pipe.tracker.restore(carry.tracker)
    seg = _Segmenter(predictor, fps, name, source, smooth, carry)
    for rgb in frames:
        t = carry.frames
        seg.add(t, pipe.step(rgb, t))
        carry.frames = t + 1
        if carry.frames % SEGMENT_FRAMES == 0:
            seg.advance(False)
        if carry.frames % segment_frames == 0:
            carry.tracker = pipe.tracker.state()
            yield seg.emit(False)
    seg.advance(True)
    carry.tracker = pipe.tracker.state()
    yield seg.emit(True)
