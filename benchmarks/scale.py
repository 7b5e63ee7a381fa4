"""The million-row run (issue 32 item 5): every stage on a store of N rows, per-stage figures.

    python benchmarks/scale.py --rows 100000 1000000 --label-subjects 10 --train-steps 20 \
        --val-subjects 2 --eval-subjects 2         # both stores under one set of bounds; writes benchmarks/results/scale.json
    python benchmarks/scale.py --rows 1000000 --stages pass   # the data pass alone, on the kept store
    python benchmarks/scale.py --rows 10000 --work /tmp/facsflow-scale --keep

Stages, each a child process of this script running what a user runs (``python -m
workflows.cli <stage>``: the ``facsflow`` commands, with an embedded local Ray of 2 CPUs) except
the two benchmark-only steps of ``benchmarks/scale_store.py``:

- base (once per --work): ``facsflow synth --layout manifest`` (32 subjects x 2 videos x 40 frames
  from the real faces of ../shared/media) and ``facsflow preprocess --face.landmarker mediapipe``:
  a small real store;
- scaleup: the N-row store from the base store's rows (``scale_store.scale_up``: new subjects,
  videos, frame and sample ids, perturbed landmarks, 500 rows a video, 2 videos a subject);
- label: ``facsflow label --teacher builtin`` on ``--label-subjects`` subjects (0: all);
- train: ``facsflow train`` with 2 workers on the whole store (its fold-1 split by subject: k-fold
  by identity group, every scaled subject its own group), ``--epochs 1 --max-steps-per-epoch
  --train-steps``, label sources human + teacher: the rows the teacher did not label are counted
  and said (the run's log line is kept in the figures);
- cache: the crop cache of the model's size over every row (``scale_store.build_cache``: what
  ``facsflow train`` builds the first time; each row's JPEG decoded once);
- pass: one pass of training's input path over every row (``scale_store.data_pass``: the crop
  cache read, augmentation and the model's input transform);
- train2n: the train stage again on a two-node Ray cluster on this machine (``ray.cluster_utils.
  Cluster``: a head with no CPUs, two worker nodes of 2 logical CPUs each, their own raylets and
  object stores), ``facsflow train --address`` with 1.5 CPUs a worker, so each node holds one
  worker and its data tasks (what ``tests/integration/test_multinode.py`` checks on a small store);
- evaluate / ensemble: on ``--eval-subjects`` test (and validation) subjects (``max_subjects``);
- predict: the ensemble on held-out media (single_face.mp4 of ../shared/media: no row of any store).

Per stage: wall seconds, CPU seconds of the command's whole process tree (driver, Ray workers, Ray
services; ``procmem.TreeMeter``), rows/s per CPU-second (rows the stage handled over CPU seconds: a
rate the machine's other load does not distort), peak RSS of the driver, of the Ray workers together
and of the largest one, and the disk the store (or the stage's output) takes. ``--rows`` with two
sizes adds the comparisons: peak memory and per-core rates of the larger store over the smaller.
The stores are written under ``--work`` and deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procmem  # noqa: E402  (benchmarks/procmem.py)
import scale_page  # noqa: E402  (benchmarks/scale_page.py)

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
STAGES = ("scaleup", "label", "cache", "pass", "train", "train2n", "evaluate", "ensemble", "predict")
ROWS_PER_SUBJECT = 1000
"""scale_up's defaults: 500 rows a video, 2 videos a subject."""
MODEL = "baseline_mobilenetv3_112"
HELD_OUT = "single_face.mp4"


