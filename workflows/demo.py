"""``facsflow demo``: the whole product, small, on an embedded local Ray (or a cluster).

Steps: generate a labelled synthetic dataset from real face photos → preprocess with Ray Data
into Parquet → train the baseline with Ray Train (2 CPU workers, DDP) for each seed, plus a
control whose training labels are shuffled → evaluate on held-out subjects beside the trivial
predictors → build an ensemble manifest → serve it with Ray Serve on 127.0.0.1 → send a real face
image over HTTP → print the AU answer → shut down. The report (Markdown, HTML, JSON) lands in
``<workdir>/report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.configuration import load_yaml, save_yaml

log = logging.getLogger("facsflow.demo")

__all__ = ["DemoConfig", "run_demo", "main"]

CONFIG_DIR = Path(__file__).parent / "configs"
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@dataclass
class DemoConfig:
    """The demo; shipped as workflows/configs/demo.yaml."""

    workdir: str = "facsflow-demo"
    """Where every artefact goes."""
    faces: str = ""
    """Folder of face photos for the generator ('' : ../shared/media when present, else the
    scikit-image astronaut)."""
    subjects_per_identity: int = 2
    """Pseudo-subjects (shape/colour morphs) per source photo."""
    videos_per_subject: int = 2
    """Videos per pseudo-subject."""
    frames_per_video: int = 40
    """Frames per video."""
    model: str = "baseline_resnet18_112"
    """Model the demo trains."""
    epochs: int = 6
    """Training epochs per run."""
    workers: int = 2
    """DDP workers."""
    seeds: tuple[int, ...] = (0, 1)
    """One run per seed."""
    control: bool = True
    """Also train a control whose training rows carry the labels of other training rows (one
    permutation over the training set: base rates kept, image-label pairs broken)."""
    port: int = 8000
    """Port of the demo's Serve app on 127.0.0.1."""
    image: str = ""
    """Image to send to the served ensemble ('' : single_face.jpg from ../shared/media, else the astronaut)."""
    bootstrap: int = 200
    """Bootstrap replicates for the report's confidence intervals."""


DEMO_FACE_PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg", "multi_face.jpg")
"""The expression photos and the group photo of ../shared/media: eight real identities, so
held-out subjects are other people than the training ones (also the tests' and benchmarks' set)."""


def link_face_photos(media: Path, where: Path, names: "tuple[str, ...]" = DEMO_FACE_PHOTOS) -> Path:
    """``where/faces`` holding symlinks to ``names`` in ``media``; FileNotFoundError names any missing."""
    missing = [n for n in names if not (media / n).is_file()]
    if missing:
        raise FileNotFoundError(f"face photos missing from {media}: {missing}")
    d = where / "faces"
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (d / name).exists():
            os.symlink(media / name, d / name)
    return d


def _faces_dir(cfg: DemoConfig, workdir: Path) -> str:
    if cfg.faces:
        return cfg.faces
    try:
        return str(link_face_photos(MEDIA, workdir))
    except FileNotFoundError as e:
        logging.getLogger(__name__).warning("%s; the generator uses its built-in face instead", e)
        return ""


