"""Export ensemble members to TorchScript or ONNX, for users outside Ray and Python servers.

    facsflow export --ensemble DIR [--member NAME ...] --format onnx --out DIR
    facsflow export --checkpoint runs/x/checkpoint.pt --format torchscript --out DIR

Each member becomes ``<out>/<member>.<pt|onnx>`` with its ``.json`` sidecar (AU list, inputs,
thresholds, normalisation: see ``components.export``), checked against PyTorch on a batch of
another size than the one traced; ``<out>/export.json`` lists what was written. A member that
cannot be exported (one that reads a video window) is reported and the others still go out;
the exit code is 1 when any member failed. Runs without Ray.
"""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from components.export import FORMATS

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}

Format = Literal["torchscript", "onnx"]
assert typing.get_args(Format) == FORMATS, "ExportConfig.format must list components.export.FORMATS"


@dataclass
class ExportConfig:
    """One export; saved as ``<out>/export.yaml`` beside ``export.json``."""

    ensemble: str = ""
    """Ensemble folder (its ensemble.json names the members); or give checkpoint."""
    checkpoint: tuple[str, ...] = ()
    """Member checkpoints to export instead of an ensemble's members."""
    member: tuple[str, ...] = ()
    """Only these members of the ensemble (default: all)."""
    format: Format = "onnx"
    """torchscript (.pt) or onnx (.onnx)."""
    out: str = ""
    """Output folder."""

    def __post_init__(self) -> None:
        if self.ensemble and self.checkpoint:
            raise ValueError("give ensemble or checkpoint, not both")
        if self.member and not self.ensemble:
            raise ValueError("member selects members of ensemble: give ensemble too")


def _targets(args: ExportConfig) -> list[tuple[str, str]]:
    """(name, checkpoint) pairs to export."""
    from components.ensemble import EnsembleManifest
    from workflows.core.runtime import UserError

    if args.checkpoint:
        # Named after the run folder that holds each checkpoint; two of one folder would overwrite.
        named = [(Path(c).parent.name or Path(c).stem, c) for c in args.checkpoint]
        names = [n for n, _ in named]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserError(f"checkpoints from the same folder ({', '.join(twice)}) would get one output "
                            "name: export them one at a time into different --out folders")
        return named
    try:
        manifest = EnsembleManifest.load(args.ensemble)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    members = {m.name: m.checkpoint for m in manifest.members}
    wanted = args.member or list(members)
    unknown = [n for n in wanted if n not in members]
    if unknown:
        raise UserError(f"{args.ensemble}: no member named {', '.join(unknown)}; members: {', '.join(members)}")
    return [(n, members[n]) for n in wanted]


def run_export(args: ExportConfig) -> dict[str, Any]:
    from components.export import export_member

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done, failed = [], {}
    for name, checkpoint in _targets(args):
        path = out / f"{name}{SUFFIX[args.format]}"
        try:
            record = export_member(checkpoint, path, format=args.format)
        except (ValueError, FileNotFoundError) as e:
            failed[name] = str(e)
            print(f"{name}: not exported: {e}")
            continue
        done.append(record)
        print(f"{name}: {path} ({record['model_name']}, inputs {', '.join(record['inputs'])}; "
              f"max |PyTorch - export| {record['max_abs_diff']:.2e})")
    summary = {"format": args.format, "exported": done, "failed": failed}
    (out / "export.json").write_text(json.dumps(summary, indent=1))
    print(f"summary: {out / 'export.json'}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``ExportConfig`` (``--ensemble`` or ``--checkpoint``, ``--member``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(ExportConfig, "facsflow export", ray=False, description=__doc__.split("\n\n")[0])


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import save_config, stage_config
    from workflows.core.runtime import UserError

    cfg: ExportConfig = stage_config(build_parser().parse_args(argv), required=("out",))
    if not cfg.ensemble and not cfg.checkpoint:
        raise UserError("export needs --ensemble DIR or --checkpoint FILE... (or ensemble/checkpoint in --config)")
    save_config(cfg, cfg.out, "export")
    summary = run_export(cfg)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
