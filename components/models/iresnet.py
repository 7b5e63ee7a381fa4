"""IResNet in the insightface ArcFace layout (the backbone of paper 001).

Paper 001 (Yu et al., ABAW5 / CVPRW 2023, §3 and §4.2) uses IResNet-100 [Duta et al., ICPR
2020] pre-trained on Glint360K for face recognition. Those weights are published by
insightface (``recognition/arcface_torch``); this module rebuilds the same network so that such
a state dict loads with ``strict=True``: every parameter and buffer name and shape matches
insightface's ``backbones/iresnet.py`` (stem ``conv1/bn1/prelu``, ``layer1..4`` of
``IBasicBlock`` with ``bn1, conv1, bn2, prelu, conv2, bn3`` and ``downsample.0/.1``, then
``bn2``, ``fc`` and the ``features`` BatchNorm1d).

The improved residual block is pre-activation style: BN → 3×3 conv → BN → PReLU → 3×3 conv
(stride here) → BN, plus the identity (or a strided 1×1 conv + BN). The stem keeps full
resolution, so a 112 px face gives a 7×7 map after four stride-2 stages, and ``fc`` flattens
that 7×7 map into the 512-d embedding.

Departure for CPU tests and the demo only: ``width`` scales every stage's channels (64 is the
insightface layout; other widths cannot load Glint360K weights) and ``image_size`` other than
112 resizes ``fc`` (again incompatible with the published weights).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from components.models.backbones import load_pretrained

__all__ = ["IBasicBlock", "IResNet", "IRESNET_LAYERS", "build_iresnet"]

IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
"""Depth → blocks per stage, as insightface's iresnet18/34/50/100."""


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Improved basic block: BN, conv3×3, BN, PReLU, conv3×3 (strided), BN, + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """IResNet feature extractor and ArcFace embedding head (insightface parameter names).

    ``forward_features`` gives the B×C×h×w map after the final ``bn2`` (C = 8·width, h = w =
    image_size/16); ``forward_embedding`` flattens it through ``fc`` and ``features`` into the
    ``num_features``-d face embedding; ``forward`` chains both, as insightface's module does.
    """

    def __init__(self, layers: tuple[int, int, int, int], width: int = 64, image_size: int = 112,
                 num_features: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"IResNet image_size must be a multiple of 16, got {image_size}")
        self.out_channels = 8 * width
        self.map_size = image_size // 16
        self.conv1 = _conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        stages, inplanes = [], width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = [IBasicBlock(inplanes, planes, stride=2)]
            stage += [IBasicBlock(planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(self.out_channels, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(self.out_channels * self.map_size ** 2, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        self._init_weights()

    def _init_weights(self) -> None:
        # insightface initialisation: N(0, 0.1) convs, unit BN, and a frozen unit scale on the
        # embedding BatchNorm (ArcFace normalises the embedding afterwards, so its scale is moot).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero scale on each residual branch's last BN (bn3): every block starts as its shortcut
        # (Goyal et al. 2017; torchvision's zero_init_residual). N(0, 0.1) 3x3 convs multiply the
        # scale by ~2.4 each, so 49 random branches summed into the trunk overflow in eval mode,
        # where BatchNorm uses running statistics instead of the batch's (measured: IResNet-100
        # gave NaN eval logits after one training step). insightface's own option, off by
        # default, zeroes bn2 instead: the middle BN, which also gives an identity block but
        # cuts the gradient of the branch's first conv until bn2 moves. Loaded weights replace
        # all of this.
        for m in self.modules():
            if isinstance(m, IBasicBlock):
                nn.init.zeros_(m.bn3.weight)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, S, S) → feature map (B, 8·width, S/16, S/16) after ``bn2``."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward_embedding(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map → face embedding (B, num_features) through ``fc`` and ``features``."""
        return self.features(self.fc(self.dropout(fmap.flatten(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_embedding(self.forward_features(x))


def build_iresnet(depth: int, width: int = 64, image_size: int = 112, num_features: int = 512,
                  dropout: float = 0.0, pretrained: "str | Path" = "") -> IResNet:
    """IResNet-``depth`` (18, 34, 50 or 100); ``pretrained`` is a local insightface state dict.

    The file (e.g. Glint360K ``backbone.pth``) loads with ``strict=True``; it must match
    ``width=64, image_size=112, num_features=512``. A missing file is a FileNotFoundError.
    """
    if depth not in IRESNET_LAYERS:
        raise ValueError(f"IResNet depth {depth} not in {sorted(IRESNET_LAYERS)}")
    net = IResNet(IRESNET_LAYERS[depth], width=width, image_size=image_size,
                  num_features=num_features, dropout=dropout)
    if pretrained:
        load_pretrained(net, pretrained)
    return net
