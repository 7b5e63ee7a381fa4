"""benchmarks/ablations.py: the statistics glue (pairing, pooling over seeds, verdict) against
numbers worked out by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ablations_bench", ROOT / "benchmarks" / "ablations.py")
ab = importlib.util.module_from_spec(_spec)
sys.modules["ablations_bench"] = ab  # dataclasses resolve their module by name
_spec.loader.exec_module(ab)

PERFECT = [1, 0, 0, 0]      # TP, FP, FN, TN of one subject on the single AU
MISSED = [0, 0, 1, 0]


def _run(arm: str, seed: int, fold: int, mean_f1: float, cell: list[int]) -> dict:
    # Two test subjects per fold, one AU: counts (4, 2, 1).
    return {"family": "fam", "arm": arm, "model": f"m_{arm}", "seed": seed, "fold": fold, "mean_f1": mean_f1,
            "subjects": [f"S{fold}a", f"S{fold}b"], "counts": [[[c], [c]] for c in cell]}


def _runs() -> list[dict]:
    runs = []
    for fold in (1, 2):
        for seed in (0, 1, 2):
            runs.append(_run("full", seed, fold, 1.0, PERFECT))
            # 'abl' matches the full model on seed 0 and misses everything on seeds 1 and 2.
            runs.append(_run("abl", seed, fold, 1.0 if seed == 0 else 0.0, PERFECT if seed == 0 else MISSED))
            # 'worse' is 0.1 behind on every seed and fold.
            runs.append(_run("worse", seed, fold, 0.9, PERFECT))
    return runs


def test_compare_by_hand() -> None:
    abl, worse = ab.compare(_runs(), n_boot=200)
    assert (abl["ablation"], abl["pairs"], abl["seeds"], abl["folds"]) == ("abl", 6, [0, 1, 2], [1, 2])
    # Differences per (seed, fold): 0, 1, 1 on each fold; mean 4/6. Sign flip: the 2 zero pairs
    # never change |mean|; of the 16 patterns of the 4 ones only all-plus and all-minus reach 4/6:
    # p = 2/16 = 0.125 (exact over 2^6 patterns; smallest attainable 2/64).
    assert abl["mean_difference"] == pytest.approx(4 / 6)
    assert abl["sign_flip_p"] == pytest.approx(0.125)
    assert abl["min_attainable_p"] == pytest.approx(2 / 64)
    assert abl["significant"] is False and abl["positive_pairs"] == 4
    assert abl["full_mean_f1"] == pytest.approx(1.0) and abl["ablation_mean_f1"] == pytest.approx(1 / 3)
    # sd of (1, 0, 0, 1, 0, 0), ddof 1: sqrt((2 * 4/9 + 4 * 1/9) / 5).
    assert abl["ablation_sd"] == pytest.approx((12 / 45) ** 0.5) and abl["full_sd"] == pytest.approx(0.0)
    # Seeds pooled per fold: the ablation's counts summed over 3 seeds x 2 subjects: TP 2, FN 4,
    # F1 = 4 / (4 + 4) = 0.5 (seed 0 alone would give 1.0, the mean of the seeds' F1s 1/3).
    for fold in abl["per_fold"]:
        assert (fold["full"], fold["ablation"], fold["difference"]) == pytest.approx((1.0, 0.5, 0.5))
        assert fold["seeds"] == [0, 1, 2] and fold["n_subjects"] == 2
        # Every subject alike: every replicate is the estimate, p = 1 / (n_boot + 1).
        assert (fold["low"], fold["high"], fold["p_value"]) == pytest.approx((0.5, 0.5, 1 / 201))
    # Over all folds: the two folds' subjects side by side (4 subjects), same pooled F1s.
    assert (abl["pooled_difference"], abl["pooled_subjects"]) == pytest.approx((0.5, 4))
    # Six equal positive differences: only all-plus / all-minus reach the mean: p = 2/64 < 0.05.
    assert worse["mean_difference"] == pytest.approx(0.1) and worse["positive_pairs"] == 6
    assert worse["sign_flip_p"] == pytest.approx(2 / 64) and worse["significant"] is True
    table = ab.markdown_table([abl, worse])
    assert "| fam | abl | 6 (3×2) |" in table and table.count("| yes |") == 1 and table.count("| no |") == 1


def test_compare_pairs_only_cells_both_arms_ran() -> None:
    runs = [r for r in _runs() if not (r["arm"] == "abl" and r["seed"] == 2)]
    abl = ab.compare(runs, n_boot=50)[0]
    # Pairs: seeds 0, 1 on folds 1, 2; differences 0, 1, 0, 1: p = 2/4 (patterns of the two ones).
    assert (abl["pairs"], abl["seeds"], abl["sign_flip_p"]) == (4, [0, 1], pytest.approx(0.5))
    # Pooled over the 2 paired seeds only (2 subjects each): TP 2, FN 2, F1 = 4 / (4 + 2) = 2/3.
    assert abl["per_fold"][0]["seeds"] == [0, 1] and abl["per_fold"][0]["ablation"] == pytest.approx(2 / 3)


def test_compare_refuses_different_test_subjects() -> None:
    runs = _runs()
    runs[1]["subjects"] = ["S1a", "S9z"]
    with pytest.raises(ValueError, match="fam/abl fold 1: test subjects differ"):
        ab.compare(runs, n_boot=10)
