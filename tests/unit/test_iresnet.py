"""IResNet: insightface ArcFace parameter layout, so Glint360K weights load with strict=True."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.models.iresnet import build_iresnet


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{n}": () if n == "num_batches_tracked" else (c,) for n in _BN}


def insightface_layout(blocks: tuple[int, int, int, int]) -> dict[str, tuple[int, ...]]:
    """Key → shape of insightface recognition/arcface_torch/backbones/iresnet.py, written out
    from its module tree (stem conv1/bn1/prelu; IBasicBlock bn1, conv1, bn2, prelu, conv2, bn3,
    downsample.0 conv1x1 + downsample.1 BN in each stage's first block; bn2; fc; features)."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3), "prelu.weight": (64,)}
    keys.update(_bn("bn1", 64))
    cin = 64
    for s, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(n):
            p = f"layer{s}.{i}"
            inp = cin if i == 0 else planes
            keys.update(_bn(f"{p}.bn1", inp))
            keys[f"{p}.conv1.weight"] = (planes, inp, 3, 3)
            keys.update(_bn(f"{p}.bn2", planes))
            keys[f"{p}.prelu.weight"] = (planes,)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(_bn(f"{p}.bn3", planes))
            if i == 0:
                keys[f"{p}.downsample.0.weight"] = (planes, inp, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", planes))
        cin = planes
    keys.update(_bn("bn2", 512))
    keys["fc.weight"] = (512, 512 * 7 * 7)
    keys["fc.bias"] = (512,)
    keys.update(_bn("features", 512))
    return keys


def test_layout_spot_checks_from_insightface() -> None:
    layout = insightface_layout((2, 2, 2, 2))
    assert layout["conv1.weight"] == (64, 3, 3, 3)
    assert layout["layer1.0.downsample.0.weight"] == (64, 64, 1, 1)
    assert layout["fc.weight"] == (512, 25088)
    # 7 stem + 8 blocks x 18 + 4 downsamples x 6 + 12 head entries, counted by hand.
    assert len(layout) == 187


def test_insightface_state_dict_loads_strict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layout = insightface_layout((2, 2, 2, 2))
    state = {k: (torch.tensor(3) if s == () else torch.randn(s)) for k, s in layout.items()}
    path = tmp_path / "glint360k_r18_backbone.pth"
    torch.save(state, path)
    net = build_iresnet(18, pretrained=path)
    own = net.state_dict()
    assert set(own) == set(layout)
    assert torch.equal(own["layer1.0.prelu.weight"], state["layer1.0.prelu.weight"])
    assert torch.equal(own["features.weight"], state["features.weight"])
    assert torch.equal(own["fc.weight"], state["fc.weight"])


def test_iresnet100_has_the_insightface_r100_layout() -> None:
    net = build_iresnet(100)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == insightface_layout((3, 13, 30, 3))
    assert len(shapes) == 925  # 49 blocks x 18 + 4 x 6 + 19, by hand


def test_a_foreign_key_fails_the_strict_load(tmp_path: Path) -> None:
    state = build_iresnet(18).state_dict()
    state["head.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="head.weight"):
        build_iresnet(18, pretrained=path)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_iresnet(18, pretrained=tmp_path / "absent.pth")


def test_shapes_and_parameter_count_of_iresnet18() -> None:
    torch.set_num_threads(1)
    net = build_iresnet(18).eval()
    fmap = net.forward_features(torch.randn(2, 3, 112, 112))
    assert fmap.shape == (2, 512, 7, 7)
    assert net.forward_embedding(fmap).shape == (2, 512)
    # Summed by hand over stem, the four stages, bn2, fc (25088 x 512 + 512) and features.
    assert sum(p.numel() for p in net.parameters()) == 24_025_600
    assert not net.features.weight.requires_grad


def test_a_fresh_block_is_its_shortcut() -> None:
    # bn3 starts at zero scale (and zero shift), so the residual branch adds exactly 0: a block
    # without downsampling returns its input, in training and in eval mode alike.
    net = build_iresnet(18)
    assert all(int(torch.count_nonzero(b.bn3.weight.detach())) == 0 for s in (net.layer1, net.layer4) for b in s)
    block = net.layer2[1]
    x = torch.randn(2, 128, 14, 14)
    for mode in (True, False):
        block.train(mode)
        assert torch.equal(block(x), x)


def test_unknown_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="depth 42"):
        build_iresnet(42)
