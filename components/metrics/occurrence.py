"""AU occurrence metrics: per-AU F1, precision, recall, accuracy, the ABAW score, the trivial
predictors every model is compared with, fold aggregation and cross-dataset AU restriction.

Conventions (the same everywhere in facsflow):

- ``labels`` is an int array (N, n_AU) with 1 = present, 0 = absent, -1 = unknown. Unknown
  entries are excluded per AU: they count neither as errors nor as hits.
- ``preds`` is a {0, 1} array (N, n_AU); ``probs`` a float array in [0, 1]. A probability
  becomes a positive prediction when ``prob >= threshold`` (see ``components.thresholds``).
- F1 is the positive-class F1, ``2TP / (2TP + FP + FN)``. It is **undefined (NaN)** exactly
  when ``2TP + FP + FN == 0``: the AU has no positive label and no positive prediction among
  its known entries (or no known entries at all). An AU with no positives but some false
  positives gets F1 = 0, as the formula says.
- ``mean_f1`` is the unweighted mean over AUs (SEV-Net Sec. 4.1, ABAW) of the AUs that have
  at least one positive label among the evaluated samples. An AU without positives (in a
  fold, say) cannot measure detection, so it is left out **for every predictor alike**: the
  set is fixed by the labels, never by the predictions, and models and trivial predictors
  are averaged over the same AUs. ``evaluate_occurrence`` lists the AUs left out.
  Nothing here divides by zero or emits a NumPy warning.
- ``accuracy`` (total accuracy, ABAW 2020/2021, paper 004 Eq. 2) is the fraction of correct
  known entries over all AUs together; ``mean_accuracy`` is the unweighted mean of per-AU
  accuracies. ABAW score = 0.5 * mean F1 + 0.5 * total accuracy (paper 002 Sec. 1,
  paper 004 Eq. 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from components.au import au_name, dataset_aus, validate_au_list

__all__ = [
    "check_labels",
    "confusion_counts",
    "f1_from_counts",
    "f1_per_au",
    "precision_per_au",
    "recall_per_au",
    "accuracy_per_au",
    "total_accuracy",
    "mean_f1",
    "mean_over_scored_aus",
    "abaw_score",
    "nanmean",
    "safe_divide",
    "base_rates",
    "evaluate_occurrence",
    "all_positive_f1",
    "base_rate_random_f1",
    "trivial_report",
    "mean_std",
    "aggregate_folds",
    "shared_aus",
    "restrict_to_aus",
    "TRIVIAL_PREDICTORS",
]

TRIVIAL_PREDICTORS = ("all_positive", "base_rate_random")
"""Names of the trivial predictors reported beside every model."""


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 2-D int array, raising if a value is not in {-1, 0, 1}."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, n_AU), got {arr.shape}")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"{name}: NaN found; use -1 for unknown labels")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: non-integer label values; expected -1, 0 or 1")
    bad = (arr < -1) | (arr > 1) if arr.dtype.kind in "iub" else ~np.isin(arr, (-1, 0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}[{row}, {col}] = {arr[row, col].item()!r}: labels must be -1 (unknown), 0 or 1"
        )
    return arr.astype(np.int8, copy=False)


def _check_preds(preds: np.ndarray, labels: np.ndarray, name: str = "preds") -> np.ndarray:
    arr = np.asarray(preds)
    if arr.shape != labels.shape:
        raise ValueError(f"{name}: shape {arr.shape} does not match labels {labels.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}: binary predictions must be 0 or 1 (threshold probabilities "
                         "with components.thresholds.apply_thresholds first)")
    return arr.astype(bool)


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0, without a NumPy warning."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean(values: "np.ndarray | Sequence[float]") -> float:
    """Mean of the finite values; NaN (no warning) when there are none."""
    arr = np.asarray(values, dtype=float)
    ok = np.isfinite(arr)
    return float(arr[ok].mean()) if ok.any() else float("nan")


def confusion_counts(preds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-AU counts over known entries: ``tp``, ``fp``, ``fn``, ``tn`` (each shape (n_AU,))."""
    labels = check_labels(labels)
    p = _check_preds(preds, labels)
    known = labels >= 0
    pos = labels == 1
    neg = labels == 0
    return {
        "tp": (p & pos).sum(axis=0).astype(np.int64),
        "fp": (p & neg).sum(axis=0).astype(np.int64),
        "fn": (~p & pos).sum(axis=0).astype(np.int64),
        "tn": (~p & neg & known).sum(axis=0).astype(np.int64),
    }


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Positive-class F1 = 2TP / (2TP + FP + FN); NaN where the denominator is 0."""
    tp = np.asarray(tp, dtype=float)
    return safe_divide(2.0 * tp, 2.0 * tp + np.asarray(fp) + np.asarray(fn))


def f1_per_au(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Positive-class F1 per AU over known entries (NaN when undefined, see module doc)."""
    c = confusion_counts(preds, labels)
    return f1_from_counts(c["tp"], c["fp"], c["fn"])


