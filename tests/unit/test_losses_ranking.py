"""Ranking hinge, σ = softplus(h) + ε and the sign-corrected misordering loss (paper 004 §3.1-3.2),
and masked BCE, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.losses import masked_bce, masked_bce_of_probs
from components.models.pairwise_rank.losses import misordering_loss, misordering_probability, ranking_hinge, sigma_from_raw



@pytest.mark.parametrize("s_i, s_j, r, expected", [
    (0.3, 0.1, 1.0, 0.8),    # 1 - (0.3 - 0.1)
    (0.3, 0.1, -1.0, 1.2),   # 1 + (0.3 - 0.1)
    (2.5, 1.0, 1.0, 0.0),    # ordered by 1.5 > m: max(0, -0.5)
    (1.1, 0.1, 1.0, 0.0),    # ordered by exactly m
])
def test_ranking_hinge_single_pairs(s_i: float, s_j: float, r: float, expected: float) -> None:
    loss = ranking_hinge(torch.tensor([s_i]), torch.tensor([s_j]), torch.tensor([r]), margin=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ranking_hinge_mean_skips_unordered_entries_and_has_hinge_gradient() -> None:
    s_i = torch.tensor([0.3, 0.3, 2.5, 5.0], requires_grad=True)
    s_j = torch.tensor([0.1, 0.1, 1.0, 0.0])
    r = torch.tensor([1.0, -1.0, 1.0, 0.0])       # the last pair has no order: left out
    loss = ranking_hinge(s_i, s_j, r)
    assert loss.item() == pytest.approx((0.8 + 1.2 + 0.0) / 3, abs=1e-6)
    loss.backward()
    # d/ds_i of max(0, 1 - r(s_i - s_j)) / 3 = -r/3 where active, 0 elsewhere.
    assert s_i.grad.tolist() == pytest.approx([-1 / 3, 1 / 3, 0.0, 0.0], abs=1e-6)


def test_ranking_hinge_without_ordered_pairs_is_zero_with_gradient_path() -> None:
    s = torch.tensor([0.5, 0.2], requires_grad=True)
    loss = ranking_hinge(s, s.detach(), torch.zeros(2))
    assert loss.item() == 0.0
    loss.backward()
    assert s.grad is not None


def test_sigma_is_softplus_plus_eps() -> None:
    h = torch.tensor([0.0, 2.0, -20.0])
    sigma = sigma_from_raw(h, eps=1e-3)
    # softplus(0) = ln 2 = 0.693147; softplus(2) = ln(1 + e^2) = ln 8.389056 = 2.126928;
    # softplus(-20) = ln(1 + 2.06e-9) ≈ 2.06e-9, so σ is the floor ε.
    assert sigma.tolist() == pytest.approx([0.6941472, 2.1279280, 0.0010000], abs=1e-6)
    with pytest.raises(ValueError, match="eps"):
        sigma_from_raw(h, eps=-1.0)


def test_misordering_loss_hand_values() -> None:
    # σ_i = σ_j = 0.25: √(2(0.0625 + 0.0625)) = √0.25 = 0.5.
    # pair 1: r=+1, ŷ_i - ŷ_j = 0.5: z = (1 - 0.5)/0.5 = 1,  ½(1 + erf 1)  = ½(1 + 0.8427008) = 0.9213504
    # pair 2: r=-1, same scores:     z = (1 + 0.5)/0.5 = 3,  ½(1 + erf 3)  = ½(1 + 0.9999779) = 0.9999890
    # pair 3: r=+1, ŷ_i - ŷ_j = 2:   z = (1 - 2)/0.5  = -2, ½(1 + erf -2) = ½(1 - 0.9953223) = 0.0023389
    y_i = torch.tensor([0.6, 0.6, 2.1])
    y_j = torch.tensor([0.1, 0.1, 0.1])
    s = torch.full((3,), 0.25)
    r = torch.tensor([1.0, -1.0, 1.0])
    per = misordering_probability(y_i, y_j, s, s, r)
    assert per.tolist() == pytest.approx([0.9213504, 0.9999890, 0.0023389], abs=1e-6)
    loss = misordering_loss(y_i, y_j, s, s, r)
    assert loss.item() == pytest.approx((0.9213504 + 0.9999890 + 0.0023389) / 3, abs=1e-6)  # 0.6412261


def test_misordering_loss_from_raw_h_values() -> None:
    # h = ln(e^0.25 - 1) = ln(0.2840254) = -1.2586915 gives softplus(h) = 0.25; with ε = 0 the
    # first pair above again: z = 1, loss 0.9213504. Unordered (r = 0) entries are left out.
    h = torch.tensor([-1.2586915, -1.2586915])
    sigma = sigma_from_raw(h, eps=0.0)
    loss = misordering_loss(torch.tensor([0.6, 9.0]), torch.tensor([0.1, 0.0]), sigma, sigma,
                            torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.9213504, abs=1e-5)


def test_misordering_loss_sign_lowers_sigma_of_well_ordered_pairs_only() -> None:
    # The paper's printed loss is 1 - ours (0.0786496 for z = 1); minimising it would raise σ on
    # well-ordered pairs. Ours: descent lowers σ where z < 0 and raises it where z > 0.
    sigma = torch.tensor([0.5, 0.5], requires_grad=True)
    y_i, y_j = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])   # ordered by 3, misordered by 3
    loss = misordering_loss(y_i, y_j, sigma, sigma.detach(), torch.tensor([1.0, 1.0]))
    loss.backward()
    assert sigma.grad[0] > 0      # gradient descent shrinks σ of the well-ordered pair
    assert sigma.grad[1] < 0      # and grows σ of the misordered pair


def test_misordering_loss_rejects_nonpositive_margin() -> None:
    one = torch.ones(1)
    with pytest.raises(ValueError, match="margin"):
        misordering_loss(one, one, one, one, one, margin=0.0)


def test_masked_bce_ignores_unknown_labels() -> None:
    # logit 0: BCE = ln 2 = 0.6931472 for label 1 and for label 0; the -1 entry (logit 5) is ignored.
    logits = torch.tensor([[0.0, 0.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0, -1.0]])
    assert masked_bce(logits, labels).item() == pytest.approx(0.6931472, abs=1e-6)


def test_masked_bce_on_soft_labels_masks_nan_and_minus_one() -> None:
    # Soft targets (a teacher's probabilities). (z 0, y 0.25): -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2
    # = 0.6931472; (z ln 3, σ 0.75, y 0.5): -(0.5 ln 0.75 + 0.5 ln 0.25) = 0.8369882. NaN and -1
    # cells are unknown. Mean of the two known: 0.7650677.
    logits = torch.tensor([[0.0, float(np.log(3.0))], [7.0, -3.0]], requires_grad=True)
    labels = torch.tensor([[0.25, 0.5], [float("nan"), -1.0]])
    loss = masked_bce(logits, labels)
    assert loss.item() == pytest.approx(0.7650677, abs=1e-6)
    loss.backward()
    # d/dz of the mean: (σ(z) - y) / 2 on known cells, 0 on unknown ones (no NaN leaks through).
    np.testing.assert_allclose(logits.grad.numpy(), [[0.125, 0.125], [0.0, 0.0]], atol=1e-6)


def test_masked_bce_of_probs_hand_values_and_clipping() -> None:
    # Known cells: (p 0.8, y 0) costs -ln 0.2 = 1.6094379, (p 0.1, y 0) -ln 0.9 = 0.1053605,
    # (p 0.5, y 1) ln 2 = 0.6931472; the unknown cell (p 0.99) is ignored. Mean of three: 0.8026485.
    probs = [[0.8, 0.1], [0.5, 0.99]]
    labels = [[0.0, 0.0], [1.0, -1.0]]
    assert masked_bce_of_probs(probs, labels) == pytest.approx(0.8026485, abs=1e-6)
    # A saturated wrong prediction is finite: -ln(1e-7) = 16.118096.
    assert masked_bce_of_probs([[1.0]], [[0.0]]) == pytest.approx(16.118096, abs=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        masked_bce_of_probs([[0.5, 0.5]], [[1.0]])
