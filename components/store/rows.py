"""Turn one ``VideoUnit`` (or one chunk of it) into feature-store rows and rejects. Ray-free.

The preprocess workflow runs ``process_unit`` inside Ray Data actors, one unit (or chunk) per
call, with the face pipeline loaded once per actor. Every input frame ends in exactly one of the
returned ``frames`` (one row per face) or ``rejects`` tables.

Chunks: a long video is cut at fixed frame positions (``plan_chunks``) that depend only on the
config, never on the number of workers, so results are the same on any cluster. Each chunk is
processed from ``overlap`` frames before its start (tracker warm-up) to ``max(diff_steps)``
frames after its end (temporal differences), and emits only its own frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import pyarrow as pa

from components.datasets.base import FrameRecord, VideoUnit, sample_id
from components.faces.transforms import landmark_diffs
from components.store.schema import FRAMES_SCHEMA, REJECTS_SCHEMA

__all__ = ["StoreConfig", "Chunk", "plan_chunks", "process_unit", "UnitResult", "encode_jpeg",
           "decode_jpeg"]


@dataclass(frozen=True)
class StoreConfig:
    """What the feature store keeps, and how videos are cut into chunks."""

    diff_steps: tuple[int, ...] = (1, 2, 4)
    """Temporal landmark difference steps s stored per row (diff_t = l_{t+s} - l_{t-s})."""
    jpeg_quality: int = 95
    """JPEG quality of the stored aligned crops."""
    chunk_frames: int = 0
    """Frames per chunk of a long video (0: one chunk per video)."""
    chunk_overlap: int = 12
    """Warm-up frames processed before a chunk's start so tracking has settled."""

    def __post_init__(self) -> None:
        if any(s < 1 for s in self.diff_steps):
            raise ValueError(f"diff_steps must be >= 1, got {self.diff_steps}")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 50..100, got {self.jpeg_quality}")
        if self.chunk_frames < 0 or self.chunk_overlap < 0:
            raise ValueError("chunk_frames and chunk_overlap must be >= 0")


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, stop)`` (positions in the unit's frame list) of one unit."""

    index: int
    start: int
    stop: int


def plan_chunks(n_frames: int, chunk_frames: int) -> list[Chunk]:
    """Fixed chunk boundaries: a function of the frame count and the config only."""
    if chunk_frames <= 0 or n_frames <= chunk_frames:
        return [Chunk(0, 0, n_frames)]
    return [Chunk(i, s, min(s + chunk_frames, n_frames))
            for i, s in enumerate(range(0, n_frames, chunk_frames))]


@dataclass
class UnitResult:
    frames: pa.Table
    rejects: pa.Table
    stats: dict[str, Any] = field(default_factory=dict)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Stored crop bytes → RGB uint8."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("stored image bytes are not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_image(record: FrameRecord) -> "tuple[np.ndarray | None, str, str]":
    from components.datasets.video_io import read_frame_source

    if not record.source:
        return None, "missing image", "no image file for this labelled frame"
    try:
        return read_frame_source(record), "", ""
    except FileNotFoundError as e:
        return None, "missing image", str(e)
    except Exception as e:  # noqa: BLE001 - any decode failure is a reject, the job carries on
        return None, "unreadable", f"{type(e).__name__}: {e}"


def _iter_pixels(unit: VideoUnit, lo: int, hi: int) -> Iterator[tuple[int, "np.ndarray | None", str, str]]:
    """(position, rgb or None, reject reason, detail) for frames lo..hi-1 of the unit."""
    from components.datasets.video_io import iter_video_frames

    frames = unit.frames
    pos = lo
    while pos < hi:
        rec = frames[pos]
        if rec.source_kind != "video":
            img, reason, detail = _read_image(rec)
            yield pos, img, reason, detail
            pos += 1
            continue
        # A run of frames from the same video file: decode sequentially (seeking is slow).
        run_end = pos
        while run_end < hi and frames[run_end].source_kind == "video" and frames[run_end].source == rec.source:
            run_end += 1
        wanted = {frames[p].video_frame: p for p in range(pos, run_end)}
        got: dict[int, np.ndarray] = {}
        first, last = min(wanted), max(wanted)
        try:
            for idx, rgb in iter_video_frames(rec.source, start=first, stop=last + 1):
                if idx in wanted:
                    got[idx] = rgb
                    yield wanted[idx], rgb, "", ""
        except Exception as e:  # noqa: BLE001 - decoding errors are rejects
            err = f"{type(e).__name__}: {e}"
        else:
            err = "video ended before this frame (truncated or shorter than its labels)"
        for vf, p in sorted(wanted.items()):
            if vf not in got:
                yield p, None, "unreadable", err
        pos = run_end


def process_unit(unit: VideoUnit, pipeline: Any, store: StoreConfig, chunk: "Chunk | None" = None) -> UnitResult:
    """Detect, track, align and describe every frame of ``chunk`` of ``unit``.

    ``pipeline`` is a ``components.faces.pipeline.FacePipeline``.
    """
    n = len(unit.frames)
    chunk = chunk or Chunk(0, 0, n)
    max_step = max(store.diff_steps, default=0)
    lo = max(0, chunk.start - (store.chunk_overlap if chunk.start > 0 else 0))
    hi = min(n, chunk.stop + max_step)
    rejects: list[dict[str, Any]] = []
    faces_by_pos: dict[int, list[Any]] = {}

    if n == 0:
        # A source that yielded no frame at all (an unopenable video) is still accounted for.
        detail = "; ".join(unit.meta.get("warnings", [])) or "no decodable frame"
        rej = pa.Table.from_pylist([{
            "sample_id": sample_id(unit.dataset, unit.subject, unit.video, -1), "dataset": unit.dataset,
            "subject": unit.subject, "video": unit.video, "frame": -1,
            "source": str(unit.meta.get("path", unit.video)), "reason": "unreadable", "detail": detail[:500]}],
            schema=REJECTS_SCHEMA)
        return UnitResult(FRAMES_SCHEMA.empty_table(), rej, {"unit": unit.key, "chunk": chunk.index,
                                                             "frames_in": 0, "rows": 0, "rejects": 1})
    pipeline.reset()
    for pos, rgb, reason, detail in _iter_pixels(unit, lo, hi):
        if rgb is None:
            if chunk.start <= pos < chunk.stop:
                rejects.append(_reject(unit, pos, reason, detail))
            continue
        try:
            results = pipeline.prealigned(rgb) if unit.prealigned else pipeline.step(rgb, pos)
        except Exception as e:  # noqa: BLE001 - a failing frame is a reject, not a crash
            if chunk.start <= pos < chunk.stop:
                rejects.append(_reject(unit, pos, "landmark failure", f"{type(e).__name__}: {e}"))
            continue
        if not results:
            if chunk.start <= pos < chunk.stop:
                rejects.append(_reject(unit, pos, "no face", "no face detected or tracked"))
            continue
        faces_by_pos[pos] = results

    rows = _rows(unit, faces_by_pos, store, chunk)
    frames = pa.Table.from_pylist(rows, schema=FRAMES_SCHEMA) if rows else FRAMES_SCHEMA.empty_table()
    rej = pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA) if rejects else REJECTS_SCHEMA.empty_table()
    stats = {"unit": unit.key, "chunk": chunk.index, "frames_in": chunk.stop - chunk.start,
             "rows": frames.num_rows, "rejects": rej.num_rows,
             "faces_per_frame_max": max((len(v) for v in faces_by_pos.values()), default=0)}
    return UnitResult(frames, rej, stats)


