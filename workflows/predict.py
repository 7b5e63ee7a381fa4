"""Batch prediction over images and videos with Ray Data: OpenFace-style CSVs plus one Parquet.

``python -m workflows.predict --ensemble DIR --input PATH... --out DIR``

One input file is one unit of work; the ensemble loads once per actor. Per input, ``<out>/<name>.csv``
has OpenFace's columns: frame, face_id, timestamp, confidence, success, x_0..x_67, y_0..y_67,
AUxx_c (occurrence), AUxx_r (intensity, where members give it) and AUxx_p (our probability
column); frames without a face are rows with success = 0. ``<out>/predictions/`` holds all rows
as Parquet.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.au import au_column

log = logging.getLogger("facsflow.predict")

__all__ = ["rows_to_openface", "collect_inputs", "run_predict", "main"]

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def collect_inputs(paths: list[str]) -> list[str]:
    """Image and video files among files, folders (recursive) and manifests (.txt/.csv of paths)."""
    from workflows.runtime import UserError

    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [str(f) for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_EXT | VIDEO_EXT]
        elif p.is_file() and p.suffix.lower() in (".txt", ".csv"):
            lines = [ln.split(",")[0].strip() for ln in p.read_text().splitlines() if ln.strip()]
            out += [str((p.parent / ln).resolve()) for ln in lines if Path(ln).suffix.lower() in IMAGE_EXT | VIDEO_EXT]
        elif p.is_file():
            out.append(str(p))
        else:
            raise UserError(f"input not found: {p}")
    if not out:
        raise UserError(f"no images or videos under {paths}")
    return out


def rows_to_openface(rows: list[dict[str, Any]], aus: list[int]) -> pd.DataFrame:
    """Predictor rows → an OpenFace-style frame table."""
    recs = []
    for r in rows:
        rec: dict[str, Any] = {"frame": r.get("frame", 0), "face_id": r.get("face_id", -1),
                               "timestamp": round(float(r.get("timestamp", 0.0)), 4),
                               "confidence": round(float(r.get("score", 0.0)), 4), "success": int(r.get("success", 1))}
        lms = np.asarray(r["landmarks"], np.float32) if r.get("landmarks") is not None else np.full((68, 2), np.nan)
        rec.update({f"x_{i}": float(lms[i, 0]) for i in range(68)})
        rec.update({f"y_{i}": float(lms[i, 1]) for i in range(68)})
        for a in aus:
            key = f"AU{a}"
            rec[au_column(a, "_c")] = r["occurrence"][key] if "occurrence" in r else np.nan
            if "intensity" in r:
                rec[au_column(a, "_r")] = r["intensity"][key]
            rec[au_column(a, "_p")] = r["probs"][key] if "probs" in r else np.nan
        recs.append(rec)
    return pd.DataFrame.from_records(recs)


class FilePredictor:
    """Ray Data class UDF: one input file per call; the ensemble loads once per actor."""

    def __init__(self, ensemble: str, out: str) -> None:
        from components.predictor import Predictor
        from workflows.runtime import torch_single_thread

        torch_single_thread()
        self.predictor = Predictor.from_manifest(ensemble)
        self.out = Path(out)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import cv2

        names, counts, errors = [], [], []
        for path, name in zip(batch["path"], batch["name"]):
            err = ""
            try:
                if Path(path).suffix.lower() in VIDEO_EXT:
                    cap = cv2.VideoCapture(path)
                    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0

                    def frames():
                        while True:
                            ok, bgr = cap.read()
                            if not ok:
                                return
                            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

                    rows = self.predictor.predict_video(frames(), fps)
                    cap.release()
                else:
                    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
                    if bgr is None:
                        raise ValueError(f"{path}: not a readable image")
                    faces = self.predictor.predict_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                    rows = [dict(f, frame=0, timestamp=0.0, success=1) for f in faces] or \
                        [{"frame": 0, "face_id": -1, "timestamp": 0.0, "success": 0}]
                df = rows_to_openface(rows, self.predictor.aus)
            except Exception as e:  # noqa: BLE001 - one bad input must not stop the batch
                err = f"{type(e).__name__}: {e}"
                df = rows_to_openface([], self.predictor.aus)
            df.insert(0, "input", path)
            self.out.mkdir(parents=True, exist_ok=True)
            df.drop(columns=["input"]).to_csv(self.out / f"{name}.csv", index=False)
            (self.out / "predictions").mkdir(exist_ok=True)
            df.to_parquet(self.out / "predictions" / f"{name}.parquet", index=False)
            names.append(name)
            counts.append(len(df))
            errors.append(err)
        return {"name": names, "rows": counts, "error": errors}


def run_predict(ensemble: str, inputs: list[str], out: str, actors: int = 0) -> list[dict[str, Any]]:
    import ray

    files = collect_inputs(inputs)
    stems: dict[str, int] = {}
    items = []
    for f in files:
        stem = Path(f).stem
        stems[stem] = stems.get(stem, 0) + 1
        items.append({"path": f, "name": stem if stems[stem] == 1 else f"{stem}_{stems[stem]}"})
    n = actors or max(1, min(len(items), int(ray.cluster_resources().get("CPU", 1))))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    res = ds.map_batches(FilePredictor, batch_size=1,
                         fn_constructor_kwargs={"ensemble": ensemble, "out": str(Path(out).resolve())},
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n), num_cpus=1)
    return list(res.iter_rows())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facsflow predict",
                                description="Predict AUs for images and videos into OpenFace-style CSVs "
                                            "(one per input) and one Parquet dataset.")
    p.add_argument("--ensemble", required=True, help="ensemble folder (ensemble.json)")
    p.add_argument("--input", nargs="+", required=True, help="files, folders, or a .txt/.csv list of paths")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray)")
    return p


def main(argv: "list[str] | None" = None) -> int:
    from workflows.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    with ray_session(args.address):
        res = run_predict(args.ensemble, args.input, args.out)
    for r in res:
        print(f"{args.out}/{r['name']}.csv: {r['rows']} rows" + (f"  ERROR {r['error']}" if r["error"] else ""))
    return 1 if any(r["error"] for r in res) else 0


if __name__ == "__main__":
    from workflows.runtime import run_main

    raise SystemExit(run_main(main))
