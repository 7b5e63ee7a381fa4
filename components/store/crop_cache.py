"""The crop cache: what training reads every epoch and never changes, materialised once.

A feature store keeps each face as JPEG bytes at the store's crop size with variable-length list
columns; every epoch would decode, resize and unpack them again, row by row. The cache holds, per
frames file, the same rows decoded for one crop size, min(model input size, stored size)
(``decode_crops``: uint8 crops, landmarks in their pixel-centre coordinates) and every list column as a fixed-size
binary value, so an epoch turns a Parquet block into numpy arrays without per-row Python
(``cached_columns``). Augmentation and the model's input transform stay per epoch
(``components.batches.model_batch``).

Layout, beside the frames: ``<store>/crop_cache/<size>px-<key>/<frames path>.parquet`` and
``cache.json`` (written last: a cache without it is incomplete). ``key`` hashes the store's
``store.json`` (face pipeline, crop size, AU list, difference steps) and every frames file's
name, size and modification time: preprocessing the store again (or adding files) gives a new key,
and the stale cache is removed when the new one is written.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from components import storage
from components.faces.transforms import resize_sample
from components.store.rows import decode_jpeg
from components.video_key import subject_index, video_index

__all__ = ["CACHE_VERSION", "crop_cache_size", "cache_key", "cache_root", "cache_file", "decode_crops", "crop_cache_table",
           "cached_columns", "READ_COLUMNS"]

CACHE_VERSION = 2
"""Bumped when the cache's columns change (part of the key)."""

READ_COLUMNS = ["sample_id", "dataset", "subject", "video", "face_id", "frame_order", "image", "landmarks",
                "landmark_diff", "diff_valid", "labels", "intensities"]
"""Store columns a cache file is built from."""

ID_COLUMNS = ("sample_id", "dataset", "subject", "video")


def crop_cache_size(model_size: int, store_size: "int | None") -> int:
    """The crop side of the cache a model of ``model_size`` reads: never larger than the store's
    crops (a larger crop holds no more information; the worker grows it, ``model_batch``)."""
    return min(int(model_size), int(store_size or model_size))


