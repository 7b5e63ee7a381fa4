"""Scaling plan: workers, hours and cost per stage, from measured benchmark figures.

    python benchmarks/scaling_plan.py                      # writes docs/scaling.md
    python benchmarks/scaling_plan.py --cpu-hour-usd 0.03 --gpu-hour-usd 0.9 --target-hours 2

Reads the figures the benchmark scripts write (defaults under benchmarks/results/):

- preprocess.json: ``frames_per_s_per_core`` (end to end, one core); optional
  ``speedup_1_to_2_cpus`` (measured speed-up from 1 to 2 CPUs, taken as parallel efficiency / 2).
- train.json: ``samples_per_s_per_worker`` (one CPU worker, Ray Train loop); optional
  ``cpus_per_worker`` (default 1), ``gpu_samples_per_s_per_worker`` (what one GPU consumes:
  ``train_step`` alone), ``gpu_ray_loop_samples_per_s`` (what the Ray Train loop reached on one GPU
  node with its own CPUs feeding it; the GPU training rows plan with it when measured, as the
  rate actually reached) and ``data_pipeline_samples_per_s`` (the input pipeline on one core).
- scale.json (benchmarks/scale.py, optional): the million-row run, every stage on a 100 k and a
  1 M row store; its table, the larger-over-smaller comparison and what Aff-Wild2 on N GPU nodes
  would take at its rates (benchmarks/scale_page.py renders that section).
- serve.json: ``images_per_s_per_core`` (Serve end to end, one CPU); optional
  ``gpu_images_per_s`` (member forward passes batched on one GPU; the face pipeline stays on CPU) and ``video_frames_per_s_per_core`` (batch prediction).

A key may sit at the top level or anywhere inside the JSON (the shallowest match wins; a few
spellings are accepted, see FIGURES). A missing file or figure is reported as "not measured" and
nothing is made up for it. Scaling beyond what was measured is assumed linear, and the page says so.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DATASETS", "FIGURES", "Figure", "StagePlan", "find_figure", "load_figures", "preprocess_plan",
           "train_plan", "serve_plan", "bottleneck", "render", "main"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

DATASETS: dict[str, dict[str, int]] = {
    # frames: approximate labelled frames per dataset; folds: subject-exclusive CV folds used in
    # the papers' protocols (BP4D/DISFA 3-fold; Aff-Wild2 one official train/validation split).
    "BP4D": {"frames": 147_000, "folds": 3},
    "DISFA": {"frames": 131_000, "folds": 3},
    "Aff-Wild2": {"frames": 2_600_000, "folds": 1},
}

FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (benchmark file stem, accepted keys, preferred first)
    "frames_per_s_per_core": ("preprocess", ("frames_per_s_per_core", "frames_per_second_per_core", "fps_per_core")),
    "speedup_1_to_2_cpus": ("preprocess", ("speedup_1_to_2_cpus", "speedup_1_to_2", "speedup_2_cpus")),
    "samples_per_s_per_worker": ("train", ("samples_per_s_per_worker", "samples_per_second_per_worker",
                                           "ray_samples_per_s")),
    "cpus_per_worker": ("train", ("cpus_per_worker",)),
    "gpu_samples_per_s_per_worker": ("train", ("gpu_samples_per_s_per_worker", "gpu_samples_per_s")),
    "gpu_ray_loop_samples_per_s": ("train", ("gpu_ray_loop_samples_per_s",)),
    "data_pipeline_samples_per_s": ("train", ("data_pipeline_samples_per_s", "pipeline_samples_per_s")),
    "images_per_s_per_core": ("serve", ("images_per_s_per_core", "requests_per_s_per_core",
                                        "faces_per_s_per_core")),
    "gpu_images_per_s": ("serve", ("gpu_images_per_s", "gpu_faces_per_s")),
    "video_frames_per_s_per_core": ("serve", ("video_frames_per_s_per_core", "predict_frames_per_s_per_core")),
}


@dataclass(frozen=True)
class Figure:
    """A measured number and where it came from, or why there is none."""

    value: "float | None"
    source: str

    @property
    def measured(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class StagePlan:
    """Resources for one stage on one dataset: ``units`` of ``unit`` (core, CPU worker or GPU)."""

    stage: str
    dataset: str
    unit: str
    unit_hours: float
    units: int
    wall_hours: float
    cost_usd: float
    capped: bool
    cap: int
    min_wall_hours: float
    """Wall time with every unit the cap allows: how fast this stage can go at all."""


def find_figure(data: Any, keys: "tuple[str, ...]") -> "tuple[float, str] | None":
    """(value, dotted key path) of the shallowest numeric entry named by one of ``keys``."""
    level: list[tuple[str, Any]] = [("", data)]
    while level:
        for key in keys:
            for prefix, node in level:
                if isinstance(node, dict) and isinstance(node.get(key), (int, float)) \
                        and not isinstance(node.get(key), bool):
                    return float(node[key]), f"{prefix}{key}"
        nxt: list[tuple[str, Any]] = []
        for prefix, node in level:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            nxt.extend((f"{prefix}{k}.", v) for k, v in items if isinstance(v, (dict, list)))
        level = nxt
    return None


def load_figures(paths: dict[str, Path]) -> dict[str, Figure]:
    """Every figure of FIGURES from the given benchmark files (stem → path)."""
    cache: dict[str, Any] = {}
    out: dict[str, Figure] = {}
    for name, (stem, keys) in FIGURES.items():
        path = paths[stem]
        if stem not in cache:
            try:
                cache[stem] = json.loads(path.read_text())
            except FileNotFoundError:
                cache[stem] = FileNotFoundError
            except json.JSONDecodeError as e:
                raise SystemExit(f"scaling_plan: {path} is not valid JSON: {e}") from None
        if cache[stem] is FileNotFoundError:
            out[name] = Figure(None, f"not measured ({_rel(path)} missing)")
            continue
        hit = find_figure(cache[stem], keys)
        out[name] = (Figure(hit[0], f"{_rel(path)}: {hit[1]}") if hit
                     else Figure(None, f"not measured (no {keys[0]} in {_rel(path)})"))
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _size(unit_hours: float, target_hours: float, cap: int, efficiency: float) -> tuple[int, float, bool]:
    """(units, wall hours, capped) to do ``unit_hours`` of work in ``target_hours``."""
    units = max(1, math.ceil(unit_hours / (target_hours * efficiency) - 1e-9))
    capped = units > cap
    units = min(units, cap)
    return units, unit_hours / (units * efficiency), capped


def preprocess_plan(dataset: str, frames: int, frames_per_s_per_core: float, cpu_hour_usd: float,
                    target_hours: float, max_cores: int, efficiency: float = 1.0) -> StagePlan:
    """Cores to preprocess ``frames`` in ``target_hours``; cost = cores x wall hours x price."""
    core_hours = frames / frames_per_s_per_core / 3600
    cores, wall, capped = _size(core_hours, target_hours, max_cores, efficiency)
    return StagePlan("preprocess", dataset, "core", core_hours, cores, wall, cores * wall * cpu_hour_usd, capped,
                     max_cores, core_hours / (max_cores * efficiency))


def train_plan(dataset: str, frames: int, folds: int, epochs: int, samples_per_s_per_worker: float,
               worker_hour_usd: float, target_hours: float, max_workers: int, unit: str = "CPU worker",
               efficiency: float = 1.0) -> StagePlan:
    """DDP workers to train every fold for ``epochs`` in ``target_hours``.

    k-fold cross-validation trains k models on (k-1)/k of the frames each: frames x (k-1) samples
    per epoch in all; a single split (k=1) is counted as all frames (an upper bound).
    """
    samples = frames * max(folds - 1, 1) * epochs
    worker_hours = samples / samples_per_s_per_worker / 3600
    workers, wall, capped = _size(worker_hours, target_hours, max_workers, efficiency)
    return StagePlan("train", dataset, unit, worker_hours, workers, wall, workers * wall * worker_hour_usd, capped,
                     max_workers, worker_hours / (max_workers * efficiency))


def serve_plan(load_per_s: float, per_unit_per_s: float, unit_hour_usd: float) -> tuple[int, float]:
    """(units, USD per hour) to sustain ``load_per_s`` images/s at ``per_unit_per_s`` each."""
    units = max(1, math.ceil(load_per_s / per_unit_per_s - 1e-9))
    return units, units * unit_hour_usd


def bottleneck(plans: "list[StagePlan]", figures: dict[str, Figure]) -> list[str]:
    """Sentences naming where time and money go and which limit bites next, from the numbers only.

    ``plans`` are the chosen plans (one training option per dataset), not alternatives.
    """
    lines: list[str] = []
    for p in plans:
        if p.capped:
            lines.append(f"{p.stage} on {p.dataset} hits the cap of {p.units} {p.unit}s: {p.wall_hours:.1f} h "
                         "instead of the target; raise the cap (more nodes) or make the per-unit rate faster.")
    if plans:
        slow = max(plans, key=lambda p: p.min_wall_hours)
        lines.append(f"The slowest stage even with the whole cluster is {slow.stage} on {slow.dataset}: "
                     f"{slow.min_wall_hours:.2f} h with all {slow.cap} {slow.unit}s; to finish sooner, that stage's "
                     "per-unit rate (or the cap) must grow first.")
        worst = max(plans, key=lambda p: p.cost_usd)
        total = sum(p.cost_usd for p in plans)
        share = worst.cost_usd / total if total else 0.0
        lines.append(f"The largest cost is {worst.stage} on {worst.dataset}: ${worst.cost_usd:,.2f} of "
                     f"${total:,.2f} ({share:.0%}), {worst.unit_hours:,.1f} {worst.unit}-hours.")
    gpu = figures.get("gpu_samples_per_s_per_worker")
    pipe = figures.get("data_pipeline_samples_per_s")
    if gpu and pipe and gpu.measured and pipe.measured:
        cores = math.ceil(gpu.value / pipe.value - 1e-9)
        lines.append(f"A GPU worker consumes {gpu.value:,.0f} samples/s and one core of input pipeline makes "
                     f"{pipe.value:,.0f}: each GPU needs {cores} CPU core(s) of decoding and augmentation, "
                     "or it waits on its input.")
        loop = figures.get("gpu_ray_loop_samples_per_s")
        if loop and loop.measured:
            lines.append(f"Measured: the Ray Train loop on one GPU node reached {loop.value:,.0f} samples/s, "
                         f"{loop.value / gpu.value:.0%} of what its GPU consumes; the GPU rows above plan with "
                         "that reached rate.")
    return lines


def gpu_train_rate(figures: dict[str, Figure]) -> Figure:
    """The GPU training rate to plan with: the Ray loop's reached rate where measured (input-bound
    on the measured node), else what the GPU consumes."""
    loop = figures.get("gpu_ray_loop_samples_per_s")
    return loop if loop is not None and loop.measured else figures["gpu_samples_per_s_per_worker"]


def _fmt(x: float) -> str:
    return f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def render(figures: dict[str, Figure], args: argparse.Namespace, command: str) -> str:
    """The Markdown page."""
    out = ["# Scaling plan", "",
           f"Generated by `{command}` from the benchmark figures below; regenerate it with that command "
           "when the figures change. Do not edit by hand.", "",
           "## Inputs", "", "| figure | value | source |", "|---|---|---|"]
    for name, fig in figures.items():
        out.append(f"| {name} | {_fmt(fig.value) if fig.measured else '—'} | {fig.source} |")
    out += ["", f"Prices: ${args.cpu_hour_usd}/CPU-core-hour, ${args.gpu_hour_usd}/GPU-hour (GPU node with its "
            f"CPUs). Target wall time per stage: {args.target_hours} h; caps: {args.max_cores} cores, "
            f"{args.max_gpus} GPUs. Training: {args.epochs} epochs per fold.", "",
            "| dataset | frames | folds |", "|---|---|---|"]
    out += [f"| {d} | {v['frames']:,} | {v['folds']} |" for d, v in DATASETS.items()]
    plans: list[StagePlan] = []
    eff = 1.0
    sp = figures["speedup_1_to_2_cpus"]
    if sp.measured:
        eff = min(1.0, sp.value / 2)
    out += ["", "## Preprocessing", ""]
    fps = figures["frames_per_s_per_core"]
    if not fps.measured:
        out.append(f"- {fps.source[0].upper()}{fps.source[1:]}.")
    else:
        out += [f"Parallel efficiency {eff:.2f} ({'from the measured 1→2 CPU speed-up' if sp.measured else 'assumed linear: not measured'}).", "",
                "| dataset | core-hours | cores | wall h | cost USD |", "|---|---|---|---|---|"]
        for d, v in DATASETS.items():
            p = preprocess_plan(d, v["frames"], fps.value, args.cpu_hour_usd, args.target_hours, args.max_cores, eff)
            plans.append(p)
            out.append(f"| {d} | {_fmt(p.unit_hours)} | {p.units}{' (cap)' if p.capped else ''} | "
                       f"{_fmt(p.wall_hours)} | {_fmt(p.cost_usd)} |")
    cpw = figures["cpus_per_worker"].value or 1.0
    out += ["", "## Training", "", "DDP scaling beyond the measured workers is assumed linear; a CPU worker "
            f"is {cpw:g} core(s) ({'measured' if figures['cpus_per_worker'].measured else 'assumed: not measured'}).",
            ]
    rows = []
    chosen: dict[str, StagePlan] = {}
    for label, fig, price, cap in (("CPU worker", figures["samples_per_s_per_worker"], args.cpu_hour_usd * cpw,
                                    max(1, int(args.max_cores // cpw))),
                                   ("GPU", gpu_train_rate(figures), args.gpu_hour_usd, args.max_gpus)):
        if not fig.measured:
            out.append(f"- {label}s: {fig.source}.")
            continue
        for d, v in DATASETS.items():
            p = train_plan(d, v["frames"], v["folds"], args.epochs, fig.value, price, args.target_hours, cap, label)
            if d not in chosen or p.cost_usd < chosen[d].cost_usd:
                chosen[d] = p
            rows.append(f"| {d} | {label}s | {_fmt(p.unit_hours)} | {p.units}{' (cap)' if p.capped else ''} | "
                        f"{_fmt(p.wall_hours)} | {_fmt(p.cost_usd)} |")
    plans.extend(chosen.values())
    if rows:
        out += ["", "| dataset | on | worker-hours | workers | wall h | cost USD |", "|---|---|---|---|---|---|", *rows,
                "", "The plan takes the cheaper option per dataset: "
                + ", ".join(f"{d} on {p.unit}s" for d, p in chosen.items()) + "."]
    out += ["", "## Serving", "", f"Sustained load: {args.serve_load:g} images/s.", ""]
    for label, fig, price in (("CPU cores", figures["images_per_s_per_core"], args.cpu_hour_usd),
                              ("GPUs", figures["gpu_images_per_s"], args.gpu_hour_usd)):
        if fig.measured:
            units, usd = serve_plan(args.serve_load, fig.value, price)
            note = " (member forward passes only: face detection and alignment stay on CPU)" if label == "GPUs" else ""
            out.append(f"- {label}: {units} at {_fmt(fig.value)} images/s each{note}, ${_fmt(usd)} per hour.")
        else:
            out.append(f"- {label}: {fig.source}.")
    vf = figures["video_frames_per_s_per_core"]
    if vf.measured:
        for d, v in DATASETS.items():
            ch = v["frames"] / vf.value / 3600
            out.append(f"- Batch prediction over {d}: {_fmt(ch)} core-hours, ${_fmt(ch * args.cpu_hour_usd)}.")
    else:
        out.append(f"- Batch prediction: {vf.source}.")
    out += ["", "## Next bottleneck", ""]
    lines = bottleneck(plans, figures)
    out += [f"- {x}" for x in lines] if lines else ["- Nothing measured yet: run the benchmarks first."]
    return "\n".join(out) + "\n"


def scale_section(args: argparse.Namespace, figures: dict[str, Figure]) -> str:
    """The million-row run's section (benchmarks/scale_page.py) when ``args.scale`` exists, else ''."""
    if not args.scale.is_file():
        return ""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale_page  # benchmarks/scale_page.py

    try:
        scale = json.loads(args.scale.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"scaling_plan: {args.scale} is not valid JSON: {e}") from None
    lines = scale_page.render_scale(scale, figures["frames_per_s_per_core"].value, gpu_train_rate(figures).value,
                                    args.gpu_hour_usd, args.epochs, args.node_cpus, _rel(args.scale),
                                    figures["data_pipeline_samples_per_s"].value)
    return "\n".join(lines) + "\n" if lines else ""


