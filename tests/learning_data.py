"""A small synthetic AU learning set, built without Ray, shared by the learning tests and the
model benchmark.

``build_learning_set`` renders a data set with the synthetic generator
(``components.datasets.synth.generator``) from real face photos, reads it back with the layout's adapter,
runs every video through the real face pipeline (``components.store.rows.process_unit``) and
splits subjects into train / validation / test by identity group (``components.datasets.folds``:
k-fold by group, validation carved from the training groups), so no identity is on both sides.
The decoded crops and every store column are cached as one ``.npz`` under a folder keyed by the
config and the generator / preprocessing source, so a second run loads in about a second.

Columns of a ``Rows`` dict (numpy, first axis N): ``crop`` (N, S, S, 3) uint8 aligned crops,
``landmarks`` (N, 136), ``landmark_diff`` (N, len(diff_steps) * 136), ``diff_valid``,
``labels`` (N, n_AU) int8 1/0/-1, ``intensities`` (N, n_AU) int8 0-5 or -1 (the manifest layout
has no intensities: all -1; the disfa layout has them), ``occluded`` (N,) bool (the generator's
hand-occluder flag from ``synth_meta/occlusions.csv``), ``sample_id``, ``subject``, ``group``,
``video``, ``frame``, ``frame_order``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from components.au import DATASET_AUS
from components.batches import VIDEO_BATCH_ROWS, AugmentConfig, BatchBuilder
from components.models.base import InputSpec
from components.store.splits import balanced_pos_weight
from workflows.demo import DEMO_FACE_PHOTOS, link_face_photos

if TYPE_CHECKING:
    from tests.learning_recipes import Recipe

__all__ = ["FACE_PHOTOS", "LearningSetConfig", "LearningSet", "Rows", "build_learning_set", "take",
           "batches", "cache_root", "link_face_photos", "LEARNING_SET", "Trained", "train", "predict", "evaluate"]

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))
FACE_PHOTOS = DEMO_FACE_PHOTOS
"""Source photos: the demo's five files, eight usable faces (multi_face.jpg holds several)."""

Rows = dict[str, np.ndarray]
_STR_COLUMNS = ("sample_id", "subject", "group", "video")
# Code whose change makes a cached set stale: the generator, the adapters, the face pipeline.
_SOURCES = ("components/datasets/synth/generator*.py", "components/datasets/manifest.py", "components/datasets/disfa.py",
            "components/store/rows.py", "components/faces/*.py")
_BUILD_VERSION = 1
"""Bump when the way this file builds the rows changes (it is not hashed: recipes change often)."""


@dataclass(frozen=True)
class LearningSetConfig:
    """What ``build_learning_set`` renders and how it splits it."""

    layout: str = "manifest"
    """Generator layout read back by its adapter: 'manifest' (unknown cells, no intensities)
    or 'disfa' (intensities 0-5, occurrence = level >= 2, no unknowns, one video per subject)."""
    identities: int = 8
    """Source faces used (identity groups); the five photos hold eight."""
    subjects_per_identity: int = 2
    """Pseudo-subjects per identity (same group: never split across train and test)."""
    videos_per_subject: int = 2
    """Videos per subject (disfa joins them into one recording)."""
    frames_per_video: int = 40
    """Frames per video."""
    frame_size: int = 256
    """Rendered frame side in pixels (the face pipeline aligns crops to ``crop_size``)."""
    crop_size: int = 112
    """Side of the aligned crops kept in the set."""
    occlusion_rate: float = 0.3
    """Probability that a video has a hand-over-face episode."""
    aus: tuple[int, ...] = DATASET_AUS["synthetic"]
    """AUs rendered and labelled (all DISFA-coded, so both layouts can carry them)."""
    diff_steps: tuple[int, ...] = (1, 2, 4)
    """Temporal landmark difference steps stored per row."""
    folds: int = 3
    """k of the k-fold split by identity group."""
    fold: int = 1
    """Which fold is the test set (1-based)."""
    seed: int = 0
    """Generator seed."""

    def __post_init__(self) -> None:
        if self.layout not in ("manifest", "disfa"):
            raise ValueError(f"layout must be manifest or disfa, got {self.layout!r}")
        if not 1 <= self.fold <= self.folds:
            raise ValueError(f"fold {self.fold} outside 1..{self.folds}")

    def key(self) -> str:
        """Cache key: this config but the test fold (every fold splits the same rendered rows)
        plus a hash of the code that produced the data."""
        rendered = {k: v for k, v in asdict(self).items() if k != "fold"}
        h = hashlib.sha256(json.dumps([_BUILD_VERSION, rendered], sort_keys=True, default=list).encode())
        for pattern in _SOURCES:
            for path in sorted(ROOT.glob(pattern)):
                h.update(path.name.encode() + path.read_bytes())
        return f"{self.layout}-{h.hexdigest()[:16]}"


