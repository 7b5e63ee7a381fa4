"""Face detectors (dlib HOG, MTCNN, RetinaFace) and landmarkers (dlib, MediaPipe) on real media,
one CPU core (torch, onnxruntime and OpenCV on one thread).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/faces_backends.py [--media ../shared/media] \
        [--every 8] [--json benchmarks/results/faces_backends.json]

Detectors, on every image and video of the media folder:
- faces found per image (multi_face.jpg has five; the drawing none) and the share of sampled
  video frames (every ``--every``-th) with a face (the two talking-head videos have one in every
  frame, no_face.mp4 none);
- small faces: each posed photo pasted, 200 px wide (under a tenth of the width), at four places
  of a 2560x1440 canvas of the blurred drawing;
- turned faces: each posed photo re-rendered turned by 30, 45 and 60 degrees (yaw) by rotating
  its MediaPipe face mesh in 3D and warping each mesh triangle (back-facing ones dropped, the
  rest of the head kept in place): a synthetic stand-in for real profile photos, which the media
  folder lacks; it tests whether a detector still sees the foreshortened face;
- milliseconds per image (mean over the images) and per 640x360 video frame.
Landmarkers, fed the same boxes (RetinaFace's) on the images and sampled video frames:
- milliseconds per face, faces per second per core;
- agreement: normalised mean error between the two 68-point sets (mean point distance over the
  inter-ocular distance, outer eye corners 36-45 of dlib), mean and 90th percentile.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg", "multi_face.jpg",
          "free-mountain-vector-01.jpg")
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4")
POSED = IMAGES[:3]


def read_rgb(path: Path) -> np.ndarray:
    from components.au_detector import read_image

    return read_image(path)


def video_frames(path: Path, every: int) -> list[np.ndarray]:
    from components.datasets.video_io import iter_video_frames

    return [rgb for i, rgb in iter_video_frames(path) if i % every == 0]


def small_faces(media: Path) -> list[np.ndarray]:
    """Posed photos 200 px wide on a 2560x1440 canvas (the blurred drawing), one per corner area."""
    bg = cv2.GaussianBlur(cv2.resize(read_rgb(media / IMAGES[5]), (2560, 1440)), (31, 31), 0)
    out = []
    for name in POSED:
        face = cv2.resize(read_rgb(media / name), (200, 200), interpolation=cv2.INTER_AREA)
        for x, y in ((200, 150), (2100, 200), (400, 1100), (1800, 1000)):
            img = bg.copy()
            img[y:y + 200, x:x + 200] = face
            out.append(img)
    return out


def _signed_area(tri: np.ndarray) -> float:
    (x0, y0), (x1, y1), (x2, y2) = tri
    return float((x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0))


def turned(rgb: np.ndarray, mesh: np.ndarray, degrees: float) -> np.ndarray:
    """``rgb`` with its face re-rendered turned by ``degrees`` of yaw (see the module docstring)."""
    from scipy.spatial import Delaunay

    pts = mesh.astype(np.float64)
    centre = pts.mean(0)
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    new = (pts - centre) @ rot.T + centre
    tris = Delaunay(pts[:, :2]).simplices
    out = rgb.copy()
    hull = cv2.convexHull(pts[:, :2].astype(np.float32)).astype(np.int32)
    # Where the face was and no turned triangle lands: the photo heavily blurred (no face there).
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=max(rgb.shape[:2]) / 20)
    hull_mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)
    out[hull_mask.astype(bool)] = blurred[hull_mask.astype(bool)]
    order = np.argsort([new[t, 2].mean() for t in tris])[::-1]  # far triangles first
    for t in tris[order]:
        src, dst = pts[t, :2].astype(np.float32), new[t, :2].astype(np.float32)
        area, src_area = _signed_area(dst), _signed_area(src)
        if abs(area) < 0.5 or np.sign(area) != np.sign(src_area):
            continue  # degenerate or turned away from the camera
        x, y, w, h = cv2.boundingRect(dst)
        m = cv2.getAffineTransform(src, dst - np.float32([x, y]))
        patch = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, np.round(dst - np.float32([x, y])).astype(np.int32), 1)
        y1, x1 = min(y + h, out.shape[0]), min(x + w, out.shape[1])
        if y >= 0 and x >= 0 and y1 > y and x1 > x:
            region = out[y:y1, x:x1]
            sel = mask[: y1 - y, : x1 - x].astype(bool)
            region[sel] = patch[: y1 - y, : x1 - x][sel]
    return out


def time_detect(det, images: list[np.ndarray]) -> tuple[list[int], float]:
    counts, t0 = [], time.process_time()
    for img in images:
        counts.append(len(det.detect(img)))
    return counts, 1000 * (time.process_time() - t0) / max(len(images), 1)


def main(argv: "list[str] | None" = None) -> int:
    import torch

    from components.faces import DlibLandmarker, build_detector
    from components.faces.mediapipe_mesh import MediaPipeLandmarker

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--media", default=str(ROOT.parent / "shared" / "media"))
    p.add_argument("--every", type=int, default=8, help="sample every n-th video frame")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "faces_backends.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    media = Path(a.media)
    images = {n: read_rgb(media / n) for n in IMAGES}
    frames = {v: video_frames(media / v, a.every) for v in VIDEOS}
    mesh_model = MediaPipeLandmarker()
    retina = build_detector("retinaface")
    rotated: dict[int, list[np.ndarray]] = {30: [], 45: [], 60: []}
    for n in POSED:
        fit = mesh_model.fit_mesh(images[n], retina.detect(images[n])[0].box[None])[0]
        for deg in rotated:
            rotated[deg].append(turned(images[n], fit.mesh, deg))
    small = small_faces(media)

    detectors = {"dlib": build_detector("dlib", upsample=1), "mtcnn": build_detector("mtcnn"), "retinaface": retina}
    result: dict = {"media": str(media), "every_nth_frame": a.every, "one_core": True, "detectors": {}}
    for name, det in detectors.items():
        counts, ms_img = time_detect(det, list(images.values()))
        r: dict = {"faces_per_image": dict(zip(IMAGES, counts)), "ms_per_image": round(ms_img, 1)}
        for v, fr in frames.items():
            c, ms = time_detect(det, fr)
            r[f"frames_with_face:{v}"] = round(float(np.mean([x > 0 for x in c])), 3)
            r[f"ms_per_frame:{v}"] = round(ms, 1)
        c, ms = time_detect(det, small)
        r["small_faces_found"] = f"{sum(x > 0 for x in c)}/{len(small)}"
        r["ms_per_2560px_image"] = round(ms, 1)
        for deg, imgs in rotated.items():
            c, _ = time_detect(det, imgs)
            r[f"turned_{deg}deg_found"] = f"{sum(x > 0 for x in c)}/{len(imgs)}"
        result["detectors"][name] = r
        print(name, json.dumps(r))

    dl = DlibLandmarker()
    samples = [img for img in images.values()] + [f for v in VIDEOS[:2] for f in frames[v]]
    nme, t_dlib, t_mp, n_faces = [], 0.0, 0.0, 0
    for img in samples:
        boxes = np.stack([f.box for f in retina.detect(img)]) if retina.detect(img) else None
        if boxes is None:
            continue
        t0 = time.process_time()
        l_dlib = dl.fit(img, boxes)
        t1 = time.process_time()
        l_mp = mesh_model.fit(img, boxes)
        t2 = time.process_time()
        t_dlib, t_mp, n_faces = t_dlib + t1 - t0, t_mp + t2 - t1, n_faces + len(boxes)
        for a68, b68 in zip(l_dlib, l_mp):
            if np.isfinite(b68).all():
                nme.append(float(np.linalg.norm(a68 - b68, axis=1).mean() / np.linalg.norm(a68[36] - a68[45])))
    result["landmarkers"] = {
        "faces": n_faces, "mediapipe_accepted": len(nme),
        "dlib_ms_per_face": round(1000 * t_dlib / n_faces, 2), "mediapipe_ms_per_face": round(1000 * t_mp / n_faces, 2),
        "dlib_faces_per_s_per_core": round(n_faces / t_dlib, 1), "mediapipe_faces_per_s_per_core": round(n_faces / t_mp, 1),
        "nme_dlib_vs_mediapipe_mean": round(float(np.mean(nme)), 4),
        "nme_dlib_vs_mediapipe_p90": round(float(np.percentile(nme, 90)), 4),
    }
    print("landmarkers", json.dumps(result["landmarkers"]))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
