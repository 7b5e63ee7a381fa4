"""Per-AU landmark displacement fields and identity shape morphs for the synthetic generator.

Every field lives in the face's own *canonical frame*: origin at the midpoint of the two eye
centres, x along the line from the image-left eye centre (landmarks 36-41) to the image-right
one (42-47), y perpendicular to it pointing down the face (image convention), and the unit is
the inter-ocular distance (IOD, distance between the eye centres). A field is the landmark
displacement at FACS intensity E (5); intensity ``v`` in 0..5 scales it by ``v / 5``, so an
A (1) is a fifth of the apex motion: subtle, as the FACS manual's "trace" level.

Fields are written per AU from its description in ``components.au.CATALOGUE`` (muscle, region
and direction of motion) with magnitudes chosen so that an E-level action moves its main
landmarks by 5-20 % of the IOD, the range of landmark excursions reported for posed apexes.
They are bilateral: each table lists the subject's-right (image-left) landmark or a midline
landmark with an (outward, down) vector, and the image-right partner gets the mirror vector.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from components.au import CATALOGUE, LEFT_RIGHT_LANDMARK_PERMUTATION

__all__ = [
    "FIELD_TABLES",
    "IMAGE_LEFT",
    "MORPH_RANGES",
    "canonical_frame",
    "au_field",
    "to_canonical",
    "au_basis",
    "morph_field",
    "neutral_field",
]

IMAGE_LEFT: frozenset[int] = frozenset(
    list(range(0, 8)) + list(range(17, 22)) + [31, 32] + list(range(36, 42))
    + [48, 49, 50, 58, 59, 60, 61, 67]
)
"""iBUG-68 landmarks on the image-left half of a frontal face (their mirror partners are right)."""

_Table = dict[int, tuple[float, float]]

# (outward, down) in IOD units at intensity E, for image-left or midline landmarks.
FIELD_TABLES: dict[int, _Table] = {
    # AU1: central frontalis lifts the inner brow ends (19-21) most, fading laterally.
    1: {21: (0.0, -0.11), 20: (0.0, -0.09), 19: (0.0, -0.05), 18: (0.0, -0.02)},
    # AU2: lateral frontalis lifts the brow tails into an arch; the outer upper lid stretches.
    2: {17: (0.01, -0.09), 18: (0.0, -0.10), 19: (0.0, -0.07), 20: (0.0, -0.03), 37: (0.0, -0.015)},
    # AU4: corrugator/depressors pull the brows down and together; upper lids pushed down.
    4: {21: (-0.05, 0.07), 20: (-0.04, 0.07), 19: (-0.03, 0.06), 18: (-0.02, 0.045),
        17: (-0.01, 0.03), 37: (0.0, 0.015), 38: (0.0, 0.02), 27: (0.0, 0.01)},
    # AU5: levator palpebrae lifts the upper lids, widening the eye opening vertically.
    5: {37: (0.0, -0.05), 38: (0.0, -0.05), 36: (0.0, -0.01), 40: (0.0, 0.01), 41: (0.0, 0.01),
        19: (0.0, -0.015), 20: (0.0, -0.015)},
    # AU6: orbital orbicularis oculi raises the cheeks; lower lids bulge up, eyes narrow.
    6: {40: (0.0, -0.035), 41: (0.0, -0.04), 36: (0.0, -0.015), 1: (0.0, -0.03), 2: (0.0, -0.035),
        3: (0.0, -0.02), 48: (0.01, -0.02), 31: (0.0, -0.01), 17: (0.0, 0.01)},
    # AU7: palpebral orbicularis tightens the lids, mostly the lower lid rising towards the pupil.
    7: {40: (0.0, -0.045), 41: (0.0, -0.045), 37: (0.0, 0.02), 38: (0.0, 0.02), 36: (-0.01, -0.005)},
    # AU9: levator labii alaeque nasi lifts the nose wings and upper lip, drags inner brows down.
    9: {31: (0.015, -0.05), 32: (0.005, -0.04), 33: (0.0, -0.035), 30: (0.0, -0.025),
        29: (0.0, -0.02), 28: (0.0, -0.01), 21: (-0.015, 0.04), 20: (-0.01, 0.025),
        39: (0.0, -0.01), 40: (0.0, -0.02), 41: (0.0, -0.015), 49: (0.0, -0.03), 50: (0.0, -0.035),
        51: (0.0, -0.035), 61: (0.0, -0.03), 62: (0.0, -0.03), 48: (0.0, -0.01)},
    # AU10: levator labii superioris raises the upper lip centre straight up towards the nose.
    10: {50: (0.0, -0.08), 51: (0.0, -0.07), 49: (0.0, -0.055), 48: (0.0, -0.02), 61: (0.0, -0.07),
         62: (0.0, -0.065), 60: (0.0, -0.02), 31: (0.01, -0.02), 32: (0.0, -0.015), 33: (0.0, -0.01)},
    # AU12: zygomatic major pulls the lip corners obliquely up and out; cheeks pushed up.
    12: {48: (0.09, -0.07), 60: (0.08, -0.065), 49: (0.04, -0.035), 59: (0.045, -0.04),
         61: (0.04, -0.035), 67: (0.04, -0.035), 50: (0.015, -0.015), 58: (0.015, -0.02),
         2: (0.01, -0.015), 3: (0.015, -0.02), 4: (0.01, -0.01), 40: (0.0, -0.01),
         41: (0.0, -0.012), 31: (0.005, -0.005)},
    # AU14: buccinator tightens the lip corners and draws them slightly inward (dimples).
    14: {48: (-0.04, -0.01), 60: (-0.035, -0.01), 49: (-0.015, 0.0), 59: (-0.015, 0.0)},
    # AU15: depressor anguli oris pulls the lip corners down into a downward arc.
    15: {48: (0.01, 0.075), 60: (0.01, 0.065), 59: (0.0, 0.035), 67: (0.0, 0.03), 49: (0.0, 0.025),
         61: (0.0, 0.02), 58: (0.0, 0.015), 5: (0.0, 0.015), 4: (0.0, 0.01)},
    # AU17: mentalis pushes the chin boss and lower lip up; the mouth arches (corners drop).
    17: {8: (0.0, -0.06), 7: (0.0, -0.055), 6: (0.0, -0.04), 5: (0.0, -0.02), 57: (0.0, -0.06),
         58: (0.0, -0.055), 59: (0.0, -0.035), 66: (0.0, -0.035), 67: (0.0, -0.03),
         48: (0.0, 0.015), 60: (0.0, 0.01), 51: (0.0, -0.01), 62: (0.0, -0.02)},
    # AU20: risorius/platysma stretch the lip corners horizontally towards the ears.
    20: {48: (0.09, 0.01), 60: (0.085, 0.01), 49: (0.04, 0.0), 59: (0.045, 0.005), 61: (0.04, 0.0),
         67: (0.04, 0.005), 50: (0.015, 0.0), 58: (0.015, 0.0), 3: (0.01, 0.0), 4: (0.015, 0.0),
         5: (0.01, 0.0)},
    # AU23: orbicularis oris narrows the mouth and thins the red of the lips (rolling in).
    23: {48: (-0.03, 0.0), 60: (-0.025, 0.0), 49: (-0.015, 0.02), 50: (-0.005, 0.025),
         51: (0.0, 0.025), 59: (-0.015, -0.02), 58: (-0.005, -0.025), 57: (0.0, -0.025)},
    # AU24: orbicularis oris presses the lips together vertically; lip line flattens.
    24: {50: (0.0, 0.03), 51: (0.0, 0.03), 49: (0.0, 0.02), 58: (0.0, -0.03), 57: (0.0, -0.03),
         59: (0.0, -0.02), 61: (0.0, 0.01), 62: (0.0, 0.01), 67: (0.0, -0.01), 66: (0.0, -0.01),
         48: (-0.01, 0.0)},
    # AU25: the lips part: inner contours separate vertically, lower lip more than upper.
    25: {61: (0.0, -0.03), 62: (0.0, -0.035), 67: (0.0, 0.055), 66: (0.0, 0.06), 58: (0.0, 0.045),
         57: (0.0, 0.05), 59: (0.0, 0.03), 50: (0.0, -0.015), 51: (0.0, -0.015), 49: (0.0, -0.01)},
    # AU26: the jaw drops: chin and lower lip move straight down, the face lengthens.
    26: {8: (0.0, 0.2), 7: (0.0, 0.18), 6: (-0.005, 0.15), 5: (-0.01, 0.1), 4: (-0.01, 0.055),
         3: (0.0, 0.02), 57: (0.0, 0.17), 58: (0.0, 0.16), 59: (-0.005, 0.11), 66: (0.0, 0.16),
         67: (0.0, 0.14), 48: (-0.015, 0.05), 60: (-0.015, 0.05), 61: (0.0, -0.005), 62: (0.0, -0.005)},
    # AU28: the lips are sucked in: outer contours roll towards the inner ones.
    28: {50: (0.0, 0.04), 51: (0.0, 0.04), 49: (0.0, 0.03), 58: (0.0, -0.04), 57: (0.0, -0.04),
         59: (0.0, -0.03), 48: (-0.01, 0.0)},
}
"""AU → {image-left or midline landmark: (outward, down) at intensity E, IOD units}."""

# Fraction of the upper-to-lower lid gap that the upper lid travels at E (AU43/45 close the eye).
_LID_CLOSURE = 0.85

MORPH_RANGES: dict[str, tuple[float, float]] = {
    "face_width": (0.93, 1.07),
    "jaw_length": (-0.07, 0.07),
    "eye_scale": (0.9, 1.12),
    "nose_length": (-0.05, 0.05),
    "mouth_width": (0.92, 1.08),
    "brow_height": (-0.05, 0.05),
}
"""Shape-morph parameter → (low, high) of its uniform draw; lengths in IOD units."""


def canonical_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(origin (2,), basis (2, 2)) of the canonical frame; ``basis`` rows are IOD-long x and y axes.

    A canonical vector ``c`` maps to the image vector ``c @ basis``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    ex = right - left
    if np.linalg.norm(ex) < 1e-6:
        raise ValueError("canonical_frame: the eye centres coincide")
    ey = np.array([-ex[1], ex[0]])
    return (left + right) / 2.0, np.stack([ex, ey])


def _mirror_table(table: _Table) -> np.ndarray:
    """Expand a one-sided (outward, down) table into a canonical (68, 2) displacement."""
    perm = LEFT_RIGHT_LANDMARK_PERMUTATION
    out = np.zeros((68, 2))
    for idx, (outward, down) in table.items():
        partner = perm[idx]
        if partner == idx:
            if outward != 0.0:
                raise ValueError(f"midline landmark {idx} cannot move outward")
            out[idx] = (0.0, down)
        else:
            if idx not in IMAGE_LEFT:
                raise ValueError(f"field tables list image-left landmarks; {idx} is image-right")
            out[idx] = (-outward, down)
            out[partner] = (outward, down)
    return out


def _eye_closure(canon: np.ndarray) -> np.ndarray:
    """AU43/AU45: each upper lid travels most of the way down to the lower lid facing it."""
    out = np.zeros((68, 2))
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        gap = canon[lower] - canon[upper]
        out[upper] = _LID_CLOSURE * gap
        out[lower] = -0.08 * gap
    return out


_DYNAMIC: dict[int, Callable[[np.ndarray], np.ndarray]] = {43: _eye_closure, 45: _eye_closure}


def au_field(au: int, canonical_landmarks: np.ndarray) -> np.ndarray:
    """Canonical (68, 2) displacement of ``au`` at intensity E for a face with these landmarks."""
    if au in _DYNAMIC:
        return _DYNAMIC[au](np.asarray(canonical_landmarks, dtype=np.float64))
    if au not in FIELD_TABLES:
        raise KeyError(f"no displacement field for AU{au}; fields exist for {sorted(set(FIELD_TABLES) | set(_DYNAMIC))}")
    return _mirror_table(FIELD_TABLES[au])


def to_canonical(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (68, 2) in the canonical frame (IOD units)."""
    origin, basis = canonical_frame(landmarks)
    return (np.asarray(landmarks, np.float64) - origin) @ np.linalg.inv(basis)


