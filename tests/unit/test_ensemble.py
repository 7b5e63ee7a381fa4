"""Ensemble combination rules against hand-computed values; the manifest round trip."""

from __future__ import annotations

import numpy as np
import pytest

from components.ensemble import EnsembleManifest, Member, combine


P1 = np.array([[0.9, 0.2], [0.4, 0.6]])
P2 = np.array([[0.7, 0.1], [0.3, 0.8]])
P3 = np.array([[0.2, 0.3], [0.6, 0.4]])
THR = [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]


def test_weighted_mean() -> None:
    # AU1 sample 0: 0.5*0.9 + 0.25*0.7 + 0.25*0.2 = 0.675
    out = combine([P1, P2, P3], "mean", [2, 1, 1], THR)
    np.testing.assert_allclose(out, [[0.675, 0.2], [0.425, 0.6]])


def test_majority_vote() -> None:
    # sample 0 AU1: votes 1,1,0 -> 2/3; sample 1 AU2: votes 1,1,0 -> 2/3; sample 1 AU1: 0,0,1 -> 1/3
    out = combine([P1, P2, P3], "vote", [1, 1, 1], THR)
    np.testing.assert_allclose(out, [[2 / 3, 0.0], [1 / 3, 2 / 3]])


def test_vote_uses_member_thresholds() -> None:
    out = combine([P1, P2, P3], "vote", [1, 1, 1], [[0.95, 0.5], [0.5, 0.5], [0.1, 0.5]])
    # sample 0 AU1: 0.9<0.95 -> 0, 0.7>=0.5 -> 1, 0.2>=0.1 -> 1
    assert out[0, 0] == pytest.approx(2 / 3)


def test_best_per_au() -> None:
    out = combine([P1, P2, P3], "best_per_au", [1, 1, 1], THR, choice=[2, 0])
    np.testing.assert_allclose(out, [[0.2, 0.2], [0.6, 0.6]])


def _member(name: str) -> Member:
    return Member(name=name, checkpoint=f"/x/{name}.pt", model_name="baseline_resnet18_112",
                  input_spec={"image_size": 112}, preprocess={}, thresholds=[0.5, 0.4])


def test_manifest_round_trip(tmp_path) -> None:
    man = EnsembleManifest(aus=[1, 2], members=[_member("a"), _member("b")], rule="vote")
    man.save(str(tmp_path))
    back = EnsembleManifest.load(str(tmp_path))
    assert back.weights == [0.5, 0.5] and back.members[1].thresholds == [0.5, 0.4]


def test_manifest_checks() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleManifest(aus=[1], members=[])
    with pytest.raises(ValueError, match="best_per_au needs"):
        EnsembleManifest(aus=[1, 2], members=[_member("a")], rule="best_per_au")
    with pytest.raises(FileNotFoundError, match="ensemble manifest not found"):
        EnsembleManifest.load("/nonexistent/dir")
