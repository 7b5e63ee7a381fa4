"""Label a feature store's rows with a teacher's soft AU probabilities, with Ray Data: the logic of
the ``label`` stage (its entry: ``workflows/label.py``).

``facsflow label --teacher builtin|ENSEMBLE_DIR --data STORE [--config YAML] [--set K=V] [--address A]``

The first half of distillation: unlabeled real video, preprocessed into a store, gets the
probabilities of a teacher (``builtin``: ``components.builtin``'s ensemble; or any ensemble
folder with ``ensemble.json``) beside each row, for a student to train on.

What the teacher sees: the stored rows themselves. The student trains on these rows, so the
labels must be the teacher's answer for exactly these faces; and the store already holds what each
member declares it reads (``InputSpec``): trained members read the aligned crops, landmarks and
temporal differences they were trained on (rows of a store like this one), and the built-in's
blendshape member reads the 52 MediaPipe blendshapes that preprocessing with
``--face.landmarker mediapipe`` stores per row. Those blendshapes are the Face Landmarker's fit on
the source frame, around the face box, at full resolution: the input the built-in's face pipeline
(RetinaFace + MediaPipe) gives the member, and the very one when the store was preprocessed with
``--face.detector retinaface --face.landmarker mediapipe``. So the teacher does not re-run a face
pipeline. Not on the stored crops: they are 112-px resampled, rotated face-only crops (margin
0.25), not the frame region (2 box sides) the landmarker fits; the built-in re-run on the crops
finds the faces again but gives AU probabilities apart from those of the stored blendshapes, at
many times the CPU per row (figures: docs/measurements.md). Not on the
source frames either: that repeats preprocessing's face work and would have to match the
teacher's faces back to rows by position, which the store does not keep in image pixels. A store preprocessed without MediaPipe
has no blendshapes: labelling it with a teacher that reads them stops at once, naming the flag.
A row the teacher has no input for (null blendshapes) keeps unknown labels (NaN); frames with no
face at all are preprocessing's rejects, have no row, and are counted in the summary.

Work and resumption as in ``workflows.core.preprocessing``, by the one unit driver of
``workflows.core.units``: one unit is one ``frames/<stem>.parquet``
file; each actor loads the teacher once (``Predictor``), then per call reads one unit's rows,
answers them in segments (``components.teacher``), writes ``labels/<stem>.parquet``
(``LABELS_SCHEMA``: one row per frames row) atomically and then, last, its marker
``_label_markers/<stem>.json``. The labels file's name depends on the unit only, so a unit that
runs twice (retry, rerun after a crash) overwrites its own file: every row is labelled exactly
once. A marker counts only while its frames file is the one it labelled (same size), so a unit
preprocessed again is labelled again. ``labels.json`` (teacher, AU list, the teacher's per-AU
thresholds in that order: where its soft labels become its decisions, for validation and
evaluation against it; counts) is written when every unit is done; a store labelled by one teacher refuses another unless ``--no-resume``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from components import storage
from components.batches import VIDEO_BATCH_ROWS
from components.configuration import save_yaml, to_dict
from components.store.neutral import neutral_join, no_tables_warning
from components.store.schema import SCHEMA_VERSION, teacher_source
from workflows.core.units import (FAULT_ENV, UnitProgress, check_pool_options, die_once, marker_done,
                                  remove_torn_writes, run_units, unit_pool, write_atomic_text)

log = logging.getLogger("facsflow.label")

__all__ = ["LabelConfig", "Teacher", "resolve_teacher", "run_label", "LabelsIncomplete", "FAULT_ENV"]

_COLUMNS = ["sample_id", "dataset", "subject", "video", "face_id", "frame_order", "image", "landmarks", "landmark_diff",
            "diff_valid", "blendshapes", "geometry"]
_FAULT_STAGE = "label"
_WRITTEN = ("labels", "_label_markers")
"""The store's folders that labelling writes files into."""


