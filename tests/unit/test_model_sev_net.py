"""sev-net (paper 003): cross-modality attention eqs. 4-6, text cache, ablation, checkpoints."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from components.models import build_model
from components.models.sev_net import SevNetConfig, cross_modality_attention
from components.models.sev_net.text_encoder import cache_path, clear_memory_cache, encode_au_texts
from components.au import CATALOGUE


AUS8 = (1, 2, 4, 6, 12, 15, 25, 26)
AUS12 = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("FACSFLOW_CACHE", str(tmp_path / "cache"))


def _batch(n_aus: int, b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (b, n_aus), generator=g).float()
    labels[0, :3] = -1.0
    return {"image": torch.randn(b, 3, 112, 112, generator=g), "labels": labels}


def test_cross_modality_attention_by_hand_including_all_negative() -> None:
    # Two locations V1 = (1, 0), V2 = (1, 1). AU queries:
    #  (1, 0):  cos = (1, 1/√2) → α = (1, .70711)/1.70711 = (.5857864, .4142136), x = (1, .4142136)
    #  (-1, 0): cos = (-1, -1/√2) → all z = 0 → uniform fallback α = (.5, .5), x = (1, .5)
    #  (1, -1): cos = (1/√2, 0) → α = (1, 0), x = (1, 0)
    visual = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    queries = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, -1.0]], requires_grad=True)
    x, alpha = cross_modality_attention(visual, queries)
    expected_alpha = torch.tensor([[[0.5857864, 0.4142136], [0.5, 0.5], [1.0, 0.0]]])
    expected_x = torch.tensor([[[1.0, 0.4142136], [1.0, 0.5], [1.0, 0.0]]])
    assert torch.allclose(alpha, expected_alpha, atol=1e-6)
    assert torch.allclose(x, expected_x, atol=1e-6)
    x.sum().backward()
    assert torch.isfinite(queries.grad).all()


def test_zero_visual_features_fall_back_to_average_pooling() -> None:
    visual = torch.zeros(2, 4, 3, requires_grad=True)
    x, alpha = cross_modality_attention(visual, torch.randn(5, 3))
    assert torch.equal(alpha, torch.full((2, 5, 4), 0.25))
    x.sum().backward()
    assert torch.isfinite(visual.grad).all() and torch.isfinite(x).all()


@pytest.mark.parametrize("aus", [AUS8, AUS12], ids=["8aus", "12aus"])
def test_forward_backward_without_nan(aus: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model("sev_net_small", aus, encoder="hash")
    batch = _batch(len(aus))
    out = model(batch)
    assert out["logits"].shape == (4, len(aus))
    assert out["attention"].shape == (4, len(aus), 4, 4)
    assert torch.allclose(out["attention"].sum((-1, -2)), torch.ones(4, len(aus)), atol=1e-5)
    loss = model.loss(out, batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.classifier.weight.shape == (1, 512)  # one classifier shared by all AUs


def test_text_is_encoded_once_into_the_state_dict() -> None:
    model = build_model("sev_net_small", AUS8, encoder="hash")
    assert not bool(model.text_ready)
    model(_batch(8, b=2))
    assert bool(model.text_ready)
    assert torch.equal(model.text_embeddings, encode_au_texts(AUS8, "hash"))
    assert {"text_embeddings", "text_ready"} <= set(model.state_dict())


def test_checkpoint_serves_without_the_encoder() -> None:
    torch.manual_seed(0)
    trained = build_model("sev_net_small", AUS8, encoder="hash").eval()
    batch = _batch(8, b=2)
    expected = trained(batch)["logits"]
    buf = io.BytesIO()
    torch.save(trained.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    # The serving machine lacks this encoder: the weights alone must be enough.
    served = build_model("sev_net_small", AUS8, encoder="/no/such/encoder", text_dim=96).eval()
    with pytest.raises(RuntimeError, match="does not exist"):
        served(batch)
    served.load_state_dict(state, strict=True)
    assert torch.allclose(served(batch)["logits"], expected, atol=1e-6)


def test_no_text_ablation_has_learned_queries_and_no_text_branch() -> None:
    model = build_model("sev_net_no_text", AUS12)
    keys = set(model.state_dict())
    assert "queries" in keys
    assert not any(k.startswith(("text_", "inter_au.", "project.")) for k in keys)
    assert model(_batch(12, b=2))["logits"].shape == (2, 12)


def test_no_cross_attention_pools_the_map_and_uses_the_text_as_per_au_classifiers() -> None:
    # §3.3 ablation as in §4.4 (ML-GCN vs MS-CAM): uniform α, x̄ = mean_i V_i, logit_k = w̄_k·x̄ + b_k.
    torch.manual_seed(0)
    model = build_model("sev_net_no_cross_attention", AUS8, encoder="hash").eval()
    keys = set(model.state_dict())
    assert model.classifier is None and "au_bias" in keys
    assert not any(k.startswith("classifier.") for k in keys)
    # The text branch is still there and still decides: its queries are the classifier weights.
    assert {"text_embeddings", "inter_au.layers.0.linear1.weight", "project.weight"} <= keys
    with torch.no_grad():
        model.au_bias.copy_(torch.arange(8.0))
    batch = _batch(8, b=2)
    with torch.no_grad():
        out = model(batch)
        pooled = model.features(batch["image"]).mean(dim=(2, 3))
        queries = model.au_queries()
        expected = torch.stack([torch.stack([pooled[b] @ queries[k] + k for k in range(8)])
                                for b in range(2)])
    assert set(out) == {"logits"} and out["logits"].shape == (2, 8)
    torch.testing.assert_close(out["logits"], expected, rtol=1e-4, atol=1e-5)
    # Gradient reaches the inter-AU encoder through the classifier weights.
    model.train()
    model.loss(model(batch), batch)["loss"].backward()
    grad = model.project.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Without text too: learned per-AU weights on the pooled map (Fig. 3's ResNet-18 baseline).
    plain = build_model("sev_net_no_cross_attention", AUS8, text=False)
    assert set(plain.state_dict()) - {k for k in plain.state_dict() if k.startswith("features.")} \
        == {"queries", "au_bias"}


@pytest.mark.parametrize("name,kwargs", [("sev_net_small", {"encoder": "hash"}),
                                         ("sev_net_no_text", {}),
                                         ("sev_net_no_cross_attention", {"encoder": "hash"})])
def test_variants_learn_a_tiny_fixed_batch(name: str, kwargs: dict) -> None:
    torch.manual_seed(1)
    model = build_model(name, AUS8, **kwargs)
    batch = _batch(8, b=4, seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = model.loss(model(batch), batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_rebuild_from_constructor_kwargs_gives_the_same_architecture() -> None:
    model = build_model("sev_net_resnet18", AUS8, encoder="hash", inter_heads=4)
    again = build_model("sev_net_resnet18", AUS8, **model.constructor_kwargs())
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.input_spec().image_size == 224
    with torch.no_grad():
        fmap = again.features(torch.zeros(1, 3, 224, 224))
    assert fmap.shape == (1, 512, 7, 7)


@pytest.mark.parametrize("bad, message", [
    ({"inter_heads": 5}, "inter_heads=5 must divide the text embedding size 384"),
    ({"encoder": "my-encoder"}, "encoder 'my-encoder' has no known size: set text_dim"),
    ({"encoder": ""}, "encoder must be an encoder name or a local folder"),
    ({"text_dim": -1}, "text_dim must be >= 0"), ({"backbone": "vit"}, "backbone 'vit' not in"),
    ({"inter_dropout": 1.0}, "inter_dropout must be in"),
    ({"cross_attention": False, "intensity_head": True}, "intensity_head needs cross_attention")])
def test_bad_config_is_rejected(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SevNetConfig(**bad)


def test_real_minilm_encoder_and_its_disk_cache(tmp_path: Path) -> None:
    clear_memory_cache()
    emb = encode_au_texts((1, 2, 12), "all-MiniLM-L6-v2")
    assert emb.shape == (3, 384) and emb.dtype == torch.float32
    # Token-mean pooling, not the model's L2-normalised sentence vector.
    assert (emb.norm(dim=1) > 1.5).all()
    cos = torch.nn.functional.cosine_similarity
    # Two brow raisers read closer to each other than to the smile.
    assert cos(emb[0], emb[1], dim=0) > cos(emb[0], emb[2], dim=0)
    files = sorted((tmp_path / "cache" / "text_embeddings").rglob("*.npy"))
    assert len(files) == 3
    # Second call, fresh process state: it must read the disk cache, not re-encode. A marked
    # file proves it.
    clear_memory_cache()
    marked = cache_path("all-MiniLM-L6-v2", CATALOGUE[2].description)
    np.save(marked, np.full(384, 0.5, dtype=np.float32))
    again = encode_au_texts((1, 2), "all-MiniLM-L6-v2")
    assert torch.equal(again[0], emb[0])
    assert torch.equal(again[1], torch.full((384,), 0.5))
    clear_memory_cache()


@pytest.mark.parametrize("center", [True, False])
def test_text_centring_removes_what_all_descriptions_share(center: bool) -> None:
    model = build_model("sev_net_small", AUS8, encoder="hash", center_text=center).eval()
    with torch.no_grad():
        before = model.au_queries().clone()
        model.text_embeddings += 3.0  # the same shift for every AU
        after = model.au_queries()
    assert torch.allclose(before, after, atol=1e-5) is center
