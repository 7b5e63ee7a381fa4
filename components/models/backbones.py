"""Shared image backbones, optionally started from the pretrained-weights catalogue.

``pretrained`` is a catalogue entry name (``components.weights``; ``facsflow weights`` lists
them), a path to a local torchvision state dict, or empty for random weights. Nothing is ever
downloaded, and nothing is ever silently random: a named entry that is missing raises with the
command that installs it. Inputs must be prepared with the weights' own normalisation
(``architecture_normalisation``, applied inside the network); ``freeze_stages`` and ``param_groups`` support fine-tuning.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

__all__ = ["build_backbone", "build_network", "build_pretrained_network", "load_pretrained",
           "architecture_normalisation", "NormalisedFeatures", "FaceBackbone",
           "build_face_backbone", "stride_prefix", "freeze_stages", "param_groups", "BACKBONES", "CATALOGUE_ARCHITECTURES",
           "FACE_ARCHITECTURES"]

_TORCHVISION = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "vgg16")
CATALOGUE_ARCHITECTURES = ("efficientnet_lite0", "mobilenet_v2", "inception_resnet_v1", "mobilefacenet")
"""Architectures with weights in the catalogue (``build_network`` builds their full networks)."""
BACKBONES = _TORCHVISION + CATALOGUE_ARCHITECTURES
FACE_ARCHITECTURES = ("inception_resnet_v1", "mobilefacenet")
"""Catalogue architectures trained for face recognition (``build_face_backbone`` builds them)."""


def load_pretrained(module: nn.Module, path: "str | Path") -> None:
    """Load a state dict from a local file into ``module`` with strict=True (weights_only)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {p}. facsflow never downloads weights; put the file "
            "there (e.g. copy it from ~/.cache/torch/hub/checkpoints/), name a catalogue entry "
            "(`facsflow weights`) or leave `pretrained` empty."
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    module.load_state_dict(state, strict=True)


class _PooledFeatures(nn.Module):
    """Feature layers + global average pool (deep-sort's MobileNetV2 'bottleneck' embedding)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


def _facenet_128() -> nn.Module:
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None, classify=False)
    # The Keras FaceNet embeds in 128-d (facenet_pytorch's own head is 512-d).
    net.last_linear = nn.Linear(1792, 128, bias=False)
    net.last_bn = nn.BatchNorm1d(128, eps=0.001, momentum=0.1, affine=True)
    return net


def build_network(arch: str) -> nn.Module:
    """The full, randomly initialised network of a catalogue architecture, with the parameter
    names ``components.weights.load_state_dict`` produces (classifier or embedding head kept)."""
    if arch == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: TF "same" padding computed per input, so any input size pads as TF.
        return EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if arch == "mobilenet_v2":
        import torchvision

        return _PooledFeatures(torchvision.models.mobilenet_v2(weights=None).features)
    if arch == "inception_resnet_v1":
        return _facenet_128()
    if arch == "mobilefacenet":
        from components.models.mobilefacenet import MobileFaceNet

        return MobileFaceNet()
    raise KeyError(f"no catalogue architecture {arch!r}; known: {list(CATALOGUE_ARCHITECTURES)}")


def build_pretrained_network(name: str) -> nn.Module:
    """Catalogue entry ``name``'s full network with its weights, in eval mode (for reference
    checks: ImageNet logits, face embeddings)."""
    from components import weights

    entry = weights.get(name)
    weights.require_code(entry)
    net = build_network(entry.architecture)
    net.load_state_dict(weights.load_state_dict(name), strict=True)
    return net.eval()


def _feature_layers(arch: str, net: nn.Module) -> nn.Sequential:
    """The spatial feature extractor of a catalogue network, as a Sequential of stages (so
    ``freeze_stages`` counts stages) without the unused head (DDP needs every parameter used)."""
    if arch == "efficientnet_lite0":
        # The package's extract_features adds drop-connect (stochastic depth) in training; the
        # blocks called one by one run without it.
        return nn.Sequential(nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6()), *net._blocks,
                             nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()))
    if arch == "mobilenet_v2":
        return net.features
    if arch == "inception_resnet_v1":
        return nn.Sequential(net.conv2d_1a, net.conv2d_2a, net.conv2d_2b, net.maxpool_3a, net.conv2d_3b,
                             net.conv2d_4a, net.conv2d_4b, net.repeat_1, net.mixed_6a, net.repeat_2,
                             net.mixed_7a, net.repeat_3, net.block8)
    return net.features  # mobilefacenet


def _adapt_first_conv(features: nn.Module, in_channels: int) -> None:
    """Give the first conv ``in_channels`` inputs: pretrained RGB filters are summed over the
    input channels and spread evenly (so a grey image replicated gives the same response)."""
    first = next((m for m in features.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError("backbone has no convolution to adapt")
    if first.groups != 1:
        raise ValueError(f"cannot adapt a grouped first conv to {in_channels} channels")
    new = copy.deepcopy(first)  # keeps subclasses (TF same padding) and stride/padding
    with torch.no_grad():
        w = first.weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    new.weight = nn.Parameter(w)
    new.in_channels = in_channels
    for parent in features.modules():
        for child_name, child in parent.named_children():
            if child is first:
                setattr(parent, child_name, new)


def _torch_bn_momentum(net: nn.Module) -> None:
    """BatchNorm running statistics at PyTorch's momentum 0.1. torchvision builds MobileNetV3 with
    0.01, set for its ImageNet schedule of hundreds of epochs: after the few hundred steps of a
    small training set its running statistics are still mostly their initial 0 and 1, so the
    network in eval mode answers nearly the same for every face (validation F1 then stays at the
    trivial line while the training loss falls)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1


