"""Pairwise ranking losses of the pairwise-rank family (paper 004, Saito et al., ABAW 2021).

Scores are per pair and per AU: ``s_i, s_j, r`` broadcast to the same shape (P, n_AU), with
r_ij in {+1, -1} the sign of y_i - y_j (paper 004 §3.1 eq. 1) and r_ij = 0 where the pair has no
order for that AU (equal or unknown labels). Entries with r = 0 never contribute, the same
convention as label -1 in ``components.losses``. The pairwise-rank family's own losses.

Sign correction (docs/models.md lists it): paper 004 §3.2 prints the uncertainty loss as
``1 - ½{1 + erf((m - r(ŷ_i - ŷ_j)) / √(2(h_i² + h_j²)))}``. With D ~ N(r(ŷ_i - ŷ_j), σ_i² + σ_j²)
the noisy ordered difference, ½{1 + erf(·)} = P(D < m) is the probability that the pair is
*misordered* (falls short of the margin), so the printed expression is the probability of a
correct order; minimising it would push σ up on well-ordered pairs and down on misordered ones.
The text states the intent, "the probability of misordering", so ``misordering_loss``
minimises ½{1 + erf(·)} itself, with σ = softplus(h) + ε so that σ > 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ranking_hinge", "sigma_from_raw", "misordering_probability", "misordering_loss"]


def _masked_mean(per: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    mask = (r != 0).to(per.dtype)
    return (per * mask).sum() / mask.sum().clamp(min=1.0)


def ranking_hinge(s_i: torch.Tensor, s_j: torch.Tensor, r: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Ranking error loss (paper 004 §3.1): mean over ordered entries of max(0, m - r(s_i - s_j)).

    ``s_i``, ``s_j`` pseudo-intensities f(x_i), f(x_j); ``r`` in {+1, -1, 0} (0: no order, left
    out of the mean). Returns 0 with a gradient path when no entry is ordered.
    """
    r = r.to(s_i.dtype)
    per = torch.clamp(margin - r * (s_i - s_j), min=0.0)
    return _masked_mean(per, r)


def sigma_from_raw(h: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Uncertainty σ = softplus(h) + ε (> 0) from the raw output h of the uncertainty network.

    Paper 004 §3.2 uses h(x) directly as σ; a raw output can be negative or zero, which makes
    the erf argument undefined, hence softplus and a floor ε (our choice, docs/models.md).
    """
    if eps < 0:
        raise ValueError(f"sigma_from_raw: eps must be >= 0, got {eps}")
    return F.softplus(h) + eps


def misordering_probability(y_i: torch.Tensor, y_j: torch.Tensor, sigma_i: torch.Tensor,
                            sigma_j: torch.Tensor, r: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """½{1 + erf((m - r(ŷ_i - ŷ_j)) / √(2(σ_i² + σ_j²)))} per entry (paper 004 §3.2, sign-corrected).

    The probability that the pair falls short of the margin m under independent normal noise
    of standard deviations σ_i, σ_j on the two pseudo-intensities.
    """
    r = r.to(y_i.dtype)
    z = (margin - r * (y_i - y_j)) / torch.sqrt(2.0 * (sigma_i ** 2 + sigma_j ** 2))
    return 0.5 * (1.0 + torch.erf(z))


def misordering_loss(y_i: torch.Tensor, y_j: torch.Tensor, sigma_i: torch.Tensor, sigma_j: torch.Tensor,
                     r: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Expanded ranking error loss (paper 004 §3.2) with the sign corrected: mean misordering
    probability over ordered entries (r ≠ 0). ŷ should come from the frozen pseudo-intensity
    network; only σ is trained by it.
    """
    if margin <= 0 or not math.isfinite(margin):
        raise ValueError(f"misordering_loss: margin must be positive, got {margin}")
    per = misordering_probability(y_i, y_j, sigma_i, sigma_j, r, margin)
    return _masked_mean(per, r)
