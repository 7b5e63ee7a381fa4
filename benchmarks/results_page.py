"""Write docs/results.md from the JSON files the benchmarks leave in benchmarks/results/.

    python benchmarks/results_page.py            # rewrites docs/results.md

Every dated figure of the project lives in those JSON files; this page is generated from them
so the README carries no figure that can go stale. Each section names the command that makes
the file, the date it was measured (its ``measured`` key, else the date the file was last committed), the machine it recorded, the top-level
figures, and, for a list of result rows, a table. Unknown files are rendered the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

COMMANDS = {
    "demo.json": ("The demo", "facsflow demo (its demo_summary.json)"),
    "preprocess.json": ("Preprocessing throughput", "python benchmarks/preprocess.py"),
    "train.json": ("Ray Train overhead, 384-sample epochs", "python benchmarks/train_overhead.py --repeats 2"),
    "train_1536.json": ("Ray Train overhead, 1,536-sample epochs", "python benchmarks/train_overhead.py --copies 24"),
    "train_gpu.json": ("GPU training and inference per family, and the Ray Train loop on one GPU",
                       "python benchmarks/gpu_all.py --skip overhead preprocess"),
    "serve_gpu.json": ("GPU forward passes of the default ensemble's image members",
                       "python benchmarks/gpu_all.py --skip overhead preprocess"),
    "serve.json": ("Serving", "python benchmarks/serve_bench.py [--overhead]; python benchmarks/serve_load.py"),
    "models.json": ("Model families on the synthetic DISFA-layout set", "python benchmarks/models.py"),
    "label.json": ("Labelling a store with a teacher", "python benchmarks/label.py"),
    "distill.json": ("Distillation worked example: a student of the built-in teacher", "python benchmarks/distill_demo.py"),
    "pretrained.json": ("Random vs pretrained initialisation per family", "python benchmarks/pretrained.py"),
    "video_jobs.json": ("Long videos as jobs: peak memory by length, frames per CPU-second",
                        "python benchmarks/video_jobs.py --minutes 5 15 60"),
    "live.json": ("Live on one CPU core, and /v1/stream latency", "python benchmarks/live.py"),
    "train_input.json": ("Training data path per CPU core: old, per-epoch decode, crop cache",
                         "python benchmarks/train_input.py --store STORE --epochs 2"),
    "ablations.json": ("Ablations: each family's full model vs each ablation over seeds x folds",
                       "python benchmarks/ablations.py (the exact commands: the command figure below)"),
}


def committed_date(path: Path) -> str:
    """Date of the last commit that touched ``path`` (``uncommitted`` when none)."""
    out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    return out or "uncommitted"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list)) for x in v):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine")
    if m is None:
        found = [v["machine"] for v in doc.values() if isinstance(v, dict) and isinstance(v.get("machine"), dict)]
        m = found[0] if found else None
    if not isinstance(m, dict):
        return "not recorded"
    return "; ".join(f"{k} {_fmt(v)}" for k, v in m.items())


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cols = [c for c in rows[0] if all(not isinstance(r.get(c), (dict, list)) for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return lines


def section(path: Path) -> list[str]:
    """The Markdown section of one result file."""
    doc = json.loads(path.read_text())
    title, command = COMMANDS.get(path.name, (path.stem, f"(the benchmark that writes {path.name})"))
    when = f"measured {doc['measured']}" if "measured" in doc else f"committed {committed_date(path)}"
    out = [f"## {title}", "", f"`{command}` → `benchmarks/results/{path.name}`, {when}.", "", f"Machine: {_machine(doc)}.", ""]
    scalars = {k: v for k, v in doc.items() if not isinstance(v, (dict, list)) or
               (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))}
    if scalars:
        out += ["| figure | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in scalars.items()] + [""]
    for k, v in doc.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out += [f"**{k}**", ""] + _table(v) + [""]
        elif isinstance(v, dict) and k != "machine":
            flat = {kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}
            if flat:
                out += [f"**{k}**: " + "; ".join(f"{kk} {_fmt(vv)}" for kk, vv in flat.items()), ""]
    return out


def render(results: Path = RESULTS) -> str:
    lines = ["# Measured results", "",
             "Generated by `python benchmarks/results_page.py` from `benchmarks/results/*.json`; do not edit by",
             "hand. Ratios compare runs made side by side in one benchmark run; absolute rates hold only",
             "for the machine named in each section.", ""]
    files = sorted(results.glob("*.json"), key=lambda p: (p.name not in COMMANDS, list(COMMANDS).index(p.name)
                                                             if p.name in COMMANDS else 0, p.name))
    for path in files:
        lines += section(path)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = p.parse_args(argv)
    args.out.write_text(render(args.results))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
