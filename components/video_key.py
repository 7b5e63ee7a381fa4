"""A video's identity: the one definition every grouping of frames uses.

Frames belong to the same video when they share (dataset, subject, video). The ``video`` column
alone is not enough: in BP4D it is the task (T1..T8, the same eight names for every subject) and
in DISFA the camera, so grouping by it mixes people. Pairwise-rank's ranking and uncertainty pairs
(paper 004 §3.1-3.2), its window statistics G (§3.3), temporal landmark differences, smoothing and
the samplers all group by the key defined here. Serving and prediction build rows with
``dataset`` = the request (or input file) and ``subject`` = the tracked face, so batched requests
from different clients never share a key either.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["video_key", "video_keys", "video_index", "subject_index", "KEY_COLUMNS"]

KEY_COLUMNS = ("dataset", "subject", "video")
"""The columns that together name one video."""


def video_key(dataset: Any, subject: Any, video: Any) -> str:
    """The string key of one video: ``dataset/subject/video``.

    >>> video_key("bp4d", "F001", "T1") == video_key("bp4d", "F002", "T1")
    False
    """
    return f"{dataset}/{subject}/{video}"


def video_keys(batch: Mapping[str, Any]) -> "list[str] | None":
    """Per-row keys of a columnar batch, from whichever of ``KEY_COLUMNS`` it has.

    A batch with a ``video`` column but no ``subject`` (or ``dataset``) is keyed by what it has;
    None when it has no ``video`` column at all.
    """
    if "video" not in batch:
        return None
    n = len(batch["video"])
    cols: list[Sequence[Any]] = [batch[c] if c in batch else [""] * n for c in KEY_COLUMNS]
    return [video_key(d, s, v) for d, s, v in zip(*cols)]


def video_index(batch: Mapping[str, Any]) -> "np.ndarray | None":
    """Per-row int64 ids (CRC32 of ``video_key``) that survive tensor conversion, or None."""
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
