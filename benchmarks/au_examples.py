"""For every AU of the built-in detector, a real frame where it fires and one where it does not:
writes the face crops to ``docs/au_examples/`` (git-ignored: ../shared/media's NOTICE allows the
media for testing only, so no picture of it enters the repository) and the table to
``docs/au_examples.md`` (text only, committed).

    PYTHONPATH=. python benchmarks/au_examples.py [--media ../shared/media] [--out docs]

Inputs: every still (*.jpg) and video (*.mp4) of the media folder, answered by
``Detector.pretrained()`` as users get it (video: the default smoothing). Per AU the firing
example is the face with the highest probability at or above the threshold (none: the media has
no face where the AU fires, and the table says so), the other the face with the lowest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

THRESHOLD_NOTE = "probability >= the built-in's threshold (components.builtin.BUILTIN_THRESHOLD)"


def answers(media: Path) -> pd.DataFrame:
    """Every face row of every still and video in ``media`` (columns: file, frame, AUxx_p, ...)."""
    from components.au_detector import Detector

    det = Detector.pretrained()
    frames = []
    for path in sorted(media.glob("*.jpg")) + sorted(media.glob("*.mp4")):
        df = det.predict_video(path) if path.suffix == ".mp4" else det.predict_image(path)
        df = df[df["success"] == 1].copy()
        df["file"] = path.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def read_frame(path: Path, frame: int) -> np.ndarray:
    """BGR frame ``frame`` of a video, or the still itself."""
    if path.suffix != ".mp4":
        return cv2.imread(str(path))
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
    ok, img = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"{path}: cannot read frame {frame}")
    return img


def crop(row: pd.Series, media: Path, side: int = 224) -> np.ndarray:
    """The face of ``row`` (its 68 landmarks' box, 30 % margin) resized to ``side``."""
    img = read_frame(media / row["file"], int(row["frame"]))
    xs = np.array([row[f"x_{i}"] for i in range(68)])
    ys = np.array([row[f"y_{i}"] for i in range(68)])
    cx, cy, half = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, 0.65 * max(np.ptp(xs), np.ptp(ys))
    x0, y0 = int(max(cx - half, 0)), int(max(cy - 1.2 * half, 0))
    x1, y1 = int(min(cx + half, img.shape[1])), int(min(cy + 0.8 * half, img.shape[0]))
    return cv2.resize(img[y0:y1, x0:x1], (side, side))


def main(argv: "list[str] | None" = None) -> int:
    from components.au import au_column
    from components.builtin import BUILTIN_AUS, BUILTIN_THRESHOLD

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default="../shared/media")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args(argv)
    media, out = Path(args.media), Path(args.out)
    (out / "au_examples").mkdir(parents=True, exist_ok=True)
    rows = answers(media)
    lines = ["# Where the built-in detector fires, AU by AU", "",
             "Real faces from `../shared/media` answered by `Detector.pretrained()` (videos with its default "
             f"smoothing). Fires: the face with the highest probability, if >= {BUILTIN_THRESHOLD}; does not "
             "fire: the face with the lowest. Frame numbers count from 0 (stills: 0; face: `face_id`).", "",
             "The crops are not in the repository (the media's NOTICE.md allows testing only). Regenerate them, "
             "and this table, with `PYTHONPATH=. python benchmarks/au_examples.py --media ../shared/media`: "
             "they are written to `docs/au_examples/AUxx_fires.png` and `AUxx_not.png`.", "",
             "| AU | fires (file, frame, face, p, intensity) | does not fire (file, frame, face, p) |",
             "|---|---|---|"]
    for au in BUILTIN_AUS:
        col = au_column(au, "_p")
        hi, lo = rows.loc[rows[col].idxmax()], rows.loc[rows[col].idxmin()]
        cv2.imwrite(str(out / "au_examples" / f"{au_column(au)}_not.png"), crop(lo, media))
        not_cell = f"{lo['file']}, {int(lo['frame'])}, {int(lo['face_id'])}, {lo[col]:.2f}"
        if hi[col] >= BUILTIN_THRESHOLD:
            cv2.imwrite(str(out / "au_examples" / f"{au_column(au)}_fires.png"), crop(hi, media))
            inten = hi.get(au_column(au, "_r"), float("nan"))
            fire_cell = f"{hi['file']}, {int(hi['frame'])}, {int(hi['face_id'])}, {hi[col]:.2f}, {inten:.1f}"
        else:
            fire_cell = f"none in the media (highest: {hi['file']}, {int(hi['frame'])}, {hi[col]:.2f})"
        lines.append(f"| AU{au} | {fire_cell} | {not_cell} |")
    (out / "au_examples.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