def _reject(unit: VideoUnit, pos: int, reason: str, detail: str) -> dict[str, Any]:
    rec = unit.frames[pos]
    return {"sample_id": sample_id(unit.dataset, unit.subject, unit.video, rec.frame),
            "dataset": unit.dataset, "subject": unit.subject, "video": unit.video,
            "frame": rec.frame, "source": rec.source, "reason": reason, "detail": detail[:500]}


def _rows(unit: VideoUnit, faces_by_pos: dict[int, list[Any]], store: StoreConfig, chunk: Chunk) -> list[dict[str, Any]]:
    by_face: dict[int, list[tuple[int, Any]]] = {}
    for pos in sorted(faces_by_pos):
        for res in faces_by_pos[pos]:
            by_face.setdefault(int(res.face.face_id), []).append((pos, res))
    rows: list[dict[str, Any]] = []
    steps = tuple(store.diff_steps)
    for face_id, seq in by_face.items():
        positions = np.array([p for p, _ in seq])
        lms = np.stack([r.aligned.landmarks for _, r in seq]).astype(np.float32)
        if steps:
            diffs, valid = landmark_diffs(lms, steps)
            # Neighbours missing from the sequence (rejected frames) make the difference span
            # another interval than 2s: flag those as invalid too.
            for j, s in enumerate(steps):
                idx = np.arange(len(seq))
                ahead = positions[np.clip(idx + s, 0, len(seq) - 1)] - positions
                behind = positions - positions[np.clip(idx - s, 0, len(seq) - 1)]
                valid[:, j] &= (ahead == s) & (behind == s)
        for k, (pos, res) in enumerate(seq):
            if not chunk.start <= pos < chunk.stop:
                continue
            rec: FrameRecord = unit.frames[pos]
            crop = res.aligned.crop
            rows.append({
                "sample_id": sample_id(unit.dataset, unit.subject, unit.video, rec.frame, face_id),
                "dataset": unit.dataset, "subject": unit.subject, "group": unit.group,
                "video": unit.video, "frame": rec.frame, "frame_order": pos,
                "timestamp": rec.timestamp, "source": rec.source, "face_id": face_id,
                "labels": list(rec.labels), "intensities": list(rec.intensities),
                "image": encode_jpeg(crop, store.jpeg_quality), "image_size": crop.shape[0],
                "landmarks": lms[k].reshape(-1).tolist(),
                "det_score": float(res.face.score), "tracked": bool(res.face.tracked),
                "landmark_diff": diffs[k].reshape(-1).tolist() if steps else [],
                "diff_valid": valid[k].tolist() if steps else [],
                "blendshapes": res.blendshapes.tolist() if res.blendshapes is not None else None,
                "geometry": res.geometry.tolist() if getattr(res, "geometry", None) is not None else None,
            })
    rows.sort(key=lambda r: (r["frame_order"], r["face_id"]))
    return rows


def check_labels_match(unit: VideoUnit, expected: Sequence[int]) -> None:
    """Raise if a unit's labels do not have one entry per AU of the store's AU list."""
    for rec in unit.frames:
        if rec.labels and len(rec.labels) != len(expected):
            raise ValueError(
                f"{unit.key} frame {rec.frame}: {len(rec.labels)} labels for {len(expected)} AUs"
            )
