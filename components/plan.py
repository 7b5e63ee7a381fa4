"""The inference plan: everything an answer needs from an ensemble, worked out once.

Every entry point (``facsflow predict``, the ``Detector`` API, evaluation and ensemble selection,
the label teacher, Serve in both layouts) asks ``resolve_ensemble`` which ensemble answers (the
built-in when none is given) and ``plan_for`` what that ensemble needs: the face pipeline its
members' stores were built with, the temporal landmark difference steps, whether a member reads
blendshapes, which members answer stills and which need video, thresholds and smoothing. Nothing
downstream derives any of these again: it reads the plan.

The face pipeline a store was built with is recorded from preprocessing on (``store.json``
``faces``), copied into every checkpoint's ``preprocess`` and every manifest (``faces``), so a
trained ensemble is answered with the crops its members learnt from, whatever detector the
caller's default is. Checkpoints and manifests written before the record existed were built with
the old default, dlib's detector and landmarks (``LEGACY_FACES``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from components.ensemble import EnsembleManifest
from components.models.base import InputSpec

if TYPE_CHECKING:
    from components.faces.pipeline import FacePipelineConfig

__all__ = ["InferencePlan", "plan_for", "resolve_ensemble", "recorded_faces", "LEGACY_FACES",
           "SMOOTH_WINDOW", "thresholds_of"]

log = logging.getLogger(__name__)

SMOOTH_WINDOW = 5
"""Default centred moving-mean window over a video track's probabilities (paper 002 §3); 1: none."""

LEGACY_FACES: dict[str, Any] = {"detector": "dlib", "landmarker": "dlib"}
"""The face pipeline of stores, checkpoints and manifests that predate its record: they were
preprocessed with the default of their time, dlib's HOG detector and dlib's 68 landmarks."""


def thresholds_of(manifest: EnsembleManifest) -> np.ndarray:
    """Per-AU occurrence thresholds of the ensemble answer ('vote' already gives 0/1 majorities)."""
    return np.asarray(manifest.thresholds if manifest.rule != "vote" else [0.5] * len(manifest.aus))


def recorded_faces(manifest: EnsembleManifest) -> dict[str, Any]:
    """The face pipeline fields (``FacePipelineConfig.crop_record``) the manifest's members were
    built with: the manifest's own record, else its members' checkpoints' (``preprocess.faces``),
    else ``LEGACY_FACES``. Members recorded with different pipelines: the first member's, with
    a warning (each member is answered with one pipeline's crops)."""
    if manifest.faces:
        return dict(manifest.faces)
    records = [dict(m.preprocess.get("faces") or LEGACY_FACES) for m in manifest.members]
    differ = [i for i, r in enumerate(records) if r != records[0]]
    if differ:
        log.warning("ensemble members were preprocessed with different face pipelines (%s vs %s): answering "
                    "with the first member's", records[0], records[differ[0]])
    return records[0]


