"""``facsflow synth``: generate a synthetic AU dataset from real face photos in a real layout.

    python -m workflows.synth --out DIR --layout bp4d|disfa|affwild2|manifest [--faces DIR] [--seed N]

Every ``SynthConfig`` field is a flag (``--subjects-per-identity 4``, ``--aus 1,2,12``);
``--config YAML`` reads them from a file first and ``--set key=value`` overrides any. The
generator runs in this process on one core (no Ray): a demo-size set takes seconds. Rendering
many videos could later be spread over Ray tasks, one per pseudo-subject, since every video has
its own random stream.
"""

from __future__ import annotations

import argparse

from components.datasets.synth.generator import SynthConfig, SynthSummary

__all__ = ["build_parser", "config_from_args", "main", "describe"]


def build_parser() -> argparse.ArgumentParser:
    """One flag per ``SynthConfig`` field (workflows.core.stage_cli.stage_parser), its help the field's docstring."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(
        SynthConfig, "facsflow synth", ray=False,
        description="Generate a synthetic AU video dataset from real face photos, written in the "
                    "on-disk layout of BP4D, DISFA, Aff-Wild2 or a manifest CSV, so that the same "
                    "adapters read it as real data. Labels mean 'AU added by the generator'.")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """``SynthConfig`` from ``--config``, ``--set`` and the flags given (values checked by the config)."""
    from workflows.core.stage_cli import stage_config

    return stage_config(args)


def _progress_line(msg: str) -> None:
    """The generator's per-subject progress, one line each, flushed (a pipe buffers otherwise)."""
    print(msg, flush=True)


def describe(summary: SynthSummary) -> str:
    """What was written and where, for a person."""
    rates = ", ".join(f"{k} {v:.0%}" for k, v in summary.base_rates.items())
    lines = [
        f"synthetic {summary.layout} dataset: {summary.out}",
        f"  {summary.identities} identities, {summary.subjects} pseudo-subjects, {summary.videos} videos, "
        f"{summary.frames} frames ({summary.occluded_frames} occluded) in {summary.seconds} s",
        f"  labels: {summary.labels}",
        f"  side files: {summary.meta_dir} (subjects.csv, groups.csv, videos.csv, occlusions.csv, "
        "landmarks.npz, config.yaml, summary.json)",
        f"  base rates: {rates}",
    ]
    lines += [f"  skipped: {s}" for s in summary.skipped]
    if summary.train_problems:
        lines.append("  WARNING: `facsflow train` with its default split cannot use this set:")
        lines += [f"    {p}" for p in summary.train_problems]
    else:
        lines.append("  every fold of train's default split has train, validation and test subjects")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    """Entry point of ``facsflow synth`` / ``python -m workflows.synth``."""
    from components.datasets.synth.generator import OutputDirError, SourceError, generate
    from workflows.core.runtime import UserError

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    try:
        summary = generate(cfg, progress=_progress_line)
    except (SourceError, OutputDirError) as e:
        raise UserError(str(e)) from None
    print(describe(summary))
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
