"""Evaluate trained runs on their held-out test subjects and write the report.

``python -m workflows.evaluate --runs RUNS... --out DIR [--tune-thresholds] [--config YAML] [--set K=V]``

Each run is evaluated on its own fold's test subjects with the same ``Predictor`` that serving
uses. Thresholds are 0.5, or tuned per AU on the run's validation subjects (never on test) with
``--tune-thresholds``; the evaluation output owns them (``thresholds.json``), and the ensemble
manifest copies the ones it uses. The report (JSON, Markdown, HTML with plots) shows every model
per fold and averaged over folds, beside the trivial predictors.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from components import storage

log = logging.getLogger("facsflow.evaluate")

__all__ = ["EvaluateConfig", "find_runs", "run_evaluation", "main"]


@dataclass
class EvaluateConfig:
    """One evaluation; saved as ``<out>/evaluate.yaml``."""

    runs: tuple[str, ...] = ()
    """Run folders (or folders holding runs)."""
    out: str = ""
    """Where the report goes."""
    tune_thresholds: bool = False
    """Tune per-AU thresholds on each run's validation subjects."""
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
            from workflows.runtime import UserError

            raise UserError(f"run folder not found: {p}")
        for info in sorted(fs.get_file_info(pafs.FileSelector(path)), key=lambda i: i.path):
            child = storage.join(p, info.base_name)
            if info.type == pafs.FileType.Directory and storage.exists(storage.join(child, "run.json")):
                found.append(child)
    if not found:
        from workflows.runtime import UserError

        raise UserError(f"no finished runs (run.json) under {list(paths)}; run `facsflow train` first")
    return found


def predict_split(run: dict[str, Any], info: dict[str, Any], split_name: str, cfg: EvaluateConfig,
                  smooth_window: int = 1) -> dict[str, Any]:
    """Scores of one split of a run's store (``smooth_window``: as ``run_evaluation``)."""
    from components.store.splits import _split_files
    from workflows.store_scoring import predict_store_files

    files = _split_files(run["preprocess_store"], run["split"][split_name])
    return predict_store_files(files, run["checkpoint"], "checkpoint", list(info["diff_steps"]),
                               cfg.actors, cfg.actor_cpus, smooth_window=smooth_window)


def evaluate_run(run_dir: str, cfg: EvaluateConfig, smooth_window: int = 1) -> dict[str, Any]:
    """Test-set evaluation of one run (thresholds from its validation subjects when asked;
    ``smooth_window`` as ``run_evaluation``)."""
    from components.report.document import evaluate_model_outputs
    from components.store.splits import store_info
    from workflows.train import read_run

    run = read_run(run_dir)
    train_cfg = json.loads(storage.read_text(storage.join(run_dir, "split.json")))
    run["split"] = train_cfg
    ckpt_store = _store_of(run)
    run["preprocess_store"] = ckpt_store
    info = store_info(ckpt_store)
    test = predict_split(run, info, "test", cfg, smooth_window)
    if not len(test.get("probs", [])):
        from workflows.runtime import UserError

        raise UserError(f"{run_dir}: no test frames for fold {run['split']['fold']}")
    kw: dict[str, Any] = {}
    if cfg.tune_thresholds:
        val = predict_split(run, info, "val", cfg, smooth_window)
        kw = {"val_probs": val["probs"], "val_labels": val["labels"], "val_subjects": val["subject"]}
    ev = evaluate_model_outputs(report_name(run["run"]), test["probs"], test["labels"], test["subject"], info["aus"],
                                fold=run["split"]["fold"], dataset=info["dataset"], n_boot=cfg.bootstrap,
                                seed=cfg.seed, **kw)
    ev["run"] = run_dir
    ev["checkpoint"] = run["checkpoint"]
    return ev


def report_name(run_name: str) -> str:
    """A run's name in the report: fold runs of one configuration share it (``m-fold2`` → ``m``)."""
    return re.sub(r"-fold\d+$", "", run_name)


def _store_of(run: dict[str, Any]) -> str:
    from components.checkpoint import load_checkpoint

    return load_checkpoint(run["checkpoint"])["preprocess"]["store"]


def cross_dataset(run_dir: str, store: str, cfg: EvaluateConfig, smooth_window: int = 1) -> dict[str, Any]:
    """Test a run on every frame of another dataset's store over the AUs both label."""
    from components.checkpoint import load_checkpoint
    from components.report.document import evaluate_cross_dataset
    from components.store.splits import frames_files, store_info
    from workflows.store_scoring import predict_store_files
    from workflows.train import read_run

    run = read_run(run_dir)
    ckpt = load_checkpoint(run["checkpoint"])
    info = store_info(store)
    pred = predict_store_files(frames_files(store), run["checkpoint"], "checkpoint",
                               list(info["diff_steps"]), cfg.actors, cfg.actor_cpus, smooth_window=smooth_window)
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
        from workflows.runtime import UserError

        raise UserError(f"smooth_window must be a positive odd number of frames, got {smooth_window}")
    run_dirs = find_runs(list(cfg.runs))
    evals = [evaluate_run(r, cfg, smooth_window) for r in run_dirs]
    cross = [cross_dataset(r, s, cfg, smooth_window) for s in cfg.test_data for r in run_dirs]
    results = build_results(evals, cross_dataset=cross, n_boot=cfg.bootstrap, seed=cfg.seed)
    paths = write_report(cfg.out, results, {"git_commit": git_commit(), "runs": [e["run"] for e in evals],
                                            "threshold_policy": "validation-tuned" if cfg.tune_thresholds else "0.5",
                                            "smooth_window": smooth_window})
    thresholds = {e["run"]: {"checkpoint": e["checkpoint"], "thresholds": list(e["thresholds"]),
                             "source": e["threshold_source"], "model": e["model"], "fold": e["fold"]}
                  for e in evals}
    storage.write_json(storage.join(cfg.out, "thresholds.json"), thresholds)
    return {"results": results, "paths": {k: str(v) for k, v in paths.items() if k != "plots"},
            "thresholds": thresholds}


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``EvaluateConfig`` (``--runs``, ``--out``, ``--tune-thresholds``, ...)."""
    from workflows.cli import stage_parser

    return stage_parser(
        EvaluateConfig, "facsflow evaluate",
        description="Evaluate trained runs on their held-out test subjects: per-AU F1, mean F1, "
                    "accuracy, ABAW score, bootstrap CIs, trivial predictors; report.md/.html/.json.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.cli import save_config, stage_config
    from workflows.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = stage_config(args, required=("runs", "out"))
    save_config(cfg, cfg.out, "evaluate")
    with ray_session(args.address):
        res = run_evaluation(cfg, cfg.smooth_window)
    for name, m in res["results"]["models"].items():
        mf = m["summary"]["mean_f1"]
        print(f"{name}: test mean F1 {mf['mean']:.3f}" + (f" ± {mf['std']:.3f}" if mf.get("std") else ""))
    triv = res["results"]["trivial"]
    print(f"best trivial predictor ({triv['best']}): mean F1 "
          f"{triv['summary'][triv['best']]['mean_f1']['mean']:.3f}")
    print(f"report: {res['paths']['md']} , {res['paths']['html']} , {res['paths']['json']}")
    return 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
