"""The model families side by side on the synthetic learning set, trained on one CPU thread.

    .venv/bin/python benchmarks/models.py [--layout disfa] [--models a,b] [--json PATH]

Builds the set of ``tests/learning_data.py`` (8 identity groups from ../shared/media, subject-
exclusive split, fold 1 held out), trains every model of ``RECIPES`` (the families and the
ablations the learning test trains, with the same recipes) and prints one Markdown table:
held-out per-AU F1 and mean F1 (thresholds tuned on the validation subjects), the best trivial
predictor on the same test labels, recall at low (A-B, levels 1-2) and high (D-E, levels 4-5)
generator intensity, parameter count and training throughput (samples per second of this
process's CPU time on one thread, and of wall time). Writes the numbers as JSON to ``--json``.

The default layout is ``disfa`` because the generator writes intensities only there (DISFA's
0-5 label files; occurrence = level >= 2, so A frames are negatives and count in "recall A-B" as
the share of sub-threshold activity predicted positive). ``--layout manifest`` gives the set the
learning test uses (with unknown labels, without intensities: the recall columns stay empty).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _fmt(v: "float | None", digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def markdown_table(results: list[dict[str, Any]], aus: list[str]) -> str:
    """One row per model: F1 per AU, mean F1 vs the best trivial predictor, recalls, size, speed."""
    head = ["model", "family", "params (M)", "train samples/s (CPU)", *aus, "mean F1", "best trivial",
            "recall A–B", "recall D–E"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["model"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['samples_per_cpu_s']:.1f}",
                 *(_fmt(r["f1"][a], 2) for a in aus), _fmt(r["mean_f1"]), _fmt(r["trivial_best"]),
                 _fmt(r["recall_low"], 2), _fmt(r["recall_high"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    """Train, evaluate and tabulate; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="disfa", choices=("disfa", "manifest"),
                        help="generator layout of the set (disfa carries intensities)")
    parser.add_argument("--models", default="", help="comma-separated subset of the recipes' models")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "models.json"),
                        help="where to write the results as JSON")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))       # tests/ is not an installed package
    import torch

    from tests.learning_data import LEARNING_SET, build_learning_set, evaluate, train
    from tests.learning_recipes import RECIPES
    from components.models import model_info

    torch.set_num_threads(1)
    names = [n for n in args.models.split(",") if n] or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"no recipe for {unknown}; known: {list(RECIPES)}")
    config = replace(LEARNING_SET, layout=args.layout)
    start = time.perf_counter()
    data = build_learning_set(config)
    print(f"learning set ({args.layout}): {len(data.rows['subject'])} frames, splits "
          f"{ {k: len(v) for k, v in data.splits.items()} } subjects, built/loaded in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    results: list[dict[str, Any]] = []
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(done: list[dict[str, Any]]) -> Path:
        """The JSON so far (rewritten after every model: a long run cut short keeps its rows)."""
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                   "load_average": os.getloadavg(), "python": platform.python_version()}
        out.write_text(json.dumps({"machine": machine, "set": asdict(config), "splits": data.splits,
                                   "results": done}, indent=2, default=str) + "\n")
        return out

    for name in names:
        run = train(name, data)
        ev = evaluate(run.model, data)
        results.append({
            "model": name, "family": model_info(name).family,
            "params": sum(p.numel() for p in run.model.parameters()),
            "samples_per_cpu_s": run.samples / run.cpu_seconds, "samples_per_s": run.samples_per_s,
            "train_seconds": run.seconds, "train_cpu_seconds": run.cpu_seconds, "samples": run.samples,
            "loss_history": run.history, "recipe": {k: v for k, v in asdict(RECIPES[name]).items()},
            **{k: ev[k] for k in ("f1", "mean_f1", "thresholds", "trivial", "trivial_best", "recall_low",
                                  "recall_high")},
        })
        print(f"{name}: mean F1 {ev['mean_f1']:.3f} (best trivial {ev['trivial_best']:.3f}), "
              f"{run.cpu_seconds:.0f} s CPU", flush=True)
        write(results)
    aus = list(results[0]["f1"]) if results else []
    print()
    print(markdown_table(results, aus))
    print(f"\nwrote {write(results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
