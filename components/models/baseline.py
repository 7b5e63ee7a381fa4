"""Baseline: backbone + global average pooling + linear head, trained with masked BCE.

This is the ablation baseline of paper 001 (Yu et al., §4.4, "a classification head after
IResNet100", Table 2) and paper 003 (SEV-Net, §4.4, the ResNet-18 bars of Fig. 3): the
backbone's pooled feature and one fully connected layer with one logit per AU. An optional
intensity head regresses 0-5.

Pretrained starts: the papers' ResNet-18 / IResNet ImageNet or face weights are not in any
package, so the variants that start pretrained by default use the catalogue's ImageNet CNNs
(``baseline_effnet_lite0_112``: EfficientNet-Lite0, ``baseline_mobilenetv2_112``: MobileNetV2);
the ResNet variants start random unless given a local torchvision file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from components.models.backbones import BACKBONES, build_backbone
from components.models.base import AUModel, InputSpec
from components.models.registry import register_model

__all__ = ["BaselineConfig", "BaselineModel"]


@dataclass(frozen=True)
class BaselineConfig:
    backbone: str = "resnet18"
    """Backbone network: a torchvision architecture (weights: a local file, never downloaded) or
    a catalogue architecture (``components.models.backbones.BACKBONES``)."""
    image_size: int = 112
    """Input crop side in pixels."""
    channels: str = "rgb"
    """Input channels: rgb, gray or gray+sobel."""
    mask: bool = False
    """Apply the background mask to the input."""
    dropout: float = 0.0
    """Dropout before the head."""
    intensity_head: bool = False
    """Add a regression head for AU intensity (0-5)."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} not in {list(BACKBONES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class BaselineModel(AUModel):
    family = "baseline"
    rows_independent = True
    pretrained_parts = ("features",)
    paper = "ablation baseline of papers 001 (§4.4) and 003 (§4.4)"

    def __init__(self, aus: Sequence[int], config: BaselineConfig, weights: "str | Path | None" = None) -> None:
        super().__init__(aus, config)
        spec = self.input_spec()
        # ``weights``: a torchvision state dict of the whole classifier (build_backbone drops its head).
        self.features, width = build_backbone(config.backbone, spec.num_channels, str(weights or ""))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, self.num_aus)
        self.intensity = nn.Linear(width, self.num_aus) if config.intensity_head else None

    @classmethod
    def input_spec_for(cls, config: BaselineConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels=config.channels, mask=config.mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feat = self.dropout(self.pool(self.features(batch["image"])).flatten(1))
        out = {"logits": self.head(feat)}
        if self.intensity is not None:
            out["intensity"] = 5.0 * torch.sigmoid(self.intensity(feat))
        return out


@register_model("baseline_resnet18_112", BaselineModel, tags=("small",),
                description="ResNet-18 at 112 px + linear head (demo and test default)")
def baseline_resnet18_112() -> BaselineConfig:
    return BaselineConfig()


@register_model("baseline_mobilenetv3_112", BaselineModel, tags=("small",),
                description="MobileNetV3-Large at 112 px + linear head (fastest CPU member)")
def baseline_mobilenetv3_112() -> BaselineConfig:
    return BaselineConfig(backbone="mobilenet_v3_large")


@register_model("baseline_resnet18_224", BaselineModel,
                description="ResNet-18 at 224 px + linear head (the papers' input size)")
def baseline_resnet18_224() -> BaselineConfig:
    return BaselineConfig(image_size=224)


@register_model("baseline_effnet_lite0_112", BaselineModel, tags=("small",), pretrained="efficientnet_lite0-imagenet",
                description="EfficientNet-Lite0 from ImageNet (catalogue) at 112 px + linear head")
def baseline_effnet_lite0_112() -> BaselineConfig:
    return BaselineConfig(backbone="efficientnet_lite0")


@register_model("baseline_mobilenetv2_112", BaselineModel, tags=("small",), pretrained="mobilenet_v2-imagenet",
                description="MobileNetV2 from ImageNet (catalogue) at 112 px + linear head (fast student)")
def baseline_mobilenetv2_112() -> BaselineConfig:
    return BaselineConfig(backbone="mobilenet_v2")
