"""Paper 001 §3.4.1 resampling: one-tenth of the frames by even stride, one-fifth of the
frames showing a rare AU (AU2, 15, 23, 24, 26)."""

from __future__ import annotations

import numpy as np
import pytest

from components.datasets.samplers import (RESAMPLE_DEFAULTS, ResampleSpec, rare_au_resample,
                                          resample_spec, uniform_fraction)


ABAW = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)


def test_uniform_tenth_is_an_even_stride() -> None:
    idx = uniform_fraction(100, 0.1, seed=3)
    assert len(idx) == 10
    assert set(np.diff(idx)) == {10}
    assert 0 <= idx[0] <= 9
    assert np.array_equal(idx, uniform_fraction(100, 0.1, seed=3))        # deterministic
    phases = {int(uniform_fraction(100, 0.1, seed=s)[0]) for s in range(40)}
    assert len(phases) > 3                                                # seed moves the start


@pytest.mark.parametrize("n, fraction, counts", [
    (95, 0.1, {9, 10}), (7, 0.5, {3, 4}), (5, 1.0, {5}), (0, 0.1, {0}), (3, 0.2, {0, 1}),
])
def test_uniform_fraction_counts(n: int, fraction: float, counts: set) -> None:
    for seed in range(10):
        idx = uniform_fraction(n, fraction, seed)
        assert len(idx) in counts and len(set(idx.tolist())) == len(idx)
        assert all(0 <= i < n for i in idx)
    with pytest.raises(ValueError, match="fraction must be in"):
        uniform_fraction(10, 0.0)


def test_rare_au_frames_are_kept_at_one_fifth() -> None:
    # 100 frames: frames 0-49 show AU2 (rare), 50-99 only AU1; frame 50's AU15 is unknown.
    labels = np.zeros((100, len(ABAW)), np.int8)
    labels[:50, ABAW.index(2)] = 1
    labels[50:, ABAW.index(1)] = 1
    labels[50, ABAW.index(15)] = -1
    keep = rare_au_resample(labels, ABAW, resample_spec("affwild2"), seed=0)
    rare, common = keep[keep < 50], keep[keep >= 50]
    assert len(rare) == 10 and set(np.diff(rare)) == {5}               # 50 / 5
    assert len(common) == 5 and set(np.diff(common)) == {10}           # 50 / 10
    assert np.all(np.diff(keep) > 0)


def test_absent_rare_aus_are_ignored_and_specs_are_data() -> None:
    disfa = (1, 2, 4, 6, 9, 12, 25, 26)
    labels = np.zeros((20, 8), np.int8)
    labels[:10, disfa.index(26)] = 1
    spec = ResampleSpec(fraction=0.5, rare_aus=(15, 26), rare_fraction=1.0)   # AU15 not coded
    keep = rare_au_resample(labels, disfa, spec)
    assert keep[:10].tolist() == list(range(10))                       # every rare frame
    assert len(keep) == 15
    assert RESAMPLE_DEFAULTS["affwild2"] == ResampleSpec(0.1, (2, 15, 23, 24, 26), 0.2)
    assert resample_spec("synthetic") == ResampleSpec(0.1, (), 0.2)
    with pytest.raises(ValueError, match="does not match 8 AUs"):
        rare_au_resample(labels[:, :3], disfa)
