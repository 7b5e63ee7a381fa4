"""Feature-store rows in and out of the one orchestration (``components.inference``): evaluation,
ensemble selection and the label teacher enter with stored rows as face tracks, one per face
track key (``components.video_key``: its video's, and its face's where the video has several) in
frame order, and get their answers back as arrays in the rows' order."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from components.inference import FaceTrack
from components.video_key import KEY_COLUMNS, video_keys

__all__ = ["store_tracks", "store_answer"]


def store_tracks(rows: dict[str, Any]) -> tuple[list[FaceTrack], list[np.ndarray]]:
    """Feature-store rows (columns ``image`` or ``crop``, ``landmarks``, ``dataset``/``subject``/
    ``video``, ``frame_order``, optionally ``landmark_diff``/``diff_valid``/``blendshapes``/``geometry``/
    ``neutral``, and ``face_id`` where a video has several faces) as tracks, one per face track key
    (``components.video_key.video_keys``) in frame order, keeping the rows' key; and each
    track's row indices. Blendshapes ride along only where every row of the track has them (a
    member that reads them then refuses a track without); so does the stored running neutral
    (without it the orchestration computes one over the rows given)."""
    from components.store.rows import decode_jpeg

    keys = video_keys(rows)
    if keys is None:
        raise ValueError("store rows carry no 'video' column to group frames by")
    order = np.asarray(rows["frame_order"], np.int64)
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    crops = rows.get("crop")
    tracks, where = [], []
    for t, idx in enumerate(by_key.values()):
        idx = np.asarray(idx)[np.argsort(order[idx], kind="stable")]
        crop = np.stack([np.asarray(crops[i]) if crops is not None else decode_jpeg(rows["image"][i]) for i in idx])
        lms = np.stack([np.asarray(rows["landmarks"][i], np.float32).reshape(-1) for i in idx])
        face = int(rows["face_id"][idx[0]]) if "face_id" in rows else 0
        track = FaceTrack(face_id=t, frames=order[idx].tolist(), crop=crop, landmarks=lms, info=[],
                          key=(*(str(rows[c][idx[0]]) if c in rows else "" for c in KEY_COLUMNS), face))
        if "landmark_diff" in rows and rows["landmark_diff"] is not None:
            track.landmark_diff = np.stack([np.asarray(rows["landmark_diff"][i], np.float32) for i in idx])
            track.diff_valid = np.stack([np.asarray(rows["diff_valid"][i], bool) for i in idx])
        bs = rows.get("blendshapes")
        if bs is not None and all(bs[i] is not None and len(bs[i]) == 52 for i in idx):
            track.blendshapes = np.stack([np.asarray(bs[i], np.float32) for i in idx])
        geo = rows.get("geometry")
        if geo is not None and all(geo[i] is not None and len(geo[i]) for i in idx):
            track.geometry = np.stack([np.asarray(geo[i], np.float32) for i in idx])
        neu = rows.get("neutral")
        if track.blendshapes is not None and neu is not None and all(neu[i] is not None for i in idx):
            # The store's running neutral over the whole video (components.store.neutral): the
            # rows at hand may be one batch or chunk of it, which would restart the neutral.
            track.neutral = np.stack([np.asarray(neu[i], np.float32) for i in idx])
        tracks.append(track)
        where.append(idx)
    return tracks, where


def store_answer(n: int, where: Sequence[np.ndarray], answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Answers of ``store_tracks``'s tracks back in the order of the ``n`` store rows: ``probs``,
    ``member_probs`` per member name and ``intensity`` where members give it."""
    if not answers:
        return {"probs": np.zeros((n, 0)), "member_probs": {}}
    first = answers[0]
    out: dict[str, Any] = {"probs": np.zeros((n,) + first["probs"].shape[1:]), "members": first["members"],
                           "member_probs": {m: np.zeros((n,) + p.shape[1:]) for m, p in first["member_probs"].items()}}
    if "intensity" in first:
        out["intensity"] = np.zeros((n,) + first["intensity"].shape[1:])
    for idx, ans in zip(where, answers):
        out["probs"][idx] = ans["probs"]
        for m, p in ans["member_probs"].items():
            out["member_probs"][m][idx] = p
        if "intensity" in out:
            out["intensity"][idx] = ans["intensity"]
    return out
