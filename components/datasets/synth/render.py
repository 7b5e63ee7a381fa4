"""Rendering synthetic AU video frames from one aligned source face (synthetic generator).

Per identity (source face, optionally mirrored) a ``FaceRig`` is built once: the canvas, its
68 landmarks, the piecewise-affine ``MeshWarper`` and the per-AU displacement basis. Per
pseudo-subject a ``Look`` fixes the shape morph and colour transform; per video ``Nuisance``
fixes the slow head-pose, lighting, noise and compression trajectories. ``render_frame`` then
makes one frame:

1. landmark displacement = shape morph + sum over AUs of (intensity / 5) x field;
2. piecewise-affine warp (``cv2.remap``), furrows and mouth cavity painted;
3. the pseudo-subject's colour transform (per-channel gain and gamma LUT, saturation);
4. head-pose jitter: a small similarity about the face centre (``cv2.warpAffine``);
5. lighting: global gain times a directional ramp;
6. the hand occluder on occluded frames; 7. Gaussian sensor noise.

JPEG compression happens when the layout writes the frame, at the video's quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from components.au import CATALOGUE, LEFT_RIGHT_LANDMARK_PERMUTATION
from components.datasets.synth.appearance import (
    Hand, paint_furrows, paint_hand, paint_mouth_cavity, region_centre, sample_hand, skin_colour,
)
from components.datasets.synth.fields import MORPH_RANGES, au_basis, canonical_frame, morph_field, neutral_field
from components.datasets.synth.warp import MeshWarper, anchor_points
from components.geometry import TEMPLATE_68, transform_points

__all__ = ["RENDER_AUS", "FaceRig", "Look", "Nuisance", "sample_look", "sample_nuisance", "render_frame",
           "mirror", "subject_morph", "neutralise"]

RENDER_AUS: tuple[int, ...] = tuple(sorted(CATALOGUE))
"""Every catalogue AU can be rendered; intensity vectors follow this order."""


def mirror(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontally flipped image and its landmarks, re-indexed so 36 stays the image-left eye."""
    w = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    lm = np.asarray(landmarks, np.float32).copy()
    lm[:, 0] = (w - 1) - lm[:, 0]
    return flipped, lm[list(LEFT_RIGHT_LANDMARK_PERMUTATION)]


