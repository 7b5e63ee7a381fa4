"""AU intensity metrics: ICC(3,1), mean absolute error and Pearson correlation per AU.

``true`` holds intensities (e.g. DISFA 0-5) with -1 = unknown; those entries are excluded
per AU. ``pred`` is a float array of the same shape. Each metric takes 1-D arrays (one AU,
returns a float) or 2-D arrays (N, n_AU) (returns one value per AU). A value that is
undefined (no known entry, zero variance) is NaN, without a NumPy warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.au import au_name, validate_au_list
from components.metrics.occurrence import nanmean

__all__ = ["icc_3_1_matrix", "icc_3_1", "mae", "pearson", "evaluate_intensity"]


def icc_3_1_matrix(ratings: np.ndarray) -> float:
    """ICC(3,1) of an (n targets × k raters) matrix: Shrout & Fleiss (1979), Case 3.

    Two-way mixed model, consistency, single rater:
    ``ICC(3,1) = (BMS - EMS) / (BMS + (k - 1) EMS)`` with BMS the between-targets mean square
    ``k Σ_i (mean_i - grand)² / (n - 1)`` and EMS the residual mean square
    ``(SS_total - SS_targets - SS_raters) / ((n - 1)(k - 1))``. NaN when n < 2, k < 2 or the
    denominator is 0 (all ratings constant).
    """
    y = np.asarray(ratings, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"ratings: expected (n targets, k raters), got shape {y.shape}")
    n, k = y.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = y.mean()
    ss_total = ((y - grand) ** 2).sum()
    ss_targets = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_raters = n * ((y.mean(axis=0) - grand) ** 2).sum()
    bms = ss_targets / (n - 1)
    ems = (ss_total - ss_targets - ss_raters) / ((n - 1) * (k - 1))
    den = bms + (k - 1) * ems
    return float((bms - ems) / den) if den > 0 else float("nan")


def _per_au(
    fn: Callable[[np.ndarray, np.ndarray], float], pred: np.ndarray, true: np.ndarray
) -> "float | np.ndarray":
    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    if p.shape != t.shape or p.ndim not in (1, 2):
        raise ValueError(f"pred {p.shape} and true {t.shape} must be the same 1-D or 2-D shape")
    if np.isnan(t).any():
        raise ValueError("true: NaN found; use -1 for unknown intensities")
    if not np.isfinite(p).all():
        raise ValueError("pred: non-finite value found")
    if p.ndim == 1:
        keep = t >= 0
        return fn(p[keep], t[keep])
    out = np.empty(p.shape[1])
    for j in range(p.shape[1]):
        keep = t[:, j] >= 0
        out[j] = fn(p[keep, j], t[keep, j])
    return out


def _icc(p: np.ndarray, t: np.ndarray) -> float:
    return icc_3_1_matrix(np.stack([p, t], axis=1))


def _mae(p: np.ndarray, t: np.ndarray) -> float:
    return float(np.abs(p - t).mean()) if p.size else float("nan")


def _pearson(p: np.ndarray, t: np.ndarray) -> float:
    if p.size < 2:
        return float("nan")
    dp, dt = p - p.mean(), t - t.mean()
    den = np.sqrt((dp * dp).sum() * (dt * dt).sum())
    return float((dp * dt).sum() / den) if den > 0 else float("nan")


def icc_3_1(pred: np.ndarray, true: np.ndarray) -> "float | np.ndarray":
    """ICC(3,1) between prediction and annotation (two raters), per AU; -1 excluded."""
    return _per_au(_icc, pred, true)


def mae(pred: np.ndarray, true: np.ndarray) -> "float | np.ndarray":
    """Mean absolute error per AU over known entries; -1 excluded."""
    return _per_au(_mae, pred, true)


def pearson(pred: np.ndarray, true: np.ndarray) -> "float | np.ndarray":
    """Pearson correlation per AU over known entries; NaN when either side is constant."""
    return _per_au(_pearson, pred, true)


def evaluate_intensity(
    pred: np.ndarray, true: np.ndarray, aus: Sequence[int]
) -> dict[str, Any]:
    """Per-AU ICC(3,1), MAE and Pearson, and their means over AUs, as a JSON-ready dict."""
    aus = validate_au_list(aus)
    p = np.asarray(pred, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(aus):
        raise ValueError(f"pred of shape {p.shape} does not have one column per AU of {list(aus)}")
    vals = {"icc": icc_3_1(pred, true), "mae": mae(pred, true), "pearson": pearson(pred, true)}

    def f(x: float) -> "float | None":
        return float(x) if np.isfinite(x) else None

    return {
        "aus": list(aus),
        "per_au": {au_name(a): {m: f(v[j]) for m, v in vals.items()} for j, a in enumerate(aus)},
        **{f"mean_{m}": f(nanmean(v)) for m, v in vals.items()},
    }
