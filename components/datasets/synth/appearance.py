"""Appearance changes that landmark motion alone cannot make: furrows, the mouth cavity, and
hand-like occluders (synthetic generator).

FACS scores AUs by appearance changes as much as by motion (the catalogue descriptions name
them: forehead wrinkles for AU1/2, glabellar furrows for AU4, crow's feet for AU6, nose
wrinkles for AU9, the nasolabial furrow for AU10/12, the chin boss for AU17, the dark of the
mouth for AU25/26). A piecewise-affine warp only moves pixels, so these are painted as soft
darkening strokes whose opacity grows with intensity, placed relative to the displaced
landmarks in the face's canonical frame (``synth_fields.canonical_frame``).
"""

from __future__ import annotations

import cv2
import numpy as np

from components.datasets.synth.fields import canonical_frame

__all__ = ["FURROWS", "paint_furrows", "paint_mouth_cavity", "Hand", "sample_hand", "paint_hand",
           "region_centre", "skin_colour"]

# Canonical (IOD units, y down) polylines per AU, relative to an anchor landmark. Each entry is
# (anchor landmark, list of polylines); polylines on the image-left side are mirrored about the
# face midline for the right side when the anchor has a partner.
_Stroke = tuple[int, tuple[tuple[float, float], ...]]
FURROWS: dict[int, tuple[_Stroke, ...]] = {
    # AU1: short horizontal creases over the centre of the forehead.
    1: tuple((21, ((-0.05, -dy), (0.1, -dy - 0.02), (0.25, -dy))) for dy in (0.22, 0.34, 0.46)),
    # AU2: creases above the lateral brow.
    2: tuple((18, ((-0.15, -dy + 0.03), (0.0, -dy), (0.15, -dy + 0.02))) for dy in (0.2, 0.3)),
    # AU4: vertical furrows at the glabella, between the inner brow ends.
    4: ((21, ((0.03, -0.08), (0.04, 0.06))), (21, ((0.1, -0.05), (0.11, 0.05)))),
    # AU6: crow's feet fanning out from the outer eye corner.
    6: tuple((36, ((-0.08, dy * 0.3), (-0.22, dy))) for dy in (-0.1, 0.0, 0.1)),
    # AU9: wrinkles across the nose root.
    9: tuple((28, ((-0.09, dy), (0.0, dy - 0.015), (0.09, dy))) for dy in (-0.1, -0.03, 0.04)),
    # AU10/AU12: the nasolabial furrow from the nose wing past the lip corner.
    12: ((31, ((-0.08, -0.02), (-0.17, 0.2), (-0.2, 0.42))),),
    # AU17: the mentolabial sulcus bulging below the lower lip.
    17: ((57, ((-0.16, 0.1), (0.0, 0.14), (0.16, 0.1))),),
}
"""AU → strokes (anchor landmark, canonical offsets) painted as soft darkening."""

# The furrow an AU deepens, and by how much relative to its own strokes.
_FURROW_SOURCES: dict[int, tuple[tuple[int, float], ...]] = {
    1: ((1, 1.0),), 2: ((2, 1.0),), 4: ((4, 1.0), (9, 0.4)), 6: ((6, 1.0), (12, 0.4)),
    9: ((9, 1.0),), 12: ((12, 1.0), (10, 0.8), (9, 0.5), (6, 0.3)), 17: ((17, 1.0),),
}
_MAX_DARKENING = 0.2
_MIRROR_ANCHOR = {21: 22, 18: 25, 36: 45, 31: 35}
# Inner-lip opening (IOD units) below which a source mouth counts as closed.
_CLOSED_GAP = 0.03


def _strokes_px(lm: np.ndarray, basis: np.ndarray, au: int) -> list[np.ndarray]:
    out = []
    for anchor, offsets in FURROWS[au]:
        off = np.asarray(offsets, dtype=np.float64)
        out.append(lm[anchor] + off @ basis)
        if anchor in _MIRROR_ANCHOR:
            out.append(lm[_MIRROR_ANCHOR[anchor]] + (off * (-1.0, 1.0)) @ basis)
    return out