def main(argv: "list[str] | None" = None) -> int:
    """Command-line entry: read the figures, write the page."""
    p = argparse.ArgumentParser(prog="python benchmarks/scaling_plan.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--preprocess", type=Path, default=RESULTS / "preprocess.json")
    p.add_argument("--train", type=Path, default=RESULTS / "train.json")
    p.add_argument("--serve", type=Path, default=RESULTS / "serve.json")
    p.add_argument("--scale", type=Path, default=RESULTS / "scale.json")
    p.add_argument("--node-cpus", type=int, default=8, help="CPUs of one GPU node (default: g5.2xlarge's 8)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.md")
    p.add_argument("--cpu-hour-usd", type=float, default=0.0425,
                   help="price of one CPU core for an hour (default: AWS c6i.8xlarge on-demand, us-west-2, "
                        "$1.36/h over 32 vCPUs)")
    p.add_argument("--gpu-hour-usd", type=float, default=1.212,
                   help="price of one GPU node for an hour (default: AWS g5.2xlarge on-demand, us-west-2)")
    p.add_argument("--target-hours", type=float, default=4.0, help="wall time to aim for, per stage and dataset")
    p.add_argument("--max-cores", type=int, default=512, help="most CPU cores the cluster may grow to")
    p.add_argument("--max-gpus", type=int, default=8, help="most GPUs the cluster may grow to")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per fold")
    p.add_argument("--serve-load", type=float, default=100.0, help="images per second the service must sustain")
    args = p.parse_args(argv)
    for name in ("cpu_hour_usd", "gpu_hour_usd", "target_hours", "serve_load"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    figures = load_figures({"preprocess": args.preprocess, "train": args.train, "serve": args.serve})
    shown = " ".join(["python benchmarks/scaling_plan.py",
                      *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    text = render(figures, args, shown) + scale_section(args, figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    missing = [n for n, f in figures.items() if not f.measured]
    print(f"wrote {args.out}" + (f" ({len(missing)} figure(s) not measured: {', '.join(missing)})" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
