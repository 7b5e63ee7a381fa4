"""Geometric Action Unit evidence from MediaPipe's 478-point face mesh, in a pose-normalised frame.

A blendshape (``components.faces.mediapipe_mesh``) is one network's reading of an expression; the
mesh it comes with also *measures* what FACS describes: how far the lips part, how far the lids
open, how high the brows sit. Each feature here is one such distance, taken in the head's own
frame and divided by the face size, so it reads the same at any head pose, distance or image size:

1. pose normalisation: the mesh is moved into MediaPipe's canonical face frame by the head pose
   fit of ``components.faces.pose.mesh_pose`` (weighted scaled Procrustes on the rigid basis
   vertices; Umeyama 1991), ``head = R^T (mesh - t) / s``: x to the subject's left as seen
   in the image, y down, z away from the camera, frontal, in canonical centimetres;
2. face size: the inter-ocular distance (IOD) between the two eye centres (midpoints of the eye
   corners), measured on the same normalised mesh; every feature is a length over the IOD.

The features (``GEOMETRY_NAMES``, the order of the per-face ``geometry`` vector, float32 (K,)):

- ``lip_gap``: inner upper to inner lower lip centre (13 → 14), vertical (AU25);
- ``jaw_drop``: nose base to chin (2 → 152), vertical (AU26);
- ``eye_aperture``: upper to lower lid, three vertical pairs per eye, both eyes' mean (AU5, AU45);
- ``inner_brow_height``: inner brow (55, 107 / 285, 336) above the inner eye corner (AU1, AU4);
- ``outer_brow_height``: outer brow (46, 70 / 276, 300) above the outer eye corner (AU2);
- ``brow_distance``: between the two inner brows (55 ↔ 285), horizontal (AU4 draws them together);
- ``nose_lip``: nose base to the top of the upper lip (2 → 0), vertical (AU9, AU10 shorten it);
- ``nostril_width``: between the nostril wings (64 ↔ 294) (AU9, AU10 flare them);
- ``corner_height``: mouth corners (61, 291) above the inner lip midline (13, 14) (AU12 up, AU15 down);
- ``mouth_width``: corner to corner (61 ↔ 291) (AU12, AU20 widen; AU23 narrows);
- ``upper_lip``, ``lower_lip``: red of the upper (0 → 13) and lower (14 → 17) lip, vertical
  (lip press AU24 and roll AU28, AU23 thin them);
- ``chin_height``: lower lip's outer edge to the chin (17 → 152), vertical (AU17 shortens it);
- ``corner_depth``: how far the mouth corners sit behind the lip centre (z) (AU14 pulls them in).

Vertex numbers are MediaPipe's canonical face model's (``canonical_face``). ``GEOMETRY_FEATURES``
gives each feature's population neutral (a relaxed face's value) and the percentile of a track's
frames that estimates a person's own neutral; ``components.au.AU_EVIDENCE`` says which AUs read
which feature, in which direction and over which span.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["NeutralTracker", "neutral_after", "GeometryFeature", "GEOMETRY_FEATURES", "GEOMETRY_NAMES", "K", "face_frame", "geometry_features",
           "population_neutral", "running_neutral", "calibration_prior", "track_neutral", "BLENDSHAPE_PERCENTILE",
           "OPEN_EYE_BLENDSHAPES"]

_EYE_CORNERS = ((33, 133), (263, 362))
"""(outer, inner) corner of the subject's right and left eye."""
_LID_PAIRS = ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373))
"""(upper lid, lower lid) vertex pairs, three per eye."""
_INNER_BROWS = ((55, 107), (285, 336))
_OUTER_BROWS = ((46, 70), (276, 300))


@dataclass(frozen=True)
class GeometryFeature:
    """One geometric measurement of the face mesh, in inter-ocular distances."""

    name: str
    neutral: float
    """Population neutral: the value on a relaxed face (stills and the start of a video use it)."""
    percentile: float
    """Percentile of a track's frames that estimates the person's neutral (calibration): low (10)
    for features that actions only raise, the median (50) where actions move it both ways."""
    open_eyes: bool = False
    """Estimate the neutral from frames with open eyes only (mean eyeBlink blendshape < 0.5): the
    lids rest open, and a track may start with seconds of closed eyes (AU43, looking down)."""


