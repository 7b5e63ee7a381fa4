"""Fold definitions as data: train / validation / test by subject, never splitting a group.

Three kinds, each read from ``components/datasets/folds/<dataset>.yaml`` (``load_folds``):

- ``subjects``: literal test-subject lists per fold (the BP4D and DISFA 3-fold protocol of
  JAA-Net and ME-GraphAU; the YAML documents how our fold numbers map to theirs);
- ``split``: the units' own split (``VideoUnit.meta['split']``), e.g. ABAW's official
  train / validation, where the official validation set is the test set; with ``train_folds``
  = k, folds 2..k+1 are k folds by identity group over the training split (paper 001 §4.3:
  "in addition to the official validation set, we also did 4-fold cross-validation");
- ``kfold``: k folds by identity group, balanced by subject count (``kfold_by_group``), the
  default for any dataset without a YAML (synthetic, manifest).

``split_subjects`` turns a spec and a fold number into ``{'train', 'val', 'test'}`` subject
lists: validation is carved from the training subjects by whole identity groups, and test
subjects are never in train or val. ``fold_hash`` identifies the definition for provenance.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

from components.datasets.base import LayoutError
from components.datasets.media import natural_key

__all__ = ["FoldSpec", "FOLDS_DIR", "load_folds", "kfold_by_group", "split_subjects", "fold_hash",
           "read_groups"]

FOLDS_DIR = Path(__file__).resolve().parent / "folds"
"""Where the shipped fold YAMLs live."""

_KINDS = ("subjects", "split", "kfold")


@dataclass(frozen=True)
class FoldSpec:
    """How one dataset is split into folds (see the module docstring for the kinds)."""

    dataset: str
    """Dataset name, e.g. 'bp4d'."""
    kind: str = "kfold"
    """'subjects', 'split' or 'kfold'."""
    folds: tuple[tuple[str, ...], ...] = ()
    """kind 'subjects': the test subjects of fold 1, 2, ..."""
    k: int = 3
    """kind 'kfold': number of folds."""
    test_split: str = "validation"
    """kind 'split': units whose meta['split'] equals this are the test set."""
    train_splits: tuple[str, ...] = ("train",)
    """kind 'split': the splits that train and validation are drawn from."""
    train_folds: int = 0
    """kind 'split': folds by identity group over the training split added after the official
    fold (0: none). Fold 1 tests on ``test_split``; fold k+1 tests on the k-th of these folds and
    trains on the rest of the training split. The ``test_split`` subjects are in none of them
    (ours: the paper does not say; kept out, a vote of all the folds' models can be scored on
    the official validation set, which no member saw)."""
    val_fraction: float = 0.2
    """Share of the training subjects (rounded, whole groups) held out for validation."""
    seed: int = 0
    """Seed of the k-fold assignment and of the validation draw."""
    their_folds: Mapping[str, tuple[int, ...]] = field(default_factory=dict, compare=False,
                                                       hash=False)
    """Other code bases' fold number for each of our folds, e.g. {'me-graphau': (3, 2, 1)}."""
    source: str = field(default="", compare=False)
    """Where the definition comes from (documentation only; not part of the hash)."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"fold spec {self.dataset!r}: kind {self.kind!r} not in {_KINDS}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"fold spec {self.dataset!r}: val_fraction must be in [0, 1)")
        if self.kind == "subjects":
            if len(self.folds) < 2:
                raise ValueError(f"fold spec {self.dataset!r}: needs at least 2 subject lists")
            seen: dict[str, int] = {}
            for i, fold in enumerate(self.folds, start=1):
                for s in fold:
                    if s in seen:
                        raise ValueError(f"fold spec {self.dataset!r}: subject {s!r} in folds "
                                         f"{seen[s]} and {i}")
                    seen[s] = i
        if self.train_folds and (self.kind != "split" or self.train_folds < 2):
            raise ValueError(f"fold spec {self.dataset!r}: train_folds needs kind 'split' and >= 2, got "
                             f"{self.train_folds} with kind {self.kind!r}")
        if self.kind == "kfold" and self.k < 2:
            raise ValueError(f"fold spec {self.dataset!r}: k must be >= 2")
        for name, theirs in self.their_folds.items():
            if len(theirs) != self.n_folds:
                raise ValueError(f"fold spec {self.dataset!r}: their_folds[{name!r}] has "
                                 f"{len(theirs)} entries for {self.n_folds} folds")

    @property
    def n_folds(self) -> int:
        """Number of folds this spec defines."""
        return {"subjects": len(self.folds), "split": 1 + self.train_folds, "kfold": self.k}[self.kind]

    def their_fold(self, codebase: str, fold: int) -> int:
        """The fold number ``codebase`` (e.g. 'me-graphau') gives our ``fold``."""
        return int(self.their_folds[codebase][fold - 1])


def load_folds(dataset: "str | Path", default_k: int = 3, seed: int = 0) -> FoldSpec:
    """The fold spec of ``dataset`` from its shipped YAML (or a YAML path); a dataset without
    one gets k-fold by identity group (``default_k`` folds, ``seed``)."""
    path = Path(dataset) if str(dataset).endswith((".yaml", ".yml")) else None
    if path is None:
        path = FOLDS_DIR / f"{str(dataset).replace('+', '_plus')}.yaml"
        if not path.is_file():
            return FoldSpec(dataset=str(dataset), kind="kfold", k=default_k, seed=seed,
                            source=f"no fold file: {default_k}-fold by identity group")
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    names = {f.name for f in dataclasses.fields(FoldSpec)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    raw["folds"] = tuple(tuple(str(s) for s in fold) for fold in raw.get("folds") or ())
    raw["train_splits"] = tuple(raw.get("train_splits") or ("train",))
    raw["their_folds"] = {k: tuple(int(x) for x in v)
                          for k, v in (raw.get("their_folds") or {}).items()}
    try:
        return FoldSpec(**raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def kfold_by_group(groups: Sequence[str], k: int, seed: int = 0) -> list[list[str]]:
    """Assign identity groups to ``k`` folds: returns the groups of fold 1..k (sorted).

    ``groups`` has one entry per item (a subject, or a sample); folds are balanced by item
    count: groups are taken largest first (ties in a seeded random order) and each goes to
    the fold with the fewest items so far (ties → the lower fold). A group is never split.
    """
    counts: dict[str, int] = {}
    for g in groups:
        counts[str(g)] = counts.get(str(g), 0) + 1
    if k < 2 or k > len(counts):
        raise ValueError(f"kfold_by_group: k={k} folds for {len(counts)} groups")
    order = sorted(counts, key=natural_key)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    order.sort(key=lambda g: -counts[g])
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for g in order:
        i = min(range(k), key=lambda j: (load[j], j))
        folds[i].append(g)
        load[i] += counts[g]
    return [sorted(f, key=natural_key) for f in folds]


VAL_DRAWS = 64
"""Random validation draws compared when per-subject label counts are known."""


def _draw_val(pool_groups: list[str], members: Mapping[str, list[str]], target: int,
              rng: np.random.Generator) -> set[str]:
    val: set[str] = set()
    for i in rng.permutation(len(pool_groups))[:-1]:  # leave at least one group to train on
        if len(val) >= target:
            break
        val.update(members[pool_groups[i]])
    return val


def _carve_val(pool: list[str], groups: Mapping[str, str], fraction: float,
               rng: np.random.Generator,
               positives: "Mapping[str, np.ndarray] | None" = None) -> set[str]:
    """Validation subjects carved from ``pool`` by whole groups, about ``fraction`` of them.

    Without ``positives`` one random draw. With ``positives`` (subject → positive-label count
    per AU) ``VAL_DRAWS`` seeded draws are compared and the first that gives the most AUs a
    positive on *both* sides wins (then: size closest to the target): with few subjects a
    random validation set often has no positive of some AU, and that AU's early stopping
    signal and tuned threshold would be meaningless.
    """
    pool_groups = sorted({groups[s] for s in pool}, key=natural_key)
    target = int(round(fraction * len(pool)))
    if target == 0 or len(pool_groups) < 2:
        return set()
    members: dict[str, list[str]] = {}
    for s in pool:
        members.setdefault(groups[s], []).append(s)
    if not positives:
        return _draw_val(pool_groups, members, target, rng)
    width = max(len(np.atleast_1d(v)) for v in positives.values())

    def count(subjects: Iterable[str]) -> np.ndarray:
        total = np.zeros(width)
        for x in subjects:
            total += np.atleast_1d(positives.get(x, np.zeros(width)))
        return total

    everyone = count(pool)
    best, best_key = set(), None
    for _ in range(VAL_DRAWS):
        val = _draw_val(pool_groups, members, target, rng)
        in_val = count(val)
        covered = int(((in_val > 0) & (everyone - in_val > 0)).sum())
        key = (covered, -abs(len(val) - target))
        if best_key is None or key > best_key:
            best, best_key = val, key
    return best


def split_subjects(spec: FoldSpec, fold: int, subjects: Iterable[str],
                   groups: "Mapping[str, str] | None" = None,
                   splits: "Mapping[str, str] | None" = None,
                   positives: "Mapping[str, np.ndarray] | None" = None) -> dict[str, list[str]]:
    """Train / val / test subject lists of ``fold`` (1-based) of ``spec``.

    ``subjects`` are the subjects present in the data; ``groups`` maps subject → identity group
    (default: each subject its own group); ``splits`` maps subject → split name (kind 'split').
    Test subjects come from the spec, validation is carved from the remaining subjects by whole
    groups (``spec.val_fraction``; with ``positives``, subject → positive count per AU, the
    carve prefers validation sets in which every AU has positives: ``_carve_val``), train is
    the rest. Raises ValueError when a present subject
    is in no fold list, has no split, or a group would straddle test and train.
    """
    subjects = sorted(set(subjects), key=natural_key)
    if not 1 <= fold <= spec.n_folds:
        raise ValueError(f"{spec.dataset}: fold {fold} outside 1..{spec.n_folds}")
    groups = dict(groups or {})
    for s in subjects:
        groups.setdefault(s, s)
    if spec.kind == "subjects":
        listed = {s for f in spec.folds for s in f}
        unlisted = [s for s in subjects if s not in listed]
        if unlisted:
            raise ValueError(f"{spec.dataset}: subject(s) {unlisted[:5]} are in no fold list "
                             f"of the {spec.dataset} fold definition")
        test = [s for s in subjects if s in set(spec.folds[fold - 1])]
        pool = [s for s in subjects if s not in set(test)]
    elif spec.kind == "kfold":
        test_groups = set(kfold_by_group([groups[s] for s in subjects], spec.k,
                                         spec.seed)[fold - 1])
        test = [s for s in subjects if groups[s] in test_groups]
        pool = [s for s in subjects if groups[s] not in test_groups]
    else:
        splits = splits or {}
        nosplit = [s for s in subjects if s not in splits]
        if nosplit:
            raise ValueError(f"{spec.dataset}: no split for subject(s) {nosplit[:5]}")
        test = [s for s in subjects if splits[s] == spec.test_split]
        pool = [s for s in subjects if splits[s] in spec.train_splits]
        if fold > 1:        # a fold over the training split (train_folds)
            held = set(kfold_by_group([groups[s] for s in pool], spec.train_folds, spec.seed)[fold - 2])
            test = [s for s in pool if groups[s] in held]
            pool = [s for s in pool if groups[s] not in held]
    straddle = sorted({groups[s] for s in test} & {groups[s] for s in pool}, key=natural_key)
    if straddle:
        raise ValueError(f"{spec.dataset} fold {fold}: group(s) {straddle[:5]} have subjects "
                         "in both test and train")
    rng = np.random.default_rng([spec.seed, fold])
    val = _carve_val(pool, groups, spec.val_fraction, rng, positives)
    return {"train": [s for s in pool if s not in val],
            "val": [s for s in pool if s in val],
            "test": test}


def fold_hash(spec: FoldSpec) -> str:
    """Stable 16-hex-digit hash of what decides the split (not the documentation fields)."""
    definition: dict[str, Any] = {
        "dataset": spec.dataset, "kind": spec.kind, "folds": [list(f) for f in spec.folds],
        "k": spec.k, "test_split": spec.test_split, "train_splits": list(spec.train_splits),
        "val_fraction": spec.val_fraction, "seed": spec.seed,
    }
    if spec.train_folds:    # only when set: the hashes of existing definitions stay as they were
        definition["train_folds"] = spec.train_folds
    blob = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_groups(path: "str | Path") -> dict[str, str]:
    """Identity groups from a CSV with a ``group`` column and a ``subject`` and/or ``video``
    column (e.g. the synthetic generator's ``synth_meta/videos.csv``): name → group.

    Adapters take it as ``groups=PATH`` for layouts whose files carry no identity (BP4D, DISFA,
    Aff-Wild2), looking a unit up by subject, then by video. A name given two different groups
    is a LayoutError naming the file and line.
    """
    path = Path(path)
    out: dict[str, tuple[str, int]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c for c in ("subject", "video") if c in (reader.fieldnames or [])]
        if "group" not in (reader.fieldnames or []) or not cols:
            raise LayoutError(f"{path}: line 1: needs a 'group' column and a 'subject' or "
                              "'video' column")
        for row in reader:
            group = (row["group"] or "").strip()
            for c in cols:
                name = (row[c] or "").strip()
                if not name or not group:
                    continue
                seen = out.setdefault(name, (group, reader.line_num))
                if seen[0] != group:
                    raise LayoutError(f"{path}: line {reader.line_num}: {name!r} in group "
                                      f"{group!r}, but in {seen[0]!r} at line {seen[1]}")
    return {k: v[0] for k, v in out.items()}
