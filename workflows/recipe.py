"""``facsflow recipe``: a paper's recipe in one command: train every fold, then ensemble the runs.

    facsflow recipe --config workflows/configs/recipe-lrp-arl-ff-affwild2.yaml \\
        --data STORE --out DIR [--rule vote] [--epochs N] [--workers N] [--set KEY=VALUE]

Paper 001 §4.3 trains five models, on the official Aff-Wild2 split and on 4 folds over the
training videos, and votes them on the test set. Its recipe config sets ``split.train_folds: 4``,
so the store's dataset has 5 folds; this command trains each (``workflows.core.training.run_training``,
runs in ``DIR/runs/<model>-fold<k>/``) and then writes the ensemble with the chosen rule
(``workflows.core.ensembling.build_ensemble``, ``DIR/ensemble/ensemble.json``), as
``facsflow train --fold all`` followed by ``facsflow ensemble --rule vote`` would. A finished
run is reused, so a rerun after a crash continues with the first fold that did not finish.
``DIR/recipe.json`` records the config, the folds' runs and their selection scores, and the
manifest.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from components import storage
from components.configuration import to_dict
from workflows.core.train_config import TrainConfig

log = logging.getLogger("facsflow.recipe")

__all__ = ["run_recipe", "build_parser", "main"]

RULES = ("vote", "mean", "best_per_au")


def run_recipe(cfg: TrainConfig, rule: str, out: str) -> dict[str, Any]:
    """Train ``cfg`` on every fold of its store, then ensemble the runs with ``rule``.

    ``cfg.out`` is ignored: runs go to ``<out>/runs``, the manifest to ``<out>/ensemble``.
    Returns the summary also written to ``<out>/recipe.json``.
    """
    from components.store.splits import fold_count
    from workflows.core.ensembling import build_ensemble
    from workflows.core.training import run_training

    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    cfg = replace(cfg, out=storage.join(out, "runs"), name="")
    n = fold_count(cfg.data, cfg.split)
    runs = []
    for k in range(1, n + 1):
        log.info("recipe: fold %d of %d", k, n)
        summary = run_training(replace(cfg, split=replace(cfg.split, fold=k)))
        runs.append({"fold": k, "run_dir": summary["run_dir"], "checkpoint": summary["checkpoint"],
                     "select_metric": summary.get("select_metric", "f1"),
                     "best_val_score": summary.get("best_val_score"), "test": summary["split"]["test"]})
    ensemble = build_ensemble([r["run_dir"] for r in runs], storage.join(out, "ensemble"), rule)
    result = {"config": to_dict(cfg), "rule": rule, "folds": n, "runs": runs, "manifest": ensemble["manifest"],
              "weights": ensemble["weights"], "report": ensemble["report"]}
    storage.write_json(storage.join(out, "recipe.json"), result)
    return result


@dataclass
class RecipeConfig(TrainConfig):
    """``facsflow recipe``: a training config trained on every fold, plus how the runs combine.

    ``out`` holds ``runs/``, ``ensemble/`` and ``recipe.json``."""

    rule: Literal["vote", "mean", "best_per_au"] = "vote"
    """How the ensemble combines the folds' models (paper 001 §4.3: vote)."""


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``RecipeConfig`` (every TrainConfig field, and ``--rule``)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(RecipeConfig, "facsflow recipe", aliases={"split.fold": ["--fold"]},
                        description="Train a recipe config (workflows/configs/recipe-*.yaml) on every fold of "
                                    "a feature store, then write the ensemble of the runs (paper 001: vote).")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import save_config, stage_config
    from workflows.core.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg: RecipeConfig = stage_config(args, required=("data", "out"))
    save_config(cfg, cfg.out, "recipe")
    with ray_session(args.address):
        res = run_recipe(cfg, cfg.rule, cfg.out)
    for r in res["runs"]:
        print(f"fold {r['fold']}: {r['run_dir']} ({r['select_metric']} {r['best_val_score']:.3f})")
    print(f"ensemble ({res['rule']}) of {len(res['runs'])} runs: {res['manifest']}")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
