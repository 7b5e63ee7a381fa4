"""``facsflow ensemble``: choose an ensemble from trained runs and write its manifest.

``python -m workflows.ensemble --runs RUNS... --out DIR [--rule mean|vote|best_per_au]
[--thresholds EVAL_DIR]``

The stage's entry: its command line and ``main``. Choosing the members, weights and thresholds
is ``workflows.core.ensembling``'s; its public names are re-exported here.
"""

from __future__ import annotations

import argparse

import numpy as np

from workflows.core.ensembling import EnsembleConfig, build_ensemble

__all__ = ["EnsembleConfig", "build_ensemble", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``EnsembleConfig`` (``--runs``, ``--out``, ``--rule``, ``--thresholds``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(EnsembleConfig, "facsflow ensemble",
                        description="Choose an ensemble of trained runs (weights on validation "
                                    "subjects) and write ensemble.json for serving and prediction.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import save_config, stage_config
    from workflows.core.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg: EnsembleConfig = stage_config(args, required=("runs", "out"))
    save_config(cfg, cfg.out, "ensemble")
    with ray_session(args.address):
        res = build_ensemble(list(cfg.runs), cfg.out, cfg.rule, cfg.thresholds, cfg.actors, cfg.max_subjects)
    print(f"ensemble manifest: {res['manifest']} (weights {np.round(res['weights'], 3).tolist()})")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
