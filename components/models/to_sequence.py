"""To-Sequence: multi-label AU detection as sequence decoding (papers 000 and 002, Ji et al.).

Paper 000 (§2.2, Fig. 1) and its companion 002 (§2.2) describe one network in three modules:

- static appearance module C (000 §2.2.1 eq. 1, 002 §2.2 eq. 1): a CNN with a limited receptive
  field over the background-masked grayscale face and its Sobel edge map (two channels), whose
  feature map a GRU reads region by region; the GRU's last hidden state is H^c;
- dynamic shape module L (000 §2.2.2 eqs. 2-3, 002 §2.2.1 eq. 2): the landmark difference
  diff_t = l_{t+s} - l_{t-s}, corrected by "a two-layer linear transformation aiming to learn an
  affine transformation according to the landmark not affected by the AUs", then a fully
  connected network f ending in tanh gives H^l;
- query-based sequence module FQP (000 §2.2.3 eqs. 4-6, 002 §2.2.2 eq. 3): a fusion network F
  (addition, concatenation or tensor fusion) gives H^0; a GRU Q, started from H^0, is queried by
  the AU embeddings of a learnable table (n_AU x 64, 002) in a fixed AU order; at step i a
  classifier P reads the GRU output and decides AU i.

Batch keys read: ``image`` (B, 2, S, S) masked gray + Sobel (``InputSpec.channels='gray+sobel'``,
``mask=True``); with the dynamic module on, ``landmarks`` (B, 68, 2) crop pixels and
``landmark_diff`` (B, len(diff_steps), 68, 2); optionally ``diff_valid`` (B, len(diff_steps))
bool/0-1 as ``components.batches.BatchBuilder`` gives it, False where the step was clamped at a
video edge (those steps are zeroed so that a one-sided difference is not read as motion).

Departures (also in docs/models.md):
- 68 iBUG landmarks instead of the paper's 73.
- The paper does not say which landmarks are "not affected by the AUs" nor how the two linear
  layers produce the affine map. Ours: the stable set defaults to the nose bridge and tip
  (27-30, 33) and the eye corners (36, 39, 42, 45), minus any landmark the AU catalogue says one
  of the model's AUs moves. The translation is the mean stable-point difference (exact); the
  two bias-free linear layers read only the centred stable-point differences and give the 2x2
  linear part. AU motion elsewhere (mouth, brows) never enters the estimate, so the correction
  cannot cancel it, and a pure translation of the stable points is removed exactly whatever
  the learned weights. A closed-form least-squares variant (``affine='least_squares'``) and
  no correction (``'none'``) are selectable.
- Eq. 6's two-way softmax per AU is returned as one logit (softmax over {off, on} equals the
  sigmoid of the logit difference); trained with masked BCE.
- Post-processing: paper 002 (§3) only says "smoothing"; ``smooth_sequence`` is a centred moving
  average (or median) over a video's frame probabilities, our choice.
- Sizes: the papers give only the 8x64 AU table; ABAW 2020 frames are 112x112 crops, so the
  paper-size variant keeps 112 px with a wider CNN; CNN widths and GRU sizes are ours.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from components.au import CATALOGUE
from components.models.backbones import build_backbone, stride_prefix
from components.models.base import AUModel, InputSpec
from components.models.registry import register_model

__all__ = [
    "ToSequenceConfig",
    "ToSequenceModel",
    "AffineCorrection",
    "stable_landmark_set",
    "smooth_sequence",
    "DEFAULT_STABLE_LANDMARKS",
]

DEFAULT_STABLE_LANDMARKS: tuple[int, ...] = (27, 28, 29, 30, 33, 36, 39, 42, 45)
"""Nose bridge and tip, and the four eye corners: points that facial actions barely move but
that shake with the face detection/tracking (paper 000 §2.2.2)."""

_OUTER_EYE_CORNERS = (36, 45)


@dataclass(frozen=True)
class ToSequenceConfig:
    image_size: int = 112
    """Input crop side in pixels (ABAW 2020 cropped-aligned frames are 112x112)."""
    conv_channels: tuple[int, ...] = (32, 64, 128, 128)
    """Widths of the CNN blocks (3x3 conv, BN, ReLU, 2x2 max-pool each); few blocks keep the
    receptive field limited (paper 000 §2.2.1)."""
    backbone: str = ""
    """Static-module CNN: "" = the paper's limited-receptive-field CNN (``conv_channels``), trained
    from scratch; or a catalogue architecture (``mobilenet_v2``, ``efficientnet_lite0``) whose
    stages up to stride 16 (7×7 at 112 px, as fine as the paper's regions) read the grey + Sobel
    input through a first conv adapted to 2 channels, so ImageNet weights can start it."""
    region_grid: int = 7
    """The feature map is pooled to region_grid x region_grid regions read by the GRU in raster
    order (eq. 1)."""
    feature_dim: int = 128
    """Size of H^c (static GRU hidden state) and H^l (dynamic module output)."""
    dynamic: bool = True
    """Use the landmark-based dynamic module L; False is the appearance-only ablation."""
    diff_steps: tuple[int, ...] = (1,)
    """Steps s of diff_t = l_{t+s} - l_{t-s} (eq. 2); paper 000 uses one step."""
    affine: Literal["learned", "least_squares", "none"] = "learned"
    """Correction of detection shake from the stable landmarks: 'learned' (two linear layers,
    the paper), 'least_squares' (closed-form affine fit) or 'none'."""
    affine_hidden: int = 8
    """Width between the two linear layers of the learned affine correction."""
    stable_landmarks: tuple[int, ...] = DEFAULT_STABLE_LANDMARKS
    """Landmarks assumed not moved by the AUs, from which the affine correction is estimated."""
    exclude_au_landmarks: bool = True
    """Drop from ``stable_landmarks`` every landmark the AU catalogue says a model AU moves."""
    dynamic_hidden: tuple[int, ...] = (128,)
    """Hidden widths of the fully connected network f of eq. 3 (ReLU), before its tanh layer."""
    fusion: Literal["add", "concat", "tensor"] = "concat"
    """Fusion F of H^c and H^l (eq. 5): element-wise addition, concatenation or tensor fusion."""
    tensor_dim: int = 32
    """Tensor fusion: H^c and H^l are projected to this size before the outer product."""
    hidden: int = 128
    """Size of the decoder GRU state H^i (eq. 4); H^0 = tanh(F(...))."""
    embedding_dim: int = 64
    """Width of the learnable AU embedding table (paper 002: 8 x 64)."""
    classifier_hidden: int = 64
    """Hidden width of the classifier P (eq. 6); 0 makes P a single linear layer."""
    dropout: float = 0.0
    """Dropout on H^0 and on the decoder outputs."""
    intensity_head: bool = False
    """Add a per-step regression of AU intensity (0-5) beside the occurrence logit."""
    region_gru: bool = True
    """Read the regions with the GRU of eq. 1; False averages them and projects (ablation)."""
    sequence_decoder: bool = True
    """Decode AUs one by one with the query GRU (eqs. 4, 6); False puts one linear layer per AU
    on H^0, i.e. plain multi-label classification without label-sequence modelling (ablation)."""

    def __post_init__(self) -> None:
        # YAML / constructor_kwargs give lists; keep the frozen config hashable and comparable.
        for name in ("conv_channels", "diff_steps", "stable_landmarks", "dynamic_hidden"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.backbone and self.backbone not in ("mobilenet_v2", "efficientnet_lite0"):
            raise ValueError(f"backbone must be '' (the paper's CNN), mobilenet_v2 or efficientnet_lite0, "
                             f"got {self.backbone!r}")
        if not self.conv_channels or any(c < 1 for c in self.conv_channels):
            raise ValueError(f"conv_channels must be non-empty positive widths, got {self.conv_channels}")
        if self.image_size < 16 or self.image_size // 2 ** len(self.conv_channels) < 1:
            raise ValueError(
                f"image_size {self.image_size} is too small for {len(self.conv_channels)} pooling blocks"
            )
        for name in ("region_grid", "feature_dim", "hidden", "embedding_dim", "tensor_dim", "affine_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.classifier_hidden < 0 or any(w < 1 for w in self.dynamic_hidden):
            raise ValueError("classifier_hidden must be >= 0 and dynamic_hidden widths >= 1")
        if not self.diff_steps or any(s < 1 for s in self.diff_steps):
            raise ValueError(f"diff_steps must be non-empty positive steps, got {self.diff_steps}")
        if self.affine not in ("learned", "least_squares", "none"):
            raise ValueError(f"affine must be learned, least_squares or none, got {self.affine!r}")
        if self.fusion not in ("add", "concat", "tensor"):
            raise ValueError(f"fusion must be add, concat or tensor, got {self.fusion!r}")
        if any(not 0 <= i < 68 for i in self.stable_landmarks) or len(set(self.stable_landmarks)) < 3:
            raise ValueError(f"stable_landmarks must be >= 3 distinct indices in 0..67, got {self.stable_landmarks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def stable_landmark_set(aus: Sequence[int], candidates: Sequence[int] = DEFAULT_STABLE_LANDMARKS,
                        exclude_au_landmarks: bool = True) -> tuple[int, ...]:
    """Landmarks "not affected by the AUs" (paper 000 §2.2.2) for a model detecting ``aus``.

    ``candidates`` minus (when ``exclude_au_landmarks``) every landmark that the AU catalogue
    lists for one of ``aus`` (e.g. AU9 moves the nose bridge). At least 3 must remain, the
    minimum for an affine fit.
    """
    moved = {i for a in aus for i in CATALOGUE[a].landmarks} if exclude_au_landmarks else set()
    out = tuple(sorted(i for i in set(candidates) if i not in moved))
    if len(out) < 3:
        raise ValueError(
            f"only {list(out)} of stable landmarks {sorted(set(candidates))} are not moved by AUs "
            f"{list(aus)}; an affine correction needs >= 3: pass other stable_landmarks"
        )
    return out


class AffineCorrection(nn.Module):
    """Removes face-detection shake from landmark differences (paper 000 §2.2.2).

    For each step, with S the stable landmarks, c their centroid in the current frame and
    t = mean_{k in S} diff_k their mean motion, the corrected difference of landmark n is
    ``diff_n - t - A (l_n - c)``, A a 2x2 matrix estimated from the stable points only:
    - 'learned': two bias-free linear layers (the paper's "two-layer linear transformation")
      map the centred stable differences, divided by the outer-eye-corner distance so A is
      scale-free, to A; the second layer starts at zero (translation-only correction);
    - 'least_squares': A (with t) is the closed-form least-squares affine fit of the stable
      differences on the stable positions;
    - 'none': the differences pass unchanged.
    Only stable points enter the estimate, so motion of the other landmarks is never cancelled;
    a pure translation of the stable points is removed exactly in every mode but 'none'.
    """

    def __init__(self, stable: Sequence[int], mode: str = "learned", hidden: int = 8) -> None:
        super().__init__()
        self.register_buffer("stable", torch.as_tensor(list(stable), dtype=torch.long), persistent=False)
        self.mode = mode
        if mode == "learned":
            self.layer1 = nn.Linear(2 * len(stable), hidden, bias=False)
            self.layer2 = nn.Linear(hidden, 4, bias=False)
            nn.init.zeros_(self.layer2.weight)

    def forward(self, diff: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """diff (B, T, 68, 2), landmarks (B, 68, 2) → corrected diff (B, T, 68, 2), same units."""
        if self.mode == "none":
            return diff
        pos = landmarks[:, None]                                    # (B, 1, 68, 2)
        d_s, p_s = diff[:, :, self.stable], pos[:, :, self.stable]  # (B, T|1, K, 2)
        t = d_s.mean(2, keepdim=True)
        c = p_s.mean(2, keepdim=True)
        if self.mode == "learned":
            scale = _eye_distance(landmarks)[:, None, None, None]
            flat = ((d_s - t) / scale).flatten(2)                   # (B, T, 2K)
            a = self.layer2(self.layer1(flat)).unflatten(-1, (2, 2))
        else:
            a = _least_squares_linear(p_s - c, d_s - t)
        field = torch.einsum("btij,bknj->btni", a, pos - c)
        return diff - t - field


def _eye_distance(landmarks: torch.Tensor) -> torch.Tensor:
    """Outer-eye-corner distance per face (B,), floored at 1 pixel."""
    i, j = _OUTER_EYE_CORNERS
    return (landmarks[:, i] - landmarks[:, j]).norm(dim=-1).clamp(min=1.0)


def _least_squares_linear(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A (B, T, 2, 2) minimising sum_k |d_k - A p_k|^2 for centred p (B, 1, K, 2), d (B, T, K, 2)."""
    ptp = p.transpose(-1, -2) @ p + 1e-6 * torch.eye(2, dtype=p.dtype, device=p.device)
    dtp = d.transpose(-1, -2) @ p                                   # (B, T, 2, 2)
    return dtp @ torch.linalg.inv(ptp)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class ToSequenceModel(AUModel):
    """Static CNN+GRU, dynamic landmark module, fusion and AU-query GRU decoder (papers 000, 002)."""

    family = "to-sequence"
    rows_independent = True
    pretrained_parts = ("cnn",)
    paper = "Ji et al., To-Sequence (ABAW 2020), papers 000 and 002"

    def __init__(self, aus: Sequence[int], config: ToSequenceConfig, weights: "str | Path | None" = None) -> None:
        super().__init__(aus, config)
        if weights is not None and not config.backbone:
            raise ValueError(f"to-sequence's own CNN trains from scratch (papers 000, 002); for pretrained "
                             f"weights {str(weights)!r} set backbone (mobilenet_v2 or efficientnet_lite0)")
        c = config
        # Static module C, eq. 1: limited-receptive-field CNN, then a GRU over the regions.
        if c.backbone:
            # ``weights``: the catalogue entry of an ImageNet CNN (the issue of pretrained starts;
            # the papers train this module from scratch).
            full, _ = build_backbone(c.backbone, 2, str(weights or ""))
            self.cnn = stride_prefix(full, 16, 2)
            with torch.no_grad():
                widths = (2, self.cnn.eval()(torch.zeros(1, 2, 64, 64)).shape[1])
            self.cnn.train()
        else:
            widths = (2,) + tuple(c.conv_channels)
            self.cnn = nn.Sequential(*[_conv_block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.regions = nn.AdaptiveAvgPool2d(c.region_grid)
        if c.region_gru:
            self.static_gru = nn.GRU(widths[-1], c.feature_dim, batch_first=True)
        else:
            self.static_proj = nn.Sequential(nn.Linear(widths[-1], c.feature_dim), nn.Tanh())
        # Dynamic module L, eqs. 2-3: affine correction from stable landmarks, then f with tanh.
        if c.dynamic:
            self.stable = stable_landmark_set(self.aus, c.stable_landmarks, c.exclude_au_landmarks)
            self.affine = AffineCorrection(self.stable, c.affine, c.affine_hidden)
            n_in = len(c.diff_steps) * 68 * 2
            self.dynamic_net = nn.Sequential(_mlp((n_in, *c.dynamic_hidden, c.feature_dim)), nn.Tanh())
        # Fusion F, eq. 5.
        if not c.dynamic:
            fused = c.feature_dim
        elif c.fusion == "add":
            fused = c.feature_dim
        elif c.fusion == "concat":
            fused = 2 * c.feature_dim
        else:
            self.tensor_static = nn.Linear(c.feature_dim, c.tensor_dim)
            self.tensor_dynamic = nn.Linear(c.feature_dim, c.tensor_dim)
            fused = (c.tensor_dim + 1) ** 2
        self.fusion = nn.Linear(fused, c.hidden)
        self.dropout = nn.Dropout(c.dropout)
        # Query module Q and classifier P, eqs. 4 and 6.
        if not c.sequence_decoder:
            self.heads = nn.Linear(c.hidden, self.num_aus)
            self.intensity = nn.Linear(c.hidden, self.num_aus) if c.intensity_head else None
            return
        self.au_table = nn.Embedding(self.num_aus, c.embedding_dim)
        self.decoder = nn.GRUCell(c.embedding_dim, c.hidden)
        p_sizes = (c.hidden, c.classifier_hidden, 1) if c.classifier_hidden else (c.hidden, 1)
        self.classifier = _mlp(p_sizes)
        self.intensity = nn.Linear(c.hidden, 1) if c.intensity_head else None

    @classmethod
    def input_spec_for(cls, config: ToSequenceConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels="gray+sobel", mask=True,
                         diff_steps=tuple(config.diff_steps) if config.dynamic else ())

    def receptive_field(self) -> int:
        """Receptive field of one CNN output cell, in input pixels (3x3 conv + 2x2 pool blocks)."""
        rf, jump = 1, 1
        for _ in self.config.conv_channels:
            rf, jump = rf + 2 * jump, jump        # 3x3 conv, stride 1
            rf, jump = rf + jump, 2 * jump        # 2x2 max-pool, stride 2
        return rf

    def static_features(self, image: torch.Tensor) -> torch.Tensor:
        """H^c (B, feature_dim): the last GRU state over the CNN regions in raster order (eq. 1)."""
        s = self.config.image_size
        if image.ndim != 4 or image.shape[1:] != (2, s, s):
            raise ValueError(f"to-sequence: batch['image'] must be (B, 2, {s}, {s}) gray+sobel, "
                             f"got {tuple(image.shape)}")
        seq = self.regions(self.cnn(image)).flatten(2).transpose(1, 2)   # (B, g*g, C)
        if not self.config.region_gru:
            return self.static_proj(seq.mean(1))
        _, h = self.static_gru(seq)
        return h[-1]

    def dynamic_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """H^l (B, feature_dim) = tanh(f(corrected diff_t)) (eqs. 2-3), diffs in eye-distance units."""
        for key in ("landmark_diff", "landmarks"):
            if key not in batch:
                raise KeyError(f"to-sequence with dynamic=True needs batch[{key!r}]; "
                               "build the model with dynamic=False for appearance only")
        diff, lm = batch["landmark_diff"], batch["landmarks"]
        n_steps = len(self.config.diff_steps)
        if diff.ndim != 4 or diff.shape[1:] != (n_steps, 68, 2) or lm.shape[1:] != (68, 2):
            raise ValueError(f"to-sequence: landmark_diff must be (B, {n_steps}, 68, 2) and landmarks (B, 68, 2), "
                             f"got {tuple(diff.shape)} and {tuple(lm.shape)}")
        if "diff_valid" in batch:
            diff = diff * torch.as_tensor(batch["diff_valid"], device=diff.device).to(diff.dtype)[:, :, None, None]
        corrected = self.affine(diff, lm) / _eye_distance(lm)[:, None, None, None]
        return self.dynamic_net(corrected.flatten(1))

    def fuse(self, h_c: torch.Tensor, h_l: "torch.Tensor | None") -> torch.Tensor:
        """H^0 = tanh(F(H^c ∪ H^l)) (eq. 5); tanh keeps H^0 in the GRU state range."""
        mode = self.config.fusion
        if h_l is None:
            z = h_c
        elif mode == "add":
            z = h_c + h_l
        elif mode == "concat":
            z = torch.cat([h_c, h_l], 1)
        else:
            # Tensor fusion (Zadeh et al. 2017): outer product of [a; 1] and [b; 1] keeps the
            # unimodal terms beside the bimodal ones.
            one = h_c.new_ones(h_c.shape[0], 1)
            a = torch.cat([self.tensor_static(h_c), one], 1)
            b = torch.cat([self.tensor_dynamic(h_l), one], 1)
            z = torch.einsum("bi,bj->bij", a, b).flatten(1)
        return torch.tanh(self.fusion(z))

    def decode(self, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query the GRU with each AU embedding in the fixed AU order (eq. 4).

        Returns (B, n_AU, hidden) outputs P^i and the final state.
        """
        h, outs = h0, []
        for i in range(self.num_aus):
            emb = self.au_table.weight[i].expand(h.shape[0], -1)
            h = self.decoder(emb, h)    # P^i and H^{i+1} coincide for a GRU
            outs.append(h)
        return torch.stack(outs, 1), h

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h_c = self.static_features(batch["image"])
        h_l = self.dynamic_features(batch) if self.config.dynamic else None
        h0 = self.dropout(self.fuse(h_c, h_l))
        out = {"static": h_c, "h0": h0}
        if h_l is not None:
            out["dynamic"] = h_l
        if not self.config.sequence_decoder:
            out["logits"] = self.heads(h0)
            if self.intensity is not None:
                out["intensity"] = 5.0 * torch.sigmoid(self.intensity(h0))
            return out
        steps, _ = self.decode(h0)
        steps = self.dropout(steps)
        out["logits"] = self.classifier(steps).squeeze(-1)
        if self.intensity is not None:
            out["intensity"] = 5.0 * torch.sigmoid(self.intensity(steps).squeeze(-1))
        return out


def smooth_sequence(probs: np.ndarray, window: int, method: Literal["mean", "median"] = "mean") -> np.ndarray:
    """Temporal smoothing of one video's per-frame AU probabilities (paper 002 §3, "smoothing").

    ``probs`` (T, n_AU) in frame order; each frame becomes the mean (or median) of the ``window``
    frames centred on it. At the video edges the first/last frame is repeated so every frame
    averages exactly ``window`` values. ``window`` must be odd; 1 returns a copy. The paper
    does not describe its smoothing; this centred filter is ours. Returns float64 (T, n_AU).
    """
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"smooth_sequence: probs must be (T, n_AU), got shape {arr.shape}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smooth_sequence: window must be a positive odd number, got {window}")
    if method not in ("mean", "median"):
        raise ValueError(f"smooth_sequence: method must be mean or median, got {method!r}")
    half = window // 2
    padded = np.pad(arr, ((half, half), (0, 0)), mode="edge")
    stacked = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, n_AU, window)
    return stacked.mean(-1) if method == "mean" else np.median(stacked, -1)


_SMALL = ToSequenceConfig(conv_channels=(16, 32, 64, 64), feature_dim=64, dynamic_hidden=(64,),
                          tensor_dim=16, hidden=64, classifier_hidden=32)
_PAPER = ToSequenceConfig(conv_channels=(64, 128, 256, 256), feature_dim=256, dynamic_hidden=(256,),
                          hidden=256, classifier_hidden=128)


@register_model("to_sequence_small", ToSequenceModel, tags=("small",),
                description="112 px gray+Sobel CNN+GRU, landmark dynamics, AU-query GRU decoder (small widths)")
def to_sequence_small() -> ToSequenceConfig:
    return _SMALL


@register_model("to_sequence", ToSequenceModel,
                description="To-Sequence at the paper's 112 px input, 8x64-style AU table, wider CNN")
def to_sequence() -> ToSequenceConfig:
    return _PAPER


@register_model("to_sequence_appearance_only", ToSequenceModel, tags=("small",),
                description="Ablation: static module only (no landmark dynamics), small widths")
def to_sequence_appearance_only() -> ToSequenceConfig:
    return replace(_SMALL, dynamic=False)


@register_model("to_sequence_mobilenetv2", ToSequenceModel, tags=("small",), pretrained="mobilenet_v2-imagenet",
                description="to_sequence_small with its static CNN from ImageNet MobileNetV2 (stages to stride 16)")
def to_sequence_mobilenetv2() -> ToSequenceConfig:
    return replace(_SMALL, backbone="mobilenet_v2")
