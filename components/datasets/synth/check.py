"""Will ``facsflow train`` be able to split a generated data set? Checked right after ``synth``.

The check reads the output with the layout's real adapter (so subjects, identity groups and
official splits are those training will see) and splits it with the layout's default fold
definition (``folds.load_folds``: the shipped BP4D/DISFA fold lists, the Aff-Wild2 official
split, else 3-fold by identity group), exactly as ``components.store.splits.load_split`` does with the
default ``SplitConfig``. A fold without test, training or validation subjects, or a split the
fold machinery refuses, is reported with what to change, before anyone waits for preprocessing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["train_split_problems"]


def train_split_problems(root: "str | Path", layout: str, identities: int) -> list[str]:
    """One line per fold of the default split that training could not use (empty: all fine)."""
    from components.datasets import build_adapter
    from components.datasets.folds import load_folds, split_subjects

    groups: dict[str, str] = {}
    splits: dict[str, str] = {}
    for unit in build_adapter(layout, root).units():
        groups[unit.subject] = unit.group or unit.subject
        if unit.meta.get("split"):
            splits[unit.subject] = str(unit.meta["split"])
    spec = load_folds(layout)
    problems = []
    for fold in range(1, spec.n_folds + 1):
        try:
            parts = split_subjects(spec, fold, list(groups), groups, splits)
        except ValueError as e:
            problems.append(f"fold {fold}: {e}")
            continue
        empty = [name for name in ("train", "val", "test") if not parts[name]]
        if empty:
            problems.append(f"fold {fold}: no {' or '.join(empty)} subjects "
                            f"({', '.join(f'{k} {len(v)}' for k, v in parts.items())})")
    if problems:
        n_groups = len(set(groups.values()))
        problems.append(
            f"train's default split ({spec.source or spec.kind}) sees {len(groups)} subjects in {n_groups} "
            f"identity group(s) from {identities} source face(s): generate more subjects (--faces DIR with more "
            "people: 4+ for 3 folds by identity group; --subjects-per-identity N), or train with "
            "--set split.by=subject (test subjects are then morphs of training identities)")
    return problems
