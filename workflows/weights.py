"""List the pretrained-weights catalogue: ``python -m workflows.weights [--json] [--load] [NAME ...]``.

Shows every entry (or the named ones): architecture, training data, licence, input size and
normalisation, whether its file is present and its SHA-256 verified, and the command that gets
it. ``--load`` also builds each present network (running and caching any conversion) and
reports the seconds it took. Exit status 1 when a named entry is not present and verified.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass


def describe(name: str, load: bool = False) -> dict:
    """One entry's catalogue facts plus its status on this machine (and load time with ``load``)."""
    from components import weights

    entry = weights.get(name)
    row = {"name": entry.name, "architecture": entry.architecture, "task": entry.task,
           "trained_on": entry.trained_on, "licence": entry.licence, "commercial_use": entry.commercial_use,
           "input_size": entry.input_size, "normalisation": asdict(entry.normalisation),
           "embedding_dim": entry.embedding_dim, "feature_dim": entry.feature_dim,
           "source": asdict(entry.source), "sha256": entry.sha256,
           "file_format": entry.file_format, "note": entry.note}
    row.update(weights.status(name))
    if load and row["verified"]:
        from components.models.backbones import build_pretrained_network

        t0 = time.perf_counter()
        try:
            build_pretrained_network(name)
            row["load_s"] = round(time.perf_counter() - t0, 2)
        except weights.WeightsError as exc:
            row["verified"], row["error"] = False, str(exc)
    return row


def _text(row: dict) -> str:
    mark = "ok" if row["verified"] else ("BAD CHECKSUM" if row["present"] else "missing")
    norm = row["normalisation"]
    prep = "per-image standardised" if norm["per_image"] else f"mean {norm['mean']} std {norm['std']}"
    lines = [f"{row['name']}  [{mark}]  {row['architecture']}, {row['task']}, {row['input_size']} px "
             f"{norm['colour_order']}, {prep}",
             f"    trained on: {row['trained_on']}",
             f"    licence:    {row['licence']}  (commercial use: {row['commercial_use']})",
             f"    source:     {row['source']['distribution']}=={row['source']['version']} "
             f"{row['source']['member']}  sha256 {row['sha256'][:16]}…"]
    if row["verified"]:
        lines.append(f"    path:       {row['path']}" + (f"  (loaded in {row['load_s']} s)" if "load_s" in row else ""))
    else:
        lines.append(f"    get it:     {row['get']}")
        if row["present"]:
            lines.append(f"    error:      {row['error']}")
    if row["note"]:
        lines.append(f"    note:       {row['note']}")
    return "\n".join(lines)


@dataclass
class WeightsConfig:
    """``facsflow weights``: which catalogue entries to show, and how."""

    names: tuple[str, ...] = ()
    """Entries to show (default: all); also given as positional arguments."""
    json: bool = False
    """Machine-readable output."""
    load: bool = False
    """Also build each present network and time it."""


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``WeightsConfig``, plus entry names as positional arguments."""
    from workflows.core.stage_cli import stage_parser

    p = stage_parser(WeightsConfig, "facsflow weights", ray=False,
                     description="List the pretrained-weights catalogue: licence, presence, checksum, "
                                 "and how to get each entry.")
    p.add_argument("entries", nargs="*", help="entries to show (as --names)")
    return p


def main(argv: "list[str] | None" = None) -> int:
    from components import weights
    from workflows.core.stage_cli import stage_config

    args = build_parser().parse_args(argv)
    cfg: WeightsConfig = stage_config(args, extra={"names": list(args.entries)} if args.entries else None)
    try:
        names = list(cfg.names) or [e.name for e in weights.list_entries()]
        rows = [describe(n, cfg.load) for n in names]
    except weights.UnknownWeightsError as exc:
        print(f"facsflow: error: {exc}", file=sys.stderr)
        return 2
    if cfg.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(_text(r) for r in rows))
        restricted = [r["name"] for r in rows if r["commercial_use"] != "yes"]
        if restricted:
            print(f"\nnot cleared for commercial use: {', '.join(restricted)} (models built on them inherit this)")
    return 1 if cfg.names and not all(r["verified"] for r in rows) else 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