@dataclass
class LabelConfig:
    """Everything a labelling run needs; saved as ``<data>/label.yaml``."""

    teacher: str = "builtin"
    """'builtin' (the built-in detector's ensemble) or an ensemble folder (its ensemble.json)."""
    data: str = ""
    """Feature store to label (local path or s3:// URI); labels go to <data>/labels/."""
    actors: int = 0
    """Labelling actors (0: one per available CPU / actor_cpus)."""
    actor_cpus: float = 1.0
    """CPUs reserved per actor (fractions allowed)."""
    batch_rows: int = VIDEO_BATCH_ROWS
    """Rows of one video per teacher forward pass (evaluation's segments)."""
    resume: bool = True
    """Skip units already labelled by this teacher (False: clear labels/ and label markers first)."""
    unit_retries: int = 3
    """Times a unit is retried on a restarted actor after its actor died."""
    log_every_s: float = 10.0
    """Least seconds between progress lines; 0: one per unit."""
    max_subjects: int = 0
    """Label the rows of at most this many subjects: a sample fixed by the subjects' names
    (``components.store.splits.subject_sample``), for a store too large to label whole; 0: all.
    The other rows have no teacher label, which training counts and says."""

    def __post_init__(self) -> None:
        check_pool_options(self)
        if self.max_subjects < 0:
            raise ValueError(f"max_subjects must be >= 0, got {self.max_subjects}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")


@dataclass(frozen=True)
class Teacher:
    """A resolved teacher: its ensemble folder and the label source it writes."""

    directory: str
    name: str
    version: str
    aus: tuple[int, ...]
    needs_blendshapes: bool
    diff_steps: tuple[int, ...]
    faces: dict[str, Any]
    """Face pipeline fields its members were made for, where the manifest says (the built-in)."""
    thresholds: tuple[float, ...] = ()
    """Its per-AU occurrence thresholds on its probabilities (``components.inference.thresholds_of``),
    in ``aus`` order: where its soft labels become its decisions."""

    def thresholds_for(self, aus: "list[int]") -> "list[float | None]":
        """Its thresholds in the order of ``aus``; None for an AU it does not predict."""
        where = dict(zip(self.aus, self.thresholds))
        return [where.get(int(a)) for a in aus]

    @property
    def source(self) -> str:
        return teacher_source(self.name, self.version)


def resolve_teacher(spec: str) -> Teacher:
    """``builtin`` or an ensemble folder → ``Teacher`` (name: 'builtin' or the folder's name;
    version: the built-in's content key, else the first 12 hex of the manifest's SHA-256); what it
    needs from the store is its ``InferencePlan``'s."""
    from components.ensemble import MANIFEST_FILE
    from components.plan import recorded_faces, resolve_ensemble
    from workflows.core.runtime import UserError

    if spec != "builtin":
        try:
            text = storage.read_text(storage.join(spec, MANIFEST_FILE))
        except (FileNotFoundError, OSError):
            raise UserError(f"--teacher {spec}: no {MANIFEST_FILE} there; give 'builtin' or the folder "
                            "`facsflow ensemble` wrote") from None
    plan = resolve_ensemble(None if spec == "builtin" else spec)
    if plan.builtin:
        name, version = "builtin", os.path.basename(plan.directory.rstrip("/"))
    else:
        name = os.path.basename(spec.rstrip("/")).replace("@", "_") or "ensemble"
        version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Teacher(plan.directory, name, version, tuple(int(a) for a in plan.aus), plan.blendshapes,
                   plan.member_steps, recorded_faces(plan.manifest), tuple(float(t) for t in plan.thresholds))


class LabelsIncomplete(RuntimeError):
    """Some units were not labelled, or a labels file does not hold one row per frames row."""


