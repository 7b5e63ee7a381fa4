"""Pretrained weights facsflow can start a backbone from: catalogue, look-up, checks, conversion.

Public API (Ray-free, nothing happens at import):

- ``get(name) -> WeightsEntry`` and ``list_entries()``: the catalogue (``catalogue.py``);
- ``locate(name) -> Path``: the verified original file; ``status(name) -> dict``;
- ``load_state_dict(name)``: tensors for ``components.models.backbones.build_network``;
- ``normalise(x, name)``: the input transform the weights expect; ``provenance(name)``: the
  record a run, manifest, export or ``GET /v1/models`` carries.

Errors: ``UnknownWeightsError``, ``WeightsMissingError`` (naming the install command) and
``ChecksumError``, all ``WeightsError``.
"""

from __future__ import annotations

import torch

from components.weights.catalogue import ENTRIES, IMAGENET_MEAN, IMAGENET_STD, Normalisation, Source, WeightsEntry
from components.weights.convert import load_state_dict, require_code
from components.weights.store import (ChecksumError, UnknownWeightsError, WeightsError, WeightsMissingError,
                                      downloads_dir, get, get_command, list_entries, locate, sha256_file, status,
                                      weights_cache)

__all__ = [
    "ENTRIES", "IMAGENET_MEAN", "IMAGENET_STD", "Normalisation", "Source", "WeightsEntry", "WeightsError", "UnknownWeightsError",
    "WeightsMissingError", "ChecksumError", "get", "list_entries", "locate", "status", "get_command",
    "load_state_dict", "require_code", "normalise", "normalisation", "provenance", "sha256_file",
    "weights_cache", "downloads_dir",
]


def normalisation(name: str) -> Normalisation:
    """The pixel preparation catalogue entry ``name`` expects."""
    return get(name).normalisation


def normalise(x: torch.Tensor, norm: "Normalisation | str") -> torch.Tensor:
    """Prepare B×3×H×W RGB pixels on the 0..1 scale for a set of weights (an entry name or its
    Normalisation): reorder channels, then subtract mean / divide by std, or standardise each
    image by itself (FaceNet's prewhiten, std floored at 1/sqrt(number of values) grey levels)."""
    n = get(norm).normalisation if isinstance(norm, str) else norm
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"normalise expects B×3×H×W RGB pixels, got shape {tuple(x.shape)}")
    if n.colour_order == "BGR":
        x = x.flip(1)
    if n.per_image:
        flat = x.flatten(1)
        # prewhiten floors the std at 1/sqrt(values) on the 0..255 scale; these pixels are 0..1.
        floor = 1.0 / (255.0 * flat.shape[1] ** 0.5)
        std = flat.std(dim=1, unbiased=False).clamp_min(floor)
        return (x - flat.mean(1)[:, None, None, None]) / std[:, None, None, None]
    mean = torch.tensor(n.mean, dtype=x.dtype, device=x.device)[None, :, None, None]
    std = torch.tensor(n.std, dtype=x.dtype, device=x.device)[None, :, None, None]
    return (x - mean) / std


def provenance(name: "str | None") -> dict:
    """What a model started from ``name`` must carry wherever it goes (config, manifest, export
    sidecar, ``GET /v1/models``); ``None`` or ``""`` records random initialisation."""
    if not name:
        return {"init_weights": "random", "licence": "", "commercial_use": "yes", "sha256": ""}
    e = get(name)
    return {"init_weights": e.name, "licence": e.licence, "commercial_use": e.commercial_use,
            "sha256": e.sha256, "trained_on": e.trained_on}
