"""The checkpoint contract (train → evaluate / serve).

One file, ``checkpoint.pt``, loadable with ``torch.load(weights_only=True)``: the weights plus
everything needed to rebuild and use the model: the registry's constructor record (model name,
constructor kwargs, the name of the pretrained weights it started from: never a local path),
AU list, input declaration, preprocessing config, thresholds, and provenance. Training state
(optimiser, scaler, scheduler, epoch) rides along for resumption.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from components import storage
from components.models.base import AUModel, InputSpec
from components.models.registry import constructor_record, init_provenance, rebuild_model

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_VERSION", "make_checkpoint", "save_checkpoint",
           "load_checkpoint", "model_from_checkpoint"]

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def make_checkpoint(model: AUModel, model_name: str, *, epoch: int, preprocess: dict[str, Any],
                    provenance: dict[str, Any], train_config: dict[str, Any],
                    thresholds: "list[float] | None" = None, metrics: "dict[str, float] | None" = None,
                    optimizer: "dict | None" = None, scheduler: "dict | None" = None,
                    scaler: "dict | None" = None) -> dict[str, Any]:
    """A plain dict of tensors, numbers, strings, lists and dicts (safe for weights_only)."""
    core = getattr(model, "module", model)
    record = constructor_record(core)
    return {
        "version": CHECKPOINT_VERSION,
        "model_name": model_name,
        "model_kwargs": record["kwargs"],
        "pretrained": record["pretrained"],
        "init": init_provenance(record["pretrained"]),
        "aus": list(core.aus),
        "input_spec": core.input_spec().to_dict(),
        "family": core.family,
        "state_dict": {k: v.detach().cpu() for k, v in core.state_dict().items()},
        "epoch": int(epoch),
        "thresholds": list(thresholds) if thresholds is not None else [0.5] * len(core.aus),
        "metrics": dict(metrics or {}),
        "preprocess": preprocess,
        "provenance": provenance,
        "train_config": train_config,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
    }


def save_checkpoint(ckpt: dict[str, Any], directory: "str | Path") -> str:
    """Write ``checkpoint.pt`` into a local directory or URI; return its path."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    uri = storage.join(str(directory), CHECKPOINT_FILE)
    fs, path = storage.resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(buf.getvalue())
    return uri


def load_checkpoint(path: "str | Path") -> dict[str, Any]:
    """Load a checkpoint file (or a directory holding one) with ``weights_only=True``."""
    uri = str(path)
    if not uri.endswith(".pt"):
        uri = storage.join(uri, CHECKPOINT_FILE)
    fs, p = storage.resolve(uri)
    try:
        with fs.open_input_file(p) as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {uri}") from None
    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{uri}: not a facsflow checkpoint of version {CHECKPOINT_VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[AUModel, InputSpec]:
    """Rebuild the registered model (no pretrained file needed) and load its weights strictly."""
    # The recorded weights name is provenance only (survives a re-save): nothing is loaded.
    model = rebuild_model(ckpt["model_name"], ckpt["aus"], ckpt["model_kwargs"], ckpt.get("pretrained"))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model, InputSpec.from_dict(ckpt["input_spec"])
