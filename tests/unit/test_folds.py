"""Fold definitions: the literal BP4D / DISFA 3-fold lists, ABAW's split, k-fold by group,
train/val/test carving that never splits a group and never leaks test subjects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from components.datasets.folds import (FOLDS_DIR, FoldSpec, fold_hash, kfold_by_group,
                                       load_folds, split_subjects)



@pytest.mark.parametrize("dataset, sizes, first_test, codebase_folds", [
    ("bp4d", (14, 14, 13), "F001", (3, 2, 1)),
    ("disfa", (9, 9, 9), "SN002", (3, 2, 1)),
])
def test_standard_three_fold_lists(dataset: str, sizes: tuple, first_test: str,
                                   codebase_folds: tuple) -> None:
    spec = load_folds(dataset)
    assert spec.kind == "subjects" and spec.n_folds == 3
    assert tuple(len(f) for f in spec.folds) == sizes
    everyone = [s for f in spec.folds for s in f]
    assert len(set(everyone)) == sum(sizes)                 # 41 BP4D, 27 DISFA, no repeats
    assert spec.folds[0][0] == first_test
    assert tuple(spec.their_fold("me-graphau", k) for k in (1, 2, 3)) == codebase_folds
    for fold in (1, 2, 3):
        parts = split_subjects(spec, fold, everyone)
        assert sorted(parts["test"]) == sorted(spec.folds[fold - 1])
        assert not set(parts["test"]) & (set(parts["train"]) | set(parts["val"]))
        assert not set(parts["train"]) & set(parts["val"])
        assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(everyone)
        # val_fraction 0.2 of the 27 / 28 training subjects, whole subjects
        assert len(parts["val"]) == round(0.2 * (sum(sizes) - sizes[fold - 1]))


def test_bp4d_subject_names_and_disfa_serials() -> None:
    bp4d, disfa = load_folds("bp4d"), load_folds("disfa")
    names = {s for f in bp4d.folds for s in f}
    assert {s[0] for s in names} == {"F", "M"}
    assert len([s for s in names if s[0] == "F"]) == 23     # F001-F023 and M001-M018
    assert names == {f"F{i:03d}" for i in range(1, 24)} | {f"M{i:03d}" for i in range(1, 19)}
    serials = sorted(int(s[2:]) for f in disfa.folds for s in f)
    assert serials == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 21, 23, 24, 25,
                       26, 27, 28, 29, 30, 31, 32]


def test_subjects_missing_from_the_data_are_ignored_unlisted_ones_rejected() -> None:
    spec = load_folds("disfa")
    parts = split_subjects(spec, 1, ["SN002", "SN010", "SN013", "SN003"])
    assert parts["test"] == ["SN002", "SN010"]
    with pytest.raises(ValueError, match=r"subject\(s\) \['SN099'\] are in no fold list"):
        split_subjects(spec, 1, ["SN002", "SN099"])
    with pytest.raises(ValueError, match="fold 4 outside 1..3"):
        split_subjects(spec, 4, ["SN002"])


def test_kfold_by_group_hand_worked() -> None:
    # counts a:3 b:2 c:2 d:1 → a→fold1 [3,0]; b→fold2 [3,2]; c→fold2 [3,4]; d→fold1 [4,4]
    items = ["a", "a", "a", "b", "b", "c", "c", "d"]
    for seed in range(5):
        assert kfold_by_group(items, 2, seed) == [["a", "d"], ["b", "c"]]
    with pytest.raises(ValueError, match="k=5 folds for 4 groups"):
        kfold_by_group(items, 5)


def test_groups_are_never_split_by_kfold_or_validation() -> None:
    subjects = [f"s{i}" for i in range(12)]
    groups = {s: f"g{i // 3}" for i, s in enumerate(subjects)}     # 4 families of 3
    spec = FoldSpec(dataset="synthetic", kind="kfold", k=2, val_fraction=0.34, seed=7)
    seen_test: list[str] = []
    for fold in (1, 2):
        parts = split_subjects(spec, fold, subjects, groups)
        seen_test += parts["test"]
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert not {groups[s] for s in parts[a]} & {groups[s] for s in parts[b]}
        assert len(parts["test"]) == 6 and len(parts["val"]) == 3
    assert sorted(seen_test) == sorted(subjects)             # every subject tested once


def test_validation_carve_gives_every_au_positives_on_both_sides_when_it_can() -> None:
    # Ten single-subject groups; AU 2 (third column) has positives only in s3 and s7, so a
    # random one-subject validation set rarely holds one. With label counts the carve must pick
    # s3 or s7 (the other stays in train), for every seed; without them it is the plain draw.
    subjects = [f"s{i}" for i in range(10)]
    positives = {s: np.array([5, 5, 0]) for s in subjects}
    positives["s3"] = positives["s7"] = np.array([5, 5, 4])
    plain_picks, checked = set(), 0
    for seed in range(8):
        spec = FoldSpec(dataset="synthetic", kind="kfold", k=5, val_fraction=0.125, seed=seed)
        parts = split_subjects(spec, 1, subjects, positives=positives)
        pool = parts["train"] + parts["val"]
        if {"s3", "s7"} <= set(pool):
            assert len(parts["val"]) == 1 and parts["val"][0] in ("s3", "s7"), (seed, parts)
            checked += 1
        plain = split_subjects(spec, 1, subjects)
        assert plain["test"] == parts["test"]
        plain_picks.update(plain["val"])
    assert checked >= 4 and len(plain_picks) > 2  # the plain draw really is random over the pool


def test_fold_list_that_splits_a_group_is_refused() -> None:
    spec = FoldSpec(dataset="x", kind="subjects", folds=(("a", "b"), ("c", "d")))
    with pytest.raises(ValueError, match=r"group\(s\) \['twins'\] have subjects in both"):
        split_subjects(spec, 1, ["a", "b", "c", "d"], groups={"b": "twins", "c": "twins"})
    with pytest.raises(ValueError, match="subject 'a' in folds 1 and 2"):
        FoldSpec(dataset="x", kind="subjects", folds=(("a",), ("a", "b")))


def test_abaw_official_split() -> None:
    spec = load_folds("affwild2")
    assert (spec.kind, spec.n_folds, spec.test_split) == ("split", 1, "validation")
    subjects = [f"v{i}" for i in range(20)] + ["w1", "w2"]
    splits = {s: "train" for s in subjects[:20]} | {"w1": "validation", "w2": "validation"}
    parts = split_subjects(spec, 1, subjects, splits=splits)
    assert parts["test"] == ["w1", "w2"]
    assert len(parts["val"]) == 2 and len(parts["train"]) == 18    # 0.1 of 20 train videos
    with pytest.raises(ValueError, match=r"no split for subject\(s\) \['w3'\]"):
        split_subjects(spec, 1, subjects + ["w3"], splits=splits)


def test_abaw_official_split_plus_four_folds_over_the_training_videos() -> None:
    # Paper 001 §4.3: the official validation set and 4 folds over the training set, 5 models.
    spec = dataclasses.replace(load_folds("affwild2"), train_folds=4)
    assert spec.n_folds == 5
    train = [f"v{i}" for i in range(8)]
    splits = {s: "train" for s in train} | {"w1": "validation", "w2": "validation"}
    groups = {s: f"g{i // 2}" for i, s in enumerate(train)} | {"w1": "h1", "w2": "h2"}
    official = split_subjects(spec, 1, list(splits), groups, splits)
    assert official["test"] == ["w1", "w2"]
    tests = []
    for fold in range(2, 6):
        parts = split_subjects(spec, fold, list(splits), groups, splits)
        assert len(parts["test"]) == 2 and len({groups[s] for s in parts["test"]}) == 1  # one group
        assert not {"w1", "w2"} & set(parts["train"] + parts["val"] + parts["test"])
        assert set(parts["train"] + parts["val"] + parts["test"]) == set(train)
        tests += parts["test"]
    assert sorted(tests) == sorted(train)                           # each training video tested once
    assert fold_hash(spec) != fold_hash(load_folds("affwild2"))
    assert fold_hash(load_folds("affwild2")) == fold_hash(dataclasses.replace(spec, train_folds=0))
    with pytest.raises(ValueError, match="train_folds needs kind 'split'"):
        dataclasses.replace(load_folds("bp4d"), train_folds=4)


def test_default_kfold_and_yaml_path(tmp_path: Path) -> None:
    spec = load_folds("synthetic", default_k=4)
    assert (spec.kind, spec.k) == ("kfold", 4)
    custom = tmp_path / "mine.yaml"
    custom.write_text("dataset: mine\nkind: subjects\nfolds: [[a, b], [c]]\n")
    assert load_folds(custom).folds == (("a", "b"), ("c",))
    custom.write_text("dataset: mine\nkind: subjects\nfold: [[a]]\n")
    with pytest.raises(ValueError, match=r"mine.yaml: unknown keys \['fold'\]"):
        load_folds(custom)
    assert sorted(p.stem for p in FOLDS_DIR.glob("*.yaml")) == ["affwild2", "bp4d", "disfa"]


def test_fold_hash_is_stable_and_tracks_the_definition() -> None:
    spec = load_folds("bp4d")
    assert fold_hash(spec) == fold_hash(load_folds("bp4d"))
    assert len(fold_hash(spec)) == 16
    assert fold_hash(dataclasses.replace(spec, source="other words")) == fold_hash(spec)
    moved = (spec.folds[0][1:], spec.folds[1] + spec.folds[0][:1], spec.folds[2])
    assert fold_hash(dataclasses.replace(spec, folds=moved)) != fold_hash(spec)
    assert fold_hash(dataclasses.replace(spec, val_fraction=0.1)) != fold_hash(spec)
    assert fold_hash(spec) != fold_hash(load_folds("disfa"))


def test_read_groups_maps_subjects_and_videos(tmp_path: Path) -> None:
    from components.datasets import LayoutError
    from components.datasets.folds import read_groups

    table = tmp_path / "videos.csv"
    table.write_text("subject,video,group\nS001,1-30-64x64,face0\nS002,2-30-64x64,face0\n"
                     "S003,3-30-64x64,face1\n")
    assert read_groups(table) == {"S001": "face0", "1-30-64x64": "face0", "S002": "face0",
                                  "2-30-64x64": "face0", "S003": "face1", "3-30-64x64": "face1"}
    table.write_text("subject,group\nS001,face0\nS001,face1\n")
    with pytest.raises(LayoutError, match=r"videos.csv: line 3: 'S001' in group 'face1', but "
                                          r"in 'face0' at line 2"):
        read_groups(table)


def test_subject_sample_is_fixed_by_the_names_and_grows_by_adding() -> None:
    """evaluate, ensemble and label score or label at most ``max_subjects`` subjects of a store too
    large to do whole: the same ones whatever the order they come in, and a larger sample keeps
    every subject of a smaller one."""
    from components.store.splits import subject_sample

    subjects = [f"X{i:06d}" for i in range(200)]
    ten = subject_sample(subjects, 10)
    assert len(ten) == len(set(ten)) == 10 and set(ten) <= set(subjects) and ten == sorted(ten)
    assert subject_sample(list(reversed(subjects)), 10) == ten
    assert set(ten) <= set(subject_sample(subjects, 50))
    assert ten != subjects[:10]  # spread over the names, not the first ten
    assert subject_sample(subjects, 0) == subject_sample(subjects, 500) == subjects
    with pytest.raises(ValueError, match="n >= 0"):
        subject_sample(subjects, -1)
