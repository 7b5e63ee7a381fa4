"""Blendshape member: MediaPipe's 52 face blendshapes → AU probabilities, no pixels, no training.

The Face Landmarker (``components.faces.mediapipe_mesh``) was trained on real faces; its
blendshapes (ARKit-style action coefficients in [0, 1]) express most FACS AUs directly. This
family maps them through the one table ``components.au.BLENDSHAPE_AUS``:

    s = W b                      fixed linear layer: b (52,) blendshapes, W (n_AU, 52) the table
    logit = a * logit(s) + c + V b

``a`` = 1, ``c`` = 0 and ``V`` = 0 at construction, so the untrained model's probability *is* the
mapped score ``s`` (variant ``blendshape``: usable at once, what the built-in detector serves).
``blendshape_calibrated`` trains a, c (a per-AU logistic on logit(s)) and V (a per-AU logistic
correction on the whole blendshape vector) on a labelled feature store whose rows carry
blendshapes (preprocess with the 'mediapipe' landmarker): ``facsflow train --model
blendshape_calibrated ...``. Intensity is 5 × probability (on the 0-5 scale; not fitted to
intensity labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from components.au import BLENDSHAPE_AUS
from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES
from components.models.base import AUModel, InputSpec
from components.models.registry import register_model

__all__ = ["BlendshapeConfig", "BlendshapeModel", "mapping_matrix", "au_sides", "BLENDSHAPE_PAPER"]

BLENDSHAPE_PAPER = ("MediaPipe Face Landmarker blendshapes (Grishchenko et al., 'Blendshapes GHUM: "
                    "Real-time Monocular Facial Blendshape Prediction', arXiv:2309.05782, 2023)")
_EPS = 1e-4


def mapping_matrix(aus: Sequence[int]) -> np.ndarray:
    """W (len(aus), 52) of ``BLENDSHAPE_AUS``; raises naming the AUs that no blendshape expresses."""
    missing = [a for a in aus if a not in BLENDSHAPE_AUS]
    if missing:
        raise ValueError(f"AU(s) {missing} have no blendshape in components.au.BLENDSHAPE_AUS; "
                         f"the blendshape member answers {sorted(BLENDSHAPE_AUS)}")
    w = np.zeros((len(aus), len(BLENDSHAPE_NAMES)), np.float32)
    for i, a in enumerate(aus):
        for name, weight in BLENDSHAPE_AUS[a]:
            w[i, BLENDSHAPE_NAMES.index(name)] += weight
    return w


def au_sides(blendshapes: np.ndarray, aus: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-side scores ``{'AU12L': (N,), 'AU12R': (N,), ...}`` for the AUs of ``aus`` whose table
    entry has a Left and a Right blendshape (subject's sides); others are left out."""
    b = np.asarray(blendshapes, np.float32).reshape(-1, len(BLENDSHAPE_NAMES))
    out: dict[str, np.ndarray] = {}
    for a in aus:
        for side, tag in (("Left", "L"), ("Right", "R")):
            names = [n for n, _ in BLENDSHAPE_AUS.get(a, ()) if n.endswith(side)]
            if names:
                out[f"AU{a}{tag}"] = b[:, [BLENDSHAPE_NAMES.index(n) for n in names]].mean(1)
    return out


@dataclass(frozen=True)
class BlendshapeConfig:
    calibrated: bool = False
    """Add the per-AU correction V over the whole blendshape vector (``blendshape_calibrated``)."""
    image_size: int = 112
    """Aligned crop side the face pipeline produces alongside (the model reads no pixels)."""


class BlendshapeModel(AUModel):
    family = "blendshape"
    rows_independent = True
    paper = BLENDSHAPE_PAPER

    def __init__(self, aus: Sequence[int], config: BlendshapeConfig, weights: "str | Path | None" = None) -> None:
        if weights:
            raise ValueError("the blendshape member has no backbone: it takes no pretrained weights")
        super().__init__(aus, config)
        self.register_buffer("mapping", torch.from_numpy(mapping_matrix(self.aus)))
        self.scale = nn.Parameter(torch.ones(self.num_aus))
        self.bias = nn.Parameter(torch.zeros(self.num_aus))
        self.correction = nn.Linear(len(BLENDSHAPE_NAMES), self.num_aus, bias=False) if config.calibrated else None
        if self.correction is not None:
            nn.init.zeros_(self.correction.weight)

    @classmethod
    def input_spec_for(cls, config: BlendshapeConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels="rgb", blendshapes=True)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "blendshapes" not in batch:
            raise KeyError("the blendshape member needs batch['blendshapes'] (B, 52): run the face "
                           "pipeline with landmarker='mediapipe' (feature stores: preprocess with it)")
        b = batch["blendshapes"].float()
        s = (b @ self.mapping.T).clamp(_EPS, 1 - _EPS)
        logits = self.scale * (torch.log(s) - torch.log1p(-s)) + self.bias  # logit(s), exportable
        if self.correction is not None:
            logits = logits + self.correction(b)
        return {"logits": logits, "intensity": 5.0 * torch.sigmoid(logits), "score": s}


@register_model("blendshape", BlendshapeModel,
                description="MediaPipe blendshapes mapped to AUs by a fixed table; needs no training")
def blendshape() -> BlendshapeConfig:
    return BlendshapeConfig()


@register_model("blendshape_calibrated", BlendshapeModel,
                description="blendshape mapping plus per-AU logistic calibration fitted on a labelled store")
def blendshape_calibrated() -> BlendshapeConfig:
    return BlendshapeConfig(calibrated=True)
