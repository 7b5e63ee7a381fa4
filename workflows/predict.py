"""Batch prediction over images and videos with Ray Data: OpenFace-style CSVs plus one Parquet.

``facsflow predict [--ensemble DIR] --input PATH... --out DIR [--detector dlib|mtcnn|retinaface] [--landmarker dlib|fan|mediapipe] [--policy tracked|all] [--reidentify]``
(no ``--ensemble``: the built-in detector, ``components.builtin``; faces are detected and aligned
as the ensemble's stores were, ``components.plan``, unless ``--detector`` / ``--landmarker`` say otherwise)

Inputs are files, folders (searched recursively) or manifests (``.txt``/``.csv`` whose first
column lists paths, relative to the manifest). One input file is one unit of work (a video is
never split: tracking and temporal landmark differences need its frames in order); each actor
builds a ``components.au_detector.Detector`` once (models, face detector) and reuses it, on a GPU
when the cluster has one: the one orchestration (``components.inference``) that Serve and
evaluation run, video probabilities smoothed as served. A video is answered a segment at a time
as a job under ``<out>/.jobs/`` (``components.video_jobs``: memory flat in the video's length,
the rows written part by part; a rerun after a crash carries it on), and the console gets a
progress line per running video every ``PROGRESS_EVERY_S`` seconds (frames done / total, fps,
ETA). Outputs:

- ``<out>/<name>.csv`` per input: the columns of ``components.au_detector`` (frame, face_id,
  timestamp, confidence, success, x_0..x_67, y_0..y_67, AUxx_c, AUxx_r where some member gives
  intensity, AUxx_p probability), one row per frame and tracked face, ``success`` 0 on a frame
  without a face (a still image without a face is one such row);
- ``<out>/model_card.json``: the ensemble's members and model card (what it is, trained on what,
  licence; the built-in's says so);
- ``<out>/predictions/`` one Parquet dataset of all rows, with ``input`` (the source path) and
  ``name`` (the CSV's name) first.

An input that cannot be read is reported (and the exit code is 1) without stopping the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import pandas as pd

from components.plan import SMOOTH_WINDOW

log = logging.getLogger("facsflow.predict")

__all__ = ["PredictConfig", "collect_inputs", "FilePredictor", "run_predict", "read_predictions", "main",
           "IMAGE_EXT", "VIDEO_EXT"]

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
JOBS_FOLDER = ".jobs"
"""Videos in flight under ``<out>/``: one ``components.video_jobs`` job each, removed when written."""
PROGRESS_EVERY_S = 10.0
"""Seconds between progress lines of the videos being answered."""


@dataclass
class PredictConfig:
    """One batch prediction; saved as ``<out>/predict.yaml``."""

    ensemble: str = ""
    """Ensemble folder (ensemble.json); empty: the built-in detector (MediaPipe blendshapes mapped
    to AUs, real faces, no training: ``components.builtin``)."""
    input: tuple[str, ...] = ()
    """Files, folders (searched recursively), or .txt/.csv lists of paths."""
    out: str = ""
    """Output folder: one CSV per input and predictions/ (Parquet)."""
    detector: Literal['dlib', 'mtcnn', 'retinaface'] | None = None
    """Face detector (default: the one the ensemble's feature stores were built with, recorded in
    its manifest; the built-in's is retinaface)."""
    landmarker: Literal['dlib', 'fan', 'mediapipe'] | None = None
    """Landmark model (default: the one the ensemble's feature stores were built with; MediaPipe's
    whenever a member reads blendshapes). A student of the built-in learnt from a store built with
    MediaPipe (its teacher read the blendshapes) but reads only crops: ``dlib`` answers ~4x
    cheaper per face (docs/models.md, distillation)."""
    policy: Literal["tracked", "largest", "all"] = "tracked"
    """Faces followed through videos (still images always report every face)."""
    reidentify: bool = False
    """Videos: one ``face_id`` per person across cuts and re-entries (FaceNet embeddings; the
    encoder's licence goes into model_card.json: ``components.faces.identity``)."""
    actors: int = 0
    """Parallel actors (0: one per CPU, or per GPU)."""
    smooth_window: int = SMOOTH_WINDOW
    """Frames of the centred moving mean over video probabilities (odd; 1: none); the default is
    what Serve answers with."""

    def __post_init__(self) -> None:
        if self.actors < 0:
            raise ValueError(f"actors must be >= 0, got {self.actors}")


def collect_inputs(paths: list[str]) -> list[str]:
    """Image and video files among files, folders (recursive) and manifests (.txt/.csv of paths)."""
    from workflows.core.runtime import UserError

    media = IMAGE_EXT | VIDEO_EXT
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in media]
        elif p.is_file() and p.suffix.lower() in (".txt", ".csv"):
            lines = [ln.split(",")[0].strip() for ln in p.read_text().splitlines() if ln.strip()]
            listed = [ln for ln in lines if Path(ln).suffix.lower() in media]
            missing = [ln for ln in listed if not (p.parent / ln).is_file()]
            if missing:
                raise UserError(f"{p}: listed file(s) not found: {', '.join(missing[:5])}")
            out += [str((p.parent / ln).resolve()) for ln in listed]
        elif p.is_file():
            if p.suffix.lower() not in media:
                raise UserError(f"{p}: not an image or video ({', '.join(sorted(media))})")
            out.append(str(p))
        else:
            raise UserError(f"input not found: {p}")
    if not out:
        raise UserError(f"no images or videos under {paths}")
    return out


