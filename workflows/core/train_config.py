"""``TrainConfig``: one training run's settings (``facsflow train``'s flags, ``train.yaml`` in the
run folder); read by ``workflows.train``, ``workflows.tune``, ``workflows.recipe`` and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.batches import AugmentConfig
from components.store.schema import LABEL_SOURCE_HUMAN, LABEL_SOURCE_TEACHER
from components.store.splits import SplitConfig
from components.training import OptimConfig

__all__ = ["TrainConfig", "TrainAugment", "MIN_FITTED_BATCH"]

MIN_FITTED_BATCH = 8
"""The smallest batch per worker ``min_steps_per_epoch`` shrinks to (the demo's recipe)."""


@dataclass(frozen=True)
class TrainAugment(AugmentConfig):
    """``AugmentConfig`` with a training run's defaults: a ±2 % shift and zoom instead of ±6 %.
    AUs are displacements of a few pixels in a 112 px aligned crop, which a ±6 % crop jitter
    drowns on a small training set (the demo's recipe, train-demo.yaml, and the learning tests'
    ``LIGHT_AUGMENT`` measured it). A subclass, so a partial ``augment:`` mapping in a config
    fills the fields it leaves out with these defaults too."""

    crop_jitter: float = 0.02
    """Random translation of the crop, as a fraction of its side (random crop)."""
    scale_jitter: float = 0.02
    """Random zoom in/out, as a fraction."""


@dataclass
class TrainConfig:
    """One training run; saved as ``train.yaml`` in the run folder."""

    model: str = "baseline_resnet18_112"
    """Registered model name (``facsflow models`` lists them)."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model's constructor config, e.g. {dropout: 0.2}."""
    data: str = ""
    """Feature store (local path or URI)."""
    out: str = ""
    """Runs folder; each run is <out>/<name>/."""
    name: str = ""
    """Run name (default: <model>-fold<k>)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Fold and validation split by subject."""
    epochs: int = 8
    """Maximum epochs."""
    batch_size: int = 32
    """Batch size per worker (on a small training set, see ``min_steps_per_epoch``)."""
    min_steps_per_epoch: int = 16
    """Small training sets: the batch per worker shrinks, to no fewer than 8 frames, until each
    worker takes at least this many optimiser steps an epoch (0: ``batch_size`` always). A few
    hundred training frames at 32 per worker give 3 steps an epoch, too few for a model started
    from random weights to leave predicting the base rates. A large store keeps ``batch_size``."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser, schedule, precision and clipping."""
    augment: TrainAugment = field(default_factory=TrainAugment)
    """Training-time augmentation (flip, colour jitter and a ±2 % shift and zoom by default)."""
    workers: int = 2
    """DDP workers."""
    gpu: bool = False
    """One GPU per worker (NCCL); otherwise CPU with gloo."""
    worker_cpus: float = 1.0
    """CPUs per training worker."""
    data_cpus: float = 0.5
    """CPUs per Ray Data task (reading the crop cache, or decoding store rows)."""
    crop_cache: bool = True
    """Decode the store's crops at the model's size once, into ``<store>/crop_cache/`` (rebuilt
    when the store changes), and read those every epoch (``workflows.core.crop_cache``); False
    decodes every row every epoch (a store on read-only storage). Models reading blendshapes or
    geometry decode every epoch either way."""
    shuffle_buffer: int = 512
    """Local shuffle buffer (rows) per worker."""
    early_stop_patience: int = 4
    """Stop after this many epochs without a better validation score (``select_metric``; 0: never)."""
    keep_best: int = 2
    """Checkpoints kept by validation score (``select_metric``; the latest is always kept too)."""
    select: str = "best"
    """The checkpoint the run hands to evaluation, ensembles and serving (``checkpoint`` in
    run.json): 'best' by validation score (``select_metric``), or 'last' (the end of the
    schedule), for a validation set too small to rank epochs (the demo's one identity: 'best'
    picked an early epoch that scored well below the last on held-out subjects; docs/measurements.md)."""
    select_metric: str = "f1"
    """The validation score that ranks epochs (best checkpoint, early stopping; recorded in
    run.json), at the thresholds each epoch's checkpoint carries (``tune_thresholds``): 'f1'
    (mean F1 over AUs), or 'acc_f1' (0.5 x mean accuracy + 0.5 x mean F1, the ABAW 2020 metric
    papers 000 §3 and 002 §3 select their models by)."""
    max_failures: int = 2
    """Worker-group restarts allowed after failures (resume from the latest checkpoint)."""
    seed: int = 0
    """Random seed (model init, augmentation, shuffling)."""
    max_steps_per_epoch: int = 0
    """Cap on optimiser steps per epoch (0: the whole shard)."""
    stage_epochs: dict[str, int] = field(default_factory=dict)
    """Multi-step families (``MultiStepTraining``, e.g. pairwise_rank: rank, uncertainty,
    mapping): epochs per step, run in order as one command (default: ``epochs`` for each step)."""
    stage_lr: dict[str, float] = field(default_factory=dict)
    """Multi-step families: peak learning rate of a step where it differs from ``optim.lr``
    (e.g. {mapping: 0.01}: the small mapping FCN learns from scratch in a few epochs)."""
    tensorboard: str = ""
    """Write per-epoch metrics as TensorBoard events to this folder ('' : off)."""
    resample: bool = False
    """Paper 001 §3.4.1 resampling of the training frames: one-tenth uniformly, rare-AU frames
    at one-fifth (rates per dataset in components.datasets.samplers)."""
    pos_weight: str = "balanced"
    """BCE weighting of positive labels per AU: 'balanced' (negatives / positives over the
    training subjects, clipped to [1, 20]; the class balancing JAA-Net and ME-GraphAU apply in
    their weighted losses): rare AUs then pull as hard as common ones, and 0.5 stays a sensible
    threshold for them; or 'none' (plain BCE: with AU base rates of 5-30 % the loss is lowest
    for a model that predicts no AU, and one that does scores F1 0)."""
    tune_thresholds: bool = True
    """Choose per-AU decision thresholds on the validation subjects at every epoch
    (``components.thresholds.tune_thresholds``, the F1-maximising grid value) and store them in
    that epoch's checkpoint, so the selected checkpoint carries the thresholds of its own epoch
    into evaluate, ensemble, predict and Serve; False: every checkpoint keeps 0.5."""
    label_sources: tuple[str, ...] = (LABEL_SOURCE_HUMAN,)
    """Labels training learns from: 'human' (the rows' own labels) and/or 'teacher' (a teacher's
    soft labels, ``facsflow label``: probabilities, learnt with BCE on soft targets, filling what
    the rows' own labels leave unknown). Validation uses the rows' own labels; where the validation
    subjects have none and this includes 'teacher', the teacher's decisions (its soft labels at its
    own thresholds; run.json says ``val_labels``: 'own' or 'teacher'). Test: own labels only."""
    shuffle_labels: bool = False
    """Control experiment: every training row gets the labels of another training row (one
    permutation over the training set: breaks image-label pairs, keeps base rates); a model
    trained so must not beat the trivial predictors."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.workers < 1:
            raise ValueError("epochs, batch_size and workers must be >= 1")
        if self.min_steps_per_epoch < 0:
            raise ValueError(f"min_steps_per_epoch must be >= 0, got {self.min_steps_per_epoch}")
        if self.select not in ("best", "last"):
            raise ValueError(f"select must be best or last, got {self.select!r}")
        if self.select_metric not in ("f1", "acc_f1"):
            raise ValueError(f"select_metric must be 'f1' or 'acc_f1', got {self.select_metric!r}")
        if self.keep_best < 1:
            raise ValueError(f"keep_best must be >= 1, got {self.keep_best}")
        if self.pos_weight not in ("none", "balanced"):
            raise ValueError(f"pos_weight must be 'none' or 'balanced', got {self.pos_weight!r}")
        known = {LABEL_SOURCE_HUMAN, LABEL_SOURCE_TEACHER}
        if not self.label_sources or set(self.label_sources) - known:
            raise ValueError(f"label_sources must be one or both of {sorted(known)}, got {self.label_sources!r}")

    def fitted_batch_size(self, train_rows: int) -> int:
        """The batch per worker for ``train_rows`` training frames (``min_steps_per_epoch``;
        ``train_rows`` 0, unknown: ``batch_size``)."""
        if not self.min_steps_per_epoch or train_rows <= 0:
            return self.batch_size
        fits = train_rows // (self.workers * self.min_steps_per_epoch)
        return max(1, min(self.batch_size, max(MIN_FITTED_BATCH, fits)))

    def run_name(self) -> str:
        return self.name or f"{self.model}-fold{self.split.fold}"
