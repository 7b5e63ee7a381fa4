"""lrp-arl-ff (paper 001): LRP, the kNN AU graph, fusion, loss, ablations and rebuilding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.models import build_model, constructor_record, rebuild_model
from components.models.lrp_arl_ff import (LocalRegionPerception, LrpArlFfConfig,
                                          imagenet_to_arcface, knn_adjacency)


AUS8 = (1, 2, 4, 6, 12, 15, 25, 26)
AUS12 = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _batch(n_aus: int, b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (b, n_aus), generator=g).float()
    labels[0, :2] = -1.0
    labels[1] = -1.0
    return {"image": torch.randn(b, 3, 112, 112, generator=g), "labels": labels}


def test_lrp_takes_the_max_of_the_lanet_maps_through_a_sigmoid() -> None:
    lrp = LocalRegionPerception(channels=16, lanets=3, reduction=4)
    with torch.no_grad():
        for lanet, bias in zip(lrp.lanets, (0.0, 1.0, -2.0)):
            lanet[2].weight.zero_()
            lanet[2].bias.fill_(bias)
    fmap = torch.randn(2, 16, 5, 5)
    attended, score = lrp(fmap)
    assert attended.shape == (2, 16, 5, 5) and score.shape == (2, 1, 5, 5)
    # max(0, 1, -2) = 1 everywhere; sigmoid(1) = 0.7310586
    assert torch.allclose(score, torch.full_like(score, 0.7310586))
    assert torch.allclose(attended, fmap * 0.7310586)


def test_knn_adjacency_links_each_node_to_its_k_most_similar() -> None:
    # Dot products: row 0 = [1, .9, 0], row 1 = [.9, .82, .1], row 2 = [0, .1, 1]; k = 2.
    nodes = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]])
    expected = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]])
    assert torch.equal(knn_adjacency(nodes, k=2), expected)


def test_imagenet_input_is_mapped_to_arcface_scale() -> None:
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    black, grey, white = [((v - mean) / std).view(1, 3, 1, 1) for v in (0.0, 0.5, 1.0)]
    assert torch.allclose(imagenet_to_arcface(black), torch.full((1, 3, 1, 1), -1.0), atol=1e-6)
    assert torch.allclose(imagenet_to_arcface(grey), torch.zeros(1, 3, 1, 1), atol=1e-6)
    assert torch.allclose(imagenet_to_arcface(white), torch.ones(1, 3, 1, 1), atol=1e-6)


@pytest.mark.parametrize("aus", [AUS8, AUS12], ids=["8aus", "12aus"])
def test_forward_backward_without_nan(aus: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model("lrp_arl_ff_small", aus)
    batch = _batch(len(aus))
    out = model(batch)
    assert out["logits"].shape == (4, len(aus))
    assert out["attention"].shape == (4, 1, 7, 7)
    assert ((out["fusion_weight"] > 0) & (out["fusion_weight"] < 1)).all()
    parts = model.loss(out, batch)
    assert set(parts) == {"bce", "circle", "loss"}
    parts["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(parts["loss"])


def test_weight_token_fusion_weight_depends_on_each_face() -> None:
    # α = sigmoid(FC(encoded weight token)), §3.3 Fig. 3. The FC starts at zero (α = 0.5 for
    # every face), so take one training step first; then α must follow the face: changing one
    # face's image changes that face's α and no other (the weight token attends only to its own
    # face's backbone and AU tokens; eval mode, so no batch statistics couple the faces).
    torch.manual_seed(0)
    model = build_model("lrp_arl_ff_small", AUS8, width=16, num_features=64)
    batch = _batch(8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.loss(model(batch), batch)["loss"].backward()
    opt.step()
    model.eval()
    other = dict(batch, image=batch["image"].clone())
    other["image"][2] = torch.randn(3, 112, 112, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        alpha = model(batch)["fusion_weight"].squeeze(1)
        changed = model(other)["fusion_weight"].squeeze(1)
    assert alpha.shape == (4,)
    assert float(alpha.max() - alpha.min()) > 1e-4, f"α is the same for every face: {alpha}"
    assert abs(float(changed[2] - alpha[2])) > 1e-4, "α of the changed face did not move"
    keep = torch.tensor([0, 1, 3])
    torch.testing.assert_close(changed[keep], alpha[keep])


def test_turning_lrp_off_removes_exactly_the_lanet_parameters() -> None:
    with_lrp = build_model("lrp_arl_ff_small", AUS8)
    without = build_model("lrp_arl_ff_no_lrp", AUS8)
    assert any(k.startswith("lrp.") for k in with_lrp.state_dict())
    assert not any(k.startswith("lrp.") for k in without.state_dict())
    assert "attention" not in without(_batch(8, b=2))
    # 8 LANets on 256 channels, r = 8: (256*32 + 32) + (32*1 + 1) = 8257 each.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_lrp) - count(without) == 8 * 8257


def test_fixed_fusion_mixes_au_and_backbone_logits() -> None:
    model = build_model("lrp_arl_ff_fixed_fusion", AUS8, fixed_weight=0.3).eval()
    out = model(_batch(8, b=2))
    assert torch.allclose(out["logits"], 0.3 * out["au_logits"] + 0.7 * out["backbone_logits"])
    assert not any(k.startswith("fusion.") for k in model.state_dict())


def test_no_fusion_gives_the_au_logits_and_drops_the_backbone_head() -> None:
    model = build_model("lrp_arl_ff_small", AUS8, fusion="none").eval()
    out = model(_batch(8, b=2))
    assert torch.equal(out["logits"], out["au_logits"])
    assert not any(k.startswith(("backbone_head.", "fusion.")) for k in model.state_dict())


def test_turning_the_graph_off_sends_the_afg_nodes_straight_to_the_head() -> None:
    # §3.2 ablation: no FGG (kNN graph + GNN); v_k = GAP ReLU(W_k x + b_k) goes to the per-AU FC.
    torch.manual_seed(0)
    with_graph = build_model("lrp_arl_ff_small", AUS8)
    model = build_model("lrp_arl_ff_no_graph", AUS8).eval()
    assert model.config.graph is False and model.arl.gnn is None
    assert not any(k.startswith("arl.gnn.") for k in model.state_dict())
    assert any(k.startswith("arl.gnn.") for k in with_graph.state_dict())
    # One GNN layer on 256 channels, 8 nodes: U and V (256*256 + 256 each) + BN over 8 nodes (2*8).
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(with_graph) - count(model) == 2 * (256 * 256 + 256) + 2 * 8
    batch = _batch(8, b=2)
    with torch.no_grad():
        out = model(batch)
        fmap = model.backbone.forward_features(imagenet_to_arcface(batch["image"]))
        attended, _ = model.lrp(fmap)
        tokens = attended.flatten(2).transpose(1, 2)
        arl = model.arl
        nodes = torch.stack([torch.relu(tokens @ arl.afg_weight[k] + arl.afg_bias[k]).mean(1)
                             for k in range(8)], dim=1)
        expected = (nodes * arl.head_weight).sum(-1) + arl.head_bias
    assert out["logits"].shape == (2, 8) and torch.isfinite(out["logits"]).all()
    torch.testing.assert_close(out["au_logits"], expected, rtol=1e-4, atol=1e-5)


def test_per_au_fusion_learns_one_bounded_weight_per_au() -> None:
    torch.manual_seed(0)
    model = build_model("lrp_arl_ff_per_au_fusion", AUS12, width=16, num_features=64)
    assert model.fusion is None and model.fusion_logit.shape == (12,)
    assert not any(k.startswith("fusion.") for k in model.state_dict())
    batch = _batch(12)
    out = model(batch)
    alpha = out["fusion_weight"]
    # Starts at the fixed weight 0.5 for every AU and face.
    assert alpha.shape == (4, 12) and torch.allclose(alpha, torch.full((4, 12), 0.5))
    torch.testing.assert_close(out["logits"], alpha * out["au_logits"]
                               + (1 - alpha) * out["backbone_logits"])
    model.loss(out, batch)["loss"].backward()
    grad = model.fusion_logit.grad
    assert grad is not None and torch.isfinite(grad).all() and (grad != 0).sum() >= 10
    # An SGD step moves each AU's α by its own gradient: the weights part from one another.
    with torch.no_grad():
        model.fusion_logit -= 10.0 * grad
    with torch.no_grad():
        alpha = model.eval()(batch)["fusion_weight"]
    assert ((alpha > 0) & (alpha < 1)).all()
    assert float(alpha[0].max() - alpha[0].min()) > 1e-3
    torch.testing.assert_close(alpha[0], alpha[3])
    # The start follows fixed_weight: sigmoid(a_k) = 0.2.
    start = build_model("lrp_arl_ff_per_au_fusion", AUS8, fixed_weight=0.2, width=16, num_features=64)
    assert torch.allclose(torch.sigmoid(start.fusion_logit), torch.full((8,), 0.2))


def test_loss_is_bce_plus_weighted_circle_and_ignores_unknowns() -> None:
    model = build_model("lrp_arl_ff_small", AUS8, circle_weight=0.25)
    batch = _batch(8)
    parts = model.loss(model(batch), batch)
    assert parts["loss"].item() == pytest.approx(parts["bce"].item() + 0.25 * parts["circle"].item())
    unknown = {"image": batch["image"], "labels": torch.full((4, 8), -1.0)}
    assert model.loss(model(unknown), unknown)["loss"].item() == 0.0


@pytest.mark.parametrize("name", ["lrp_arl_ff_small", "lrp_arl_ff_no_lrp", "lrp_arl_ff_fixed_fusion",
                                  "lrp_arl_ff_no_graph", "lrp_arl_ff_per_au_fusion"])
def test_variants_learn_a_tiny_fixed_batch(name: str) -> None:
    torch.manual_seed(1)
    # The registered variant at quarter width keeps the test a few seconds on one CPU thread.
    model = build_model(name, AUS8, width=16, num_features=64)
    batch = _batch(8, b=4, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model.loss(model(batch), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_rebuild_from_constructor_kwargs_gives_the_same_architecture() -> None:
    model = build_model("lrp_arl_ff_no_lrp", AUS12, neighbours=3, fusion="fixed")
    again = build_model("lrp_arl_ff_no_lrp", AUS12, **model.constructor_kwargs())
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.config == model.config
    assert model.input_spec().image_size == 112 and model.input_spec().channels == "rgb"


def test_paper_network_is_iresnet100() -> None:
    model = build_model("lrp_arl_ff_iresnet100", AUS12)
    assert [len(getattr(model.backbone, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 13, 30, 3]


def test_pretrained_backbone_loads_from_a_local_file(tmp_path: Path) -> None:
    donor = build_model("lrp_arl_ff_small", AUS8)
    path = tmp_path / "backbone.pth"
    torch.save(donor.backbone.state_dict(), path)
    model = build_model("lrp_arl_ff_small", AUS8, pretrained=str(path))
    assert torch.equal(model.backbone.conv1.weight, donor.backbone.conv1.weight)
    # A checkpoint records the weights' name, not this machine's path, and rebuilds without the
    # file: its weights are in the state dict.
    record = constructor_record(model)
    assert record["pretrained"] == "backbone.pth" and str(tmp_path) not in repr(record)
    path.unlink()
    again = rebuild_model("lrp_arl_ff_small", AUS8, record["kwargs"])
    again.load_state_dict(model.state_dict(), strict=True)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_model("lrp_arl_ff_small", AUS8, pretrained=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("bad, message", [
    ({"fusion": "mean"}, "fusion must be transformer, fixed, per_au or none, got 'mean'"),
    ({"fixed_weight": 1.5}, "fixed_weight must be in"), ({"depth": 101}, "depth must be one of"),
    ({"fusion_heads": 7}, "fusion_heads dividing"), ({"neighbours": 0}, "neighbours and graph_layers"),
    ({"fusion": "per_au", "fixed_weight": 1.0}, "needs 0 < fixed_weight < 1, got 1.0"),
    ({"fusion": "per_au", "fixed_weight": 0.0}, "needs 0 < fixed_weight < 1, got 0.0")])
def test_bad_config_is_rejected(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LrpArlFfConfig(**bad)
