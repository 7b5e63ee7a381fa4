"""Pairwise-rank family (paper 004): pair building, window statistics G, stage freezing, the
three-step schedule, and learning on a toy video set (ranking, σ on occluded frames, mapping)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from components.models import build_model, constructor_record, rebuild_model
from components.models.pairwise_rank import (PairwiseRankConfig, PairwiseRankModel, RunningStandardize,
                                             pair_indices, ranking_hinge, subject_groups, window_statistics)
from components.training import fit_stages
from components.video_key import subject_index


AUS = (1, 12)
TINY = dict(backbone="resnet18", image_size=16, mapping_hidden=(16,), mapping_dropout=0.0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def toy_videos(n_videos: int = 2, n_frames: int = 16, seed: int = 0, occlude_every: int = 0
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """16 px frames: AU1 on brightens the top-left quarter, AU12 on the bottom-right one.
    Every ``occlude_every``-th frame is covered by a dark box (the label stays, the evidence goes)."""
    g = torch.Generator().manual_seed(seed)
    n = n_videos * n_frames
    labels = torch.randint(0, 2, (n, 2), generator=g).float()
    img = 0.2 * torch.randn(n, 3, 16, 16, generator=g)
    img[:, :, :8, :8] += 1.5 * labels[:, 0, None, None, None]
    img[:, :, 8:, 8:] += 1.5 * labels[:, 1, None, None, None]
    occluded = torch.zeros(n, dtype=torch.bool)
    if occlude_every:
        occluded[::occlude_every] = True
        img[occluded] = -1.0 + 0.05 * torch.randn(int(occluded.sum()), 3, 16, 16, generator=g)
    batch = {"image": img, "labels": labels, "video_index": torch.arange(n_videos).repeat_interleave(n_frames),
             "frame_index": torch.arange(n_frames).repeat(n_videos)}
    return batch, occluded


def heldout_hinge(model, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        y = model.rank_net(batch["image"])
    ii, jj, r = pair_indices(batch["video_index"], batch["labels"])
    return float(ranking_hinge(y[ii], y[jj], r))


def test_pair_indices_literal() -> None:
    video = torch.tensor([0, 0, 0, 1])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, -1.0], [0.0, 1.0]])
    ii, jj, r = pair_indices(video, labels)
    # (0,1): AU-a 1>0 → +1, AU-b equal → 0.  (0,2): equal / unknown → dropped.
    # (1,2): AU-a 0<1 → -1, AU-b unknown → 0.  Frame 3 is alone in its video.
    assert ii.tolist() == [0, 1] and jj.tolist() == [1, 2]
    assert r.tolist() == [[1.0, 0.0], [-1.0, 0.0]]
    ii2, jj2, r2 = pair_indices(["a", "a", "a", "b"], labels)       # string ids as BatchBuilder passes
    assert ii2.tolist() == [0, 1] and torch.equal(r2, r)
    sub = pair_indices(torch.zeros(6), torch.arange(6.0)[:, None], max_pairs=4,
                       generator=torch.Generator().manual_seed(0))
    assert len(sub[0]) == 4 and (sub[2] == -1).all()        # y_i < y_j for every i < j


def test_window_statistics_literal() -> None:
    y = torch.tensor([[[1.0], [3.0], [5.0]]])           # one frame, 3 context frames, 1 AU
    sigma = torch.tensor([[[1.0], [0.5], [9.0]]])
    mask = torch.tensor([[True, True, False]])          # the 5.0 frame is out of the window
    g = window_statistics(y, sigma, mask)[0, 0]
    # mean 2, std 1, min 1, max 3; weights σ⁻² = 1 and 4: (1·1 + 4·3)/5 = 2.6; σ mean 0.75, std 0.25
    assert g.tolist() == pytest.approx([2.0, 1.0, 1.0, 3.0, 2.6, 0.75, 0.25], abs=1e-5)
    with pytest.raises(ValueError, match="no context"):
        window_statistics(y, sigma, torch.zeros(1, 3, dtype=torch.bool))


def test_statistics_use_only_the_same_video_within_the_window() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY, window_frames=4).eval()
    batch, _ = toy_videos(2, 6)
    with torch.no_grad():
        base = model(batch)["logits"]
        other = dict(batch, image=batch["image"].clone())
        other["image"][6:] = torch.randn(6, 3, 16, 16)         # change every frame of video 1
        changed = model(other)["logits"]
        assert torch.allclose(base[:6], changed[:6]) and not torch.allclose(base[6:], changed[6:])
        far = dict(batch, image=batch["image"].clone())
        far["image"][5] = torch.randn(3, 16, 16)               # frame 5 of video 0: > 2 frames from 0..2
        moved = model(far)["logits"]
        assert torch.allclose(base[:3], moved[:3]) and not torch.allclose(base[3:6], moved[3:6])


def test_window_key_and_video_ids_give_the_same_statistics() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY, whole_video=True).eval()
    batch, _ = toy_videos(1, 3)
    windowed = {"image": batch["image"], "window": batch["image"][None].expand(3, -1, -1, -1, -1)}
    with torch.no_grad():
        assert torch.allclose(model(batch)["logits"], model(windowed)["logits"], atol=1e-5)


def test_context_fallback_without_video_ids() -> None:
    batch, _ = toy_videos(1, 4)
    del batch["video_index"], batch["frame_index"]
    alone = build_model("pairwise_rank_small", AUS, **TINY, context_fallback="frame").eval()
    together = build_model("pairwise_rank_small", AUS, **TINY, context_fallback="batch").eval()
    together.load_state_dict(alone.state_dict())
    with torch.no_grad():
        y, s = alone.score(batch["image"])
        f_alone = alone.mapping_features(batch, y, s).view(4, 2, 10)
        f_together = together.mapping_features(batch, y, s).view(4, 2, 10)
    assert torch.allclose(f_alone[..., 3], torch.zeros(4, 2), atol=1e-5)      # no spread alone
    assert torch.allclose(f_together[..., 2], y.mean(0).expand(4, 2), atol=1e-5)   # batch mean


def test_relative_position_literal() -> None:
    """(ŷ − min) / (max − min + m) with m = 1 over the video: ŷ 0, 1, 3 → 0, 1/4, 3/4; a flat
    AU (ŷ 2, 2, 2) stays at 0 instead of being stretched over [0, 1]."""
    model = build_model("pairwise_rank_small", AUS, **TINY).eval()
    batch, _ = toy_videos(1, 3)
    y = torch.tensor([[0.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    feats = model.mapping_features(batch, y, torch.ones(3, 2)).view(3, 2, 10)
    assert torch.allclose(feats[:, 0, 9], torch.tensor([0.0, 0.25, 0.75]))
    assert torch.allclose(feats[:, 1, 9], torch.zeros(3))


def test_relative_mapping_inputs_ignore_the_persons_level() -> None:
    """mapping_inputs='relative': adding a constant to one video's ŷ (another person's neutral
    level) leaves every mapping input unchanged; the absolute inputs do change."""
    batch, _ = toy_videos(2, 4)
    y = torch.tensor([[0.0, 2.0], [1.0, 2.5], [3.0, 2.0], [0.5, 1.0]]).repeat(2, 1)
    shifted = y.clone()
    shifted[4:] += torch.tensor([5.0, -3.0])       # the second video's person sits higher / lower
    sigma = torch.full((8, 2), 0.5)
    for inputs, same in (("relative", True), ("absolute", False)):
        model = build_model("pairwise_rank_small", AUS, **TINY, mapping_inputs=inputs).eval()
        a, b = model.mapping_features(batch, y, sigma), model.mapping_features(batch, shifted, sigma)
        assert torch.allclose(a, b, atol=1e-5) is same, inputs
    with pytest.raises(ValueError, match="mapping_inputs"):
        PairwiseRankConfig(mapping_inputs="raw")


@pytest.mark.parametrize("stage", ["rank", "uncertainty"])
def test_batch_scored_pairs_equal_the_two_branch_siamese_loss(stage: str) -> None:
    """``loss_pairs`` scores each frame once and indexes the scores; with BatchNorm statistics
    fixed (eval mode) that is the loss of feeding the pairs' images through the two branches."""
    torch.manual_seed(0)
    model = build_model("pairwise_rank_small", AUS, **TINY).eval()
    batch, _ = toy_videos(1, 6)
    ii, jj, r = pair_indices(batch["video_index"], batch["labels"])
    assert len(ii) > 0
    once = model.loss_pairs(stage, batch, ii, jj, r)
    two = (model.loss_rank if stage == "rank" else model.loss_uncertainty)(
        {"image": batch["image"][ii]}, {"image": batch["image"][jj]}, r)
    assert torch.allclose(once["loss"], two["loss"], atol=1e-6)
    with pytest.raises(ValueError, match="pair indices"):
        model.loss_pairs(stage, batch, ii, jj[:-1], r)


