"""Video context of the pairwise-rank family (paper 004): which frames share a video, the
training pairs of §3.1 and the window statistics G of §3.3 with the mapping's input
standardisation. Part of the ``components.models.pairwise_rank`` package, which re-exports it.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["group_ids", "batch_video_ids", "batch_frame_index", "subject_groups", "pair_indices",
           "window_statistics", "RunningStandardize", "VIDEO_KEYS", "FRAME_KEYS"]


def group_ids(video_ids: "torch.Tensor | Sequence[Any]", device: "torch.device | None" = None) -> torch.Tensor:
    """Video ids (int tensor, or any hashable sequence such as strings) as int64 group ids (B,)."""
    if isinstance(video_ids, torch.Tensor):
        return video_ids.reshape(-1).to(device=device, dtype=torch.long)
    _, inverse = np.unique(np.asarray([str(v) for v in video_ids]), return_inverse=True)
    return torch.as_tensor(inverse, dtype=torch.long, device=device)


VIDEO_KEYS = ("video_index", "video")
FRAME_KEYS = ("frame_index", "frame_order")


def batch_video_ids(batch: "dict[str, Any]", device: "torch.device | None" = None) -> "torch.Tensor | None":
    """Group ids (B,) from batch['video_index'] or batch['video'], or None when neither is there."""
    for key in VIDEO_KEYS:
        if key in batch:
            return group_ids(batch[key], device)
    return None


def batch_frame_index(batch: "dict[str, Any]", device: "torch.device | None" = None) -> "torch.Tensor | None":
    """Frame numbers (B,) from batch['frame_index'] or batch['frame_order'], or None."""
    for key in FRAME_KEYS:
        if key in batch:
            return torch.as_tensor(np.asarray(batch[key]) if not isinstance(batch[key], torch.Tensor)
                                   else batch[key]).reshape(-1).to(device=device, dtype=torch.long)
    return None


def _as_list(values: Any) -> list[Any]:
    return values.reshape(-1).tolist() if isinstance(values, (torch.Tensor, np.ndarray)) else list(values)


def subject_groups(batch: "dict[str, Any]", k: int, device: "torch.device | None" = None) -> torch.Tensor:
    """Cross-fitting group (B,) in [0, k) of each row's subject: CRC32 of 'dataset/subject' mod k.

    From ``batch['subject_index']`` (that CRC32, as ``BatchBuilder`` writes it into training
    batches, which carry numbers only) or else ``batch['subject']`` (with ``batch['dataset']``).
    A fixed function of the subject alone, so every frame of a subject (and so every pair and
    every video context, which never mix subjects) lands in the same group on every worker and
    in every epoch, with no list of subjects to share. Groups are not balanced: with few
    subjects one may hold more of them than another (or none).
    """
    if "subject_index" in batch:
        index = torch.as_tensor(np.asarray(batch["subject_index"]) if not isinstance(batch["subject_index"],
                                torch.Tensor) else batch["subject_index"]).reshape(-1)
        return (index.to(device=device, dtype=torch.long) % k)
    if "subject" not in batch:
        raise KeyError("pairwise-rank with mapping_crossfit needs batch['subject_index'] or batch['subject'] "
                       "in its training batches (cross-fitting splits the training subjects); the batch has "
                       f"{sorted(batch)}")
    subjects = _as_list(batch["subject"])
    datasets = _as_list(batch["dataset"]) if "dataset" in batch else [""] * len(subjects)
    groups = [zlib.crc32(f"{d}/{s}".encode()) % k for d, s in zip(datasets, subjects)]
    return torch.tensor(groups, dtype=torch.long, device=device)


def pair_indices(video_ids: "torch.Tensor | Sequence[Any]", targets: torch.Tensor, max_pairs: "int | None" = None,
                 generator: "torch.Generator | None" = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training pairs of paper 004 §3.1 from one batch: (idx_i, idx_j, r).

    Every pair i < j of frames from the same video that is ordered for at least one AU; ``r``
    (P, n_AU) float is sign(y_i - y_j) per AU (eq. 1), 0 where the labels are equal or either is
    unknown (< 0). With ``max_pairs``, a random subset of that size (``generator`` for
    reproducibility).
    """
    vid = group_ids(video_ids, targets.device)
    if targets.ndim != 2 or len(vid) != targets.shape[0]:
        raise ValueError(f"pair_indices: need video ids (B,) and targets (B, n_AU), got {len(vid)} and "
                         f"{tuple(targets.shape)}")
    ii, jj = torch.triu_indices(len(vid), len(vid), offset=1, device=targets.device)
    yi, yj = targets[ii], targets[jj]
    known = (yi >= 0) & (yj >= 0)
    r = torch.sign(yi - yj) * known
    keep = (vid[ii] == vid[jj]) & (r != 0).any(1)
    ii, jj, r = ii[keep], jj[keep], r[keep]
    if max_pairs is not None and len(ii) > max_pairs:
        pick = torch.randperm(len(ii), generator=generator)[:max_pairs].to(ii.device)
        ii, jj, r = ii[pick], jj[pick], r[pick]
    return ii, jj, r.to(torch.float32)


