"""The one model interface every AU model implements, and the input declaration.

A model takes a batch dict and returns a dict with ``logits`` of shape (B, n_AU), one logit per
AU in the model's AU order, plus optional extras (``intensity`` (B, n_AU) on the 0-5 scale,
attention maps, ...). Labels use int8 with -1 = unknown; unknown entries never contribute to a
loss (see ``components.losses``).

Batch keys (all tensors, first dimension B):
- ``image``: float32 (B, C, S, S), the model input after the family's input transform
  (``components.faces.transforms.model_input``), C and S as the model declares;
- ``landmarks``: float32 (B, 68, 2), landmarks in crop pixel coordinates;
- ``landmark_diff``: float32 (B, len(diff_steps), 68, 2), diff_t = l_{t+s} - l_{t-s};
- ``labels``: float32 (B, n_AU) with 1, 0 or -1 (unknown);
- ``intensity``: float32 (B, n_AU), 0-5, -1 unknown (only where the data has it);
- ``window``: optional float32 (B, T, C, S, S) video window for families that need one;
- ``blendshapes``: float32 (B, 52) MediaPipe blendshape scores, for families that declare them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

import torch
from torch import nn

from components.au import validate_au_list

__all__ = ["InputSpec", "AUModel"]

Channels = Literal["rgb", "gray", "gray+sobel"]


@dataclass(frozen=True)
class InputSpec:
    """What a model family needs as input: read by training, prediction, ensembles, serving."""

    image_size: int = 112
    """Side of the square aligned face crop fed to the model, in pixels."""
    channels: Channels = "rgb"
    """'rgb' (3 channels), 'gray' (1) or 'gray+sobel' (2: grayscale and Sobel magnitude)."""
    mask: bool = False
    """Apply the background mask (landmark hull extended over the forehead) before the channels."""
    diff_steps: tuple[int, ...] = ()
    """Temporal landmark difference steps s the model reads (empty: image only)."""
    window: int = 0
    """Frames of video context the model needs around each frame (0: none)."""
    blendshapes: bool = False
    """Reads MediaPipe's 52 blendshape scores (batch key ``blendshapes``, float32 (B, 52)) rather
    than pixels; faces must come from the face pipeline's 'mediapipe' landmarker."""

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.channels not in ("rgb", "gray", "gray+sobel"):
            raise ValueError(f"channels must be rgb, gray or gray+sobel, got {self.channels!r}")
        if any(s < 1 for s in self.diff_steps):
            raise ValueError(f"diff_steps must be positive, got {self.diff_steps}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")

    @property
    def num_channels(self) -> int:
        return {"rgb": 3, "gray": 1, "gray+sobel": 2}[self.channels]

    @property
    def needs_video(self) -> bool:
        """True when a single still image is not enough (temporal landmarks or a window)."""
        return bool(self.diff_steps) or self.window > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["diff_steps"] = list(self.diff_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        d = dict(d)
        d["diff_steps"] = tuple(d.get("diff_steps", ()))
        return cls(**d)


class AUModel(nn.Module):
    """Base class of every registered AU model.

    Subclasses set ``family`` and ``paper``, store their constructor config dataclass in
    ``self.config`` and implement ``forward`` and (when the family's loss is not masked BCE)
    ``loss``.
    """

    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def __init__(self, aus: Sequence[int], config: Any) -> None:
        super().__init__()
        self.aus: tuple[int, ...] = validate_au_list(aus)
        self.config = config
        self.pos_weight: "torch.Tensor | None" = None
        """Per-AU BCE weight of positive labels, set by training (``TrainConfig.pos_weight``);
        a plain attribute, not state: checkpoints and inference do not depend on it."""

    def positive_weight(self, like: torch.Tensor) -> "torch.Tensor | None":
        """``pos_weight`` on ``like``'s device and dtype (None when training set none)."""
        return None if self.pos_weight is None else self.pos_weight.to(like.device, like.dtype)

    def bce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Masked BCE with this model's ``pos_weight`` (the shared loss convention)."""
        from components.losses import masked_bce

        return masked_bce(logits, labels, pos_weight=self.positive_weight(logits))

    @property
    def num_aus(self) -> int:
        return len(self.aus)

    def input_spec(self) -> InputSpec:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training loss; default: masked BCE on logits (+ masked L1 on intensity if present).

        Returns a dict with the total under ``loss`` and each part under its own name.
        """
        from components.losses import masked_l1

        parts = {"bce": self.bce(outputs["logits"], batch["labels"])}
        if "intensity" in outputs and "intensity" in batch:
            parts["intensity_l1"] = masked_l1(outputs["intensity"], batch["intensity"])
        parts["loss"] = sum(parts.values())
        return parts

    def constructor_kwargs(self) -> dict[str, Any]:
        """Everything ``build_model(name, aus, **kwargs)`` needs to rebuild this model."""
        from components.configuration import to_dict

        return to_dict(self.config)
