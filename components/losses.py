"""Losses under one masked convention: a label of -1 (unknown) never contributes.

Each function documents the paper equation it implements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["known_mask", "masked_bce", "masked_bce_of_probs", "masked_l1"]


def known_mask(labels: torch.Tensor) -> torch.Tensor:
    """Float mask of known labels (label >= 0; NaN, a teacher's unknown, is not known)."""
    return (labels >= 0).to(torch.float32)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor,
               pos_weight: "torch.Tensor | None" = None) -> torch.Tensor:
    """Binary cross-entropy averaged over known (label >= 0) entries only.

    ``L = -1/|K| Σ_{(b,k)∈K} [w_k y log σ(z) + (1-y) log(1-σ(z))]`` with K the known entries.
    ``y`` may be a probability in [0, 1] (a teacher's soft label, ``facsflow label``) as well as
    0/1; -1 and NaN are unknown. Returns 0 (with a gradient path) when nothing is known.
    """
    known = labels >= 0  # False for -1 and for NaN
    mask = known.to(torch.float32)
    # Unknown targets become 0 before the loss: a NaN would survive the mask (NaN * 0 = NaN).
    target = torch.where(known, labels, torch.zeros_like(labels)).to(logits.dtype)
    per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    denom = mask.sum()
    return (per * mask).sum() / denom.clamp(min=1.0)


def masked_bce_of_probs(probs, labels, eps: float = 1e-7) -> float:
    """``masked_bce`` of predicted probabilities (N, n_AU) against labels with -1 unknowns.

    For validation, where the model's outputs are kept as probabilities: logits are recovered as
    ``logit(clip(p, eps, 1 - eps))``, so a saturated prediction costs at most ``-log(eps)`` ≈ 16.1
    per cell. A continuous measure of the validation set, unlike F1 and accuracy, which a frame
    at p ≈ 0.5 flips.
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    if p.shape != y.shape:
        raise ValueError(f"probs {tuple(p.shape)} and labels {tuple(y.shape)} differ in shape")
    return float(masked_bce(torch.logit(p, eps=eps), y))


def masked_l1(pred: torch.Tensor, target: torch.Tensor,
              pos_weight: "torch.Tensor | None" = None) -> torch.Tensor:
    """Mean absolute error over known (target >= 0) entries only.

    ``L = 1/|K| Σ_{(b,k)∈K} w_bk |p - y|`` with w_bk = ``pos_weight[k]`` where y >= 1 (an active
    AU) and 1 elsewhere (no ``pos_weight``: all 1), normalised like ``masked_bce``.
    """
    mask = known_mask(target)
    y = target.clamp(min=0).to(pred.dtype)
    per = (pred - y).abs()
    if pos_weight is not None:
        per = per * torch.where(y >= 1, pos_weight.to(pred.dtype), torch.ones_like(y))
    return (per * mask).sum() / mask.sum().clamp(min=1.0)
