"""Training-set resampling of paper 001 (Yu et al., ABAW5), §3.4.1, as plain index samplers.

The paper: "we uniformly sample one-tenth of the pictures as the training set" (adjacent
video frames barely differ; fewer frames train faster and overfit less), and, against the
class imbalance of its Fig. 2, "a uniform sampling strategy of one-fifth of the five categories
of AU2, AU15, AU23, AU24, and AU26".

Our reading of the second sentence: frames where at least one of those rare AUs is present
are sampled uniformly at one-fifth instead of one-tenth, so rare-AU positives are kept at
twice the rate of other frames; every other frame keeps the one-tenth rate. "Uniform" is
taken as an even stride through each video's frames in their stored (temporal) order, with a
seeded phase per video (``components.video_key`` names the video), which keeps the sample spread
over every video: one stride across a batch holding the end of one video and the start of the
next would let the phase of the first decide the second. The rare AUs and both fractions are
per-dataset data (``ResampleSpec``, ``RESAMPLE_DEFAULTS``); a label of -1 (unknown) never counts
as present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ResampleSpec", "RESAMPLE_DEFAULTS", "resample_spec", "uniform_fraction",
           "rare_au_resample"]


@dataclass(frozen=True)
class ResampleSpec:
    """Paper 001 §3.4.1 resampling for one dataset."""

    fraction: float = 0.1
    """Share of all frames kept, by uniform stride ("one-tenth of the pictures")."""
    rare_aus: tuple[int, ...] = ()
    """AUs whose positive frames are kept at ``rare_fraction`` instead."""
    rare_fraction: float = 0.2
    """Share of rare-AU-positive frames kept ("one-fifth")."""

    def __post_init__(self) -> None:
        for name in ("fraction", "rare_fraction"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"ResampleSpec.{name} must be in (0, 1], got {v}")


RESAMPLE_DEFAULTS: dict[str, ResampleSpec] = {
    # Paper 001 trained on Aff-Wild2 (ABAW5); its rare AUs are the ABAW five.
    "affwild2": ResampleSpec(0.1, (2, 15, 23, 24, 26), 0.2),
    # Lab datasets (BP4D, DISFA): the paper's rule carried over to the rare AUs each one
    # shares with that list (our choice; the paper did not train on them).
    "bp4d": ResampleSpec(0.1, (2, 15, 23, 24), 0.2),
    "bp4d+": ResampleSpec(0.1, (2, 15, 23, 24), 0.2),
    "disfa": ResampleSpec(0.1, (2, 26), 0.2),
}
"""Dataset → its resampling; datasets not listed get ``ResampleSpec()`` (one-tenth, no rare)."""


def resample_spec(dataset: str) -> ResampleSpec:
    """The resampling spec for ``dataset`` (``RESAMPLE_DEFAULTS`` or the plain one-tenth)."""
    return RESAMPLE_DEFAULTS.get(dataset, ResampleSpec())


def uniform_fraction(n: int, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Indices of an even ``fraction`` of ``range(n)``, in increasing order.

    Index ``floor((j + phase) / fraction)`` for j = 0, 1, ... with one seeded phase in [0, 1):
    for fraction 0.1 that is every 10th item from a random start in 0..9; the count is
    ``floor`` or ``ceil`` of ``n * fraction``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"uniform_fraction: fraction must be in (0, 1], got {fraction}")
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    phase = np.random.default_rng(seed).random()
    m = int(np.ceil(n * fraction)) + 1
    # The epsilon keeps 1/fraction strides exact where float division lands just below an
    # integer (e.g. 0.1 is not representable).
    idx = np.floor((np.arange(m) + phase) / fraction + 1e-9).astype(np.int64)
    return idx[idx < n]


def rare_au_resample(labels: np.ndarray, aus: Sequence[int],
                     spec: "ResampleSpec | None" = None, seed: int = 0,
                     videos: "Sequence[str] | None" = None) -> np.ndarray:
    """Paper 001 §3.4.1: indices of the training frames to keep, in increasing order.

    ``labels`` is (N, len(aus)) with 1 / 0 / -1 in temporal order. Frames with any of
    ``spec.rare_aus`` present are sampled uniformly at ``spec.rare_fraction``, all other frames
    at ``spec.fraction`` (see the module docstring for this reading). Rare AUs missing from
    ``aus`` are ignored (the dataset does not code them). ``videos`` (N,) gives each frame's video
    key (``components.video_key.video_keys``): each video is then strided on its own, with its
    own phase; without it the frames are one sequence.
    """
    spec = spec or ResampleSpec()
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(aus):
        raise ValueError(f"rare_au_resample: labels shape {labels.shape} does not match "
                         f"{len(aus)} AUs")
    if videos is not None and len(videos) != len(labels):
        raise ValueError(f"rare_au_resample: {len(videos)} video keys for {len(labels)} frames")
    cols = [list(aus).index(a) for a in spec.rare_aus if a in aus]
    rare = (labels[:, cols] == 1).any(axis=1) if cols else np.zeros(len(labels), dtype=bool)
    groups = np.zeros(len(labels), np.int64) if videos is None else \
        np.unique(np.asarray([str(v) for v in videos]), return_inverse=True)[1].reshape(-1)
    keep = []
    for g in range(int(groups.max()) + 1 if len(groups) else 0):
        in_video = groups == g
        rare_idx = np.flatnonzero(rare & in_video)
        common_idx = np.flatnonzero(~rare & in_video)
        keep += [rare_idx[uniform_fraction(len(rare_idx), spec.rare_fraction, seed + 2 * g + 1)],
                 common_idx[uniform_fraction(len(common_idx), spec.fraction, seed + 2 * g)]]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
