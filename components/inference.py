"""The one inference orchestration: faces → per-video ids → temporal inputs → members →
combination → optional smoothing → answer rows.

``answer_tracks`` (and ``answer_tracks_async``, the same steps awaited) is the orchestration:
it takes face tracks, the ``InferencePlan`` (``components.plan``) and two injected callables,
"run this member on these requests" and "combine this track". ``Predictor`` (hence the
``Detector`` API and ``facsflow predict``) injects in-process calls; the Serve ingress injects
its stages (Serve handles in the staged layout, local objects in the fused one); evaluation,
ensemble selection and the label teacher enter with feature-store rows as tracks
(``components.store.tracks``). The steps, each a plain function so a Serve deployment can run one of them:

1. faces: ``image_tracks`` (each face of a still is a one-frame track) or ``track_video``
   (the pipeline's tracker follows faces; per track the temporal landmark differences
   diff_t = l_{t+s} - l_{t-s}, paper 000 §2.2.2 eq. 2, over the whole track);
2. per-video ids and member inputs: ``member_inputs`` gives every track its own video key
   (``components.video_key``: dataset = the request or input id, subject = the tracked face,
   video = the input name; store rows keep their own) and cuts a video track into segments of
   ``SEGMENT_FRAMES`` consecutive frames, the batches evaluation and pairwise-rank's training
   cut (``components.batches.VIDEO_BATCH_ROWS``): one segment is one member request and the
   whole video context a member reads (pairwise-rank's statistics G, paper 004 §3.3);
3. members: ``forward_member`` joins requests into forward passes, never two requests that share
   a video key, so a member that pairs or windows frames sees exactly one segment of one face of
   one client, whoever else's requests share the pass;
4. ``gather_outputs`` puts each track's member outputs back in frame order;
5. ``combine_track``: the manifest's rule, weights and thresholds (``combine_outputs``) and,
   as an option, a centred moving mean over one track's frames (paper 002 §3);
6. answer rows: ``image_rows`` / ``face_answer``, ``video_rows`` (the rows
   ``components.au_detector`` tabulates); feature-store rows go in and come out as arrays through
   ``components.store.tracks``.

A model's ``InputSpec.window`` (frames of context) is met through the video key and
``frame_order`` of each segment: the family reads its context from the segment's frames, as in
training and evaluation; no separate window tensor is built (training builds none either).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generator, Iterable, Sequence

import numpy as np

from components.batches import VIDEO_BATCH_ROWS
from components.ensemble import EnsembleManifest, combine
from components.plan import InferencePlan, thresholds_of
from components.video_key import video_keys

__all__ = ["SEGMENT_FRAMES", "FaceTrack", "MemberInput", "RunMember", "CombineTrack", "answer_tracks",
           "answer_tracks_async", "request_id", "face_info", "image_tracks", "track_video",
           "member_inputs", "forward_member", "gather_outputs", "combine_outputs", "combine_track",
           "smoothed_answer", "smooth_by_video", "face_answer", "image_rows", "track_rows", "frame_rows", "video_rows"]

SEGMENT_FRAMES = VIDEO_BATCH_ROWS
"""Frames of one face track per member request and per video context (evaluation's batch rows)."""


@dataclass
class FaceTrack:
    """One face followed through an input (a still image's face is a one-frame track)."""

    face_id: int
    """Tracked face id within the input (0, 1, ...)."""
    frames: list[int]
    """Frame numbers where the face was found, increasing."""
    crop: np.ndarray
    """uint8 (n, S, S, 3) aligned face crops."""
    landmarks: np.ndarray
    """float32 (n, 136) landmarks in crop coordinates."""
    info: list[dict[str, Any]]
    """Per frame: face_id, box, score and 68 landmarks in image pixels (``face_info``)."""
    landmark_diff: "np.ndarray | None" = None
    """float32 (n, len(steps) * 136) temporal landmark differences (videos only)."""
    diff_valid: "np.ndarray | None" = None
    """bool (n, len(steps)): where the difference reached inside the track."""
    steps: tuple[int, ...] = ()
    """Difference steps s of ``landmark_diff``, in order."""
    blendshapes: "np.ndarray | None" = None
    """float32 (n, 52) MediaPipe blendshapes, when the face pipeline's landmarker gives them."""
    geometry: "np.ndarray | None" = None
    """float32 (n, K) AU geometry of the mesh (``components.faces.au_geometry``), likewise."""
    neutral: "np.ndarray | None" = None
    """float32 (n, 52 + K) each frame's person-specific neutral, where the caller keeps it (a live
    session sees a face a frame at a time; a store's rows, ``components.store.neutral``, are one
    batch of a longer video); None: ``member_inputs`` computes it over the track."""
    key: "tuple[str, str, str, int] | None" = None
    """(dataset, subject, video, face_id) of feature-store rows (``store_tracks``); None: the
    request's own key (input id, face id, input name)."""

    def motion(self) -> np.ndarray:
        """(n, len(steps)) mean landmark displacement per step in crop pixels, 0 where invalid:
        the temporal feature the dynamic members read, summarised for clients."""
        n = len(self.frames)
        if self.landmark_diff is None or not self.steps:
            return np.zeros((n, 0))
        d = self.landmark_diff.reshape(n, len(self.steps), 68, 2)
        return np.linalg.norm(d, axis=-1).mean(-1) * self.diff_valid


def request_id() -> str:
    """A fresh id for one request or input: the ``dataset`` part of its tracks' video keys."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- 1. faces
def face_info(r: Any) -> dict[str, Any]:
    """A pipeline result's face for answers: id, box, score and landmarks in image pixels, and
    ``pose`` / ``gaze`` (``components.faces.pose.pose_gaze_info``: head pose from the MediaPipe
    mesh, else from the 68 landmarks; gaze from the mesh's iris only, None without a mesh)."""
    from components.faces.pose import pose_gaze_info

    f = r.face
    return {"face_id": int(f.face_id), "box": [round(float(x), 2) for x in f.box], "score": round(float(f.score), 4),
            "landmarks": np.asarray(f.landmarks, np.float64).round(2).tolist(),
            **pose_gaze_info(getattr(r, "mesh", None), f.landmarks)}


def _blendshapes(results: Sequence[Any], attr: str = "blendshapes") -> "np.ndarray | None":
    """(n, 52) blendshapes (or another per-face vector ``attr``, e.g. ``geometry``) of pipeline
    results, or None unless every one of them has them."""
    values = [getattr(r, attr, None) for r in results]
    if not values or any(v is None for v in values):
        return None
    return np.stack([np.asarray(v, np.float32) for v in values])


def image_tracks(results: Sequence[Any]) -> list[FaceTrack]:
    """Faces of a still image (``FacePipeline.process_image``), each its own one-frame track."""
    return [FaceTrack(face_id=int(r.face.face_id), frames=[0],
                      crop=r.aligned.crop[None], landmarks=r.aligned.landmarks.reshape(1, -1).astype(np.float32),
                      info=[face_info(r)], blendshapes=_blendshapes([r]), geometry=_blendshapes([r], "geometry"))
            for r in results]


def track_video(step: Callable[[np.ndarray, int], list[Any]], frames: Iterable[np.ndarray],
                steps: Sequence[int], identify: "Callable[[dict], dict] | None" = None) -> tuple[list[FaceTrack], int]:
    """Tracks of a video and its frame count. ``step(rgb, t)`` is a ``FacePipeline.step`` whose
    tracker starts fresh (Serve wraps it in its model lock); ``steps`` the difference steps;
    ``identify`` (``FacePipeline.identities``) regroups the tracked faces by person before the
    tracks and their temporal differences are built."""
    from components.faces.transforms import landmark_diffs

    by_face: dict[int, list[tuple[int, Any]]] = {}
    n = 0
    for t, rgb in enumerate(frames):
        n = t + 1
        for r in step(rgb, t):
            by_face.setdefault(int(r.face.face_id), []).append((t, r))
    if identify is not None:
        by_face = identify(by_face)
        for face_id, seq in by_face.items():
            for _, r in seq:
                r.face.face_id = face_id
    tracks = []
    for face_id, seq in sorted(by_face.items()):
        lms = np.stack([r.aligned.landmarks for _, r in seq]).astype(np.float32)
        track = FaceTrack(face_id=face_id, frames=[t for t, _ in seq], crop=np.stack([r.aligned.crop for _, r in seq]),
                          landmarks=lms.reshape(len(seq), -1), info=[face_info(r) for _, r in seq],
                          steps=tuple(int(s) for s in steps), blendshapes=_blendshapes([r for _, r in seq]),
                          geometry=_blendshapes([r for _, r in seq], "geometry"))
        if steps:
            d, v = landmark_diffs(lms, steps)
            track.landmark_diff, track.diff_valid = d.reshape(len(seq), -1), v
        tracks.append(track)
    return tracks, n


# --------------------------------------------------------------------------- 2. member inputs
@dataclass
class MemberInput:
    """One member request: a batch of rows and which rows of which tracks they are."""

    batch: dict[str, np.ndarray]
    """crop, landmarks, (landmark_diff, diff_valid), (blendshapes, geometry, neutral), dataset, subject,
    video, face_id, frame_order."""
    parts: list[tuple[int, int, int]] = field(default_factory=list)
    """(track index, first row in the track, rows) for consecutive row ranges of the batch."""


def _rows(track: FaceTrack, lo: int, hi: int, source: str, name: str, subject: str,
          neutral: "np.ndarray | None" = None) -> dict[str, np.ndarray]:
    n = hi - lo
    # The face track's key: request/input, tracked face, input name (components.video_key), or
    # the store rows' own (their video's, and the face's within it).
    dataset, subject, video, face = track.key or (source, subject, name, 0)
    rows: dict[str, np.ndarray] = {
        "crop": track.crop[lo:hi], "landmarks": track.landmarks[lo:hi],
        "dataset": np.array([dataset] * n), "subject": np.array([subject] * n),
        "video": np.array([video] * n), "face_id": np.full(n, face, np.int16),
        "frame_order": np.asarray(track.frames[lo:hi], np.int64)}
    if track.landmark_diff is not None:
        rows["landmark_diff"], rows["diff_valid"] = track.landmark_diff[lo:hi], track.diff_valid[lo:hi]
    if track.blendshapes is not None:
        rows["blendshapes"] = track.blendshapes[lo:hi]
    if track.geometry is not None:
        rows["geometry"] = track.geometry[lo:hi]
    if neutral is not None:
        rows["neutral"] = neutral[lo:hi]
    return rows


def member_inputs(tracks: Sequence[FaceTrack], source: str, name: str, video: bool,
                  segment: int = SEGMENT_FRAMES) -> list[MemberInput]:
    """Member requests for ``tracks`` of input ``name`` from request/input ``source``.

    Still images (``video`` False): one request holding every face (one row each, each its own
    key). Videos: one request per segment of ``segment`` consecutive frames of one track; where a
    track has blendshapes, each row also carries ``neutral``, the track's running neutral up to
    that frame (``components.faces.au_geometry.track_neutral``; person-specific normalisation,
    computed here over the whole track so that it runs on across segments, which a member that
    sees one segment at a time could not; a still has none and members take the population's).
    """
    from components.faces.au_geometry import track_neutral

    if not video:
        if not tracks:
            return []
        # Faces of one still are keyed by their place in it: ids need not differ between faces.
        parts = [_rows(t, 0, 1, source, name, f"face{i}") for i, t in enumerate(tracks)]
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return [MemberInput(batch, [(i, 0, 1) for i in range(len(tracks))])]
    out = []
    for i, t in enumerate(tracks):
        neutral = t.neutral if t.neutral is not None else (
            track_neutral(t.blendshapes, t.geometry) if t.blendshapes is not None else None)
        for lo in range(0, len(t.frames), segment):
            hi = min(lo + segment, len(t.frames))
            out.append(MemberInput(_rows(t, lo, hi, source, name, str(t.face_id), neutral), [(i, lo, hi - lo)]))
    return out


# --------------------------------------------------------------------------- 3. members
def _passes(batches: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Requests grouped into forward passes: only requests with the same columns (a still's faces
    have no landmark differences, a video segment has) and no video key in two of them."""
    passes: list[tuple[list[int], set[str], tuple[str, ...]]] = []
    for i, b in enumerate(batches):
        keys = set(video_keys(b) or [f"\0request{i}"])
        columns = tuple(sorted(b))
        for members, seen, cols in passes:
            if cols == columns and not keys & seen:
                members.append(i)
                seen |= keys
                break
        else:
            passes.append(([i], keys, columns))
    return [m for m, _, _ in passes]


def forward_member(member_probs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                   batches: Sequence[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """One member's outputs (``probs``, optionally ``intensity``) for each request batch, where
    ``member_probs`` runs the member on a batch (``Predictor.member``: the orchestration knows
    no model, only this call).

    Requests are joined into as few forward passes as keep every video key in one request of
    its pass, so an answer never depends on which other requests (clients) shared the pass.
    Each output also says ``batch_faces``, the rows of the pass that produced it.
    """
    out: list[Any] = [None] * len(batches)
    for idx in _passes(batches):
        joined = {k: np.concatenate([np.asarray(batches[i][k]) for i in idx]) for k in batches[idx[0]]}
        res = member_probs(joined)
        n, lo = len(joined["crop"]), 0
        for i in idx:
            hi = lo + len(batches[i]["crop"])
            out[i] = {k: v[lo:hi] for k, v in res.items()}
            out[i]["batch_faces"] = n
            lo = hi
    return out


def gather_outputs(tracks: Sequence[FaceTrack], inputs: Sequence[MemberInput],
                   outputs: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """One member's outputs per track, rows in the track's frame order (``batch_faces`` dropped)."""
    per: list[dict[str, np.ndarray]] = [{} for _ in tracks]
    for inp, res in zip(inputs, outputs):
        lo = 0
        for ti, start, n in inp.parts:
            for k, v in res.items():
                if k == "batch_faces":
                    continue
                dest = per[ti].setdefault(k, np.zeros((len(tracks[ti].frames),) + v.shape[1:], v.dtype))
                dest[start:start + n] = v[lo:lo + n]
            lo += n
    return per


# --------------------------------------------------------------------------- 4. combination
def combine_outputs(manifest: EnsembleManifest, use: Sequence[int],
                    outs: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """The ensemble answer from the outputs of members ``use`` (indices into ``manifest.members``).

    ``outs[k]`` is ``Predictor.member_probs`` of member ``use[k]``: ``probs`` (N, n_AU) and
    optionally ``intensity``. Applies the manifest's rule, weights and thresholds; members left
    out (image requests skip video members) drop out of the weights, and for ``best_per_au`` an
    AU whose chosen member is left out falls back to the weighted mean of the members used.
    Needs no model, so a Serve combiner replica calls it with the manifest alone.
    """
    use = list(use)
    weights = [manifest.weights[i] for i in use]
    thr = [manifest.members[i].thresholds for i in use]
    probs_list = [o["probs"] for o in outs]
    if manifest.rule == "best_per_au":
        chosen = [use.index(c) if c in use else -1 for c in manifest.choice]
        scores = combine(probs_list, "mean", weights, thr).copy()
        for a, c in enumerate(chosen):
            if c >= 0:
                scores[:, a] = probs_list[c][:, a]
    else:
        scores = combine(probs_list, manifest.rule, weights, thr)
    result = {"probs": scores, "occurrence": (scores >= thresholds_of(manifest)).astype(np.int8),
              "members": [manifest.members[i].name for i in use],
              "member_probs": {manifest.members[i].name: o["probs"] for i, o in zip(use, outs)}}
    intens = [o["intensity"] for o in outs if "intensity" in o]
    if intens:
        result["intensity"] = np.mean(intens, axis=0)
    return result


def combine_track(manifest: EnsembleManifest, use: Sequence[int], outs: Sequence[dict[str, np.ndarray]],
                  smooth_window: int = 1) -> dict[str, Any]:
    """``combine_outputs`` for one track; with ``smooth_window`` > 1 (the track's frames in order)
    the probabilities become a centred moving mean (paper 002 §3, ``smooth_sequence``), occurrence
    follows the smoothed values and the unsmoothed ones are kept as ``raw_probs``."""
    from components.models.to_sequence import smooth_sequence

    ans = combine_outputs(manifest, use, outs)
    if smooth_window > 1 and len(ans["probs"]) > 1:
        return smoothed_answer(manifest, ans, smooth_sequence(ans["probs"], smooth_window))
    return ans


def smoothed_answer(manifest: EnsembleManifest, ans: dict[str, Any], probs: np.ndarray) -> dict[str, Any]:
    """``ans`` (``combine_outputs``) answering with the smoothed ``probs``: occurrence follows them
    and the unsmoothed values are kept as ``raw_probs`` (``combine_track``; a video answered a
    segment at a time smooths across the segments' edges itself, ``components.video_segments``)."""
    return dict(ans, raw_probs=ans["probs"], probs=probs,
                occurrence=(probs >= thresholds_of(manifest)).astype(np.int8))


def smooth_by_video(probs: np.ndarray, batch: dict[str, Any], order: np.ndarray, window: int) -> np.ndarray:
    """``probs`` (N, n_AU) of rows from many videos, each face track (``components.video_key``
    from ``batch``'s dataset/subject/video and face_id columns) smoothed over its own rows in
    ``order`` (frame order) by ``smooth_sequence``: evaluation's switch for the smoothing serving
    applies."""
    from components.models.to_sequence import smooth_sequence

    keys = video_keys(batch)
    if keys is None:
        raise ValueError("smooth_by_video: the rows carry no 'video' column to group frames by")
    out = np.asarray(probs, np.float64).copy()
    if window <= 1:
        return out
    by_video: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_video.setdefault(k, []).append(i)
    for rows in by_video.values():
        idx = np.asarray(rows)[np.argsort(np.asarray(order)[rows], kind="stable")]
        out[idx] = smooth_sequence(out[idx], window)
    return out


# --------------------------------------------------------------------------- the orchestration
RunMember = Callable[[int, list[dict[str, Any]]], Any]
"""``run_member(i, requests)``: member ``i``'s outputs (``Predictor.member_probs``'s dict) for
each request batch, in order; returns them, or (``answer_tracks_async``) an awaitable of them."""
CombineTrack = Callable[[Sequence[int], list[dict[str, np.ndarray]], int], Any]
"""``combine(use, outs, smooth_window)``: one track's answer (``combine_track``) from the outputs
of members ``use``; returns it, or (``answer_tracks_async``) an awaitable of it."""


def _steps(plan: InferencePlan, tracks: Sequence[FaceTrack], video: bool, source: str, name: str,
           smooth: bool) -> Generator[list[tuple], list[Any], list[dict[str, Any]]]:
    """The orchestration's steps, written once: yields the member calls, then the combine calls,
    receiving their results; returns one answer per track. The drivers below only say how a
    call runs (in process, awaited)."""
    use = list(plan.use(video))
    if not tracks:
        return []
    inputs = member_inputs(tracks, source or request_id(), name, video)
    requests = [inp.batch for inp in inputs]
    outputs = yield [("member", i, requests) for i in use]
    per_member = [gather_outputs(tracks, inputs, out) for out in outputs]
    window = plan.smooth_window if video and smooth else 1
    return (yield [("combine", use, [outs[t] for outs in per_member], window) for t in range(len(tracks))])


def answer_tracks(plan: InferencePlan, tracks: Sequence[FaceTrack], video: bool, run_member: RunMember,
                  combine: CombineTrack, source: str = "", name: str = "input",
                  smooth: bool = True) -> list[dict[str, Any]]:
    """The combined answer of each track (``combine_track``'s dict), every call run as it comes.

    ``video`` False: still-image faces, members that need video left out; True: every member, and
    (``smooth``) the plan's smoothing over each track's frames. ``source``/``name``: the request or
    input id and the input's name that key the tracks (``member_inputs``; a fresh id when empty).
    """
    steps = _steps(plan, tracks, video, source, name, smooth)
    try:
        calls = next(steps)
        while True:
            calls = steps.send([run_member(c[1], c[2]) if c[0] == "member" else combine(*c[1:]) for c in calls])
    except StopIteration as done:
        return done.value


async def answer_tracks_async(plan: InferencePlan, tracks: Sequence[FaceTrack], video: bool,
                              run_member: Callable[..., Awaitable[Any]], combine: Callable[..., Awaitable[Any]],
                              source: str = "", name: str = "input", smooth: bool = True) -> list[dict[str, Any]]:
    """``answer_tracks`` with awaitable calls, each step's calls run concurrently (members at once,
    then every track's combination)."""
    steps = _steps(plan, tracks, video, source, name, smooth)
    try:
        calls = next(steps)
        while True:
            calls = steps.send(await asyncio.gather(
                *[run_member(c[1], c[2]) if c[0] == "member" else combine(*c[1:]) for c in calls]))
    except StopIteration as done:
        return done.value


# --------------------------------------------------------------------------- 5. answer rows
def face_answer(info: dict[str, Any], ans: dict[str, Any], k: int, aus: Sequence[int]) -> dict[str, Any]:
    """Row ``k`` of a combined answer as a face: ids, box, landmarks, pose, gaze, probs, occurrence,
    ``emotions`` (scores derived from probs by ``components.emotion``), ..."""
    from components.emotion import emotion_scores

    keys = [f"AU{a}" for a in aus]
    probs = dict(zip(keys, map(float, ans["probs"][k])))
    out = dict(info, probs=probs, occurrence=dict(zip(keys, map(int, ans["occurrence"][k]))),
               emotions=emotion_scores(probs, aus), members=list(ans["members"]))
    if "raw_probs" in ans:
        out["raw_probs"] = dict(zip(keys, map(float, ans["raw_probs"][k])))
    if "intensity" in ans:
        out["intensity"] = dict(zip(keys, map(float, ans["intensity"][k])))
    return out


def image_rows(tracks: Sequence[FaceTrack], answers: Sequence[dict[str, Any]], aus: Sequence[int]) -> list[dict[str, Any]]:
    """One face answer per track of a still image (``face_answer``)."""
    return [face_answer(t.info[0], a, 0, aus) for t, a in zip(tracks, answers)]


def track_rows(track: FaceTrack, ans: dict[str, Any], fps: float, aus: Sequence[int],
               rows: "range | None" = None) -> list[dict[str, Any]]:
    """One ``success`` 1 row per frame of ``track`` (``rows``: those of the track's rows), with
    ``motion`` per difference step."""
    motion = track.motion()
    out = []
    for k in rows if rows is not None else range(len(track.frames)):
        t = track.frames[k]
        row = face_answer(track.info[k], ans, k, aus)
        row.update(frame=t, timestamp=round(t / fps, 4), success=1,
                   motion={f"s{s}": float(m) for s, m in zip(track.steps, motion[k])})
        out.append(row)
    return out


def frame_rows(face_rows: list[dict[str, Any]], frames: range, fps: float) -> list[dict[str, Any]]:
    """``face_rows`` plus one ``success`` 0 row per frame of ``frames`` that none of them has;
    sorted by frame, then face."""
    with_face = {r["frame"] for r in face_rows}
    rows = face_rows + [{"frame": t, "timestamp": round(t / fps, 4), "face_id": -1, "success": 0}
                        for t in frames if t not in with_face]
    rows.sort(key=lambda r: (r["frame"], r["face_id"]))
    return rows


def video_rows(tracks: Sequence[FaceTrack], answers: Sequence[dict[str, Any]], n_frames: int, fps: float,
               aus: Sequence[int]) -> list[dict[str, Any]]:
    """One row per frame and track (``track_rows``) and one ``success`` 0 row per frame without a
    face; sorted by frame, then face."""
    return frame_rows([r for track, ans in zip(tracks, answers) for r in track_rows(track, ans, fps, aus)],
                      range(n_frames), fps)
