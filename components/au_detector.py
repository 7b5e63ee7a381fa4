"""The Python API: AU detection on images and videos as pandas tables, no Ray needed.

    from components.au_detector import Detector
    det = Detector.from_ensemble("runs/ensemble")        # or Detector.from_checkpoint("run/.../checkpoint.pt")
    det = Detector.pretrained()                          # the built-in (real faces, no training)
    faces = det.predict_image("photo.jpg")               # one row per face
    frames = det.predict_video("talk.mp4")               # one row per frame (and tracked face)

Both return the columns that ``facsflow predict`` writes to its CSVs (``openface_columns``),
modelled on OpenFace 2's FeatureExtraction output:

- ``frame``: 0-based frame index (OpenFace counts from 1); 0 for a still image;
- ``face_id``: tracked face id within the input (0, 1, ...); -1 on a row without a face;
- ``timestamp``: seconds from the start of the video (frame / fps); 0 for a still image;
- ``confidence``: the face detector's score carried by the face (0 where ``success`` is 0);
- ``success``: 1 when a face was found and analysed, 0 for a frame without a face (that row's
  landmarks and AU columns are empty);
- ``x_0 .. x_67``, ``y_0 .. y_67``: the 68 iBUG landmarks in image pixels;
- ``gaze_angle_x``, ``gaze_angle_y``: OpenFace's gaze angles in radians, both eyes averaged (0, 0
  looking into the camera; x > 0 towards the image right, y > 0 down), from the MediaPipe mesh's
  iris landmarks: empty for landmarkers without a mesh (dlib, FAN);
- ``pose_Rx``, ``pose_Ry``, ``pose_Rz``: head pitch, yaw and roll in radians, OpenFace's convention
  (R = Rx Ry Rz in the camera frame, x right, y down, z away: Rx > 0 head down, Ry > 0 face turned
  towards the image left, Rz > 0 clockwise in the image), from the MediaPipe mesh or else the 68
  landmarks (``components.faces.pose``; face answers carry them in degrees as ``pose``);
- ``AUxx_c``: occurrence (0/1) after the ensemble's per-AU thresholds, AU numbers zero-padded
  as OpenFace writes them (``AU01_c``);
- ``AUxx_r``: intensity on the 0-5 scale, only when some member predicts intensity;
- ``AUxx_p``: the ensemble's occurrence probability in [0, 1] (OpenFace has no such column;
  ``_p`` is ours);
- ``emotion_<name>``: derived, not predicted: the mean probability of the emotion's FACS prototype
  AUs (``components.emotion``), for the emotions the AU list covers (``emotion_names``).

Still images report every detected face; videos follow faces as the face configuration says
(by default the one largest face, tracked). Members that need video context are left out of
still-image answers. Both run ``components.inference``, the orchestration Serve and evaluation
run too; video probabilities are smoothed over ``smooth_window`` frames (default
``components.plan.SMOOTH_WINDOW``, as served; 1 turns it off).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from components.au import au_column

if TYPE_CHECKING:  # heavy imports (torch, dlib) only when a Detector is built
    from components.faces.pipeline import FacePipelineConfig
    from components.plan import InferencePlan
    from components.predictor import Predictor

__all__ = ["Detector", "openface_columns", "openface_values", "rows_to_openface", "openface_csv", "read_image",
           "ID_COLUMNS", "POSE_COLUMNS"]

ID_COLUMNS = ["frame", "face_id", "timestamp", "confidence", "success"]
"""The leading columns of every prediction table."""
POSE_COLUMNS = ["gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry", "pose_Rz"]
"""Gaze and head pose, after the landmarks (OpenFace's names, order and units: radians)."""


def openface_columns(aus: Sequence[int], intensity: bool = False) -> list[str]:
    """Column names, in order, of a prediction table for AU list ``aus``.

    >>> openface_columns([1, 12])[140:]
    ['y_67', 'gaze_angle_x', 'gaze_angle_y', 'pose_Rx', 'pose_Ry', 'pose_Rz', 'AU01_c', 'AU12_c', 'AU01_p', 'AU12_p']
    >>> openface_columns([1, 4, 6, 12, 15])[-3:]
    ['AU15_p', 'emotion_happiness', 'emotion_sadness']
    """
    from components.emotion import emotion_column, emotion_names

    cols = list(ID_COLUMNS) + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)] + POSE_COLUMNS
    cols += [au_column(a, "_c") for a in aus]
    if intensity:
        cols += [au_column(a, "_r") for a in aus]
    cols += [au_column(a, "_p") for a in aus]
    cols += [emotion_column(e) for e in emotion_names(aus)]
    return cols


