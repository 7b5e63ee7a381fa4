"""Re-identification's grouping (components.faces.identity.reidentify) on hand-made embeddings:
a track cut where another person takes its place, a re-entry joined to its earlier identity, two
faces on screen together never merged."""

from __future__ import annotations

import numpy as np


def _unit(*v: float) -> np.ndarray:
    x = np.zeros(128, np.float32)
    x[: len(v)] = v
    return x / np.linalg.norm(x)


PEOPLE = {"a": _unit(1, 0), "a2": _unit(1, 0.3), "b": _unit(0, 1), "c": _unit(-1, 0.2)}
"""a2 is a within 0.3 (one person); b and c are more than 1.0 from a and each other."""


def _track(frames: range, who: "str | list[str]") -> list[tuple[int, str]]:
    names = [who] * len(frames) if isinstance(who, str) else who
    return list(zip(frames, names))


def _run(tracks: dict) -> dict:
    from components.faces.identity import reidentify

    return reidentify(tracks, lambda crops: np.stack([PEOPLE[str(c)] for c in crops]), lambda name: np.array(name),
                      max_distance=1.0, sample_every=2)


def test_reentry_joins_its_identity_and_a_new_person_gets_a_new_id() -> None:
    out = _run({0: _track(range(0, 10), "a"), 1: _track(range(20, 30), "a2"), 2: _track(range(40, 50), "b")})
    assert {pid: (seq[0][0], seq[-1][0]) for pid, seq in out.items()} == {0: (0, 29), 1: (40, 49)}


def test_a_cut_inside_one_track_splits_it() -> None:
    out = _run({0: _track(range(0, 12), ["a"] * 6 + ["b"] * 6)})
    assert sorted((seq[0][0], seq[-1][0]) for seq in out.values()) == [(0, 5), (6, 11)]


def test_faces_on_screen_together_are_never_one_person() -> None:
    # Two tracks of near-identical embeddings at the same frames (twins, a mirror): kept apart.
    out = _run({0: _track(range(0, 10), "a"), 1: _track(range(0, 10), "a2"), 2: _track(range(20, 25), "c")})
    assert len(out) == 3
