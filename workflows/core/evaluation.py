"""Evaluate trained runs on their held-out test subjects and write the report: the logic of the
``evaluate`` stage (its entry: ``workflows/evaluate.py``), which ensemble and demo compose.

``python -m workflows.evaluate --runs RUNS... --out DIR [--tune-thresholds] [--against own|teacher] [--config YAML] [--set K=V]``

Each run is evaluated on its own fold's test subjects with the same ``Predictor`` that serving
uses. Thresholds are the run's checkpoint's: per AU, chosen on the run's validation subjects at
the selected epoch during training (``TrainConfig.tune_thresholds``, on by default; 0.5 for a
run trained without); ``--tune-thresholds`` chooses them afresh on the validation subjects' predictions here
(never on test; with ``--smooth-window``, on the smoothed ones). The evaluation writes the ones it used
(``thresholds.json``), which ``ensemble --thresholds`` can copy. The report (JSON, Markdown, HTML with plots) shows every model
per fold and averaged over folds, beside the trivial predictors.

``--against teacher`` also scores each run's test predictions against the teacher that labelled
the run's store (``facsflow label``): agreement F1 per AU (the run's decisions against the
teacher's, its soft labels at its own thresholds, recorded in ``labels.json``) and the per-AU
Pearson correlation of the run's probabilities with the teacher's soft labels
(``components.metrics.agreement``), in report.json's ``teacher_agreement`` with the teacher
named. The rows' own labels are still scored where they have any; where the validation rows
have none, ``--tune-thresholds`` tunes on the teacher's decisions instead (as training's
validation does, ``val_labels: teacher`` in run.json).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from components import storage

log = logging.getLogger("facsflow.evaluate")

__all__ = ["EvaluateConfig", "find_runs", "run_evaluation"]


@dataclass
class EvaluateConfig:
    """One evaluation; saved as ``<out>/evaluate.yaml``."""

    runs: tuple[str, ...] = ()
    """Run folders (or folders holding runs)."""
    out: str = ""
    """Where the report goes."""
    tune_thresholds: bool = False
    """Choose per-AU thresholds afresh on each run's validation subjects (False: the checkpoint's,
    chosen on the same subjects during training)."""
    bootstrap: int = 1000
    """Bootstrap replicates over test subjects for confidence intervals (0: none)."""
    actors: int = 1
    """Prediction actors."""
    actor_cpus: float = 1.0
    """CPUs per prediction actor."""
    seed: int = 0
    """Seed of the bootstrap."""
    smooth_window: int = 1
    """Frames of the centred moving mean over each test video's probabilities before thresholds
    and metrics (paper 002 §3 post-processing, evaluated as served; odd; 1: off)."""
    test_data: tuple[str, ...] = ()
    """Other feature stores to test every run on (cross-dataset, over the shared AUs; all their
    subjects are unseen by the runs)."""
    against: str = "own"
    """'own': score against the rows' own labels; 'teacher': also against the teacher that labelled
    the store (agreement F1 at the teacher's thresholds, per-AU correlation with its soft labels)."""

    max_subjects: int = 0
    """Score each run on at most this many of its test subjects (and, with ``tune_thresholds``,
    of its validation subjects): a sample fixed by the subjects' names
    (``components.store.splits.subject_sample``), for a store too large to score whole; 0: all.
    The report's per-fold subject counts show what was scored."""

    def __post_init__(self) -> None:
        if self.max_subjects < 0:
            raise ValueError(f"max_subjects must be >= 0, got {self.max_subjects}")
        if self.against not in ("own", "teacher"):
            raise ValueError(f"against must be 'own' or 'teacher', got {self.against!r}")


def find_runs(paths: "list[str] | tuple[str, ...]") -> list[str]:
    """Run folders (holding run.json) among ``paths`` and their direct children."""
    found: list[str] = []
    for p in paths:
        if storage.exists(storage.join(p, "run.json")):
            found.append(p.rstrip("/"))
            continue
        fs, path = storage.resolve(p)
        import pyarrow.fs as pafs

        if fs.get_file_info(path).type != pafs.FileType.Directory:
            from workflows.core.runtime import UserError

            raise UserError(f"run folder not found: {p}")
        for info in sorted(fs.get_file_info(pafs.FileSelector(path)), key=lambda i: i.path):
            child = storage.join(p, info.base_name)
            if info.type == pafs.FileType.Directory and storage.exists(storage.join(child, "run.json")):
                found.append(child)
    if not found:
        from workflows.core.runtime import UserError

        raise UserError(f"no finished runs (run.json) under {list(paths)}; run `facsflow train` first")
    return found


def predict_split(run: dict[str, Any], info: dict[str, Any], split_name: str, cfg: EvaluateConfig,
                  smooth_window: int = 1) -> dict[str, Any]:
    """Scores of one split of a run's store (``smooth_window``: as ``run_evaluation``)."""
    from components.store.splits import _split_files, subject_sample
    from workflows.core.store_scoring import predict_store_files

    files = _split_files(run["preprocess_store"], subject_sample(run["split"][split_name], cfg.max_subjects))
    return predict_store_files(files, run["checkpoint"], "checkpoint", list(info["diff_steps"]),
                               cfg.actors, cfg.actor_cpus, smooth_window=smooth_window,
                               reads_neutral=run.get("reads_neutral", False))


def evaluate_run(run_dir: str, cfg: EvaluateConfig, smooth_window: int = 1) -> dict[str, Any]:
    """Test-set evaluation of one run (thresholds: its checkpoint's, or chosen afresh on its
    validation subjects when asked; ``smooth_window`` as ``run_evaluation``)."""
    from components.report.document import evaluate_model_outputs
    from components.store.neutral import reads_neutral
    from components.store.splits import store_info
    from workflows.core.store_scoring import own_labels
    from workflows.core.training import read_run

    run = read_run(run_dir)
    train_cfg = json.loads(storage.read_text(storage.join(run_dir, "split.json")))
    run["split"] = train_cfg
    ckpt = _checkpoint_of(run)
    run["reads_neutral"] = reads_neutral(ckpt["input_spec"])
    ckpt_store = ckpt["preprocess"]["store"]
    run["preprocess_store"] = ckpt_store
    info = store_info(ckpt_store)
    test = predict_split(run, info, "test", cfg, smooth_window)
    if not len(test.get("probs", [])):
        from workflows.core.runtime import UserError

        raise UserError(f"{run_dir}: no test frames for fold {run['split']['fold']}")
    test["labels"] = own_labels(test, len(info["aus"]))
    kw: dict[str, Any] = {"thresholds": ckpt["thresholds"]}
    if cfg.tune_thresholds:
        val = predict_split(run, info, "val", cfg, smooth_window)
        val_labels = own_labels(val, len(info["aus"]))
        if cfg.against == "teacher" and not (val_labels >= 0).any():
            val_labels = _teacher_decisions_of(run, info, "val", val["sample_id"])
        kw = {"val_probs": val["probs"], "val_labels": val_labels, "val_subjects": val["subject"]}
    ev = evaluate_model_outputs(report_name(run["run"]), test["probs"], test["labels"], test["subject"], info["aus"],
                                fold=run["split"]["fold"], dataset=info["dataset"], n_boot=cfg.bootstrap,
                                seed=cfg.seed, **kw)
    ev["run"] = run_dir
    ev["checkpoint"] = run["checkpoint"]
    if not cfg.tune_thresholds:
        ev["threshold_source"] = _checkpoint_threshold_source(ckpt)
    if cfg.against == "teacher":
        ev["teacher_agreement"] = _agreement(run, info, test, ev["thresholds"])
    return ev


def _teacher_soft(run: dict[str, Any], info: dict[str, Any], split_name: str, sample_ids: Any) -> Any:
    """float (N, n_AU): the teacher's soft labels of a split's rows in ``sample_ids`` order (NaN
    for a row without)."""
    import numpy as np

    from components.store.splits import _split_files, teacher_labels

    soft = teacher_labels(run["preprocess_store"], _split_files(run["preprocess_store"], run["split"][split_name]),
                          info["aus"])
    unknown = [float("nan")] * len(info["aus"])
    return np.array([soft.get(str(s), unknown) for s in sample_ids], np.float64).reshape(-1, len(info["aus"]))


def _teacher_decisions_of(run: dict[str, Any], info: dict[str, Any], split_name: str, sample_ids: Any) -> Any:
    from components.metrics.agreement import teacher_decisions
    from components.store.splits import teacher_labelling

    return teacher_decisions(_teacher_soft(run, info, split_name, sample_ids),
                             teacher_labelling(run["preprocess_store"])["thresholds"])


def _agreement(run: dict[str, Any], info: dict[str, Any], test: dict[str, Any], thresholds: Any) -> dict[str, Any]:
    """The run's test predictions against the teacher of its store (``components.metrics.agreement``)."""
    from components.metrics.agreement import teacher_agreement
    from components.store.splits import teacher_labelling

    done = teacher_labelling(run["preprocess_store"])
    res = teacher_agreement(test["probs"], thresholds, _teacher_soft(run, info, "test", test["sample_id"]),
                            done["thresholds"], info["aus"])
    return {"teacher": done["source"], "teacher_thresholds": done["thresholds"], **res}


def teacher_agreement_results(evals: "list[dict[str, Any]]") -> dict[str, Any]:
    """report.json's ``teacher_agreement``: per model its folds and the means over them."""
    from components.metrics.occurrence import nanmean

    models: dict[str, Any] = {}
    for e in evals:
        m = models.setdefault(e["model"], {"folds": []})
        m["folds"].append({"fold": e["fold"], "run": e["run"], **e["teacher_agreement"]})
    for m in models.values():
        for key in ("mean_agreement_f1", "mean_correlation"):
            vals = [f[key] for f in m["folds"] if f[key] is not None]
            m[key] = nanmean(vals) if vals else None
    teachers = sorted({e["teacher_agreement"]["teacher"] for e in evals})
    return {"teacher": teachers[0] if len(teachers) == 1 else teachers, "models": models}


def report_name(run_name: str) -> str:
    """A run's name in the report: fold runs of one configuration share it (``m-fold2`` → ``m``)."""
    return re.sub(r"-fold\d+$", "", run_name)


def _checkpoint_of(run: dict[str, Any]) -> dict[str, Any]:
    from components.checkpoint import load_checkpoint

    return load_checkpoint(run["checkpoint"])


def _checkpoint_threshold_source(ckpt: dict[str, Any]) -> str:
    """How the checkpoint's thresholds were chosen, for the report: on the validation subjects in
    training (``tune_thresholds``), or 0.5 (a run trained without, or before the option)."""
    if (ckpt.get("train_config") or {}).get("tune_thresholds"):
        return "checkpoint: tuned on validation subjects in training"
    return "checkpoint: default 0.5"


def cross_dataset(run_dir: str, store: str, cfg: EvaluateConfig, smooth_window: int = 1) -> dict[str, Any]:
    """Test a run on every frame of another dataset's store over the AUs both label."""
    from components.checkpoint import load_checkpoint
    from components.report.document import evaluate_cross_dataset
    from components.store.neutral import reads_neutral
    from components.store.splits import frames_files, store_info
    from workflows.core.store_scoring import predict_store_files
    from workflows.core.training import read_run

    run = read_run(run_dir)
    ckpt = load_checkpoint(run["checkpoint"])
    info = store_info(store)
    pred = predict_store_files(frames_files(store), run["checkpoint"], "checkpoint",
                               list(info["diff_steps"]), cfg.actors, cfg.actor_cpus, smooth_window=smooth_window,
                               reads_neutral=reads_neutral(ckpt["input_spec"]))
    ev = evaluate_cross_dataset(report_name(run["run"]), pred["probs"], pred["labels"], pred["subject"],
                                ckpt["preprocess"]["dataset"], info["dataset"], model_aus=ckpt["aus"],
                                label_aus=info["aus"], n_boot=cfg.bootstrap, seed=cfg.seed)
    ev["run"] = run_dir
    return ev


def run_evaluation(cfg: EvaluateConfig, smooth_window: int = 1) -> dict[str, Any]:
    """Evaluate every run of ``cfg`` and write the report.

    ``smooth_window`` > 1 evaluates the probabilities as served: each test (and validation)
    video's are smoothed by the centred moving mean of that many frames (paper 002 §3, the
    option ``components.inference`` gives every path) before thresholds and metrics; 1: raw.
    """
    from components.report.document import build_results, write_report
    from components.provenance import git_commit

    if smooth_window < 1 or smooth_window % 2 == 0:
        from workflows.core.runtime import UserError

        raise UserError(f"smooth_window must be a positive odd number of frames, got {smooth_window}")
    run_dirs = find_runs(list(cfg.runs))
    evals = [evaluate_run(r, cfg, smooth_window) for r in run_dirs]
    cross = [cross_dataset(r, s, cfg, smooth_window) for s in cfg.test_data for r in run_dirs]
    results = build_results(evals, cross_dataset=cross, n_boot=cfg.bootstrap, seed=cfg.seed)
    if cfg.against == "teacher":
        results["teacher_agreement"] = teacher_agreement_results(evals)
    paths = write_report(cfg.out, results, {"git_commit": git_commit(), "runs": [e["run"] for e in evals],
                                            "threshold_policy": "validation-tuned" if cfg.tune_thresholds else "checkpoint",
                                            "smooth_window": smooth_window, "against": cfg.against})
    thresholds = {e["run"]: {"checkpoint": e["checkpoint"], "thresholds": list(e["thresholds"]),
                             "source": e["threshold_source"], "model": e["model"], "fold": e["fold"]}
                  for e in evals}
    storage.write_json(storage.join(cfg.out, "thresholds.json"), thresholds)
    return {"results": results, "paths": {k: str(v) for k, v in paths.items() if k != "plots"},
            "thresholds": thresholds}
