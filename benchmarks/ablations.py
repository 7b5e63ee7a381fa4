"""Each family's full model against each of its ablations, over seeds x folds, with the paired tests
that tell a difference from run-to-run noise.

    .venv/bin/python benchmarks/ablations.py [--families sev-net,to-sequence,lrp-arl-ff,pairwise-rank]
                                             [--seeds 0,1,2] [--folds 1,2,3] [--layout manifest]
                                             [--arms full,no_text] [--every 2] [--boot 2000] [--json PATH]
    .venv/bin/python benchmarks/ablations.py --merge a.json b.json [--json PATH]

(run one process per seed, or per group of arms, in parallel and ``--merge`` their JSONs.)

For each family the full model and every ablation (``FAMILIES``: a registered ablation variant or
a configuration override) are trained with THE SAME recipe, the full model's entry of
``tests/learning_recipes.py``'s ``RECIPES`` (CPU, one thread), on the learning set (8 identity groups
from ../shared/media, 2 subjects each, 3 videos of 40 frames, subject-exclusive split) held out on
each fold, once per seed, and scored on the held-out subjects (thresholds tuned on the validation
subjects). Where an ablation's own ``RECIPES`` entry differs (to-sequence's appearance-only
variant trains there with light augmentation, the full model without), the JSON says so in
``recipe_note``: here both arms get the full model's recipe, so a gap is the part taken out, not
the recipe. ``--every N`` trains on every N-th frame of each video (all arms alike; neighbouring
frames nearly repeat), to make 3 seeds x 3 folds affordable on a CPU.

Statistics per (family, ablation), full − ablation (``compare``):

* per seed x fold, the mean F1 of both arms; the sign-flip permutation test over those paired
  differences (``components.metrics.resampling.sign_flip_test``; exact, 9 pairs: smallest
  attainable p 2/512 = 0.0039). **Significant means p < 0.05 on this test**: it is the one that
  counts training noise (seeds) and split noise (folds);
* per fold, the paired subject bootstrap (``paired_bootstrap_counts``) on the seeds' predictions
  POOLED: each arm's confusion counts per test subject summed over its seeds, so the interval
  reflects which subjects were tested, not one seed's luck; and over all folds, the same on the
  folds' pooled counts side by side (each subject is tested in exactly one fold, so that
  bootstrap resamples all 16 subjects; thresholds stay each fold's own).

The JSON (``--json``, rewritten after every run: a run cut short keeps its rows) holds every run
with its per-subject counts, so ``--merge`` can join the JSONs of runs made in parallel (e.g. one
per seed) and recompute every statistic. Prints a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05
"""Significance level of the sign-flip test over seeds x folds."""


@dataclass(frozen=True)
class Ablation:
    """One part taken out: a registered variant and/or overrides of the registered configuration."""

    name: str
    model: str
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Family:
    """A family's full model (its recipe is the one every arm trains with) and its ablations."""

    family: str
    full: str
    ablations: tuple[Ablation, ...]


FAMILIES = (
    Family("sev-net", "sev_net_small", (Ablation("no_text", "sev_net_no_text"),
                                        Ablation("no_cross_attention", "sev_net_no_cross_attention"))),
    Family("to-sequence", "to_sequence_small", (
        Ablation("appearance_only", "to_sequence_appearance_only"),
        Ablation("independent_heads", "to_sequence_small", (("sequence_decoder", False),)))),
    Family("lrp-arl-ff", "lrp_arl_ff_small", (Ablation("no_lrp", "lrp_arl_ff_no_lrp"),
                                              Ablation("fixed_fusion", "lrp_arl_ff_fixed_fusion"),
                                              Ablation("no_graph", "lrp_arl_ff_no_graph"),
                                              Ablation("per_au_fusion", "lrp_arl_ff_per_au_fusion"))),
    Family("pairwise-rank", "pairwise_rank_small", (
        Ablation("no_uncertainty", "pairwise_rank_small", (("uncertainty", False),)),)),
)


