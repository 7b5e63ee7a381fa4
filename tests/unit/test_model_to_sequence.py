"""To-Sequence family (papers 000, 002): stable-landmark affine correction, every fusion mode,
the appearance-only ablation, smoothing, and rebuilding from the constructor config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.au import DATASET_AUS
from components.models import build_model
from components.models.to_sequence import AffineCorrection, ToSequenceConfig, smooth_sequence, stable_landmark_set


AUS8 = DATASET_AUS["disfa"]
AUS12 = DATASET_AUS["bp4d"]
MOUTH = list(range(48, 68))
TINY = dict(image_size=32, conv_channels=(8, 8, 8), region_grid=3, feature_dim=16, dynamic_hidden=(16,),
            hidden=16, embedding_dim=8, classifier_hidden=8, tensor_dim=4)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _face(batch: int = 2) -> torch.Tensor:
    """Plausible 68-point layouts in a 112 px crop, each face slightly different."""
    g = torch.Generator().manual_seed(1)
    base = torch.rand(68, 2, generator=g) * 60 + 26
    base[36], base[45] = torch.tensor([35.0, 45.0]), torch.tensor([77.0, 45.0])
    return torch.stack([base + torch.randn(68, 2, generator=g) for _ in range(batch)])


def _batch(model, n: int = 3, unknown: bool = True) -> dict[str, torch.Tensor]:
    spec = model.input_spec()
    s = spec.image_size
    labels = torch.randint(0, 2, (n, model.num_aus)).float()
    if unknown:
        labels[0, 0] = -1.0
    lm = _face(n) * (s / 112)
    return {"image": torch.randn(n, 2, s, s), "landmarks": lm,
            "landmark_diff": torch.randn(n, len(spec.diff_steps) or 1, 68, 2), "labels": labels}


def test_stable_landmarks_leave_out_points_the_model_aus_move() -> None:
    assert stable_landmark_set(DATASET_AUS["synthetic"]) == (27, 28, 29, 30, 33, 36, 39, 42, 45)
    # AU9 (nose wrinkler) moves 27, 28, 29, 39 and 42 in the catalogue.
    assert stable_landmark_set(AUS8) == (30, 33, 36, 45)
    assert stable_landmark_set(AUS8, exclude_au_landmarks=False) == (27, 28, 29, 30, 33, 36, 39, 42, 45)
    with pytest.raises(ValueError, match="needs >= 3"):
        stable_landmark_set((9,), candidates=(27, 28, 29, 30))


@pytest.mark.parametrize("mode", ["learned", "least_squares"])
def test_affine_correction_keeps_mouth_motion_when_stable_points_only_translate(mode: str) -> None:
    stable = stable_landmark_set(DATASET_AUS["synthetic"])
    corr = AffineCorrection(stable, mode, hidden=8)
    if mode == "learned":   # arbitrary learned weights: the property must not depend on them
        torch.nn.init.normal_(corr.layer2.weight, std=1.0)
    lm = _face(2)
    au_motion = torch.zeros(2, 1, 68, 2)
    au_motion[:, 0, MOUTH] = torch.tensor([1.5, -2.0])       # lips move, e.g. AU12/AU25
    au_motion[1, 0, 54] = torch.tensor([3.0, -1.0])          # one corner pulled further
    shake = torch.tensor([[4.0, -3.0], [-2.5, 1.0]])[:, None, None, :]   # detection jitter
    out = corr(au_motion + shake, lm)
    assert torch.allclose(out[:, :, MOUTH], au_motion[:, :, MOUTH], atol=1e-4)
    assert torch.allclose(out[:, :, list(stable)], torch.zeros(2, 1, len(stable), 2), atol=1e-4)


def test_affine_correction_never_cancels_motion_off_the_stable_points() -> None:
    corr = AffineCorrection(stable_landmark_set(DATASET_AUS["synthetic"]), "learned")
    torch.nn.init.normal_(corr.layer2.weight, std=1.0)
    diff = torch.zeros(1, 1, 68, 2)
    diff[0, 0, MOUTH, 1] = 2.0            # only the mouth moves: nothing to correct
    assert torch.equal(corr(diff, _face(1)), diff)


def test_least_squares_correction_removes_a_rotation_of_the_whole_face() -> None:
    stable = stable_landmark_set(DATASET_AUS["synthetic"])
    lm = _face(1)
    a = math.radians(4.0)
    rot = 1.03 * torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    moved = lm @ rot.T + torch.tensor([2.0, -1.0])            # similarity motion of the head
    au_motion = torch.zeros(1, 1, 68, 2)
    au_motion[0, 0, MOUTH, 1] = 2.5
    diff = (moved - lm)[:, None] + au_motion
    out = AffineCorrection(stable, "least_squares")(diff, lm)
    assert torch.allclose(out[:, :, MOUTH], au_motion[:, :, MOUTH], atol=1e-3)
    assert torch.equal(AffineCorrection(stable, "none")(diff, lm), diff)


@pytest.mark.parametrize("aus", [AUS8, AUS12], ids=["8AU", "12AU"])
@pytest.mark.parametrize("fusion", ["add", "concat", "tensor"])
def test_forward_backward_every_fusion(aus, fusion: str) -> None:
    model = build_model("to_sequence_small", aus, fusion=fusion, **TINY)
    batch = _batch(model)
    out = model(batch)
    assert out["logits"].shape == (3, len(aus))
    parts = model.loss(out, batch)
    parts["loss"].backward()
    assert torch.isfinite(parts["loss"])
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.au_table.weight.grad.abs().sum() > 0


def test_unknown_labels_do_not_move_the_loss() -> None:
    model = build_model("to_sequence_small", AUS8, **TINY).eval()
    batch = _batch(model)
    out = model(batch)
    base = model.loss(out, batch)["loss"].item()
    out["logits"] = out["logits"].clone()
    out["logits"][0, 0] += 7.0            # labels[0, 0] is -1
    assert model.loss(out, batch)["loss"].item() == pytest.approx(base, abs=1e-7)


def test_paper_sizes_and_input_declaration() -> None:
    model = build_model("to_sequence", DATASET_AUS["affwild2-2020"])
    assert tuple(model.au_table.weight.shape) == (8, 64)         # paper 002: the 8 x 64 AU table
    spec = model.input_spec()
    assert (spec.image_size, spec.channels, spec.mask, spec.diff_steps) == (112, "gray+sobel", True, (1,))
    # 4 blocks of 3x3 conv + 2x2 pool: 1 → 3 → 4 → 8 → 10 → 18 → 22 → 38 → 46 px of a 112 px face.
    assert model.receptive_field() == 46
    assert build_model("to_sequence_appearance_only", AUS8).input_spec().diff_steps == ()


def _informative_batch(n: int, k: int, s: int = 32) -> dict[str, torch.Tensor]:
    """Images where AU a, when on, brightens its own 8x8 cell of a 4x4 grid, plus noise."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 2, (n, k), generator=g).float()
    img = 0.3 * torch.randn(n, 2, s, s, generator=g)
    for a in range(k):
        r, c = divmod(a, 4)
        img[:, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += labels[:, a, None, None, None]
    return {"image": img, "labels": labels}


def test_appearance_only_ablation_builds_and_learns_a_fixed_batch() -> None:
    model = build_model("to_sequence_appearance_only", AUS8, image_size=32, conv_channels=(16, 16, 16),
                        region_grid=4, feature_dim=32, hidden=32, embedding_dim=16, classifier_hidden=16)
    assert not hasattr(model, "dynamic_net")
    batch = _informative_batch(16, 8)       # image only: no landmarks needed
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        parts = model.loss(model(batch), batch)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(parts["loss"].item())
    # chance is ln 2 = 0.693; measured: 0.707 → 0.473 after 40 steps
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


@pytest.mark.parametrize("overrides", [dict(sequence_decoder=False), dict(region_gru=False),
                                       dict(affine="none"), dict(intensity_head=True)])
def test_other_ablation_switches_build_and_run(overrides: dict) -> None:
    model = build_model("to_sequence_small", AUS8, **TINY, **overrides)
    batch = _batch(model)
    batch["intensity"] = torch.full_like(batch["labels"], 2.0)
    out = model(batch)
    assert out["logits"].shape == (3, 8)
    if overrides.get("intensity_head"):
        assert ((out["intensity"] >= 0) & (out["intensity"] <= 5)).all()
    model.loss(out, batch)["loss"].backward()


def test_dynamic_model_needs_landmark_diffs_and_ignores_invalid_steps() -> None:
    model = build_model("to_sequence_small", AUS8, **TINY).eval()
    batch = _batch(model)
    with pytest.raises(KeyError, match="dynamic=False"):
        model({"image": batch["image"], "labels": batch["labels"]})
    with pytest.raises(ValueError, match="landmark_diff"):
        model({**batch, "landmark_diff": torch.zeros(3, 2, 68, 2)})
    invalid = model({**batch, "diff_valid": torch.zeros(3, 1, dtype=torch.bool)})
    zero = model({**batch, "landmark_diff": torch.zeros_like(batch["landmark_diff"])})
    assert torch.allclose(invalid["logits"], zero["logits"])


def test_rebuild_from_constructor_kwargs_loads_strictly() -> None:
    model = build_model("to_sequence_small", AUS8, fusion="tensor", diff_steps=(1, 3))
    kwargs = model.constructor_kwargs()
    assert kwargs["diff_steps"] == [1, 3]
    again = build_model("to_sequence_small", AUS8, **kwargs)
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.config == model.config
    assert again.input_spec().diff_steps == (1, 3)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="fusion"):
        ToSequenceConfig(fusion="sum")
    with pytest.raises(ValueError, match="too small"):
        ToSequenceConfig(image_size=16, conv_channels=(8, 8, 8, 8, 8))


def test_smooth_sequence_literal_examples() -> None:
    probs = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # window 3, edges repeated: col 0 [0,0,1,0,0] → [0, 1/3, 1/3, 1/3, 0]; col 1 [1,0,0,0,0] → [2/3, 1/3, 0, 0, 0]
    expected = np.array([[0.0, 2 / 3], [1 / 3, 1 / 3], [1 / 3, 0.0], [1 / 3, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(smooth_sequence(probs, 3), expected, atol=1e-12)
    # median of 3: a one-frame blip disappears, a two-frame run stays: [0,1,0,0,1,1] → [0,0,0,0,1,1]
    blip = np.array([0.0, 1.0, 0.0, 0.0, 1.0, 1.0])[:, None]
    np.testing.assert_array_equal(smooth_sequence(blip, 3, "median")[:, 0], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(smooth_sequence(probs, 1), probs)
    with pytest.raises(ValueError, match="odd"):
        smooth_sequence(probs, 4)
    with pytest.raises(ValueError, match=r"\(T, n_AU\)"):
        smooth_sequence(probs[:, 0], 3)
