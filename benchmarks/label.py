"""Labelling a store with a teacher: rows/s through the workflow, and why the built-in reads the
stored blendshapes instead of re-running its face pipeline on the stored crops.

    .venv/bin/python benchmarks/label.py [--json benchmarks/results/label.json]

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
  |difference| of the AU probabilities, and CPU ms per row of each way (one thread).
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


def label_rate(store: Path, teacher: str) -> dict:
    from workflows.label import LabelConfig, run_label

    t0 = time.perf_counter()
    s = run_label(LabelConfig(teacher=teacher, data=str(store), actors=2, resume=False, log_every_s=60))
    wall = time.perf_counter() - t0
    return {"rows": s["rows"], "units": s["units"], "seconds": round(wall, 2),
            "rows_per_s_end_to_end": round(s["rows"] / wall, 1), "rows_per_s_steady": s["rows_per_s"],
            "teacher": s["teacher"]}


def crops_vs_stored(store: Path) -> dict:
    import pyarrow.dataset as pads

    from components.builtin import BUILTIN_FACES, builtin_ensemble_dir
    from components.faces.pipeline import FacePipelineConfig
    from components.predictor import Predictor
    from components.store.rows import decode_jpeg
    from components.teacher import teacher_soft_labels
    from workflows.runtime import torch_single_thread

    torch_single_thread()
    rows = pads.dataset(str(store / "frames"), format="parquet").to_table().to_pydict()
    p = Predictor.from_manifest(builtin_ensemble_dir(), face_config=FacePipelineConfig(**BUILTIN_FACES))
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
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "label.json"))
    args = ap.parse_args()
    import ray

    from workflows.runtime import init_ray

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
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
