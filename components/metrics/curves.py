"""Threshold-free views of AU predictions for the report: precision-recall curves, average
precision, and AU co-occurrence matrices (how often AU j is on when AU i is on).

Unknown labels (-1) are excluded per AU, as in ``components.metrics.occurrence``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.metrics.occurrence import safe_divide, check_labels

__all__ = ["pr_curve", "average_precision", "cooccurrence", "pr_curves_summary"]


def pr_curve(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray] | None:
    """Precision and recall of one AU at every distinct score used as threshold (>=).

    ``scores`` and ``labels`` are 1-D; entries with label -1 are dropped. Returns
    ``{'precision', 'recall', 'thresholds'}`` ordered by decreasing threshold, or None when
    the AU has no known positive (recall undefined).
    """
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    keep = y >= 0
    s, y = s[keep], y[keep] == 1
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s)
    s, y = s[order], y[order]
    # Last index of each run of equal scores: a threshold admits all samples tied at it.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(y)[last].astype(float)
    fp = (last + 1) - tp
    return {"precision": tp / (tp + fp), "recall": tp / n_pos, "thresholds": s[last]}


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise area under the PR curve, sum_n (R_n - R_{n-1}) P_n; NaN without positives."""
    c = pr_curve(scores, labels)
    if c is None:
        return float("nan")
    recall_steps = np.diff(np.r_[0.0, c["recall"]])
    return float((recall_steps * c["precision"]).sum())


def cooccurrence(binary: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Matrix C[i, j] = P(AU j on | AU i on), over samples where both AUs are known.

    ``binary`` is (N, n_AU) with 1 = on; ``known`` an optional boolean mask of the same shape
    (default: ``binary >= 0``, so a label array with -1 can be passed directly). A row whose
    AU is never on is NaN. Pass predictions with the labels' mask to compare predicted and
    true co-occurrence on the same entries.
    """
    b = np.asarray(binary)
    mask = (b >= 0) if known is None else np.asarray(known, dtype=bool)
    if mask.shape != b.shape or b.ndim != 2:
        raise ValueError(f"binary {b.shape} and known {mask.shape} must be the same 2-D shape")
    on = ((b == 1) & mask).astype(float)
    num = on.T @ on
    den = on.T @ mask.astype(float)
    return safe_divide(num, den)


def pr_curves_summary(
    probs: np.ndarray, labels: np.ndarray, max_points: int = 100
) -> list[dict[str, Any] | None]:
    """Per-AU PR curves thinned to at most ``max_points`` points, plus average precision.

    JSON-ready: one ``{'precision': [...], 'recall': [...], 'ap': float}`` (or None for an
    AU without positives) per column.
    """
    labels = check_labels(labels)
    probs = np.asarray(probs, dtype=float)
    out: list[dict[str, Any] | None] = []
    for k in range(labels.shape[1]):
        c = pr_curve(probs[:, k], labels[:, k])
        if c is None:
            out.append(None)
            continue
        recall_steps = np.diff(np.r_[0.0, c["recall"]])
        ap = float((recall_steps * c["precision"]).sum())
        idx = np.unique(np.linspace(0, c["recall"].size - 1, min(max_points, c["recall"].size))
                        .round().astype(int))
        out.append({"precision": c["precision"][idx].round(5).tolist(),
                    "recall": c["recall"][idx].round(5).tolist(), "ap": ap})
    return out
