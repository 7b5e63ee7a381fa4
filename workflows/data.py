"""Feature store → Ray Datasets for training, validation, test and prediction.

Subjects are split by fold (``components.datasets.folds``); a split selects whole Parquet files,
since the store is laid out as ``frames/<dataset>/<subject>/<video>.parquet``. Decoding,
augmentation and the model's input transform run as Ray Data tasks on CPU.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.dataset as pads

from components import storage
from components.batches import AugmentConfig, BatchBuilder
from components.models.base import InputSpec

__all__ = ["SplitConfig", "Split", "store_info", "load_split", "fold_count", "frames_files",
           "transformed_dataset", "store_fingerprint"]

# "dataset" with "subject" and "video": the full video key (components.video_key) that pairs,
# windows and the resampling stride group by.
COLUMNS = ["sample_id", "dataset", "subject", "video", "frame_order", "image", "landmarks", "landmark_diff",
           "diff_valid", "labels", "intensities", "blendshapes"]
OPTIONAL_COLUMNS = ("blendshapes",)
"""Columns read only where the store has them (stores written before they existed lack them)."""


@dataclass(frozen=True)
class SplitConfig:
    """How subjects are split into train, validation and test."""

    fold: int = 1
    """Fold number (1-based, as the fold lists number them) whose test subjects are held out."""
    folds: str = "auto"
    """'auto': the dataset's standard fold lists where it has them, else k-fold by identity group;
    'kfold': always k-fold by identity group."""
    k: int = 3
    """Folds for k-fold by identity group."""
    val_fraction: float = 0.2
    """Share of the training identity groups carved out for validation."""
    seed: int = 0
    """Seed of the k-fold and validation assignment."""
    train_folds: int = 0
    """Datasets with an official split (Aff-Wild2): also this many folds by identity group over
    the official training split, numbered 2..train_folds+1 after the official fold 1 (paper 001
    §4.3: 4); the official validation subjects stay out of them (``FoldSpec.train_folds``)."""
    by: str = "group"
    """'group': folds never split an identity group (the default and the only leak-free choice);
    'subject': every subject its own group, for data from fewer identities than folds (test
    subjects then share identities with training ones: the report says so)."""

    def __post_init__(self) -> None:
        if self.by not in ("group", "subject"):
            raise ValueError(f"by must be 'group' or 'subject', got {self.by!r}")
        if self.fold < 1 or self.k < 2:
            raise ValueError(f"fold must be >= 0 and k >= 2, got fold={self.fold}, k={self.k}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.train_folds == 1 or self.train_folds < 0:
            raise ValueError(f"train_folds must be 0 or >= 2, got {self.train_folds}")
        if self.folds not in ("auto", "kfold"):
            raise ValueError(f"folds must be 'auto' or 'kfold', got {self.folds!r}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def store_info(store: str) -> dict[str, Any]:
    """The store's ``store.json`` (dataset, AU list, diff steps, image size, schema version)."""
    uri = storage.join(store, "store.json")
    if not storage.exists(uri):
        from workflows.runtime import UserError

        raise UserError(f"not a feature store (no store.json): {store}; run `facsflow preprocess` first")
    return json.loads(storage.read_text(uri))


def frames_files(store: str) -> list[str]:
    return storage.list_files(storage.join(store, "frames"), ".parquet")


def subject_groups(store: str) -> dict[str, str]:
    """subject → identity group, read from the store's id columns only."""
    fs, path = storage.resolve(storage.join(store, "frames"))
    files = [storage.resolve(f)[1] for f in frames_files(store)]
    if not files:
        return {}
    table = pads.dataset(files, filesystem=fs, format="parquet").to_table(columns=["subject", "group"])
    subj = table.column("subject").to_pylist()
    grp = table.column("group").to_pylist()
    return dict(sorted(set(zip(subj, grp))))


def subject_label_counts(store: str) -> dict[str, np.ndarray]:
    """subject → int array (2, n_AU): positive labels and known labels per AU (store AU order),
    read from the label column only."""
    fs, _ = storage.resolve(storage.join(store, "frames"))
    files = [storage.resolve(f)[1] for f in frames_files(store)]
    if not files:
        return {}
    table = pads.dataset(files, filesystem=fs, format="parquet").to_table(columns=["subject", "labels"])
    labels = table.column("labels").combine_chunks()
    width = int(labels.value_lengths()[0].as_py()) if len(labels) else 0
    flat = labels.flatten().to_numpy(zero_copy_only=False).reshape(-1, width) if width else np.zeros((0, 0))
    subjects = np.asarray(table.column("subject").to_pylist())
    return {str(s): np.stack([(flat[subjects == s] == 1).sum(0), (flat[subjects == s] >= 0).sum(0)])
            for s in np.unique(subjects)}