class FilePredictor:
    """Ray Data class UDF: one input file per call; the Detector loads once per actor."""

    def __init__(self, ensemble: str, out: str, faces: dict[str, Any], use_gpu: bool = False,
                 smooth_window: "int | None" = None) -> None:
        import torch

        from components.au_detector import Detector
        from workflows.core.runtime import torch_single_thread

        torch_single_thread()
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.detector = Detector.from_ensemble(ensemble, device, faces, smooth_window)
        self.out = Path(out)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        names, counts, faces, errors = [], [], [], []
        for path, name in zip(batch["path"], batch["name"]):
            err, df = "", None
            n_rows = n_faces = 0
            try:
                if Path(path).suffix.lower() in VIDEO_EXT:
                    n_rows, n_faces = self._video(str(path), name)
                else:
                    df = self.detector.predict_image(path)
                    self._write(name, str(path), [df])
                    n_rows, n_faces = len(df), int(df["success"].sum())
            except (OSError, ValueError) as e:  # one unreadable input must not stop the batch
                err = f"{type(e).__name__}: {e}"
            names.append(name)
            counts.append(n_rows)
            faces.append(n_faces)
            errors.append(err)
        return {"name": names, "rows": counts, "rows_with_face": faces, "error": errors}


    def _write(self, name: str, path: str, tables: Iterable[pd.DataFrame]) -> tuple[int, int]:
        """``<out>/<name>.csv`` and ``<out>/predictions/<name>.parquet`` (with ``input`` and ``name``
        first) from the tables of one input, written one table at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = with_face = 0
        writer = None
        with open(self.out / f"{name}.csv", "w", newline="") as csv:
            for i, df in enumerate(tables):
                df.to_csv(csv, index=False, header=i == 0)
                table = df.copy()
                table.insert(0, "name", name)
                table.insert(0, "input", path)
                part = pa.Table.from_pandas(table, preserve_index=False)
                writer = writer or pq.ParquetWriter(self.out / "predictions" / f"{name}.parquet", part.schema)
                writer.write_table(part)
                rows, with_face = rows + len(df), with_face + int(df["success"].sum())
        if writer is not None:
            writer.close()
        return rows, with_face

    def _video(self, path: str, name: str) -> tuple[int, int]:
        """A video as a job in ``<out>/.jobs/`` (``components.video_jobs``: a segment at a time,
        memory flat in its length, its progress in the job's status, carried on by a rerun after a
        crash), then its parts into the outputs."""
        import contextlib
        import hashlib
        import shutil

        from components import video_jobs as vj

        root = str(self.out / JOBS_FOLDER)
        job_id = hashlib.sha1(f"{Path(path).resolve()}\0{name}".encode()).hexdigest()[:16]
        try:
            state = vj.read_status(root, job_id)["state"]
        except vj.UnknownJob:
            state = ""
        if state in ("failed", "cancelled"):
            shutil.rmtree(Path(root) / job_id)
        if state in ("", "failed", "cancelled"):
            vj.new_job(root, path, name, job_id)
        status = vj.run_job(self.detector, root, job_id)
        if status["state"] != "done":  # reported in the summary; a rerun starts afresh
            shutil.rmtree(Path(root) / job_id)
            raise ValueError(status["error"] or f"{path}: job {status['state']}")
        counts = self._write(name, path, (t.to_pandas() for t in vj.result_parts(root, job_id)))
        shutil.rmtree(Path(root) / job_id)
        with contextlib.suppress(OSError):  # the last video's job gone: no empty folder left in OUT
            Path(root).rmdir()
        return counts


def _report_progress(out: Path, stop: threading.Event, every_s: float) -> None:
    """Log each running video's progress (frames done / total, fps, ETA) from its job status."""
    from components import video_jobs as vj

    last: dict[str, int] = {}
    while not stop.wait(every_s):
        for st in vj.list_jobs(str(out / JOBS_FOLDER)):
            if st["state"] != "running" or last.get(st["id"]) == st["frames_done"]:
                continue
            last[st["id"]] = st["frames_done"]
            total, eta = st["frames_total"], st["eta_s"]
            log.info("%s: %d/%s frames%s, %.1f fps, ETA %s", st["name"], st["frames_done"], total or "?",
                     f" ({100 * st['frames_done'] / total:.0f}%)" if total else "", st["fps"] or 0.0,
                     f"{int(eta) // 60}:{int(eta) % 60:02d}" if eta is not None else "?")