def au_basis(landmarks: np.ndarray, aus: "tuple[int, ...] | None" = None) -> dict[int, np.ndarray]:
    """Image-pixel (68, 2) float32 displacement at intensity E for each AU (default: all).

    Frame displacement for intensities ``v`` is ``sum(v[au] / 5 * basis[au])``.
    """
    _, basis = canonical_frame(landmarks)
    canon = to_canonical(landmarks)
    wanted = tuple(CATALOGUE) if aus is None else aus
    return {au: (au_field(au, canon) @ basis).astype(np.float32) for au in wanted}


def morph_field(landmarks: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Image-pixel (68, 2) float32 displacement that reshapes a face into a pseudo-subject.

    ``params`` holds one value per ``MORPH_RANGES`` key (missing keys: neutral). Scales act
    about the face midline (x = 0) or each eye centre; lengths are IOD units.
    """
    unknown = set(params) - set(MORPH_RANGES)
    if unknown:
        raise KeyError(f"unknown morph parameter(s) {sorted(unknown)}; known: {sorted(MORPH_RANGES)}")
    p = {"face_width": 1.0, "jaw_length": 0.0, "eye_scale": 1.0, "nose_length": 0.0,
         "mouth_width": 1.0, "brow_height": 0.0, **params}
    _, basis = canonical_frame(landmarks)
    c = to_canonical(landmarks)
    d = np.zeros((68, 2))
    jaw = np.arange(17)
    d[jaw, 0] += (p["face_width"] - 1.0) * c[jaw, 0]
    # The chin lengthens most at its tip and not at all at the jaw angles.
    chin_weight = {8: 1.0, 7: 0.9, 9: 0.9, 6: 0.7, 10: 0.7, 5: 0.45, 11: 0.45, 4: 0.2, 12: 0.2}
    for i, w in chin_weight.items():
        d[i, 1] += w * p["jaw_length"]
    for eye in (range(36, 42), range(42, 48)):
        idx = list(eye)
        centre = c[idx].mean(0)
        d[idx] += (p["eye_scale"] - 1.0) * (c[idx] - centre)
    d[31:36, 1] += p["nose_length"]
    d[29, 1] += p["nose_length"] / 2.0
    d[30, 1] += p["nose_length"]
    mouth = np.arange(48, 68)
    d[mouth, 0] += (p["mouth_width"] - 1.0) * c[mouth, 0]
    d[17:27, 1] -= p["brow_height"]
    return (d @ basis).astype(np.float32)


# Lower-face contour points that follow the chin when the mouth closes (weight of the lower lip's
# vertical motion each one takes).
_JAW_FOLLOW = {3: 0.1, 4: 0.3, 5: 0.55, 6: 0.8, 7: 0.95, 8: 1.0, 9: 0.95, 10: 0.8, 11: 0.55, 12: 0.3, 13: 0.1}
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_REST_LIP_GAP = 0.02
"""Gap (IOD units) left between closed inner lips, so the warp mesh keeps distinct vertices."""
_EYES = ((36, 39, (37, 38, 40, 41)), (42, 45, (43, 44, 46, 47)))


def _corner_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """(a, b) of the similarity z -> a z + b (complex plane) taking src[0]->dst[0], src[1]->dst[1]."""
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    a = (d1 - d0) / (s1 - s0)
    return a, d0 - a * s0


def neutral_field(landmarks: np.ndarray, template: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Image-pixel (68, 2) float32 displacement that takes a face's expression back to neutral.

    Source photos often show an expression (posed surprise, happiness, anger). Left in place it
    would be part of the identity's rest state, unlabelled, and a frame-level detector would
    have to know each test person's neutral face to read the labelled AUs. The field moves the
    landmarks that expressions move to where a neutral ``template`` face (any 68-point mean
    shape; ``components.geometry.TEMPLATE_68``) has them, expressed in this face's canonical frame
    (so in units of its own inter-ocular distance):

    - brows (17-26): the template's positions relative to the eye centres;
    - eyelids (37, 38, 40, 41 and partners): the template's lids, carried by the similarity that
      maps the template's eye corners onto this face's (eye width and tilt are kept);
    - lips (48-67): the template's mouth relative to the nostril base (33), inner lips closed
      (each upper/lower inner-lip pair meets at its midpoint, 0.02 IOD apart);
    - lower jaw contour (3-13): follows the lower lip's vertical motion, fully at the chin, so
      an open jaw (AU26/27 in the photo) closes with the mouth.

    Eye corners, nose and the upper face contour keep the identity's shape. Only geometry is
    neutralised: texture the photo carries (teeth of a smile, existing wrinkles) stays.
    ``amount`` in [0, 1] blends from no change (0) to the full template (1).
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    _, basis = canonical_frame(landmarks)
    c = to_canonical(landmarks)
    t = to_canonical(template)
    target = c.copy()
    target[17:27] = t[17:27]
    for left, right, lids in _EYES:
        a, b = _corner_similarity(t[[left, right]], c[[left, right]])
        for i in lids:
            z = a * complex(*t[i]) + b
            target[i] = (z.real, z.imag)
    target[48:68] = c[33] + (t[48:68] - t[33])
    for up, low in _INNER_LIP_PAIRS:
        mid = (target[up] + target[low]) / 2.0
        target[up], target[low] = mid - (0.0, _REST_LIP_GAP / 2), mid + (0.0, _REST_LIP_GAP / 2)
    lip_dy = target[57, 1] - c[57, 1]
    for i, w in _JAW_FOLLOW.items():
        target[i, 1] = c[i, 1] + w * lip_dy
    return (amount * (target - c) @ basis).astype(np.float32)
