"""A student scored against a teacher's soft labels (distillation), Ray-free.

Where a store has no labels of its own (unlabeled video labelled by ``facsflow label``), the
only reference is the teacher: its decisions (soft label >= the teacher's own per-AU threshold,
recorded in ``labels.json`` at labelling time) give a student's *agreement F1* (positive-class
F1 of the student's decisions with the teacher's decisions as the truth), and the per-AU Pearson
correlation between the student's probabilities and the teacher's soft labels says how well it
follows the teacher below and above the thresholds. Unknown soft labels (NaN: an AU the teacher
does not predict, a row without the teacher's input) are left out of both, per AU.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from components.metrics.occurrence import _f, f1_per_au, nanmean

__all__ = ["teacher_decisions", "pearson_per_au", "teacher_agreement"]


def teacher_decisions(soft: np.ndarray, thresholds: "Sequence[float | None] | np.ndarray") -> np.ndarray:
    """int8 (N, n_AU) labels from a teacher's soft labels: 1 where soft >= the AU's threshold,
    0 below, -1 unknown (NaN soft label, or no threshold for the AU: the teacher lacks it)."""
    soft = np.asarray(soft, np.float64)
    thr = np.array([np.nan if t is None else float(t) for t in thresholds], np.float64)
    if soft.ndim != 2 or soft.shape[1] != len(thr):
        raise ValueError(f"soft labels of shape {soft.shape} for {len(thr)} thresholds")
    known = np.isfinite(soft) & np.isfinite(thr)[None, :]
    out = np.full(soft.shape, -1, np.int8)
    with np.errstate(invalid="ignore"):
        out[known] = (soft >= thr[None, :])[known]
    return out


def pearson_per_au(probs: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Pearson correlation per AU between ``probs`` and ``soft`` over rows where ``soft`` is
    known; NaN where fewer than 2 such rows or either side is constant there."""
    probs = np.asarray(probs, np.float64)
    soft = np.asarray(soft, np.float64)
    if probs.shape != soft.shape:
        raise ValueError(f"probs of shape {probs.shape} and soft labels of shape {soft.shape}")
    out = np.full(probs.shape[1], np.nan)
    for j in range(probs.shape[1]):
        ok = np.isfinite(soft[:, j])
        x, y = probs[ok, j], soft[ok, j]
        if len(x) < 2:
            continue
        dx, dy = x - x.mean(), y - y.mean()
        den = np.sqrt((dx * dx).sum() * (dy * dy).sum())
        if den > 0:
            out[j] = float((dx * dy).sum() / den)
    return out


def teacher_agreement(probs: np.ndarray, thresholds: "Sequence[float] | np.ndarray", soft: np.ndarray,
                      teacher_thresholds: "Sequence[float | None]", aus: Sequence[int]) -> dict[str, Any]:
    """A student's probabilities (``thresholds``: its own decision thresholds) against a teacher's
    soft labels (``teacher_thresholds``: the teacher's). Keys: ``aus``, ``agreement_f1`` and
    ``correlation`` (per AU, None where undefined), their means over the AUs that have one
    (``mean_agreement_f1``, ``mean_correlation``), ``n_rows`` and per-AU ``n_known``."""
    probs = np.asarray(probs, np.float64)
    aus = [int(a) for a in aus]
    if probs.ndim != 2 or probs.shape[1] != len(aus):
        raise ValueError(f"probs of shape {probs.shape} for AUs {aus}")
    truth = teacher_decisions(soft, teacher_thresholds)
    preds = (probs >= np.asarray(thresholds, np.float64)[None, :]).astype(np.int8)
    f1 = f1_per_au(preds, truth)
    r = pearson_per_au(probs, soft)
    return {"aus": aus,
            "agreement_f1": {a: _f(v) for a, v in zip(aus, f1)}, "mean_agreement_f1": _f(nanmean(f1)),
            "correlation": {a: _f(v) for a, v in zip(aus, r)}, "mean_correlation": _f(nanmean(r)),
            "n_rows": int(len(probs)), "n_known": {a: int(k) for a, k in zip(aus, (truth >= 0).sum(0))}}
