"""Feature-store files → Ray Datasets for training, evaluation and prediction.

Ray Data tasks decode each row once (``components.batches.RowDecoder``: uint8 crops at the model's
size, landmarks, differences, labels); the training worker augments and applies the model's input
transform on its own device (``components.batches.model_batch``). Labels from elsewhere (a
teacher's, the shuffled control's) are tables beside the frames, one Parquet file per frames file,
joined by ``sample_id`` inside the task that reads that frames file (``LabelJoin``): a task
reads only its own files' labels, and no table travels in task arguments. Which files a split
reads is ``components.store.splits``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from components.batches import RowDecoder
from components.models.base import InputSpec
from components import storage
from components.store.neutral import neutral_join, no_tables_warning, reads_neutral
from components.store.schema import LABEL_SOURCE_HUMAN, LABEL_SOURCE_TEACHER
from components.store.splits import Split, label_coverage, teacher_labelling, write_shuffled_labels

__all__ = ["COLUMNS", "OPTIONAL_COLUMNS", "LabelJoin", "joined_column", "read_store_frames", "transformed_dataset",
           "split_datasets"]

log = logging.getLogger("facsflow.train")

# "dataset", "subject", "video" and "face_id": the face track's key (components.video_key) that
# pairs, windows and the resampling stride group by.
COLUMNS = ["sample_id", "dataset", "subject", "video", "face_id", "frame_order", "image", "landmarks", "landmark_diff",
           "diff_valid", "labels", "intensities", "blendshapes", "geometry"]
CACHE_COLUMNS = ["frame_order", "video_index", "subject_index", "crop_scale", "crop", "landmarks", "landmark_diff",
                 "diff_valid", "labels", "intensities"]
"""Columns an epoch reads from the crop cache (``components.store.crop_cache``); the id strings
too where labels are joined by sample_id or resampled per video."""
CACHE_TASK_BYTES = 48 << 20
"""Crop-cache bytes per read task (files grouped): 300 rows at 224 px, 1300 at 112."""
OPTIONAL_COLUMNS = ("blendshapes", "geometry")
"""Columns read only where the store has them (stores written before they existed lack them)."""

LabelJoin = dict
"""A label table joined by ``sample_id``: ``{"frames": the frames/ root URI, "labels": the root of
the tables (``labels/<same path>.parquet`` per frames file), "source": column read there,
"column": batch column it becomes ('soft_labels', 'labels', or 'neutral': the store's running
neutral, ``components.store.neutral``), "decide": thresholds turning probabilities into decisions
(1/0, -1 unknown) or None}``. A row its table lacks gets None."""


@functools.lru_cache(maxsize=16)
def _label_table(uri: str, source: str) -> dict[str, Any]:
    """sample_id → value of one label file (cached per process: a task's batches share a file)."""
    import pyarrow.parquet as pq

    if not storage.exists(uri):
        return {}
    fs, path = storage.resolve(uri)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f, columns=["sample_id", source])
    return dict(zip(table.column("sample_id").to_pylist(), table.column(source).to_pylist()))


def joined_column(batch: dict[str, Any], join: LabelJoin) -> list[Any]:
    """The joined column for the batch's rows, read from the label files of their frames files."""
    frames = storage.resolve(join["frames"])[1].rstrip("/") + "/"
    out = []
    for path, sid in zip(batch["path"], batch["sample_id"]):
        rel = str(path)[len(frames):] if str(path).startswith(frames) else ""
        value = _label_table(storage.join(join["labels"], rel), join["source"]).get(str(sid)) if rel else None
        if value is not None and join.get("decide") is not None:
            from components.metrics.agreement import teacher_decisions

            value = teacher_decisions(np.asarray([value], np.float64), join["decide"])[0].tolist()
        out.append(value)
    return out


def _transform(batch: Any, spec: dict[str, Any], diff_steps: list[int], aus: list[int],
               joins: "list[LabelJoin] | None" = None, resample: "dict[str, Any] | None" = None,
               human_labels: bool = True,
               teacher_thresholds: "list[float | None] | None" = None, cache_size: int = 0) -> dict[str, np.ndarray]:
    if cache_size:   # a pyarrow block of crop-cache rows: numpy views, no per-row work
        from components.store.crop_cache import cached_columns

        batch = cached_columns(batch, cache_size, len(diff_steps), len(aus))
    if resample is not None:
        # Paper 001 §3.4.1 within each block of consecutive frames, per video of the block, with a
        # fresh phase every epoch (Ray Data re-executes the pipeline), so each epoch sees another tenth.
        from components.datasets.samplers import ResampleSpec, rare_au_resample
        from components.video_key import video_keys

        labels = np.stack([np.asarray(v, np.int8) for v in batch["labels"]])
        keep = rare_au_resample(labels, aus, ResampleSpec(**resample),
                                seed=int(np.random.default_rng().integers(1 << 30)), videos=video_keys(batch))
        batch = {k: np.asarray(v)[keep] if len(v) == len(labels) else v for k, v in batch.items()}
    batch = dict(batch)
    if not human_labels:  # label_sources without 'human': the rows' own labels are not used
        batch["labels"] = [[] for _ in batch["sample_id"]]
    for join in joins or ():
        batch[join["column"]] = joined_column(batch, join)
        if join["column"] == "labels":  # the shuffled control: its labels replace the rows' own
            batch["labels"] = [v if v is not None else [] for v in batch["labels"]]
            batch["intensities"] = [[] for _ in batch["sample_id"]]
    out = RowDecoder(InputSpec.from_dict(spec), diff_steps, len(aus), teacher_thresholds=teacher_thresholds)(batch)
    # Training reads tensors only (iter_torch_batches cannot convert string id columns).
    return {k: v for k, v in out.items() if v.dtype.kind in "fiub"}