class TeacherLabeller:
    """Ray Data class UDF: the teacher's Predictor loads once per actor; one unit per call."""

    def __init__(self, teacher: str, data: str, aus: list[int], source: str, diff_steps: list[int],
                 meta: dict[str, str], batch_rows: int, fault_unit: str = "") -> None:
        import cv2

        from components.predictor import Predictor
        from workflows.core.runtime import torch_single_thread

        cv2.setNumThreads(1)  # actors are the unit of parallelism
        torch_single_thread()
        self.predictor = Predictor.from_manifest(teacher)
        self.data, self.aus, self.source = data, aus, source
        self.diff_steps, self.batch_rows, self.fault_unit = diff_steps, batch_rows, fault_unit
        self.meta = {k.encode(): v.encode() for k, v in meta.items()}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
        import ray

        from components.store.neutral import stem_neutral
        from components.store.schema import LABELS_SCHEMA
        from components.teacher import teacher_soft_labels

        stats: dict[str, list[Any]] = {"stem": [], "frames": [], "labelled": [], "unknown": [],
                                       "seconds": [], "started": [], "node": []}
        for stem, size in zip(batch["stem"], batch["size"]):
            started, t0 = time.time(), time.perf_counter()
            stem = str(stem)
            fs, path = storage.resolve(storage.join(self.data, "frames", f"{stem}.parquet"))
            with fs.open_input_file(path) as f:
                have = set(pq.read_schema(f).names)
                rows = pq.read_table(f, columns=[c for c in _COLUMNS if c in have]).to_pydict()
            neutral = stem_neutral(self.data, stem, rows["sample_id"]) if self.predictor.plan.blendshapes else None
            if neutral is not None:  # the face's running neutral over the whole video, not this chunk's
                rows["neutral"] = neutral
            soft = teacher_soft_labels(self.predictor, rows, self.aus, self.diff_steps, self.batch_rows)
            n = len(rows["sample_id"])
            table = pa.Table.from_pydict(
                {"sample_id": rows["sample_id"], "soft_labels": [r.tolist() for r in soft],
                 "label_source": [self.source] * n}, schema=LABELS_SCHEMA)
            labels_uri = storage.join(self.data, "labels", f"{stem}.parquet")
            storage.write_table_atomic(table, labels_uri, self.meta)
            die_once(self.data, stem, self.fault_unit, _FAULT_STAGE, torn_beside=labels_uri)
            unknown = int(np.isnan(soft).all(1).sum()) if soft.shape[1] else n
            write_atomic_text(storage.join(self.data, "_label_markers", f"{stem}.json"),
                              json.dumps({"rows": n, "unknown": unknown, "frames_bytes": int(size),
                                          "source": self.source}))
            stats["stem"].append(stem)
            stats["frames"].append(n)
            stats["labelled"].append(n - unknown)
            stats["unknown"].append(unknown)
            stats["seconds"].append(time.perf_counter() - t0)
            stats["started"].append(started)
            stats["node"].append(ray.get_runtime_context().get_node_id())
        return stats


def _frames_units(data: str) -> dict[str, int]:
    """stem → size in bytes of every ``frames/<stem>.parquet`` of the store."""
    from components.store.splits import frames_files

    fs, _ = storage.resolve(data)
    root = storage.join(data, "frames") + "/"
    return {f[len(root):-len(".parquet")]: int(fs.get_file_info(storage.resolve(f)[1]).size)
            for f in frames_files(data)}


def _labelled(data: str, stem: str, size: int, source: str) -> bool:
    """Whether ``stem`` has a complete marker of this teacher for its current frames file."""
    uri = storage.join(data, "_label_markers", f"{stem}.json")
    if not marker_done(uri):
        return False
    marker = json.loads(storage.read_text(uri))
    return marker.get("frames_bytes") == size and marker.get("source") == source


def _unit_rows(cfg: LabelConfig, items: list[dict[str, Any]], teacher: Teacher, aus: list[int],
               info: dict[str, Any], actors: int) -> Any:
    """The Ray Data pipeline over work items: one stats row per labelled unit."""
    from components.store.schema import store_metadata

    meta = {k.decode(): v.decode() for k, v in store_metadata(
        aus, info.get("diff_steps", ()), int(info.get("image_size", 0)),
        extra={"label_source": teacher.source}).items()}
    return unit_pool(TeacherLabeller, items,
                     {"teacher": teacher.directory, "data": cfg.data, "aus": aus, "source": teacher.source,
                      "diff_steps": list(info.get("diff_steps", ())), "meta": meta, "batch_rows": cfg.batch_rows,
                      "fault_unit": os.environ.get(FAULT_ENV, "")},
                     actors, actor_cpus=cfg.actor_cpus, unit_retries=cfg.unit_retries)


def _check_store(cfg: LabelConfig, teacher: Teacher, info: dict[str, Any]) -> None:
    """Refuse a store that cannot give the teacher its inputs; say where the faces differ."""
    from workflows.core.runtime import UserError

    run_uri = storage.join(cfg.data, "_run.json")
    face = (json.loads(storage.read_text(run_uri)).get("config", {}).get("face", {})
            if storage.exists(run_uri) else {})
    if teacher.needs_blendshapes and face and face.get("landmarker") != "mediapipe":
        raise UserError(
            f"teacher {teacher.source} reads MediaPipe blendshapes, which {cfg.data} does not hold (preprocessed "
            f"with --face.landmarker {face.get('landmarker')}): preprocess it again with --face.landmarker "
            "mediapipe (the built-in's whole face pipeline: --face.detector retinaface --face.landmarker mediapipe)")
    if teacher.needs_blendshapes and neutral_join(cfg.data) is None:
        log.warning(no_tables_warning(cfg.data, f"each face's running neutral restarts at every chunk and "
                                                f"{cfg.batch_rows}-row segment instead of running over its video as "
                                                "serving's does"))
    missing = [s for s in teacher.diff_steps if s not in info.get("diff_steps", ())]
    if missing:
        raise UserError(f"teacher {teacher.source} needs landmark differences for steps {missing}; {cfg.data} "
                        f"has {list(info.get('diff_steps', ()))}: preprocess with store.diff_steps including them")
    differ = {k: (face.get(k), v) for k, v in teacher.faces.items() if face and face.get(k) != v}
    if differ:
        log.warning("%s was preprocessed with other face settings than the teacher was made for (store, teacher): "
                    "%s; its rows' faces are labelled as stored", cfg.data,
                    ", ".join(f"{k} {a!r}/{b!r}" for k, (a, b) in sorted(differ.items())))