def run_predict(ensemble: str, inputs: list[str], out: str, actors: int = 0,
                faces: "dict[str, Any] | None" = None, smooth_window: "int | None" = None) -> list[dict[str, Any]]:
    """Predict every input; return one summary per input (name, rows, rows_with_face, error).

    ``ensemble``: an ensemble folder, or empty for the built-in detector (``components.plan.
    resolve_ensemble``). ``faces``: face pipeline fields over the ensemble's recorded ones.
    ``smooth_window``: frames of the centred moving mean over video probabilities (odd; 1: none;
    None: ``components.plan.SMOOTH_WINDOW``, what Serve answers with by default)."""
    import ray

    files = collect_inputs(inputs)
    stems: dict[str, int] = {}
    items = []
    for f in files:
        stem = Path(f).stem
        stems[stem] = stems.get(stem, 0) + 1
        items.append({"path": f, "name": stem if stems[stem] == 1 else f"{stem}_{stems[stem]}"})
    out_dir = Path(out).resolve()
    (out_dir / "predictions").mkdir(parents=True, exist_ok=True)
    from components.faces.identity import identity_card
    from components.plan import resolve_ensemble

    plan = resolve_ensemble(ensemble, faces, smooth_window)
    # What answered, trained on what, under which licence, and with which faces, beside the CSVs.
    (out_dir / "model_card.json").write_text(json.dumps(
        {"ensemble": plan.directory, "members": [m.name for m in plan.manifest.members],
         **plan.manifest.card(), "faces": {k: plan.faces[k] for k in ("detector", "landmarker", "align_size")},
         **({"identity": identity_card()} if plan.faces.get("reidentify") else {})}, indent=2))
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0)
    n = actors or max(1, min(len(items), int(gpus) if gpus else int(resources.get("CPU", 1))))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    res = ds.map_batches(FilePredictor, batch_size=1,
                         fn_constructor_kwargs={"ensemble": plan.directory, "out": str(out_dir),
                                                "faces": dict(faces or {}), "use_gpu": gpus > 0,
                                                "smooth_window": smooth_window},
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n), num_cpus=1,
                         num_gpus=1 if gpus else 0)
    stop = threading.Event()
    progress = threading.Thread(target=_report_progress, args=(out_dir, stop, PROGRESS_EVERY_S), daemon=True)
    progress.start()
    try:
        return sorted(res.iter_rows(), key=lambda r: r["name"])
    finally:
        stop.set()


def read_predictions(out: str) -> pd.DataFrame:
    """All rows of a ``facsflow predict`` output folder's Parquet dataset."""
    return pd.read_parquet(Path(out) / "predictions")


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``PredictConfig`` (``--ensemble``, ``--input``, ``--out``, ``--detector``, ...)."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(PredictConfig, "facsflow predict",
                        description="Predict AUs for images and videos into OpenFace-style CSVs "
                                    "(one per input) and one Parquet dataset.")


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.stage_cli import save_config, stage_config
    from workflows.core.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    cfg: PredictConfig = stage_config(args, required=("input", "out"))
    save_config(cfg, cfg.out, "predict")
    faces: dict[str, Any] = {"policy": cfg.policy, "reidentify": cfg.reidentify,
                             **{k: v for k, v in (("detector", cfg.detector), ("landmarker", cfg.landmarker)) if v}}
    with ray_session(args.address):
        res = run_predict(cfg.ensemble, list(cfg.input), cfg.out, cfg.actors, faces, cfg.smooth_window)
    for r in res:
        where = f"{cfg.out}/{r['name']}.csv"
        print(f"{where}: {r['rows']} rows, {r['rows_with_face']} with a face"
              if not r["error"] else f"{r['name']}: ERROR {r['error']}")
    print(f"all rows: {cfg.out}/predictions/ (Parquet)")
    return 1 if any(r["error"] for r in res) else 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
