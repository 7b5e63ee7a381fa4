"""Preprocessing throughput, scaling and memory: the Ray Data workflow against a plain loop.

    .venv/bin/python benchmarks/preprocess.py [--video PATH] [--copies 2] [--large-copies 8] [--also-detector retinaface]
                                             [--json benchmarks/results/preprocess.json]

Everything runs in one process on one embedded local Ray with 2 CPUs, side by side, so that
ratios stay meaningful on a machine shared with other work. The face settings are the throughput
ones: dlib HOG detection at half resolution every 6th frame, dlib landmarks refitted in between,
112 px crops, temporal differences (1, 2, 4).

Figures, on ``--copies`` copies of a real 640x360 talking-head video (WolfgangLanger_Pexels.mp4,
cut into chunks so that two actors share it) and on a synthetic BP4D-layout set (JPEG frames):

- sequential: a plain Python loop over the units (``process_unit`` + the same Parquet writes, no
  Ray), frames/s by wall time and by this process's CPU time (the one-core cost);
- ray_1 / ray_2: the workflow with 1 and 2 actors: frames/s end to end (wall time of
  ``run_preprocess``: planning, actor start and model loading included) and in steady state
  (first unit started to last unit finished: what a long run converges to);
- frames_per_s_per_core: steady-state frames/s of one actor on one core (the video);
- speedup_1_to_2: steady-state frames/s with 2 actors over 1 actor (the video, chunked);
- ratio_vs_sequential: steady-state frames/s of 1 actor over the sequential loop (what Ray costs
  on one core; the 2-actor ratio is reported beside it);
- peak_rss_mb_small / _large: peak resident memory of the driver plus the actor processes
  during 2-actor runs on ``--copies`` and ``--large-copies`` copies of the video;
- frames_per_cpu_s_sequential: frames per CPU-second of the loop's own thread (the per-frame
  cost, nearly independent of other work on the machine);
- stage_shares_sequential: where one core's time goes (cProfile of the loop on one copy);
- video_<detector> (``--also-detector``, default retinaface at the same half scale): the same
  video figures with that detector and dlib's landmarks, and the landmarks' NME against the
  dlib-detected run (how much the faster detector changes what is stored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from components import storage
from components.datasets.base import build_adapter
from components.faces.pipeline import FacePipeline, FacePipelineConfig
from components.store.rows import StoreConfig, process_unit
from components.store.schema import store_metadata
from workflows.preprocess import PreprocessConfig, run_preprocess, unit_stem

from procmem import PeakRss, wait_for_actors_to_exit  # benchmarks/procmem.py (run as a script)

ROOT = Path(__file__).resolve().parents[1]

FACE = FacePipelineConfig(detector="dlib", landmarker="dlib", detect_every=6, detect_scale=0.5)
# Chunks long enough that the warm-up (overlap 9 + 4 tail frames) costs ~5 % extra frames.
STORE = StoreConfig(diff_steps=(1, 2, 4), chunk_frames=236, chunk_overlap=9)


def video_set(folder: Path, video: Path, copies: int) -> Path:
    """``copies`` symlinks to the video, one per subject folder (the media adapter's layout)."""
    for i in range(copies):
        (folder / f"copy{i:02d}").mkdir(parents=True, exist_ok=True)
        os.symlink(video, folder / f"copy{i:02d}" / video.name)
    return folder


def sequential(cfg: PreprocessConfig) -> dict[str, float]:
    """The same work in a plain loop: whole units, one pipeline, the same Parquet writes."""
    pipeline = FacePipeline(cfg.face)
    adapter = build_adapter(cfg.dataset, cfg.root, **cfg.adapter_options)
    meta = store_metadata(adapter.aus, cfg.store.diff_steps, cfg.face.align_size)
    frames = 0
    # thread_time: this loop's own CPU, not the Ray driver threads that share the process.
    wall, cpu = time.perf_counter(), time.thread_time()
    for unit in adapter.units():
        res = process_unit(unit, pipeline, cfg.store)
        stem = unit_stem(unit)
        storage.write_table_atomic(res.frames, storage.join(cfg.out, "frames", f"{stem}.parquet"), meta)
        storage.write_table_atomic(res.rejects, storage.join(cfg.out, "rejects", f"{stem}.parquet"), meta)
        frames += len(unit.frames)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return {"frames": frames, "seconds": round(wall, 2), "frames_per_s": round(frames / wall, 1),
            "frames_per_cpu_s": round(frames / cpu, 1)}


# Where one core's time goes in the sequential loop: (label, file suffix, function name); the
# cumulative times of these functions do not nest in one another.
STAGES = (
    ("decode", "video_io.py", "__iter__"), ("decode", "video_io.py", "decode_image"),
    ("detect (dlib HOG, resize)", "tracking.py", "detect"),
    ("landmarks (dlib)", "landmarks.py", "fit"),
    ("align (warp)", "geometry.py", "align_face"),
    ("JPEG encode", "preprocessing.py", "encode_jpeg"),
    ("Parquet write", "storage.py", "write_table_atomic"),
)


def stage_breakdown(cfg: PreprocessConfig) -> dict[str, float]:
    """Share of the sequential loop's time per stage, under cProfile (which inflates the many
    small numpy calls of tracking geometry in "other"; a guide, not a measurement)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    sequential(cfg)
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in stats.values())
    shares: dict[str, float] = {}
    for label, suffix, name in STAGES:
        cum = sum(v[3] for (f, _, n), v in stats.items() if f.endswith(suffix) and n == name)
        shares[label] = shares.get(label, 0.0) + cum
    shares["other (tracking geometry, diffs, Arrow, Python)"] = total - sum(shares.values())
    return {k: round(v / total, 3) for k, v in shares.items()}


def ray_run(cfg: PreprocessConfig, actors: int) -> dict[str, float]:
    """One workflow run with ``actors`` actors; throughput end to end and in steady state."""
    cfg = dataclasses.replace(cfg, actors=actors)
    wait_for_actors_to_exit()
    with PeakRss() as rss:
        s = run_preprocess(cfg)
    n = s["frames_in"]
    return {"actors": actors, "frames": n, "units": s["units"], "seconds": s["seconds"],
            "startup_seconds": s["startup_seconds"], "processing_seconds": s["processing_seconds"],
            "frames_per_s_e2e": round(n / s["seconds"], 1),
            "frames_per_s_steady": round(n / s["processing_seconds"], 1), "peak_rss_mb": rss.mb()}


def compare(name: str, cfg_for: Callable[[Path], PreprocessConfig], work: Path) -> dict:
    """Sequential loop, 1 actor, 2 actors on one dataset; prints and returns the figures."""
    seq = sequential(cfg_for(work / f"{name}-seq"))
    print(f"[{name}] sequential loop: {seq}", flush=True)
    one = ray_run(cfg_for(work / f"{name}-ray1"), 1)
    print(f"[{name}] Ray, 1 actor:  {one}", flush=True)
    two = ray_run(cfg_for(work / f"{name}-ray2"), 2)
    print(f"[{name}] Ray, 2 actors: {two}", flush=True)
    return {"sequential": seq, "ray_1": one, "ray_2": two,
            "speedup_1_to_2": round(two["frames_per_s_steady"] / one["frames_per_s_steady"], 2),
            "speedup_1_to_2_e2e": round(two["frames_per_s_e2e"] / one["frames_per_s_e2e"], 2),
            "ratio_vs_sequential": round(one["frames_per_s_steady"] / seq["frames_per_s"], 2),
            "ratio_vs_sequential_2_actors": round(two["frames_per_s_steady"] / seq["frames_per_s"], 2)}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"host": platform.node(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "python": platform.python_version(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "note": "ratios are measured side by side in one run; absolute rates depend on the load "
                    "averages recorded here"}


def landmark_agreement(store: Path, reference: Path) -> dict[str, float]:
    """Landmarks of two stores of the same frames: mean point-to-point distance over the
    reference's inter-ocular distance (outer eye corners 36 and 45), frame by frame (NME)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table(root: Path) -> dict[str, np.ndarray]:
        t = pa.concat_tables([pq.read_table(f, columns=["sample_id", "landmarks"])
                              for f in sorted((root / "frames").rglob("*.parquet"))])
        return {sid: np.asarray(lm, np.float32).reshape(68, 2)
                for sid, lm in zip(t.column("sample_id").to_pylist(), t.column("landmarks").to_pylist())}

    got, ref = table(store), table(reference)
    common = sorted(set(got) & set(ref))
    nme = [float(np.linalg.norm(got[k] - ref[k], axis=1).mean() / max(np.linalg.norm(ref[k][36] - ref[k][45]), 1e-6))
           for k in common]
    return {"frames_compared": len(common), "frames_only_in_reference": len(set(ref) - set(got)),
            "nme_mean": round(float(np.mean(nme)), 4) if nme else None,
            "nme_p95": round(float(np.percentile(nme, 95)), 4) if nme else None}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/preprocess.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4")
    p.add_argument("--copies", type=int, default=4, help="copies of the video in the main (small) set")
    p.add_argument("--large-copies", type=int, default=16, help="copies in the large set (memory)")
    p.add_argument("--synth-videos", type=int, default=8, help="synthetic videos (BP4D layout, 256 px)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "preprocess.json")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores")
    p.add_argument("--also-detector", default="retinaface",
                   help="a second face detector measured on the video beside dlib ('' : none), with the "
                        "same dlib landmarks, and how far its landmarks land from dlib-detected ones")
    args = p.parse_args(argv)
    if not args.video.is_file():
        p.error(f"video not found: {args.video}")
    if args.copies < 1 or args.large_copies <= args.copies:
        p.error("need 1 <= --copies < --large-copies")

    from components.datasets.synth.generator import SynthConfig, generate
    from workflows.core.runtime import configure_logging, init_ray

    configure_logging()
    work = Path(tempfile.mkdtemp(prefix="facsflow-bench-"))
    info = machine()
    try:
        init_ray(num_cpus=2)
        small = video_set(work / "video-small", args.video.resolve(), args.copies)
        large = video_set(work / "video-large", args.video.resolve(), args.large_copies)
        synth = work / "synth"
        generate(SynthConfig(out=str(synth), layout="bp4d", subjects_per_identity=args.synth_videos,
                             videos_per_subject=1, frames_per_video=60, frame_size=256, max_identities=1,
                             seed=0, occlusion_rate=0.0))

        def video_cfg(out: Path, root: Path = small) -> PreprocessConfig:
            return PreprocessConfig(dataset="media", root=str(root), out=str(out), face=FACE, store=STORE,
                                    log_every_s=5)

        def synth_cfg(out: Path) -> PreprocessConfig:
            return PreprocessConfig(dataset="bp4d", root=str(synth), out=str(out), face=FACE,
                                    store=StoreConfig(diff_steps=(1, 2, 4)), log_every_s=5,
                                    adapter_options={"groups": str(synth / "synth_meta" / "videos.csv")})

        one_copy = video_set(work / "video-one", args.video.resolve(), 1)
        breakdown = stage_breakdown(video_cfg(work / "video-profile", one_copy))
        print(f"[video] share of one core's time per stage (cProfile): {breakdown}", flush=True)
        video = compare("video", video_cfg, work)
        synthetic = compare("synthetic", synth_cfg, work)
        big = ray_run(video_cfg(work / "video-large-ray2", large), 2)
        print(f"[video x{args.large_copies}] Ray, 2 actors: {big}", flush=True)
        other: dict = {}
        if args.also_detector:
            face = dataclasses.replace(FACE, detector=args.also_detector)

            def other_cfg(out: Path, root: Path = small) -> PreprocessConfig:
                return dataclasses.replace(video_cfg(out, root), face=face)

            name = f"video-{args.also_detector}"
            other = {"settings": {"detector": face.detector, "landmarker": face.landmarker,
                                  "detect_every": face.detect_every, "detect_scale": face.detect_scale},
                     **compare(name, other_cfg, work),
                     "stage_shares_sequential": stage_breakdown(other_cfg(work / f"{name}-profile", one_copy)),
                     "landmarks_vs_dlib_detector": landmark_agreement(work / f"{name}-seq", work / "video-seq")}
            print(f"[{name}] landmarks against the dlib-detected run: {other['landmarks_vs_dlib_detector']}",
                  flush=True)
    finally:
        import ray

        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    info["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result = {
        "frames_per_s_per_core": video["ray_1"]["frames_per_s_steady"],
        "speedup_1_to_2": video["speedup_1_to_2"],
        "ratio_vs_sequential": video["ratio_vs_sequential"],
        "peak_rss_mb_small": video["ray_2"]["peak_rss_mb"]["total"],
        "peak_rss_mb_large": big["peak_rss_mb"]["total"],
        "frames_per_cpu_s_sequential": video["sequential"]["frames_per_cpu_s"],
        "machine": info,
        "settings": {"video": args.video.name, "resolution": "640x360", "copies_small": args.copies,
                     "copies_large": args.large_copies, "detector": FACE.detector, "landmarker": FACE.landmarker,
                     "detect_every": FACE.detect_every, "detect_scale": FACE.detect_scale,
                     "chunk_frames": STORE.chunk_frames, "chunk_overlap": STORE.chunk_overlap,
                     "synthetic": f"BP4D layout, {args.synth_videos} videos x 60 frames, 256x256 JPEG"},
        "video": video, "synthetic": synthetic, "video_large": big, "stage_shares_sequential": breakdown,
    }
    if other:
        result[f"frames_per_s_per_core_{args.also_detector}"] = other["ray_1"]["frames_per_s_steady"]
        result[f"landmark_nme_{args.also_detector}_vs_dlib"] = other["landmarks_vs_dlib_detector"]["nme_mean"]
        result[f"video_{args.also_detector}"] = other
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nframes/s per core (1 actor, steady): {result['frames_per_s_per_core']}  "
          f"(end to end incl. start-up: {video['ray_1']['frames_per_s_e2e']})")
    print(f"speed-up 1 -> 2 CPUs: {result['speedup_1_to_2']} (video), {synthetic['speedup_1_to_2']} (synthetic)")
    print(f"Ray 1 actor / sequential loop: {result['ratio_vs_sequential']} (video), "
          f"{synthetic['ratio_vs_sequential']} (synthetic); one-core CPU cost of the loop: "
          f"{video['sequential']['frames_per_cpu_s']} frames per CPU-second")
    print(f"peak RSS driver+actors: {result['peak_rss_mb_small']} MB (x{args.copies}), "
          f"{result['peak_rss_mb_large']} MB (x{args.large_copies})")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
