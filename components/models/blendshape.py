"""Blendshape member: MediaPipe's 52 face blendshapes and mesh geometry → AU probabilities and
intensities, no pixels, no training.

The Face Landmarker (``components.faces.mediapipe_mesh``) was trained on real faces; its
blendshapes (ARKit-style action coefficients in [0, 1]) express most FACS AUs directly, and its
478-point mesh measures what they miss (``components.faces.au_geometry``: lip gap, lid aperture,
brow heights, ... in a pose-normalised frame). This family combines both through the one table
``components.au.AU_EVIDENCE``:

    b' = clip(b - n_b, 0, 1)               b (52,) blendshapes, n_b the neutral blendshapes
    e_j = clip((g_f - n_f) / span_j, 0, 1)  g (K,) geometry, n the neutral geometry, j a source
    s = W b' + (1 - gate) * U e             W, U: the table's weights (each AU's sum to 1)
    logit = a * logit(s) + c + V b

Neutral (person-specific normalisation, ``calibrate``): the batch column ``neutral`` (n, 52 + K),
each row its track's running neutral estimate that the orchestration computes
(``components.inference.member_inputs``, ``components.faces.au_geometry.track_neutral``: a low
percentile of the frames so far, shrunk to the population neutral); without it (a still image)
the population neutral: blendshapes 0, geometry ``population_neutral()``. ``calibrate=False``
always takes the population neutral. A batch without ``geometry`` (a feature store written before
it, an exported graph) is answered from the blendshapes alone (``BLENDSHAPE_AUS``, the table's
blendshape weights rescaled to sum to 1).

Intensity (0-5, FACS A-E = 1-5): a monotone piecewise-linear map of the probability p
(``intensity_of``): 0 at p = 0, 0.5 at the occurrence threshold 0.3 (the onset of A), then the
FACS bands A [0.3, 0.4), B [0.4, 0.55), C [0.55, 0.75), D [0.75, 0.9), E [0.9, 1] mapped to
[0.5, 1.5), [1.5, 2.5), ..., [4.5, 5]: rounding the intensity gives the FACS letter, and B-D
are wider than A and E, as the manual's intensity scale draws them (Ekman, Friesen & Hager
2002). The bands are judgement, not fitted on intensity labels.

``a`` = 1, ``c`` = 0 and ``V`` = 0 at construction, so the untrained model's probability *is* the
mapped score ``s`` (variant ``blendshape``: usable at once, what the built-in detector serves).
``blendshape_calibrated`` trains a, c (a per-AU logistic on logit(s)) and V (a per-AU logistic
correction on the whole blendshape vector) on a labelled feature store whose rows carry
blendshapes (preprocess with the 'mediapipe' landmarker): ``facsflow train --model
blendshape_calibrated ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from components.au import AU_EVIDENCE, BLENDSHAPE_AUS
from components.faces.au_geometry import GEOMETRY_NAMES, population_neutral
from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES
from components.models.base import AUModel, InputSpec
from components.models.registry import register_model

__all__ = ["BlendshapeConfig", "BlendshapeModel", "mapping_matrix", "geometry_tables", "au_sides",
           "intensity_of", "INTENSITY_KNOTS", "BLENDSHAPE_PAPER"]

BLENDSHAPE_PAPER = ("MediaPipe Face Landmarker blendshapes (Grishchenko et al., 'Blendshapes GHUM: "
                    "Real-time Monocular Facial Blendshape Prediction', arXiv:2309.05782, 2023)")
_EPS = 1e-4

INTENSITY_KNOTS: tuple[tuple[float, ...], tuple[float, ...]] = (
    (0.0, 0.3, 0.4, 0.55, 0.75, 0.9, 1.0), (0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.0))
"""(probability, intensity) knots of the monotone map (FACS A-E bands; module docstring)."""


def intensity_of(p: torch.Tensor) -> torch.Tensor:
    """Intensity 0-5 of probabilities ``p`` (any shape): piecewise linear through ``INTENSITY_KNOTS``,
    written as a sum of clamped ramps so it exports to TorchScript and ONNX."""
    xs, ys = INTENSITY_KNOTS
    out = torch.zeros_like(p)
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:]):
        out = out + (y1 - y0) / (x1 - x0) * (p - x0).clamp(0.0, x1 - x0)
    return out


def mapping_matrix(aus: Sequence[int], geometry: bool = False) -> np.ndarray:
    """W (len(aus), 52): blendshape weights of ``AU_EVIDENCE`` (``geometry`` True: as the table
    gives them, beside the geometric ones) or of ``BLENDSHAPE_AUS`` (False: rescaled to sum to 1);
    raises naming the AUs the table does not answer."""
    missing = [a for a in aus if a not in AU_EVIDENCE]
    if missing:
        raise ValueError(f"AU(s) {missing} have no entry in components.au.AU_EVIDENCE; "
                         f"the blendshape member answers {sorted(AU_EVIDENCE)}")
    w = np.zeros((len(aus), len(BLENDSHAPE_NAMES)), np.float32)
    for i, a in enumerate(aus):
        for name, weight in (AU_EVIDENCE[a].blendshapes if geometry else BLENDSHAPE_AUS[a]):
            w[i, BLENDSHAPE_NAMES.index(name)] += weight
    return w


def geometry_tables(aus: Sequence[int]) -> dict[str, np.ndarray]:
    """The table's geometric sources as arrays: ``feature`` int (J,), ``span`` (J,), ``weight``
    (n_AU, J) for the J sources of every AU in ``aus``; gates: ``gate_feature`` int (n_AU,)
    (0 where none), ``gate_span`` (n_AU,), ``gated`` (n_AU,) 1.0 where the AU has a gate."""
    feats, spans, owner, weights = [], [], [], []
    for i, a in enumerate(aus):
        for name, span, weight in AU_EVIDENCE[a].geometry:
            feats.append(GEOMETRY_NAMES.index(name))
            spans.append(span)
            owner.append(i)
            weights.append(weight)
    u = np.zeros((len(aus), len(feats)), np.float32)
    u[owner, np.arange(len(feats))] = weights
    gates = [AU_EVIDENCE[a].gate for a in aus]
    return {"feature": np.array(feats, np.int64), "span": np.array(spans, np.float32), "weight": u,
            "gate_feature": np.array([GEOMETRY_NAMES.index(g[0]) if g else 0 for g in gates], np.int64),
            "gate_span": np.array([g[1] if g else 1.0 for g in gates], np.float32),
            "gated": np.array([1.0 if g else 0.0 for g in gates], np.float32)}


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
    calibrate: bool = True
    """Person-specific normalisation: subtract the batch's ``neutral`` (each track's running
    neutral) where it has one; False: always the population neutral."""


class BlendshapeModel(AUModel):
    family = "blendshape"
    rows_independent = True
    paper = BLENDSHAPE_PAPER

    def __init__(self, aus: Sequence[int], config: BlendshapeConfig, weights: "str | Path | None" = None) -> None:
        if weights:
            raise ValueError("the blendshape member has no backbone: it takes no pretrained weights")
        super().__init__(aus, config)
        self.register_buffer("mapping", torch.from_numpy(mapping_matrix(self.aus)))
        self.register_buffer("joint_mapping", torch.from_numpy(mapping_matrix(self.aus, geometry=True)))
        geo = geometry_tables(self.aus)
        for name, value in geo.items():
            self.register_buffer(f"geo_{name}", torch.from_numpy(value))
        self.register_buffer("geo_neutral", torch.from_numpy(population_neutral()))
        self.scale = nn.Parameter(torch.ones(self.num_aus))
        self.bias = nn.Parameter(torch.zeros(self.num_aus))
        self.correction = nn.Linear(len(BLENDSHAPE_NAMES), self.num_aus, bias=False) if config.calibrated else None
        if self.correction is not None:
            nn.init.zeros_(self.correction.weight)

    @classmethod
    def input_spec_for(cls, config: BlendshapeConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels="rgb", blendshapes=True, geometry=True)

    def score(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each AU's evidence s in [0, 1] (B, n_AU) from the batch's blendshapes, geometry and neutral."""
        b = batch["blendshapes"].float()
        neutral = batch.get("neutral") if self.config.calibrate else None
        if neutral is not None:
            b = (b - neutral[:, :b.shape[1]].float()).clamp(0.0, 1.0)
        if "geometry" not in batch:
            return b @ self.mapping.T
        g = batch["geometry"].float()
        n = neutral[:, b.shape[1]:].float() if neutral is not None else self.geo_neutral
        d = g - n
        e = (d[:, self.geo_feature] / self.geo_span).clamp(0.0, 1.0)
        gate = self.geo_gated * (d[:, self.geo_gate_feature] / self.geo_gate_span).clamp(0.0, 1.0)
        return b @ self.joint_mapping.T + (1.0 - gate) * (e @ self.geo_weight.T)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "blendshapes" not in batch:
            raise KeyError("the blendshape member needs batch['blendshapes'] (B, 52): run the face "
                           "pipeline with landmarker='mediapipe' (feature stores: preprocess with it)")
        s = self.score(batch).clamp(_EPS, 1 - _EPS)
        logits = self.scale * (torch.log(s) - torch.log1p(-s)) + self.bias  # logit(s), exportable
        if self.correction is not None:
            logits = logits + self.correction(batch["blendshapes"].float())
        return {"logits": logits, "intensity": intensity_of(torch.sigmoid(logits)), "score": s}


@register_model("blendshape", BlendshapeModel,
                description="MediaPipe blendshapes mapped to AUs by a fixed table; needs no training")
def blendshape() -> BlendshapeConfig:
    return BlendshapeConfig()


@register_model("blendshape_calibrated", BlendshapeModel,
                description="blendshape mapping plus per-AU logistic calibration fitted on a labelled store")
def blendshape_calibrated() -> BlendshapeConfig:
    return BlendshapeConfig(calibrated=True)