def _label_aus(info: dict[str, Any], teacher: Teacher) -> list[int]:
    """The labels' AU list: the store's; a store without one (unlabeled media) takes the teacher's."""
    own = info.get("aus_from") != "labels"  # store_info's AU list of an earlier labelling is not the store's
    aus = [int(a) for a in info.get("aus", ())] if own else []
    if not aus:
        return list(teacher.aus)
    lacking = [a for a in aus if a not in teacher.aus]
    if len(lacking) == len(aus):
        from workflows.core.runtime import UserError

        raise UserError(f"teacher {teacher.source} predicts none of the store's AUs {aus} (it answers "
                        f"{list(teacher.aus)})")
    if lacking:
        log.warning("teacher %s does not predict AU(s) %s of the store: their soft labels stay unknown",
                    teacher.source, lacking)
    return aus


def _clear(data: str, names: tuple[str, ...]) -> None:
    fs, base = storage.resolve(data)
    for name in names:
        path = f"{base.rstrip('/')}/{name}"
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)


def _count_written(cfg: LabelConfig, units: dict[str, int]) -> dict[str, int]:
    """Rows, labelled and unknown rows of the whole store, from the written labels files, each
    checked to hold every sample_id of its frames file exactly once (``LabelsIncomplete``)."""
    import numpy as np
    import pyarrow.parquet as pq

    totals = {"store_rows": 0, "store_labelled": 0, "store_unknown": 0}
    bad: list[str] = []
    for stem in units:
        frames_fs, frames_path = storage.resolve(storage.join(cfg.data, "frames", f"{stem}.parquet"))
        labels_fs, labels_path = storage.resolve(storage.join(cfg.data, "labels", f"{stem}.parquet"))
        with frames_fs.open_input_file(frames_path) as f:
            want = pq.read_table(f, columns=["sample_id"]).column("sample_id").to_pylist()
        try:
            with labels_fs.open_input_file(labels_path) as f:
                table = pq.read_table(f, columns=["sample_id", "soft_labels"])
        except (FileNotFoundError, OSError):
            bad.append(f"{stem} (no labels file)")
            continue
        got = table.column("sample_id").to_pylist()
        if len(got) != len(want) or set(got) != set(want):
            bad.append(f"{stem} ({len(got)} labels rows for {len(want)} frames rows)")
            continue
        soft = table.column("soft_labels").to_pylist()
        unknown = sum(1 for v in soft if not v or bool(np.isnan(np.asarray(v, np.float32)).all()))
        totals["store_rows"] += len(got)
        totals["store_unknown"] += unknown
        totals["store_labelled"] += len(got) - unknown
    if bad:
        raise LabelsIncomplete(f"{len(bad)} unit(s) of {cfg.data} are not labelled once per row: "
                               f"{', '.join(bad[:5])}")
    return totals


def _no_face_frames(data: str) -> int:
    """Frames of the store without any face (preprocessing's rejects): nothing to label."""
    import pyarrow.dataset as pads

    files = storage.list_files(storage.join(data, "rejects"), ".parquet")
    if not files:
        return 0
    fs, _ = storage.resolve(data)
    return pads.dataset([storage.resolve(f)[1] for f in files], filesystem=fs, format="parquet").count_rows()