def build_backbone(name: str, in_channels: int = 3, pretrained: str = "") -> tuple[nn.Module, int]:
    """Return (feature extractor producing B×C×h×w maps, C).

    ``pretrained``: a catalogue entry for architecture ``name`` (its weights, verified), a path
    to a torchvision state dict for the whole classifier network (its head is dropped after a
    strict load), or "" for random weights. Channels other than 3 adapt the first conv.
    """
    import torchvision.models as tvm

    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {list(BACKBONES)}")
    entry = _catalogue_entry(pretrained)
    if entry is not None and entry.architecture != name:
        raise ValueError(f"pretrained weights {pretrained!r} are for architecture {entry.architecture!r}, "
                         f"not backbone {name!r}")
    if name in CATALOGUE_ARCHITECTURES:
        if pretrained and entry is None:
            raise ValueError(f"backbone {name!r} takes catalogue weights only (`facsflow weights`), "
                             f"not a file: {pretrained!r}")
        net = build_pretrained_network(pretrained) if entry else build_network(name)
        features = _feature_layers(name, net.train())
    else:
        net = getattr(tvm, name)(weights=None)
        if name.startswith("mobilenet_v3"):
            _torch_bn_momentum(net)
        if pretrained:
            load_pretrained(net, pretrained)
        if name.startswith("resnet"):
            features = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                     net.layer1, net.layer2, net.layer3, net.layer4)
        else:
            features = net.features
    if in_channels != 3:
        _adapt_first_conv(features, in_channels)
    else:
        features = _normalised(name, features)
    with torch.no_grad():
        was = features.training
        size = 112 if name in ("inception_resnet_v1", "mobilefacenet") else 64
        width = features.eval()(torch.zeros(1, in_channels, size, size)).shape[1]
        features.train(was)
    return features, width


def architecture_normalisation(arch: str):
    """The pixel preparation a backbone architecture's catalogue weights expect (one entry per
    catalogue architecture), ImageNet's for torchvision architectures. It depends on the
    architecture, not on whether weights were loaded, so a model rebuilt from a checkpoint
    without its weights file prepares its input exactly as the trained one did."""
    from components import weights

    norms = {e.normalisation for e in weights.list_entries() if e.architecture == arch}
    if len(norms) > 1:
        raise ValueError(f"catalogue entries of {arch!r} disagree on normalisation: {sorted(map(str, norms))}")
    return norms.pop() if norms else weights.Normalisation()