def precision_per_au(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """TP / (TP + FP) per AU; NaN for an AU with no positive prediction."""
    c = confusion_counts(preds, labels)
    return safe_divide(c["tp"], c["tp"] + c["fp"])


def recall_per_au(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """TP / (TP + FN) per AU; NaN for an AU with no positive label."""
    c = confusion_counts(preds, labels)
    return safe_divide(c["tp"], c["tp"] + c["fn"])


def accuracy_per_au(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(TP + TN) / known entries per AU; NaN for an AU with no known entry."""
    c = confusion_counts(preds, labels)
    return safe_divide(c["tp"] + c["tn"], c["tp"] + c["tn"] + c["fp"] + c["fn"])


def total_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Correct known entries over all known entries of all AUs (ABAW 'total accuracy')."""
    c = confusion_counts(preds, labels)
    correct = int(c["tp"].sum() + c["tn"].sum())
    known = correct + int(c["fp"].sum() + c["fn"].sum())
    return correct / known if known else float("nan")


def mean_over_scored_aus(per_au: np.ndarray, labels: np.ndarray) -> float:
    """Mean of a per-AU score over the AUs with at least one positive label (NaN if none)."""
    labels = check_labels(labels)
    scored = (labels == 1).any(axis=0)
    return nanmean(np.asarray(per_au, dtype=float)[scored])


def mean_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean F1 over the AUs that have a positive label (see module doc)."""
    return mean_over_scored_aus(f1_per_au(preds, labels), labels)


def abaw_score(preds: np.ndarray, labels: np.ndarray) -> float:
    """ABAW 2020/2021 AU score: 0.5 * mean F1 + 0.5 * total accuracy (paper 004 Eq. 2)."""
    return 0.5 * mean_f1(preds, labels) + 0.5 * total_accuracy(preds, labels)


def base_rates(labels: np.ndarray) -> np.ndarray:
    """Fraction of positives among known entries per AU (NaN for an AU with none known)."""
    labels = check_labels(labels)
    return safe_divide((labels == 1).sum(axis=0), (labels >= 0).sum(axis=0))


def _check_aus(aus: Sequence[int], n: int) -> tuple[int, ...]:
    aus = validate_au_list(aus)
    if len(aus) != n:
        raise ValueError(f"AU list {list(aus)} has {len(aus)} AUs but the arrays have {n} columns")
    return aus


def _thresholds_array(thresholds: "float | Sequence[float] | np.ndarray", n: int) -> np.ndarray:
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (n,)).copy()
    if not np.all((thr >= 0) & (thr <= 1)):
        raise ValueError(f"thresholds must lie in [0, 1], got {thr.tolist()}")
    return thr


def _check_probs(probs: np.ndarray, labels: np.ndarray, name: str = "probs") -> np.ndarray:
    arr = np.asarray(probs, dtype=float)
    if arr.shape != labels.shape:
        raise ValueError(f"{name}: shape {arr.shape} does not match labels {labels.shape}")
    if not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name}[{row}, {col}] is not finite")
    return arr


def _f(x: float) -> "float | None":
    """JSON-friendly float: NaN becomes None."""
    return None if x is None or not np.isfinite(x) else float(x)


def evaluate_occurrence(
    probs: np.ndarray,
    labels: np.ndarray,
    aus: Sequence[int],
    thresholds: "float | Sequence[float] | np.ndarray" = 0.5,
) -> dict[str, Any]:
    """All occurrence metrics of one set of predictions, as a JSON-ready dict.

    Returns ``{'aus', 'thresholds', 'n_samples', 'per_au': {'AU1': {'f1', 'precision',
    'recall', 'accuracy', 'base_rate', 'pred_rate', 'n_known', 'n_positive', 'threshold'}},
    'mean_f1', 'accuracy' (total), 'mean_accuracy', 'abaw', 'f1_excluded_aus'}``.
    Undefined values are ``None`` (NaN in arrays).
    """
    labels = check_labels(labels)
    probs = _check_probs(probs, labels)
    aus = _check_aus(aus, labels.shape[1])
    thr = _thresholds_array(thresholds, labels.shape[1])
    preds = (probs >= thr).astype(np.int8)
    c = confusion_counts(preds, labels)
    f1 = f1_from_counts(c["tp"], c["fp"], c["fn"])
    n_known = c["tp"] + c["fp"] + c["fn"] + c["tn"]
    prec = safe_divide(c["tp"], c["tp"] + c["fp"])
    rec = safe_divide(c["tp"], c["tp"] + c["fn"])
    acc = safe_divide(c["tp"] + c["tn"], n_known)
    rate = safe_divide(c["tp"] + c["fn"], n_known)
    pred_rate = safe_divide(c["tp"] + c["fp"], n_known)
    per_au = {
        au_name(a): {
            "f1": _f(f1[k]), "precision": _f(prec[k]), "recall": _f(rec[k]),
            "accuracy": _f(acc[k]), "base_rate": _f(rate[k]), "pred_rate": _f(pred_rate[k]),
            "n_known": int(n_known[k]), "n_positive": int(c["tp"][k] + c["fn"][k]),
            "threshold": float(thr[k]),
        }
        for k, a in enumerate(aus)
    }
    mf1 = mean_over_scored_aus(f1, labels)
    tacc = total_accuracy(preds, labels)
    return {
        "aus": list(aus),
        "thresholds": thr.tolist(),
        "n_samples": int(labels.shape[0]),
        "per_au": per_au,
        "mean_f1": _f(mf1),
        "accuracy": _f(tacc),
        "mean_accuracy": _f(nanmean(acc)),
        "abaw": _f(0.5 * mf1 + 0.5 * tacc),
        "f1_excluded_aus": [au_name(a) for a, n in zip(aus, c["tp"] + c["fn"]) if n == 0],
    }


def all_positive_f1(labels: np.ndarray) -> np.ndarray:
    """Per-AU F1 of predicting every known entry positive: 2p / (1 + p), p the base rate.

    With P positives among N known entries: TP = P, FP = N - P, FN = 0, so
    F1 = 2P / (P + N) = 2p / (1 + p). An AU with no positives gets 0 (it has false
    positives); one with no known entries gets NaN.
    """
    p = base_rates(labels)
    return safe_divide(2.0 * p, 1.0 + p)


def base_rate_random_f1(labels: np.ndarray) -> np.ndarray:
    """Per-AU F1 of predicting positive at random with probability p, the AU's base rate.

    Computed from the expected confusion counts (TP = pP, FP = p(N - P), FN = (1 - p)P), which
    gives F1 = 2pP / (pN + P) = p. An AU with p = 0 predicts nothing and has nothing to find,
    so its F1 is undefined (NaN), as for any predictor.
    """
    p = base_rates(labels)
    return np.where(p > 0, p, np.nan)


def trivial_report(labels: np.ndarray, aus: Sequence[int]) -> dict[str, Any]:
    """Both trivial predictors on ``labels`` with per-AU F1, mean F1, accuracy and ABAW score.

    Base rates come from the labels being evaluated (the test subjects), which favours the
    trivial predictors: a model must beat even this oracle knowledge. ``best`` names the
    predictor with the higher mean F1 (a model must beat the best one to count as learning).
    """
    labels = check_labels(labels)
    aus = _check_aus(aus, labels.shape[1])
    known = (labels >= 0).sum(axis=0).astype(float)
    p = base_rates(labels)
    total = known.sum()
    # Total accuracy: all-positive is right on positives; random-at-p on expected
    # p*p + (1-p)*(1-p) of each AU's known entries.
    acc_pos = float((labels == 1).sum() / total) if total else float("nan")
    q = np.nan_to_num(p)
    acc_rand = float((known * (q * q + (1 - q) * (1 - q))).sum() / total) if total else float("nan")
    out: dict[str, Any] = {}
    for name, f1, acc in (("all_positive", all_positive_f1(labels), acc_pos),
                          ("base_rate_random", base_rate_random_f1(labels), acc_rand)):
        mf1 = mean_over_scored_aus(f1, labels)
        out[name] = {
            "f1": {au_name(a): _f(v) for a, v in zip(aus, f1)},
            "mean_f1": _f(mf1),
            "accuracy": _f(acc),
            "abaw": _f(0.5 * mf1 + 0.5 * acc),
        }
    scores = {n: (out[n]["mean_f1"] if out[n]["mean_f1"] is not None else -1.0)
              for n in TRIVIAL_PREDICTORS}
    out["best"] = max(TRIVIAL_PREDICTORS, key=lambda n: scores[n])
    out["base_rate"] = {au_name(a): _f(v) for a, v in zip(aus, p)}
    return out


def mean_std(values: Sequence["float | None"]) -> dict[str, "float | int | None"]:
    """Mean and sample std (ddof=1) of the defined values, with how many were defined."""
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    ok = arr[np.isfinite(arr)]
    return {
        "mean": _f(ok.mean()) if ok.size else None,
        "std": _f(ok.std(ddof=1)) if ok.size >= 2 else None,
        "n": int(ok.size),
    }


_FOLD_SCALARS = ("mean_f1", "accuracy", "mean_accuracy", "abaw")
_FOLD_PER_AU = ("f1", "precision", "recall", "accuracy")


def aggregate_folds(folds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± sample std over folds of ``evaluate_occurrence`` results.

    Returns ``{'n_folds', 'aus', 'mean_f1': {'mean', 'std', 'n'}, 'accuracy': ...,
    'mean_accuracy': ..., 'abaw': ..., 'per_au': {'AU1': {'f1': {'mean', 'std', 'n'}, ...}}}``.
    A fold where a value is undefined, or where an AU has no positive label (for its F1,
    precision and recall), is left out of that value's mean; ``n`` says how many folds count.
    ``std`` is None with fewer than 2 folds.
    """
    if not folds:
        raise ValueError("aggregate_folds: no folds given")
    aus = list(folds[0]["aus"])
    for k, f in enumerate(folds):
        if list(f["aus"]) != aus:
            raise ValueError(f"fold {f.get('fold', k)}: AU list {list(f['aus'])} differs from "
                             f"fold 0's {aus}")
    out: dict[str, Any] = {"n_folds": len(folds), "aus": aus}
    for key in _FOLD_SCALARS:
        out[key] = mean_std([f.get(key) for f in folds])
    # A fold where the AU has no positive label does not score its detection (module doc).
    out["per_au"] = {
        au_name(a): {m: mean_std([f["per_au"][au_name(a)].get(m)
                                  if m == "accuracy" or f["per_au"][au_name(a)]["n_positive"]
                                  else None for f in folds])
                     for m in _FOLD_PER_AU}
        for a in aus
    }
    return out


def _as_aus(x: "str | Sequence[int]") -> tuple[int, ...]:
    return dataset_aus(x) if isinstance(x, str) else validate_au_list(x)


def shared_aus(a: "str | Sequence[int]", b: "str | Sequence[int]") -> tuple[int, ...]:
    """AUs present in both lists (dataset names or AU numbers), in the order of ``a``."""
    la, lb = _as_aus(a), set(_as_aus(b))
    out = tuple(x for x in la if x in lb)
    if not out:
        raise ValueError(f"AU lists {list(la)} and {sorted(lb)} share no AU")
    return out


def restrict_to_aus(
    array: np.ndarray, from_aus: "str | Sequence[int]", to_aus: Sequence[int]
) -> np.ndarray:
    """Columns of ``array`` (N, len(from_aus)) for ``to_aus``, in ``to_aus`` order.

    Used for cross-dataset evaluation: a model trained on one dataset's AU list scored on
    another's labels over ``shared_aus`` of the two.
    """
    src = _as_aus(from_aus)
    arr = np.asarray(array)
    if arr.ndim != 2 or arr.shape[1] != len(src):
        raise ValueError(f"array of shape {arr.shape} does not have one column per AU of "
                         f"{list(src)}")
    missing = [a for a in to_aus if a not in src]
    if missing:
        raise ValueError(f"AU(s) {missing} are not in the source AU list {list(src)}")
    return arr[:, [src.index(a) for a in to_aus]]
