"""List the registered models: ``python -m workflows.models [--json]``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass


@dataclass
class ModelsConfig:
    """What ``facsflow models`` prints."""

    json: bool = False
    """Machine-readable output (a JSON list of name, family, paper, description, tags and
    the weights a variant starts from unless told otherwise: a catalogue entry or 'random')."""


def describe_models() -> list[dict]:
    from components.models.registry import list_models

    return [{"name": m.name, "family": m.family, "paper": m.paper, "description": m.description,
             "tags": list(m.tags), "pretrained": (m.default_pretrained or "random") if m.model_cls.pretrained_parts else "none (no backbone)"}
            for m in list_models()]


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``ModelsConfig`` (``--json``)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(ModelsConfig, "facsflow models", ray=False, description="List the registered AU models.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import stage_config

    cfg: ModelsConfig = stage_config(build_parser().parse_args(argv))
    models = describe_models()
    if cfg.json:
        print(json.dumps(models, indent=2))
    else:
        width = max(len(m["name"]) for m in models)
        for m in models:
            print(f"{m['name']:<{width}}  {m['family']:<12} {m['description']}  [{m['paper']}; "
                  f"starts from: {m['pretrained']}]")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
