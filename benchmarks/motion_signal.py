"""How much AU signal the landmark differences of the learning set carry: for each AU and step s,
the motion of the landmarks the AU catalogue says that AU moves, diff_t = l_{t+s} - l_{t-s} as the
store holds it, less the mean motion of to-sequence's stable landmarks for those AUs (the
translation its affine correction removes, ``stable_landmark_set``), in outer-eye-corner distances, averaged over frames where the AU's
label differs between t-s and t+s (an onset or offset: the motion paper 000 §2.2.2 reads) and
over frames where it does not (detector jitter and other AUs). A ratio near 1 means the dynamic
module of to-sequence reads mostly jitter on this set.

    .venv/bin/python benchmarks/motion_signal.py [--fold 1] [--json PATH]

Reads the learning set (``tests.learning_data``: built, or read from its cache) and trains nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def motion_signal(rows: dict, aus: tuple[int, ...], store_steps: tuple[int, ...]) -> list[dict]:
    """One record per (AU, step): mean motion at the AU's label changes and elsewhere, and counts."""
    from components.au import CATALOGUE
    from components.models.to_sequence import stable_landmark_set

    stable = list(stable_landmark_set(aus))
    keys = np.char.add(np.char.add(rows["subject"], "/"), rows["video"])
    videos = []   # per video, in frame order: (stable-corrected motion (n, steps, 68), labels (n, n_AU))
    for v in np.unique(keys):
        idx = np.flatnonzero(keys == v)
        idx = idx[np.argsort(rows["frame_order"][idx], kind="stable")]
        n = len(idx)
        diff = rows["landmark_diff"][idx].reshape(n, len(store_steps), 68, 2)
        lms = rows["landmarks"][idx].reshape(n, 68, 2)
        eye = np.linalg.norm(lms[:, 36] - lms[:, 45], axis=1).clip(min=1.0)
        rel = diff - diff[:, :, stable].mean(2, keepdims=True)
        videos.append((np.linalg.norm(rel, axis=3) / eye[:, None, None], rows["labels"][idx].astype(int)))
    out = []
    for k, s in enumerate(store_steps):
        for j, au in enumerate(aus):
            points = sorted(CATALOGUE[au].landmarks)
            change: list[float] = []
            steady: list[float] = []
            for motion, labels in videos:
                mag = motion[:, k, points].mean(1)
                for t in range(s, len(mag) - s):
                    a, b = labels[t - s, j], labels[t + s, j]
                    if a < 0 or b < 0:
                        continue
                    (change if a != b else steady).append(float(mag[t]))
            if change and steady:
                at, base = float(np.mean(change)), float(np.mean(steady))
                out.append({"au": au, "step": s, "at_change": at, "elsewhere": base,
                            "ratio": at / base if base > 0 else float("inf"),
                            "n_change": len(change), "n_elsewhere": len(steady)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from tests.learning_data import LEARNING_SET, build_learning_set

    data = build_learning_set(dataclasses.replace(LEARNING_SET, fold=args.fold))
    records = motion_signal(data.rows, tuple(data.aus), tuple(data.config.diff_steps))
    print(f"{'AU':>5} {'step':>4} {'at change':>10} {'elsewhere':>10} {'ratio':>6} {'n change':>9}")
    for r in records:
        print(f"{r['au']:>5} {r['step']:>4} {r['at_change']:>10.4f} {r['elsewhere']:>10.4f} {r['ratio']:>6.2f} "
              f"{r['n_change']:>9}")
    for s in data.config.diff_steps:
        ratios = [r["ratio"] for r in records if r["step"] == s]
        print(f"step {s}: median ratio over AUs {np.median(ratios):.2f}")
    if args.json:
        args.json.write_text(json.dumps({"set": dataclasses.asdict(data.config), "records": records}, indent=1))


if __name__ == "__main__":
    main()