def openface_values(rows: Sequence[dict[str, Any]], aus: Sequence[int],
                    intensity: "bool | None" = None) -> tuple[list[str], np.ndarray, bool]:
    """The columns of ``rows``' table, its values as float64 (NaN = empty; timestamp and
    confidence rounded to 4 places) and whether it has ``AUxx_r`` columns: what
    ``rows_to_openface`` and ``openface_csv`` both print."""
    from components.emotion import emotion_names

    if intensity is None:
        intensity = any("intensity" in r for r in rows)
    cols = openface_columns(aus, intensity)
    data = np.full((len(rows), len(cols)), np.nan)
    keys = [f"AU{a}" for a in aus]
    n_id = len(ID_COLUMNS)
    x0, y0 = n_id, n_id + 68
    g0 = n_id + 136
    c0 = g0 + len(POSE_COLUMNS)
    r0 = c0 + len(aus)
    p0 = r0 + (len(aus) if intensity else 0)
    emotions = emotion_names(aus)
    e0 = p0 + len(aus)
    for i, r in enumerate(rows):
        ok = int(r.get("success", 1))
        data[i, :n_id] = [r.get("frame", 0), r.get("face_id", 0 if ok else -1), r.get("timestamp", 0.0),
                          r.get("score", 0.0) if ok else 0.0, ok]
        if r.get("landmarks") is not None:
            lms = np.asarray(r["landmarks"], np.float64).reshape(68, 2)
            data[i, x0:x0 + 68], data[i, y0:y0 + 68] = lms[:, 0], lms[:, 1]
        if r.get("gaze") is not None:
            data[i, g0:g0 + 2] = r["gaze"]["angle_x"], r["gaze"]["angle_y"]
        if r.get("pose") is not None:
            data[i, g0 + 2:g0 + 5] = np.radians([r["pose"]["pitch"], r["pose"]["yaw"], r["pose"]["roll"]])
        if "probs" in r:
            data[i, c0:c0 + len(aus)] = [r["occurrence"][k] for k in keys]
            data[i, p0:p0 + len(aus)] = [r["probs"][k] for k in keys]
            scores = r.get("emotions") or {}
            data[i, e0:e0 + len(emotions)] = [scores.get(e, np.nan) for e in emotions]
        if intensity and "intensity" in r:
            data[i, r0:r0 + len(aus)] = [r["intensity"][k] for k in keys]
    data[:, 2:4] = data[:, 2:4].round(4)  # timestamp, confidence
    return cols, data, intensity


def rows_to_openface(rows: Sequence[dict[str, Any]], aus: Sequence[int],
                     intensity: "bool | None" = None) -> pd.DataFrame:
    """Predictor answers (``Predictor.predict_image`` faces or ``predict_video`` rows) → table.

    A row without ``probs`` (``success`` 0) keeps its ids and leaves landmarks and AU columns
    empty (NaN), as pose, gaze and emotions stay wherever the row lacks them (or they are None).
    ``intensity`` None adds ``AUxx_r`` columns when any row carries intensities.
    """
    cols, data, _ = openface_values(rows, aus, intensity)
    df = pd.DataFrame(data, columns=cols)
    for c in _INT_COLUMNS:
        df[c] = df[c].astype(np.int64)
    for a in aus:  # occurrence is 0/1, or missing on rows without a face
        df[au_column(a, "_c")] = df[au_column(a, "_c")].astype("Int8")
    return df


_INT_COLUMNS = ("frame", "face_id", "success")


def openface_csv(rows: Sequence[dict[str, Any]], aus: Sequence[int], intensity: "bool | None" = None) -> str:
    """``rows_to_openface(rows, aus, intensity).to_csv(header=False, index=False)``, text for text,
    written straight from the values: a live run appends each frame's rows as they come, and
    building a DataFrame per frame cost 6.5 ms of a 26 ms frame (``benchmarks/live.py``)."""
    cols, data, _ = openface_values(rows, aus, intensity)
    ints = {i for i, c in enumerate(cols) if c in _INT_COLUMNS or c.endswith("_c")}
    # float64 prints as its shortest repr (what pandas writes), whole-number columns as ints, NaN empty
    return "".join(",".join("" if v != v else (str(int(v)) if i in ints else repr(v))
                            for i, v in enumerate(row.tolist())) + "\n" for row in data)


