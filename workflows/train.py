"""``facsflow train``: train one model (or every fold) on the feature store with Ray Train.

``python -m workflows.train --model NAME --data STORE --out RUNS [--fold K|all] [--workers N]
[--gpu] [--config YAML] [--set KEY=VALUE] [--address A]`` (every TrainConfig field is a flag)

The stage's entry: its command line and ``main``. The training itself (the Ray Train loop, the
run folder, ``read_run``) is ``workflows.core.training``'s; its public names are re-exported here.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from workflows.core.training import (TrainConfig, checkpoint_train_config, epoch_schedule, read_run, run_training,
                                     train_loop_per_worker, validation_labels)

__all__ = ["TrainConfig", "run_training", "read_run", "epoch_schedule", "checkpoint_train_config", "validation_labels",
           "train_loop_per_worker", "build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``TrainConfig`` (``--model``, ``--epochs``, ``--optim.lr``, ...), plus ``--fold``."""
    from workflows.core.stage_cli import stage_parser

    p = stage_parser(
        TrainConfig, "facsflow train",
        description="Train a registered AU model on a feature store with Ray Train (DDP). "
                    "Each fold is a run in <out>/<model>-fold<k>/ with checkpoints, metrics and config.")
    p.add_argument("--fold", help="fold number (1-based; sets split.fold), or 'all' for every fold")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from ``--config``, ``--set`` and the flags; data and out are required."""
    from workflows.core.stage_cli import stage_config

    extra = {"split.fold": args.fold} if args.fold not in (None, "all") else {}
    return stage_config(args, required=("data", "out"), extra=extra)


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import check_resources, configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = config_from_args(args)
    with ray_session(args.address) as resources:
        cfg = replace(cfg, worker_cpus=check_resources(
            "train", resources, cfg.workers, cfg.worker_cpus, 1.0 if cfg.gpu else 0.0, cfg.data_cpus,
            change="--workers, --set worker_cpus=X, --set data_cpus=X"))
        folds = [cfg.split.fold]
        if args.fold == "all":
            from components.store.splits import fold_count

            folds = list(range(1, fold_count(cfg.data, cfg.split) + 1))
        for k in folds:
            run_cfg = replace(cfg, split=replace(cfg.split, fold=k), name=cfg.name if len(folds) == 1 else "")
            summary = run_training(run_cfg)
            print(f"run {summary['run']}: best validation mean F1 {summary['best_val_mean_f1']:.3f} at 0.5, "
                  f"{summary['select_metric']} {summary['best_val_score']:.3f} at the checkpoint's thresholds; "
                  f"checkpoint ({summary['select']}) {summary['checkpoint']}; run folder {summary['run_dir']}")
            if summary.get("warning"):
                print(f"run {summary['run']}: WARNING {summary['warning']}")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