@pytest.mark.parametrize("stage, trained", [("rank", "rank_net"), ("uncertainty", "uncertainty_net"),
                                            ("mapping", "mapping")])
def test_stages_freeze_the_right_parameters(stage: str, trained: str) -> None:
    torch.manual_seed(0)
    model = build_model("pairwise_rank_small", AUS, **TINY)
    model.set_stage(stage)
    model.train()
    batch, _ = toy_videos(1, 6)
    model.stage_loss(stage, batch)["loss"].backward()
    for name in ("rank_net", "uncertainty_net", "mapping"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        if name == trained:
            assert all(p.requires_grad for p in getattr(model, name).parameters())
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads), f"{name} got gradients in stage {stage}"
            assert not getattr(model, name).training          # frozen BatchNorm statistics
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in getattr(model, trained).parameters()}
    model.set_stage(None)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="stage"):
        model.set_stage("finetune")


def test_forward_outputs_and_masked_mapping_loss() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY, intensity_head=True).eval()
    batch, _ = toy_videos(1, 4)
    out = model(batch)
    assert out["logits"].shape == out["pseudo_intensity"].shape == out["sigma"].shape == (4, 2)
    assert (out["sigma"] > 0).all() and ((out["intensity"] >= 0) & (out["intensity"] <= 5)).all()
    # sigmoid(0) = 0.5: |0.5 - 1| and |0.5 - 0| are 0.5 each; the -1 label (logit 9) is ignored.
    parts = model.loss({"logits": torch.tensor([[0.0, 0.0, 9.0]])}, {"labels": torch.tensor([[1.0, 0.0, -1.0]])})
    assert parts["loss"].item() == pytest.approx(0.5, abs=1e-6)


