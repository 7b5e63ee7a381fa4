"""Multi-label circle loss (paper 001, Yu et al., §3.4.2, eq. 2) under the masked convention.

The lrp-arl-ff family's own loss, beside its model; the shared losses (masked BCE, L1) are in
``components.losses``.
"""

from __future__ import annotations

import torch

__all__ = ["multilabel_circle_loss"]


def multilabel_circle_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paper 001 eq. 2, per face, averaged over faces with at least one known label.

    ``L = log(1 + Σ_{i∈Ω_neg} e^{s_i}) + log(1 + Σ_{j∈Ω_pos} e^{-s_j})`` with ``s`` the logits of
    one face, Ω_neg its AUs labelled 0 and Ω_pos its AUs labelled 1. Unknown entries (-1) are in
    neither set, so a face whose labels are all unknown contributes 0 and is left out of the
    mean. Each ``log(1 + Σ e^x)`` is computed as ``logsumexp([0, x...])`` for stability.
    Returns 0 (with a gradient path) when nothing in the batch is known.

    Args:
        logits: (B, n_AU) scores s.
        labels: (B, n_AU) with 1, 0 or -1 (unknown).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"circle loss: logits {tuple(logits.shape)} and labels "
                         f"{tuple(labels.shape)} differ in shape")
    neg_inf = torch.finfo(logits.dtype).min
    zero = logits.new_zeros(logits.shape[0], 1)
    neg = torch.where(labels == 0, logits, torch.full_like(logits, neg_inf))
    pos = torch.where(labels == 1, -logits, torch.full_like(logits, neg_inf))
    per_face = (torch.logsumexp(torch.cat([zero, neg], dim=1), dim=1)
                + torch.logsumexp(torch.cat([zero, pos], dim=1), dim=1))
    known_faces = (labels >= 0).any(dim=1).to(logits.dtype)
    return (per_face * known_faces).sum() / known_faces.sum().clamp(min=1.0)