def neutralise(canvas: np.ndarray, landmarks: np.ndarray, amount: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, landmarks) of the source face warped to a neutral expression, once per identity.

    ``synth_fields.neutral_field`` against ``TEMPLATE_68`` gives the landmark motion; the same
    piecewise-affine warp that animates AUs applies it. The result is the rest state that every
    labelled AU is added to.
    """
    lm = np.asarray(landmarks, np.float32)
    h, w = canvas.shape[:2]
    disp = neutral_field(lm, TEMPLATE_68, amount)
    warper = MeshWarper(np.concatenate([lm, anchor_points(lm, w, h)]), w, h)
    return warper.warp(canvas, disp), (lm + disp).astype(np.float32)


class FaceRig:
    """Everything per identity that does not change between frames."""

    def __init__(self, canvas: np.ndarray, landmarks: np.ndarray) -> None:
        self.canvas = np.ascontiguousarray(canvas)
        self.landmarks = np.asarray(landmarks, np.float32)
        h, w = self.canvas.shape[:2]
        self.size = (w, h)
        self.warper = MeshWarper(np.concatenate([self.landmarks, anchor_points(self.landmarks, w, h)]), w, h)
        basis = au_basis(self.landmarks, RENDER_AUS)
        self.basis = np.stack([basis[a] for a in RENDER_AUS])
        """(n_render_aus, 68, 2) pixel displacement at intensity E."""
        _, axes = canonical_frame(self.landmarks)
        self.iod = float(np.linalg.norm(axes[0]))
        self.skin = skin_colour(self.canvas, self.landmarks)
        self.rest_gap = float(np.linalg.norm(self.landmarks[66] - self.landmarks[62])) / self.iod
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        self._xn = (xs / max(w - 1, 1)) * 2 - 1
        self._yn = (ys / max(h - 1, 1)) * 2 - 1

    def displacement(self, intensities: np.ndarray, morph: np.ndarray) -> np.ndarray:
        """(68, 2) landmark displacement for continuous intensities over ``RENDER_AUS``."""
        return morph + np.tensordot(np.asarray(intensities, np.float32) / 5.0, self.basis, axes=1)

    def lighting(self, gain: float, ramp: float, angle: float) -> np.ndarray:
        """(H, W) multiplicative light field: ``gain * (1 + ramp * directional ramp)``."""
        return gain * (1.0 + ramp * (np.cos(angle) * self._xn + np.sin(angle) * self._yn))


@dataclass
class Look:
    """A pseudo-subject's appearance relative to its source face."""

    mirrored: bool
    """The source face is flipped left-right (a mirrored face reads as a new person)."""
    morph: dict[str, float]
    """Shape-morph parameters (``synth_fields.MORPH_RANGES``)."""
    gains: tuple[float, float, float]
    """Per-channel RGB gains (skin tone and white balance)."""
    gamma: float
    """Tone curve exponent."""
    saturation: float
    """Colour saturation factor (1 = unchanged)."""
    lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        x = np.arange(256, dtype=np.float64) / 255.0
        lut = np.stack([np.clip(255.0 * g * x ** self.gamma, 0, 255) for g in self.gains], -1)
        self.lut = np.round(lut).astype(np.uint8).reshape(256, 1, 3)

    def params(self) -> dict[str, float]:
        """Flat parameter dict for ``subjects.csv``."""
        return {"mirrored": int(self.mirrored), **{k: round(v, 4) for k, v in self.morph.items()},
                "gain_r": round(self.gains[0], 4), "gain_g": round(self.gains[1], 4),
                "gain_b": round(self.gains[2], 4), "gamma": round(self.gamma, 4),
                "saturation": round(self.saturation, 4)}


def sample_look(rng: np.random.Generator) -> Look:
    """A random pseudo-subject look: morphs within ``MORPH_RANGES``, mild colour changes."""
    morph = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in MORPH_RANGES.items()}
    base = rng.uniform(0.9, 1.1)
    gains = tuple(float(base * g) for g in rng.uniform(0.93, 1.07, 3))
    return Look(mirrored=bool(rng.uniform() < 0.5), morph=morph, gains=gains,  # type: ignore[arg-type]
                gamma=float(rng.uniform(0.85, 1.18)), saturation=float(rng.uniform(0.75, 1.2)))


@dataclass
class Nuisance:
    """Per-frame nuisance trajectories of one video (all arrays have one row per frame)."""

    pose: np.ndarray
    """(T, 4): rotation (degrees), scale, shift x, shift y (pixels) of the head-pose jitter."""
    light: np.ndarray
    """(T, 3): global gain, directional ramp strength, ramp direction (radians)."""
    noise_sigma: float
    """Gaussian sensor noise, grey levels."""
    jpeg_quality: int
    """JPEG quality the layout writes this video's frames with."""
    hand: Hand | None
    """The occluder of this video's occlusion episode (None: no episode)."""
    hand_drift: np.ndarray
    """(T, 2) hand position jitter, pixels."""
    noise: np.ndarray
    """(H + pad, W + pad, 3) float32 Gaussian noise of std ``noise_sigma``; each frame reads a
    window at its own offset (drawing fresh full-frame noise would cost more than the warp)."""
    noise_offsets: np.ndarray
    """(T, 2) int window offsets (y, x) into ``noise``."""


_NOISE_PAD = 48


