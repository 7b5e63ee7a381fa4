"""The AU catalogue: the one source of truth for Action Unit ids, FACS names, regions,
the 68-point landmarks each AU moves, and text descriptions (SEV-Net encodes these).

Landmark indices are 0-based in the iBUG 68-point layout:
jaw 0-16, right brow 17-21, left brow 22-26 (subject's right/left as seen by the camera:
17-21 are on the image left), nose bridge 27-30, nostrils 31-35, eyes 36-41 / 42-47,
outer lip 48-59, inner lip 60-67.

Each dataset declares its AU list against this catalogue in ``DATASET_AUS``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActionUnit",
    "CATALOGUE",
    "DATASET_AUS",
    "au_name",
    "au_column",
    "dataset_aus",
    "validate_au_list",
    "LEFT_RIGHT_LANDMARK_PERMUTATION",
    "BLENDSHAPE_AUS",
    "Evidence",
    "AU_EVIDENCE",
]


@dataclass(frozen=True)
class ActionUnit:
    """One FACS Action Unit."""

    number: int
    """FACS number, e.g. 12."""
    name: str
    """FACS name, e.g. 'Lip Corner Puller'."""
    region: str
    """Facial region: 'brow', 'eye', 'cheek', 'nose', 'mouth', 'chin', 'head'."""
    landmarks: tuple[int, ...]
    """0-based iBUG-68 indices of the landmarks this AU moves most."""
    description: str
    """Our own words: region, action, direction of motion, low and high intensity look."""
    bilateral: bool = True
    """True when the AU moves both sides of the face symmetrically (mirroring keeps it)."""


_BROW_INNER = (19, 20, 21, 22, 23, 24)
_BROW_OUTER = (17, 18, 25, 26)
_BROWS = tuple(range(17, 27))
_UPPER_LIDS = (37, 38, 43, 44)
_EYES = tuple(range(36, 48))
_LOWER_LIDS = (40, 41, 46, 47)
_NOSE = (29, 30, 31, 32, 33, 34, 35)
_MOUTH_CORNERS = (48, 54, 60, 64)
_UPPER_LIP = (49, 50, 51, 52, 53, 61, 62, 63)
_LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)
_CHIN = (6, 7, 8, 9, 10)

_AUS: tuple[ActionUnit, ...] = (
    ActionUnit(
        1, "Inner Brow Raiser", "brow", _BROW_INNER,
        "The inner ends of both eyebrows, above the nose, are pulled upward by the central "
        "frontalis muscle. The brows tilt into an oblique slant, higher in the middle, and the "
        "skin of the central forehead bunches into short horizontal wrinkles. At low intensity "
        "only the inner brow corners lift slightly and the forehead barely creases; at high "
        "intensity the inner brows rise well above their rest line, giving a worried or sad look "
        "with deep wrinkles across the middle of the forehead.",
    ),
    ActionUnit(
        2, "Outer Brow Raiser", "brow", _BROW_OUTER,
        "The outer halves of the eyebrows, towards the temples, are pulled upward by the lateral "
        "frontalis muscle. The brows arch and the upper eyelid fold above the outer eye corner "
        "stretches. At low intensity the lateral brow tails rise a little; at high intensity the "
        "outer brows lift strongly into a high arch, the lateral forehead shows horizontal "
        "wrinkles and the eyes look more open, as in surprise.",
    ),
    ActionUnit(
        4, "Brow Lowerer", "brow", _BROWS,
        "Both eyebrows are pulled down and drawn together towards the nose by the corrugator and "
        "depressor muscles. Vertical furrows appear between the brows at the glabella and the "
        "upper eyelids are pushed down. At low intensity the brows lower slightly and a faint "
        "crease forms between them; at high intensity the brows are pressed low and close, the "
        "glabella bulges with deep vertical lines and the eyes narrow into a frown.",
    ),
    ActionUnit(
        5, "Upper Lid Raiser", "eye", _UPPER_LIDS,
        "The upper eyelids are lifted upward by the levator palpebrae so that more of the eyeball "
        "and the white above the iris is exposed. The eye opening widens vertically. At low "
        "intensity the upper lids rise slightly and the eyes look alert; at high intensity the "
        "lids retract fully, the white shows above the iris and the eyes stare wide open, as in "
        "fear or surprise.",
    ),
    ActionUnit(
        6, "Cheek Raiser", "cheek", (1, 2, 14, 15, 40, 41, 46, 47, 48, 54),
        "The cheeks are lifted upward by the orbital part of the orbicularis oculi muscle around "
        "the eyes. The skin below the eyes bunches, the lower eyelids are pushed up and crow's "
        "feet wrinkles fan out from the outer eye corners. At low intensity the cheeks rise a "
        "little and the lower lids bulge; at high intensity the cheeks push high, the eyes "
        "narrow to slits and deep crow's feet appear, as in a genuine smile.",
    ),
    ActionUnit(
        7, "Lid Tightener", "eye", _LOWER_LIDS + _UPPER_LIDS,
        "The eyelids tighten by the palpebral orbicularis oculi, mostly the lower lid, which "
        "straightens and rises towards the pupil. The eye aperture narrows horizontally and "
        "vertically without the cheek lifting. At low intensity the lower lids tense and "
        "straighten slightly; at high intensity the lids are drawn tight, the opening narrows "
        "sharply and a bulge forms under the eye, giving a squinting, intent look.",
    ),
    ActionUnit(
        9, "Nose Wrinkler", "nose", (27, 28, 29, 31, 35, 39, 42),
        "The skin along the sides of the nose is pulled upward by the levator labii superioris "
        "alaeque nasi, wrinkling the nose bridge. The nostril wings lift and widen, the "
        "infraorbital furrow deepens and the brows may be dragged down at their inner ends. At "
        "low intensity faint wrinkles appear on the nose root; at high intensity the nose "
        "crinkles deeply, the upper lip lifts and the face shows disgust.",
    ),
    ActionUnit(
        10, "Upper Lip Raiser", "mouth", (31, 35, 48, 50, 51, 52, 54, 61, 62, 63),
        "The upper lip is drawn straight upward by the levator labii superioris, its centre "
        "rising towards the nose. The nasolabial furrow deepens and the upper teeth may show. "
        "At low intensity the upper lip lifts slightly and the furrow beside the nose "
        "deepens; at high intensity the upper lip rises into an angular shape, exposing the "
        "upper teeth and gums, and the nostrils widen, as in disgust.",
    ),
    ActionUnit(
        12, "Lip Corner Puller", "mouth", _MOUTH_CORNERS + (2, 14),
        "The corners of the lips are pulled back and upward, obliquely towards the cheekbones, "
        "by the zygomatic major muscle. The mouth widens and curves up, the nasolabial furrows "
        "deepen and the cheeks are pushed upward. At low intensity the lip corners turn up "
        "slightly into a faint smile; at high intensity the corners pull strongly up and out, "
        "the lips stretch thin over the teeth and the cheeks bunch, forming a broad smile.",
    ),
    ActionUnit(
        14, "Dimpler", "mouth", _MOUTH_CORNERS,
        "The lip corners are tightened and pulled slightly inward by the buccinator muscle, "
        "forming small dimples or bulges beside them. The mouth becomes narrower at the corners "
        "rather than wider. At low intensity a slight tightening of the corners and a faint "
        "dimple appear; at high intensity the corners are pressed deep into the cheeks with "
        "pronounced dimples, often in a contemptuous or suppressed smile.",
    ),
    ActionUnit(
        15, "Lip Corner Depressor", "mouth", _MOUTH_CORNERS + (5, 11),
        "The corners of the lips are pulled downward by the depressor anguli oris muscle. The "
        "lip line bends into a downward arc and the skin below the corners bulges or wrinkles. "
        "At low intensity the corners drop slightly and the mouth looks subtly sad; at high "
        "intensity the corners are drawn well down, the lower lip may stretch and the chin "
        "region shows bulges, giving a marked sad or disapproving expression.",
    ),
    ActionUnit(
        17, "Chin Raiser", "chin", _CHIN + _LOWER_LIP,
        "The chin boss and the lower lip are pushed upward by the mentalis muscle. The skin of "
        "the chin wrinkles into an orange-peel texture and the lower lip protrudes or presses "
        "against the upper lip, bending the mouth into an inverted U. At low intensity the chin "
        "lifts slightly with a faint dimpling; at high intensity the chin bunches strongly, the "
        "lower lip is pushed up hard and the mouth line arches, as in doubt or pouting.",
    ),
    ActionUnit(
        20, "Lip Stretcher", "mouth", _MOUTH_CORNERS + (4, 12),
        "The lip corners are pulled sideways, horizontally towards the ears, by the risorius "
        "muscle with the platysma. The mouth elongates and flattens, the lips thin, and the skin "
        "beside the corners stretches. At low intensity the mouth widens slightly without "
        "rising; at high intensity the lips are stretched wide and flat, the neck and lower "
        "face tense and the expression looks fearful.",
    ),
    ActionUnit(
        23, "Lip Tightener", "mouth", _UPPER_LIP + _LOWER_LIP + _MOUTH_CORNERS,
        "The lips are tightened and narrowed by the orbicularis oris, rolling slightly inward "
        "so that the red of the lips becomes thinner. The lip edges firm and the mouth may "
        "become smaller. At low intensity the lips tense and narrow slightly; at high intensity "
        "the lips are pressed into thin hard lines with a bulge above or below them, as in "
        "anger or determination.",
    ),
    ActionUnit(
        24, "Lip Pressor", "mouth", _UPPER_LIP + _LOWER_LIP,
        "The lips are pressed together vertically by the orbicularis oris, the upper and lower "
        "lip pushing against each other without rolling in. The lip line flattens and the skin "
        "around the mouth may bulge. At low intensity the closed lips press lightly together; "
        "at high intensity they are squeezed hard, narrowing and blanching, with bulges above "
        "and below the lips.",
    ),
    ActionUnit(
        25, "Lips Part", "mouth", (61, 62, 63, 65, 66, 67),
        "The lips separate so that the mouth opens slightly, the inner lip contours moving "
        "apart vertically, through relaxation of the mentalis or action of lip depressors, "
        "with the jaw not necessarily dropping. At low intensity a thin gap appears between "
        "the lips; at high intensity the lips are clearly apart, showing the teeth or the dark "
        "of the mouth between them.",
    ),
    ActionUnit(
        26, "Jaw Drop", "mouth", _CHIN + _LOWER_LIP + (3, 4, 12, 13),
        "The jaw is lowered by relaxing the masseter and temporalis, so the chin moves straight "
        "down and the mouth opens with the lips parted. The face lengthens below the nose. At "
        "low intensity the jaw drops a little and the lips just part; at high intensity the "
        "jaw hangs well open, the chin far below its rest position and the mouth cavity clearly "
        "visible, as in surprise.",
    ),
    ActionUnit(
        28, "Lip Suck", "mouth", _UPPER_LIP + _LOWER_LIP,
        "One or both lips are sucked inward between the teeth by strong orbicularis oris "
        "action, so the red of the lips disappears from view. The skin above and below the "
        "mouth stretches over the teeth. At low intensity the lips roll partly inward and "
        "thin; at high intensity the lips vanish into the mouth entirely and the area around "
        "it is taut.",
    ),
    ActionUnit(
        43, "Eyes Closed", "eye", _EYES,
        "Both eyes are closed by relaxing the levator palpebrae, the upper lids dropping down "
        "over the eyeballs until they meet the lower lids; together with AU45 (Blink) it covers "
        "any closure of the eyes. At low intensity the lids droop and the eyes look heavy; at "
        "high intensity the upper lids fully meet the lower lids, the iris hidden, the eyes "
        "closed for a sustained time or in a brief blink.",
    ),
    ActionUnit(
        45, "Blink", "eye", _EYES,
        "Both eyes close and reopen quickly, the upper lids sweeping down to the lower lids and "
        "back up within a fraction of a second; datasets that code AU45 count it as eye "
        "closure. At low intensity the lids only half lower in a brief flicker; at high "
        "intensity the lids meet fully for the frames of the blink before opening again.",
    ),
)

CATALOGUE: dict[int, ActionUnit] = {au.number: au for au in _AUS}
"""AU number → ActionUnit."""

DATASET_AUS: dict[str, tuple[int, ...]] = {
    # The 12 AUs coded in BP4D and used by JAA-Net / ME-GraphAU.
    "bp4d": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "bp4d+": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    # The 8 DISFA AUs used by the field's 3-fold protocol.
    "disfa": (1, 2, 4, 6, 9, 12, 25, 26),
    # ABAW AU detection challenge (2021+): 12 AUs.
    "affwild2": (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26),
    # ABAW 2020 (to-sequence paper 002): 8 AUs.
    "affwild2-2020": (1, 2, 4, 6, 12, 15, 20, 25),
    # The synthetic generator's default list (the demo): 8 AUs with visible geometry.
    "synthetic": (1, 2, 4, 6, 12, 15, 25, 26),
}
"""Dataset name → its AU list, in the order labels and logits use."""


def au_name(number: int) -> str:
    """'AU12' style name for an AU number."""
    return f"AU{number}"


def au_column(number: int, suffix: str = "") -> str:
    """OpenFace-style zero-padded column name, e.g. ``au_column(1, '_c') == 'AU01_c'``."""
    return f"AU{number:02d}{suffix}"


def validate_au_list(aus: "list[int] | tuple[int, ...]") -> tuple[int, ...]:
    """Check that every AU is in the catalogue and none repeats; return it as a tuple."""
    out = tuple(int(a) for a in aus)
    unknown = [a for a in out if a not in CATALOGUE]
    if unknown:
        raise ValueError(
            f"AU(s) {unknown} are not in the AU catalogue; known: {sorted(CATALOGUE)}"
        )
    if len(set(out)) != len(out):
        raise ValueError(f"AU list {list(out)} repeats an AU")
    if not out:
        raise ValueError("AU list is empty")
    return out


def dataset_aus(dataset: str) -> tuple[int, ...]:
    """The AU list a dataset declares, e.g. ``dataset_aus('disfa')``."""
    try:
        return DATASET_AUS[dataset]
    except KeyError:
        raise KeyError(
            f"unknown dataset {dataset!r}; known: {sorted(DATASET_AUS)}"
        ) from None


def _mirror_permutation() -> tuple[int, ...]:
    """Index permutation that maps iBUG-68 landmarks of a face to those of its mirror image."""
    pairs = [(0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
             (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
             (31, 35), (32, 34),
             (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
             (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),
             (60, 64), (61, 63), (65, 67)]
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


LEFT_RIGHT_LANDMARK_PERMUTATION: tuple[int, ...] = _mirror_permutation()
"""``flipped[i] = original[perm[i]]`` after a horizontal flip of image and x coordinates."""

for _au in _AUS:
    if not all(0 <= i < 68 for i in _au.landmarks):
        raise AssertionError(f"AU{_au.number}: landmark index outside 0..67")


@dataclass(frozen=True)
class Evidence:
    """How one AU is read from a face: weighted blendshapes and geometric features (weights sum to 1)."""

    blendshapes: tuple[tuple[str, float], ...]
    """(MediaPipe blendshape, weight): the score adds weight x blendshape (0-1)."""
    geometry: tuple[tuple[str, float, float], ...]
    """(feature of ``components.faces.au_geometry``, signed span, weight): the score adds weight x
    clip((feature - neutral) / span, 0, 1); the span's sign is the direction the AU moves it and
    its size the change at a FACS E (maximum) action, in inter-ocular distances."""
    facs: str
    """The FACS appearance change this encodes (Ekman, Friesen & Hager 2002, the AU's section)."""
    gate: "tuple[str, float] | None" = None
    """(feature, signed span): where this other movement shows, the geometric sources are scaled
    by 1 - its evidence (a movement that mimics the AU's geometry without being it)."""


def _lr(stem: str, weight: float) -> tuple[tuple[str, float], ...]:
    return ((f"{stem}Left", weight / 2), (f"{stem}Right", weight / 2))


AU_EVIDENCE: dict[int, Evidence] = {
    1: Evidence((("browInnerUp", 0.6),), (("inner_brow_height", 0.10, 0.4),),
                "inner brow corners raised, the brow's inner half higher than at rest"),
    2: Evidence(_lr("browOuterUp", 0.85), (("outer_brow_height", 0.10, 0.15),),
                "lateral brow pulled up, arching; more of the upper eye cover fold shows"),
    4: Evidence(_lr("browDown", 0.5), (("inner_brow_height", -0.10, 0.25), ("brow_distance", -0.06, 0.25)),
                "brows lowered and pulled together, the inner corners closer and lower"),
    5: Evidence(_lr("eyeWide", 0.4), (("eye_aperture", 0.05, 0.6),),
                "upper lid raised: the eye opening widens, white may show above the iris"),
    6: Evidence(_lr("cheekSquint", 0.5) + _lr("eyeSquint", 0.25) + _lr("mouthSmile", 0.25), (),
                "cheeks raised, lower-lid skin bunched, crow's feet"),
    7: Evidence(_lr("eyeSquint", 0.75), (("eye_aperture", -0.05, 0.25),),
                "lids tightened, the lower lid raised and straightened: the eye opening narrows"),
    9: Evidence(_lr("noseSneer", 0.6), (("nose_lip", -0.08, 0.25), ("nostril_width", 0.10, 0.15)),
                "nose skin pulled up: nostril wings raised and widened, infraorbital triangle up"),
    10: Evidence(_lr("mouthUpperUp", 0.6), (("nose_lip", -0.08, 0.4),),
                 "upper lip raised towards the nose, its centre straight up; nostrils widen"),
    12: Evidence(_lr("mouthSmile", 0.7), (("corner_height", 0.12, 0.2), ("mouth_width", 0.30, 0.1)),
                 "lip corners pulled obliquely up and back: the mouth widens and curves up"),
    14: Evidence(_lr("mouthDimple", 0.6), (("corner_depth", 0.12, 0.4),),
                 "lip corners tightened and drawn inwards, a dimple beside them",
                 gate=("corner_height", 0.12)),
    15: Evidence(_lr("mouthFrown", 0.6), (("corner_height", -0.08, 0.4),),
                 "lip corners pulled down: the lip line angles down at the corners"),
    17: Evidence((("mouthShrugLower", 0.75),), (("chin_height", -0.12, 0.25),),
                 "chin boss and lower lip pushed up: the chin-to-lip distance shortens",
                 gate=("lip_gap", 0.10)),
    20: Evidence(_lr("mouthStretch", 0.6), (("mouth_width", 0.30, 0.4),),
                 "lip corners pulled sideways: the mouth elongates and flattens, not up",
                 gate=("corner_height", 0.12)),
    23: Evidence(_lr("mouthPress", 0.3) + (("mouthRollLower", 0.15), ("mouthRollUpper", 0.15)),
                 (("mouth_width", -0.15, 0.2), ("upper_lip", -0.06, 0.1), ("lower_lip", -0.08, 0.1)),
                 "lips tightened: the red of the lips narrows, the mouth may get smaller",
                 gate=("lip_gap", 0.10)),
    24: Evidence(_lr("mouthPress", 0.6), (("upper_lip", -0.06, 0.2), ("lower_lip", -0.08, 0.2)),
                 "closed lips pressed together: the red of the lips thins, without rolling in",
                 gate=("lip_gap", 0.10)),
    25: Evidence((("jawOpen", 0.1),) + _lr("mouthLowerDown", 0.2), (("lip_gap", 0.25, 0.7),),
                 "lips part: the inner lip edges separate, teeth or mouth cavity may show"),
    26: Evidence((("jawOpen", 0.6),), (("jaw_drop", 0.25, 0.25), ("lip_gap", 0.30, 0.15)),
                 "jaw lowered: the chin drops and the lips part, the face lengthens below the nose"),
    28: Evidence((("mouthRollLower", 0.35), ("mouthRollUpper", 0.35)),
                 (("upper_lip", -0.09, 0.15), ("lower_lip", -0.13, 0.15)),
                 "lips sucked in between the teeth: the red of the lips disappears",
                 gate=("lip_gap", 0.10)),
    45: Evidence(_lr("eyeBlink", 0.5), (("eye_aperture", -0.06, 0.5),),
                 "eyes close and reopen: the upper lid meets the lower lid"),
}
"""AU → its evidence: the one table that maps a face's MediaPipe blendshapes and mesh geometry to
AU scores (``components.models.blendshape`` reads it; ``components.faces.au_geometry`` measures
the features). Score = sum of weighted blendshapes + sum of weighted geometric evidence, in [0, 1].

Each entry encodes the appearance change of the AU's section of the FACS manual (Ekman, Friesen
& Hager 2002, 'Facial Action Coding System: The Manual'; ``facs`` quotes it in short) as the mesh
distance it changes and the direction: AU1 and AU2 the inner and outer brow heights, AU4 the
brows lower and closer, AU5 (upper lid raiser), AU7 and AU45 the lid aperture, AU9 and AU10 the
nose-to-lip distance (and AU9 the nostril wings), AU12, AU15, AU20 the lip corners' height and
the mouth width, AU14 the corners drawn in (their depth), AU17 the chin-to-lip distance,
AU23/AU24/AU28 the red of the lips thinning, AU25 the lip gap, AU26 the jaw. Gates separate an AU
from a lookalike: AU20 and AU14 from the smile's corner rise, and the lip-closure AUs (17, 23,
24, 28) from parted lips (FACS scores them on closed lips). AU6 stays blendshapes only:
cheekSquint barely moves in this model (0.00 on the posed happy photo), so half of it is the lid
narrowing (eyeSquint) and the smile it nearly always comes with (AU6+12): AU6 without AU12 is
under-scored. Spans: the change at a strong posed action on ../shared/media's stills
(judgement, not fitted on AU labels). Blendshapes follow the ARKit definitions; left and right
are averaged, so a one-sided movement counts half. AUs absent here (e.g. AU43) are not answered."""


def _blendshape_only() -> dict[int, tuple[tuple[str, float], ...]]:
    out = {}
    for au, ev in AU_EVIDENCE.items():
        total = sum(w for _, w in ev.blendshapes)
        out[au] = tuple((name, w / total) for name, w in ev.blendshapes)
    return out


for _au, _ev in AU_EVIDENCE.items():
    _total = sum(w for _, w in _ev.blendshapes) + sum(w for _, _, w in _ev.geometry)
    if abs(_total - 1.0) > 1e-6 or _au not in CATALOGUE:
        raise AssertionError(f"AU{_au}: evidence weights sum to {_total}, not 1 (or not in the catalogue)")

BLENDSHAPE_AUS: dict[int, tuple[tuple[str, float], ...]] = _blendshape_only()
"""AU → (blendshape, weight): ``AU_EVIDENCE``'s blendshape sources alone, reweighted to sum to 1:
what the member answers from when a batch has no geometry (stores written before it, exports)."""
