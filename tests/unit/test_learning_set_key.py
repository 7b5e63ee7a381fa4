"""tests.learning_data's cache key: every fold splits the same rendered rows, so one render serves
all folds; anything that changes the rows changes the key."""

from __future__ import annotations

from dataclasses import replace

from tests.learning_data import LEARNING_SET


def test_folds_share_one_rendered_set_and_rendering_changes_the_key() -> None:
    keys = {replace(LEARNING_SET, fold=k).key() for k in (1, 2, 3)}
    assert len(keys) == 1
    assert replace(LEARNING_SET, layout="disfa").key() not in keys
    assert replace(LEARNING_SET, frames_per_video=20).key() not in keys
    assert replace(LEARNING_SET, seed=1).key() not in keys