def test_uncertainty_off_ablation() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY, uncertainty=False)
    assert model.stages() == ("rank", "mapping") and model.uncertainty_net is None
    batch, _ = toy_videos(1, 6)
    hist = fit_stages(model, lambda stage: [batch], 1, lambda p: torch.optim.SGD(p, lr=1e-3))
    assert set(hist) == {"rank", "mapping"}
    out = model(batch)
    assert "sigma" not in out and torch.isfinite(out["logits"]).all()
    with pytest.raises(ValueError, match="stage"):
        model.set_stage("uncertainty")



def test_fit_stages_runs_each_step_on_its_own_schedule_and_trains_after_an_evaluation() -> None:
    """The Ray Train loop's per-step cosine schedule through ``fit_stages``: a step of 2 epochs
    runs its first at the peak rate and its second at half of it (cos(π/2)); an ``on_epoch`` that
    puts the model in eval mode (a validation pass) does not leave the next epoch there."""
    from components.training import OptimConfig, build_scheduler

    model = build_model("pairwise_rank_small", AUS, **TINY)
    batch, _ = toy_videos(1, 6)
    rates: list[tuple[str, float, bool]] = []
    epochs: list[tuple[str, int]] = []

    def batches(stage: str):
        rates.append((stage, opt[-1].param_groups[0]["lr"], model.training))
        return [batch]

    opt: list[torch.optim.Optimizer] = []

    def optimizer(params):
        opt.append(torch.optim.SGD(params, lr=0.1))
        return opt[-1]

    def on_epoch(stage: str, epoch: int, loss: float) -> None:
        assert np.isfinite(loss)
        epochs.append((stage, epoch))
        model.eval()

    fit_stages(model, batches, {"rank": 2, "uncertainty": 1, "mapping": 2}, optimizer,
               scheduler_factory=lambda o, n: build_scheduler(o, OptimConfig(schedule="cosine"), n),
               on_epoch=on_epoch)
    assert [(s, round(lr, 6), t) for s, lr, t in rates] == [
        ("rank", 0.1, True), ("rank", 0.05, True), ("uncertainty", 0.1, True),
        ("mapping", 0.1, True), ("mapping", 0.05, True)]
    assert epochs == [("rank", 0), ("rank", 1), ("uncertainty", 0), ("mapping", 0), ("mapping", 1)]