def paint_furrows(image: np.ndarray, landmarks: np.ndarray, levels: dict[int, float]) -> np.ndarray:
    """Darken furrows for the AUs in ``levels`` (continuous intensity 0-5); returns a new image.

    Opacity is ``0.2 * v / 5`` of the strongest contributing AU: invisible at 0, faint at A.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    _, basis = canonical_frame(lm)
    iod = float(np.linalg.norm(basis[0]))
    h, w = image.shape[:2]
    mask = None
    thickness = max(1, int(round(iod / 28)))
    for furrow, sources in _FURROW_SOURCES.items():
        strength = max((levels.get(au, 0.0) * k for au, k in sources), default=0.0)
        if strength <= 0.05:
            continue
        if mask is None:
            mask = np.zeros((h, w), np.float32)
        alpha = float(_MAX_DARKENING * min(strength, 5.0) / 5.0)
        for pts in _strokes_px(lm, basis, furrow):
            poly = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(mask, [poly], False, alpha, thickness, cv2.LINE_AA, shift=4)
    if mask is None:
        return image
    k = max(3, int(iod / 10) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    out = image.astype(np.float32) * (1.0 - mask[..., None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def paint_mouth_cavity(image: np.ndarray, landmarks: np.ndarray, rest_gap: float) -> np.ndarray:
    """Paint the dark of the mouth (and, for a closed source mouth, upper teeth) as the lips part.

    ``rest_gap`` is the inner-lip opening (IOD units) of the unanimated face. Only the newly
    opened part is painted: a band just above the lowered inner lower lip, as tall as the
    opening added to the rest gap, so a source photo's own open mouth and teeth stay visible.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    _, basis = canonical_frame(lm)
    iod = float(np.linalg.norm(basis[0]))
    opening = lm[66] - lm[62]
    gap = float(np.linalg.norm(opening)) / iod
    closed_at_rest = rest_gap < _CLOSED_GAP
    new = gap - (0.0 if closed_at_rest else rest_gap)
    alpha = float(np.clip((new - 0.01) / 0.04, 0.0, 1.0)) * 0.9
    if alpha <= 0.0:
        return image
    inner = lm[60:68]
    x0, y0 = np.floor(inner.min(0)).astype(int) - 3
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 4
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return image
    roi = image[y0:y1, x0:x1].astype(np.float32)
    shift = np.array([x0, y0])

    def fill(poly: np.ndarray) -> np.ndarray:
        m = np.zeros(roi.shape[:2], np.float32)
        cv2.fillPoly(m, [np.round((poly - shift) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        return m

    cavity = fill(inner)
    lower = lm[[60, 67, 66, 65, 64]]
    up = -opening / max(np.linalg.norm(opening), 1e-6)
    cavity *= fill(np.concatenate([lower, (lower + up * new * iod)[::-1]]))
    teeth = np.zeros_like(cavity)
    if closed_at_rest:
        upper = lm[[60, 61, 62, 63, 64]]
        teeth = fill(np.concatenate([upper, (upper + opening * 0.22)[::-1]])) * cavity
    cavity = cv2.GaussianBlur(cavity, (3, 3), 0) * alpha
    teeth = cv2.GaussianBlur(teeth, (3, 3), 0) * alpha * 0.6
    dark = np.array([45, 20, 25], np.float32)
    white = np.array([215, 205, 190], np.float32)
    roi = roi * (1 - cavity[..., None]) + dark * cavity[..., None]
    roi = roi * (1 - teeth[..., None]) + white * teeth[..., None]
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    return out


def skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Median RGB (3,) float32 of both cheeks (between jaw, nose wing and lower eyelid)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    lm = np.asarray(landmarks)
    for idx in ((1, 2, 3, 48, 31, 40), (15, 14, 13, 54, 35, 47)):
        cv2.fillPoly(mask, [np.round(lm[list(idx)]).astype(np.int32)], 1)
    pixels = image[mask > 0]
    if len(pixels) == 0:
        return np.array([180, 140, 120], np.float32)
    return np.median(pixels, axis=0).astype(np.float32)


def region_centre(landmarks: np.ndarray, region: str) -> np.ndarray:
    """Centre (2,) in pixels of a named face region (``synth_timeline.OCCLUSION_REGIONS``)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    _, basis = canonical_frame(lm)
    centres = {
        "mouth": lambda: lm[48:68].mean(0),
        "eyes": lambda: lm[36:48].mean(0),
        "left_cheek": lambda: lm[[1, 2, 3, 31, 48, 41]].mean(0),
        "right_cheek": lambda: lm[[15, 14, 13, 35, 54, 46]].mean(0),
        "nose": lambda: lm[[28, 29, 30, 33]].mean(0),
        "chin": lambda: lm[[7, 8, 9, 57]].mean(0),
        "forehead": lambda: lm[17:27].mean(0) - 0.45 * basis[1],
    }
    try:
        return centres[region]()
    except KeyError:
        raise KeyError(f"unknown occlusion region {region!r}; known: {sorted(centres)}") from None


class Hand:
    """A hand-like occluder: palm, four fingers, a thumb and a forearm leaving the frame."""

    def __init__(self, size: float, angle: float, colour: np.ndarray, offset: np.ndarray,
                 spread: float) -> None:
        self.size = float(size)
        """Palm width in pixels."""
        self.angle = float(angle)
        """Direction the fingers point, radians from image-up, clockwise."""
        self.colour = np.asarray(colour, np.float32)
        self.offset = np.asarray(offset, np.float64)
        """Palm-centre offset from the region centre, pixels."""
        self.spread = float(spread)
        """Finger spread factor (1 = together)."""

    def mask(self, shape: tuple[int, int], centre: np.ndarray) -> np.ndarray:
        """Soft float32 coverage mask (H, W) in [0, 1] with the palm centre at ``centre``."""
        h, w = shape
        s = self.size
        c, si = np.cos(self.angle), np.sin(self.angle)
        up = np.array([si, -c])
        right = np.array([c, si])

        def at(x: float, y: float) -> tuple[int, int]:
            p = centre + self.offset + x * s * right - y * s * up
            return int(round(p[0] * 16)), int(round(p[1] * 16))

        m = np.zeros((h, w), np.float32)
        pc = at(0.0, 0.0)
        axes = (int(0.5 * s * 16), int(0.58 * s * 16))
        cv2.ellipse(m, pc, axes, np.degrees(self.angle), 0, 360, 1.0, -1, cv2.LINE_AA, shift=4)
        finger_w = max(2, int(round(0.2 * s)))
        for i, (x, length) in enumerate(zip((-0.33, -0.11, 0.11, 0.33), (0.55, 0.68, 0.65, 0.5))):
            x2 = x * self.spread * 1.15
            cv2.line(m, at(x, -0.35), at(x2, -0.35 - length), 1.0, finger_w, cv2.LINE_AA, shift=4)
        cv2.line(m, at(0.42, 0.1), at(0.8, -0.25), 1.0, int(finger_w * 1.15), cv2.LINE_AA, shift=4)
        forearm = np.array([at(-0.38, 0.4), at(0.38, 0.4), at(0.45, 4.0), at(-0.45, 4.0)], np.int32)
        cv2.fillPoly(m, [forearm], 1.0, cv2.LINE_AA, shift=4)
        k = max(3, int(s / 14) | 1)
        return cv2.GaussianBlur(m, (k, k), 0)


def sample_hand(rng: np.random.Generator, iod: float, skin: np.ndarray) -> Hand:
    """A random hand about one inter-ocular distance wide, skin-coloured from ``skin``."""
    tone = np.clip(skin * rng.uniform(0.85, 1.12) * rng.uniform(0.95, 1.05, 3), 20, 250)
    return Hand(size=iod * rng.uniform(0.95, 1.3), angle=rng.uniform(-1.0, 1.0), colour=tone,
                offset=rng.normal(0.0, 0.08 * iod, 2), spread=rng.uniform(0.9, 1.3))


def paint_hand(image: np.ndarray, hand: Hand, centre: np.ndarray) -> np.ndarray:
    """``image`` (float32 or uint8, H x W x 3) with ``hand`` blended over it; float32 result."""
    img = image.astype(np.float32, copy=True)
    m = hand.mask(image.shape[:2], np.asarray(centre, np.float64))
    x, y, w, h = cv2.boundingRect((m > 0).astype(np.uint8))
    if w == 0 or h == 0:
        return img
    m = m[y:y + h, x:x + w]
    # Light falls off towards the wrist and the finger edges: a mild shading gradient.
    shade = 0.88 + 0.12 * cv2.GaussianBlur(m, (0, 0), max(1.0, hand.size / 6))
    colour = hand.colour[None, None, :] * shade[..., None]
    roi = img[y:y + h, x:x + w]
    img[y:y + h, x:x + w] = roi * (1.0 - m[..., None]) + colour * m[..., None]
    return img