GEOMETRY_FEATURES: tuple[GeometryFeature, ...] = (
    GeometryFeature("lip_gap", 0.0, 10.0),
    GeometryFeature("jaw_drop", 1.15, 10.0),
    GeometryFeature("eye_aperture", 0.10, 50.0, open_eyes=True),
    GeometryFeature("inner_brow_height", 0.30, 50.0),
    GeometryFeature("outer_brow_height", 0.23, 50.0),
    GeometryFeature("brow_distance", 0.42, 50.0),
    GeometryFeature("nose_lip", 0.21, 50.0),
    GeometryFeature("nostril_width", 0.60, 50.0),
    GeometryFeature("corner_height", 0.0, 50.0),
    GeometryFeature("mouth_width", 0.82, 50.0),
    GeometryFeature("upper_lip", 0.10, 50.0),
    GeometryFeature("lower_lip", 0.15, 50.0),
    GeometryFeature("chin_height", 0.58, 50.0),
    GeometryFeature("corner_depth", 0.26, 50.0),
)
"""Every feature with its population neutral and calibration percentile.

Neutrals: the values of relaxed features on the faces of ../shared/media (closed lips, brows and
lids at rest; MediaPipe's canonical face agrees within 0.04 IOD except for its parted lips),
rounded. Judgement, not fitted on AU labels (none ship with facsflow)."""

GEOMETRY_NAMES: tuple[str, ...] = tuple(f.name for f in GEOMETRY_FEATURES)
K = len(GEOMETRY_NAMES)
"""Length of the ``geometry`` vector."""


def population_neutral() -> np.ndarray:
    """float32 (K,): the population neutral of every feature (``GEOMETRY_FEATURES`` order)."""
    return np.array([f.neutral for f in GEOMETRY_FEATURES], np.float32)


def face_frame(mesh: np.ndarray) -> "np.ndarray | None":
    """The mesh (≥ 468, 3) moved into the canonical face frame, in inter-ocular distances and
    centred between the eyes; None when no pose can be fitted (non-finite mesh)."""
    from components.faces.pose import mesh_pose

    mesh = np.asarray(mesh, np.float64)
    pose = mesh_pose(mesh)
    if pose is None or pose.scale <= 0:
        return None
    head = (mesh[:468] - pose.translation) @ pose.rotation / pose.scale  # R^T (p - t) / s row-wise
    centres = [(head[o] + head[i]) / 2 for o, i in _EYE_CORNERS]
    iod = float(np.linalg.norm(centres[1] - centres[0]))
    if not np.isfinite(iod) or iod <= 0:
        return None
    return (head - (centres[0] + centres[1]) / 2) / iod


def _mean(h: np.ndarray, idx: "tuple[int, ...]") -> np.ndarray:
    return h[list(idx)].mean(0)


def geometry_features(mesh: "np.ndarray | None") -> "np.ndarray | None":
    """float32 (K,) features of one face mesh in ``GEOMETRY_NAMES`` order, or None without a mesh
    (or when its pose cannot be fitted). y grows downwards, so heights are ``y_lower - y_upper``."""
    if mesh is None:
        return None
    h = face_frame(mesh)
    if h is None:
        return None
    y, z = h[:, 1], h[:, 2]
    inner_corner_y = np.mean([y[i] for _, i in _EYE_CORNERS])
    outer_corner_y = np.mean([y[o] for o, _ in _EYE_CORNERS])
    inner_brow_y = np.mean([_mean(h, b)[1] for b in _INNER_BROWS])
    outer_brow_y = np.mean([_mean(h, b)[1] for b in _OUTER_BROWS])
    lip_mid = (y[13] + y[14]) / 2
    out = np.array([
        y[14] - y[13],
        y[152] - y[2],
        np.mean([y[lo] - y[up] for up, lo in _LID_PAIRS]),
        inner_corner_y - inner_brow_y,
        outer_corner_y - outer_brow_y,
        np.linalg.norm(h[285, :2] - h[55, :2]),
        y[0] - y[2],
        np.linalg.norm(h[294, :2] - h[64, :2]),
        lip_mid - (y[61] + y[291]) / 2,
        np.linalg.norm(h[291, :2] - h[61, :2]),
        y[13] - y[0],
        y[17] - y[14],
        y[152] - y[17],
        (z[61] + z[291]) / 2 - (z[0] + z[17]) / 2,
    ], np.float32)
    return out if np.isfinite(out).all() else None


