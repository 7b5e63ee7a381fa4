"""The pairwise-rank family's configuration (paper 004): every switch of the model and its three
training steps, each field citing the section it implements (the model: ``.model``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.models.backbones import BACKBONES

__all__ = ["PairwiseRankConfig"]


@dataclass(frozen=True)
class PairwiseRankConfig:
    backbone: str = "vgg16"
    """CNN of the pseudo-intensity network f and of the uncertainty network h (paper: VGG16)."""
    image_size: int = 224
    """Input crop side in pixels (VGG16: 224)."""
    channels: Literal["rgb", "gray", "gray+sobel"] = "rgb"
    """Input channels; the paper fine-tunes ImageNet VGG16 on RGB."""
    mask: bool = False
    """Apply the background mask to the input."""
    uncertainty: bool = True
    """Use the uncertainty network (§3.2); False is last year's framework (the paper's P2 row
    drops it for some AUs): σ features are zero and the uncertainty stage is skipped."""
    uncertainty_aus: tuple[int, ...] = ()
    """The AUs that use the uncertainty network (§4.3, Table 1: P1 adopts it for all AUs, P2
    "not ... for some AUs based on preliminary research"; the paper does not say which). Empty =
    every AU (P1). Otherwise only these AUs get σ = softplus(h) + ε: the other AUs' σ is fixed
    at 1 (their σ features are constant, so carry nothing, and G's σ⁻²-weighted mean is the plain
    mean: last year's framework for those AUs), and the uncertainty step (§3.2) trains h on the
    chosen AUs' ordered pairs only. Each must be one of the model's AUs; needs ``uncertainty``."""
    uncertainty_backbone: Literal["separate", "shared"] = "separate"
    """'separate': h has its own CNN (the paper); 'shared': h is a linear head on f's frozen
    features (half the compute, our option)."""
    margin: float = 1.0
    """Margin m of the ranking and misordering losses (paper: 1)."""
    sigma_eps: float = 1e-3
    """Floor ε of σ = softplus(h) + ε."""
    rank_target: Literal["occurrence", "intensity"] = "occurrence"
    """Which labels order the pairs (eq. 1): occurrence (0/1) or intensity (0-5, batch['intensity'])."""
    window: int = 8
    """Context frames per sample the loader delivers in batch['window'] (InputSpec.window)."""
    window_frames: int = 75
    """With batch['video_index'] and ['frame_index']: G over frames within ±window_frames//2
    (75 frames = 3 s at 25 fps, "a time window of a few seconds", §3)."""
    whole_video: bool = False
    """With video ids: G over all the batch's frames of the same video (the paper's N_k frames)."""
    context_fallback: Literal["batch", "frame"] = "batch"
    """Context for G when the batch has no video ids: 'batch' (one video, rows in frame order)
    or 'frame' (each frame alone)."""
    mapping_hidden: tuple[int, ...] = (256, 256)
    """Widths of the mapping FCN's hidden layers (VGG16 classifier shape, narrower)."""
    mapping_dropout: float = 0.5
    """Dropout after each hidden mapping layer (as in the VGG16 classifier)."""
    mapping_inputs: Literal["relative", "absolute"] = "absolute"
    """'absolute': ŷ, σ, G and the relative position as they are; 'relative': every ŷ feature
    taken relative to the frame's context (ŷ − mean, ŷ − min, max − ŷ, ŷ − weighted mean,
    std, range), so a person's ŷ level (the neutral state, §1) cannot enter the mapping."""
    intensity_head: bool = False
    """The mapping also regresses intensity 0-5 (MAE where batch['intensity'] is known)."""
    mapping_crossfit: int = 0
    """Cross-fitting of the mapping step (§3.3; ours, see the module docstring): 0 = the paper
    (the mapping learns from ŷ, σ of f and h on their own training frames); k ≥ 2 = k fold
    copies of f and h, each trained on the subjects outside one of k subject groups, give the
    mapping step out-of-fold ŷ, σ. Training batches then need ``subject`` (and ``dataset``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping_hidden", tuple(int(w) for w in self.mapping_hidden))
        object.__setattr__(self, "uncertainty_aus", tuple(int(a) for a in self.uncertainty_aus))
        if self.uncertainty_aus and not self.uncertainty:
            raise ValueError(f"uncertainty_aus={self.uncertainty_aus} needs uncertainty=True (with "
                             "uncertainty=False no AU uses the uncertainty network)")
        if len(set(self.uncertainty_aus)) != len(self.uncertainty_aus):
            raise ValueError(f"uncertainty_aus lists an AU twice: {self.uncertainty_aus}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} not in {list(BACKBONES)}")
        if self.uncertainty_backbone not in ("separate", "shared"):
            raise ValueError(f"uncertainty_backbone must be separate or shared, got {self.uncertainty_backbone!r}")
        if self.mapping_inputs not in ("relative", "absolute"):
            raise ValueError(f"mapping_inputs must be relative or absolute, got {self.mapping_inputs!r}")
        if self.context_fallback not in ("batch", "frame"):
            raise ValueError(f"context_fallback must be batch or frame, got {self.context_fallback!r}")
        if self.rank_target not in ("occurrence", "intensity"):
            raise ValueError(f"rank_target must be occurrence or intensity, got {self.rank_target!r}")
        if self.margin <= 0 or self.sigma_eps < 0:
            raise ValueError(f"margin must be > 0 and sigma_eps >= 0, got {self.margin}, {self.sigma_eps}")
        if self.window < 0 or self.window_frames < 1:
            raise ValueError(f"window must be >= 0 and window_frames >= 1, got {self.window}, {self.window_frames}")
        if self.mapping_crossfit < 0 or self.mapping_crossfit == 1:
            raise ValueError(f"mapping_crossfit must be 0 (off) or a number of subject groups >= 2, "
                             f"got {self.mapping_crossfit}")
        if any(w < 1 for w in self.mapping_hidden) or not 0.0 <= self.mapping_dropout < 1.0:
            raise ValueError(f"bad mapping_hidden {self.mapping_hidden} or mapping_dropout {self.mapping_dropout}")
