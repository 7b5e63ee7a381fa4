"""Feature-store files → Ray Datasets for training, evaluation and prediction.

Decoding, augmentation and the model's input transform run as Ray Data tasks on CPU; which
files a split reads is ``components.store.splits``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.batches import AugmentConfig, BatchBuilder
from components.models.base import InputSpec
from components import storage
from components.store.schema import LABEL_SOURCE_HUMAN, LABEL_SOURCE_TEACHER
from components.store.splits import (Split, shuffled_labels, teacher_decision_labels, teacher_labelling,
                                     teacher_labels)

__all__ = ["COLUMNS", "OPTIONAL_COLUMNS", "read_store_frames", "transformed_dataset", "split_datasets"]

# "dataset" with "subject" and "video": the full video key (components.video_key) that pairs,
# windows and the resampling stride group by.
COLUMNS = ["sample_id", "dataset", "subject", "video", "frame_order", "image", "landmarks", "landmark_diff",
           "diff_valid", "labels", "intensities", "blendshapes", "geometry"]
OPTIONAL_COLUMNS = ("blendshapes", "geometry")
"""Columns read only where the store has them (stores written before they existed lack them)."""


def _transform(batch: dict[str, Any], spec: dict[str, Any], diff_steps: list[int], aus: list[int],
               augment: "dict[str, Any] | None", seed: int,
               label_override: "dict[str, Any] | None" = None,
               resample: "dict[str, Any] | None" = None,
               soft_labels: "dict[str, Any] | None" = None, human_labels: bool = True,
               teacher_thresholds: "list[float | None] | None" = None) -> dict[str, np.ndarray]:
    from components.configuration import from_dict

    aug = from_dict(AugmentConfig, augment) if augment is not None else None
    # Augmentation draws fresh randomness each epoch (Ray Data re-executes the pipeline);
    # evaluation transforms are deterministic.
    rng_seed = None if aug is not None else seed
    if resample is not None:
        # Paper 001 §3.4.1 within each block of consecutive frames, per video of the block, with a
        # fresh phase every epoch (Ray Data re-executes the pipeline), so each epoch sees another tenth.
        from components.datasets.samplers import ResampleSpec, rare_au_resample
        from components.video_key import video_keys

        labels = np.stack([np.asarray(v, np.int8) for v in batch["labels"]])
        keep = rare_au_resample(labels, aus, ResampleSpec(**resample),
                                seed=int(np.random.default_rng().integers(1 << 30)), videos=video_keys(batch))
        batch = {k: np.asarray(v)[keep] if len(v) == len(labels) else v for k, v in batch.items()}
    if label_override is not None:
        batch = dict(batch)
        batch["labels"] = [label_override[str(s)] for s in batch["sample_id"]]
        batch["intensities"] = [[] for _ in batch["sample_id"]]
    if soft_labels is not None or not human_labels:
        batch = dict(batch)
        if not human_labels:  # label_sources without 'human': the rows' own labels are not used
            batch["labels"] = [[] for _ in batch["sample_id"]]
        if soft_labels is not None:  # the teacher's, filling what the row's labels leave unknown
            batch["soft_labels"] = [soft_labels.get(str(s)) for s in batch["sample_id"]]
    out = BatchBuilder(InputSpec.from_dict(spec), diff_steps, len(aus), aug, seed=rng_seed,
                       teacher_thresholds=teacher_thresholds)(batch)
    # Training reads tensors only (iter_torch_batches cannot convert string id columns).
    return {k: v for k, v in out.items() if v.dtype.kind in "fiub"}


def read_store_frames(files: list[str], columns: list[str], num_cpus: "float | None" = None) -> Any:
    """A Ray Dataset over feature-store Parquet files (``file://`` or remote URIs), streaming.

    Reads through Ray Data's V1 Parquet datasource unless the user chose a reader with Ray's own
    switch ``RAY_DATA_USE_DATASOURCE_V2``. The default V2 reader (ListFiles -> ReadFiles)
    delivered its first row only at the end of a pass, V1 its first batch at once (figures:
    docs/measurements.md). Every epoch re-reads its files, so the V2 wait was each epoch's
    start-up (a training worker idle for it).
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
    kwargs = {} if num_cpus is None else {"num_cpus": num_cpus}
    if "RAY_DATA_USE_DATASOURCE_V2" in os.environ:
        return ray.data.read_parquet(paths, filesystem=fs, columns=columns, **kwargs)
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False   # read_parquet picks its reader from the current context
    try:
        return ray.data.read_parquet(paths, filesystem=fs, columns=columns, **kwargs)
    finally:
        ctx.use_datasource_v2 = before


def transformed_dataset(files: list[str], info: dict[str, Any], spec: InputSpec,
                        augment: "AugmentConfig | None", data_cpus: float, seed: int,
                        label_override: "dict[str, Any] | None" = None,
                        resample: "dict[str, Any] | None" = None,
                        soft_labels: "dict[str, Any] | None" = None, human_labels: bool = True,
                        teacher_thresholds: "list[float | None] | None" = None) -> Any:
    """Read Parquet files and map them to model batches on CPU tasks.

    ``soft_labels`` (sample_id → a teacher's probabilities, ``teacher_labels``) fill the labels
    a row leaves unknown; ``human_labels`` False drops the rows' own labels first;
    ``teacher_thresholds`` (the teacher's, per AU) add ``hard_labels`` (``BatchBuilder``)."""
    from components.configuration import to_dict

    # Read tasks take data_cpus like the transform: Ray's default of one whole CPU per read task
    # never schedules when training holds all but a fraction of a CPU (e.g. tune's concurrent trials).
    ds = read_store_frames(files, COLUMNS, num_cpus=data_cpus)
    return ds.map_batches(
        _transform, batch_size=32, batch_format="numpy", num_cpus=data_cpus,
        fn_kwargs={"spec": spec.to_dict(), "diff_steps": list(info["diff_steps"]),
                   "aus": list(info["aus"]), "augment": to_dict(augment) if augment else None,
                   "seed": seed, "label_override": label_override, "resample": resample,
                   "soft_labels": soft_labels, "human_labels": human_labels,
                   "teacher_thresholds": teacher_thresholds})


def split_datasets(split: Split, info: dict[str, Any], cfg: Any, train: bool = True,
                   val_labels: str = "own") -> dict[str, Any]:
    """Ray Datasets {train, val} (training) or {test} of ``split``, transformed for ``cfg.model``
    (its input declaration comes from the registry without building the model). ``val_labels``
    'teacher': the validation rows are scored against the teacher's decisions
    (``teacher_decision_labels``) instead of their own labels (they have none:
    ``workflows.core.training.validation_labels``)."""
    from dataclasses import asdict

    from components.models.registry import input_spec

    spec = input_spec(cfg.model, **cfg.model_kwargs)
    names = ("train", "val") if train else ("test",)
    shuffled = shuffled_labels(split.files["train"], cfg.seed) if getattr(cfg, "shuffle_labels", False) else None
    resample = None
    if getattr(cfg, "resample", False):
        from components.datasets.samplers import resample_spec

        resample = asdict(resample_spec(info["dataset"]))
    # Validation and test keep the rows' own labels: a teacher's probabilities are for training
    # only; its decisions (0/1, -1 unknown, through the same fill) score validation rows without any.
    sources = tuple(getattr(cfg, "label_sources", (LABEL_SOURCE_HUMAN,)))
    soft = {"train": teacher_labels(cfg.data, split.files["train"], info["aus"])
            if train and LABEL_SOURCE_TEACHER in sources else None}
    # The loss terms defined on binary labels read the teacher's decisions (``hard_labels``).
    thresholds = teacher_labelling(cfg.data)["thresholds"] if soft["train"] is not None else None
    if train and val_labels == "teacher":
        soft["val"] = teacher_decision_labels(cfg.data, split.files["val"], info["aus"])
    return {n: transformed_dataset(split.files[n], info, spec, cfg.augment if n == "train" else None,
                                   cfg.data_cpus, cfg.seed, label_override=shuffled if n == "train" else None,
                                   resample=resample if n == "train" else None,
                                   soft_labels=soft.get(n),
                                   teacher_thresholds=thresholds if n == "train" else None,
                                   human_labels=(LABEL_SOURCE_HUMAN in sources) if n == "train"
                                   else n not in soft)
            for n in names}