def read_store_frames(files: list[str], columns: list[str], num_cpus: "float | None" = None,
                      include_paths: bool = False, num_blocks: "int | None" = None) -> Any:
    """A Ray Dataset over feature-store Parquet files (``file://`` or remote URIs), streaming.

    Reads through Ray Data's V1 Parquet datasource unless the user chose a reader with Ray's own
    switch ``RAY_DATA_USE_DATASOURCE_V2``. The default V2 reader (ListFiles -> ReadFiles)
    delivered its first row only at the end of a pass, V1 its first batch at once (figures:
    docs/measurements.md). Every epoch re-reads its files, so the V2 wait was each epoch's
    start-up (a training worker idle for it). ``include_paths`` adds each row's file as ``path``
    (the label joins find their tables by it). ``num_blocks``: read tasks (files grouped), Ray's
    choice by default.
    """
    import os

    import ray.data

    fs, _ = storage.resolve(files[0]) if files else (None, None)
    paths = [storage.resolve(f)[1] for f in files]
    if paths and any(c in OPTIONAL_COLUMNS for c in columns):
        import pyarrow.parquet as pq

        with fs.open_input_file(paths[0]) as f:
            have = set(pq.read_schema(f).names)
        columns = [c for c in columns if c in have or c not in OPTIONAL_COLUMNS]
    kwargs: dict[str, Any] = {} if num_cpus is None else {"num_cpus": num_cpus}
    if include_paths:
        kwargs["include_paths"] = True
    if num_blocks is not None:
        kwargs["override_num_blocks"] = num_blocks
    if "RAY_DATA_USE_DATASOURCE_V2" in os.environ:
        return ray.data.read_parquet(paths, filesystem=fs, columns=columns, **kwargs)
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False   # read_parquet picks its reader from the current context
    try:
        return ray.data.read_parquet(paths, filesystem=fs, columns=columns, **kwargs)
    finally:
        ctx.use_datasource_v2 = before


def _cache_size(root: str) -> int:
    """The crop side of a crop cache (its cache.json)."""
    import json

    return int(json.loads(storage.read_text(storage.join(root, "cache.json")))["size"])