OPEN_EYE_BLENDSHAPES = ("eyeBlinkLeft", "eyeBlinkRight")
"""Blendshapes whose neutral, like the lid aperture's, comes from open-eye frames only."""
BLENDSHAPE_PERCENTILE = 10.0
"""Calibration percentile of every blendshape: actions only raise a blendshape from its rest."""
PRIOR_FRAMES = 24.0
"""Weight of the population neutral in a track's estimate, in frames (about one second): the
first frames of a track lean on the population, later ones on the person."""
MAX_HISTORY = 512
"""Frames a running estimate looks at: all frames so far, evenly thinned to at most this many."""


def running_neutral(values: np.ndarray, percentiles: np.ndarray, prior: np.ndarray,
                    prior_frames: float = PRIOR_FRAMES, max_history: int = MAX_HISTORY,
                    start: int = 0) -> np.ndarray:
    """Each frame's neutral estimate (n - start, D) from the earlier frames of one track (causal);
    ``start``: only frames ``start..n-1`` (a video answered a segment at a time).

    Person-specific normalisation (Baltrusaitis, Mahmoud & Robinson 2015, 'Cross-dataset
    learning and person-specific normalisation for automatic Action Unit detection', FG: the
    person's neutral, a statistic of their frames, is subtracted from each frame's features).
    Here the statistic is column d's ``percentiles[d]`` percentile of frames 0..t-1 (causal, so a
    live stream and a whole file agree), shrunk towards the population ``prior`` by
    ``prior_frames`` pseudo-frames: ``(prior_frames * prior + m * est) / (prior_frames + m)``
    with m = t earlier frames. A track's first frame gets the population neutral, as a still does,
    so one face answers alike as a photo and as the first frame of a video (a photo's store row).
    """
    values = np.asarray(values, np.float64)
    out = np.empty((max(len(values) - start, 0), values.shape[1]), np.float32)
    for t in range(start, len(values)):
        out[t - start] = neutral_after(values[:t], percentiles, prior, prior_frames, max_history)
    return out


def neutral_after(earlier: np.ndarray, percentiles: np.ndarray, prior: np.ndarray,
                  prior_frames: float = PRIOR_FRAMES, max_history: int = MAX_HISTORY) -> np.ndarray:
    """The neutral estimate (D,) of the frame that follows ``earlier`` (m, D) frames of a track:
    ``running_neutral``'s one step, for callers that see a track a frame at a time (live)."""
    return _neutral_of(earlier, len(earlier), percentiles, prior, prior_frames, max_history)


def _neutral_of(rows: np.ndarray, m: int, percentiles: np.ndarray, prior: np.ndarray,
                prior_frames: float = PRIOR_FRAMES, max_history: int = MAX_HISTORY) -> np.ndarray:
    """``neutral_after`` of the first ``m`` rows of ``rows`` (a buffer that may hold more), reading
    only the at most ``max_history`` rows the estimate looks at: O(max_history), not O(m)."""
    prior = np.asarray(prior, np.float64)
    if m == 0:
        return prior.astype(np.float32)
    hist = rows[:m] if m <= max_history else rows[np.linspace(0, m - 1, max_history).round().astype(int)]
    hist = np.asarray(hist, np.float64)
    percentiles = np.asarray(percentiles)
    est = np.empty(hist.shape[1])
    gaps = bool(np.isnan(hist).any())  # a live face's frames without geometry (NeutralTracker)
    for q in np.unique(percentiles):
        cols = np.flatnonzero(percentiles == q)
        if gaps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value yet: the prior
                est[cols] = np.nanpercentile(hist[:, cols], q, axis=0)
        else:
            est[cols] = np.percentile(hist[:, cols], q, axis=0)
    if gaps:
        est = np.where(np.isnan(est), prior, est)
    return ((prior_frames * prior + m * est) / (prior_frames + m)).astype(np.float32)


def calibration_prior() -> tuple[np.ndarray, np.ndarray]:
    """(percentiles, population neutral) of the calibrated vector [52 blendshapes, K geometry]:
    blendshapes rest at 0 (ARKit coefficients are 0 on a neutral face)."""
    q = np.concatenate([np.full(52, BLENDSHAPE_PERCENTILE), [f.percentile for f in GEOMETRY_FEATURES]])
    return q, np.concatenate([np.zeros(52, np.float32), population_neutral()])