def run_label(cfg: LabelConfig) -> dict[str, Any]:
    """Label every unlabelled unit of ``cfg.data`` on the connected Ray cluster; return a summary.

    Keys: store, teacher (label source), aus (the labels' AU list), units (labelled by this run),
    units_total, rows, labelled, unknown (this run's rows; unknown: NaN for every AU),
    store_rows, store_labelled, store_unknown (the whole store, counted from the written files),
    no_face_frames (the store's rejects: frames without a face, no row to label), seconds,
    processing_seconds (first unit started to last finished), rows_per_s (this run's rows over
    processing_seconds). Raises ``LabelsIncomplete`` when some units could not be labelled.
    """
    from components.store.splits import store_info
    from workflows.core.runtime import UserError

    if not cfg.data:
        raise UserError("label needs --data STORE")
    t0 = time.perf_counter()
    info = store_info(cfg.data)
    teacher = resolve_teacher(cfg.teacher)
    _check_store(cfg, teacher, info)
    aus = _label_aus(info, teacher)
    run_uri = storage.join(cfg.data, "_label_run.json")
    if cfg.resume and storage.exists(run_uri):
        before = json.loads(storage.read_text(run_uri))
        if before.get("source") != teacher.source or before.get("aus") != aus:
            raise UserError(f"{cfg.data} is (being) labelled by {before.get('source')} (AUs {before.get('aus')}); "
                            f"labelling it with {teacher.source} would mix both. Use --no-resume to replace them.")
    if not cfg.resume:
        log.info("--no-resume: clearing labels/ and label markers of %s", cfg.data)
        _clear(cfg.data, ("labels", "_label_markers", "_fault/label", "labels.json"))
    _clear(cfg.data, ("labels.json",))  # marks a finished labelling: absent while one is under way
    remove_torn_writes(cfg.data, _WRITTEN, log)
    storage.write_json(run_uri, {"source": teacher.source, "aus": aus, "teacher": teacher.directory,
                                 "config": to_dict(cfg)})
    if not storage.is_remote(cfg.data):
        save_yaml(cfg, storage.join(cfg.data, "label.yaml"))
    units = _frames_units(cfg.data)
    if cfg.max_subjects:
        from components.store.splits import subject_sample

        # A stem is <dataset>/<subject>/<video>: the sample is drawn over its subject parts.
        keep = set(subject_sample(sorted({s.rsplit("/", 2)[-2] for s in units}), cfg.max_subjects))
        units = {s: n for s, n in units.items() if s.rsplit("/", 2)[-2] in keep}
        log.info("%s: labelling the %d unit(s) of %d subject(s) (max_subjects)", cfg.data, len(units), len(keep))
    items = [{"stem": s, "size": n} for s, n in units.items()
             if not (cfg.resume and _labelled(cfg.data, s, n, teacher.source))]
    rows_todo = 0
    for it in items:
        marker = storage.join(cfg.data, "_markers", f"{it['stem']}.json")
        rows_todo += json.loads(storage.read_text(marker)).get("rows", 0) if marker_done(marker) else 0
    log.info("%s: %d unit(s); %d to label (%d rows) with %s", cfg.data, len(units), len(items), rows_todo,
             teacher.source)
    summary: dict[str, Any] = {"store": cfg.data, "teacher": teacher.source, "aus": aus, "units": len(items),
                               "units_total": len(units), "rows": 0, "labelled": 0, "unknown": 0,
                               "processing_seconds": 0.0}
    failed: list[str] = []
    if items:
        progress = UnitProgress(len(items), rows_todo, cfg.log_every_s, stage="label",
                                counts=("labelled", "unknown"), items="rows", logger=log)

        def add(row: dict[str, Any]) -> None:
            summary["rows"] += int(row["frames"])
            summary["labelled"] += int(row["labelled"])
            summary["unknown"] += int(row["unknown"])

        run = run_units(cfg, items, lambda pending, actors: _unit_rows(cfg, pending, teacher, aus, info, actors),
                        progress, again="labelling them again", on_row=add)
        if progress.done_units:
            summary["processing_seconds"] = round(progress.last_end - progress.first_start, 3)
        failed = run.failed
    summary["rows_per_s"] = round(summary["rows"] / summary["processing_seconds"], 2) \
        if summary["processing_seconds"] > 0 else 0.0
    if failed:
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        raise LabelsIncomplete(f"{len(failed)} of {len(items)} unit(s) were not labelled (e.g. "
                               f"{', '.join(failed[:5])}). Rerun the same command to label only those.")
    remove_torn_writes(cfg.data, _WRITTEN, log)  # an actor lost mid-write (its node gone) left its temp file
    summary.update(_count_written(cfg, units))
    summary["no_face_frames"] = _no_face_frames(cfg.data)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    storage.write_json(storage.join(cfg.data, "labels.json"), {
        "schema_version": SCHEMA_VERSION, "source": teacher.source, "teacher": teacher.directory, "aus": aus,
        "thresholds": teacher.thresholds_for(aus),
        "rows": summary["store_rows"], "labelled": summary["store_labelled"],
        "unknown": summary["store_unknown"], "no_face_frames": summary["no_face_frames"],
        **({"max_subjects": cfg.max_subjects} if cfg.max_subjects else {})})
    return summary