def transformed_dataset(files: list[str], info: dict[str, Any], spec: InputSpec, data_cpus: float,
                        joins: "list[LabelJoin] | None" = None, resample: "dict[str, Any] | None" = None,
                        human_labels: bool = True,
                        teacher_thresholds: "list[float | None] | None" = None,
                        cache: "tuple[str, str] | None" = None) -> Any:
    """Read Parquet files and decode them to ``RowDecoder`` batches on CPU tasks (the worker's
    ``model_batch`` finishes them). ``joins`` (``LabelJoin``) add label columns by sample_id: a
    teacher's ``soft_labels`` fill the labels a row leaves unknown; ``human_labels`` False drops
    the rows' own labels first; ``teacher_thresholds`` (the teacher's, per AU) add ``hard_labels``.
    ``cache`` (store, crop cache root: ``workflows.core.crop_cache``): read the frames files'
    cache files instead (crops decoded once, at min(model size, stored size)), whole blocks at a
    time (32 rows with ``resample``, whose windows are those blocks)."""
    fn_kwargs = {"spec": spec.to_dict(), "diff_steps": list(info["diff_steps"]), "aus": list(info["aus"]),
                 "joins": joins, "resample": resample, "human_labels": human_labels,
                 "teacher_thresholds": teacher_thresholds}
    # Read tasks take data_cpus like the transform: Ray's default of one whole CPU per read task
    # never schedules when training holds all but a fraction of a CPU (e.g. tune's concurrent trials).
    if cache is None:
        ds = read_store_frames(files, COLUMNS, num_cpus=data_cpus, include_paths=bool(joins))
        return ds.map_batches(_transform, batch_size=32, batch_format="numpy", num_cpus=data_cpus,
                              fn_kwargs=fn_kwargs)
    from components.store.crop_cache import cache_file

    store, root = cache
    # The label tables sit beside the frames files under the same relative paths as the cache's.
    fn_kwargs["joins"] = [{**j, "frames": root} for j in joins] if joins else None
    columns = CACHE_COLUMNS + (["sample_id", "dataset", "subject", "video", "face_id"] if joins or resample else [])
    cached = [cache_file(store, root, f) for f in files]
    # A read task costs a few ms of Ray's CPU whatever it reads: group small files into tasks of
    # about CACHE_TASK_BYTES (a task per 16-row file spent more on itself than on its rows).
    fs, _ = storage.resolve(root)
    size = sum(i.size or 0 for i in fs.get_file_info([storage.resolve(f)[1] for f in cached]))
    tasks = max(1, min(len(cached), -(-size // CACHE_TASK_BYTES)))
    ds = read_store_frames(cached, columns, num_cpus=data_cpus, include_paths=bool(joins), num_blocks=tasks)
    return ds.map_batches(_transform, batch_size=32 if resample else None, batch_format="pyarrow",
                          num_cpus=data_cpus, fn_kwargs={**fn_kwargs, "cache_size": _cache_size(root)})


def _teacher_join(store: str, files: list[str], aus: list[int], decide: "list[float | None] | None",
                  what: str) -> LabelJoin:
    """The teacher's labels of ``store`` as a ``LabelJoin``; logs how many of the files' rows the
    labels table does not cover (they train on their own labels only, or none)."""
    done = teacher_labelling(store)
    if [int(a) for a in done["aus"]] != [int(a) for a in aus]:
        from components.errors import UserError

        raise UserError(f"{store}: the teacher's labels are for AUs {done['aus']}, training uses {list(aus)}")
    frames, labels = storage.join(store, "frames"), storage.join(store, "labels")
    missing, total = label_coverage(files, frames, labels)
    if missing:
        log.warning("%s: %d of %d %s rows have no teacher label (labels/ does not cover them)",
                    store, missing, total, what)
    return {"frames": frames, "labels": labels, "source": "soft_labels", "column": "soft_labels", "decide": decide}


def split_datasets(split: Split, info: dict[str, Any], cfg: Any, train: bool = True,
                   val_labels: str = "own") -> dict[str, Any]:
    """Ray Datasets {train, val} (training) or {test} of ``split``, decoded for ``cfg.model`` (its
    input declaration comes from the registry without building the model). ``val_labels``
    'teacher': the validation rows are scored against the teacher's decisions (its soft labels at
    its thresholds) instead of their own labels (they have none:
    ``workflows.core.training.validation_labels``). The shuffled control's labels are written
    into the run folder (``control_labels/``) and joined like the teacher's."""
    from dataclasses import asdict

    from components.models.registry import input_spec

    spec = input_spec(cfg.model, **cfg.model_kwargs)
    names = ("train", "val") if train else ("test",)
    joins: dict[str, list[LabelJoin]] = {n: [] for n in names}
    if train and getattr(cfg, "shuffle_labels", False):
        root = storage.join(cfg.out, cfg.run_name(), "control_labels")
        frames = storage.join(cfg.data, "frames")
        write_shuffled_labels(split.files["train"], frames, root, cfg.seed)
        joins["train"].append({"frames": frames, "labels": root, "source": "labels", "column": "labels",
                               "decide": None})
    resample = None
    if getattr(cfg, "resample", False):
        from components.datasets.samplers import resample_spec

        resample = asdict(resample_spec(info["dataset"]))
    # Validation and test keep the rows' own labels: a teacher's probabilities are for training
    # only; its decisions (0/1, -1 unknown, through the same fill) score validation rows without any.
    sources = tuple(getattr(cfg, "label_sources", (LABEL_SOURCE_HUMAN,)))
    thresholds = None
    if train and LABEL_SOURCE_TEACHER in sources:
        joins["train"].append(_teacher_join(cfg.data, split.files["train"], list(info["aus"]), None, "training"))
        # The loss terms defined on binary labels read the teacher's decisions (``hard_labels``).
        thresholds = teacher_labelling(cfg.data)["thresholds"]
    if train and val_labels == "teacher":
        joins["val"].append(_teacher_join(cfg.data, split.files["val"], list(info["aus"]),
                                          teacher_labelling(cfg.data)["thresholds"], "validation"))
    # Members that read blendshapes or geometry: no crop cache (it holds neither), and the neutral joined.
    mesh = reads_neutral(spec.to_dict())
    cache = None
    if train and getattr(cfg, "crop_cache", False) and not mesh:
        from workflows.core.crop_cache import ensure_crop_cache

        from components.store.crop_cache import crop_cache_size

        size = crop_cache_size(spec.image_size, info.get("image_size"))
        cache = (cfg.data, ensure_crop_cache(cfg.data, info, size, cfg.data_cpus))
    # Members that read blendshapes subtract each face's running neutral over its whole video
    # (components.store.neutral), as serving does; a store without the tables: the population's.
    neutral = neutral_join(cfg.data) if mesh else None
    if mesh and neutral is None:
        log.warning(no_tables_warning(cfg.data, f"{cfg.model} trains with the population neutral where serving "
                                                "subtracts each face's own"))
    return {n: transformed_dataset(split.files[n], info, spec, cfg.data_cpus,
                                   joins=(joins[n] + ([neutral] if neutral else [])) or None, cache=cache,
                                   resample=resample if n == "train" else None,
                                   teacher_thresholds=thresholds if n == "train" else None,
                                   human_labels=(LABEL_SOURCE_HUMAN in sources) if n == "train"
                                   else not joins[n])
            for n in names}
