"""Evaluation results and the report a researcher reads: JSON for machines, Markdown and HTML
with tables (per AU × model, trivial predictors always beside the models) and plots.

Workflow (what ``facsflow evaluate`` does)::

    evals = [evaluate_model_outputs(name, probs, labels, subjects, aus, fold=k,
                                    val_probs=vp, val_labels=vl)      # thresholds on val
             for each model, fold]
    results = build_results(evals, dataset="bp4d")
    paths = write_report(out_dir, results, provenance={"git_commit": ..., ...})

**Evaluation** (``evaluate_model_outputs``): everything ``metrics.evaluate_occurrence``
returns plus ``model``, ``fold``, ``dataset``, ``n_subjects``, ``threshold_source``, ``ci``
(subject-bootstrap CIs of mean_f1/accuracy/abaw, or None), ``trivial``
(``metrics.trivial_report`` of the same labels), ``ap`` (AU name → average precision),
``pr_curves`` (per AU: thinned precision/recall points or None), ``cooccurrence``
(``{'true', 'pred'}`` n_AU × n_AU matrices, P(column AU on | row AU on)),
``subject_counts`` (``{'subjects', 'counts'}``: per-subject TP/FP/FN/TN, which lets
``build_results`` pool folds and compare models without the raw arrays) and optionally
``intensity`` and ``train_dataset`` for cross-dataset runs. All JSON-ready.

**Results** (``build_results``)::

    {'dataset': str, 'aus': [int],
     'models': {name: {'folds': [evaluation, ...],       # sorted by fold
                       'summary': metrics.aggregate_folds(folds),   # mean ± std per AU/overall
                       'pooled': {'mean_f1': ci, 'accuracy': ci, 'abaw': ci} | None}},
     'trivial': {'folds': [{'fold': k, **trivial_report}],
                 'summary': {'all_positive': {'mean_f1': {'mean','std','n'}, 'accuracy': ..,
                                              'abaw': .., 'f1': {AU: {'mean','std','n'}}},
                             'base_rate_random': {...}},
                 'best': name},
     'comparisons': [{'a', 'b', 'paired_bootstrap': {...} | None, 'sign_flip': {...} | None}],
     'cross_dataset': [evaluation, ...]}

``pooled`` bootstraps over all test subjects of all folds together (each subject is tested in
one fold under subject-exclusive cross-validation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.au import au_name, validate_au_list
from components.metrics.occurrence import (TRIVIAL_PREDICTORS, aggregate_folds, check_labels,
                                evaluate_occurrence, mean_std, restrict_to_aus, shared_aus,
                                trivial_report)
from components.metrics.curves import cooccurrence, pr_curves_summary
from components.metrics.intensity import evaluate_intensity
from components.metrics.resampling import (bootstrap_counts, paired_bootstrap_counts,
                                           sign_flip_test, subject_counts)
from components.thresholds import DEFAULT_THRESHOLD, apply_thresholds, tune_thresholds

__all__ = [
    "evaluate_model_outputs",
    "evaluate_cross_dataset",
    "build_results",
    "report_json",
    "write_report",
    "REPORT_SCHEMA_VERSION",
]

REPORT_SCHEMA_VERSION = 1
"""Version of the report.json layout; bump on an incompatible change."""


def _matrix(m: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in m]


def evaluate_model_outputs(
    name: str,
    probs: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[Any],
    aus: Sequence[int],
    thresholds: "float | Sequence[float] | np.ndarray | None" = None,
    fold: "int | str | None" = None,
    dataset: "str | None" = None,
    val_probs: "np.ndarray | None" = None,
    val_labels: "np.ndarray | None" = None,
    val_subjects: "Sequence[Any] | None" = None,
    intensity_pred: "np.ndarray | None" = None,
    intensity_true: "np.ndarray | None" = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Score one model's test outputs (one fold) and keep what the report needs.

    Thresholds: given explicitly (``thresholds``), or tuned here on validation outputs
    (``val_probs``/``val_labels``, checked disjoint from the test subjects when
    ``val_subjects`` is given), or 0.5. ``n_boot=0`` skips the bootstrap. See the module
    docstring for the returned keys.
    """
    labels = check_labels(labels)
    aus = validate_au_list(aus)
    if val_probs is not None:
        if thresholds is not None:
            raise ValueError(f"{name}: give either thresholds or validation outputs, not both")
        if val_labels is None:
            raise ValueError(f"{name}: val_probs given without val_labels")
        thr = tune_thresholds(val_probs, val_labels, val_subjects=val_subjects,
                              test_subjects=subjects)
        source = "tuned on validation subjects"
    elif thresholds is None:
        thr, source = np.full(len(aus), DEFAULT_THRESHOLD), "default 0.5"
    else:
        thr, source = np.broadcast_to(np.asarray(thresholds, float), (len(aus),)), "given"
    out = evaluate_occurrence(probs, labels, aus, thr)
    preds = apply_thresholds(probs, thr)
    ids, counts = subject_counts(preds, labels, subjects)
    ci = bootstrap_counts(counts, n_boot, seed, alpha) if n_boot > 0 and len(ids) >= 2 else None
    curves = pr_curves_summary(probs, labels)
    out.update({
        "model": name, "fold": fold, "dataset": dataset, "n_subjects": len(ids),
        "threshold_source": source, "ci": ci, "trivial": trivial_report(labels, aus),
        "ap": {au_name(a): (c["ap"] if c else None) for a, c in zip(aus, curves)},
        "pr_curves": curves,
        "cooccurrence": {"true": _matrix(cooccurrence(labels)),
                         "pred": _matrix(cooccurrence(preds, labels >= 0))},
        "subject_counts": {"subjects": [str(s) for s in ids],
                           "counts": counts.astype(int).tolist()},
    })
    if intensity_pred is not None:
        if intensity_true is None:
            raise ValueError(f"{name}: intensity_pred given without intensity_true")
        out["intensity"] = evaluate_intensity(intensity_pred, intensity_true, aus)
    return out


