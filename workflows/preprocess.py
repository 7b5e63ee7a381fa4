"""``facsflow preprocess``: detect, track and align a dataset's faces into a Parquet feature store.

``python -m workflows.preprocess --dataset D --root DIR --out STORE [--config YAML] [--set K=V] [--address A]``

The stage's entry: its command line and ``main``. The work (units, resumption, retries, the
store's files) is ``workflows.core.preprocessing``'s; its public names are re-exported here.
"""

from __future__ import annotations

import argparse
import logging

from workflows.core.preprocessing import (FAULT_ENV, InputsLost, Plan, PreprocessConfig, UnitProgress, UnitsFailed,
                                          min_chunk_overlap, plan_items, result_fingerprint, run_preprocess,
                                          unit_stem)

log = logging.getLogger("facsflow.preprocess")

__all__ = ["PreprocessConfig", "UnitsFailed", "InputsLost", "Plan", "plan_items", "run_preprocess", "unit_stem",
           "result_fingerprint", "min_chunk_overlap", "main", "FAULT_ENV", "UnitProgress", "build_parser",
           "config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``PreprocessConfig`` (``--dataset``, ``--face.detector``, ...), plus ``--images``."""
    from workflows.core.stage_cli import stage_parser

    p = stage_parser(
        PreprocessConfig, "facsflow preprocess",
        description="Detect, track and align faces of a dataset into a Parquet feature store "
                    "(<out>/frames/ and <out>/rejects/), in parallel with Ray Data. Shipped configs: "
                    "workflows/configs/preprocess-*.yaml.")
    p.add_argument("--images", help="BP4D/BP4D+: folder holding the <Subj>/<Task>/ frame folders "
                                    "(sets adapter_options.images)")
    return p


def config_from_args(args: argparse.Namespace) -> PreprocessConfig:
    """PreprocessConfig from ``--config``, ``--set`` and the flags; root and out are required."""
    from workflows.core.stage_cli import stage_config

    extra = {"adapter_options.images": args.images} if args.images else {}
    return stage_config(args, required=("root", "out"), extra=extra)


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import check_resources, configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = config_from_args(args)
    with ray_session(args.address) as resources:
        check_resources("preprocess", resources, 1, cfg.actor_cpus, cfg.actor_gpus, fit=False,
                        change="--set actor_cpus=X, --set actor_gpus=0")
        try:
            summary = run_preprocess(cfg)
        except (UnitsFailed, InputsLost) as e:
            log.error("%s", e)
            return 1
    neutral = (f", {cfg.out}/neutral (faces' running neutral, {summary['neutral_videos']} video(s) written)"
               if summary.get("neutral_videos") else "")
    print(f"feature store: {cfg.out}/frames ({summary['store_rows']} rows), {cfg.out}/rejects "
          f"({summary['store_rejects']} rejects){neutral}; {summary['frames_in']} input frames, "
          f"{summary['units']} unit(s) processed, {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
