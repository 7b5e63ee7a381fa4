"""What a feature store holds and how it splits: its info, its files, subject groups and label
counts, the subject-exclusive folds, label shuffling for controls, and its fingerprint. Ray-free.

Subjects are split by fold (``components.datasets.folds``); a split selects whole Parquet files,
since the store is laid out as ``frames/<dataset>/<subject>/<video>.parquet``. Reading the
selected files into Ray Datasets is ``workflows.store_reader``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
import pyarrow.dataset as pads

from components import storage
from components.errors import UserError

T = TypeVar("T")

__all__ = ["SplitConfig", "Split", "store_info", "teacher_labels", "teacher_labelling", "teacher_decision_labels", "load_split", "fold_count", "frames_files",
           "subject_groups", "subject_label_counts", "balanced_pos_weight", "fold_spec", "subject_splits",
           "write_shuffled_labels", "label_coverage", "store_fingerprint", "subject_sample"]

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
    """The store's ``store.json`` (dataset, AU list, diff steps, image size, schema version).

    A store without an AU list of its own (unlabeled video) that a teacher has labelled
    (``labels.json``, ``workflows.label``) has the teacher's labels' AU list (``aus_from``: 'labels').
    """
    uri = storage.join(store, "store.json")
    if not storage.exists(uri):
        raise UserError(f"not a feature store (no store.json): {store}; run `facsflow preprocess` first")
    info = json.loads(storage.read_text(uri))
    labels = storage.join(store, "labels.json")
    if not info.get("aus") and storage.exists(labels):
        info["aus"], info["aus_from"] = json.loads(storage.read_text(labels))["aus"], "labels"
    return info


def teacher_labels(store: str, files: list[str], aus: "list[int] | tuple[int, ...]") -> dict[str, list[float]]:
    """sample_id → a teacher's soft labels (``LABELS_SCHEMA``, NaN unknown) for the rows of the
    given ``frames/`` files, read from their ``labels/`` files; rows of files without one are
    absent. Raises naming the store when it has no finished labelling or another AU list.

    The mapping is held whole in the calling process (evaluation's scoring of a split); training
    joins the same files per task instead (``workflows.core.store_reader.LabelJoin``)."""
    done = storage.join(store, "labels.json")
    if not storage.exists(done):
        raise UserError(f"{store} has no teacher labels (no labels.json): run `facsflow label --data {store}` "
                        "first, or train without label_sources 'teacher'")
    have = [int(a) for a in json.loads(storage.read_text(done))["aus"]]
    if have != [int(a) for a in aus]:
        raise UserError(f"{store}: the teacher's labels are for AUs {have}, training uses {list(aus)}")
    frames_root = storage.join(store, "frames") + "/"
    fs, _ = storage.resolve(store)
    out: dict[str, list[float]] = {}
    for f in files:
        uri = storage.join(store, "labels", f[len(frames_root):]) if f.startswith(frames_root) else ""
        if not uri or not storage.exists(uri):
            continue
        table = pads.dataset(storage.resolve(uri)[1], filesystem=fs, format="parquet").to_table(
            columns=["sample_id", "soft_labels"])
        out.update(zip(table.column("sample_id").to_pylist(), table.column("soft_labels").to_pylist()))
    return out


def teacher_labelling(store: str) -> dict[str, Any]:
    """The store's finished labelling (``labels.json``): ``source`` (the teacher, as every labels
    row names it), ``aus`` and ``thresholds`` (the teacher's, per AU of ``aus``; None for an AU it
    does not predict). Raises naming the store when it has none, or one written before the
    thresholds were recorded."""
    uri = storage.join(store, "labels.json")
    if not storage.exists(uri):
        raise UserError(f"{store} has no teacher labels (no labels.json): run `facsflow label --data {store}` first")
    done = json.loads(storage.read_text(uri))
    if len(done.get("thresholds") or ()) != len(done["aus"]):
        raise UserError(f"{uri} does not record the teacher's thresholds (labelled by an older facsflow): label "
                        f"again with `facsflow label --data {store} --no-resume`")
    return done


def teacher_decision_labels(store: str, files: list[str], aus: "list[int] | tuple[int, ...]"
                            ) -> dict[str, list[int]]:
    """sample_id → the teacher's decisions (1/0, -1 unknown: ``components.metrics.agreement.
    teacher_decisions`` at the thresholds ``labels.json`` records) for the rows of the given
    ``frames/`` files that have teacher labels: the labels validation and evaluation score a
    student against where the rows have none of their own."""
    from components.metrics.agreement import teacher_decisions

    thresholds = teacher_labelling(store)["thresholds"]
    soft = teacher_labels(store, files, aus)
    if not soft:
        return {}
    ids = list(soft)
    dec = teacher_decisions(np.array([soft[i] for i in ids], np.float64), thresholds)
    return dict(zip(ids, dec.tolist()))


def frames_files(store: str) -> list[str]:
    return storage.list_files(storage.join(store, "frames"), ".parquet")


SCAN_THREADS = 8
"""Frames files the driver's whole-store scans (``subject_groups``, ``subject_label_counts``)
read at once."""


def _per_file(store: str, columns: list[str], fn: Callable[[Any], T]) -> list[T]:
    """``fn(table of columns)`` for every frames file of ``store``, ``SCAN_THREADS`` files at a
    time; ``fn`` returns a small summary. Memory stays flat in the store's size: a
    ``pyarrow.dataset`` over all the files keeps every file's parsed footer (~75 kB each), and
    read whole the columns were held together; on a million-row store (2,000 files) either grew
    the train driver's private memory by ~150 MiB (docs/scaling.md)."""
    import pyarrow.parquet as pq
    from concurrent.futures import ThreadPoolExecutor

    def one(uri: str) -> T:
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as f:
            return fn(pq.read_table(f, columns=columns, use_threads=False))

    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        return list(pool.map(one, frames_files(store)))