def balanced_pos_weight(counts: dict[str, np.ndarray], subjects: list[str], cap: float = 20.0) -> list[float]:
    """Per-AU BCE ``pos_weight`` = negatives / positives over ``subjects`` (PyTorch's class
    balancing), clipped to [1, ``cap``]; 1 for an AU without positives."""
    present = [counts[s] for s in subjects if s in counts]
    if not present:
        return []
    total = np.sum(present, axis=0)
    pos, known = total[0].astype(float), total[1].astype(float)
    w = np.where(pos > 0, (known - pos) / np.maximum(pos, 1.0), 1.0)
    return [round(float(x), 4) for x in np.clip(w, 1.0, cap)]


@dataclass
class Split:
    """Subjects of train, validation and test for one fold, and the fold definition's hash."""

    fold: int
    train: list[str]
    val: list[str]
    test: list[str]
    fold_hash: str
    source: str = ""
    files: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fold": self.fold, "train": self.train, "val": self.val, "test": self.test,
                "fold_hash": self.fold_hash, "source": self.source}

    def datasets(self, info: dict[str, Any], cfg: Any, train: bool = True) -> dict[str, Any]:
        """Ray Datasets {train, val} (training) or {test} transformed for ``cfg.model``."""
        from components.models.registry import build_model

        spec = build_model(cfg.model, info["aus"], **cfg.model_kwargs).input_spec()
        names = ("train", "val") if train else ("test",)
        shuffled = shuffled_labels(self.files["train"], cfg.seed) if getattr(cfg, "shuffle_labels", False) else None
        resample = None
        if getattr(cfg, "resample", False):
            from dataclasses import asdict

            from components.datasets.samplers import resample_spec

            resample = asdict(resample_spec(info["dataset"]))
        return {n: transformed_dataset(self.files[n], info, spec, cfg.augment if n == "train" else None,
                                       cfg.data_cpus, cfg.seed, label_override=shuffled if n == "train" else None,
                                       resample=resample if n == "train" else None)
                for n in names}


def _split_files(store: str, subjects: list[str]) -> list[str]:
    wanted = {_safe(s) for s in subjects}
    return [f for f in frames_files(store) if f.rsplit("/", 2)[-2] in wanted]


def fold_spec(dataset: str, cfg: SplitConfig) -> Any:
    """The dataset's fold definition ('auto'), or k-fold by identity group ('kfold')."""
    from dataclasses import replace

    from components.datasets.folds import FoldSpec, load_folds

    if cfg.folds == "auto":
        spec = load_folds(dataset, default_k=cfg.k, seed=cfg.seed)
    else:
        spec = FoldSpec(dataset=dataset, kind="kfold", k=cfg.k, seed=cfg.seed)
    if cfg.train_folds and spec.kind != "split":
        from workflows.runtime import UserError

        raise UserError(f"split.train_folds={cfg.train_folds} needs a dataset with an official split "
                         f"(fold kind 'split', e.g. affwild2); {dataset} folds are of kind {spec.kind!r}")
    return replace(spec, val_fraction=cfg.val_fraction,
                   **({"train_folds": cfg.train_folds} if cfg.train_folds else {}))


def subject_splits(store: str) -> dict[str, str]:
    """subject → official split (e.g. ABAW train/validation), from the store's subjects.json."""
    uri = storage.join(store, "subjects.json")
    if not storage.exists(uri):
        return {}
    return {s: v.get("split", "") for s, v in json.loads(storage.read_text(uri)).items() if v.get("split")}


