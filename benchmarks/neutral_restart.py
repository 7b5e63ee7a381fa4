"""What a face's running neutral changes in the built-in's answers on real video: the blendshape
member's decisions with the neutral over the whole track (what serving subtracts, and what the
feature store's ``neutral/`` tables give its readers) against the same frames with a neutral that
restarts every N rows (a reader that computes it per batch or per chunk: 64 rows, evaluation's
segments; 24, a small chunk) and against the population neutral (no person-specific one: what
training and evaluation of a store used before the tables).

    .venv/bin/python benchmarks/neutral_restart.py [VIDEO ...] [--frames 600] [--restart 64 24] [--json PATH]

Default videos: ../shared/media/WolfgangLanger_Pexels.mp4 and single_face.mp4 (skipped with a
message where absent). The built-in's face pipeline (RetinaFace + MediaPipe) runs on each frame;
the first face's blendshapes and geometry feed the member. Also prints the CPU time of the
whole track's neutral per row (preprocessing's added cost). Trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))


def restarted_neutral(b: np.ndarray, g: "np.ndarray | None", every: int) -> np.ndarray:
    """``track_neutral`` restarting every ``every`` rows, as a reader that sees one batch at a time."""
    from components.faces.au_geometry import track_neutral

    return np.concatenate([track_neutral(b[i:i + every], None if g is None else g[i:i + every])
                           for i in range(0, len(b), every)])


def flips(probs: np.ndarray, reference: np.ndarray, thresholds: np.ndarray, aus: "list[int]") -> dict:
    """Share of decisions (probability >= the AU's threshold) that differ from ``reference``'s,
    all AUs and per AU, and the mean absolute probability difference."""
    changed = (probs >= thresholds) != (reference >= thresholds)
    return {"flipped": float(changed.mean()), "mean_abs_dp": float(np.abs(probs - reference).mean()),
            "flipped_per_au": {int(a): float(f) for a, f in zip(aus, changed.mean(0))}}


def video_features(path: Path, frames: int) -> tuple[np.ndarray, "np.ndarray | None"]:
    """The first face's blendshapes (n, 52) and geometry (n, K) of the video's first ``frames``
    frames that have one, through the built-in's face pipeline."""
    import cv2

    from components.builtin import BUILTIN_FACES
    from components.faces.pipeline import FacePipeline, FacePipelineConfig

    pipe = FacePipeline(FacePipelineConfig(**BUILTIN_FACES))
    cap = cv2.VideoCapture(str(path))
    bs, geo = [], []
    for i in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        found = pipe.step(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), i)
        if found and found[0].blendshapes is not None:
            bs.append(np.asarray(found[0].blendshapes, np.float32).reshape(-1))
            geo.append(None if found[0].geometry is None else np.asarray(found[0].geometry, np.float32).reshape(-1))
    cap.release()
    g = np.stack(geo) if geo and all(x is not None for x in geo) else None
    return (np.stack(bs) if bs else np.zeros((0, 52), np.float32)), g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="*", type=Path,
                    default=[MEDIA / "WolfgangLanger_Pexels.mp4", MEDIA / "single_face.mp4"])
    ap.add_argument("--frames", type=int, default=600, help="frames read from the start of each video")
    ap.add_argument("--restart", type=int, nargs="+", default=[64, 24], help="rows between restarts")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from components.builtin import builtin_ensemble_dir
    from components.ensemble import EnsembleManifest
    from components.faces.au_geometry import track_neutral
    from components.inference import thresholds_of
    from components.models.registry import build_model

    manifest = EnsembleManifest.load(builtin_ensemble_dir())
    aus = [int(a) for a in manifest.aus]
    thresholds = np.asarray(thresholds_of(manifest), np.float64)
    model = build_model("blendshape", aus).eval()

    def probs(b: np.ndarray, g: "np.ndarray | None", neutral: "np.ndarray | None") -> np.ndarray:
        batch = {"blendshapes": torch.from_numpy(b)}
        if g is not None:
            batch["geometry"] = torch.from_numpy(g)
        if neutral is not None:
            batch["neutral"] = torch.from_numpy(np.ascontiguousarray(neutral, np.float32))
        with torch.no_grad():
            return torch.sigmoid(model(batch)["logits"]).numpy().astype(np.float64)

    results = []
    for path in args.videos:
        if not path.exists():
            print(f"{path}: absent, skipped (the real media of ../shared/media; see its NOTICE.md)")
            continue
        b, g = video_features(path, args.frames)
        if len(b) < 2:
            print(f"{path.name}: fewer than 2 frames with a face mesh, skipped")
            continue
        t0 = time.process_time()
        whole_neutral = track_neutral(b, g)
        cost = (time.process_time() - t0) / len(b)
        whole = probs(b, g, whole_neutral)
        record = {"video": path.name, "frames": len(b), "neutral_cpu_ms_per_row": 1000 * cost,
                  "against_whole_track": {}}
        print(f"{path.name}: the whole track's running neutral, {1000 * cost:.2f} CPU ms a row "
              "(what preprocessing adds per row with blendshapes)")
        variants = {f"restart every {n}": restarted_neutral(b, g, n) for n in args.restart}
        variants["population neutral"] = None
        for name, neutral in variants.items():
            r = flips(probs(b, g, neutral), whole, thresholds, aus)
            record["against_whole_track"][name] = r
            worst = sorted(r["flipped_per_au"].items(), key=lambda kv: -kv[1])[:4]
            print(f"{path.name} ({len(b)} frames with a face): {name:>20}: {100 * r['flipped']:5.1f} % of decisions "
                  f"differ from the whole track's, mean |dp| {r['mean_abs_dp']:.3f}; most: "
                  + ", ".join(f"AU{a} {100 * f:.0f} %" for a, f in worst))
        results.append(record)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
