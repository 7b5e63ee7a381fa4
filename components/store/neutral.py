"""Each stored face row's person-specific neutral, over its whole video (Ray-free).

Serving subtracts a face's running neutral (``components.faces.au_geometry.track_neutral``: a low
percentile of the track's blendshapes and geometry so far, shrunk to the population's) before the
blendshape member maps them to AUs, computed over the whole track (``components.inference.
member_inputs``). Store readers see rows a batch at a time, and a video's chunks are separate
files, so a neutral computed where the rows are read restarts at every batch and chunk: on a
real 472-frame video (WolfgangLanger_Pexels.mp4) restarting every 64 rows changed 7.9 % of the
built-in's decisions against the whole-track answer, and AU26's in 53 % of frames
(docs/measurements.md). So preprocessing computes it once per video, over every chunk, and
writes it beside the rows (``NEUTRAL_SCHEMA``, ``<store>/neutral/<stem>.parquet``); training,
evaluation and the label teacher join it by ``sample_id`` and answer stored rows with the neutral
serving would have used.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from components import storage

__all__ = ["NEUTRAL_DIR", "row_neutral", "write_video_neutral", "neutral_join", "files_store", "stem_neutral",
           "no_tables_warning", "reads_neutral"]

NEUTRAL_DIR = "neutral"
"""The store's folder of ``NEUTRAL_SCHEMA`` tables, one per ``frames/`` file (same stem)."""
_COLUMNS = ("sample_id", "dataset", "subject", "video", "face_id", "frame_order", "blendshapes", "geometry")


def row_neutral(rows: dict[str, Sequence[Any]]) -> list["list[float] | None"]:
    """Each row's running neutral of [blendshapes, geometry] (52 + K floats) over its face track
    (``components.video_key.video_keys``: dataset, subject, video, face_id) in frame order, from
    the track's rows that have blendshapes (``track_neutral``); None for a row without
    blendshapes. The geometry part is the population's where some of the track's rows lack
    geometry, as a serving track without it."""
    from components.faces.au_geometry import track_neutral
    from components.video_key import video_keys

    n = len(rows["sample_id"])
    out: list["list[float] | None"] = [None] * n
    bs, geo = rows.get("blendshapes"), rows.get("geometry")
    if bs is None:
        return out
    keys = video_keys(rows)
    tracks: dict[str, list[int]] = {}
    for i in range(n):
        if bs[i] is not None and len(bs[i]) == 52:
            tracks.setdefault(keys[i], []).append(i)
    order = np.asarray(rows["frame_order"], np.int64)
    for idx in tracks.values():
        idx = np.asarray(idx)[np.argsort(order[idx], kind="stable")]
        b = np.stack([np.asarray(bs[i], np.float32) for i in idx])
        g = None
        if geo is not None and all(geo[i] is not None and len(geo[i]) for i in idx):
            g = np.stack([np.asarray(geo[i], np.float32) for i in idx])
        for i, value in zip(idx, track_neutral(b, g)):
            out[int(i)] = value.tolist()
    return out


def write_video_neutral(store: str, stems: Sequence[str]) -> int:
    """Write ``neutral/<stem>.parquet`` for every frames file of one video (``stems``: its chunks'
    stems, all of them: a chunk's neutral reads the earlier chunks); returns the rows written.
    A stem without a frames file (a unit whose every frame was rejected) writes nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.store.schema import NEUTRAL_SCHEMA

    parts: list[tuple[str, int]] = []
    rows: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
    for stem in stems:
        uri = storage.join(store, "frames", f"{stem}.parquet")
        if not storage.exists(uri):
            continue
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as f:
            have = set(pq.read_schema(f).names)
            table = pq.read_table(f, columns=[c for c in _COLUMNS if c in have]).to_pydict()
        n = len(table["sample_id"])
        for c in _COLUMNS:
            rows[c].extend(table.get(c, [None] * n))
        parts.append((stem, n))
    values = row_neutral(rows)
    lo = 0
    for stem, n in parts:
        table = pa.Table.from_pydict({"sample_id": rows["sample_id"][lo:lo + n], "neutral": values[lo:lo + n]},
                                     schema=NEUTRAL_SCHEMA)
        storage.write_table_atomic(table, storage.join(store, NEUTRAL_DIR, f"{stem}.parquet"))
        lo += n
    return lo


def neutral_join(store: str) -> "dict[str, Any] | None":
    """The store's neutral tables as a label-style join by ``sample_id`` (``workflows.core.
    store_reader.LabelJoin``, column ``neutral``), or None for a store without them (written
    without MediaPipe, or before they existed: its readers then take each batch's own)."""
    if not store:
        return None
    root = storage.join(store, NEUTRAL_DIR)
    if not storage.exists(root):
        return None
    return {"frames": storage.join(store, "frames"), "labels": root, "source": "neutral", "column": "neutral",
            "decide": None}


def files_store(files: Sequence[str]) -> str:
    """The store holding all of ``files`` (``<store>/frames/<dataset>/<subject>/<video>.parquet``,
    ``unit_stem``'s layout), or '' when they are not one store's frames files."""
    stores = {f.rsplit("/", 4)[0] if f.rsplit("/", 4)[1:2] == ["frames"] else "" for f in files}
    return stores.pop() if len(stores) == 1 else ""


def stem_neutral(store: str, stem: str, sample_ids: Sequence[str]) -> "list[list[float] | None] | None":
    """The stored running neutral of ``sample_ids`` (rows of ``frames/<stem>.parquet``) in that
    order, None where the table lacks a row; None when the store has no table for the stem."""
    import pyarrow.parquet as pq

    uri = storage.join(store, NEUTRAL_DIR, f"{stem}.parquet")
    if not storage.exists(uri):
        return None
    fs, path = storage.resolve(uri)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f).to_pydict()
    by_id = dict(zip(table["sample_id"], table["neutral"]))
    return [by_id.get(str(s)) for s in sample_ids]


def reads_neutral(input_spec: "dict[str, Any]") -> bool:
    """Whether a member of this input spec (``InputSpec.to_dict``) subtracts the running neutral:
    it reads blendshapes or the mesh geometry."""
    return bool(input_spec.get("blendshapes") or input_spec.get("geometry"))


def no_tables_warning(store: str, consequence: str) -> str:
    """What train, label, evaluate and ensemble say of a store written before ``neutral/`` tables
    existed, read by a member that subtracts the neutral: ``consequence`` (what it does instead),
    and how to add them."""
    return (f"{store} has no neutral/ tables (preprocessed before they existed): {consequence}; run the same "
            "`facsflow preprocess` again first (it resumes and writes only them)")