def _flat_scores(aus: tuple[int, ...], **kwargs) -> "PairwiseRankModel":
    """ŷ = 0 for every frame and AU; raw h = (2, 0, -1): σ = softplus(raw) + 1e-3."""
    model = build_model("pairwise_rank_small", aus, **TINY, **kwargs).eval()
    with torch.no_grad():
        model.rank_net.head.weight.zero_()
        model.rank_net.head.bias.zero_()
        model.uncertainty_net.head.weight.zero_()
        model.uncertainty_net.head.bias.copy_(torch.tensor([2.0, 0.0, -1.0]))
    return model


def test_uncertainty_for_chosen_aus_only_by_hand() -> None:
    # §4.3 P2. One video of 4 frames; ordered pairs: AU1 [1,0,0,0] → 3, AU2 [1,1,0,0] → 4,
    # AU4 [0,0,0,1] → 3. With ŷ_i = ŷ_j the misordering probability of an entry is
    # ½(1 + erf(1 / √(2·2σ²))) = ½(1 + erf(1/(2σ))):
    #   AU1 σ = softplus(2) + .001 = 2.1279280 → .6301680
    #   AU2 σ = softplus(0) + .001 = 0.6941472 → .8458201
    #   AU4 σ = softplus(-1) + .001 = 0.3142617 → .9877773
    # P1 (all AUs): (3·.6301680 + 4·.8458201 + 3·.9877773) / 10 = .8237116; P2 with AU2 only: .8458201.
    aus = (1, 2, 4)
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(4, 3, 16, 16, generator=g), "labels": labels,
             "video_index": torch.zeros(4, dtype=torch.long)}
    every = _flat_scores(aus)
    assert every.stage_loss("uncertainty", batch)["loss"].item() == pytest.approx(0.8237116, abs=1e-6)
    model = _flat_scores(aus, uncertainty_aus=[2])
    assert model.config.uncertainty_aus == (2,)
    model.set_stage("uncertainty")
    parts = model.stage_loss("uncertainty", batch)
    assert parts["loss"].item() == pytest.approx(0.8458201, abs=1e-6)
    assert parts["sigma_mean"].item() == pytest.approx(0.6941472, abs=1e-6)
    parts["loss"].backward()
    grad = model.uncertainty_net.head.bias.grad
    assert grad[1] != 0 and grad[0] == 0 and grad[2] == 0         # h learns for AU2 only
    # At inference AU1 and AU4 have σ = 1, so G's σ⁻²-weighted mean of ŷ is the plain mean.
    model = build_model("pairwise_rank_small", aus, **TINY, uncertainty_aus=(2,)).eval()
    with torch.no_grad():
        out = model(batch)
        y, sigma = model.score(batch["image"])
        feats = model.mapping_features(batch, y, sigma).view(4, 3, 10)
    assert torch.equal(out["sigma"][:, [0, 2]], torch.ones(4, 2))
    assert (out["sigma"][:, 1] != 1).all()
    torch.testing.assert_close(feats[:, [0, 2], 6], feats[:, [0, 2], 2])    # weighted mean = mean
    assert not torch.allclose(feats[:, 1, 6], feats[:, 1, 2])


