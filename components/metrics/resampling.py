"""Uncertainty of AU metrics: bootstrap confidence intervals over test subjects, a paired
bootstrap between two models scored on the same samples, and a sign-flip permutation test
over folds.

Frames of one subject are strongly correlated, so the resampling unit is the subject, never
the frame: each replicate draws the test subjects with replacement and takes all frames of
every drawn subject (a subject drawn twice counts twice). Intervals are percentile
intervals. Every function is deterministic for a given ``seed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.metrics.occurrence import check_labels, f1_from_counts, safe_divide

__all__ = [
    "bootstrap_ci",
    "subject_counts",
    "bootstrap_counts",
    "bootstrap_occurrence",
    "paired_bootstrap_counts",
    "paired_bootstrap",
    "sign_flip_test",
    "OCCURRENCE_STATISTICS",
]

OCCURRENCE_STATISTICS = ("mean_f1", "accuracy", "abaw")
"""Statistics ``bootstrap_occurrence`` and ``paired_bootstrap`` can resample."""


def _subject_index(subjects: Sequence[Any], n: int) -> tuple[np.ndarray, int]:
    subj = np.asarray(subjects)
    if subj.shape != (n,):
        raise ValueError(f"subjects: expected one entry per sample ({n}), got shape {subj.shape}")
    _, inverse = np.unique(subj, return_inverse=True)
    n_subj = int(inverse.max()) + 1 if n else 0
    if n_subj < 2:
        raise ValueError(f"bootstrap over subjects needs at least 2 subjects, got {n_subj}")
    return inverse.ravel(), n_subj


def _interval(estimate: float, replicates: np.ndarray, alpha: float) -> dict[str, Any]:
    ok = replicates[np.isfinite(replicates)]
    low, high = (np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if ok.size
                 else (np.nan, np.nan))
    return {
        "estimate": float(estimate) if np.isfinite(estimate) else None,
        "low": float(low) if np.isfinite(low) else None,
        "high": float(high) if np.isfinite(high) else None,
        "alpha": alpha,
        "n_boot": int(replicates.size),
        "n_valid": int(ok.size),
    }


def _check_alpha(alpha: float, n_boot: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    probs: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Percentile CI of ``metric_fn(probs, labels)`` resampling test subjects with replacement.

    Generic (any metric, any arrays indexed by sample on axis 0); for the occurrence metrics
    ``bootstrap_occurrence`` gives the same interval (same replicates for the same seed)
    much faster. Returns
    ``{'estimate', 'low', 'high', 'alpha', 'n_boot', 'n_valid', 'n_subjects'}``; replicates
    where the metric is undefined (NaN) are left out and ``n_valid`` counts the rest.
    """
    _check_alpha(alpha, n_boot)
    probs, labels = np.asarray(probs), np.asarray(labels)
    inverse, n_subj = _subject_index(subjects, labels.shape[0])
    rows = [np.flatnonzero(inverse == s) for s in range(n_subj)]
    reps = np.empty(n_boot)
    # The same subject multiplicities as the count-based bootstraps for the same seed.
    for b, w in enumerate(_weights(n_subj, n_boot, seed).astype(int)):
        idx = np.concatenate([np.tile(rows[s], w[s]) for s in range(n_subj)])
        reps[b] = metric_fn(probs[idx], labels[idx])
    out = _interval(metric_fn(probs, labels), reps, alpha)
    out["n_subjects"] = n_subj
    return out


def _subject_counts(preds: np.ndarray, labels: np.ndarray, inverse: np.ndarray,
                    n_subj: int) -> np.ndarray:
    """(4, n_subjects, n_AU) array of TP, FP, FN, TN per subject and AU."""
    p = np.asarray(preds).astype(bool)
    if p.shape != labels.shape:
        raise ValueError(f"preds {p.shape} and labels {labels.shape} differ in shape")
    cells = (p & (labels == 1), p & (labels == 0), ~p & (labels == 1), ~p & (labels == 0))
    out = np.zeros((4, n_subj, labels.shape[1]))
    for c, cell in enumerate(cells):
        np.add.at(out[c], inverse, cell.astype(float))
    return out