def evaluate_cross_dataset(
    name: str,
    probs: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[Any],
    train_dataset: str,
    test_dataset: str,
    model_aus: "Sequence[int] | None" = None,
    label_aus: "Sequence[int] | None" = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score a model trained on ``train_dataset`` on ``test_dataset`` over their shared AUs.

    ``probs`` has one column per ``model_aus`` (default: the train dataset's AU list) and
    ``labels`` one per ``label_aus`` (default: the test dataset's); both are restricted to
    ``shared_aus`` in the model's order. ``kwargs`` go to ``evaluate_model_outputs``
    (thresholds given there must already follow the shared list).
    """
    src = model_aus if model_aus is not None else train_dataset
    dst = label_aus if label_aus is not None else test_dataset
    common = shared_aus(src, dst)
    out = evaluate_model_outputs(
        name, restrict_to_aus(probs, src, common), restrict_to_aus(labels, dst, common),
        subjects, common, dataset=test_dataset, **kwargs)
    out["train_dataset"] = train_dataset
    return out


def _pool_counts(folds: Sequence[Mapping[str, Any]]) -> tuple[list[str], np.ndarray] | None:
    keys, planes = [], []
    for f in folds:
        sc = f.get("subject_counts")
        if not sc:
            return None
        keys += [f"{f.get('fold')}/{s}" for s in sc["subjects"]]
        planes.append(np.asarray(sc["counts"], dtype=float))
    return keys, np.concatenate(planes, axis=1)


def _trivial_summary(folds: Sequence[Mapping[str, Any]], aus: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in TRIVIAL_PREDICTORS:
        out[p] = {m: mean_std([f[p][m] for f in folds]) for m in ("mean_f1", "accuracy", "abaw")}
        out[p]["f1"] = {au_name(a): mean_std([f[p]["f1"][au_name(a)] if f["base_rate"][au_name(a)]
                                              else None for f in folds])
                        for a in aus}
    return out


def build_results(
    evaluations: Sequence[Mapping[str, Any]],
    dataset: "str | None" = None,
    cross_dataset: Sequence[Mapping[str, Any]] = (),
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Group ``evaluate_model_outputs`` results by model, aggregate folds, compare models.

    Checks that every evaluation has the same AU list and that models share each fold's test
    samples (same sample and subject counts), so comparisons are fair. Every pair of models
    evaluated on the same folds gets a pooled paired bootstrap of mean F1 over the test
    subjects and a sign-flip test over per-fold mean F1.
    """
    if not evaluations:
        raise ValueError("build_results: no evaluations given")
    aus = list(evaluations[0]["aus"])
    models: dict[str, list[Mapping[str, Any]]] = {}
    fold_shape: dict[Any, tuple[int, int, str]] = {}
    for e in evaluations:
        where = f"model {e['model']!r} fold {e.get('fold')!r}"
        if list(e["aus"]) != aus:
            raise ValueError(f"{where}: AU list {list(e['aus'])} differs from {aus}")
        shape = (e["n_samples"], e["n_subjects"], e["model"])
        seen = fold_shape.setdefault(e.get("fold"), shape)
        if seen[:2] != shape[:2]:
            raise ValueError(f"{where}: {shape[0]} samples / {shape[1]} subjects, but model "
                             f"{seen[2]!r} was tested on {seen[0]} / {seen[1]} in that fold")
        if any(f.get("fold") == e.get("fold") for f in models.get(e["model"], [])):
            raise ValueError(f"{where}: evaluated twice")
        models.setdefault(e["model"], []).append(e)
    out_models: dict[str, Any] = {}
    for name, folds in models.items():
        folds = sorted(folds, key=lambda f: str(f.get("fold")))
        pooled = _pool_counts(folds)
        ok = pooled is not None and n_boot > 0 and pooled[1].shape[1] >= 2
        out_models[name] = {
            "folds": list(folds), "summary": aggregate_folds(folds),
            "pooled": bootstrap_counts(pooled[1], n_boot, seed, alpha) if ok else None,
        }
    by_fold: dict[Any, Mapping[str, Any]] = {}
    for e in evaluations:
        by_fold.setdefault(e.get("fold"), e["trivial"])
    trivial_folds = [{"fold": k, **by_fold[k]} for k in sorted(by_fold, key=str)]
    summary = _trivial_summary(trivial_folds, aus)
    best = max(TRIVIAL_PREDICTORS, key=lambda p: summary[p]["mean_f1"]["mean"] or -1.0)
    return {
        "dataset": dataset if dataset is not None else evaluations[0].get("dataset"),
        "aus": aus,
        "models": out_models,
        "trivial": {"folds": trivial_folds, "summary": summary, "best": best},
        "comparisons": _compare_all(out_models, n_boot, seed, alpha),
        "cross_dataset": list(cross_dataset),
    }


def _compare_all(models: Mapping[str, Any], n_boot: int, seed: int,
                 alpha: float) -> list[dict[str, Any]]:
    names = list(models)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fa, fb = models[a]["folds"], models[b]["folds"]
            if [f.get("fold") for f in fa] != [f.get("fold") for f in fb]:
                continue
            pa, pb = _pool_counts(fa), _pool_counts(fb)
            paired = None
            if pa and pb and pa[0] == pb[0] and len(pa[0]) >= 2 and n_boot > 0:
                paired = paired_bootstrap_counts(pa[1], pb[1], n_boot, seed, alpha)
            sa = [f["mean_f1"] for f in fa]
            sb = [f["mean_f1"] for f in fb]
            defined = all(v is not None for v in sa + sb)
            out.append({"a": a, "b": b, "paired_bootstrap": paired,
                        "sign_flip": sign_flip_test(sa, sb) if defined else None})
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def report_json(results: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The report.json document: per model the headline figures (``mean_f1``, ``accuracy``,
    ``abaw``, per-AU ``f1``, means over folds with ``*_std``) beside the full ``folds``,
    ``summary`` and ``pooled`` entries; ``trivial`` with each predictor's ``mean_f1`` and
    per-AU ``f1``; comparisons, cross-dataset results and provenance."""
    models = {}
    for name, m in results["models"].items():
        s = m["summary"]
        models[name] = {
            "mean_f1": s["mean_f1"]["mean"], "mean_f1_std": s["mean_f1"]["std"],
            "accuracy": s["accuracy"]["mean"], "accuracy_std": s["accuracy"]["std"],
            "mean_accuracy": s["mean_accuracy"]["mean"],
            "abaw": s["abaw"]["mean"], "abaw_std": s["abaw"]["std"],
            "n_folds": s["n_folds"],
            "f1": {au: v["f1"]["mean"] for au, v in s["per_au"].items()},
            "f1_std": {au: v["f1"]["std"] for au, v in s["per_au"].items()},
            **m,
        }
    trivial: dict[str, Any] = {"best": results["trivial"]["best"]}
    for p in TRIVIAL_PREDICTORS:
        s = results["trivial"]["summary"][p]
        trivial[p] = {"mean_f1": s["mean_f1"]["mean"], "mean_f1_std": s["mean_f1"]["std"],
                      "accuracy": s["accuracy"]["mean"], "abaw": s["abaw"]["mean"],
                      "f1": {au: v["mean"] for au, v in s["f1"].items()},
                      "f1_std": {au: v["std"] for au, v in s["f1"].items()}}
    trivial["folds"] = results["trivial"]["folds"]
    return _jsonable({
        "schema_version": REPORT_SCHEMA_VERSION,
        "dataset": results.get("dataset"), "aus": results["aus"],
        "provenance": dict(provenance), "models": models, "trivial": trivial,
        "comparisons": results.get("comparisons", []),
        "cross_dataset": results.get("cross_dataset", []),
        **({"teacher_agreement": results["teacher_agreement"]} if "teacher_agreement" in results else {}),
    })


def write_report(
    out_dir: "str | Path", results: Mapping[str, Any], provenance: Mapping[str, Any]
) -> dict[str, Any]:
    """Write report.json, report.md, report.html and plots/*.png (when matplotlib is
    installed) under ``out_dir``; return ``{'json', 'md', 'html', 'plots': [...]}`` paths."""
    from components.report.plots import write_plots
    from components.report.tables import render_html, render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = report_json(results, provenance)
    plots = write_plots(out / "plots", doc)
    rel = [p.relative_to(out).as_posix() for p in plots]
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    paths["md"].write_text(render_markdown(doc, rel))
    paths["html"].write_text(render_html(doc, rel))
    return {**paths, "plots": plots}
