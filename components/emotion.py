"""Emotion scores derived from AU probabilities by FACS prototype rules (no model of their own).

Each basic emotion has a prototype AU combination, as EMFACS (Friesen & Ekman 1983, EMFACS-7)
and the FACS Investigator's Guide's table of emotion predictions (Ekman, Friesen & Hager 2002)
list them and Matsumoto & Ekman (2008, "Facial expression analysis", Scholarpedia 3(5):4237)
summarise them:

- happiness: 6 + 12
- sadness: 1 + 4 + 15
- surprise: 1 + 2 + 5B + 26 (the 'B' intensity of AU5 cannot be asked of a probability: AU5 is used)
- fear: 1 + 2 + 4 + 5 + 7 + 20 + 26
- anger: 4 + 5 + 7 + 23
- disgust: 9 + 15 + 16, here 9 + 15: no facsflow AU list has AU16 (lower lip depressor; it is not in
  ``components.au.CATALOGUE``)

Contempt (R12A + R14A: lip corner pulled and dimpled on one side only) is left out: ensemble
answers are bilateral AU probabilities, and a one-sided movement cannot be told from them.

Rule: an emotion's score is the mean of the occurrence probabilities of its prototype AUs, over
those the ensemble predicts; it is given only when the ensemble predicts more than half of them
(``MIN_COVERAGE``): a DISFA ensemble (AUs 1, 2, 4, 6, 9, 12, 25, 26) answers happiness (6, 12),
sadness (1, 4), surprise (1, 2, 26) and fear (1, 2, 4, 26) but not anger (4) nor disgust (9);
the built-in answers all six from every prototype AU. A score near 1 means the prototype is
present; it is a derived summary, not a calibrated probability of the emotion, and
scores from ensembles with different AU lists are not comparable.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

__all__ = ["EMOTION_PROTOTYPES", "MIN_COVERAGE", "emotion_names", "emotion_column", "emotion_scores"]

EMOTION_PROTOTYPES: dict[str, tuple[int, ...]] = {
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "anger": (4, 5, 7, 23),
    "disgust": (9, 15),
}
"""Emotion → prototype AUs (EMFACS / FACS Investigator's Guide; see the module docstring)."""

MIN_COVERAGE = 0.5
"""An emotion is scored only when the ensemble predicts more than this fraction of its prototype AUs."""


def emotion_column(name: str) -> str:
    """Table column of an emotion score, e.g. ``emotion_happiness``."""
    return f"emotion_{name}"


def _used(aus: Sequence[int]) -> dict[str, list[int]]:
    have = {int(a) for a in aus}
    out = {}
    for name, proto in EMOTION_PROTOTYPES.items():
        used = [a for a in proto if a in have]
        if len(used) > MIN_COVERAGE * len(proto):
            out[name] = used
    return out


def emotion_names(aus: Sequence[int]) -> list[str]:
    """Emotions an ensemble predicting ``aus`` answers, in ``EMOTION_PROTOTYPES`` order.

    >>> emotion_names([1, 2, 4, 6, 9, 12, 25, 26])
    ['happiness', 'sadness', 'surprise', 'fear']
    """
    return list(_used(aus))


def emotion_scores(probs: Mapping[str, float], aus: Sequence[int]) -> dict[str, float]:
    """Emotion → score from one face's AU probabilities (keys ``'AU<n>'`` as in face answers).

    >>> emotion_scores({"AU6": 0.5, "AU12": 0.9, "AU1": 0.1, "AU4": 0.2, "AU15": 0.3}, [1, 4, 6, 12, 15])
    {'happiness': 0.7, 'sadness': 0.2}
    """
    return {name: round(math.fsum(float(probs[f"AU{a}"]) for a in used) / len(used), 6)
            for name, used in _used(aus).items()}