class NormalisedFeatures(nn.Sequential):
    """A feature Sequential that first re-prepares its input for its weights.

    Every facsflow model reads RGB prepared the ImageNet way (``components.faces.transforms.
    model_input``: (x/255 − mean)/std); weights trained on other pixels (FaceNet's per-image
    standardisation, ArcFace's (x − 0.5)/0.5) get them converted here, inside the network, so the
    data pipeline, serving and exported models keep one input contract. Its children are the
    stages (``freeze_stages`` counts them), so state-dict keys are those of the plain Sequential.
    """

    def __init__(self, stages: "Iterable[nn.Module]", normalisation) -> None:
        super().__init__(*stages)
        self.normalisation = normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(from_imagenet(x, self.normalisation))


def from_imagenet(x: torch.Tensor, normalisation) -> torch.Tensor:
    """ImageNet-normalised RGB → the pixels ``normalisation`` (a ``weights.Normalisation``) expects."""
    from components import weights

    mean = torch.tensor(weights.IMAGENET_MEAN, dtype=x.dtype, device=x.device)[None, :, None, None]
    std = torch.tensor(weights.IMAGENET_STD, dtype=x.dtype, device=x.device)[None, :, None, None]
    return weights.normalise(x * std + mean, normalisation)


def _normalised(arch: str, features: nn.Module) -> nn.Module:
    """``features`` as a ``NormalisedFeatures`` when the architecture's weights expect other
    pixels than ImageNet's; unchanged otherwise."""
    from components import weights

    norm = architecture_normalisation(arch)
    if norm == weights.Normalisation():
        return features
    return NormalisedFeatures(features.children(), norm)


class FaceBackbone(nn.Sequential):
    """A face-recognition network as the LRP+ARL+FF family reads its backbone (the interface of
    ``components.models.iresnet.IResNet``): ``forward_features`` gives the C×h×w map,
    ``forward_embedding`` the identity embedding from that map. Children: the feature stages,
    then the embedding head (last), so ``freeze_stages`` freezes from the input side."""

    def __init__(self, stages: "Iterable[nn.Module]", embedding: nn.Module, normalisation,
                 out_channels: int, num_features: int) -> None:
        super().__init__(*stages, embedding)
        self.normalisation = normalisation
        self.out_channels = out_channels
        self.num_features = num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = from_imagenet(x, self.normalisation)
        for stage in list(self.children())[:-1]:
            x = stage(x)
        return x

    def forward_embedding(self, fmap: torch.Tensor) -> torch.Tensor:
        return self[-1](fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_embedding(self.forward_features(x))


class _FaceNetEmbedding(nn.Module):
    """FaceNet from its stride-16 map on: Reduction-B, 5 Inception-ResNet-C blocks and the last
    one, global average pool, linear 1792→128, BatchNorm1d (facenet_pytorch's order; its dropout
    is identity at inference)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.mixed_7a, self.repeat_3, self.block8 = net.mixed_7a, net.repeat_3, net.block8
        self.last_linear, self.last_bn = net.last_linear, net.last_bn

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.block8(self.repeat_3(self.mixed_7a(fmap)))
        return self.last_bn(self.last_linear(x.mean((2, 3))))


class _MobileFaceNetEmbedding(nn.Module):
    """MobileFaceNet's head: 1×1 conv to 64 + PReLU, flatten, linear to 512, BatchNorm1d."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.head, self.linear, self.bn = net.head, net.linear, net.bn

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.head(fmap).flatten(1)))


