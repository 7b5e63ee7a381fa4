"""Variants of one model's learning recipe over folds and seeds, in parallel processes, on a GPU
when there is one: held-out mean F1 against the best trivial predictor per run.

    .venv/bin/python benchmarks/recipe_sweep.py --model pairwise_rank_small \
        --variants '{"rank6": {"pairwise_epochs": [["rank", 6], ["uncertainty", 2], ["mapping", 8]]}}' \
        [--folds 1,2,3] [--seeds 0] [--layout manifest] [--set frames_per_video=80] [--device cuda]
        [--procs 8] [--json PATH]

The recipe is ``tests/learning_recipes.RECIPES[--model]``; each variant replaces some of its fields
(``Recipe``'s names; lists become tuples, ``augment`` takes ``"light"`` or ``null``). The variant
``recipe`` (the recipe as it stands) always runs too, so every variant is compared with it on the
same folds and seeds. Each run trains with ``tests.learning_data.train`` and scores with its
``evaluate`` (thresholds tuned on the validation subjects, the trivial predictors on the test
labels), as the slow learning test does, on the recipe's set (``recipe_set``: the shared set with
the recipe's ``data`` fields; ``--set`` changes integer fields of it on top, e.g. longer videos). Each
set is built (or read from the cache) once before the processes start; a run's failure is recorded
and the others go on.

What it is for: finding a recipe that learns before a slow CPU test is asked to show it. A GPU's
numerics differ from the CPU's, so a recipe chosen here is then checked on CPU by the test itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def recipe_for(model: str, overrides: dict[str, Any]) -> Any:
    """``RECIPES[model]`` with ``overrides`` (JSON values) applied."""
    from tests.learning_recipes import LIGHT_AUGMENT, RECIPES

    fields = {}
    for k, v in overrides.items():
        if k == "augment":
            v = {"light": LIGHT_AUGMENT, None: None}[v]
        elif isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        fields[k] = v
    return replace(RECIPES[model], **fields)


def job_set(recipe: Any, job: dict[str, Any]) -> Any:
    """The learning set of one run: the recipe's (``Recipe.data``), then ``--set`` on top."""
    from tests.learning_data import LEARNING_SET

    return replace(LEARNING_SET, layout=job["layout"], fold=job["fold"], **{**dict(recipe.data), **job["set"]})


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from tests.learning_data import build_learning_set, evaluate, train

    torch.set_num_threads(1)
    out = {k: job[k] for k in ("variant", "fold", "seed")}
    try:
        recipe = recipe_for(job["model"], job["overrides"])
        data = build_learning_set(job_set(recipe, job))
        t0 = time.perf_counter()
        run = train(job["model"], data, recipe, seed=job["seed"], device=job["device"])
        res = evaluate(run.model, data)
        out.update(mean_f1=round(float(res["mean_f1"]), 4), trivial_best=round(float(res["trivial_best"]), 4),
                   margin=round(float(res["mean_f1"] - res["trivial_best"]), 4),
                   seconds=round(time.perf_counter() - t0, 1),
                   last_losses={k: round(v[-1], 4) for k, v in (run.stage_history or {"": run.history}).items()})
    except Exception as e:   # one run's failure must not cost the sweep
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    return out


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: runs, how many beat the trivial predictor, mean and worst margin."""
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in results):
        ok = [r for r in results if r["variant"] == variant]
        done = [r for r in ok if "margin" in r]
        margins = [r["margin"] for r in done]
        rows.append({"variant": variant, "runs": len(ok), "failed": len(ok) - len(done),
                     "beat_trivial": sum(m > 0 for m in margins),
                     "mean_margin": round(statistics.fmean(margins), 4) if margins else None,
                     "worst_margin": min(margins) if margins else None,
                     "by_fold": {f"{r['fold']}/{r['seed']}": r["margin"] for r in done}})
    return rows


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model of tests/learning_recipes.RECIPES")
    p.add_argument("--variants", default="{}", help="JSON: name -> recipe fields to replace")
    p.add_argument("--folds", default="1,2,3")
    p.add_argument("--seeds", default="0")
    p.add_argument("--layout", default="manifest", choices=("manifest", "disfa"))
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--procs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--json", default="", help="write every run and the summary here")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=INT",
                   help="a LearningSetConfig field of the set (e.g. frames_per_video=80); repeatable")
    args = p.parse_args(argv)

    from tests.learning_data import LEARNING_SET, build_learning_set
    from tests.learning_recipes import RECIPES

    if args.model not in RECIPES:
        p.error(f"--model {args.model!r} has no recipe; recipes: {', '.join(RECIPES)}")
    variants = {"recipe": {}, **json.loads(args.variants)}
    for name, overrides in variants.items():
        try:   # a misspelt field or a bad value fails here, before any training
            recipe_for(args.model, overrides)
        except (TypeError, KeyError, ValueError) as e:
            fields = ", ".join(f.name for f in dataclasses.fields(RECIPES[args.model]))
            p.error(f"variant {name!r}: {e}; Recipe fields: {fields}; augment takes \"light\" or null")
    try:
        set_fields = {k: int(v) for k, v in (x.split("=", 1) for x in args.set)}
        replace(LEARNING_SET, **set_fields)
    except (ValueError, TypeError) as e:
        fields = ", ".join(f.name for f in dataclasses.fields(LEARNING_SET))
        p.error(f"--set {args.set}: {e}; LearningSetConfig fields: {fields} (integers)")
    jobs = [{"model": args.model, "variant": v, "overrides": o, "fold": f, "seed": s, "layout": args.layout,
             "device": args.device, "set": set_fields}
            for f in (int(x) for x in args.folds.split(",")) for s in (int(x) for x in args.seeds.split(","))
            for v, o in variants.items()]
    for cfg in {replace(job_set(recipe_for(args.model, j["overrides"]), j), fold=1) for j in jobs}:
        build_learning_set(cfg)   # render each set once, before the processes
    print(f"{len(jobs)} runs of {args.model} on {args.device}, {args.procs} processes", flush=True)
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.procs) as pool:
        results = pool.map(_run, jobs, chunksize=1)
    summary = summarise(results)
    print(f"\n{args.model}, {args.layout}, folds {args.folds}, seeds {args.seeds} ({time.perf_counter() - t0:.0f} s):")
    for r in summary:
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        print(f"  {r['variant']:<24} beats trivial {r['beat_trivial']}/{r['runs'] - r['failed']}{failed}"
              f"  mean margin {r['mean_margin']}  worst {r['worst_margin']}  {r['by_fold']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "layout": args.layout, "set": set_fields, "device": args.device,
                                               "variants": variants, "runs": results, "summary": summary}, indent=1))
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
