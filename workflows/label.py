"""``facsflow label``: add a teacher's soft AU probabilities to a feature store's rows.

``facsflow label --teacher builtin|ENSEMBLE_DIR --data STORE [--config YAML] [--set K=V] [--address A]``

The stage's entry: its command line and ``main``. What the teacher sees and how units are
labelled and resumed is ``workflows.core.labelling``'s; its public names are re-exported here.
"""

from __future__ import annotations

import argparse
import logging

from workflows.core.labelling import FAULT_ENV, LabelConfig, LabelsIncomplete, Teacher, resolve_teacher, run_label

log = logging.getLogger("facsflow.label")

__all__ = ["LabelConfig", "Teacher", "resolve_teacher", "run_label", "LabelsIncomplete", "main", "FAULT_ENV",
           "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``LabelConfig`` (``--teacher``, ``--data``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(
        LabelConfig, "facsflow label",
        description="Add a teacher's soft AU probabilities to a feature store's rows (<data>/labels/), "
                    "in parallel with Ray Data; resumable.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import check_resources, configure_logging, ray_session
    from workflows.core.stage_cli import stage_config

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg = stage_config(args, required=("data",))
    with ray_session(args.address) as resources:
        check_resources("label", resources, 1, cfg.actor_cpus, 0.0, fit=False, change="--set actor_cpus=X")
        try:
            s = run_label(cfg)
        except LabelsIncomplete as e:
            log.error("%s", e)
            return 1
    print(f"labels: {cfg.data}/labels by {s['teacher']}: {s['store_rows']} rows, {s['store_labelled']} with "
          f"probabilities, {s['store_unknown']} unknown (no teacher input), {s['no_face_frames']} frame(s) "
          f"without a face; {s['units']} of {s['units_total']} unit(s) labelled by this run "
          f"({s['rows']} rows, {s['rows_per_s']} rows/s), {s['seconds']} s")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