@pytest.mark.parametrize("kwargs, message", [
    ({"uncertainty_aus": (1, 9)}, r"uncertainty_aus holds AU9, which is not one of this model's AUs \[1, 12\]"),
    ({"uncertainty_aus": (12,), "uncertainty": False}, "needs uncertainty=True"),
    ({"uncertainty_aus": (12, 12)}, "lists an AU twice")])
def test_bad_uncertainty_aus_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("pairwise_rank_small", AUS, **TINY, **kwargs)


def test_subject_groups_are_a_fixed_function_of_the_subject() -> None:
    # CRC32('/S1') and CRC32('/S2') are even, CRC32('/S4') odd; with a dataset the key is 'ds/subject'.
    assert subject_groups({"subject": np.array(["S1", "S4", "S2", "S4"])}, 2).tolist() == [0, 1, 0, 1]
    assert subject_groups({"subject": ["S1", "S2", "S3"]}, 3).tolist() == [0, 1, 2]
    assert subject_groups({"subject": ["S1"], "dataset": ["disfa"]}, 2).tolist() == [
        zlib.crc32(b"disfa/S1") % 2]
    # Training batches carry numbers only: BatchBuilder's subject_index gives the same groups.
    rows = {"dataset": np.array(["disfa", "", "bp4d"]), "subject": np.array(["S1", "S4", "S2"])}
    assert subject_groups({"subject_index": torch.as_tensor(subject_index(rows))}, 3).tolist() \
        == subject_groups(rows, 3).tolist()
    with pytest.raises(KeyError, match="needs batch\\['subject_index'\\] or batch\\['subject'\\]"):
        subject_groups({"video": ["v"]}, 2)


def _crossfit_videos() -> dict[str, torch.Tensor]:
    """Video 0 of subject S1 (group 0 of 2), video 1 of subject S4 (group 1), 6 frames each."""
    batch, _ = toy_videos(2, 6)
    return dict(batch, subject=np.array(["S1"] * 6 + ["S4"] * 6))


