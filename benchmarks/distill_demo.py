"""Distillation's worked example, end to end as a user types it: unlabeled real and synthetic
video labelled by the built-in teacher, a fast student trained on those labels with 2 Ray Train
workers, then the student against the teacher on a video neither the student nor its store saw.

    .venv/bin/python benchmarks/distill_demo.py [--work DIR] [--epochs 12] [--json benchmarks/results/distill.json]

Steps (each a ``facsflow`` command in a subprocess; the JSON lists them):

1. ``synth --layout disfa --faces PHOTOS``: the five face photos of ../shared/media (eight
   identities) rendered as 16 short videos, written as DISFA-layout AVI files;
2. a plain folder of unlabeled media, one sub-folder per identity (the manifest dataset reads a
   folder without manifest.csv as unlabeled video and images, subject = sub-folder): the synthetic
   videos and the photo each was rendered from, ``single_face.mp4`` and ``no_face.mp4`` with the
   drawing of ../shared/media (frames without a face keep unknown labels);
3. ``preprocess`` with the built-in's face pipeline (RetinaFace + MediaPipe: the teacher reads
   the stored blendshapes), ``label --teacher builtin``;
4. ``train --model baseline_mobilenetv2_112 --workers 2 --label-sources teacher`` (the fastest
   family at 112 px, from ImageNet MobileNetV2), fold 1 of 3 by identity; ``evaluate --against
   teacher --tune-thresholds``: agreement on the fold's held-out identities, the student's
   thresholds tuned on its validation identities against the teacher's decisions; ``ensemble
   --thresholds``: the student's folder;
5. held out entirely: ``WolfgangLanger_Pexels.mp4`` (472 frames, a person in none of the inputs).
   ``facsflow predict --ensemble student --detector retinaface --landmarker dlib`` answers it as a
   user would (the store was built with MediaPipe for the teacher; the student reads crops only); then
   the teacher and the student each answer it through ``Detector.predict_video`` (what
   ``predict`` runs), one torch thread: the teacher with its own face pipeline (RetinaFace every
   6th frame, MediaPipe landmarks and blendshapes on every frame), the student with RetinaFace
   every 6th frame and dlib's landmarks (and, as ``student_dlib_detector``, with ``predict``'s
   default detector for a trained ensemble, dlib's HOG). Figures: agreement F1 of the
   student's decisions with the teacher's (teacher threshold 0.3, student's validation-tuned
   thresholds), per-AU correlation of probabilities, the all-positive student's agreement F1 as
   the floor, and video frames per CPU-second (= frames/s on one core) of each, measured side by
   side in this process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))
HELD_OUT = "WolfgangLanger_Pexels.mp4"
STUDENT = "baseline_mobilenetv2_112"


def facsflow(commands: list[str], work: Path, *args: str) -> str:
    """Run one ``facsflow`` command in ``work`` (its own embedded Ray), echo and record it."""
    line = "facsflow " + " ".join(args)
    commands.append(line)
    print(f"$ {line}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=work, env=env,
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{line} failed (exit {proc.returncode}):\n{out[-4000:]}")
    print("\n".join(f"  {s}" for s in proc.stdout.strip().splitlines()[-4:]),
          f"\n  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def synth_args(faces: Path) -> list[str]:
    """Step 1's command line: 8 identities x 2 pseudo-subjects, one 120-frame video each."""
    return ["synth", "--out", "synth", "--layout", "disfa", "--faces", str(faces),
            "--subjects-per-identity", "2", "--videos-per-subject", "1", "--frames-per-video", "120"]


def unlabeled_folder(work: Path) -> Path:
    """The plain folder of step 2 (symbolic links; nothing copied)."""
    root = work / "unlabeled"
    groups = {r["subject"]: r["group"] for r in csv.DictReader((work / "synth" / "synth_meta" / "subjects.csv").open())}
    sources = {r["subject"]: r["source"] for r in csv.DictReader((work / "synth" / "synth_meta" / "subjects.csv").open())}
    for subject, group in groups.items():
        folder = root / group
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{subject}.avi").symlink_to(work / "synth" / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi")
        photo = folder / sources[subject]
        if group.endswith("_face0") and not photo.exists():
            photo.symlink_to(MEDIA / sources[subject])
    for folder, names in (("single_face_video", ("single_face.mp4",)),
                          ("no_face", ("no_face.mp4", "free-mountain-vector-01.jpg"))):
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).symlink_to(MEDIA / name)
    return root