def cache_key(store: str, size: int, frames: Sequence[str]) -> str:
    """Hex key of the cache of ``store`` at ``size`` px over its ``frames`` files (see module doc)."""
    fs, _ = storage.resolve(storage.join(store, "store.json"))
    infos = fs.get_file_info([storage.resolve(f)[1] for f in frames])
    root = storage.join(store, "frames")
    files = [[f[len(root):], i.size, i.mtime_ns or 0] for f, i in zip(frames, infos)]
    text = json.dumps({"version": CACHE_VERSION, "size": int(size), "store": json.loads(
        storage.read_text(storage.join(store, "store.json"))), "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_root(store: str, size: int, key: str) -> str:
    return storage.join(store, "crop_cache", f"{int(size)}px-{key[:16]}")


def cache_file(store: str, root: str, frames_file: str) -> str:
    """The cache file of one frames file (the same path below the cache root)."""
    frames = storage.join(store, "frames")
    if not frames_file.startswith(frames + "/"):
        raise ValueError(f"{frames_file}: not a frames file of {store}")
    return storage.join(root, frames_file[len(frames) + 1:])


def decode_crops(images: Sequence[Any], landmarks: Sequence[Any], size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored crops (JPEG bytes, or decoded HxWx3 uint8) and their 68 landmarks → uint8 crops
    (B, t, t, 3) at t = min(``size``, the first crop's side), landmarks (B, 68, 2) in pixel-centre
    coordinates of a ``size`` crop, and (B,) ``size / stored side``: the per-row work that never
    changes. Larger crops shrink to ``size`` here (``transforms.resize_sample``); smaller ones stay
    as they are, four times fewer bytes at 112 → 224 px, and ``components.batches.model_batch``
    grows them on the worker, the only place a crop grows (``upsize_batch``, or the augmentation's
    warp sampling the small crop at the model's size). A row of another side than the first is
    resized to t (``resize_sample``)."""
    n = len(images)
    decoded = [img if isinstance(img, np.ndarray) else decode_jpeg(img) for img in images]
    side = min(int(size), decoded[0].shape[0]) if n else int(size)
    crops = np.zeros((n, side, side, 3), np.uint8)
    lms_out = np.zeros((n, 68, 2), np.float32)
    scale = np.zeros(n, np.float32)
    for i, img in enumerate(decoded):
        lms = np.asarray(landmarks[i], np.float32).reshape(68, 2)
        crops[i], lms_out[i] = resize_sample(img, lms, side)
        scale[i] = size / img.shape[0]
    if side < size:
        lms_out = ((lms_out + 0.5) * (size / side) - 0.5).astype(np.float32)
    return crops, lms_out, scale


def _fixed(arr: np.ndarray) -> pa.Array:
    """(B, ...) array → fixed-size binary column of its rows' bytes (Parquet FIXED_LEN_BYTE_ARRAY:
    no per-element levels to decode, unlike a list column)."""
    arr = np.ascontiguousarray(arr)
    width = int(arr[0].nbytes) if len(arr) else max(1, int(np.prod(arr.shape[1:])) * arr.itemsize)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(arr), [None, pa.py_buffer(arr.tobytes())])


def _rows(col: Any, n: int, width: int, dtype: Any, fill: float, what: str, ids: Sequence[str]) -> np.ndarray:
    """A list column → (n, width) ``dtype``; empty rows are ``fill`` (unknown), other lengths an error."""
    out = np.full((n, width), fill, dtype)
    for i, v in enumerate(col):
        if v is None or len(v) == 0:
            continue
        if len(v) != width:
            raise ValueError(f"{ids[i]}: {what} has {len(v)} values, the store declares {width}")
        out[i] = np.asarray(v, dtype)
    return out


def crop_cache_table(batch: dict[str, Any], size: int, n_steps: int, n_aus: int) -> pa.Table:
    """One frames file's rows (``READ_COLUMNS`` as a columnar dict) → its cache table, crops at
    ``size`` (``crop_cache_size``: at most the stored side, so landmarks are in their coordinates)."""
    n = len(batch["image"])
    ids = [str(s) for s in batch["sample_id"]]
    crops, lms, scale = decode_crops(batch["image"], batch["landmarks"], size)
    cols: dict[str, Any] = {k: pa.array([str(v) for v in batch[k]]) for k in ID_COLUMNS}
    cols["face_id"] = pa.array(np.asarray(batch["face_id"], np.int16))
    cols["frame_order"] = pa.array(np.asarray(batch["frame_order"], np.int32))
    cols["video_index"] = pa.array(video_index(batch))
    cols["subject_index"] = pa.array(subject_index(batch))
    cols["crop_scale"] = pa.array(scale)
    cols["crop"] = _fixed(crops)
    cols["landmarks"] = _fixed(lms)
    cols["landmark_diff"] = _fixed(_rows(batch["landmark_diff"], n, n_steps * 136, np.float32, 0.0,
                                         "landmark_diff", ids))
    cols["diff_valid"] = _fixed(_rows(batch["diff_valid"], n, n_steps, bool, False, "diff_valid", ids))
    cols["labels"] = _fixed(_rows(batch["labels"], n, n_aus, np.int8, -1, "labels", ids))
    cols["intensities"] = _fixed(_rows(batch["intensities"], n, n_aus, np.int8, -1, "intensities", ids))
    return pa.table(cols)


def cached_columns(table: pa.Table, size: int, n_steps: int, n_aus: int) -> dict[str, np.ndarray]:
    """A block of cache rows → the columnar batch ``components.batches.RowDecoder`` reads: crop
    (B, S, S, 3) uint8, landmarks (B, 68, 2), crop_scale, landmark_diff (B, steps, 68, 2),
    diff_valid, labels and intensities (B, n_AU) int8 (-1 unknown), the two int64 indices and
    whichever id columns the block has. Views of the block's buffers where the layout allows."""
    shapes = {"crop": ((size, size, 3), np.uint8), "landmarks": ((68, 2), np.float32),
              "landmark_diff": ((n_steps, 68, 2), np.float32), "diff_valid": ((n_steps,), bool),
              "labels": ((n_aus,), np.int8), "intensities": ((n_aus,), np.int8)}
    out: dict[str, np.ndarray] = {}
    n = table.num_rows
    for name in table.column_names:
        col = table.column(name)
        if name in shapes:
            shape, dtype = shapes[name]
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            width = arr.type.byte_width
            if width != int(np.prod(shape)) * np.dtype(dtype).itemsize:
                raise ValueError(f"crop cache column {name}: {width} bytes a row, expected {shape} {np.dtype(dtype)}"
                                 " (a cache of another store or size: delete <store>/crop_cache)")
            raw = np.frombuffer(arr.buffers()[1], np.uint8, count=width * (arr.offset + n))[width * arr.offset:]
            out[name] = raw.view(dtype).reshape((n, *shape))
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.asarray(col.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy()
    return out
