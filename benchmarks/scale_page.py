"""The million-row run's section of docs/scaling.md (written by benchmarks/scaling_plan.py, the
page's one generator) from benchmarks/results/scale.json (benchmarks/scale.py): per stage and
store size, what it cost; larger over smaller store; and what Aff-Wild2 on N GPU nodes would take
at the measured rates.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STAGE_ORDER", "comparison", "affwild2_nodes", "render_scale"]

STAGE_ORDER = ("scaleup", "label", "cache", "pass", "train", "train2n", "evaluate", "ensemble", "predict")
STAGE_NAMES = {"train2n": "train, 2 nodes"}
WITHIN = 0.2
"""The issue's bar: peak memory and per-core throughput of the larger store within 20 % of the smaller's."""


def _mb(x: float) -> str:
    return f"{x:,.0f}"


def _rate(fig: dict[str, Any]) -> "float | None":
    return fig.get("rows_per_cpu_s")


def comparison(sizes: dict[str, Any]) -> dict[str, Any]:
    """Per stage, the largest store over the next smaller one: peak RSS of the driver and of the
    Ray workers, and rows per CPU-second (None where a size lacks the stage); {} for one size."""
    keys = sorted(sizes, key=int)
    if len(keys) < 2:
        return {}
    small, large = sizes[keys[-2]], sizes[keys[-1]]
    out: dict[str, Any] = {"of": f"{keys[-1]} over {keys[-2]} rows"}
    for stage in STAGE_ORDER:
        a, b = small.get(stage), large.get(stage)
        if not a or not b:
            continue
        ra, rb = _rate(a), _rate(b)
        out[stage] = {"driver_rss": round(b["peak_rss_mb"]["driver"] / max(a["peak_rss_mb"]["driver"], 1e-9), 2),
                      "workers_rss": round(b["peak_rss_mb"]["workers"] / max(a["peak_rss_mb"]["workers"], 1e-9), 2),
                      "rows_per_cpu_s": round(rb / ra, 2) if ra and rb else None}
        if a.get("peak_private_mb") and b.get("peak_private_mb"):   # anonymous memory (procmem)
            for group in ("driver", "workers"):
                out[stage][f"{group}_private"] = round(
                    b["peak_private_mb"][group] / max(a["peak_private_mb"][group], 1e-9), 2)
    return out


def affwild2_nodes(frames: int, rates: dict[str, "float | None"], node_cpus: int, gpu_rate: "float | None",
                   epochs: int, nodes: int) -> dict[str, "float | None"]:
    """Hours per stage for ``frames`` on ``nodes`` GPU nodes of ``node_cpus`` CPUs each.

    CPU stages (preprocess, label, evaluate) run on every node's CPUs at the measured rate per
    CPU-second; training runs one DDP worker per node's GPU at ``gpu_rate`` samples/s, or at what
    the node's other CPUs can feed it through the data path (``rates['pass']`` per CPU-second
    times node_cpus - 1), whichever is lower. Linear in nodes: no measured efficiency beyond 2 CPUs.
    """
    cores = node_cpus * nodes
    out: dict[str, "float | None"] = {}
    for stage in ("preprocess", "label", "evaluate"):
        r = rates.get(stage)
        out[stage] = frames / (r * cores) / 3600 if r else None
    feed = rates["pass"] * (node_cpus - 1) if rates.get("pass") else None
    per_node = min(x for x in (gpu_rate, feed) if x) if (gpu_rate or feed) else None
    out["train"] = frames * epochs / (per_node * nodes) / 3600 if per_node else None
    out["train_bound_by"] = ("input pipeline" if feed and gpu_rate and feed < gpu_rate else "GPU") if per_node else None
    return out


def _bounds(scale: dict[str, Any], size: str) -> str:
    """The bounds the stages of one store size ran under (per-stage settings, else the file's)."""
    per = scale["sizes"][size].get("settings", {})

    def of(stage: str) -> dict[str, Any]:
        return per.get(stage) or scale.get("settings", {})

    tr, ev = of("train"), of("evaluate")
    return (f"label {of('label').get('label_subjects') or 'all'} subjects' rows; train 2 workers, 1 epoch of "
            f"{tr.get('train_steps')} optimiser steps per worker over the store's fold-1 split, validation on "
            f"{tr.get('val_subjects', 10)} subjects; evaluate and ensemble {ev.get('eval_subjects')} test (and "
            f"validation) subjects; data pass every row"
            + (f" or {of('pass')['pass_seconds']:.0f} s, whichever came first" if of("pass").get("pass_seconds") else "")
            + "; predict: the held-out video (in no store)")


def render_scale(scale: dict[str, Any], preprocess_rate: "float | None", gpu_rate: "float | None",
                 gpu_hour_usd: float, epochs: int, node_cpus: int, source: str,
                 pipeline_rate: "float | None" = None) -> list[str]:
    """Markdown lines of the section (empty when scale.json holds no run)."""
    sizes = sorted(scale.get("sizes", {}), key=int)
    if not sizes:
        return []
    st = scale.get("settings", {})
    machine = scale.get("machine", {})
    out = ["", "## The million-row run", "",
           f"`python benchmarks/scale.py --rows {' '.join(sizes)} ...` ({source}, {scale.get('date', '?')}; "
           f"{machine.get('cpus', '?')}-core CPU machine shared with other work, load average "
           f"{', '.join(f'{x:.1f}' for x in machine.get('load_average_at_start', []))} at the start). "
           "Each stage is the command a user runs, on an embedded Ray of 2 CPUs, except `scaleup`, "
           "`cache` and `pass` (benchmarks/scale_store.py: the store's crop cache built, then one pass of "
           "training's input path over every row) and `train, 2 nodes` (the train command with `--address` "
           "against a cluster of two worker nodes on this machine, 2 CPUs each, 1.5 a DDP worker). The stores are synthetic frames of the real faces "
           "of ../shared/media through the real `preprocess` (RetinaFace, MediaPipe), "
           f"{scale.get('base', {}).get('files', 64)} videos, scaled up to N rows through the store's "
           f"writer under new subjects (every {st.get('rows_per_video', 500) * st.get('videos_per_subject', 2):,} rows "
           "a subject and identity group, 2 videos each) with perturbed landmarks: real Parquet, schema and crops, "
           "not new faces.", "",
           "Bounds, per store size (the stages of one size share them unless said):", "",
           *[f"- {int(size):,} rows: {_bounds(scale, size)}" for size in sizes], "",
           *(["Notes on this run: " + " ".join(scale["notes"]), ""] if scale.get("notes") else []),
           "rows: what the stage handled (train: samples stepped); rows/CPU-s: rows over the CPU seconds of "
           "the command's whole process tree (driver, Ray workers, Ray services), which the machine's "
           "other load does not inflate as it does wall time. Peak RSS in MiB: the driver, the Ray "
           "workers together, the largest worker.", "",
           "| stage | store rows | rows | wall s | CPU s | rows/CPU-s | driver | workers | largest worker | disk MB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for stage in STAGE_ORDER:
        for size in sizes:
            fig = scale["sizes"][size].get(stage)
            if not fig:
                continue
            rss = fig["peak_rss_mb"]
            rate = _rate(fig)
            disk = fig.get("disk_bytes")
            out.append(f"| {STAGE_NAMES.get(stage, stage)} | {int(size):,} | {fig.get('rows', 0):,} | {fig['wall_s']:,.0f} | "
                       f"{fig['cpu_s']['total']:,.0f} | {f'{rate:,.0f}' if rate else '—'} | {_mb(rss['driver'])} | "
                       f"{_mb(rss['workers'])} | {_mb(rss['worker_max'])} | "
                       f"{f'{disk / 1e6:,.1f}' if disk else '—'} |")
    for size in sizes:
        res = scale["sizes"][size].get("pass", {}).get("result", {})
        if res and not res.get("complete", True):
            out += ["", f"The data pass over the {int(size):,}-row store was stopped after "
                    f"{res['seconds']:,.0f} s (the run's time bound) at {res['rows']:,} rows of "
                    f"{res.get('store_rows', int(size)):,}: its rate is over the rows it read."]
    notes = [f"{int(s):,} rows, train: {scale['sizes'][s]['train']['no_teacher_label'][-1]}"
             for s in sizes if scale["sizes"][s].get("train", {}).get("no_teacher_label")]
    if notes:
        out += ["", "Rows without a teacher label, as training said them: " + "; ".join(notes) + "."]
    for s in sizes:
        nodes = scale["sizes"][s].get("train2n", {}).get("nodes")
        if nodes:
            out += ["", f"{int(s):,} rows, train on two nodes: the DDP workers ran on {nodes['ran_on']} of the "
                    f"cluster's {nodes['worker_nodes']} worker nodes (its `driver` column is the process that "
                    "started the cluster; the train command's own driver is counted with the workers)."]
    comp = comparison(scale["sizes"])
    if comp:
        out += ["", f"Larger over smaller store ({comp['of']}). The bar is {WITHIN:.0%}: two-sided "
                f"(0.8 to 1.2) in the `within` column; `no worse` reads it one way, peak memory at most "
                f"{1 + WITHIN:.1f}x and rows per CPU-second at least {1 - WITHIN:.1f}x (a stage whose fixed "
                "start-up is spread over more rows gets faster per row, which is not a scaling defect):", "",
                "| stage | driver peak RSS | workers peak RSS | rows/CPU-s | within | no worse |",
                "|---|---|---|---|---|---|"]
        for stage in STAGE_ORDER:
            c = comp.get(stage)
            if not c:
                continue
            vals = [v for v in (c["driver_rss"], c["workers_rss"], c["rows_per_cpu_s"]) if v is not None]
            ok = all(abs(v - 1) <= WITHIN for v in vals)
            flat = (c["driver_rss"] <= 1 + WITHIN and c["workers_rss"] <= 1 + WITHIN
                    and (c["rows_per_cpu_s"] is None or c["rows_per_cpu_s"] >= 1 - WITHIN))
            out.append(f"| {STAGE_NAMES.get(stage, stage)} | {c['driver_rss']:.2f} | {c['workers_rss']:.2f} | "
                       f"{c['rows_per_cpu_s'] if c['rows_per_cpu_s'] is not None else '—'} | {'yes' if ok else 'no'} | "
                       f"{'yes' if flat else 'no'} |")
        private = [f"{STAGE_NAMES.get(st, st)} {comp[st]['driver_private']:.2f} / {comp[st]['workers_private']:.2f}"
                   for st in STAGE_ORDER if st in comp and "driver_private" in comp[st]]
        if private:
            out += ["", "Peak RSS counts the pages of Ray's object store a process has mapped (the blocks Ray Data "
                    "prefetched into the driver, shared with the workers). Private (anonymous) memory alone, "
                    "larger over smaller store, driver / Ray workers: " + "; ".join(private) + "."]
    largest = scale["sizes"][sizes[-1]]
    rates = {"preprocess": preprocess_rate, "label": _rate(largest.get("label", {})),
             "pass": _rate(largest.get("pass", {})), "evaluate": _rate(largest.get("evaluate", {}))}
    frames = 2_600_000
    out += ["", f"### Aff-Wild2 (~{frames / 1e6:.1f} M frames) on N GPU nodes", "",
            f"Each node: 1 GPU and {node_cpus} CPUs, ${gpu_hour_usd}/h. Rates per CPU-second measured above on the "
            f"{int(sizes[-1]):,}-row store (label, data pass, evaluate) and by benchmarks/preprocess.py (preprocess: "
            f"{preprocess_rate or '—'} frames/s per core); training at "
            f"{f'{gpu_rate:,.0f}' if gpu_rate else '—'} samples/s per GPU (the Ray Train loop's rate on one GPU node, "
            "train.json) or what the node's other CPUs feed through the data path, whichever is lower; "
            f"{epochs} epochs. Linear in nodes (assumed, not measured beyond 2 CPUs); evaluation scores every "
            "frame once on CPUs.", "",
            "| nodes | preprocess h | label h | train h | evaluate h | total h | cost USD | train bound by |",
            "|---|---|---|---|---|---|---|---|"]
    for n in (1, 2, 4, 8, 16):
        h = affwild2_nodes(frames, rates, node_cpus, gpu_rate, epochs, n)
        parts = [h[s] for s in ("preprocess", "label", "train", "evaluate")]
        total = sum(x for x in parts if x is not None)
        cells = " | ".join(f"{x:,.2f}" if x is not None else "—" for x in parts)
        out.append(f"| {n} | {cells} | {total:,.2f} | {total * n * gpu_hour_usd:,.2f} | {h['train_bound_by'] or '—'} |")
    if rates.get("pass") and pipeline_rate:
        steady = affwild2_nodes(frames, {**rates, "pass": pipeline_rate}, node_cpus, gpu_rate, epochs, 1)
        out += ["", f"The data pass's rate above is over its whole command (Ray's start-up and the wait for the "
                f"first batch included); at the input pipeline's steady rate on one core "
                f"(train.json's data_pipeline_samples_per_s, {pipeline_rate:,.0f} samples/s) training on one node "
                f"would take {steady['train']:,.2f} h ({steady['train_bound_by']}-bound)."]
    return out