@dataclass(frozen=True)
class InferencePlan:
    """What one ensemble needs from the orchestration (``components.inference``), made once by
    ``plan_for``; Serve keeps one per manifest and swaps it whole on a rollout."""

    manifest: EnsembleManifest
    """The ensemble: members, rule, weights, thresholds."""
    directory: str
    """Where the manifest was read from ("" when built in memory)."""
    faces: dict[str, Any]
    """``FacePipelineConfig`` fields: the members' crops as their stores were built (or the
    caller's overrides, a policy or device among them), ``align_size`` the largest member's,
    MediaPipe's landmarker where a member reads blendshapes."""
    steps: tuple[int, ...]
    """Landmark difference steps computed for videos: every member's, and 1 for the motion summary."""
    blendshapes: bool
    """Whether a member reads MediaPipe blendshapes."""
    image_use: tuple[int, ...]
    """Members that answer still images (those that need no video)."""
    video_use: tuple[int, ...]
    """Members that answer videos (all of them)."""
    smooth_window: int = SMOOTH_WINDOW
    """Frames of the centred moving mean over video probabilities (odd; 1: none)."""
    builtin: bool = False
    """Whether this is the built-in detector (no ensemble was given)."""

    @property
    def aus(self) -> list[int]:
        return list(self.manifest.aus)

    @property
    def align_size(self) -> int:
        return int(self.faces["align_size"])

    @property
    def specs(self) -> list[InputSpec]:
        """Each member's input declaration, in manifest order."""
        return [InputSpec.from_dict(m.input_spec) if m.input_spec else InputSpec() for m in self.manifest.members]

    @property
    def member_steps(self) -> tuple[int, ...]:
        """The members' own difference steps (no motion summary): what a store must hold."""
        return tuple(sorted({int(s) for spec in self.specs for s in spec.diff_steps}))

    @property
    def window(self) -> int:
        """The longest frame window a member reads (0: none): past frames a causal answer carries."""
        return max([s.window for s in self.specs] + [0])

    @property
    def thresholds(self) -> np.ndarray:
        """Per-AU occurrence thresholds of the answer."""
        return thresholds_of(self.manifest)

    def use(self, video: bool) -> tuple[int, ...]:
        """The members that answer a video (every one) or a still (those that need no video)."""
        use = self.video_use if video else self.image_use
        if not use:
            raise ValueError("no member of this ensemble answers still images (all need video)")
        return use

    def face_config(self, **overrides: Any) -> "FacePipelineConfig":
        """The face pipeline for this plan, with ``overrides`` (a policy, a device) on top; the
        crop size stays the members', and MediaPipe's landmarker where a member reads blendshapes."""
        from components.faces.pipeline import FacePipelineConfig

        fields = {**self.faces, **overrides, "align_size": self.align_size}
        if self.blendshapes:
            fields["landmarker"] = "mediapipe"
        return FacePipelineConfig(**fields)


def plan_for(manifest: EnsembleManifest, directory: str = "", faces: "Mapping[str, Any] | None" = None,
             smooth_window: "int | None" = None, builtin: bool = False) -> InferencePlan:
    """The plan of ``manifest``. ``faces``: FacePipelineConfig fields the caller sets over the
    recorded ones (a ``--detector`` flag); ``align_size`` is always the members', and a member
    that reads blendshapes always gets MediaPipe's landmarker (only it gives them)."""
    from components.faces.pipeline import FacePipelineConfig

    specs = [InputSpec.from_dict(m.input_spec) if m.input_spec else InputSpec() for m in manifest.members]
    blendshapes = any(s.blendshapes for s in specs)
    fields = {**recorded_faces(manifest), **dict(faces or {})}
    fields["align_size"] = max(int(m.preprocess.get("image_size", 112)) for m in manifest.members)
    if blendshapes and fields.get("landmarker") != "mediapipe":
        fields["landmarker"] = "mediapipe"
    known = {f.name for f in dataclasses.fields(FacePipelineConfig)}
    config = FacePipelineConfig(**{k: v for k, v in fields.items() if k in known})
    window = SMOOTH_WINDOW if smooth_window is None else int(smooth_window)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smooth_window must be a positive odd number, got {smooth_window}")
    return InferencePlan(
        manifest=manifest, directory=directory, faces=dataclasses.asdict(config),
        steps=tuple(sorted({1} | {int(s) for spec in specs for s in spec.diff_steps})),
        blendshapes=blendshapes,
        image_use=tuple(i for i, s in enumerate(specs) if not s.needs_video),
        video_use=tuple(range(len(specs))), smooth_window=window, builtin=builtin)


def resolve_ensemble(ensemble: "str | None" = None, faces: "Mapping[str, Any] | None" = None,
                     smooth_window: "int | None" = None) -> InferencePlan:
    """The plan of the ensemble folder or URI ``ensemble``; the built-in detector
    (``components.builtin``) when it is empty or None. The one place that decides that an entry
    point without an ensemble answers with the built-in."""
    builtin = not ensemble
    if builtin:
        from components.builtin import builtin_ensemble_dir

        ensemble = builtin_ensemble_dir()
    manifest = EnsembleManifest.load(str(ensemble))
    return plan_for(manifest, str(ensemble), faces, smooth_window, builtin)

