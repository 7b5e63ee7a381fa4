"""Per-AU decision thresholds: tuned on validation subjects, applied to test predictions.

The fallback threshold is 0.5. ``tune_thresholds`` picks for each AU the grid value that
maximises the AU's F1 on the **validation subjects** (carved from the training subjects). Call
it on validation outputs only, never on the test subjects: thresholds tuned on test inflate the
reported F1. Pass ``val_subjects`` and ``test_subjects`` and it checks that they are disjoint.

Training does this by default at every epoch (``validation_decisions``; ``TrainConfig.tune_thresholds``)
and stores the thresholds in that epoch's checkpoint, so the checkpoint a run selects carries
its own epoch's thresholds: evaluate applies them, and an ensemble manifest copies them (or, when
asked, the ones an evaluation re-tuned, its ``thresholds.json``).

A probability counts as a positive prediction when ``prob >= threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from components.metrics.occurrence import check_labels, evaluate_occurrence, f1_from_counts

__all__ = ["DEFAULT_GRID", "DEFAULT_THRESHOLD", "tune_thresholds", "apply_thresholds", "validation_decisions"]

DEFAULT_THRESHOLD = 0.5
"""Threshold used where none is tuned (and where an AU has no validation positive)."""

DEFAULT_GRID = np.round(np.concatenate([[0.0, 0.01, 0.02, 0.03], np.linspace(0.05, 0.95, 19)]), 10)
"""0 (every frame positive), 0.01, 0.02, 0.03, then 0.05, 0.10, ..., 0.95. The low end lets an AU
whose scores stay small (a rare AU, an under-trained model) still be cut where its ranking is
informative, and falls back to predicting the AU everywhere when that is what maximises
validation F1 (the F1-optimal decision for uninformative scores, 2p/(1+p))."""


def apply_thresholds(probs: np.ndarray, thr: "float | Sequence[float] | np.ndarray") -> np.ndarray:
    """Binary int8 predictions ``probs >= thr`` (thr a scalar or one value per AU column)."""
    p = np.asarray(probs, dtype=float)
    t = np.asarray(thr, dtype=float)
    if t.ndim > 1 or (t.ndim == 1 and (p.ndim != 2 or t.shape[0] != p.shape[1])):
        raise ValueError(f"thresholds of shape {t.shape} do not fit probs of shape {p.shape}")
    return (p >= t).astype(np.int8)


def tune_thresholds(
    probs_val: np.ndarray,
    labels_val: np.ndarray,
    grid: "Sequence[float] | np.ndarray" = DEFAULT_GRID,
    val_subjects: "Sequence[Any] | None" = None,
    test_subjects: "Sequence[Any] | None" = None,
) -> np.ndarray:
    """Per-AU threshold maximising validation F1 over ``grid``; call on validation data only.

    Ties (equal F1 within 1e-12) go to the grid value closest to 0.5, then to the lower
    value. An AU without a known positive in validation keeps the default 0.5 (F1 there is 0
    or undefined at every threshold and says nothing). Raises when ``val_subjects`` and
    ``test_subjects`` are both given and share a subject.
    """
    if val_subjects is not None and test_subjects is not None:
        leak = sorted(set(np.asarray(val_subjects).tolist())
                      & set(np.asarray(test_subjects).tolist()))
        if leak:
            raise ValueError(f"thresholds must be tuned on validation subjects only; subjects "
                             f"{leak[:5]} are also test subjects")
    labels = check_labels(labels_val, "labels_val")
    probs = np.asarray(probs_val, dtype=float)
    if probs.shape != labels.shape:
        raise ValueError(f"probs_val {probs.shape} and labels_val {labels.shape} differ in shape")
    g = np.asarray(grid, dtype=float).ravel()
    if g.size == 0 or not np.all((g >= 0) & (g <= 1)):
        raise ValueError(f"grid must be non-empty values in [0, 1], got {g.tolist()}")
    # Candidate order encodes the tie-break: stable argmax keeps the first best.
    order = np.lexsort((g, np.abs(g - DEFAULT_THRESHOLD)))
    g = g[order]
    out = np.full(labels.shape[1], DEFAULT_THRESHOLD)
    for k in range(labels.shape[1]):
        known = labels[:, k] >= 0
        y = labels[known, k] == 1
        if not y.any():
            continue
        pred = probs[known, k][None, :] >= g[:, None]
        tp = (pred & y).sum(axis=1)
        fp = (pred & ~y).sum(axis=1)
        fn = (~pred & y).sum(axis=1)
        f1 = np.nan_to_num(f1_from_counts(tp, fp, fn), nan=-1.0)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)[0]
        out[k] = g[best]
    return out


def validation_decisions(probs_val: np.ndarray, labels_val: np.ndarray, aus: Sequence[int],
                         tune: bool = True) -> dict[str, Any]:
    """What one epoch's validation outputs say about the model's decisions, as epoch metrics.

    ``val_thresholds``: per-AU thresholds tuned on these outputs (``tune``) or 0.5 each;
    ``val_tuned_mean_f1`` and ``val_tuned_mean_accuracy``: mean F1 and accuracy over AUs at them
    (tuned on the same frames, so optimistic, alike for every epoch: they rank epochs, they are
    no held-out score); ``val_positive_rate``: share of known cells predicted positive at 0.5 (0 means
    the model predicts no AU there); ``val_all_positive_f1``: mean F1 of predicting every AU
    everywhere, the trivial line the model has to beat.
    """
    labels = check_labels(labels_val, "labels_val")
    probs = np.asarray(probs_val, dtype=float)
    known = labels >= 0
    if not known.any():
        return {"val_thresholds": [DEFAULT_THRESHOLD] * len(aus), "val_tuned_mean_f1": 0.0,
                "val_tuned_mean_accuracy": 0.0, "val_positive_rate": 0.0, "val_all_positive_f1": 0.0}
    thr = tune_thresholds(probs, labels) if tune else np.full(len(aus), DEFAULT_THRESHOLD)
    tuned = evaluate_occurrence(probs, labels, aus, thr)
    every = evaluate_occurrence(np.ones_like(probs), labels, aus, DEFAULT_THRESHOLD)["mean_f1"]
    return {"val_thresholds": [float(t) for t in thr], "val_tuned_mean_f1": float(tuned["mean_f1"] or 0.0),
            "val_tuned_mean_accuracy": float(tuned["mean_accuracy"] or 0.0),
            "val_positive_rate": float((probs[known] >= DEFAULT_THRESHOLD).mean()),
            "val_all_positive_f1": float(every or 0.0)}