def _fmt(v: "float | None", digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def compare(runs: list[dict[str, Any]], n_boot: int = 2000, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """The statistics of every (family, ablation) in ``runs``: full − ablation.

    A run is a dict with ``family``, ``arm`` ('full' or the ablation's name), ``seed``, ``fold``,
    ``mean_f1``, ``subjects`` (sorted test subject ids) and ``counts`` (``subject_counts``'s
    (4, n_subjects, n_AU) TP/FP/FN/TN). Only (seed, fold) cells where both arms ran are paired.
    Returns per comparison: the paired mean F1s, their mean difference and the exact sign-flip
    test over the pairs (``significant``: p < ``alpha``; with under 5 pairs nothing can be), and
    the paired subject bootstrap per fold and over all folds on the seeds' pooled counts.
    """
    from components.metrics.resampling import paired_bootstrap_counts, sign_flip_test

    out = []
    keys = list(dict.fromkeys((r["family"], r["arm"]) for r in runs if r["arm"] != "full"))
    for family, arm in keys:
        full = {(r["seed"], r["fold"]): r for r in runs if r["family"] == family and r["arm"] == "full"}
        abl = {(r["seed"], r["fold"]): r for r in runs if r["family"] == family and r["arm"] == arm}
        cells = sorted(set(full) & set(abl))
        if not cells:
            continue
        a = [full[c]["mean_f1"] for c in cells]
        b = [abl[c]["mean_f1"] for c in cells]
        flip = sign_flip_test(a, b)
        per_fold, pooled_a, pooled_b = [], [], []
        for fold in sorted({f for _, f in cells}):
            mine = [c for c in cells if c[1] == fold]
            subjects = full[mine[0]]["subjects"]
            for c in mine:
                if full[c]["subjects"] != subjects or abl[c]["subjects"] != subjects:
                    raise ValueError(f"{family}/{arm} fold {fold}: test subjects differ between runs")
            ca = np.sum([np.asarray(full[c]["counts"], float) for c in mine], axis=0)
            cb = np.sum([np.asarray(abl[c]["counts"], float) for c in mine], axis=0)
            pooled_a.append(ca)
            pooled_b.append(cb)
            boot = paired_bootstrap_counts(ca, cb, n_boot=n_boot)
            per_fold.append({"fold": fold, "seeds": [s for s, _ in mine], "full": boot["a"], "ablation": boot["b"],
                             "difference": boot["difference"], "low": boot["low"], "high": boot["high"],
                             "p_value": boot["p_value"], "n_subjects": boot["n_subjects"]})
        overall = paired_bootstrap_counts(np.concatenate(pooled_a, axis=1), np.concatenate(pooled_b, axis=1),
                                          n_boot=n_boot)
        out.append({
            "family": family, "ablation": arm, "model": abl[cells[0]]["model"],
            "overrides": abl[cells[0]].get("overrides", {}), "recipe_note": abl[cells[0]].get("recipe_note", ""),
            "pairs": len(cells), "seeds": sorted({s for s, _ in cells}), "folds": sorted({f for _, f in cells}),
            "full_mean_f1": float(np.mean(a)), "ablation_mean_f1": float(np.mean(b)),
            "full_sd": float(np.std(a, ddof=1)) if len(a) > 1 else None,
            "ablation_sd": float(np.std(b, ddof=1)) if len(b) > 1 else None,
            "mean_difference": flip["mean_difference"], "positive_pairs": int(sum(x > y for x, y in zip(a, b))),
            "sign_flip_p": flip["p_value"], "min_attainable_p": flip["min_p"],
            "significant": bool(flip["p_value"] < alpha),
            "pooled_difference": overall["difference"], "pooled_low": overall["low"], "pooled_high": overall["high"],
            "pooled_p": overall["p_value"], "pooled_subjects": overall["n_subjects"],
            "per_fold": per_fold,
            "pairs_mean_f1": [{"seed": s, "fold": f, "full": x, "ablation": y} for (s, f), x, y in zip(cells, a, b)],
        })
    return out


def markdown_table(comparisons: list[dict[str, Any]]) -> str:
    """One row per (family, ablation): mean F1 of both over the pairs, the difference, the sign-flip
    p and verdict, and the pooled subject bootstrap."""
    head = ["family", "ablation", "pairs (seeds×folds)", "full mean F1 (sd)", "ablation mean F1 (sd)",
            "full − ablation", "full better in", "sign-flip p (min)", "significant (p<0.05)",
            "subject bootstrap, pooled [95% CI], p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in comparisons:
        lines.append("| " + " | ".join([
            c["family"], c["ablation"], f"{c['pairs']} ({len(c['seeds'])}×{len(c['folds'])})",
            f"{_fmt(c['full_mean_f1'])} ({_fmt(c['full_sd'])})", f"{_fmt(c['ablation_mean_f1'])} ({_fmt(c['ablation_sd'])})",
            f"{c['mean_difference']:+.3f}", f"{c['positive_pairs']}/{c['pairs']}",
            f"{c['sign_flip_p']:.3f} ({_fmt(c['min_attainable_p'], 4)})", "yes" if c["significant"] else "no",
            f"{c['pooled_difference']:+.3f} [{c['pooled_low']:+.3f}, {c['pooled_high']:+.3f}], p={c['pooled_p']:.3f}",
        ]) + " |")
    return "\n".join(lines)


def load_fold(layout: str, fold: int) -> Any:
    """The learning set held out on ``fold``. The rendered rows do not depend on the fold (only
    the split does), so when this fold's cache is missing but another fold's is there, its rows
    are split anew (``_split``, the builder's own) instead of rendering the set again (~7 min)."""
    from tests.learning_data import LEARNING_SET, _split, build_learning_set, cache_root

    cfg = replace(LEARNING_SET, layout=layout, fold=fold)

    def cached(c: Any) -> bool:
        return (cache_root() / "learning" / c.key() / "rows.npz").is_file()

    if not cached(cfg):
        for other in range(1, cfg.folds + 1):
            ocfg = replace(cfg, fold=other)
            if cached(ocfg):
                base = build_learning_set(ocfg)
                return replace(base, config=cfg, splits=_split(cfg, base.rows))
    return build_learning_set(cfg)


def main(argv: "list[str] | None" = None) -> int:
    """Train, evaluate, compare and tabulate; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(f.family for f in FAMILIES))
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--folds", default="1,2,3", help="held-out folds of the set, comma-separated")
    parser.add_argument("--layout", default="manifest", choices=("manifest", "disfa"))
    parser.add_argument("--arms", default="",
                        help="comma-separated subset of arms to train ('full' and ablation names; default all): "
                             "split a family's arms over runs and --merge them")
    parser.add_argument("--every", type=int, default=2,
                        help="train on every n-th frame of each video (all arms alike)")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "ablations.json"))
    parser.add_argument("--merge", nargs="+", default=[],
                        help="JSON files of runs made apart (e.g. in parallel) to join into --json; trains nothing")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))       # tests/ is not an installed package
    import torch

    from components.metrics.resampling import subject_counts
    from components.thresholds import apply_thresholds
    from tests.learning_data import LEARNING_SET, evaluate, train
    from tests.learning_recipes import RECIPES, Recipe

    torch.set_num_threads(1)
    known = {f.family: f for f in FAMILIES}
    unknown = [f for f in args.families.split(",") if f and f not in known]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {list(known)}")
    families = [known[f] for f in args.families.split(",") if f]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    folds = [int(f) for f in args.folds.split(",") if f]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"command": " ".join(["python benchmarks/ablations.py", *(argv if argv is not None else sys.argv[1:])]),
                            "families": [f.family for f in families], "arms": args.arms or "all",
                            "seeds": seeds, "folds": folds,
                            "layout": args.layout, "every": args.every}

    def write() -> None:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                   "load_average": os.getloadavg(), "python": platform.python_version(),
                   "note": "2-core CPU machine, shared with other jobs (CPU seconds are this process's)"}
        comparisons = compare(runs, args.boot)
        out.write_text(json.dumps({
            "measured": time.strftime("%Y-%m-%d"), **meta, "boot": args.boot, "alpha": ALPHA,
            "significance": "sign-flip test over the seed x fold pairs of mean F1, p < 0.05",
            "bootstrap_pooling": "per fold, each arm's per-subject counts summed over the seeds",
            "machine": machine, "learning_set": asdict(LEARNING_SET), "comparisons": comparisons, "runs": runs,
        }, indent=2, default=str) + "\n")

    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        seen = set()
        for path, part in zip(args.merge, parts):
            for r in part["runs"]:
                key = (r["family"], r["arm"], r["seed"], r["fold"])
                if key in seen:
                    raise SystemExit(f"{path}: {key} ran twice in the merged files")
                seen.add(key)
                runs.append(r)
        meta = {"command": " ; ".join(p["command"] for p in parts) + " ; python benchmarks/ablations.py --merge "
                + " ".join(args.merge) + f" --json {args.json}",
                "families": sorted({r["family"] for r in runs}),
                "arms": sorted({f"{r['family']}/{r['arm']}" for r in runs}), "seeds": sorted({r["seed"] for r in runs}),
                "folds": sorted({r["fold"] for r in runs}), "layout": parts[0]["layout"],
                "every": sorted({r["every"] for r in runs})}
        seeds = []
    sets = {}
    for seed in seeds:
        for fold in folds:
            if fold not in sets:
                start = time.perf_counter()
                sets[fold] = load_fold(args.layout, fold)
                print(f"{args.layout} fold {fold}: {len(sets[fold].rows['subject'])} frames, test subjects "
                      f"{sets[fold].splits['test']}, loaded in {time.perf_counter() - start:.0f} s", flush=True)
            data = sets[fold]
            for fam in families:
                base = RECIPES.get(fam.full, Recipe())
                recipe = replace(base, every=max(base.every, args.every))
                arms = [a for a in (Ablation("full", fam.full), *fam.ablations)
                        if not args.arms or a.name in args.arms.split(",")]
                for arm in arms:
                    own = RECIPES.get(arm.model)
                    note = ""
                    if arm.model != fam.full and own is not None and replace(own, ablation=False) != replace(base, ablation=False):
                        diff = {k: v for k, v in asdict(own).items() if k != "ablation" and v != asdict(base)[k]}
                        note = f"own recipe differs ({diff}); trained with the full model's"
                    rec = replace(recipe, kwargs=tuple(recipe.kwargs) + arm.kwargs)
                    run = train(arm.model, data, rec, seed=seed)
                    ev = evaluate(run.model, data)
                    preds = apply_thresholds(ev["probs"], np.asarray(ev["thresholds"]))
                    subjects, counts = subject_counts(preds, ev["labels"], data.part("test")["subject"][ev["rows"]])
                    runs.append({
                        "family": fam.family, "arm": arm.name, "model": arm.model, "overrides": dict(arm.kwargs),
                        "recipe_note": note, "seed": seed, "fold": fold, "every": rec.every,
                        "mean_f1": ev["mean_f1"], "f1": ev["f1"], "trivial_best": ev["trivial_best"],
                        "train_cpu_seconds": run.cpu_seconds, "train_seconds": run.seconds, "samples": run.samples,
                        "loss_history": run.history, "subjects": [str(s) for s in subjects],
                        "counts": counts.astype(int).tolist(),
                    })
                    print(f"  seed {seed} fold {fold} {fam.family}/{arm.name}: mean F1 {ev['mean_f1']:.3f} "
                          f"(best trivial {ev['trivial_best']:.3f}), {run.cpu_seconds:.0f} s CPU", flush=True)
                    write()
    write()
    print()
    print(markdown_table(compare(runs, args.boot)))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