@pytest.mark.parametrize("stage", ["rank", "uncertainty"])
def test_crossfit_fold_networks_learn_on_the_other_groups_pairs(stage: str) -> None:
    torch.manual_seed(0)
    model = build_model("pairwise_rank_small", AUS, **TINY, mapping_crossfit=2).eval()
    assert len(model.fold_rank_nets) == len(model.fold_uncertainty_nets) == 2
    batch = _crossfit_videos()
    parts = model.stage_loss(stage, batch)
    # Each fold copy's loss is the plain loss of its networks on the other group's video alone.
    expected = []
    for g, rows in ((0, slice(6, 12)), (1, slice(0, 6))):
        sub = {k: v[rows] for k, v in batch.items()}
        si, sj, sr = pair_indices(sub["video_index"], sub["labels"])
        y, sigma = model._pair_scores(sub["image"], stage, fold=g)
        expected.append(model._pair_loss(stage, y[si], y[sj], None if sigma is None else sigma[si],
                                         None if sigma is None else sigma[sj], sr)["loss"])
    main = "rank_hinge" if stage == "rank" else "misordering"
    assert parts["loss"].item() == pytest.approx(parts[main].item() + sum(e.item() for e in expected), abs=1e-5)
    assert parts["crossfit_loss"].item() == pytest.approx((expected[0].item() + expected[1].item()) / 2, abs=1e-5)
    # Frames of group 0 only: fold 0 gets no gradient (it never learns from S1), fold 1 does.
    model.set_stage(stage)
    only_s1 = {k: v[:6] for k, v in batch.items()}
    model.stage_loss(stage, only_s1)["loss"].backward()
    nets = model.fold_rank_nets if stage == "rank" else model.fold_uncertainty_nets
    assert all(p.grad is None for p in nets[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets[1].parameters())
    assert all(p.grad is None for p in model.mapping.parameters())


def test_crossfit_mapping_step_reads_out_of_fold_scores_and_inference_the_full_networks() -> None:
    torch.manual_seed(0)
    model = build_model("pairwise_rank_small", AUS, **TINY, mapping_crossfit=2)
    batch = _crossfit_videos()
    model.set_stage("mapping")
    model.train()
    out = model(batch)
    with torch.no_grad():
        y_s1 = model.fold_rank_nets[0](batch["image"][:6])      # frozen folds: eval mode
        y_s4 = model.fold_rank_nets[1](batch["image"][6:])
        y_full = model.rank_net(batch["image"])
    torch.testing.assert_close(out["pseudo_intensity"], torch.cat([y_s1, y_s4]))
    assert torch.isfinite(model.loss(out, batch)["loss"])
    model.eval()
    eval_batch = {k: v for k, v in batch.items() if k != "subject"}    # inference needs no subject
    torch.testing.assert_close(model(eval_batch)["pseudo_intensity"], y_full)
    # The whole schedule runs through fit_stages, and the checkpoint rebuilds with its fold copies.
    hist = fit_stages(model, lambda stage: [batch], 1, lambda p: torch.optim.SGD(p, lr=1e-3))
    assert set(hist) == {"rank", "uncertainty", "mapping"} and all(math.isfinite(v[0]) for v in hist.values())
    again = build_model("pairwise_rank_small", AUS, **model.constructor_kwargs())
    again.load_state_dict(model.state_dict(), strict=True)
    model.set_stage("rank")
    with pytest.raises(KeyError, match="subject"):
        model.stage_loss("rank", eval_batch)


@pytest.mark.parametrize("k", [1, -2])
def test_bad_crossfit_is_rejected(k: int) -> None:
    with pytest.raises(ValueError, match=f"mapping_crossfit must be 0 .* got {k}"):
        PairwiseRankConfig(mapping_crossfit=k)


def test_running_standardize_uses_every_training_row_not_the_batch() -> None:
    norm = RunningStandardize(2, var_floor=0.1)
    norm.eval()
    x = torch.tensor([[7.0, -1.0]])
    assert torch.equal(norm(x), x)                      # no statistics yet: identity
    norm.train()
    norm(torch.tensor([[1.0, 10.0], [3.0, 10.0]]))      # one video: column 2 constant
    norm(torch.tensor([[5.0, 40.0]]))
    # Over the three rows: column 1 mean 3, variance (4 + 0 + 4) / 3 = 8/3; column 2 mean 20,
    # variance (100 + 100 + 400) / 3 = 200.
    assert norm.count.item() == 3
    assert norm.mean.tolist() == pytest.approx([3.0, 20.0])
    assert (norm.m2 / norm.count).tolist() == pytest.approx([8 / 3, 200.0])
    norm.eval()
    out = norm(torch.tensor([[5.0, 10.0], [3.0, 20.0]]))
    assert out[0].tolist() == pytest.approx([2 / math.sqrt(8 / 3 + 0.1), -10 / math.sqrt(200 + 0.1)])
    assert out[1].tolist() == pytest.approx([0.0, 0.0])
    # A row's output does not depend on the rows beside it (BatchNorm in training mode's would).
    assert torch.allclose(norm(torch.tensor([[5.0, 10.0]])), out[:1])


def test_fit_stages_rejects_bad_input() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY)
    batch, _ = toy_videos(1, 4)
    with pytest.raises(ValueError, match="unknown stage"):
        fit_stages(model, lambda stage: [batch], {"rnak": 1}, lambda p: torch.optim.SGD(p, lr=1e-3))
    with pytest.raises(KeyError, match="video"):
        model.stage_loss("rank", {"image": batch["image"], "labels": batch["labels"]})
    with pytest.raises(KeyError, match="intensity"):
        build_model("pairwise_rank_small", AUS, **TINY, rank_target="intensity").stage_loss("rank", batch)
    # A one-frame batch (the tail of a video cut into batches) gives G no context: skipped;
    # two frames train.
    model.set_stage("mapping")
    model.train()
    assert model.stage_loss("mapping", {k: v[:1] for k, v in batch.items()}) is None
    assert torch.isfinite(model.stage_loss("mapping", {k: v[:2] for k, v in batch.items()})["loss"])


