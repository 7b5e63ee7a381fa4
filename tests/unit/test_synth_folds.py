"""The generator's data sets fit train's default split: BP4D/DISFA subjects take the real ids of
the fold lists, the automatic subject count leaves every fold validation subjects, a layout that
cannot name enough subjects refuses before rendering, and a set train could not split says so."""

from __future__ import annotations

import pytest

from components.datasets.folds import load_folds
from components.datasets.synth.generator import SourceError, SynthConfig, auto_subjects_per_identity, generate
from components.datasets.synth.layouts import LAYOUTS, fold_subject_ids


TINY = dict(videos_per_subject=2, frames_per_video=2, frame_size=64, occlusion_rate=0.0)


@pytest.mark.parametrize("dataset, n", [("disfa", 27), ("bp4d", 41)])
def test_layout_ids_are_the_fold_lists_ids_in_turn(dataset: str, n: int) -> None:
    ids = fold_subject_ids(dataset)
    folds = load_folds(dataset).folds
    assert len(ids) == len(set(ids)) == n == LAYOUTS[dataset].capacity()
    assert set(ids) == {s for f in folds for s in f}
    # One id from each fold in turn: the first three are one per fold.
    assert [next(k for k, f in enumerate(folds) if s in f) for s in ids[:6]] == [0, 1, 2, 0, 1, 2]
    if dataset == "disfa":
        assert ids[:4] == ("SN001", "SN006", "SN003", "SN002")
        assert not {"SN014", "SN015", "SN019", "SN020", "SN022"} & set(ids)


@pytest.mark.parametrize("identities, capacity, expected", [
    (1, 0, 6),    # one face: 6 subjects so that 3 folds by subject keep validation subjects
    (2, 0, 4),    # ceil(6 / 2) = 3, raised to the 4 per face there is room for
    (8, 0, 4),
    (8, 27, 3),   # DISFA names 27: 8 faces get 3 each (24)
    (1, 27, 6),
    (30, 27, 0),  # more faces than ids: nothing fits (generate then refuses)
])
def test_auto_subjects_per_identity(identities: int, capacity: int, expected: int) -> None:
    assert auto_subjects_per_identity(identities, capacity) == expected


def test_more_subjects_than_the_layout_names_is_refused_before_rendering(tmp_path) -> None:
    with pytest.raises(SourceError, match=r"1 identities x 28 subjects = 28 subjects, but the layout names "
                                          r"at most 27 .*--subjects-per-identity 27"):
        generate(SynthConfig(out=str(tmp_path / "d"), layout="disfa", subjects_per_identity=28, **TINY))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("layout", ["bp4d", "disfa", "affwild2"])
def test_default_set_from_one_face_is_trainable(tmp_path, layout: str) -> None:
    summary = generate(SynthConfig(out=str(tmp_path / "d"), layout=layout, **TINY))
    assert summary.identities == 1 and summary.subjects == 6
    assert summary.train_problems == []


def test_one_face_manifest_says_what_train_needs(tmp_path) -> None:
    summary = generate(SynthConfig(out=str(tmp_path / "d"), layout="manifest", **TINY))
    assert summary.identities == 1
    assert [p.split(":")[0] for p in summary.train_problems[:3]] == ["fold 1", "fold 2", "fold 3"]
    assert "3 folds for 1 groups" in summary.train_problems[0]
    assert "--set split.by=subject" in summary.train_problems[-1]
    assert "--faces DIR" in summary.train_problems[-1]