def _distinct_groups(table: Any) -> list[tuple[str, str]]:
    # Distinct pairs in Arrow: no Python object per row (a million-row store has a million).
    pairs = table.group_by(["subject", "group"]).aggregate([])
    return list(zip(pairs.column("subject").to_pylist(), pairs.column("group").to_pylist()))


def subject_groups(store: str) -> dict[str, str]:
    """subject → identity group, read from the store's id columns only, file by file."""
    return dict(sorted(p for pairs in _per_file(store, ["subject", "group"], _distinct_groups) for p in pairs))


def _label_counts(table: Any) -> dict[str, np.ndarray]:
    if not table.num_rows:
        return {}
    labels = table.column("labels").combine_chunks()
    width = int(labels.value_lengths()[0].as_py())
    # A store without labels of its own (unlabeled video) has empty label lists: no AU columns.
    flat = (labels.flatten().to_numpy(zero_copy_only=False).reshape(-1, width) if width
            else np.zeros((len(labels), 0), np.int8))
    # One pass over the rows by subject index (not one comparison of every row per subject: a
    # million rows of a thousand subjects made that a billion string comparisons).
    codes = table.column("subject").combine_chunks().dictionary_encode()
    index = codes.indices.to_numpy(zero_copy_only=False)
    out = np.zeros((len(codes.dictionary), 2, width), np.int64)
    np.add.at(out[:, 0], index, flat == 1)
    np.add.at(out[:, 1], index, flat >= 0)
    return {str(name): out[i] for i, name in enumerate(codes.dictionary.to_pylist())}


def subject_label_counts(store: str) -> dict[str, np.ndarray]:
    """subject → int array (2, n_AU): positive labels and known labels per AU (store AU order),
    read from the label column only, file by file."""
    totals: dict[str, np.ndarray] = {}
    for counts in _per_file(store, ["subject", "labels"], _label_counts):
        for subject, c in counts.items():
            totals[subject] = totals[subject] + c if subject in totals else c
    return dict(sorted(totals.items()))


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


def subject_sample(subjects: "list[str]", n: int) -> list[str]:
    """At most ``n`` of ``subjects`` (0: all), sorted: the ``n`` whose names hash lowest, so the
    sample depends on the names only (not their order or the process) and a larger ``n`` keeps
    every subject of a smaller one. Scoring a store too large to score whole (evaluate, ensemble)."""
    if n < 0:
        raise ValueError(f"a subject sample needs n >= 0, got {n}")
    if not n or n >= len(subjects):
        return sorted(subjects)
    return sorted(sorted(subjects, key=lambda s: hashlib.sha1(s.encode()).hexdigest())[:n])


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