def load_split(store: str, info: dict[str, Any], cfg: SplitConfig) -> Split:
    """Split the store's subjects for ``cfg.fold``; test subjects never reach train or val."""
    from components.datasets.folds import fold_hash, split_subjects

    groups = subject_groups(store)
    if cfg.by == "subject":
        groups = {s: s for s in groups}
    spec = fold_spec(info["dataset"], cfg)
    try:
        parts = split_subjects(spec, cfg.fold, list(groups), groups, subject_splits(store),
                               positives={k: v[0] for k, v in subject_label_counts(store).items()})
    except ValueError as e:
        from workflows.runtime import UserError

        raise UserError(f"cannot split {store} into folds: {e}") from None
    split = Split(cfg.fold, sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]),
                  fold_hash(spec), getattr(spec, "source", "") + (" (split by subject: identities shared "
                                                                  "across splits)" if cfg.by == "subject" else ""))
    for name in ("train", "val", "test"):
        split.files[name] = _split_files(store, getattr(split, name))
        if name != "test" and not split.files[name]:
            from workflows.runtime import UserError

            raise UserError(f"fold {cfg.fold}: no {name} frames in {store} (subjects {getattr(split, name)})")
    return split


def fold_count(store: str, cfg: SplitConfig) -> int:
    """Number of folds of the store's dataset under ``cfg``."""
    return int(fold_spec(store_info(store)["dataset"], cfg).n_folds)


def _transform(batch: dict[str, Any], spec: dict[str, Any], diff_steps: list[int], aus: list[int],
               augment: "dict[str, Any] | None", seed: int,
               label_override: "dict[str, Any] | None" = None,
               resample: "dict[str, Any] | None" = None) -> dict[str, np.ndarray]:
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
    out = BatchBuilder(InputSpec.from_dict(spec), diff_steps, len(aus), aug, seed=rng_seed)(batch)
    # Training reads tensors only (iter_torch_batches cannot convert string id columns).
    return {k: v for k, v in out.items() if v.dtype.kind in "fiub"}


def shuffled_labels(files: list[str], seed: int) -> dict[str, list[int]]:
    """Control experiment: every training row gets the labels of another training row (one
    permutation over the whole training set), so base rates stay and image-label pairs break."""
    fs, _ = storage.resolve(files[0])
    table = pads.dataset([storage.resolve(f)[1] for f in files], filesystem=fs,
                         format="parquet").to_table(columns=["sample_id", "labels"])
    ids = table.column("sample_id").to_pylist()
    labels = table.column("labels").to_pylist()
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {i: labels[j] for i, j in zip(ids, perm)}


def read_store_frames(files: list[str], columns: list[str], num_cpus: "float | None" = None) -> Any:
    """A Ray Dataset over feature-store Parquet files (``file://`` or remote URIs), streaming.

    Reads through Ray Data's V1 Parquet datasource unless the user chose a reader with Ray's own
    switch ``RAY_DATA_USE_DATASOURCE_V2``. Measured on 2026-12-02 (Ray 2.60, 96 store files of 16
    frames, 2-core machine): the default V2 reader (ListFiles -> ReadFiles) took 7.5-11 s per
    pass and delivered its first row only at the end; V1 gave the first batch after 0.15 s and
    the whole pass in 0.7 s. Every epoch re-reads its files, so the V2 wait was each epoch's
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
                        resample: "dict[str, Any] | None" = None) -> Any:
    """Read Parquet files and map them to model batches on CPU tasks."""
    from components.configuration import to_dict

    # Read tasks take data_cpus like the transform: Ray's default of one whole CPU per read task
    # never schedules when training holds all but a fraction of a CPU (e.g. tune's concurrent trials).
    ds = read_store_frames(files, COLUMNS, num_cpus=data_cpus)
    return ds.map_batches(
        _transform, batch_size=32, batch_format="numpy", num_cpus=data_cpus,
        fn_kwargs={"spec": spec.to_dict(), "diff_steps": list(info["diff_steps"]),
                   "aus": list(info["aus"]), "augment": to_dict(augment) if augment else None,
                   "seed": seed, "label_override": label_override, "resample": resample})


def store_fingerprint(store: str) -> str:
    """Hash of store.json and the names and sizes of its files (cheap, changes with the data)."""
    fs, _ = storage.resolve(store)
    h = hashlib.sha256(storage.read_text(storage.join(store, "store.json")).encode())
    for f in frames_files(store):
        info = fs.get_file_info(storage.resolve(f)[1])
        h.update(f"{f.rsplit('/', 3)[-3:]}:{info.size}".encode())
    return h.hexdigest()[:16]
