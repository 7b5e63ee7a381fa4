"""AU intensity time courses for synthetic videos: prototype expressions with onset-apex-offset
envelopes, independent single-AU noise, blinks, label unknowns and occlusion episodes.

Facial actions unfold as an onset (the muscle contracts), an apex (held) and an offset
(relaxation back to neutral) (Ekman & Friesen's FACS manual; the same phases DISFA and BP4D
coders mark). Co-occurrence follows prototype expressions (the EMFACS-style AU combinations of
the basic emotions plus speech), and independent events of single AUs add the noise that
keeps the label correlation imperfect, as in spontaneous data.

Intensities are continuous in [0, 5] for rendering; labels are the rounded FACS level
(0 absent, 1-5 = A-E) and occurrence is level >= 2 (B), DISFA's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Prototype",
    "PROTOTYPES",
    "OCCLUSION_REGIONS",
    "OCCURRENCE_LEVEL",
    "envelope",
    "sample_intensities",
    "intensity_levels",
    "occurrence",
    "sample_unknown_frames",
    "sample_unknown_cells",
    "sample_occlusion",
]

OCCURRENCE_LEVEL = 2
"""Lowest FACS level (B) counted as an occurrence, as DISFA's >= 2 rule."""

OCCLUSION_REGIONS: tuple[str, ...] = ("mouth", "eyes", "left_cheek", "right_cheek", "nose", "chin", "forehead")
"""Face regions a hand-like occluder may cover."""


@dataclass(frozen=True)
class Prototype:
    """A co-occurring AU combination and how often it is drawn."""

    name: str
    """Expression name, e.g. 'happiness'."""
    aus: dict[int, float]
    """AU → relative apex intensity (1.0 = the event's peak level)."""
    weight: float
    """Relative probability of drawing this prototype."""


PROTOTYPES: tuple[Prototype, ...] = (
    Prototype("happiness", {6: 0.8, 12: 1.0, 25: 0.4}, 3.0),
    Prototype("smile", {12: 1.0, 6: 0.3}, 1.5),
    Prototype("surprise", {1: 1.0, 2: 0.9, 5: 0.6, 25: 0.9, 26: 0.8}, 1.5),
    Prototype("anger", {4: 1.0, 7: 0.8, 23: 0.8, 24: 0.5}, 1.5),
    Prototype("sadness", {1: 0.9, 4: 0.7, 15: 1.0, 17: 0.5}, 1.5),
    Prototype("disgust", {9: 1.0, 10: 0.9, 17: 0.4, 4: 0.3}, 1.0),
    Prototype("fear", {1: 1.0, 2: 0.6, 4: 0.7, 5: 0.8, 20: 0.9, 25: 0.7, 26: 0.4}, 1.0),
    Prototype("contempt", {14: 1.0, 12: 0.3}, 0.7),
    Prototype("speech", {25: 1.0, 26: 0.6, 10: 0.2}, 1.5),
    Prototype("concentration", {4: 0.8, 7: 0.7}, 1.0),
    Prototype("doubt", {17: 1.0, 15: 0.5, 24: 0.6}, 1.0),
    Prototype("lip_suck", {28: 1.0, 17: 0.4}, 0.3),
)
"""Prototype expressions (FACS/EMFACS combinations: 6+12, 1+2+5+25+26, 4+7+23, 1+4+15, 9+10, ...)."""

# Peak FACS level of an event: A is rare as a peak, B-D common, E less so (DISFA's histogram).
_PEAK_LEVELS = np.array([1, 2, 3, 4, 5])
_PEAK_P = np.array([0.10, 0.25, 0.27, 0.23, 0.15])
# Phase lengths in seconds: onset, apex, offset; and the neutral gap between expressions.
_ONSET_S, _APEX_S, _OFFSET_S, _GAP_S = (0.15, 0.5), (0.2, 1.0), (0.15, 0.5), (0.0, 0.25)
# Independent single-AU events per second of video, per labelled AU.
_NOISE_RATE = 0.12
_BLINK_RATE = 0.3