def du(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


RAY_START_TIMEOUT = "The current node timed out during startup"
"""Ray gives its raylet 30 s (fixed in ray/_private/node.py) to register; on a machine loaded many
times over its cores it may not: such a start is retried (the figures are the attempt that ran)."""


def metered(cmd: list[str], log: Path, attempts: int = 3) -> dict[str, Any]:
    """Run ``cmd`` (from the checkout, this Python) and measure it: wall, CPU, peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    for attempt in range(1, attempts + 1):
        t0 = time.perf_counter()
        with open(log, "a") as out:
            out.write(f"\n$ {' '.join(cmd)}\n")
            out.flush()
            start = out.tell()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            with procmem.TreeMeter(proc.pid) as meter:
                rc = proc.wait()
        wall = time.perf_counter() - t0
        with open(log) as f:
            f.seek(start)
            ray_did_not_start = RAY_START_TIMEOUT in f.read()
        if rc == 0 or not ray_did_not_start or attempt == attempts:
            break
        print(f"scale: Ray did not start in time (attempt {attempt}); again", flush=True)
    if rc != 0:
        raise SystemExit(f"scale: {' '.join(cmd[:4])}... failed (exit {rc}); see {log}")
    return {"wall_s": round(wall, 1), "cpu_s": meter.cpu_s(), "peak_rss_mb": meter.mb(),
            "peak_private_mb": meter.mb(private=True), "attempts": attempt}


def facsflow(stage: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "workflows.cli", stage, *args]


def helper(step: str, *args: str) -> list[str]:
    """This script's own in-process steps (``_scaleup``, ``cache``, ``pass``, ``_nodes``) as a command."""
    return [sys.executable, str(Path(__file__).resolve()), step, *args]


def last_json(log: Path) -> dict[str, Any]:
    """The last line of ``log`` that is a JSON object (what the helper steps print)."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def build_base(work: Path, log: Path) -> tuple[Path, dict[str, Any]]:
    """The small real store every scaled store is made from (once per ``work``)."""
    base = work / "base"
    store = base / "store"
    if (store / "store.json").exists():
        return store, {"reused": str(store), "files": sum(1 for _ in (store / "frames").rglob("*.parquet"))}
    from workflows.demo import link_face_photos

    faces = link_face_photos(MEDIA, base)
    fig = metered(facsflow("synth", "--out", str(base / "synth"), "--layout", "manifest", "--faces", str(faces),
                           "--videos-per-subject", "2", "--frames-per-video", "40", "--frame-size", "160",
                           "--overwrite"), log)
    fig2 = metered(facsflow("preprocess", "--dataset", "manifest", "--root", str(base / "synth"), "--out", str(store),
                            "--face.landmarker", "mediapipe", "--actors", "2"), log)
    rows = sum(1 for _ in (store / "frames").rglob("*.parquet"))
    return store, {"synth": fig, "preprocess": fig2, "files": rows}


def run_size(rows: int, args: argparse.Namespace, base: Path, log: Path, on_stage: Any = None) -> dict[str, Any]:
    """Every asked stage on the store of ``rows`` rows; the figures per stage."""
    work = args.work / f"n{rows}"
    store, runs, report, ens, pred = (work / "store", work / "runs", work / "report", work / "ensemble",
                                      work / "predict")
    out: dict[str, Any] = {"rows": rows, "store": str(store)}
    run_dir = runs / f"{MODEL}-fold1"
    for stage in args.stages:
        print(f"scale: {rows:,} rows: {stage} ...", flush=True)
        load = [round(x, 2) for x in os.getloadavg()]   # CPU-second rates move with other load
        if stage == "scaleup":
            if work.exists():
                shutil.rmtree(work)
            fig = metered(helper("_scaleup", "--base", str(base), "--out", str(store), "--rows", str(rows)), log)
            fig["result"] = last_json(log)
            fig["rows"], fig["disk_bytes"] = rows, du(store)
        elif stage == "label":
            cmd = facsflow("label", "--teacher", "builtin", "--data", str(store), "--actors", "2", "--no-resume")
            fig = metered(cmd + (["--set", f"max_subjects={args.label_subjects}"] if args.label_subjects else []), log)
            done = json.loads((store / "labels.json").read_text())
            fig["rows"], fig["subjects"] = done["rows"], args.label_subjects or "all"
            fig["disk_bytes"] = du(store / "labels")
        elif stage in ("train", "train2n"):
            if runs.exists():
                shutil.rmtree(runs)
            # Fold 1 of k=3 trains on 2/3 of the subjects; validation takes --val-subjects of them.
            subjects = -(-rows // ROWS_PER_SUBJECT)
            val_fraction = min(0.5, args.val_subjects / (subjects * 2 / 3))
            cmd = facsflow("train", "--model", MODEL, "--data", str(store), "--out", str(runs),
                           "--workers", "2", "--epochs", "1", "--max-steps-per-epoch", str(args.train_steps),
                           "--label-sources", "human", "teacher", "--keep-best", "1",
                           "--split.val-fraction", f"{val_fraction:.4f}")
            if stage == "train2n":   # the same command against a two-node cluster (module docstring)
                cmd = helper("_nodes", "--", *cmd[1:], "--set", "worker_cpus=1.5")
            fig = metered(cmd, log)
            run = json.loads((run_dir / "run.json").read_text())
            split = run["split"]
            fig["steps_per_worker"], fig["batch_per_worker"] = args.train_steps, run.get("batch_size", 32)
            fig["rows"] = 2 * args.train_steps * fig["batch_per_worker"]
            fig["subjects"] = {k: len(split[k]) for k in ("train", "val", "test")}
            fig["val_rows"] = fig["subjects"]["val"] * ROWS_PER_SUBJECT
            fig["no_teacher_label"] = [ln.split("WARNING ", 1)[-1] for ln in log.read_text().splitlines()
                                       if "have no teacher label" in ln][-2:]
            if stage == "train2n":   # the cluster's worker nodes, and those the DDP workers ran on
                ran = (run.get("history") or [{}])[-1].get("worker_nodes") or []
                fig["nodes"] = {"worker_nodes": len(last_json(log).get("nodes", [])), "ran_on": len(set(ran))}
            fig["disk_bytes"] = du(runs)
        elif stage == "cache":
            fig = metered(helper("cache", "--store", str(store)), log)
            fig["result"] = last_json(log)
            fig["rows"], fig["disk_bytes"] = fig["result"].get("rows", 0), fig["result"].get("cache_bytes")
        elif stage == "pass":
            fig = metered(helper("pass", "--store", str(store), "--max-seconds", str(args.pass_seconds)), log)
            fig["result"] = last_json(log)
            fig["rows"] = fig["result"].get("rows", 0)
        elif stage == "evaluate":
            fig = metered(facsflow("evaluate", "--runs", str(run_dir), "--out", str(report), "--bootstrap", "0",
                                   "--set", f"max_subjects={args.eval_subjects}"), log)
            fig["subjects"] = args.eval_subjects
            fig["rows"] = int(find_key(json.loads((report / "report.json").read_text()), "n_samples") or 0)
            fig["disk_bytes"] = du(report)
        elif stage == "ensemble":
            fig = metered(facsflow("ensemble", "--runs", str(run_dir), "--out", str(ens),
                                   "--set", f"max_subjects={args.eval_subjects}"), log)
            rep = json.loads((ens / "ensemble_report.json").read_text())
            fig["subjects"] = {"val": args.eval_subjects, "unseen": len(rep.get("subjects", []))}
            # It scores the member on validation subjects, then member and ensemble on unseen ones.
            fig["rows"] = args.eval_subjects * ROWS_PER_SUBJECT + int((rep.get("ensemble") or {}).get("n_samples", 0))
            fig["disk_bytes"] = du(ens)
        else:  # predict
            fig = metered(facsflow("predict", "--ensemble", str(ens), "--input", str(MEDIA / HELD_OUT),
                                   "--out", str(pred), "--actors", "1"), log)
            csvs = list(pred.glob("*.csv"))
            fig["rows"] = sum(len(c.read_text().splitlines()) - 1 for c in csvs)
            fig["input"] = HELD_OUT
            fig["disk_bytes"] = du(pred)
        cpu = fig["cpu_s"]["total"]
        fig["load_average_at_start"] = load
        fig["rows_per_cpu_s"] = round(fig["rows"] / cpu, 1) if cpu and isinstance(fig.get("rows"), int) else None
        out[stage] = fig
        if on_stage is not None:
            on_stage(out)
        print(f"scale: {rows:,} rows: {stage}: {json.dumps({k: fig[k] for k in ('wall_s', 'cpu_s', 'peak_rss_mb', 'rows_per_cpu_s')})}",
              flush=True)
    return out


def find_key(data: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in nested JSON."""
    if isinstance(data, dict):
        if key in data and isinstance(data[key], (int, float)):
            return data[key]
        data = list(data.values())
    if isinstance(data, list):
        for v in data:
            hit = find_key(v, key)
            if hit is not None:
                return hit
    return None


def _two_nodes(cmd: list[str]) -> int:
    """``_nodes -- ARGS``: a two-node cluster (module docstring) and ``python ARGS --address`` against
    it as a child process; prints the worker nodes' ids as a JSON line."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
        cluster.wait_for_nodes(timeout=120)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        rc = subprocess.call([sys.executable, *cmd, "--address", cluster.address], cwd=ROOT, env=env)
    finally:
        cluster.shutdown()
    print(json.dumps({"rc": rc, "nodes": [n.node_id for n in nodes]}), flush=True)
    return rc


def _in_process(argv: list[str]) -> int:
    """The helper steps: ``_scaleup``, ``cache`` and ``pass``, each on its own embedded Ray of 2
    CPUs; ``_nodes`` (``_two_nodes``)."""
    import logging

    if argv[0] == "_nodes":
        return _two_nodes(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    p = argparse.ArgumentParser(prog="benchmarks/scale.py " + argv[0])
    p.add_argument("--base")
    p.add_argument("--out")
    p.add_argument("--rows", type=int)
    p.add_argument("--store")
    p.add_argument("--max-seconds", type=float, default=0.0)
    a = p.parse_args(argv[1:])
    import ray

    import ray.cloudpickle

    import scale_store  # benchmarks/scale_store.py

    # Ray's workers do not have benchmarks/ on their path: ship the module's functions by value.
    ray.cloudpickle.register_pickle_by_value(scale_store)
    ray.init(num_cpus=2, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        if argv[0] == "_scaleup":
            res = scale_store.scale_up(a.base, a.out, a.rows)
        elif argv[0] == "cache":
            res = scale_store.build_cache(a.store, MODEL)
        else:
            res = scale_store.data_pass(a.store, MODEL, max_seconds=a.max_seconds)
    finally:
        ray.shutdown()
    print(json.dumps(res), flush=True)
    return 0


def main(argv: "list[str] | None" = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_scaleup", "cache", "pass", "_nodes"):
        return _in_process(argv)
    p = argparse.ArgumentParser(prog="python benchmarks/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--work", type=Path, default=Path("/tmp/facsflow-scale"))
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    p.add_argument("--label-subjects", type=int, default=0, help="subjects labelled (0: all)")
    p.add_argument("--train-steps", type=int, default=40, help="optimiser steps per worker")
    p.add_argument("--eval-subjects", type=int, default=10, help="test / validation subjects scored")
    p.add_argument("--val-subjects", type=int, default=10, help="validation subjects of training")
    p.add_argument("--pass-seconds", type=float, default=0.0,
                   help="stop the data pass after this long (0: every row; the figures say whether it completed)")
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="keep the stores under --work")
    args = p.parse_args(argv)
    args.stages = [s for s in args.stages.split(",") if s]
    if bad := [s for s in args.stages if s not in STAGES]:
        p.error(f"unknown stage(s) {bad}; stages are {', '.join(STAGES)}")
    if not (MEDIA / HELD_OUT).is_file():
        raise SystemExit(f"scale: {MEDIA / HELD_OUT} not found: this benchmark needs ../shared/media")
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "scale.log"
    print(f"scale: commands' output goes to {log}", flush=True)
    base, base_fig = build_base(args.work, log)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results.update(date=time.strftime("%Y-%m-%d"), machine={
        "platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "note": "this project's 2-core CPU machine, shared with other work"}, base=base_fig)
    # What bounded this invocation's stages.
    settings = {"model": MODEL, "train_steps": args.train_steps, "label_subjects": args.label_subjects,
                "eval_subjects": args.eval_subjects, "pass_seconds": args.pass_seconds,
                "val_subjects": args.val_subjects, "rows_per_video": 500, "videos_per_subject": 2}
    sizes = results.setdefault("sizes", {})

    def save(fig: dict[str, Any]) -> None:
        # Settings per size and stage: a later run of some stages may bound them otherwise.
        old = sizes.get(str(fig["rows"]), {})
        per_stage = {**old.get("settings", {}), **{st: settings for st in args.stages if st in fig}}
        sizes[str(fig["rows"])] = {**old, **fig, "settings": per_stage}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")

    for rows in args.rows:
        t0 = time.perf_counter()
        fig = run_size(rows, args, base, log, save)
        fig["load_average_at_end"] = os.getloadavg()
        fig["stages_wall_s"] = round(time.perf_counter() - t0, 1)
        save(fig)
        if not args.keep:
            shutil.rmtree(args.work / f"n{rows}", ignore_errors=True)
    results["comparison"] = scale_page.comparison(sizes)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"scale: wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
