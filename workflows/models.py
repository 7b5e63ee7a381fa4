"""List the registered models: ``python -m workflows.models [--json]``."""

from __future__ import annotations

import argparse
import json


def describe_models() -> list[dict]:
    from components.models.registry import list_models

    return [{"name": m.name, "family": m.family, "paper": m.paper, "description": m.description,
             "tags": list(m.tags)} for m in list_models()]


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="facsflow models", description="List the registered AU models.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    models = describe_models()
    if args.json:
        print(json.dumps(models, indent=2))
    else:
        width = max(len(m["name"]) for m in models)
        for m in models:
            print(f"{m['name']:<{width}}  {m['family']:<12} {m['description']}  [{m['paper']}]")
    return 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
