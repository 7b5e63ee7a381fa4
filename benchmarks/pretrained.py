"""Random vs pretrained initialisation, per family, side by side in one run.

    .venv/bin/python benchmarks/pretrained.py [--sets disfa:1,manifest:1,manifest:2,manifest:3]
                                              [--families baseline,sev-net,pairwise-rank,lrp-arl-ff]
                                              [--json PATH]

For each family with a backbone in the weights catalogue, the same registered model and the same
training recipe (``tests/learning_recipes.py``: its ``RECIPES``, CPU, one thread) are trained twice
on each set, once from random weights (``pretrained=""``) and once from the catalogue entry the
family starts from, and scored on the held-out subjects (thresholds tuned on the validation
subjects). Per run: mean F1 with a 95 % subject-bootstrap CI, the best trivial predictor on the
same labels, and seconds per epoch (this process's CPU time, one thread); per pair: the paired
subject bootstrap of pretrained − random (CI and p) and, over the sets, a sign-flip test.

Sets: the learning set (8 identity groups from ../shared/media, 2 subjects each, 3 videos of 40
frames) in the DISFA layout (intensities, no unknown labels) held out on fold 1, and in the
manifest layout on each of its three folds. Families: baseline (EfficientNet-Lite0, ImageNet),
SEV-Net and pairwise-rank (their small configurations with EfficientNet-Lite0, ImageNet: the
catalogue has no ResNet-18 or VGG16), LRP+ARL+FF (its small configuration with FaceNet's
Inception-ResNet-V1 at 160 px). To-sequence is not here: its CNN reads grey+Sobel through the
paper's own limited-receptive-field layers, trained from scratch in the papers. Writes JSON
after every run (a run cut short keeps its rows) and prints a Markdown table.
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

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Arm:
    """One family's comparison: a registered model, the overrides that give it a catalogue
    backbone, and the entry it starts from in the pretrained arm."""

    family: str
    model: str
    kwargs: tuple[tuple[str, Any], ...]
    entry: str


ARMS = (
    Arm("baseline", "baseline_effnet_lite0_112", (), "efficientnet_lite0-imagenet"),
    Arm("sev-net", "sev_net_small", (("backbone", "efficientnet_lite0"),), "efficientnet_lite0-imagenet"),
    Arm("pairwise-rank", "pairwise_rank_small", (("backbone", "efficientnet_lite0"),), "efficientnet_lite0-imagenet"),
    Arm("lrp-arl-ff", "lrp_arl_ff_small", (("backbone", "inception_resnet_v1"), ("image_size", 160)),
        "inception_resnet_v1-facenet"),
)
SETS = ("disfa:1", "manifest:1", "manifest:2", "manifest:3")


def _fmt(v: "float | None", digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def _ci(c: dict[str, Any]) -> str:
    return f"{_fmt(c['estimate'])} [{_fmt(c['low'])}, {_fmt(c['high'])}]"


def markdown_table(results: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> str:
    """One row per family and set: random and pretrained mean F1 (95 % CI), trivial, the paired
    difference, s/epoch of each."""
    head = ["family", "set", "random mean F1 [95% CI]", "pretrained mean F1 [95% CI]", "best trivial",
            "pretrained − random [95% CI], p", "s/epoch random / pretrained"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pairs:
        r, q = (next(x for x in results if x["family"] == p["family"] and x["set"] == p["set"] and x["init"] == i)
                for i in ("random", "pretrained"))
        d = p["paired"]
        lines.append("| " + " | ".join([
            p["family"], p["set"], _ci(r["mean_f1_ci"]), _ci(q["mean_f1_ci"]), _fmt(r["trivial_best"]),
            f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], p={d['p_value']:.3f}",
            f"{r['seconds_per_epoch']:.0f} / {q['seconds_per_epoch']:.0f}"]) + " |")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="layout:fold, comma-separated")
    parser.add_argument("--families", default=",".join(a.family for a in ARMS))
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--every", type=int, default=2,
                        help="train on every n-th frame of each video (both arms alike; neighbours nearly repeat)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "pretrained.json"))
    parser.add_argument("--inits", default="random,pretrained",
                        help="which arms to train (one per process runs them in parallel; --merge pairs them)")
    parser.add_argument("--merge", nargs="+", default=[],
                        help="JSON files of runs over other sets (e.g. run in parallel) to join into --json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))       # tests/ is not an installed package
    import numpy as np
    import torch

    from components.metrics.resampling import (bootstrap_occurrence, paired_bootstrap_counts, sign_flip_test,
                                               subject_counts)
    from components.models import model_info
    from components.thresholds import apply_thresholds
    from tests.learning_data import LEARNING_SET, build_learning_set, evaluate, train
    from tests.learning_recipes import RECIPES, Recipe

    torch.set_num_threads(1)
    arms = [a for a in ARMS if a.family in args.families.split(",")]
    sets = [(s.split(":")[0], int(s.split(":")[1])) for s in args.sets.split(",") if s]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []

    def write() -> None:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                   "load_average": os.getloadavg(), "python": platform.python_version()}
        out.write_text(json.dumps({"machine": machine, "learning_set": asdict(LEARNING_SET), "results": results,
                                   "pairs": pairs, "sign_flip": sign_flips()}, indent=2, default=str) + "\n")

    def sign_flips() -> dict[str, Any]:
        """Per family over the sets it ran on: pretrained vs random mean F1 (paired by set)."""
        res = {}
        for arm in arms:
            mine = [p for p in pairs if p["family"] == arm.family]
            if len(mine) >= 2:
                res[arm.family] = sign_flip_test([p["paired"]["a"] for p in mine], [p["paired"]["b"] for p in mine])
        return res

    if args.merge:
        for path in args.merge:
            part = json.loads(Path(path).read_text())
            results += part["results"]
            pairs += part["pairs"]
        sets = []
    for layout, fold in sets:
        start = time.perf_counter()
        data = build_learning_set(replace(LEARNING_SET, layout=layout, fold=fold))
        label = f"{layout} fold {fold}"
        print(f"{label}: {len(data.rows['subject'])} frames, {len(data.splits['test'])} test subjects, "
              f"built/loaded in {time.perf_counter() - start:.0f} s", flush=True)
        for arm in arms:
            base = RECIPES.get(arm.model, Recipe())
            counts = {}
            for init, entry in (("random", ""), ("pretrained", arm.entry)):
                if init not in args.inits.split(","):
                    continue
                recipe = replace(base, every=max(base.every, args.every),
                                 kwargs=tuple(base.kwargs) + arm.kwargs + (("pretrained", entry),))
                run = train(arm.model, data, recipe)
                ev = evaluate(run.model, data)
                preds = apply_thresholds(ev["probs"], np.asarray(ev["thresholds"]))
                subjects = data.part("test")["subject"][ev["rows"]]
                _, counts[init] = subject_counts(preds, ev["labels"], subjects)
                ci = bootstrap_occurrence(preds, ev["labels"], subjects, n_boot=args.boot)["mean_f1"]
                epochs = (sum(n for _, n in recipe.pairwise_epochs) if recipe.pairwise_epochs else recipe.epochs)
                results.append({
                    "family": arm.family, "model": arm.model, "set": label, "init": init,
                    "init_weights": entry or "random", "overrides": dict(arm.kwargs), "every": recipe.every,
                    "mean_f1": ev["mean_f1"], "mean_f1_ci": ci, "f1": ev["f1"], "trivial_best": ev["trivial_best"],
                    "beats_trivial": bool(ci["low"] is not None and ci["low"] > ev["trivial_best"]),
                    "seconds_per_epoch": run.cpu_seconds / epochs, "train_cpu_seconds": run.cpu_seconds,
                    "loss_history": run.history, "params": sum(p.numel() for p in run.model.parameters()),
                    "subject_counts": counts[init].tolist(),
                    "paper": model_info(arm.model).paper,
                })
                print(f"  {arm.family} {init:<10}: mean F1 {_ci(ci)} (best trivial {ev['trivial_best']:.3f}), "
                      f"{run.cpu_seconds / epochs:.0f} s CPU per epoch", flush=True)
                write()
            if len(counts) == 2:
                paired = paired_bootstrap_counts(counts["pretrained"], counts["random"], n_boot=args.boot)
                pairs.append({"family": arm.family, "set": label, "paired": paired})
                print(f"  {arm.family}: pretrained − random {paired['difference']:+.3f} "
                      f"[{paired['low']:+.3f}, {paired['high']:+.3f}], p={paired['p_value']:.3f}", flush=True)
            write()
    if args.merge:
        # Arms trained in separate processes are paired here from their per-subject counts.
        for r in results:
            if r["init"] != "pretrained" or "subject_counts" not in r:
                continue
            if any(p["family"] == r["family"] and p["set"] == r["set"] for p in pairs):
                continue
            rand = next((x for x in results if x["family"] == r["family"] and x["set"] == r["set"]
                         and x["init"] == "random" and "subject_counts" in x), None)
            if rand is not None:
                pairs.append({"family": r["family"], "set": r["set"], "paired": paired_bootstrap_counts(
                    np.asarray(r["subject_counts"]), np.asarray(rand["subject_counts"]), n_boot=args.boot)})
    print()
    print(markdown_table(results, pairs))
    for fam, t in sign_flips().items():
        print(f"sign-flip over sets, {fam}: mean difference {t.get('mean_difference', float('nan')):+.3f}, "
              f"p={t['p_value']:.3f}")
    write()
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
