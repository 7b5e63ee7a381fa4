"""Long videos as jobs: memory flat in the video's length, and the rate per CPU-second.

    python benchmarks/video_jobs.py                       # 5- and 60-minute videos
    python benchmarks/video_jobs.py --minutes 5 15        # what a short session allows

Each video is a real clip (``../shared/media/WolfgangLanger_Pexels.mp4``, every ``--every``-th
frame, ``--width`` pixels wide) played forwards and backwards to the length asked
(``components.datasets.video_io.loop_video``), written to a temporary folder, never the repo.
Each runs as a video job (``components.video_jobs.run_job``: what ``POST /v1/jobs`` and
``facsflow predict`` run) with the built-in detector, in a fresh process of its own, which
reports its wall time, CPU time, peak RSS (``ru_maxrss``) and its RSS every member segment. The
figures go to ``benchmarks/results/video_jobs.json``; memory is compared between the videos of
one run, the rates are per CPU-second (the machine is shared: its load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CLIP = "WolfgangLanger_Pexels.mp4"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(video: str, jobs: str) -> dict[str, Any]:
    """One video as a job in this process: the figures of the work, as JSON on stdout."""
    from components import video_jobs as vj
    from components.au_detector import Detector
    from workflows.core.runtime import torch_single_thread

    torch_single_thread()
    det = Detector.pretrained()
    _ = det.has_intensity
    rss_ready = _rss_mb()
    samples: list[tuple[int, float]] = []
    job = vj.new_job(jobs, video, Path(video).name)

    def sample() -> bool:  # called every member segment: RSS against frames done
        st = vj.read_status(jobs, job["id"])
        samples.append((int(st["frames_done"]), round(_rss_mb(), 1)))
        return False

    cpu0, t0 = time.process_time(), time.perf_counter()
    status = vj.run_job(det, jobs, job["id"], stop=sample)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    frames = int(status["frames_done"])
    return {"state": status["state"], "frames": frames, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "frames_per_cpu_s": round(frames / cpu, 2), "frames_per_wall_s": round(frames / wall, 2),
            "rss_models_loaded_mb": round(rss_ready, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_by_frames_done": samples[:: max(1, len(samples) // 12)] + samples[-1:],
            "rows": sum(t.num_rows for t in vj.result_parts(jobs, job["id"])),
            "face_ids": sorted({int(f) for t in vj.result_parts(jobs, job["id"])
                                for f in t.column("face_id").to_pylist() if f >= 0})}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"host": platform.node(), "cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "note": "memory is compared between the videos of one run; rates are per CPU-second because the "
                    "machine is shared (load averages recorded per video)"}


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[5, 60])
    p.add_argument("--every", type=int, default=6, help="keep every n-th frame of the clip (24 fps / 6 = 4 fps)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "video_jobs.json")
    p.add_argument("--child", nargs=2, metavar=("VIDEO", "JOBS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    from components.datasets.video_io import loop_video, video_frame_count

    if not (MEDIA / CLIP).is_file():
        print(f"{MEDIA / CLIP} not found: the benchmark needs the real clip", file=sys.stderr)
        return 1
    fps = video_frame_count(MEDIA / CLIP).fps / args.every
    doc: dict[str, Any] = {"command": "python benchmarks/video_jobs.py " + " ".join(argv or sys.argv[1:]),
                           "machine": machine(), "clip": CLIP, "fps": round(fps, 3), "width": args.width, "videos": []}
    with tempfile.TemporaryDirectory(prefix="facsflow-video-jobs-") as tmp:
        for minutes in args.minutes:
            frames = int(round(minutes * 60 * fps))
            t0 = time.perf_counter()
            video = loop_video(MEDIA / CLIP, Path(tmp) / f"{minutes:g}min.avi", frames, args.width, fps, args.every)
            made = time.perf_counter() - t0
            load = os.getloadavg()[0]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            run = subprocess.run([sys.executable, __file__, "--child", str(video), str(Path(tmp) / "jobs")],
                                 capture_output=True, text=True, env=env, check=False)
            if run.returncode:
                print(run.stderr[-3000:], file=sys.stderr)
                return run.returncode
            res = json.loads(run.stdout.strip().splitlines()[-1])
            res.update(minutes=minutes, video_frames=frames, video_mb=round(video.stat().st_size / 2**20, 1),
                       make_video_s=round(made, 1), load_avg_1m_before=round(load, 2),
                       load_avg_1m_after=round(os.getloadavg()[0], 2))
            video.unlink()
            doc["videos"].append(res)
            print(f"{minutes:g} min ({frames} frames at {fps:.1f} fps, {args.width} px): {res['state']}, "
                  f"{res['wall_s']} s wall, {res['frames_per_cpu_s']} frames per CPU-second, peak RSS "
                  f"{res['peak_rss_mb']} MB (models loaded: {res['rss_models_loaded_mb']} MB), load "
                  f"{res['load_avg_1m_before']}->{res['load_avg_1m_after']}", flush=True)
            _write(doc, args.out)  # after each video: a long run cut short keeps what it measured
    print(f"wrote {args.out}")
    return 0


def _write(doc: dict[str, Any], out: Path) -> None:
    if len(doc["videos"]) > 1:
        a, b = doc["videos"][0], doc["videos"][-1]
        doc["peak_rss_ratio_longest_to_shortest"] = round(b["peak_rss_mb"] / a["peak_rss_mb"], 3)
        doc["length_ratio_longest_to_shortest"] = round(b["video_frames"] / a["video_frames"], 2)
        print(f"peak RSS {b['minutes']:g} min / {a['minutes']:g} min: {doc['peak_rss_ratio_longest_to_shortest']} "
              f"for a video {doc['length_ratio_longest_to_shortest']}x as long", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