def window_statistics(y: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Feature extractor G of paper 004 §3.3 over each frame's context (ours, docs/models.md).

    ``y``, ``sigma`` (B, N, K): pseudo-intensities and uncertainties of N context frames per
    sample; ``mask`` (B, N): which context frames count (at least one per row). Returns
    (B, K, 7): mean, standard deviation (population), min and max of ŷ, the σ⁻²-weighted mean
    of ŷ (occluded frames count less in the neutral-level estimate, §3), mean and standard
    deviation of σ.
    """
    m = mask.to(y.dtype)[..., None]                             # (B, N, 1)
    if bool((m.sum(1) == 0).any()):
        raise ValueError("window_statistics: a frame has no context frame (empty mask row)")
    n = m.sum(1)

    def mean_std(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = (v * m).sum(1) / n
        var = (((v - mu[:, None]) ** 2) * m).sum(1) / n
        return mu, torch.sqrt(var + 1e-12)       # the floor keeps the gradient finite at var = 0

    y_mean, y_std = mean_std(y)
    s_mean, s_std = mean_std(sigma)
    big = torch.finfo(y.dtype).max
    y_min = torch.where(m > 0, y, torch.full_like(y, big)).amin(1)
    y_max = torch.where(m > 0, y, torch.full_like(y, -big)).amax(1)
    w = m / sigma.clamp(min=1e-6) ** 2
    y_wmean = (w * y).sum(1) / w.sum(1)
    return torch.stack([y_mean, y_std, y_min, y_max, y_wmean, s_mean, s_std], -1)


class RunningStandardize(nn.Module):
    """Standardise features with the mean and standard deviation of every training row seen.

    In training mode each batch first adds its rows to the statistics (Chan's parallel update,
    no gradient) and is then standardised with them; in eval mode the stored statistics are used
    (identity before any training row). Unlike BatchNorm the transform does not depend on which
    rows share the batch: mapping batches hold one video, whose window statistics G are nearly
    constant, and BatchNorm's per-batch statistics standardised those to zero and centred ŷ on
    the video's mean during training, then used global running statistics at inference
    (measured: the mapping never beat the trivial predictor on the synthetic learning set).
    ``var_floor`` is added to every variance: with few training videos a video-level statistic
    takes few distinct values, its variance is tiny, and a new video's value would land tens of
    standard deviations out (on the unit test's toy set 0.1 held out far better than 1e-5;
    ŷ and σ are of order 1; figures: docs/measurements.md).
    """

    def __init__(self, num_features: int, var_floor: float = 0.1) -> None:
        super().__init__()
        self.var_floor = var_floor
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(num_features, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(num_features, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (B, F) to the statistics."""
        x = x.detach().to(torch.float64)
        n_b = float(x.shape[0])
        if n_b == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n = float(self.count)
        delta = mean_b - self.mean
        total = n + n_b
        self.mean += delta * (n_b / total)
        self.m2 += m2_b + delta ** 2 * (n * n_b / total)
        self.count += n_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update(x)
        if float(self.count) == 0:
            return x
        var = self.m2 / self.count
        return (x - self.mean.to(x.dtype)) / torch.sqrt(var + self.var_floor).to(x.dtype)
