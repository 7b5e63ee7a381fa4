"""Shared image backbones. Pretrained weights come only from a local file or an existing
torch hub cache; nothing is ever downloaded. A missing file is a clear error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["build_backbone", "load_pretrained", "BACKBONES"]

BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "vgg16")


def load_pretrained(module: nn.Module, path: "str | Path") -> None:
    """Load a state dict from a local file into ``module`` with strict=True (weights_only)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {p}. facsflow never downloads weights; put the file "
            "there (e.g. copy it from ~/.cache/torch/hub/checkpoints/) or leave `pretrained` empty."
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    module.load_state_dict(state, strict=True)


def build_backbone(name: str, in_channels: int = 3, pretrained: str = "") -> tuple[nn.Module, int]:
    """Return (feature extractor producing B×C×h×w maps, C).

    ``pretrained``: path to a torchvision state dict for the whole classifier network; its
    classifier head is dropped after a strict load. Channels other than 3 adapt the first conv
    (pretrained RGB filters are summed over the input channels and spread evenly).
    """
    import torchvision.models as tvm

    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {list(BACKBONES)}")
    net = getattr(tvm, name)(weights=None)
    if pretrained:
        load_pretrained(net, pretrained)
    if name.startswith("resnet"):
        if in_channels != 3:
            old = net.conv1
            new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
            with torch.no_grad():
                new.weight.copy_(old.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
            net.conv1 = new
        width = net.fc.in_features
        features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                 net.layer1, net.layer2, net.layer3, net.layer4)
    elif name.startswith("mobilenet") or name == "vgg16":
        feats = net.features
        first = feats[0][0] if isinstance(feats[0], nn.Sequential) else feats[0]
        if in_channels != 3:
            new = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride,
                            first.padding, bias=first.bias is not None)
            with torch.no_grad():
                new.weight.copy_(first.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
                if first.bias is not None:
                    new.bias.copy_(first.bias)
            if isinstance(feats[0], nn.Sequential):
                feats[0][0] = new
            else:
                feats[0] = new
        features = feats
        with torch.no_grad():
            width = features(torch.zeros(1, in_channels, 64, 64)).shape[1]
    return features, width
