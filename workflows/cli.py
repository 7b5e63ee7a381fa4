"""The ``facsflow`` command: dispatches to the workflow stages (``python -m workflows.<stage>``).

A stage's command line is made from its typed config by ``workflows.core.stage_cli``
(``stage_parser``, ``stage_config``, ``save_config``; re-exported here): each leaf field a flag,
``--config YAML``, ``--set KEY=VALUE`` and, for stages that use Ray, ``--address``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from workflows.core.stage_cli import flag_overrides, save_config, stage_config, stage_parser

__all__ = ["STAGES", "STAGE_MODULES", "STAGE_CONFIGS", "config_class", "config_class_of_file", "usage", "main", "stage_parser",
           "stage_config", "save_config", "flag_overrides"]

STAGES = {
    "demo": "Run everything on a small synthetic dataset on an embedded local Ray",
    "synth": "Generate a synthetic AU dataset from real face photos in a real dataset layout",
    "preprocess": "Detect, track and align faces into a Parquet feature store (Ray Data)",
    "label": "Add a teacher's soft AU probabilities to a feature store's rows (Ray Data)",
    "train": "Train a model on a feature store with Ray Train (DDP)",
    "tune": "Search hyperparameters with Ray Tune (ASHA) and write the best config",
    "evaluate": "Evaluate runs on held-out subjects; write the report",
    "ensemble": "Choose an ensemble of runs and write its manifest",
    "recipe": "Train a paper's recipe on every fold, then ensemble the runs (paper 001's vote)",
    "serve": "Serve an ensemble over HTTP with Ray Serve",
    "predict": "Predict AUs for images and videos into OpenFace-style CSVs",
    "live": "Answer a camera, a stream or a video file frame by frame as it plays (no Ray needed)",
    "export": "Export ensemble members to TorchScript or ONNX (no Ray needed to use them)",
    "models": "List the registered models (--json for machines)",
    "weights": "List the pretrained-weights catalogue: licence, presence, checksum, how to get each (--json)",
}


STAGE_MODULES = {**{stage: f"workflows.{stage}" for stage in STAGES}, "serve": "workflows.serve.__main__"}
"""The entry module of each stage (``build_parser``, ``main``): ``workflows/<stage>.py``, and for
serve, a package whose ``app`` is a library, ``workflows/serve/__main__.py``. Stages import
``workflows.core``, never each other (tests/unit/test_layering.py)."""


STAGE_CONFIGS = {
    "demo": "workflows.demo:DemoConfig",
    "synth": "components.datasets.synth.generator:SynthConfig",
    "preprocess": "workflows.core.preprocessing:PreprocessConfig",
    "label": "workflows.core.labelling:LabelConfig",
    "train": "workflows.core.train_config:TrainConfig",
    "tune": "workflows.tune:SearchConfig",
    "evaluate": "workflows.core.evaluation:EvaluateConfig",
    "ensemble": "workflows.core.ensembling:EnsembleConfig",
    "serve": "workflows.serve.app:ServeConfig",
    "predict": "workflows.predict:PredictConfig",
    "live": "workflows.live:LiveConfig",
    "export": "workflows.export:ExportConfig",
    "models": "workflows.models:ModelsConfig",
    "recipe": "workflows.recipe:RecipeConfig",
    "weights": "workflows.weights:WeightsConfig",
}
"""Each stage's one typed config (``module:class``); a shipped YAML's stage is the part of its
file name before the first '-' (``train-bp4d.yaml`` → ``train``, ``demo.yaml`` → ``demo``)."""


def config_class(stage: str) -> type:
    """The typed config class of ``stage`` (``STAGE_CONFIGS``)."""
    if stage not in STAGE_CONFIGS:
        raise KeyError(f"no stage {stage!r}; stages with a config: {', '.join(STAGE_CONFIGS)}")
    module, name = STAGE_CONFIGS[stage].split(":")
    return getattr(importlib.import_module(module), name)


def config_class_of_file(path: "str | Path") -> type:
    """The config class a YAML file is read into, by the file-name convention of ``STAGE_CONFIGS``."""
    return config_class(Path(path).stem.split("-", 1)[0])


def usage() -> str:
    lines = ["usage: facsflow <command> [options]   (facsflow <command> --help for each)", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, text in STAGES.items()]
    lines += ["", "Without --address (or RAY_ADDRESS) every command starts its own embedded local Ray."]
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import run_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"facsflow: error: unknown command {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGE_MODULES[stage])
    return run_main(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
