"""Landmark jitter and throughput of the face tracker through one video, on one CPU core.

    .venv/bin/python benchmarks/faces_jitter.py [--video PATH] [--json out.json]

Reports, for the tracked face:
- ``jitter_raw``: mean frame-to-frame displacement of the stable points (eye corners, nose,
  nostril base, mouth corners) divided by the inter-ocular distance (outer eye corners);
  this includes the real head and mouth motion of the video;
- ``jitter_smoothed``: the same after a centred moving average over ``--smooth`` frames;
- ``tremor``: RMS distance between raw and smoothed stable points / inter-ocular distance,
  the high-frequency part that is mostly landmark noise;
- ``jump_at_detection`` / ``jump_tracked``: mean raw displacement into detection frames and
  into tracked frames (a box-convention mismatch shows up as larger jumps at detections);
- ``crop_jitter_px``: mean frame-to-frame displacement of stable points in the aligned crop;
- detections used, and frames/s of tracking alone and of the full pipeline (with alignment),
  from this process's CPU time (the one-core cost) and from wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from components.faces import FacePipeline, FacePipelineConfig
from components.geometry import STABLE_POINTS

ROOT = Path(__file__).resolve().parents[1]


def read_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB uint8."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"no frames could be read from {path}")
    return frames


def moving_average(seq: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0, window shrunk at the ends."""
    half = window // 2
    csum = np.concatenate([np.zeros_like(seq[:1]), np.cumsum(seq, axis=0)])
    idx = np.arange(len(seq))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(seq))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None, None]


def jitter_report(lms: np.ndarray, crop_lms: np.ndarray, detected: np.ndarray, smooth: int) -> dict:
    """Jitter figures for landmark tracks (T, 68, 2) of one face, in consecutive frames."""
    idx = list(STABLE_POINTS)
    iod = np.linalg.norm(lms[:, 36] - lms[:, 45], axis=1)
    step = np.linalg.norm(np.diff(lms[:, idx], axis=0), axis=2).mean(1) / iod[1:]
    smoothed = moving_average(lms, smooth)
    s_step = np.linalg.norm(np.diff(smoothed[:, idx], axis=0), axis=2).mean(1) / iod[1:]
    tremor = np.sqrt((np.linalg.norm(lms[:, idx] - smoothed[:, idx], axis=2) ** 2).mean(1)) / iod
    crop_step = np.linalg.norm(np.diff(crop_lms[:, idx], axis=0), axis=2).mean(1)
    into_det = detected[1:]
    return {
        "inter_ocular_px_mean": float(iod.mean()),
        "jitter_raw": float(step.mean()),
        "jitter_smoothed": float(s_step.mean()),
        "tremor": float(tremor.mean()),
        "jump_at_detection": float(step[into_det].mean()) if into_det.any() else None,
        "jump_tracked": float(step[~into_det].mean()) if (~into_det).any() else None,
        "crop_jitter_px": float(crop_step.mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print/write its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4")
    p.add_argument("--detector", default="dlib", choices=["dlib", "mtcnn"])
    p.add_argument("--landmarker", default="dlib", choices=["dlib", "fan"])
    p.add_argument("--detect-every", type=int, default=6)
    p.add_argument("--detect-scale", type=float, default=0.5)
    p.add_argument("--upsample", type=int, default=1, help="dlib detector upsamplings")
    p.add_argument("--no-refit-on-detect", action="store_true")
    p.add_argument("--smooth", type=int, default=5, help="moving-average window for the smoothed figures")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if not args.video.is_file():
        raise SystemExit(f"video not found: {args.video}")
    frames = read_frames(args.video)
    cfg = FacePipelineConfig(
        detector=args.detector, landmarker=args.landmarker, detect_every=args.detect_every,
        detect_scale=args.detect_scale, dlib_upsample=args.upsample,
        refit_on_detect=not args.no_refit_on_detect,
    )
    pipe = FacePipeline(cfg)

    # CPU time of this (single-threaded) process is the one-core cost even when other work
    # shares the machine; wall time is reported beside it.
    t0, c0 = time.perf_counter(), time.process_time()
    tracked = [pipe.tracker.step(f, i) for i, f in enumerate(frames)]
    track_s, track_cpu = time.perf_counter() - t0, time.process_time() - c0
    detections = pipe.tracker.detections

    pipe.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    results = [pipe.step(f, i) for i, f in enumerate(frames)]
    pipe_s, pipe_cpu = time.perf_counter() - t0, time.process_time() - c0

    with_face = [i for i, r in enumerate(results) if r]
    ids = sorted({r[0].face.face_id for r in results if r})
    # Jitter over the longest run of consecutive frames that have the first face.
    runs, start = [], None
    for i in range(len(results) + 1):
        ok = i < len(results) and results[i] and results[i][0].face.face_id == ids[0]
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((start, i))
            start = None
    lo, hi = max(runs, key=lambda r: r[1] - r[0]) if runs else (0, 0)
    report = {
        "video": str(args.video),
        "frames": len(frames),
        "frame_size": list(frames[0].shape[:2][::-1]),
        "config": {"detector": args.detector, "landmarker": args.landmarker,
                   "detect_every": args.detect_every, "detect_scale": args.detect_scale,
                   "dlib_upsample": args.upsample, "refit_on_detect": cfg.refit_on_detect},
        "frames_with_face": len(with_face),
        "face_ids": ids,
        "detections": detections,
        "fps_tracking_cpu": len(frames) / track_cpu,
        "fps_pipeline_cpu": len(frames) / pipe_cpu,
        "fps_tracking_wall": len(frames) / track_s,
        "fps_pipeline_wall": len(frames) / pipe_s,
        "same_as_tracking_pass": all(
            len(a) == len(b) and all(np.array_equal(x.landmarks, y.face.landmarks) for x, y in zip(a, b))
            for a, b in zip(tracked, results)
        ),
        "jitter_frames": hi - lo,
    }
    if hi - lo > 2:
        seg = results[lo:hi]
        report.update(jitter_report(
            np.stack([r[0].face.landmarks for r in seg]),
            np.stack([r[0].aligned.landmarks for r in seg]),
            np.array([not r[0].face.tracked for r in seg]),
            args.smooth,
        ))
    for k, v in report.items():
        print(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