def _smooth_walk(rng: np.random.Generator, n: int, fps: float, amplitude: float, jitter: float) -> np.ndarray:
    """Two slow sinusoids (0.1-0.6 Hz) of total ``amplitude`` plus per-frame white ``jitter``."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for share in (0.6, 0.4):
        out += share * amplitude * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 2 * np.pi))
    return out + rng.normal(0.0, jitter, n)


def sample_nuisance(rng: np.random.Generator, rig: FaceRig, n_frames: int, fps: float,
                    occluded: bool) -> Nuisance:
    """Random pose/lighting/noise/JPEG trajectories for one video of ``rig``."""
    w, _ = rig.size
    pose = np.stack([
        _smooth_walk(rng, n_frames, fps, rng.uniform(1.0, 4.0), 0.15),
        1.0 + _smooth_walk(rng, n_frames, fps, rng.uniform(0.01, 0.04), 0.002),
        _smooth_walk(rng, n_frames, fps, rng.uniform(0.005, 0.03) * w, 0.002 * w),
        _smooth_walk(rng, n_frames, fps, rng.uniform(0.005, 0.03) * w, 0.002 * w),
    ], 1)
    light = np.stack([
        rng.uniform(0.8, 1.15) + _smooth_walk(rng, n_frames, fps, 0.06, 0.005),
        np.abs(rng.uniform(0.0, 0.25) + _smooth_walk(rng, n_frames, fps, 0.05, 0.0)),
        np.full(n_frames, rng.uniform(0, 2 * np.pi)),
    ], 1)
    hand = sample_hand(rng, rig.iod, rig.skin) if occluded else None
    drift = rng.normal(0.0, 0.02 * rig.iod, (n_frames, 2)).cumsum(0) if occluded else np.zeros((n_frames, 2))
    sigma = float(rng.uniform(1.0, 5.0))
    noise = rng.standard_normal((rig.size[1] + _NOISE_PAD, w + _NOISE_PAD, 3), dtype=np.float32) * sigma
    return Nuisance(pose=pose, light=light, noise_sigma=sigma, jpeg_quality=int(rng.integers(60, 96)),
                    hand=hand, hand_drift=drift, noise=noise,
                    noise_offsets=rng.integers(0, _NOISE_PAD + 1, (n_frames, 2)))


def _saturate(image: np.ndarray, factor: float) -> np.ndarray:
    """Float32 copy of ``image`` (uint8 RGB) with saturation scaled by ``factor`` about its grey."""
    img = image.astype(np.float32)
    if abs(factor - 1.0) < 1e-3:
        return img
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    img *= factor
    img += (1.0 - factor) * grey
    return img


def render_frame(rig: FaceRig, look: Look, morph: np.ndarray, intensities: np.ndarray,
                 nuisance: Nuisance, t: int, occlusion_region: str) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (RGB uint8 (H, W, 3), its 68 landmarks (68, 2) in frame pixels).

    ``intensities`` are continuous 0-5 over ``RENDER_AUS``; ``morph`` the pseudo-subject's
    (68, 2) shape displacement; ``occlusion_region`` '' for an unoccluded frame.
    """
    disp = rig.displacement(intensities, morph)
    img = rig.warper.warp(rig.canvas, disp)
    lm = rig.landmarks + disp
    levels = {au: float(v) for au, v in zip(RENDER_AUS, intensities) if v > 0.05}
    img = paint_furrows(img, lm, levels)
    img = paint_mouth_cavity(img, lm, rig.rest_gap)
    img = cv2.LUT(img, look.lut)
    w, h = rig.size
    angle, scale, dx, dy = nuisance.pose[t]
    centre = lm.mean(0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    matrix[:, 2] += (dx, dy)
    img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    lm = transform_points(lm, matrix)
    out = _saturate(img, look.saturation)
    out *= rig.lighting(*nuisance.light[t])[..., None]
    if occlusion_region and nuisance.hand is not None:
        out = paint_hand(out, nuisance.hand, region_centre(lm, occlusion_region) + nuisance.hand_drift[t])
    oy, ox = nuisance.noise_offsets[t]
    out += nuisance.noise[oy:oy + h, ox:ox + w]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), lm.astype(np.float32)


def subject_morph(rig: FaceRig, look: Look) -> np.ndarray:
    """The (68, 2) pixel displacement of ``look``'s shape morph on ``rig``'s face."""
    return morph_field(rig.landmarks, look.morph)
