"""MobileFaceNet as insightface ships it in ``w600k_mbf.onnx`` (buffalo_s recognition model).

MobileFaceNet [Chen et al., CCBR 2018] with insightface's width 2 and stages (1, 4, 6, 2),
written from the ONNX graph: BatchNorm is already folded into every convolution (so every conv
has a bias), the stem's 3×3 conv is grouped in pairs of channels (groups=64), and the head is a
1×1 conv to 64 channels + PReLU, flatten (64·7·7), a linear layer to 512 and BatchNorm1d
(insightface's ``GDC`` replaced by that "flatten" head). Parameters come in the same order as
the ONNX initialisers, which is how ``components.weights`` maps them (checked against
onnxruntime in the tests). A 112 px face gives a 512×7×7 map before the head.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileFaceNet"]


def _conv(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=True)]
    if act:
        layers.append(nn.PReLU(c_out))
    return nn.Sequential(*layers)


class _DepthWise(nn.Module):
    """1×1 expand + PReLU, depthwise 3×3 + PReLU, linear 1×1 projection; residual when asked."""

    def __init__(self, c_in: int, c_out: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.block = nn.Sequential(_conv(c_in, hidden), _conv(hidden, hidden, 3, stride, groups=hidden),
                                   _conv(hidden, c_out, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _stage(c_in: int, c_out: int, hidden_down: int, hidden: int, repeats: int) -> list[nn.Module]:
    return [_DepthWise(c_in, c_out, hidden_down, 2, False)] + [
        _DepthWise(c_out, c_out, hidden, 1, True) for _ in range(repeats)]


class MobileFaceNet(nn.Module):
    """The w600k_mbf network: ``forward`` gives the 512-d embedding (not L2-normalised),
    ``features`` the 512×h×w map the embedding head reads."""

    def __init__(self, embedding_dim: int = 512, image_size: int = 112) -> None:
        super().__init__()
        side = image_size // 16
        self.features = nn.Sequential(
            _conv(3, 128, 3, 2), _conv(128, 128, 3, groups=64),
            *_stage(128, 128, 128, 128, 4), *_stage(128, 256, 256, 256, 6), *_stage(256, 256, 512, 256, 2),
            _conv(256, 512),
        )
        self.head = _conv(512, 64)
        self.linear = nn.Linear(64 * side * side, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.head(self.features(x)).flatten(1)))