def side_by_side(student_dir: Path, video: Path) -> dict[str, Any]:
    """Teacher and student on the held-out video: agreement and frames per CPU-second."""
    import torch

    from components.au_detector import Detector
    from components.builtin import BUILTIN_THRESHOLD
    from components.ensemble import EnsembleManifest
    from components.metrics.agreement import teacher_agreement

    torch.set_num_threads(1)
    # The student reads crops only: dlib's landmarks over the MediaPipe its store was built with
    # (for the teacher's blendshapes), as `predict --landmarker dlib` answers it.
    arms = {"teacher": Detector.pretrained(),
            "student": Detector.from_ensemble(student_dir, faces={"landmarker": "dlib"}),
            "student_dlib_detector": Detector.from_ensemble(student_dir, faces={"detector": "dlib", "landmarker": "dlib"})}
    out: dict[str, Any] = {"video": video.name}
    tables = {}
    for name, det in arms.items():
        det.predict_image(MEDIA / "single_face.jpg")  # load every model before timing
        c0, t0 = time.process_time(), time.perf_counter()
        df = det.predict_video(video)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        n = int(df["frame"].nunique())
        cfg = det.predictor.pipeline.config
        out[name] = {"frames": n, "frames_with_face": int(df.loc[df["success"] == 1, "frame"].nunique()),
                     "cpu_s": round(cpu, 2), "frames_per_cpu_s": round(n / cpu, 1),
                     "wall_frames_per_s": round(n / wall, 1),
                     "faces": {"detector": cfg.detector, "landmarker": cfg.landmarker,
                               "detect_every": cfg.detect_every}}
        tables[name] = df[df["success"] == 1].drop_duplicates("frame").set_index("frame")
    student = EnsembleManifest.load(str(student_dir))
    aus = list(student.aus)
    cols = [f"AU{a:02d}_p" for a in aus]
    for name in ("student", "student_dlib_detector"):
        frames = tables["teacher"].index.intersection(tables[name].index)
        soft = tables["teacher"].loc[frames, cols].to_numpy(np.float64)
        probs = tables[name].loc[frames, cols].to_numpy(np.float64)
        agree = teacher_agreement(probs, student.thresholds, soft, [BUILTIN_THRESHOLD] * len(aus), aus)
        floor = teacher_agreement(np.ones_like(probs), [0.5] * len(aus), soft, [BUILTIN_THRESHOLD] * len(aus), aus)
        out[name].update(frames_compared=len(frames), mean_agreement_f1=agree["mean_agreement_f1"],
                         mean_correlation=agree["mean_correlation"], agreement_f1=agree["agreement_f1"],
                         correlation=agree["correlation"],
                         all_positive_agreement_f1=floor["mean_agreement_f1"])
        out[name]["speed_vs_teacher"] = round(out[name]["frames_per_cpu_s"] / out["teacher"]["frames_per_cpu_s"], 2)
    return out


def main(argv: "list[str] | None" = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="working folder (kept); default a temporary one, removed")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "distill.json")
    args = ap.parse_args(argv)
    missing = [n for n in ("single_face.mp4", "no_face.mp4", HELD_OUT) if not (MEDIA / n).is_file()]
    if missing:
        raise SystemExit(f"{MEDIA}: {missing} not found: this benchmark needs ../shared/media")
    from workflows.demo import link_face_photos

    work = args.work or Path(tempfile.mkdtemp(prefix="distill-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    t_start = time.perf_counter()
    try:
        facsflow(commands, work, *synth_args(link_face_photos(MEDIA, work)))
        unlabeled_folder(work)
        facsflow(commands, work, "preprocess", "--dataset", "manifest", "--root", "unlabeled", "--out", "store",
                       "--face.detector", "retinaface", "--face.landmarker", "mediapipe")
        facsflow(commands, work, "label", "--teacher", "builtin", "--data", "store")
        labels = json.loads((work / "store" / "labels.json").read_text())
        t0 = time.perf_counter()
        facsflow(commands, work, "train", "--model", STUDENT, "--data", "store", "--out", "runs", "--workers", "2",
                 "--label-sources", "teacher", "--epochs", str(args.epochs))
        train_s = time.perf_counter() - t0
        run = work / "runs" / f"{STUDENT}-fold1"
        summary = json.loads((run / "run.json").read_text())
        epochs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        facsflow(commands, work, "evaluate", "--runs", "runs", "--out", "report", "--against", "teacher",
                 "--tune-thresholds")
        report = json.loads((work / "report" / "report.json").read_text())
        fold = report["teacher_agreement"]["models"][STUDENT]["folds"][0]
        test_subjects = json.loads((run / "split.json").read_text())["test"]
        facsflow(commands, work, "ensemble", "--runs", "runs", "--out", "student", "--thresholds", "report")
        facsflow(commands, work, "predict", "--ensemble", "student", "--input", str(MEDIA / HELD_OUT), "--out",
                 "predictions", "--detector", "retinaface", "--landmarker", "dlib")
        held_out = side_by_side(work / "student", MEDIA / HELD_OUT)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/distill_demo.py" + (f" --epochs {args.epochs}" if args.epochs != 12 else ""),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
                    "note": "this project's 2-core CPU machine, shared with other work; speeds are per CPU-second"},
        "commands": commands,
        "store": {"rows": labels.get("rows"), "labelled": labels.get("labelled"), "no_face_frames": labels.get("no_face_frames"), "teacher": labels["source"], "aus": labels["aus"],
                  "thresholds": labels["thresholds"]},
        "student": {"model": STUDENT, "workers": 2, "epochs": args.epochs, "train_seconds": round(train_s, 1),
                    "val_labels": summary.get("val_labels"), "split": summary.get("split"),
                    "loss_history": [e.get("train_loss") for e in epochs],
                    "val_mean_f1_history": [e.get("val_mean_f1") for e in epochs]},
        "held_out_identities": {"subjects": test_subjects,
                                "n_rows": fold["n_rows"],
                                "mean_agreement_f1": fold["mean_agreement_f1"],
                                "mean_correlation": fold["mean_correlation"]},
        "held_out_video": held_out,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("store", "held_out_identities", "held_out_video")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