def load_split(store: str, info: dict[str, Any], cfg: SplitConfig,
               counts: "dict[str, np.ndarray] | None" = None) -> Split:
    """Split the store's subjects for ``cfg.fold``; test subjects never reach train or val.
    ``counts``: the store's ``subject_label_counts`` where the caller already has them (a scan
    of every frames file otherwise)."""
    from components.datasets.folds import fold_hash, split_subjects

    groups = subject_groups(store)
    if cfg.by == "subject":
        groups = {s: s for s in groups}
    spec = fold_spec(info["dataset"], cfg)
    counts = subject_label_counts(store) if counts is None else counts
    try:
        parts = split_subjects(spec, cfg.fold, list(groups), groups, subject_splits(store),
                               positives={k: v[0] for k, v in counts.items()})
    except ValueError as e:
        raise UserError(f"cannot split {store} into folds: {e}") from None
    split = Split(cfg.fold, sorted(parts["train"]), sorted(parts["val"]), sorted(parts["test"]),
                  fold_hash(spec), getattr(spec, "source", "") + (" (split by subject: identities shared "
                                                                  "across splits)" if cfg.by == "subject" else ""))
    for name in ("train", "val", "test"):
        split.files[name] = _split_files(store, getattr(split, name))
        if name != "test" and not split.files[name]:
                raise UserError(f"fold {cfg.fold}: no {name} frames in {store} (subjects {getattr(split, name)})")
    return split


def fold_count(store: str, cfg: SplitConfig) -> int:
    """Number of folds of the store's dataset under ``cfg``."""
    return int(fold_spec(store_info(store)["dataset"], cfg).n_folds)


def _rel(f: str, frames: str) -> str:
    root = frames.rstrip("/") + "/"
    if not f.startswith(root):
        raise ValueError(f"{f} is not under {frames}")
    return f[len(root):]


def write_shuffled_labels(files: list[str], frames: str, out: str, seed: int) -> int:
    """Control experiment: every training row gets the labels of another training row (one
    permutation over the whole training set), so base rates stay and image-label pairs break.
    Written as a label table beside nothing but the run: ``out/<path under frames>`` per frames
    file (sample_id, labels), for training to join by sample id; returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, _ = storage.resolve(files[0])
    table = pads.dataset([storage.resolve(f)[1] for f in files], filesystem=fs,
                         format="parquet").to_table(columns=["sample_id", "labels"])
    ids = table.column("sample_id").to_pylist()
    labels = table.column("labels").to_pylist()
    perm = np.random.default_rng(seed).permutation(len(ids))
    shuffled = {i: labels[j] for i, j in zip(ids, perm)}
    for f in files:
        own = pads.dataset(storage.resolve(f)[1], filesystem=fs, format="parquet").to_table(columns=["sample_id"])
        part = own.column("sample_id").to_pylist()
        uri = storage.join(out, _rel(f, frames))
        storage.makedirs(uri.rsplit("/", 1)[0])
        out_fs, path = storage.resolve(uri)
        with out_fs.open_output_stream(path) as sink:
            pq.write_table(pa.table({"sample_id": part, "labels": [shuffled[i] for i in part]}), sink)
    return len(ids)


def label_coverage(files: list[str], frames: str, labels: str) -> tuple[int, int]:
    """(rows without a label, rows) of the given frames files against the label table under
    ``labels`` (one file per frames file, same relative path), from Parquet footers only: a
    frames file without a label file counts whole, one with fewer label rows counts the gap."""
    import pyarrow.parquet as pq

    def rows(uri: str) -> int:
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as f:
            return pq.ParquetFile(f).metadata.num_rows

    missing = total = 0
    for f in files:
        n = rows(f)
        uri = storage.join(labels, _rel(f, frames))
        missing += n if not storage.exists(uri) else max(0, n - rows(uri))
        total += n
    return missing, total


def store_fingerprint(store: str) -> str:
    """Hash of store.json and the names and sizes of its files (cheap, changes with the data)."""
    fs, _ = storage.resolve(store)
    h = hashlib.sha256(storage.read_text(storage.join(store, "store.json")).encode())
    for f in frames_files(store):
        info = fs.get_file_info(storage.resolve(f)[1])
        h.update(f"{f.rsplit('/', 3)[-3:]}:{info.size}".encode())
    return h.hexdigest()[:16]
