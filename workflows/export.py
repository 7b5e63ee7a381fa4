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
from pathlib import Path
from typing import Any

from components.export import FORMATS

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


def _targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, checkpoint) pairs to export."""
    from components.ensemble import EnsembleManifest
    from workflows.runtime import UserError

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


def run_export(args: argparse.Namespace) -> dict[str, Any]:
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
    p = argparse.ArgumentParser(prog="facsflow export", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ensemble", help="ensemble folder (its ensemble.json names the members)")
    src.add_argument("--checkpoint", nargs="+", help="one or more member checkpoints")
    p.add_argument("--member", nargs="+", help="only these members of the ensemble (default: all)")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: "list[str] | None" = None) -> int:
    args = build_parser().parse_args(argv)
    if args.member and not args.ensemble:
        build_parser().error("--member selects members of --ensemble")
    summary = run_export(args)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
