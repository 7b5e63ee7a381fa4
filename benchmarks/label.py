"""Labelling a store with a teacher: rows/s through the workflow, and why the built-in reads the
stored blendshapes instead of re-running its face pipeline on the stored crops.

    .venv/bin/python benchmarks/label.py [--scale 10] [--json benchmarks/results/label.json]

One process, one embedded local Ray with 2 CPUs. The store: WolfgangLanger_Pexels.mp4 and
single_face.mp4 of ../shared/media (544 frames) in chunks of 120, preprocessed with the built-in's
face pipeline (RetinaFace + MediaPipe). Figures:

- builtin / cnn: ``run_label`` with 2 actors, rows/s end to end (wall time of the call: actor
  start and teacher loading included) and in steady state (first unit started to last finished);
  ``cnn`` is an ensemble of one ``baseline_mobilenetv3_112`` at its initial weights, a stand-in
  for the cost of a trained image teacher (its answers mean nothing);
- crops_vs_stored: the built-in on each stored 112-px crop (its face pipeline re-run:
  ``Predictor.predict_image``) against the built-in on the stored blendshapes (what
  ``facsflow label`` does): rows where a face was found again, mean and largest per-row mean
  |difference| of the AU probabilities, and CPU ms per row of each way (one thread);
- scale (``--scale N``, 0: skip): the distillation demo's store (benchmarks/distill_demo.py's
  unlabeled folder: synthetic DISFA-layout videos, photos, single_face.mp4, no_face.mp4,
  preprocessed with the built-in's face pipeline) and a store of N copies of its rows (renamed
  subjects and sample ids: ``replicate_store``), each labelled by the built-in and by the
  one-CNN teacher with 2 actors: rows/s in steady state, per core (over the actors' CPUs), and
  the peak resident memory of the driver plus the labelling actors (/proc, sampled every
  0.25 s). Flat memory means the N-copies row's peak is about the 1-copy row's: labelling
  streams a unit at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")


def build_store(work: Path) -> Path:
    from components.faces.pipeline import FacePipelineConfig
    from components.store.rows import StoreConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess

    root = work / "media"
    root.mkdir()
    for name in VIDEOS:
        if not (MEDIA / name).is_file():
            raise SystemExit(f"{MEDIA / name} not found: this benchmark needs ../shared/media")
        os.symlink(MEDIA / name, root / name)
    out = work / "store"
    run_preprocess(PreprocessConfig(dataset="media", root=str(root), out=str(out), actors=2,
                                    face=FacePipelineConfig(detector="retinaface", landmarker="mediapipe"),
                                    store=StoreConfig(chunk_frames=120, chunk_overlap=12)))
    return out


def cnn_teacher(directory: Path) -> Path:
    from components.checkpoint import make_checkpoint, save_checkpoint
    from components.ensemble import EnsembleManifest, Member
    from components.models.registry import build_model

    aus = [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
    model = build_model("baseline_mobilenetv3_112", aus)
    preprocess = {"image_size": 112, "diff_steps": []}
    ckpt = make_checkpoint(model, "baseline_mobilenetv3_112", epoch=0, preprocess=preprocess, provenance={},
                           train_config={}, thresholds=[0.5] * len(aus))
    path = save_checkpoint(ckpt, directory / "member")
    EnsembleManifest(aus=aus, members=[Member(name="cnn", checkpoint=path, model_name="baseline_mobilenetv3_112",
                                              input_spec=model.input_spec().to_dict(), preprocess=preprocess,
                                              thresholds=[0.5] * len(aus))]).save(str(directory))
    return directory


def label_rate(store: Path, teacher: str, actors: int = 2) -> dict:
    from procmem import PeakRss, wait_for_actors_to_exit  # benchmarks/procmem.py

    from workflows.label import LabelConfig, run_label

    wait_for_actors_to_exit(marker=b"TeacherLabeller")
    t0 = time.perf_counter()
    with PeakRss(marker=b"TeacherLabeller") as rss:
        s = run_label(LabelConfig(teacher=teacher, data=str(store), actors=actors, resume=False, log_every_s=60))
    wall = time.perf_counter() - t0
    return {"rows": s["rows"], "units": s["units"], "seconds": round(wall, 2),
            "rows_per_s_end_to_end": round(s["rows"] / wall, 1), "rows_per_s_steady": s["rows_per_s"],
            "rows_per_s_per_core": round(s["rows_per_s"] / actors, 1), "peak_rss_mb": rss.mb(),
            "teacher": s["teacher"]}


def replicate_store(src: Path, dst: Path, copies: int) -> Path:
    """A store of ``copies`` copies of ``src``'s rows, each copy's subjects, units and sample ids
    renamed (``<subject>_copyNN``): what labelling reads, at ``copies`` times the size, without
    preprocessing the same frames again (labelling's cost does not depend on which faces)."""
    import pyarrow.parquet as pq
    import pyarrow as pa

    info = json.loads((src / "store.json").read_text())
    dst.mkdir(parents=True)
    for f in sorted((src / "frames").rglob("*.parquet")):
        table = pq.read_table(f)
        subject = f.parent.name
        for i in range(copies):
            tag = f"_copy{i:02d}"
            t = table
            for col in ("sample_id", "subject"):
                values = [v.replace(subject, subject + tag, 1) for v in t.column(col).to_pylist()]
                t = t.set_column(t.schema.get_field_index(col), col, pa.array(values, t.schema.field(col).type))
            out = dst / "frames" / f.parent.parent.relative_to(src / "frames") / (subject + tag) / \
                f.name.replace(subject, subject + tag, 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, out)
    info.update(frames_in=info["frames_in"] * copies, units=info["units"] * copies)
    (dst / "store.json").write_text(json.dumps(info))
    return dst


def scale(work: Path, copies: int, cnn: Path) -> dict:
    """The ``scale`` figures of the module docstring: the demo's store and ``copies`` copies of it."""
    import distill_demo  # benchmarks/distill_demo.py

    from components.faces.pipeline import FacePipelineConfig
    from workflows.demo import link_face_photos
    from workflows.preprocess import PreprocessConfig, run_preprocess

    demo = work / "demo"
    demo.mkdir()
    distill_demo.facsflow([], demo, *distill_demo.synth_args(link_face_photos(MEDIA, demo)))
    one = work / "store-x1"
    run_preprocess(PreprocessConfig(dataset="manifest", root=str(distill_demo.unlabeled_folder(demo)), out=str(one),
                                    actors=2, face=FacePipelineConfig(detector="retinaface", landmarker="mediapipe")))
    many = replicate_store(one, work / f"store-x{copies}", copies)
    return {"copies": copies, "how": "the x1 store's rows repeated under new subject and sample ids",
            **{name: {"builtin": label_rate(store, "builtin"), "cnn": label_rate(store, str(cnn))}
               for name, store in (("x1", one), (f"x{copies}", many))}}


def crops_vs_stored(store: Path) -> dict:
    import pyarrow.dataset as pads

    from components.builtin import builtin_ensemble_dir
    from components.predictor import Predictor
    from components.store.rows import decode_jpeg
    from components.teacher import teacher_soft_labels
    from workflows.core.runtime import torch_single_thread

    torch_single_thread()
    rows = pads.dataset(str(store / "frames"), format="parquet").to_table().to_pydict()
    p = Predictor.from_manifest(builtin_ensemble_dir())  # its plan: RetinaFace + MediaPipe
    c0 = time.process_time()
    stored = teacher_soft_labels(p, rows, p.aus, [1, 2, 4])
    stored_ms = (time.process_time() - c0) * 1000 / len(stored)
    p.predict_image(decode_jpeg(rows["image"][0]))  # load the face models before timing
    c0 = time.process_time()
    diffs = []
    for i, img in enumerate(rows["image"]):
        faces = p.predict_image(decode_jpeg(img))
        if faces:
            q = np.array([faces[0]["probs"][f"AU{a}"] for a in p.aus])
            diffs.append(float(np.abs(q - stored[i]).mean()))
    crops_ms = (time.process_time() - c0) * 1000 / len(stored)
    return {"rows": len(stored), "faces_found_on_crops": len(diffs),
            "mean_abs_prob_diff": round(float(np.mean(diffs)), 4), "worst_row_mean_abs_prob_diff": round(max(diffs), 4),
            "cpu_ms_per_row_stored": round(stored_ms, 2), "cpu_ms_per_row_crops": round(crops_ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=10, help="copies of the demo's store in the scale figures (0: skip)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "label.json"))
    args = ap.parse_args()
    import ray

    from workflows.core.runtime import init_ray

    work = Path(tempfile.mkdtemp(prefix="label-bench-"))
    try:
        init_ray(num_cpus=2)
        ray.data.DataContext.get_current().enable_progress_bars = False
        store = build_store(work)
        machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
                   "note": "this project's 2-core CPU machine, shared with other work"}
        result = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "videos": list(VIDEOS),
                  "builtin": label_rate(store, "builtin"),
                  "cnn": label_rate(store, str(cnn_teacher(work / "cnn"))),
                  "crops_vs_stored": crops_vs_stored(store)}
        if args.scale:
            result["scale"] = scale(work, args.scale, work / "cnn")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
