"""Multi-label circle loss (paper 001 eq. 2) against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from components.models.lrp_arl_ff import multilabel_circle_loss



def test_worked_example_excludes_unknown_entry() -> None:
    # s = [2, -1, 0.5], y = [1, 0, -1]: Ω_neg = {-1}, Ω_pos = {2}, 0.5 is unknown.
    # log(1 + e^-1) + log(1 + e^-2) = 0.3132617 + 0.1269280 = 0.4401897
    s = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([[1.0, 0.0, -1.0]])
    assert multilabel_circle_loss(s, y).item() == pytest.approx(0.4401897, abs=1e-6)


def test_sums_over_several_positives_and_negatives() -> None:
    # s = [1, -2, 0.5, 3], y = [0, 0, 1, 1]:
    # log(1 + e^1 + e^-2) + log(1 + e^-0.5 + e^-3) = log 3.8536 + log 1.6563
    #                                              = 1.3490122 + 0.5045969 = 1.8536091
    s = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    y = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert multilabel_circle_loss(s, y).item() == pytest.approx(1.8536091, abs=1e-6)


def test_all_unknown_row_contributes_zero_and_leaves_the_mean() -> None:
    s = torch.tensor([[2.0, -1.0, 0.5], [5.0, 5.0, 5.0]])
    y = torch.tensor([[1.0, 0.0, -1.0], [-1.0, -1.0, -1.0]])
    assert multilabel_circle_loss(s, y).item() == pytest.approx(0.4401897, abs=1e-6)


def test_all_unknown_batch_is_zero_with_finite_gradient() -> None:
    s = torch.tensor([[3.0, -4.0]], requires_grad=True)
    loss = multilabel_circle_loss(s, torch.full((1, 2), -1.0))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(s.grad, torch.zeros(1, 2))


def test_large_logits_stay_finite() -> None:
    # log(1 + e^100) = 100 + log(1 + e^-100) ≈ 100, twice (a wrong negative and a wrong positive).
    s = torch.tensor([[100.0, -100.0]], requires_grad=True)
    loss = multilabel_circle_loss(s, torch.tensor([[0.0, 1.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(200.0, rel=1e-6)
    assert torch.isfinite(s.grad).all()


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        multilabel_circle_loss(torch.zeros(2, 3), torch.zeros(2, 4))
