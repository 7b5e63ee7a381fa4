"""``facsflow recipe``: a paper's recipe in one command: train every fold, then ensemble the runs.

    python -m workflows.recipe vote --config workflows/configs/recipe-lrp-arl-ff-affwild2.yaml \\
        --data STORE --out DIR [--epochs N] [--workers N] [--set KEY=VALUE]

Paper 001 §4.3 trains five models, on the official Aff-Wild2 split and on 4 folds over the
training videos, and votes them on the test set. Its recipe config sets ``split.train_folds: 4``,
so the store's dataset has 5 folds; this command trains each (``workflows.train.run_training``,
runs in ``DIR/runs/<model>-fold<k>/``) and then writes the ensemble with the chosen rule
(``workflows.ensemble.build_ensemble``, ``DIR/ensemble/ensemble.json``), as
``facsflow train --fold all`` followed by ``facsflow ensemble --rule vote`` would. A finished
run is reused, so a rerun after a crash continues with the first fold that did not finish.
``DIR/recipe.json`` records the config, the folds' runs and their selection scores, and the
manifest.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from components import storage
from components.configuration import load_yaml, to_dict
from workflows.train import TrainConfig

log = logging.getLogger("facsflow.recipe")

__all__ = ["run_recipe", "build_parser", "main"]

RULES = ("vote", "mean", "best_per_au")


def run_recipe(cfg: TrainConfig, rule: str, out: str) -> dict[str, Any]:
    """Train ``cfg`` on every fold of its store, then ensemble the runs with ``rule``.

    ``cfg.out`` is ignored: runs go to ``<out>/runs``, the manifest to ``<out>/ensemble``.
    Returns the summary also written to ``<out>/recipe.json``.
    """
    from workflows.data import fold_count
    from workflows.ensemble import build_ensemble
    from workflows.train import run_training

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facsflow recipe",
        description="Train a recipe config (workflows/configs/recipe-*.yaml) on every fold of a feature "
                    "store, then write the ensemble of the runs with RULE (paper 001: vote).")
    p.add_argument("rule", choices=RULES, help="how the ensemble combines the folds' models")
    p.add_argument("--config", required=True, help="recipe YAML (a TrainConfig), e.g. "
                                                   "workflows/configs/recipe-lrp-arl-ff-affwild2.yaml")
    p.add_argument("--data", required=True, help="feature store written by `facsflow preprocess`")
    p.add_argument("--out", required=True, help="folder for runs/, ensemble/ and recipe.json")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (e.g. 1 for a smoke run)")
    p.add_argument("--workers", type=int, help="override the recipe's DDP workers")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field, e.g. --set model=lrp_arl_ff_small (repeatable)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray)")
    return p


def main(argv: "list[str] | None" = None) -> int:
    from workflows.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    over = [f"data={args.data}", *args.set]
    over += [f"{k}={v}" for k, v in (("epochs", args.epochs), ("workers", args.workers)) if v is not None]
    cfg = load_yaml(TrainConfig, args.config, over)
    with ray_session(args.address):
        res = run_recipe(cfg, args.rule, args.out)
    for r in res["runs"]:
        print(f"fold {r['fold']}: {r['run_dir']} ({r['select_metric']} {r['best_val_score']:.3f})")
    print(f"ensemble ({res['rule']}) of {len(res['runs'])} runs: {res['manifest']}")
    return 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