def read_image(source: "str | Path | np.ndarray", max_pixels: int = 100_000_000) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image from a file path or an array (RGB, or gray (H, W)).

    Files go through Pillow, which reads the header before any pixel: a file claiming more than
    ``max_pixels`` pixels is refused before it is decoded (decompression bombs), and EXIF
    orientation is applied so phone photos come upright.
    """
    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"image array must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
        return np.ascontiguousarray(arr)
    from PIL import Image, ImageOps

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ValueError(f"{path}: {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}")
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def _video_frames(path: Path, seen: list[int]) -> Iterator[np.ndarray]:
    from components.datasets.video_io import iter_video_frames

    for _, rgb in iter_video_frames(path):
        seen[0] += 1
        yield rgb


class Detector:
    """An ensemble (or one checkpoint) with its face pipeline, answering with DataFrames.

    Models and face detectors load once, here; reuse the Detector for many images and videos.
    What the ensemble needs (face pipeline as its stores were built, difference steps, members
    per input kind, smoothing) is its ``InferencePlan`` (``components.plan``), ``self.plan``.
    """

    def __init__(self, predictor: "Predictor") -> None:
        self.predictor = predictor
        self._intensity: "bool | None" = None

    @property
    def plan(self) -> "InferencePlan":
        return self.predictor.plan

    @property
    def smooth_window(self) -> int:
        """Frames of the centred moving mean over video probabilities (odd; 1: none)."""
        return self.plan.smooth_window

    @staticmethod
    def _overrides(faces: "FacePipelineConfig | Mapping[str, Any] | None") -> "dict[str, Any] | None":
        if faces is None or isinstance(faces, Mapping):
            return dict(faces or {})
        return dataclasses.asdict(faces)

    @classmethod
    def from_ensemble(cls, directory: "str | Path | None", device: str = "cpu",
                      faces: "FacePipelineConfig | Mapping[str, Any] | None" = None,
                      smooth_window: "int | None" = None) -> "Detector":
        """From an ensemble folder (``ensemble.json``, as ``facsflow ensemble`` writes it); the
        built-in detector when ``directory`` is empty or None.

        ``faces``: face pipeline fields over the ones the ensemble's stores were built with (a
        mapping of the fields to change, or a whole ``FacePipelineConfig``); ``align_size`` is
        always the ensemble's. ``smooth_window``: frames smoothed over in videos (default
        ``components.plan.SMOOTH_WINDOW``).
        """
        from components.predictor import Predictor

        return cls(Predictor.from_manifest(str(directory or ""), device, cls._overrides(faces), smooth_window))

    @classmethod
    def pretrained(cls, device: str = "cpu", faces: "FacePipelineConfig | Mapping[str, Any] | None" = None,
                   smooth_window: "int | None" = None) -> "Detector":
        """The built-in detector: MediaPipe blendshapes mapped to AUs (``components.builtin``),
        real faces, no training, with its face pipeline (RetinaFace + the MediaPipe landmarker)."""
        return cls.from_ensemble(None, device, faces, smooth_window)

    @classmethod
    def from_checkpoint(cls, path: "str | Path", device: str = "cpu",
                        faces: "FacePipelineConfig | Mapping[str, Any] | None" = None,
                        smooth_window: "int | None" = None) -> "Detector":
        """From one model's ``checkpoint.pt`` (or the folder holding it); arguments as ``from_ensemble``."""
        from components.predictor import Predictor

        return cls(Predictor.from_checkpoint(str(path), device, cls._overrides(faces), smooth_window))

    @property
    def aus(self) -> list[int]:
        """AU numbers, in the order of the AU columns."""
        return list(self.predictor.aus)

    @property
    def members(self) -> list[str]:
        """Member names of the ensemble."""
        return [m.name for m in self.predictor.manifest.members]

    @property
    def has_intensity(self) -> bool:
        """Whether some member predicts intensity (then every table has ``AUxx_r`` columns).

        Found once by a forward pass of each member on a neutral face: a model declares its
        outputs only by producing them.
        """
        if self._intensity is None:
            from components.geometry import crop_template

            pred = self.predictor
            size, steps = pred.plan.align_size, pred.plan.steps
            batch: dict[str, Any] = {"crop": [np.full((size, size, 3), 128, np.uint8)],
                                     "landmarks": [crop_template(size).reshape(-1)],
                                     "blendshapes": [np.zeros(52, np.float32)]}
            if steps:
                batch["landmark_diff"] = [np.zeros(len(steps) * 136, np.float32)]
                batch["diff_valid"] = [np.zeros(len(steps), bool)]
            self._intensity = any("intensity" in pred.member_probs(i, batch, steps)
                                  for i in range(len(pred.members)))
        return self._intensity

    def predict_image(self, image: "str | Path | np.ndarray") -> pd.DataFrame:
        """One row per face of a still image (path, or RGB array); one ``success`` 0 row when
        there is none. Members that need video are left out (``members_voted`` in ``attrs``)."""
        name = Path(image).name if not isinstance(image, np.ndarray) else "image"
        faces = self.predictor.predict_image(read_image(image), name=name)
        rows = [dict(f, frame=0, timestamp=0.0, success=1) for f in faces] or \
            [{"frame": 0, "face_id": -1, "timestamp": 0.0, "success": 0}]
        df = rows_to_openface(rows, self.aus, self.has_intensity)
        df.attrs["members_voted"] = faces[0]["members"] if faces else []
        return df

    def predict_video(self, path: "str | Path") -> pd.DataFrame:
        """One row per frame and tracked face of a video; frames without a face have
        ``success`` 0. Every member votes (temporal landmark differences are computed);
        probabilities are smoothed over ``smooth_window`` frames (``attrs['smooth_window']``)."""
        from components.datasets.base import LayoutError
        from components.datasets.video_io import video_frame_count

        path = Path(path)
        try:
            fps = video_frame_count(path, verify=False).fps or 30.0
        except LayoutError as e:
            raise ValueError(str(e)) from None
        seen = [0]
        # Frames stream through the face pipeline; only aligned crops are kept.
        rows = self.predictor.predict_video(_video_frames(path, seen), fps, name=path.name)
        if not seen[0]:
            raise ValueError(f"{path}: no frame could be decoded")
        df = rows_to_openface(rows, self.aus, self.has_intensity)
        df.attrs["fps"] = fps
        df.attrs["smooth_window"] = self.smooth_window
        df.attrs["members_voted"] = self.members
        return df
