"""Feature-store schema (preprocess → train): versioned, with the AU list in Parquet metadata.

Every input frame lands in exactly one of ``<store>/frames/`` (``FRAMES_SCHEMA``) or
``<store>/rejects/`` (``REJECTS_SCHEMA``). Model-input transforms (mask, gray, Sobel) are not
stored: they run after augmentation (``components.faces.transforms``).

Labels and where they come from. A row's ``labels`` column holds the dataset's own labels (a
person's annotation, or a synthetic generator's). A teacher's soft labels (``facsflow label``,
``workflows.label``) live beside the rows, not in them: ``<store>/labels/<stem>.parquet``
(``LABELS_SCHEMA``) holds one row per row of ``frames/<stem>.parquet``, joined on ``sample_id``
(the row key: one face in one frame). A separate table rather than new ``frames/`` columns because
preprocessing stays the only writer of ``frames/`` (its resumption and its every-frame-once
accounting are untouched, and the crops are not rewritten to add a few floats), a teacher can be
replaced by clearing ``labels/`` alone, and stores without ``labels/`` (every store written before
it existed) read exactly as before:
a row without a labels row has no soft labels and its ``labels`` are its only ones, source
``LABEL_SOURCE_HUMAN`` ("human": the dataset's own labels; synthetic data written in a real
layout by ``facsflow synth`` reads the same, the store cannot tell them apart).
``<store>/labels.json`` marks a finished labelling (teacher, AU list, the teacher's per-AU thresholds, counts).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "FRAMES_SCHEMA", "REJECTS_SCHEMA", "LABELS_SCHEMA", "NEUTRAL_SCHEMA", "store_metadata",
           "read_store_metadata", "REJECT_REASONS", "LABEL_SOURCE_HUMAN", "LABEL_SOURCE_TEACHER", "TEACHER_PREFIX",
           "teacher_source"]

SCHEMA_VERSION = 1

FRAMES_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("group", pa.string(), nullable=False),
    pa.field("video", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("frame_order", pa.int32(), nullable=False),
    pa.field("timestamp", pa.float64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("face_id", pa.int16(), nullable=False),
    pa.field("labels", pa.list_(pa.int8()), nullable=False),
    pa.field("intensities", pa.list_(pa.int8()), nullable=False),
    pa.field("image", pa.binary(), nullable=False),
    pa.field("image_size", pa.int16(), nullable=False),
    pa.field("landmarks", pa.list_(pa.float32()), nullable=False),
    pa.field("det_score", pa.float32(), nullable=False),
    pa.field("tracked", pa.bool_(), nullable=False),
    pa.field("landmark_diff", pa.list_(pa.float32()), nullable=False),
    pa.field("diff_valid", pa.list_(pa.bool_()), nullable=False),
    pa.field("blendshapes", pa.list_(pa.float32()), nullable=True),
    pa.field("geometry", pa.list_(pa.float32()), nullable=True),
])
"""One row per face per frame.

- labels: int8 per AU of the store's AU list, 1/0/-1 (unknown);
- intensities: int8 0-5 per AU, -1 unknown; empty list where the dataset has none;
- image: JPEG of the aligned crop (image_size × image_size, RGB);
- landmarks: 136 float32, (x0, y0, x1, y1, ...) in crop pixel coordinates;
- tracked: landmarks carried from the previous frame rather than a fresh detection;
- landmark_diff: len(diff_steps) × 136 float32, diff_t = l_{t+s} − l_{t−s} (crop coords);
- diff_valid: per step, False where t−s or t+s fell outside the video (edge, clamped);
- blendshapes: 52 float32 MediaPipe blendshape scores (``BLENDSHAPE_NAMES`` order) when the store
  was preprocessed with the 'mediapipe' landmarker, else null (optional: stores written before
  it have no such column and read the same);
- geometry: K float32 AU geometry features of the mesh (``components.faces.au_geometry``,
  ``GEOMETRY_NAMES`` order) beside the blendshapes, else null (optional likewise: a store without
  it is answered by the blendshape member from blendshapes alone).