class NeutralTracker:
    """``track_neutral`` a frame at a time: ``push`` one frame's blendshapes and geometry, get
    that frame's neutral from the earlier ones; the same numbers as ``track_neutral`` over the
    whole track (a live session's faces, which are never seen whole). A frame costs the same
    however long the track is (the estimate reads at most ``MAX_HISTORY`` earlier frames): a
    live face followed for an hour stays within the frame budget."""

    def __init__(self) -> None:
        self.n = 0
        """Frames pushed so far."""
        self._values = np.empty((0, 52 + K))
        """Rows 0..n-1: [blendshapes, geometry] of every frame so far (geometry NaN where the
        face had none); capacity doubles as it fills."""
        self._open = np.empty((0, len(_eye_columns()[0])))
        """The open-eye columns of the open-eye frames so far (``n_open`` rows)."""
        self.n_open = 0

    def push(self, blendshapes: np.ndarray, geometry: "np.ndarray | None") -> np.ndarray:
        row = np.full(52 + K, np.nan)
        row[:52] = np.asarray(blendshapes, np.float32).reshape(-1)
        if geometry is not None:
            row[52:] = np.asarray(geometry, np.float32).reshape(-1)
        self._values = _appended(self._values, self.n, row)
        self.n += 1
        q, prior = calibration_prior()
        if geometry is None:
            nb = _neutral_of(self._values[:, :52], self.n - 1, q[:52], prior[:52])
            return np.concatenate([nb, prior[52:]]).astype(np.float32)
        out = _neutral_of(self._values, self.n - 1, q, prior)
        cols, blink = _eye_columns()
        if cols:
            if row[blink].mean() < 0.5:
                self._open = _appended(self._open, self.n_open, row[cols])
                self.n_open += 1
            if self.n_open:  # the estimate at the last open-eye frame up to this one, as track_neutral
                out[cols] = _neutral_of(self._open, self.n_open - 1, q[cols], prior[cols])
            else:
                out[cols] = prior[cols]
        return out.astype(np.float32)


@functools.lru_cache(maxsize=None)
def _eye_columns() -> tuple[list[int], list[int]]:
    """Columns of [blendshapes, geometry] whose neutral comes from open-eye frames, and the two
    blink blendshapes that tell open-eye frames (mean < 0.5), as ``track_neutral`` has them."""
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES

    cols = [BLENDSHAPE_NAMES.index(c) for c in OPEN_EYE_BLENDSHAPES] + \
        [52 + i for i, f in enumerate(GEOMETRY_FEATURES) if f.open_eyes]
    return cols, [BLENDSHAPE_NAMES.index("eyeBlinkLeft"), BLENDSHAPE_NAMES.index("eyeBlinkRight")]


def _appended(buffer: np.ndarray, n: int, row: np.ndarray) -> np.ndarray:
    """``buffer`` (rows 0..n-1 used) with ``row`` as row n, its capacity doubled when full."""
    if n == len(buffer):
        grown = np.empty((max(2 * n, 64), buffer.shape[1]))
        grown[:n] = buffer[:n]
        buffer = grown
    buffer[n] = row
    return buffer


def track_neutral(blendshapes: np.ndarray, geometry: "np.ndarray | None", start: int = 0) -> np.ndarray:
    """float32 (n - start, 52 + K): a track's running neutral of [blendshapes, geometry]
    (``running_neutral``) at frames ``start..n-1`` (``start`` > 0: a track answered a segment at a
    time, the earlier frames given as history); the geometry part is the population neutral where
    the track has no geometry."""
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES

    q, prior = calibration_prior()
    b = np.asarray(blendshapes, np.float32)
    n = len(b)
    if geometry is None:
        nb = running_neutral(b, q[:52], prior[:52], start=start)
        return np.hstack([nb, np.broadcast_to(prior[52:], (len(nb), K))]).astype(np.float32)
    values = np.hstack([b, np.asarray(geometry, np.float32)])
    out = running_neutral(values, q, prior, start=start)
    blink = b[:, [BLENDSHAPE_NAMES.index("eyeBlinkLeft"), BLENDSHAPE_NAMES.index("eyeBlinkRight")]].mean(1)
    cols = [BLENDSHAPE_NAMES.index(n) for n in OPEN_EYE_BLENDSHAPES] + \
        [52 + i for i, f in enumerate(GEOMETRY_FEATURES) if f.open_eyes]
    kept = np.flatnonzero(blink < 0.5)
    if cols and n > start:  # each frame takes the estimate after the last open-eye frame up to it (causal)
        last = np.searchsorted(kept, np.arange(start, n), side="right") - 1
        first = max(int(last[0]), 0)
        est = (running_neutral(values[kept][:, cols], q[cols], prior[cols], start=first) if len(kept)
               else np.zeros((0, len(cols))))
        out[:, cols] = np.where((last >= 0)[:, None], est[np.maximum(last - first, 0)] if len(kept) else prior[cols],
                                prior[cols])
    return out
