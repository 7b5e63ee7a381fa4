"""A video's identity, and a face track's within it: the one definition every grouping of frames uses.

Frames belong to the same video when they share (dataset, subject, video). The ``video`` column
alone is not enough: in BP4D it is the task (T1..T8, the same eight names for every subject) and
in DISFA the camera, so grouping by it mixes people. A video with several people (an unlabeled
``media`` input: a crowd photo, a talk show) holds one track per face, told apart by the stored
rows' ``face_id``; where rows carry it, a face other than the first gets its own key, so a track
never mixes people either. Pairwise-rank's ranking and uncertainty pairs (paper 004 §3.1-3.2), its
window statistics G (§3.3), temporal landmark differences, the running neutral, smoothing and the
samplers all group by the key defined here. Serving and prediction build rows with ``dataset`` =
the request (or input file) and ``subject`` = the tracked face, so batched requests from
different clients never share a key either.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["video_key", "video_keys", "video_index", "subject_index", "KEY_COLUMNS", "FACE_COLUMN"]

KEY_COLUMNS = ("dataset", "subject", "video")
"""The columns that together name one video."""

FACE_COLUMN = "face_id"
"""The stored rows' face track within a video (``components.store.schema``)."""


def video_key(dataset: Any, subject: Any, video: Any, face: Any = 0) -> str:
    """The string key of one face track of a video: ``dataset/subject/video``, and ``#<face>``
    after it for a face other than the first (so a one-person video's key is its video's).

    >>> video_key("bp4d", "F001", "T1") == video_key("bp4d", "F002", "T1")
    False
    >>> video_key("media", ".", "talk.mp4", 0), video_key("media", ".", "talk.mp4", 1)
    ('media/./talk.mp4', 'media/./talk.mp4#1')
    """
    base = f"{dataset}/{subject}/{video}"
    return f"{base}#{int(face)}" if int(face) else base


def video_keys(batch: Mapping[str, Any]) -> "list[str] | None":
    """Per-row keys of a columnar batch, from whichever of ``KEY_COLUMNS`` it has, and its
    ``face_id`` where it has one (``video_key``).

    A batch with a ``video`` column but no ``subject`` (or ``dataset``) is keyed by what it has;
    None when it has no ``video`` column at all.
    """
    if "video" not in batch:
        return None
    n = len(batch["video"])
    cols: list[Sequence[Any]] = [batch[c] if c in batch else [""] * n for c in KEY_COLUMNS]
    faces = batch[FACE_COLUMN] if FACE_COLUMN in batch else [0] * n
    return [video_key(d, s, v, f) for d, s, v, f in zip(*cols, faces)]


def video_index(batch: Mapping[str, Any]) -> "np.ndarray | None":
    """Per-row int64 ids (CRC32 of ``video_keys``) that survive tensor conversion, or None."""
    keys = video_keys(batch)
    if keys is None:
        return None
    return np.array([zlib.crc32(k.encode()) for k in keys], np.int64)


def subject_index(batch: Mapping[str, Any]) -> "np.ndarray | None":
    """Per-row int64 ids of the person (CRC32 of ``dataset/subject``), or None without ``subject``.

    Numeric, so training batches keep it (they carry tensors only): pairwise-rank's
    cross-fitting groups training subjects by it.
    """
    if "subject" not in batch:
        return None
    n = len(batch["subject"])
    datasets = batch["dataset"] if "dataset" in batch else [""] * n
    return np.array([zlib.crc32(f"{d}/{s}".encode()) for d, s in zip(datasets, batch["subject"])], np.int64)
