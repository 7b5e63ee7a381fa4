"""A teacher's soft AU labels for feature-store rows (distillation's first half), Ray-free.

The teacher is any ensemble (``components.ensemble`` manifest; the built-in's too) answering
through the one inference path, ``Predictor.predict_store_rows``: the rows enter the orchestration
as tracks at the members, as evaluation's rows do (``workflows.store_scoring``). ``workflows.label`` runs
this over a whole store with Ray Data and writes ``LABELS_SCHEMA`` tables.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from components.batches import VIDEO_BATCH_ROWS

__all__ = ["label_columns", "teacher_soft_labels", "rows_with_inputs"]


def label_columns(teacher_aus: Sequence[int], label_aus: Sequence[int]) -> list[int]:
    """For each AU of ``label_aus``, its column in the teacher's answer, or -1 (teacher lacks it)."""
    where = {int(a): i for i, a in enumerate(teacher_aus)}
    return [where.get(int(a), -1) for a in label_aus]


def rows_with_inputs(rows: dict[str, Any], needs_blendshapes: bool) -> np.ndarray:
    """bool (N,): rows holding every input the teacher's members declare. Only blendshapes can be
    missing from a stored row (null where MediaPipe fitted no mesh, or a store preprocessed
    without it); crops and landmarks every row has."""
    n = len(rows["sample_id"])
    if not needs_blendshapes:
        return np.ones(n, bool)
    col = rows.get("blendshapes")
    if col is None:
        return np.zeros(n, bool)
    return np.array([v is not None and len(v) == 52 for v in col], bool)


def teacher_soft_labels(predictor: Any, rows: dict[str, Any], label_aus: Sequence[int],
                        store_diff_steps: Sequence[int], batch_rows: int = VIDEO_BATCH_ROWS) -> np.ndarray:
    """float32 (N, len(label_aus)): the teacher's ensemble probability per row and AU, NaN where
    unknown (an AU the teacher does not predict; a row without the teacher's inputs).

    ``rows``: columns of feature-store rows of one video (or chunk) in store order (``image``,
    ``landmarks``, ``landmark_diff``, ``diff_valid``, ``blendshapes``, ids, ``frame_order``).
    Rows are answered ``batch_rows`` at a time in that order, the segments evaluation cuts
    (every member votes, video members included: the rows carry their temporal differences).
    """
    n = len(rows["sample_id"])
    out = np.full((n, len(label_aus)), np.nan, np.float32)
    cols = np.asarray(label_columns(predictor.aus, label_aus))
    known = cols >= 0
    ok = np.flatnonzero(rows_with_inputs(rows, predictor.plan.blendshapes))
    if not len(ok) or not known.any():
        return out
    for lo in range(0, len(ok), batch_rows):
        idx = ok[lo:lo + batch_rows]
        batch = {k: _take(v, idx) for k, v in rows.items()}
        probs = predictor.predict_store_rows(batch, store_diff_steps)["probs"]
        out[np.ix_(idx, np.flatnonzero(known))] = np.asarray(probs, np.float32)[:, cols[known]]
    return out


def _take(col: Any, idx: np.ndarray) -> Any:
    if isinstance(col, np.ndarray):
        return col[idx]
    return [col[i] for i in idx]