"""

REJECTS_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("video", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
])

LABELS_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("soft_labels", pa.list_(pa.float32()), nullable=False),
    pa.field("label_source", pa.string(), nullable=False),
])
"""One row per ``frames/`` row of the same stem (``<store>/labels/<stem>.parquet``).

- sample_id: the ``frames/`` row it labels;
- soft_labels: float32 per AU of the labels' AU list (Parquet metadata ``facsflow.aus``, the same
  as ``store.json``'s when the store has one; a store without an AU list, unlabeled video of the
  'media' adapter, takes the teacher's), the teacher's probability in [0, 1]; NaN = unknown (an AU
  the teacher does not predict, or a row the teacher had no input for, e.g. no blendshapes);
- label_source: ``teacher_source(name, version)``, "teacher:<name>@<version>".
"""

NEUTRAL_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("neutral", pa.list_(pa.float32()), nullable=True),
])
"""One row per ``frames/`` row of the same stem (``<store>/neutral/<stem>.parquet``), written by
preprocessing when the rows carry blendshapes (``components.store.neutral``).

- sample_id: the ``frames/`` row;
- neutral: float32 (52 + K), the running neutral of [blendshapes, geometry] of the row's face
  track (dataset, subject, video, face_id) up to its frame, over every chunk of the video
  (``components.faces.au_geometry.track_neutral``, what serving computes over a whole track);
  null where the row has no blendshapes.

A table beside the rows for the reasons ``LABELS_SCHEMA`` is one, and because a chunk's file
cannot hold it: a chunk's neutral reads every earlier chunk of its video.
"""

LABEL_SOURCE_HUMAN = "human"
"""Source of a row's own ``labels`` column (the dataset's labels)."""
LABEL_SOURCE_TEACHER = "teacher"
"""Training's name (``TrainConfig.label_sources``) for a teacher's soft labels, whichever teacher."""
TEACHER_PREFIX = "teacher:"


def teacher_source(name: str, version: str) -> str:
    """``label_source`` of a teacher's soft labels: ``teacher:<name>@<version>``."""
    if not name or "@" in name or not version:
        raise ValueError(f"a teacher needs a name without '@' and a version, got {name!r}, {version!r}")
    return f"{TEACHER_PREFIX}{name}@{version}"


REJECT_REASONS = ("unreadable", "missing image", "no face", "landmark failure", "label mismatch")


def store_metadata(aus: Sequence[int], diff_steps: Sequence[int], image_size: int,
                   extra: "dict[str, Any] | None" = None) -> dict[bytes, bytes]:
    """Parquet key-value metadata of a feature store file."""
    meta = {
        "facsflow.schema_version": str(SCHEMA_VERSION),
        "facsflow.aus": json.dumps([int(a) for a in aus]),
        "facsflow.diff_steps": json.dumps([int(s) for s in diff_steps]),
        "facsflow.image_size": str(int(image_size)),
    }
    for k, v in (extra or {}).items():
        meta[f"facsflow.{k}"] = v if isinstance(v, str) else json.dumps(v)
    return {k.encode(): v.encode() for k, v in meta.items()}


def read_store_metadata(schema: pa.Schema) -> dict[str, Any]:
    """Decode facsflow metadata from a Parquet schema; raises if the version is unknown."""
    raw = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()
           if k.decode().startswith("facsflow.")}
    if "facsflow.schema_version" not in raw:
        raise ValueError("not a facsflow feature store file (no facsflow.schema_version metadata)")
    version = int(raw["facsflow.schema_version"])
    if version != SCHEMA_VERSION:
        raise ValueError(f"feature store schema version {version}; this facsflow reads {SCHEMA_VERSION}")
    return {
        "schema_version": version,
        "aus": tuple(json.loads(raw["facsflow.aus"])),
        "diff_steps": tuple(json.loads(raw["facsflow.diff_steps"])),
        "image_size": int(raw["facsflow.image_size"]),
    }