def _probe_image(cfg: DemoConfig, workdir: Path) -> bytes:
    if cfg.image:
        return Path(cfg.image).read_bytes()
    if (MEDIA / "single_face.jpg").is_file():
        return (MEDIA / "single_face.jpg").read_bytes()
    import cv2
    import skimage.data

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def run_demo(cfg: DemoConfig, address: "str | None" = None) -> dict[str, Any]:
    import httpx
    import ray
    from ray import serve

    from components.datasets.synth.generator import SynthConfig, generate
    from workflows.core.ensembling import build_ensemble
    from workflows.core.evaluation import EvaluateConfig, run_evaluation
    from workflows.core.preprocessing import PreprocessConfig, run_preprocess
    from workflows.core.runtime import check_resources, init_ray
    from workflows.serve.app import start
    from workflows.core.training import TrainConfig, run_training

    t_start = time.perf_counter()
    work = Path(cfg.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, work / "demo.yaml")
    artefacts: dict[str, Any] = {}

    print("[1/7] generating a synthetic AU dataset from real face photos ...")
    data = work / "data"
    synth = generate(SynthConfig(out=str(data), layout="manifest", faces=_faces_dir(cfg, work) or None, seed=cfg.seeds[0],
                                 subjects_per_identity=cfg.subjects_per_identity,
                                 videos_per_subject=cfg.videos_per_subject, frames_per_video=cfg.frames_per_video))
    artefacts["dataset"] = str(data)
    print(f"      {synth.identities} identities, {synth.subjects} subjects, {synth.videos} videos, "
          f"{synth.frames} frames in {synth.seconds} s: {data}")

    resources = init_ray(address)
    print(f"[2/7] Ray: {resources.get('CPU', 0):.0f} CPUs; preprocessing with Ray Data ...")
    store = work / "store"
    pre = run_preprocess(load_yaml(PreprocessConfig, CONFIG_DIR / "preprocess-demo.yaml",
                                   [f"root={data}", f"out={store}"]))
    artefacts["feature_store"] = str(store)
    print(f"      {pre['rows']} face rows, {pre['rejects']} rejects in {pre['seconds']} s")

    runs = work / "runs"
    over = [f"data={store}", f"out={runs}", f"model={cfg.model}", f"epochs={cfg.epochs}", f"workers={cfg.workers}"]
    if synth.train_problems:
        print(f"      WARNING: {synth.identities} source identity(ies) are too few for folds by identity; "
              "held-out subjects are morphs of the training identities (pass --set faces=DIR with 4+ "
              "different people for a leak-free split)")
        over.append("split.by=subject")
    base = load_yaml(TrainConfig, CONFIG_DIR / "train-demo.yaml", over)
    base = replace(base, worker_cpus=check_resources(
        "demo training", resources, base.workers, base.worker_cpus, 1.0 if base.gpu else 0.0, base.data_cpus,
        change="--set workers=N"))
    trained = []
    plan = [(f"{cfg.model}-seed{s}", replace(base, seed=s, split=replace(base.split, seed=0))) for s in cfg.seeds]
    if cfg.control:
        plan.append((f"{cfg.model}-shuffled-labels", replace(base, seed=cfg.seeds[0], shuffle_labels=True)))
    for i, (name, tcfg) in enumerate(plan):
        print(f"[3/7] training {name} with Ray Train ({tcfg.workers} workers) [{i + 1}/{len(plan)}] ...")
        summary = run_training(replace(tcfg, name=name))
        trained.append(summary)
        print(f"      best validation mean F1 {summary['best_val_mean_f1']:.3f} ({summary['seconds']} s)")
    artefacts["runs"] = str(runs)

    print("[4/7] evaluating on held-out test subjects ...")
    ev = run_evaluation(EvaluateConfig(runs=tuple(str(runs / s["run"]) for s in trained), out=str(work / "report"),
                                       bootstrap=cfg.bootstrap, tune_thresholds=True))
    artefacts["report"] = ev["paths"]

    print("[5/7] building the ensemble manifest ...")
    real = [str(runs / s["run"]) for s in trained if "shuffled" not in s["run"]]
    ens = build_ensemble(real, str(work / "ensemble"), "mean", thresholds_dir=str(work / "report"))
    artefacts["ensemble"] = ens["manifest"]

    print(f"[6/7] serving the ensemble with Ray Serve on 127.0.0.1:{cfg.port} ...")
    url = start(str(work / "ensemble"), "127.0.0.1", cfg.port)
    try:
        r = httpx.post(f"{url}/v1/predict", content=_probe_image(cfg, work),
                       headers={"content-type": "image/jpeg"}, timeout=120)
        r.raise_for_status()
        answer = r.json()
    finally:
        serve.shutdown()
    (work / "serve_answer.json").write_text(json.dumps(answer, indent=1))
    artefacts["serve_answer"] = str(work / "serve_answer.json")
    print("[7/7] the served ensemble's answer for a real face image:")
    for face in answer["faces"]:
        on = [au for au, v in face["occurrence"].items() if v]
        probs = "  ".join(f"{au}={p:.2f}" for au, p in face["probs"].items())
        print(f"      face {face['face_id']} box {[round(x) for x in face['box']]}: {probs}; active: {on or 'none'}")
    if not answer["faces"]:
        print("      no face found in the image")
    ray.shutdown()

    results = ev["results"]
    summary = {"wall_seconds": round(time.perf_counter() - t_start, 1), "artefacts": artefacts,
               "mean_f1": {n: m["summary"]["mean_f1"]["mean"] for n, m in results["models"].items()},
               "trivial_mean_f1": {k: v["mean_f1"]["mean"] for k, v in results["trivial"]["summary"].items()}}
    (work / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``DemoConfig`` (``--workdir``, ``--epochs``, ...); ``--config`` defaults to demo.yaml."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(DemoConfig, "facsflow demo", description=__doc__.split("\n\n")[0].strip("`"),
                        default_config=str(CONFIG_DIR / "demo.yaml"))


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import stage_config
    from workflows.core.runtime import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg: DemoConfig = stage_config(args)
    s = run_demo(cfg, args.address)
    print("")
    for name, f1 in s["mean_f1"].items():
        print(f"test mean F1  {name:<40} {f1:.3f}")
    for name, f1 in s["trivial_mean_f1"].items():
        print(f"test mean F1  trivial: {name:<31} {f1:.3f}")
    print(f"\nartefacts: {json.dumps(s['artefacts'], indent=1)}\nwall time {s['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