def test_rebuild_and_paper_declaration() -> None:
    model = build_model("pairwise_rank_small", AUS, **TINY, uncertainty_backbone="shared")
    again = build_model("pairwise_rank_small", AUS, **model.constructor_kwargs())
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.config == model.config
    paper = PairwiseRankConfig()
    assert (paper.backbone, paper.image_size, paper.margin) == ("vgg16", 224, 1.0)
    spec = build_model("pairwise_rank_small", AUS).input_spec()
    assert (spec.image_size, spec.channels, spec.window) == (112, "rgb", 8) and spec.needs_video
    with pytest.raises(ValueError, match="backbone"):
        PairwiseRankConfig(backbone="vgg19")


def test_pretrained_weights_start_f_and_h_and_the_record_needs_no_file(tmp_path) -> None:
    import torchvision

    weights = tmp_path / "resnet18.pth"
    donor = torchvision.models.resnet18(weights=None)
    torch.save(donor.state_dict(), weights)
    model = build_model("pairwise_rank_small", AUS, **TINY, pretrained=str(weights))
    assert torch.equal(model.rank_net.features[0].weight, donor.conv1.weight)
    assert torch.equal(model.uncertainty_net.features[0].weight, donor.conv1.weight)
    record = constructor_record(model)
    assert record["pretrained"] == "resnet18.pth" and str(tmp_path) not in repr(record)
    weights.unlink()
    rebuild_model("pairwise_rank_small", AUS, record["kwargs"]).load_state_dict(model.state_dict(), strict=True)


@pytest.fixture(scope="module")
def trained() -> dict:
    """One three-step run on a toy set with occluded frames (5-10 s on one CPU thread)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("pairwise_rank_small", AUS, **TINY, uncertainty_backbone="shared")
    train, _ = toy_videos(occlude_every=4)
    test, test_occluded = toy_videos(seed=1, occlude_every=3)
    before = heldout_hinge(model, test)

    def optimizer(params):
        return torch.optim.Adam(params, lr=1e-2 if model.stage == "mapping" else 1e-3)

    # Every ordered pair of the batch (each frame is scored once, so pairs cost no forward pass).
    history = fit_stages(model, lambda stage: [train], {"rank": 10, "uncertainty": 15, "mapping": 40},
                           optimizer)
    return {"model": model, "test": test, "occluded": test_occluded, "before": before, "history": history}


def test_ranking_learns_on_heldout_videos(trained: dict) -> None:
    assert set(trained["history"]) == {"rank", "uncertainty", "mapping"}
    assert all(math.isfinite(v) for h in trained["history"].values() for v in h)
    # measured: held-out hinge 0.96 before, 0.37 after 10 steps (0.34-0.39 over seeds 0-3)
    assert heldout_hinge(trained["model"], trained["test"]) < 0.6 * trained["before"]


def test_uncertainty_is_higher_on_occluded_frames(trained: dict) -> None:
    model, test, occ = trained["model"], trained["test"], trained["occluded"]
    with torch.no_grad():
        _, sigma = model.score(test["image"])
    # measured: mean σ ratio occluded / clear 2.95 (1.6-2.95 over seeds 0-3)
    assert sigma[occ].mean() > 1.5 * sigma[~occ].mean()


def test_mapping_learns_occurrence_on_clear_heldout_frames(trained: dict) -> None:
    model, test, occ = trained["model"], trained["test"], trained["occluded"]
    hist = trained["history"]["mapping"]
    assert hist[-1] < 0.6 * hist[0]
    with torch.no_grad():
        pred = (model(test)["logits"] > 0).float()
    accuracy = (pred == test["labels"])[~occ].float().mean().item()
    base_rate = test["labels"][~occ].mean(0)
    trivial = torch.maximum(base_rate, 1 - base_rate).mean().item()    # best constant answer
    assert accuracy > trivial + 0.1      # measured: 0.83 against 0.52 (0.79-0.88 over seeds 0-3)