LEARNING_SET = LearningSetConfig(videos_per_subject=3)
"""The set the learning test and the model benchmark use: 8 groups x 2 subjects x 3 videos x 40
frames. Three videos per subject (not two) so the single validation group shows every AU, which
threshold tuning needs."""


@dataclass
class LearningSet:
    """The built set: every row, the subject split and where the rendered data lies."""

    config: LearningSetConfig
    aus: tuple[int, ...]
    rows: Rows
    splits: dict[str, list[str]]
    """'train', 'val', 'test' → subjects."""
    data_dir: Path
    """The generator's output (labels, frames, ``synth_meta/``)."""
    rejects: int = 0
    """Frames the face pipeline rejected (no face, landmark failure)."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def diff_steps(self) -> tuple[int, ...]:
        return self.config.diff_steps

    def part(self, name: str) -> Rows:
        """Rows of the subjects of split ``name`` ('train', 'val', 'test' or 'all')."""
        if name == "all":
            return self.rows
        if name not in self.splits:
            raise KeyError(f"no split {name!r}; have {sorted(self.splits)} and 'all'")
        return take(self.rows, np.isin(self.rows["subject"], self.splits[name]))


def take(rows: Rows, index: "np.ndarray | Sequence[int]") -> Rows:
    """The rows ``index`` (integer positions or a boolean mask) of every column."""
    idx = np.asarray(index)
    return {k: v[idx] for k, v in rows.items()}


def cache_root() -> Path:
    """``$FACSFLOW_TEST_CACHE`` or ``<tmp>/facsflow-test-cache`` (created by the builder)."""
    env = os.environ.get("FACSFLOW_TEST_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "facsflow-test-cache"


def _occlusion_flags(meta: Path) -> dict[tuple[str, str, int], bool]:
    with open(meta / "occlusions.csv", newline="") as fh:
        return {(r["subject"], r["video"], int(r["frame"])): r["occluded"] == "1" for r in csv.DictReader(fh)}


def _render_and_read(cfg: LearningSetConfig, work: Path) -> tuple[Rows, int, dict[str, Any]]:
    import pyarrow as pa

    from components.datasets.base import build_adapter
    from components.datasets.synth.generator import SynthConfig, generate
    from components.faces.pipeline import FacePipeline, FacePipelineConfig
    from components.store.rows import StoreConfig, decode_jpeg, process_unit

    data = work / "data"
    summary = generate(SynthConfig(
        out=str(data), layout=cfg.layout, faces=str(link_face_photos(MEDIA, work)), seed=cfg.seed, aus=cfg.aus,
        subjects_per_identity=cfg.subjects_per_identity, videos_per_subject=cfg.videos_per_subject,
        frames_per_video=cfg.frames_per_video, frame_size=cfg.frame_size, occlusion_rate=cfg.occlusion_rate,
        max_identities=cfg.identities))
    options: dict[str, Any] = {"aus": cfg.aus}
    if cfg.layout == "disfa":
        options["groups"] = str(data / "synth_meta" / "groups.csv")
    adapter = build_adapter(cfg.layout, data, **options)
    pipeline = FacePipeline(FacePipelineConfig(align_size=cfg.crop_size))
    store = StoreConfig(diff_steps=cfg.diff_steps)
    tables, rejects = [], 0
    for unit in adapter.units():
        result = process_unit(unit, pipeline, store)
        tables.append(result.frames)
        rejects += result.rejects.num_rows
    table = pa.concat_tables(tables)
    flags = _occlusion_flags(data / "synth_meta")
    cols = table.to_pydict()
    k = len(cfg.aus)
    rows: Rows = {
        "crop": np.stack([decode_jpeg(b) for b in cols["image"]]),
        "landmarks": np.asarray(cols["landmarks"], np.float32),
        "landmark_diff": np.asarray(cols["landmark_diff"], np.float32),
        "diff_valid": np.asarray(cols["diff_valid"], bool),
        "labels": np.asarray(cols["labels"], np.int8),
        "intensities": np.asarray([v if len(v) else [-1] * k for v in cols["intensities"]], np.int8),
        "occluded": np.asarray([flags[(s, v, f)] for s, v, f in zip(cols["subject"], cols["video"], cols["frame"])]),
        "frame": np.asarray(cols["frame"], np.int32),
        "frame_order": np.asarray(cols["frame_order"], np.int32),
    }
    for name in _STR_COLUMNS:
        rows[name] = np.asarray(cols[name], dtype=str)
    info = {"identities": summary.identities, "subjects": summary.subjects, "frames": summary.frames,
            "occluded_frames": summary.occluded_frames, "base_rates": summary.base_rates}
    return rows, rejects, info


def _split(cfg: LearningSetConfig, rows: Rows) -> dict[str, list[str]]:
    from components.datasets.folds import FoldSpec, split_subjects

    groups = dict(zip(rows["subject"].tolist(), rows["group"].tolist()))
    spec = FoldSpec(dataset="synthetic", kind="kfold", k=cfg.folds, seed=cfg.seed)
    # Validation carved as training carves it (every AU with positives on both sides if possible).
    positives = {s: (rows["labels"][rows["subject"] == s] == 1).sum(0) for s in groups}
    return split_subjects(spec, cfg.fold, groups, groups, positives=positives)


def build_learning_set(config: "LearningSetConfig | None" = None, cache: "Path | None" = None) -> LearningSet:
    """Render, preprocess and split the set ``config`` describes, or load it from the cache.

    ``cache`` defaults to ``cache_root()``; the set lives in ``<cache>/learning/<config key>/``.
    Raises FileNotFoundError when the face photos of ``../shared/media`` are absent.
    """
    cfg = config or LearningSetConfig()
    final = (cache or cache_root()) / "learning" / cfg.key()
    if not (final / "rows.npz").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
        rows, rejects, info = _render_and_read(cfg, work)
        np.savez(work / "rows.npz", **rows)
        (work / "info.json").write_text(json.dumps({**info, "rejects": rejects}, indent=2, sort_keys=True))
        try:
            os.rename(work, final)     # atomic: a concurrent builder's copy wins or ours does
        except OSError:
            shutil.rmtree(work, ignore_errors=True)
    with np.load(final / "rows.npz") as z:
        rows = {k: z[k] for k in z.files}
    info = json.loads((final / "info.json").read_text())
    return LearningSet(cfg, tuple(cfg.aus), rows, _split(cfg, rows), final / "data",
                       rejects=int(info.pop("rejects")), info=info)


def batches(rows: Rows, spec: InputSpec, aus: Sequence[int], augment: "AugmentConfig | None", batch_size: int,
            shuffle: bool, seed: int, *, store_aus: "Sequence[int] | None" = None,
            diff_steps: Sequence[int] = (1, 2, 4), by_video: bool = False,
            shuffle_frames: bool = False) -> Iterator[dict[str, Any]]:
    """Model batches over ``rows`` through ``components.batches.BatchBuilder``.

    ``aus``: the model's AU list, picked from the set's columns ``store_aus`` (default the
    same list). ``shuffle`` permutes rows (``by_video``: permutes whole videos and keeps each
    video's frames together in frame order, and a batch holds frames of one video only: the
    video context pairwise-rank pairs frames and computes window statistics within; with
    ``shuffle_frames`` each video's frames are permuted first, so a batch samples the whole
    video rather than one stretch of it). Tensors come out as torch tensors; ``video_index``
    identifies subject and video together (video names such as 'V1' repeat across subjects).
    """
    store_aus = tuple(store_aus or aus)
    missing = [a for a in aus if a not in store_aus]
    if missing:
        raise ValueError(f"AU(s) {missing} are not in the set's AU list {list(store_aus)}")
    builder = BatchBuilder(spec, diff_steps, len(aus), augment, seed=seed,
                           au_index=[store_aus.index(a) for a in aus])
    rng = np.random.default_rng(seed)
    n = len(rows["subject"])
    if by_video:
        keys = np.char.add(np.char.add(rows["subject"], "/"), rows["video"])
        videos = np.unique(keys)
        if shuffle:
            videos = videos[rng.permutation(len(videos))]
        order = np.concatenate([np.flatnonzero(keys == v)[np.argsort(rows["frame_order"][keys == v], kind="stable")]
                                for v in videos])
        if shuffle_frames:
            order = np.concatenate([rng.permutation(order[keys[order] == v]) for v in videos])
        # Cut at video boundaries too: a batch never mixes two videos.
        keys = keys[order]
        starts = [i for i in range(n) if i == 0 or keys[i] != keys[i - 1]] + [n]
        chunks = [order[i:min(i + batch_size, j)] for a, j in zip(starts[:-1], starts[1:])
                  for i in range(a, j, batch_size)]
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
        chunks = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    for chunk in chunks:
        part = take(rows, chunk)
        out = builder(part)
        out["video_index"] = np.array([zlib.crc32(f"{s}/{v}".encode()) for s, v in zip(part["subject"], part["video"])],
                                      np.int64)
        yield {k: torch.from_numpy(v) if v.dtype.kind in "fiub" else v for k, v in out.items()}


@dataclass
class Trained:
    """A trained model and what its training cost."""

    name: str
    model: Any
    seconds: float
    """Wall time of training."""
    cpu_seconds: float
    """This process's CPU time of training (one thread: the idle-machine wall time)."""
    samples: int
    history: list[float]
    """Mean training loss per epoch (pairwise-rank: per epoch of each step in turn)."""
    stage_history: "dict[str, list[float]]" = field(default_factory=dict)
    """A multi-step family's losses per step (each step's own loss: hinge, uncertainty, MAE)."""
    val_scores: list[float] = field(default_factory=list)
    """Validation mean F1 at thresholds tuned on the validation subjects, per epoch (a
    multi-step family: per epoch of its last step, the one that makes the AU outputs)."""
    selected_epoch: int = 0
    """The epoch (1-based, of ``val_scores``) whose weights the model holds."""

    @property
    def samples_per_s(self) -> float:
        """Training throughput: frames through a training step per second of wall time."""
        return self.samples / self.seconds if self.seconds else float("nan")


