"""The ``facsflow`` command: dispatches to the workflow stages (``python -m workflows.<stage>``)."""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "demo": "Run everything on a small synthetic dataset on an embedded local Ray",
    "synth": "Generate a synthetic AU dataset from real face photos in a real dataset layout",
    "preprocess": "Detect, track and align faces into a Parquet feature store (Ray Data)",
    "train": "Train a model on a feature store with Ray Train (DDP)",
    "tune": "Search hyperparameters with Ray Tune (ASHA) and write the best config",
    "evaluate": "Evaluate runs on held-out subjects; write the report",
    "ensemble": "Choose an ensemble of runs and write its manifest",
    "recipe": "Train a paper's recipe on every fold, then ensemble the runs (paper 001's vote)",
    "serve": "Serve an ensemble over HTTP with Ray Serve",
    "predict": "Predict AUs for images and videos into OpenFace-style CSVs",
    "export": "Export ensemble members to TorchScript or ONNX (no Ray needed to use them)",
    "models": "List the registered models (--json for machines)",
}


def usage() -> str:
    lines = ["usage: facsflow <command> [options]   (facsflow <command> --help for each)", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, text in STAGES.items()]
    lines += ["", "Without --address (or RAY_ADDRESS) every command starts its own embedded local Ray."]
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    from workflows.runtime import run_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"facsflow: error: unknown command {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"workflows.{stage}")
    return run_main(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