def envelope(n_frames: int, start: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Onset-apex-offset envelope (n_frames,) in [0, 1].

    Zero before ``start``; a smoothstep rise over ``onset`` frames; 1 for ``apex`` frames; a
    smoothstep fall over ``offset`` frames; zero afterwards. Phases may run past the video
    ends (clipped).
    """
    if min(onset, apex, offset) < 0:
        raise ValueError(f"phase lengths must be >= 0, got onset={onset} apex={apex} offset={offset}")
    t = np.arange(n_frames, dtype=np.float64) - start
    env = np.zeros(n_frames)
    rise = (t >= 0) & (t < onset)
    u = (t[rise] + 1) / (onset + 1)
    env[rise] = u * u * (3 - 2 * u)
    env[(t >= onset) & (t < onset + apex)] = 1.0
    fall = (t >= onset + apex) & (t < onset + apex + offset)
    u = 1.0 - (t[fall] - onset - apex + 1) / (offset + 1)
    env[fall] = u * u * (3 - 2 * u)
    return env


def _phase_frames(rng: np.random.Generator, fps: float, bounds: tuple[float, float]) -> int:
    return max(1, int(round(rng.uniform(*bounds) * fps)))


def _add_event(track: np.ndarray, rng: np.random.Generator, start: int, fps: float,
               apex_levels: dict[int, float], columns: dict[int, int]) -> int:
    """Add one event to ``track`` (frames x AUs, max-combined); return the frame it ends."""
    on, ap, off = (_phase_frames(rng, fps, b) for b in (_ONSET_S, _APEX_S, _OFFSET_S))
    env = envelope(track.shape[0], start, on, ap, off)
    for au, level in apex_levels.items():
        if au in columns:
            col = columns[au]
            track[:, col] = np.maximum(track[:, col], np.clip(level, 0.0, 5.0) * env)
    return start + on + ap + off


def sample_intensities(rng: np.random.Generator, n_frames: int, fps: float,
                       render_aus: tuple[int, ...], noise_aus: tuple[int, ...]) -> np.ndarray:
    """Continuous intensities (n_frames, len(render_aus)) in [0, 5] for one video.

    Prototype expressions follow each other with neutral gaps (one expression track, as a
    face shows one expression at a time); each labelled AU in ``noise_aus`` also gets rare
    independent events, and AU45 (when rendered) gets blinks.
    """
    columns = {au: i for i, au in enumerate(render_aus)}
    track = np.zeros((n_frames, len(render_aus)))
    usable = [p for p in PROTOTYPES if any(a in columns for a in p.aus)]
    weights = np.array([p.weight for p in usable])
    t = int(rng.uniform(-0.5, 0.5) * fps)
    while usable and t < n_frames:
        proto = usable[rng.choice(len(usable), p=weights / weights.sum())]
        peak = rng.choice(_PEAK_LEVELS, p=_PEAK_P) + rng.uniform(-0.45, 0.45)
        levels = {au: peak * rel * rng.uniform(0.8, 1.2) for au, rel in proto.aus.items()}
        end = _add_event(track, rng, t, fps, levels, columns)
        t = end + _phase_frames(rng, fps, _GAP_S) - 1
    seconds = n_frames / fps
    for au in noise_aus:
        if au not in columns:
            continue
        for _ in range(rng.poisson(_NOISE_RATE * seconds)):
            peak = rng.choice(_PEAK_LEVELS, p=_PEAK_P) + rng.uniform(-0.45, 0.45)
            _add_event(track, rng, int(rng.integers(-fps // 4, n_frames)), fps, {au: peak}, columns)
    if 45 in columns:
        for _ in range(rng.poisson(_BLINK_RATE * seconds)):
            start = int(rng.integers(0, n_frames))
            n = max(1, int(round(0.05 * fps)))
            env = envelope(n_frames, start, n, n, n + 1)
            track[:, columns[45]] = np.maximum(track[:, columns[45]], rng.uniform(3.5, 5.0) * env)
    return track


def intensity_levels(intensities: np.ndarray) -> np.ndarray:
    """FACS levels 0-5 (int8) from continuous intensities (rounded half up)."""
    return np.clip(np.floor(np.asarray(intensities) + 0.5), 0, 5).astype(np.int8)


def occurrence(levels: np.ndarray) -> np.ndarray:
    """Occurrence 0/1 (int8): level >= B (2)."""
    return (np.asarray(levels) >= OCCURRENCE_LEVEL).astype(np.int8)


def sample_unknown_frames(rng: np.random.Generator, n_frames: int, rate: float) -> np.ndarray:
    """Bool (n_frames,): short runs of frames whose labels are unknown, ~``rate`` of frames.

    Runs mimic real gaps (coder skipped a segment, face not tracked): 2-6 frames each.
    """
    mask = np.zeros(n_frames, dtype=bool)
    if rate <= 0:
        return mask
    for _ in range(rng.poisson(rate * n_frames / 4.0)):
        length = int(rng.integers(2, 7))
        start = int(rng.integers(0, max(1, n_frames - length + 1)))
        mask[start:start + length] = True
    return mask


def sample_unknown_cells(rng: np.random.Generator, shape: tuple[int, int], rate: float) -> np.ndarray:
    """Bool (frames, AUs): scattered unknown cells (single AUs a coder left open), ~``rate``."""
    return rng.uniform(size=shape) < rate


def sample_occlusion(rng: np.random.Generator, n_frames: int, probability: float) -> tuple[np.ndarray, str]:
    """(occluded (n_frames,) bool, region) of at most one hand-over-face episode per video.

    With ``probability`` the video gets one episode covering 20-50 % of it (at least 3 frames)
    over one of ``OCCLUSION_REGIONS``; otherwise no frame is occluded and region is ''.
    """
    mask = np.zeros(n_frames, dtype=bool)
    if rng.uniform() >= probability or n_frames < 3:
        return mask, ""
    length = max(3, int(round(rng.uniform(0.2, 0.5) * n_frames)))
    start = int(rng.integers(0, n_frames - length + 1))
    mask[start:start + length] = True
    return mask, str(OCCLUSION_REGIONS[int(rng.integers(len(OCCLUSION_REGIONS)))])