def _every(rows: Rows, every: int) -> Rows:
    return rows if every <= 1 else take(rows, rows["frame_order"] % every == 0)


def train(name: str, data: LearningSet, recipe: "Recipe | None" = None, seed: int = 0,
          device: str = "cpu") -> Trained:
    """Train registered model ``name`` on the training subjects with ``components.training``
    (multi-step families such as pairwise-rank: their steps with ``fit_stages``, each step on
    its own cosine schedule) on ``device`` (CPU unless a sweep asks for a GPU), as the Ray Train
    loop does: after every epoch the validation subjects score it, and the model returned holds
    the best epoch's weights (``Recipe.select``), in eval mode, on ``device``."""
    import time

    from components.models import build_model
    from components.thresholds import validation_decisions
    from components.training import (OptimConfig, build_optimizer, build_scheduler, fit_stages, to_device,
                                     train_step)

    from tests.learning_recipes import RECIPES

    rec = recipe or RECIPES[name]
    val_rows = data.part("val")
    val_scores: list[float] = []
    kept: dict[str, Any] = {"score": -1.0, "state": None, "epoch": 0}

    def score_epoch() -> None:
        # The Ray Train loop's model selection (``TrainConfig.select='best'``): each epoch is
        # ranked by its validation mean F1 at thresholds tuned on those outputs, and the run
        # hands on the best epoch's weights, never the test subjects' say.
        res = predict(model, val_rows, data)
        score = validation_decisions(res["probs"], res["labels"], data.aus)["val_tuned_mean_f1"]
        val_scores.append(score)
        if rec.select == "best" and score > kept["score"]:
            kept.update(score=score, state=copy.deepcopy(model.state_dict()), epoch=len(val_scores))

    torch.manual_seed(seed)
    model = build_model(name, data.aus, **dict(rec.kwargs))
    rows = _every(data.part("train"), rec.every)
    if rec.pos_weight:
        labels, subjects = rows["labels"], rows["subject"]
        counts = {s: np.stack([(labels[subjects == s] == 1).sum(0), (labels[subjects == s] >= 0).sum(0)])
                  for s in np.unique(subjects)}
        model.pos_weight = torch.tensor(balanced_pos_weight(counts, data.splits["train"]))
    spec, dev = model.input_spec(), torch.device(device)
    model.to(dev)
    augment = rec.augment
    cfg = OptimConfig(lr=rec.lr, schedule="cosine", amp="none")
    common = dict(store_aus=data.aus, diff_steps=data.diff_steps)
    history: list[float] = []
    stage_history: dict[str, list[float]] = {}
    samples = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    if rec.pairwise_epochs:
        epoch = iter(range(10**6))

        def epoch_batches(stage: str) -> Iterator[dict[str, Any]]:
            nonlocal samples
            # A video-ordered step (the mapping reads G from a batch's frames): cut as ``predict``
            # cuts. The pair steps sample each batch from the whole of one video (paper 004 §3.1
            # pairs any two frames of a video; consecutive stretches would pair only neighbours).
            ordered = stage in model.video_order_stages
            size = VIDEO_BATCH_ROWS if ordered else rec.batch_size
            for b in batches(rows, spec, data.aus, augment, size, True, seed + next(epoch),
                             by_video=True, shuffle_frames=not ordered, **common):
                samples += len(b["image"])
                yield to_device(b, dev)

        def optimizer(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            return build_optimizer(params, replace(cfg, lr=dict(rec.stage_lr).get(model.stage, rec.lr)))

        # An ablation that removes a stage (pairwise-rank without P2 has no 'uncertainty' step)
        # trains the stages it has for the recipe's epochs and skips the removed one's.
        stage_epochs = {k: v for k, v in rec.pairwise_epochs if k in model.stages()}
        last_stage = [s for s in model.stages() if stage_epochs.get(s, 0) > 0][-1]

        def on_epoch(stage: str, _epoch: int, _loss: float) -> None:
            if stage == last_stage:
                score_epoch()

        stage_history = fit_stages(model, epoch_batches, stage_epochs, optimizer, max_pairs=rec.max_pairs,
                                   scheduler_factory=lambda o, n: build_scheduler(o, cfg, n), on_epoch=on_epoch)
        history = [v for stage in stage_history.values() for v in stage]
    else:
        opt = build_optimizer(model.parameters(), cfg)
        sched = build_scheduler(opt, cfg, rec.epochs)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        for e in range(rec.epochs):
            losses = []
            for b in batches(rows, spec, data.aus, augment, rec.batch_size, True, seed + e, **common):
                if len(b["image"]) < 2:
                    # A lone last row cannot train batch norm (FaceNet's embedding BN raised on the
                    # DISFA-layout set, 2026-12-04); the product's loop drops incomplete batches.
                    continue
                losses.append(train_step(model, b, opt, scaler, cfg, dev)["loss"])
                samples += len(b["image"])
            sched.step()
            history.append(float(np.mean(losses)))
            score_epoch()
    if rec.select == "best":
        model.load_state_dict(kept["state"])
    model.eval()
    return Trained(name, model, time.perf_counter() - start, time.process_time() - cpu_start, samples, history,
                   {k: list(v) for k, v in stage_history.items()}, val_scores,
                   kept["epoch"] if rec.select == "best" else len(val_scores))


def predict(model: Any, rows: Rows, data: LearningSet, batch_size: int = VIDEO_BATCH_ROWS) -> dict[str, np.ndarray]:
    """Probabilities (N, n_AU) and every other output of ``model`` over ``rows``, one video per
    batch in frame order (the context pairwise-rank reads); row order is the video order."""
    from components.training import predict_batches

    spec = model.input_spec()
    it = batches(rows, spec, data.aus, None, batch_size, False, 0, store_aus=data.aus,
                 diff_steps=data.diff_steps, by_video=True)
    order: list[str] = []

    def tracked() -> Iterator[dict[str, Any]]:
        for b in it:
            order.extend(b["sample_id"].tolist())
            yield b

    with torch.no_grad():
        res = predict_batches(model, tracked(), next(model.parameters()).device)
    position = {s: i for i, s in enumerate(rows["sample_id"].tolist())}
    res["rows"] = np.array([position[s] for s in order], dtype=int)
    return res


def _level_recall(preds: np.ndarray, levels: np.ndarray, lo: int, hi: int) -> "float | None":
    sel = (levels >= lo) & (levels <= hi)
    return float(preds[sel].mean()) if sel.any() else None


def evaluate(model: Any, data: LearningSet) -> dict[str, Any]:
    """Held-out scores of ``model``: thresholds tuned on the validation subjects
    (``components.thresholds.tune_thresholds``), applied to the test subjects.

    Returns per-AU F1 and mean F1 (``components.metrics.occurrence``), the trivial predictors on the same
    test labels (``trivial_report``), and the share of frames predicted positive among those
    whose generator intensity is A-B (1-2) and D-E (4-5), pooled over AUs (None without
    intensities; the generator labels occurrence at B and above, so A frames are negatives).
    """
    from components.au import au_name
    from components.metrics.occurrence import f1_per_au, mean_f1, trivial_report
    from components.thresholds import apply_thresholds, tune_thresholds

    val = predict(model, data.part("val"), data)
    test_rows = data.part("test")
    test = predict(model, test_rows, data)
    thr = tune_thresholds(val["probs"], val["labels"], val_subjects=data.splits["val"],
                          test_subjects=data.splits["test"])
    preds = apply_thresholds(test["probs"], thr)
    labels = test["labels"].astype(np.int8)
    levels = test_rows["intensities"][test["rows"]]
    trivial = trivial_report(labels, data.aus)
    return {
        "f1": {au_name(a): float(v) for a, v in zip(data.aus, f1_per_au(preds, labels))},
        "mean_f1": mean_f1(preds, labels),
        "thresholds": thr.tolist(),
        "trivial": {k: trivial[k]["mean_f1"] for k in ("all_positive", "base_rate_random")},
        "trivial_best": max(trivial[k]["mean_f1"] for k in ("all_positive", "base_rate_random")),
        "recall_low": _level_recall(preds, levels, 1, 2),
        "recall_high": _level_recall(preds, levels, 4, 5),
        "probs": test["probs"], "labels": labels, "rows": test["rows"],
    }
