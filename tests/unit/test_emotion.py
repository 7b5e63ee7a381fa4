"""Emotion scores derived from AU probabilities: hand-computed means over the FACS prototypes."""

from __future__ import annotations

import pytest


def test_scores_are_prototype_means_over_the_predicted_aus() -> None:
    from components.emotion import emotion_scores

    aus = [1, 2, 4, 5, 6, 7, 9, 12, 15, 20, 23, 26]
    p = {"AU1": 0.2, "AU2": 0.4, "AU4": 0.6, "AU5": 0.8, "AU6": 0.9, "AU7": 0.1, "AU9": 0.3, "AU12": 0.7,
         "AU15": 0.5, "AU20": 0.0, "AU23": 1.0, "AU26": 0.6}
    s = emotion_scores(p, aus)
    assert s == pytest.approx({
        "happiness": (0.9 + 0.7) / 2,                                # 6 + 12
        "sadness": (0.2 + 0.6 + 0.5) / 3,                            # 1 + 4 + 15
        "surprise": (0.2 + 0.4 + 0.8 + 0.6) / 4,                     # 1 + 2 + 5 + 26
        "fear": (0.2 + 0.4 + 0.6 + 0.8 + 0.1 + 0.0 + 0.6) / 7,       # 1 + 2 + 4 + 5 + 7 + 20 + 26
        "anger": (0.6 + 0.8 + 0.1 + 1.0) / 4,                        # 4 + 5 + 7 + 23
        "disgust": (0.3 + 0.5) / 2})                                 # 9 + 15 (AU16 is in no AU list)
    assert "contempt" not in s  # unilateral: not expressible from bilateral probabilities


def test_an_emotion_needs_more_than_half_of_its_aus() -> None:
    from components.emotion import emotion_names, emotion_scores

    disfa = [1, 2, 4, 6, 9, 12, 25, 26]
    assert emotion_names(disfa) == ["happiness", "sadness", "surprise", "fear"]
    p = {f"AU{a}": 0.5 for a in disfa} | {"AU1": 0.1, "AU4": 0.3}
    s = emotion_scores(p, disfa)
    assert s["sadness"] == pytest.approx(0.2)  # 1 + 4 of 1 + 4 + 15
    assert s["surprise"] == pytest.approx((0.1 + 0.5 + 0.5) / 3)  # 1 + 2 + 26 of 1 + 2 + 5 + 26
    assert emotion_names([12]) == [] and emotion_scores({"AU12": 1.0}, [12]) == {}


def test_the_builtin_answers_every_emotion_from_all_of_its_aus() -> None:
    from components.builtin import BUILTIN_AUS
    from components.emotion import EMOTION_PROTOTYPES, emotion_names

    assert emotion_names(BUILTIN_AUS) == list(EMOTION_PROTOTYPES)
    assert all(set(proto) <= set(BUILTIN_AUS) for proto in EMOTION_PROTOTYPES.values())
