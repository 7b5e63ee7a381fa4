"""The synthetic AU video generator: real face photos in, labelled AU videos out, written in
the on-disk layout of BP4D, DISFA, Aff-Wild2 or a manifest CSV.

No AU-labelled data set can be downloaded here, so ``generate`` makes one that a model can
learn from. Each face found in the source photos (default: scikit-image's astronaut) is an
*identity*; shape and colour morphs of it (``synth_render.Look``) make *pseudo-subjects* that
all share the identity's *group*, so subject-wise folds must split by group. Videos animate
AUs as landmark displacement fields (``synth_fields``) with a piecewise-affine warp
(``synth_warp``), following onset-apex-offset time courses drawn from prototype expressions
(``synth_timeline``), with head-pose jitter, lighting change, sensor noise, JPEG compression
and hand occluders (``synth_render``, ``synth_appearance``).

What the labels mean: **an AU label says the generator added that AU.** Source photos may
already show an expression (the shared test photos are posed surprise, happiness and anger).
By default (``neutralise=1``) its geometry is taken back to neutral first: brows, lids, lips and
jaw are warped to a neutral template's positions (``synth_fields.neutral_field``), so a
frame-level detector need not know each test person's rest face. Texture the photo carries
(the teeth of a smile, its wrinkles) stays and is part of the identity; with ``neutralise=0``
the whole expression stays, unlabelled. The configured AU list is exactly what is rendered,
so no unlabelled motion is added.

Side files in ``<out>/synth_meta/``: ``subjects.csv`` (subject, group, source photo, face index,
morph and colour parameters), ``groups.csv`` (subject or video → group, named as the layout's
adapter names its units: pass it as the adapter's ``groups=`` option), ``videos.csv`` (every layout video with its subject, group,
split and nuisance parameters), ``occlusions.csv`` (subject, video, frame, occluded 0/1,
region, path; one row per frame with pixels), ``landmarks.npz`` (true 68 landmarks per frame in
the written pixels' coordinates, NaN for frames without pixels; key ``subject/video``), ``config.yaml``, ``summary.json``.

Output for a seed is deterministic (same label files and side files byte for byte). The
generator is single-process; rendering videos in parallel (one task per pseudo-subject) is
a straightforward later step.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from components.au import au_name, validate_au_list
from components.configuration import save_yaml
from components.datasets.synth.check import train_split_problems
from components.datasets.synth.layouts import LAYOUTS, LayoutWriter, VideoPlan
from components.datasets.synth.render import (
    RENDER_AUS, FaceRig, Look, mirror, neutralise, render_frame, sample_look, sample_nuisance, subject_morph,
)
from components.datasets.synth.face_finder import dlib_face_finder
from components.datasets.synth.sources import FaceFinder, SourceError, SourceFace, find_faces, read_photos
from components.datasets.synth.timeline import (
    intensity_levels, sample_intensities, sample_occlusion, sample_unknown_cells, sample_unknown_frames,
)

__all__ = ["SynthConfig", "SynthSummary", "OutputDirError", "SourceError", "generate", "resolve_aus"]

Layout = Literal["bp4d", "disfa", "affwild2", "manifest"]
META = "synth_meta"


class OutputDirError(ValueError):
    """The output folder cannot be written as asked (not empty, not a folder)."""


@dataclass
class SynthConfig:
    """What ``facsflow synth`` generates."""

    out: str = ""
    """Output folder (created; must be empty unless overwrite is set)."""
    layout: Layout = "manifest"
    """On-disk layout to write: bp4d, disfa, affwild2 or manifest."""
    faces: str | None = None
    """Folder of face photos (each face found is one identity); empty: scikit-image's astronaut."""
    seed: int = 0
    """Random seed; the same seed gives the same data."""
    subjects_per_identity: int = 0
    """Pseudo-subjects (shape and colour morphs) made from each source face; 0: automatic
    (``auto_subjects_per_identity``: at least 6 subjects in all so that every fold of the
    layout's split keeps validation subjects, 4 per face when there is room)."""
    videos_per_subject: int = 2
    """Videos per pseudo-subject (BP4D tasks T1..; DISFA joins them into one recording)."""
    frames_per_video: int = 40
    """Frames per video."""
    frame_size: int = 256
    """Side of the square frames in pixels (Aff-Wild2 crops are always 112)."""
    aus: tuple[int, ...] = ()
    """AUs to animate and label; empty: the layout's list (bp4d 12, disfa 12, affwild2 12, manifest 8)."""
    fps: float = 0.0
    """Frame rate; 0: the layout's (bp4d 25, disfa 20, affwild2 30, manifest 25)."""
    occlusion_rate: float = 0.3
    """Probability that a video has one hand-over-face episode."""
    unknown_rate: float = 0.03
    """Fraction of frames (and, where the layout has them, cells) labelled unknown."""
    max_identities: int = 0
    """Use at most this many source faces (0: all found)."""
    min_face_score: float = 0.5
    """Smallest dlib detector score of a usable source face."""
    neutralise: float = 1.0
    """How far each source face's own expression is taken back to neutral before AUs are added
    (brows, lids, lips and jaw moved to a neutral template; ``synth_render.neutralise``):
    1 fully, 0 not at all (the photo's expression stays in the identity's unlabelled rest state)."""
    overwrite: bool = False
    """Replace an existing output folder made by this generator."""

    def __post_init__(self) -> None:
        if not str(self.out).strip():
            raise ValueError("out: an output folder is required")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: {self.layout!r} is not one of {sorted(LAYOUTS)}")
        if self.faces is not None and not str(self.faces).strip():
            self.faces = None
        zero_ok = ("max_identities", "seed", "subjects_per_identity")
        for name in ("subjects_per_identity", "videos_per_subject", "max_identities", "seed"):
            if getattr(self, name) < (0 if name in zero_ok else 1):
                raise ValueError(f"{name}: must be >= {0 if name in zero_ok else 1}, "
                                 f"got {getattr(self, name)}")
        limit = LAYOUTS[self.layout].max_videos
        if limit and self.videos_per_subject > limit:
            raise ValueError(f"videos_per_subject: {self.layout} has at most {limit} per subject, "
                             f"got {self.videos_per_subject}")
        if self.frames_per_video < 2:
            raise ValueError(f"frames_per_video: must be >= 2, got {self.frames_per_video}")
        if not 64 <= self.frame_size <= 2048:
            raise ValueError(f"frame_size: must be in [64, 2048], got {self.frame_size}")
        if self.fps < 0:
            raise ValueError(f"fps: must be > 0 (or 0 for the layout default), got {self.fps}")
        for name in ("occlusion_rate", "unknown_rate", "neutralise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        self.aus = resolve_aus(self.layout, self.aus)

    @property
    def frame_rate(self) -> float:
        """The effective fps (the layout default when ``fps`` is 0)."""
        return self.fps or LAYOUTS[self.layout].default_fps


def resolve_aus(layout: str, aus: "tuple[int, ...] | list[int]") -> tuple[int, ...]:
    """The AU list to render for ``layout``: checked against the catalogue and the layout's columns."""
    writer = LAYOUTS[layout]
    out = validate_au_list(aus) if aus else writer.default_aus
    if writer.fixed_columns is not None:
        extra = [a for a in out if a not in writer.fixed_columns]
        if extra:
            raise ValueError(f"aus: {layout} label files have no column for AU(s) {extra}; "
                             f"its AUs are {list(writer.fixed_columns)}")
    return out


@dataclass
class SynthSummary:
    """What ``generate`` wrote."""

    out: str
    """Output folder."""
    layout: str
    """Layout written."""
    aus: tuple[int, ...]
    """AUs animated and labelled."""
    identities: int
    """Source faces used (= identity groups)."""
    subjects: int
    """Pseudo-subjects."""
    videos: int
    """Videos in the layout's sense."""
    frames: int
    """Frames with pixels on disk."""
    occluded_frames: int
    """Frames with a hand occluder."""
    base_rates: dict[str, float]
    """Occurrence rate per AU over frames with known labels."""
    skipped: list[str] = field(default_factory=list)
    """Photos or faces not used, with the reason."""
    labels: str = ""
    """Where the label files are."""
    meta_dir: str = ""
    """Folder of the side files."""
    seconds: float = 0.0
    """Wall time of the run."""
    train_problems: list[str] = field(default_factory=list)
    """Why ``facsflow train`` with its default split could not use this set (empty: it can);
    ``synth_check.train_split_problems``."""


AUTO_MIN_SUBJECTS = 6
"""Fewest subjects the automatic ``subjects_per_identity`` aims for: with 3 folds by subject, 5
or more leave every fold a test subject and a validation subject (0.2 of 3+ training ones)."""
AUTO_PER_IDENTITY = 4
"""Pseudo-subjects per source face the automatic choice gives when the layout has room."""


def auto_subjects_per_identity(identities: int, capacity: int) -> int:
    """Subjects per source face when ``subjects_per_identity`` is 0: enough for
    ``AUTO_MIN_SUBJECTS`` in all, at least ``AUTO_PER_IDENTITY``, at most what the layout's
    ``capacity`` (0: unlimited) leaves each face."""
    per = max(-(-AUTO_MIN_SUBJECTS // max(1, identities)), AUTO_PER_IDENTITY)
    return min(per, capacity // max(1, identities)) if capacity else per


def _subjects_per_identity(config: SynthConfig, identities: int) -> int:
    """The resolved count; ``SourceError`` up front when the layout cannot name that many."""
    capacity = LAYOUTS[config.layout].capacity()
    per = config.subjects_per_identity or auto_subjects_per_identity(identities, capacity)
    if capacity and (per < 1 or identities * per > capacity):
        fit = capacity // max(1, identities)
        fix = (f"use --subjects-per-identity {fit} or leave it out (automatic)" if fit >= 1
               else f"use --max-identities {capacity}")
        raise SourceError(f"{config.layout}: {identities} identities x {max(per, 1)} subjects = "
                          f"{identities * max(per, 1)} subjects, but the layout names at most {capacity} "
                          f"(the real {config.layout.upper()} subject ids, so that its official folds hold "
                          f"them): {fix}")
    return per


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per (purpose, subject, video): results do not depend on run order."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def _check_out(out: Path, overwrite: bool) -> None:
    """Fail fast, before any work, on an output path that may not be written."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputDirError(f"output folder is not empty: {out} (pass overwrite to replace it)")
        if not (out / META / "summary.json").is_file():
            raise OutputDirError(f"refusing to overwrite {out}: it was not made by the generator "
                                 f"(no {META}/summary.json)")


def _prepare_out(out: Path, overwrite: bool) -> None:
    _check_out(out, overwrite)
    if out.is_dir():
        shutil.rmtree(out)
    (out / META).mkdir(parents=True, exist_ok=True)


def _validation_groups(groups: list[str]) -> set[str]:
    """Groups whose videos go to Aff-Wild2's Validation_Set: the last quarter (at least one)."""
    if len(groups) < 2:
        return set()
    n = max(1, round(len(groups) / 4))
    return set(groups[-n:])


@dataclass
class _Subject:
    index: int
    name: str
    face_index: int
    source: SourceFace
    look: Look


def _make_subjects(faces: list[SourceFace], cfg: SynthConfig, writer: LayoutWriter, per: int) -> list[_Subject]:
    subjects = []
    for f, face in enumerate(faces):
        for j in range(per):
            idx = f * per + j
            subjects.append(_Subject(idx, writer.subject_name(idx, f), f, face, sample_look(_rng(cfg.seed, 1, idx))))
    return subjects


def _render_video(cfg: SynthConfig, writer: LayoutWriter, rig: FaceRig, subject: _Subject,
                  plan: VideoPlan, rng: np.random.Generator, meta: "_Meta") -> np.ndarray:
    n, fps = plan.n_frames, cfg.frame_rate
    track = sample_intensities(rng, n, fps, cfg.aus, cfg.aus)
    render = np.zeros((n, len(RENDER_AUS)), np.float32)
    for i, au in enumerate(cfg.aus):
        render[:, RENDER_AUS.index(au)] = track[:, i]
    occluded, region = sample_occlusion(rng, n, cfg.occlusion_rate)
    nuisance = sample_nuisance(rng, rig, n, fps, bool(occluded.any()))
    unknown_frames = sample_unknown_frames(rng, n, cfg.unknown_rate) if writer.unknown_code is not None \
        else np.zeros(n, bool)
    unknown_cells = sample_unknown_cells(rng, (n, len(writer.columns)), cfg.unknown_rate)
    writer.begin(plan, unknown_frames, rng)
    morph = subject_morph(rig, subject.look)
    marks = np.full((n, 68, 2), np.nan, np.float32)
    for t in range(n):
        frame, lm = render_frame(rig, subject.look, morph, render[t], nuisance, t,
                                 region if occluded[t] else "")
        written = writer.write_frame(plan, t, frame, lm, nuisance.jpeg_quality)
        if written is not None:
            marks[t] = written
            meta.occlusion_rows.append([plan.subject, plan.video, writer.frame_number(plan, t), int(occluded[t]),
                                        region if occluded[t] else "", writer.frame_path(plan, t)])
    levels = np.zeros((n, len(writer.columns)), np.int8)
    for c, au in enumerate(writer.columns):
        if au in cfg.aus:
            levels[:, c] = intensity_levels(track[:, cfg.aus.index(au)])
    occ = writer.end(plan, levels, unknown_frames, unknown_cells)
    meta.landmarks[f"{plan.subject}/{plan.video}"] = np.round(marks, 2)
    meta.group_rows.append([*writer.group_key(plan), plan.group])
    meta.video_rows.append([plan.subject, plan.video, plan.group, plan.split, n, writer.frame_path(plan, 0),
                            region, nuisance.jpeg_quality, round(nuisance.noise_sigma, 3)])
    return occ


@dataclass
class _Meta:
    occlusion_rows: list[list[object]] = field(default_factory=list)
    group_rows: list[list[object]] = field(default_factory=list)
    video_rows: list[list[object]] = field(default_factory=list)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)


def _unique(rows: list[list[object]]) -> list[list[object]]:
    seen: dict[tuple[object, ...], None] = {}
    for r in rows:
        seen.setdefault(tuple(r), None)
    return [list(r) for r in seen]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def generate(config: SynthConfig, progress: Callable[[str], None] | None = None,
             find: FaceFinder | None = None) -> SynthSummary:
    """Render the data set ``config`` describes; return what was written.

    Raises ``SourceError`` when no usable face is found and ``OutputDirError`` for an output
    folder that may not be written. ``progress`` (e.g. ``print``) gets one line per subject.
    ``find`` finds and landmarks the faces of the source photos (default: dlib's,
    ``synth.face_finder``, the generator's only use of the face pipeline).
    """
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    out = Path(config.out)
    _check_out(out, config.overwrite)
    photos = read_photos(config.faces)
    faces, skipped = find_faces(photos, config.frame_size, find or dlib_face_finder(),
                                min_score=config.min_face_score)
    if config.max_identities:
        faces = faces[:config.max_identities]
    if not faces:
        where = config.faces or "the default astronaut photo"
        raise SourceError(f"no usable face found in {where}: " + "; ".join(skipped))
    per = _subjects_per_identity(config, len(faces))
    _prepare_out(out, config.overwrite)
    writer = LAYOUTS[config.layout](out, config.aus, config.frame_rate, config.frame_size)
    subjects = _make_subjects(faces, config, writer, per)
    validation = _validation_groups([f.group for f in faces])
    if not validation and len(subjects) > 1:
        validation_subjects = {subjects[-1].name}
    else:
        validation_subjects = {s.name for s in subjects if s.source.group in validation}
    rigs: dict[tuple[int, bool], FaceRig] = {}
    meta = _Meta()
    occurrences = []
    n_videos = 0
    for s in subjects:
        key = (s.face_index, s.look.mirrored)
        if key not in rigs:
            canvas, lm = s.source.canvas, s.source.landmarks
            if config.neutralise > 0:
                canvas, lm = neutralise(canvas, lm, config.neutralise)
            rigs[key] = FaceRig(*(mirror(canvas, lm) if s.look.mirrored else (canvas, lm)))
        plans = writer.plan(s.name, s.source.group, config.videos_per_subject, config.frames_per_video,
                            s.name in validation_subjects)
        for v, plan in enumerate(plans):
            occurrences.append(_render_video(config, writer, rigs[key], s, plan, _rng(config.seed, 2, s.index, v), meta))
        n_videos += len(plans)
        say(f"synth: subject {s.name} ({s.index + 1}/{len(subjects)}, group {s.source.group}): "
            f"{len(plans)} video(s)")
    writer.finish()
    meta_dir = out / META
    look_keys = list(subjects[0].look.params()) if subjects else []
    _write_csv(meta_dir / "subjects.csv", ["subject", "group", "source", "face_index", *look_keys],
               [[s.name, s.source.group, s.source.photo, s.source.face_index, *s.look.params().values()]
                for s in subjects])
    _write_csv(meta_dir / "videos.csv", ["subject", "video", "group", "split", "frames", "path",
                                         "occlusion_region", "jpeg_quality", "noise_sigma"], meta.video_rows)
    _write_csv(meta_dir / "groups.csv", ["subject", "video", "group"], _unique(meta.group_rows))
    _write_csv(meta_dir / "occlusions.csv", ["subject", "video", "frame", "occluded", "region", "path"],
               meta.occlusion_rows)
    np.savez_compressed(meta_dir / "landmarks.npz", **meta.landmarks)
    save_yaml(config, meta_dir / "config.yaml")
    occ = np.concatenate(occurrences) if occurrences else np.zeros((0, len(writer.columns)))
    rates = {}
    for c, au in enumerate(writer.columns):
        known = occ[:, c][(occ[:, c] == 0) | (occ[:, c] == 1)]
        rates[au_name(au)] = round(float(known.mean()), 4) if len(known) else 0.0
    summary = SynthSummary(out=str(out), layout=config.layout, aus=config.aus, identities=len(faces),
                           subjects=len(subjects), videos=n_videos, frames=len(meta.occlusion_rows),
                           occluded_frames=sum(int(r[3]) for r in meta.occlusion_rows), base_rates=rates,
                           skipped=skipped, labels=str(out / writer.labels_at), meta_dir=str(meta_dir))
    summary.train_problems = train_split_problems(out, config.layout, len(faces))
    record = {k: v for k, v in asdict(summary).items() if k not in ("seconds", "out", "meta_dir", "labels")}
    (meta_dir / "summary.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