def _statistics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Occurrence statistics from summed counts of shape (4, ..., n_AU)."""
    tp, fp, fn, tn = counts
    f1 = f1_from_counts(tp, fp, fn)
    # Mean over the AUs with a positive label in this (re)sample, as metrics.mean_f1 does;
    # those always have a defined F1.
    ok = (tp + fn) > 0
    mean_f1 = safe_divide(np.where(ok, np.nan_to_num(f1), 0.0).sum(axis=-1), ok.sum(axis=-1))
    acc = safe_divide((tp + tn).sum(axis=-1), (tp + fp + fn + tn).sum(axis=-1))
    return {"mean_f1": mean_f1, "accuracy": acc, "abaw": 0.5 * mean_f1 + 0.5 * acc}


def _weights(n_subj: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_subjects) multiplicities of each subject in each replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subj, np.full(n_subj, 1.0 / n_subj), size=n_boot).astype(float)


def subject_counts(
    preds: np.ndarray, labels: np.ndarray, subjects: Sequence[Any]
) -> tuple[list[Any], np.ndarray]:
    """Per-subject confusion counts: (sorted subject ids, array (4, n_subjects, n_AU)).

    The four planes are TP, FP, FN, TN over known entries. These counts are all the
    occurrence bootstraps need, and small enough to keep in an evaluation result.
    """
    labels = check_labels(labels)
    subj = np.asarray(subjects)
    if subj.shape != (labels.shape[0],):
        raise ValueError(f"subjects: expected one entry per sample ({labels.shape[0]}), got "
                         f"shape {subj.shape}")
    ids, inverse = np.unique(subj, return_inverse=True)
    return ids.tolist(), _subject_counts(preds, labels, inverse.ravel(), ids.size)


def bootstrap_counts(
    counts: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, dict[str, Any]]:
    """Subject-bootstrap CIs of mean F1, total accuracy and ABAW from ``subject_counts``.

    A replicate is the subjects' multiplicities times their counts, so 1000 replicates cost
    milliseconds. Returns ``{'mean_f1': ci, 'accuracy': ci, 'abaw': ci}``, ``ci`` as in
    ``bootstrap_ci``.
    """
    _check_alpha(alpha, n_boot)
    counts = np.asarray(counts, dtype=float)
    n_subj = counts.shape[1]
    if n_subj < 2:
        raise ValueError(f"bootstrap over subjects needs at least 2 subjects, got {n_subj}")
    point = _statistics(counts.sum(axis=1))
    reps = _statistics(np.einsum("bs,csk->cbk", _weights(n_subj, n_boot, seed), counts))
    out = {}
    for name in OCCURRENCE_STATISTICS:
        out[name] = _interval(float(point[name]), reps[name], alpha)
        out[name]["n_subjects"] = n_subj
    return out


def bootstrap_occurrence(
    preds: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Subject-bootstrap CIs of mean F1, total accuracy and the ABAW score of binary preds.

    Returns ``{'mean_f1': ci, 'accuracy': ci, 'abaw': ci}`` with ``ci`` as in
    ``bootstrap_ci``.
    """
    return bootstrap_counts(subject_counts(preds, labels, subjects)[1], n_boot, seed, alpha)


def paired_bootstrap_counts(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: str = "mean_f1",
) -> dict[str, Any]:
    """``paired_bootstrap`` from two models' ``subject_counts`` over the same subjects."""
    if statistic not in OCCURRENCE_STATISTICS:
        raise ValueError(f"statistic {statistic!r} unknown; choose from {OCCURRENCE_STATISTICS}")
    _check_alpha(alpha, n_boot)
    ca, cb = np.asarray(counts_a, dtype=float), np.asarray(counts_b, dtype=float)
    if ca.shape != cb.shape:
        raise ValueError(f"paired comparison needs the same subjects and AUs: counts "
                         f"{ca.shape} vs {cb.shape}")
    n_subj = ca.shape[1]
    if n_subj < 2:
        raise ValueError(f"bootstrap over subjects needs at least 2 subjects, got {n_subj}")
    w = _weights(n_subj, n_boot, seed)
    sa = float(_statistics(ca.sum(axis=1))[statistic])
    sb = float(_statistics(cb.sum(axis=1))[statistic])
    reps = (_statistics(np.einsum("bs,csk->cbk", w, ca))[statistic]
            - _statistics(np.einsum("bs,csk->cbk", w, cb))[statistic])
    diff = sa - sb
    out = _interval(diff, reps, alpha)
    ok = reps[np.isfinite(reps)]
    p = (1 + int((np.abs(ok - diff) >= abs(diff) - 1e-12).sum())) / (ok.size + 1)
    out.update({"statistic": statistic, "a": sa, "b": sb, "difference": out.pop("estimate"),
                "p_value": min(1.0, p), "n_subjects": n_subj})
    return out


def paired_bootstrap(
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    statistic: str = "mean_f1",
) -> dict[str, Any]:
    """Difference ``statistic(a) - statistic(b)`` of two models on the same samples.

    Both models are scored on the same resampled subjects in each replicate, so subject
    difficulty cancels. ``low``/``high`` is the percentile CI of the difference; the two-sided
    p-value tests 'no difference' by shifting the bootstrap distribution to the null
    (Efron & Tibshirani 1993, Sec. 16.4): p = (1 + #{|d*_b - d| >= |d|}) / (n_boot + 1).
    Returns ``{'statistic', 'a', 'b', 'difference', 'low', 'high', 'p_value', ...}``.
    """
    _, ca = subject_counts(preds_a, labels, subjects)
    _, cb = subject_counts(preds_b, labels, subjects)
    return paired_bootstrap_counts(ca, cb, n_boot, seed, alpha, statistic)


def sign_flip_test(
    scores_a: Sequence[float], scores_b: Sequence[float], n_perm: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Paired sign-flip permutation test on per-fold scores of two models (same folds).

    Under 'no difference' each fold's difference is as likely positive as negative; the
    two-sided p-value is the share of sign patterns whose |mean| reaches the observed one.
    Exact (all 2^F patterns) up to 16 folds, else ``n_perm`` random patterns. With F folds
    the smallest attainable p is 2 / 2^F (0.25 for 3 folds), so few folds cannot show
    significance; say so rather than over-read it.
    """
    d = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    if d.ndim != 1 or d.size < 1:
        raise ValueError(f"need equal-length per-fold score lists, got {len(scores_a)} and "
                         f"{len(scores_b)}")
    if not np.isfinite(d).all():
        raise ValueError(f"per-fold scores must be finite, got differences {d.tolist()}")
    exact = d.size <= 16
    if exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, d.size))
    observed = abs(d.mean())
    p = float((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).mean())
    return {"mean_difference": float(d.mean()), "p_value": p, "n_folds": int(d.size),
            "exact": exact, "min_p": (2.0 / 2 ** d.size) if exact else None}
