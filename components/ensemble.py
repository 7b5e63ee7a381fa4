"""Ensembles: combination rules and the manifest (ensemble → serve / predict).

Rules, all chosen and weighted on validation subjects only:
- ``vote``: majority vote of member decisions (paper 001, §4.3: five models — the official split
  plus 4-fold cross-validation — vote); ties count as positive when at least half agree;
- ``mean``: weighted average of member probabilities, then per-AU thresholds;
- ``best_per_au``: for each AU, the member with the best validation F1 answers alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from components import storage

__all__ = ["Member", "EnsembleManifest", "combine", "MANIFEST_FILE", "MANIFEST_VERSION"]

MANIFEST_FILE = "ensemble.json"
MANIFEST_VERSION = 1
Rule = Literal["vote", "mean", "best_per_au"]


@dataclass
class Member:
    """One member model of an ensemble."""

    name: str
    checkpoint: str
    model_name: str
    input_spec: dict[str, Any]
    preprocess: dict[str, Any]
    thresholds: list[float]
    val_f1: list[float] = field(default_factory=list)
    trained_on: str = ""
    init: dict[str, Any] = field(default_factory=dict)
    """The weights the member's backbone started from, with their licence
    (``components.models.registry.init_provenance``; empty in manifests written before it)."""


@dataclass
class EnsembleManifest:
    """Everything serving and batch prediction need."""

    aus: list[int]
    members: list[Member]
    rule: Rule = "mean"
    weights: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    choice: list[int] = field(default_factory=list)
    """best_per_au: index of the member answering each AU."""
    provenance: dict[str, Any] = field(default_factory=dict)
    model_card: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION
    faces: dict[str, Any] = field(default_factory=dict)
    """The face pipeline the members' stores were built with (``FacePipelineConfig.crop_record``):
    what predict and Serve detect and align faces with. Empty in manifests written before it
    (``components.plan.recorded_faces`` then reads the members' checkpoints' record)."""

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        n = len(self.members)
        if not self.weights:
            self.weights = [1.0 / n] * n
        if len(self.weights) != n:
            raise ValueError(f"{len(self.weights)} weights for {n} members")
        if not self.thresholds:
            self.thresholds = [0.5] * len(self.aus)
        if self.rule == "best_per_au" and len(self.choice) != len(self.aus):
            raise ValueError("best_per_au needs one member index per AU in `choice`")

    def card(self) -> dict[str, Any]:
        """The model card every consumer shows (``GET /v1/models``, ``predict``'s model_card.json):
        the stored card plus what it must always say: the data the members were trained on and the
        weights each started from. A member started from weights not cleared for commercial use
        makes the whole ensemble so, stated in ``commercial_use`` and ``licence_notice`` (a member
        of a manifest written before members recorded it counts as unclear)."""
        card = dict(self.model_card)
        trained = sorted({m.trained_on for m in self.members if m.trained_on})
        card.setdefault("trained_on", trained)
        if "data_note" not in card:
            synthetic = any("synth" in d or d == "manifest" for d in trained)
            card["data_note"] = ("trained on facsflow's SYNTHETIC data: not a validated AU detector for real faces"
                                 if synthetic else f"trained on {', '.join(trained) or 'unrecorded data'}")
        unrecorded = {"init_weights": "unrecorded", "licence": "unknown", "commercial_use": "unclear"}
        inits = {m.name: m.init or unrecorded for m in self.members}
        card["init_weights"] = {name: {k: i.get(k, "") for k in ("init_weights", "licence", "commercial_use")}
                                for name, i in inits.items()}
        uses = {i.get("commercial_use", "unclear") for i in inits.values()}
        card["commercial_use"] = "no" if "no" in uses else "unclear" if "unclear" in uses else "yes"
        restricted = sorted(f"{n} ({i['init_weights']}: {i['licence']})" for n, i in inits.items()
                            if i.get("commercial_use") != "yes")
        if restricted:
            card["licence_notice"] = ("members started from weights not cleared for commercial use: "
                                      + "; ".join(restricted))
        return card

    def save(self, directory: str) -> str:
        uri = storage.join(directory, MANIFEST_FILE)
        storage.write_json(uri, asdict(self))
        return uri

    @classmethod
    def load(cls, directory: str) -> "EnsembleManifest":
        uri = directory if directory.endswith(".json") else storage.join(directory, MANIFEST_FILE)
        if not storage.exists(uri):
            raise FileNotFoundError(f"ensemble manifest not found: {uri} (run `facsflow ensemble` first)")
        data = json.loads(storage.read_text(uri))
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{uri}: manifest version {data.get('version')}, expected {MANIFEST_VERSION}")
        data["members"] = [Member(**m) for m in data["members"]]
        return cls(**data)


def combine(member_probs: Sequence[np.ndarray], rule: Rule, weights: Sequence[float],
            member_thresholds: Sequence[Sequence[float]], choice: Sequence[int] = ()) -> np.ndarray:
    """Combine member probabilities (each (N, n_AU)) into ensemble scores in [0, 1].

    For ``vote`` the score is the weighted share of members voting positive (threshold 0.5 on it
    gives the majority); for ``mean`` the weighted mean probability; for ``best_per_au`` the chosen
    member's probability per AU.
    """
    stack = np.stack([np.asarray(p, np.float64) for p in member_probs])  # (M, N, A)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    if rule == "vote":
        votes = stack >= np.asarray(member_thresholds, np.float64)[:, None, :]
        return np.tensordot(w, votes.astype(np.float64), axes=1)
    if rule == "mean":
        return np.tensordot(w, stack, axes=1)
    if rule == "best_per_au":
        idx = np.asarray(choice, int)
        return stack[idx, :, np.arange(stack.shape[2])].T
    raise ValueError(f"unknown rule {rule!r}; known: vote, mean, best_per_au")