def build_face_backbone(arch: str, pretrained: str = "") -> FaceBackbone:
    """A catalogue face-recognition architecture (``FACE_ARCHITECTURES``) as a ``FaceBackbone``,
    from catalogue entry ``pretrained`` ("" = random). FaceNet's map is 896×8×8 at its 160 px
    (stride 16), MobileFaceNet's 512×7×7 at 112 px (its flatten head fixes that size)."""
    if arch not in FACE_ARCHITECTURES:
        raise KeyError(f"no face-recognition architecture {arch!r}; known: {list(FACE_ARCHITECTURES)}")
    entry = _catalogue_entry(pretrained)
    if pretrained and entry is None:
        raise ValueError(f"face backbone {arch!r} takes catalogue weights only (`facsflow weights`), "
                         f"not a file: {pretrained!r}")
    if entry is not None and entry.architecture != arch:
        raise ValueError(f"pretrained weights {pretrained!r} are for architecture {entry.architecture!r}, "
                         f"not backbone {arch!r}")
    net = (build_pretrained_network(pretrained) if entry else build_network(arch)).train()
    stages = list(_feature_layers(arch, net).children())
    if arch == "inception_resnet_v1":
        # The map is taken at stride 16 (896×8×8 at 160 px, after Inception-ResNet-B), as the
        # paper's IResNet gives 7×7 at 112 px: LRP needs local regions, and the 1792-channel 3×3
        # map at the end would make every per-AU layer 4x wider for 1/9 of the locations.
        stages = stages[:stages.index(net.mixed_7a)]
        embedding, channels, dim = _FaceNetEmbedding(net), 896, 128
    else:
        embedding, channels, dim = _MobileFaceNetEmbedding(net), 512, 512
    return FaceBackbone(stages, embedding, architecture_normalisation(arch), channels, dim)


def stride_prefix(features: nn.Sequential, stride: int, in_channels: int, size: int = 224) -> nn.Sequential:
    """The leading stages of a feature Sequential up to the last one whose output is at
    ``stride`` (e.g. 16: 7×7 at 112 px), found by running a probe through the stages; a
    backbone's middle layers for families that read a finer map than its last."""
    children = list(features.children())
    keep = 0
    with torch.no_grad():
        was = features.training
        x = torch.zeros(1, in_channels, size, size)
        for i, child in enumerate(children):
            x = child.eval()(x)
            if x.shape[-1] >= size // stride:
                keep = i + 1
        features.train(was)
    if not keep:
        raise ValueError(f"no stage of the backbone keeps stride {stride}")
    return nn.Sequential(*children[:keep])


def _catalogue_entry(pretrained: str):
    """The catalogue entry a ``pretrained`` value names, or None for "" and file paths."""
    from components import weights

    if not pretrained:
        return None
    try:
        return weights.get(pretrained)
    except weights.UnknownWeightsError:
        if Path(pretrained).expanduser().suffix or "/" in pretrained:
            return None  # a file path (the torchvision route)
        raise


def freeze_stages(features: nn.Module, stages: int) -> list[str]:
    """Stop gradients in the first ``stages`` children of a feature Sequential (early layers
    of a pretrained backbone keep their generic filters); returns the frozen parameter names.
    BatchNorm statistics still adapt in train mode."""
    children = list(features.children())
    if not 0 <= stages <= len(children):
        raise ValueError(f"stages must be in 0..{len(children)}, got {stages}")
    frozen = []
    for i, child in enumerate(children[:stages]):
        for pname, p in child.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{i}.{pname}")
    return frozen


def param_groups(model: nn.Module, pretrained: Iterable[nn.Module], lr: float,
                 pretrained_lr_scale: float = 0.1) -> list[dict]:
    """Optimizer groups: parameters of the ``pretrained`` modules at ``lr * pretrained_lr_scale``,
    every other trainable parameter at ``lr`` (frozen ones are left out)."""
    if not 0 < pretrained_lr_scale <= 1:
        raise ValueError(f"pretrained_lr_scale must be in (0, 1], got {pretrained_lr_scale}")
    slow = {id(p) for m in pretrained for p in m.parameters()}
    slow_params = [p for p in model.parameters() if id(p) in slow and p.requires_grad]
    fast_params = [p for p in model.parameters() if id(p) not in slow and p.requires_grad]
    groups = [{"params": fast_params, "lr": lr}]
    if slow_params:
        groups.append({"params": slow_params, "lr": lr * pretrained_lr_scale})
    return groups
