"""Train one model (or every fold) on the feature store with Ray Train (TorchTrainer, DDP): the logic of
the ``train`` stage (its entry: ``workflows/train.py``), which tune, recipe and demo compose.

``python -m workflows.train --model NAME --data STORE --out RUNS [--fold K|all] [--workers N]
[--gpu] [--config YAML] [--set KEY=VALUE] [--address A]`` (every TrainConfig field is a flag)

Data come straight from the Parquet store through Ray Data: Ray Data tasks decode rows into uint8
crops at the model's size on CPU; workers read their shard with ``iter_torch_batches`` and run
augmentation and the model's input transform as batched tensor operations on their own device
(``components.batches.model_batch``: the GPU when there is one). Every epoch reports validation
metrics and a full checkpoint from every rank, with per-AU thresholds chosen on the validation
subjects at that epoch (``tune_thresholds``); the best k by the validation score
(``select_metric``, at those thresholds) and the latest are kept; a worker failure resumes from
the latest checkpoint, and starting a finished run again returns its result instead of retraining.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

from components import storage
from components.batches import VIDEO_BATCH_ROWS
from components.configuration import save_yaml, to_dict
from components.store.schema import LABEL_SOURCE_TEACHER
from components.store.splits import balanced_pos_weight, load_split, store_info, subject_label_counts
from workflows.core.store_reader import split_datasets
from workflows.core.train_config import TrainConfig

log = logging.getLogger("facsflow.train")

__all__ = ["TrainConfig", "run_training", "read_run", "epoch_schedule", "checkpoint_train_config", "validation_labels",
           "train_loop_per_worker"]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop: one per worker; thin glue around components.training."""
    import ray.train
    import ray.train.torch
    import torch

    from components.batches import model_batch
    from components.checkpoint import CHECKPOINT_FILE, make_checkpoint, save_checkpoint
    from components.configuration import from_dict
    from components.losses import masked_bce_of_probs
    from components.metrics.occurrence import evaluate_occurrence
    from components.models.base import training_stages
    from components.models.registry import build_model, input_spec
    from components.thresholds import validation_decisions
    from components.training import (build_optimizer, build_scheduler, freeze_pretrained, optimizer_params,
                                     predict_batches, train_step)
    from workflows.core.runtime import torch_single_thread

    cfg: TrainConfig = from_dict(TrainConfig, config["train"])
    if not cfg.gpu:
        torch_single_thread()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    worker_nodes = _worker_nodes(world)
    epoch_hook, hook_kwargs = _epoch_hook(config.get("epoch_hook"))
    torch.manual_seed(cfg.seed)
    aus = config["aus"]
    core = build_model(cfg.model, aus, **cfg.model_kwargs)
    if config.get("pos_weight"):
        core.pos_weight = torch.tensor(config["pos_weight"], dtype=torch.float32)
    schedule = epoch_schedule(core, cfg)
    device = ray.train.torch.get_device()
    spec = input_spec(cfg.model, **cfg.model_kwargs)
    # Augmentation draws on the worker: its own stream per rank, fresh for every epoch it runs.
    augment_rng = torch.Generator()
    augment_rng.manual_seed(cfg.seed * 100_003 + rank)

    images: dict[bool, torch.Tensor] = {}

    def finish(batch: dict[str, Any], augment: Any) -> dict[str, Any]:
        """The shard's decoded batch → the model's, on the device iter_torch_batches put it on;
        numeric columns float32 as the loop always read them. The image tensor is reused from
        batch to batch (one for training batches, one for validation's): each batch is done with
        before the next is made (``model_batch``'s ``image_out``)."""
        n, crops = len(batch["crop"]), batch["crop"]
        buf = images.get(augment is not None)
        if buf is None or len(buf) < n or buf.device != crops.device:
            buf = images[augment is not None] = torch.empty(
                (n, spec.num_channels, spec.image_size, spec.image_size), device=crops.device)
        out = model_batch(batch, spec, augment, augment_rng, image_out=buf)
        out = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        if device.type == "cuda":
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.optim.amp == "fp16")
    start_epoch, best, stale = 0, -1.0, 0
    history: list[dict[str, Any]] = []
    state = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(os.path.join(d, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        core.load_state_dict(state["state_dict"], strict=True)
        start_epoch = state["epoch"] + 1
        best, stale, history = (state["train_state"][k] for k in ("best", "stale", "history"))
        if rank == 0:
            print(f"[{cfg.run_name()}] resumed from epoch {state['epoch'] + 1} checkpoint; "
                  f"continuing at epoch {start_epoch + 1}")
    staged = bool(training_stages(core))
    freeze_pretrained(core, cfg.optim)   # before DDP, which registers the parameters that learn
    if device.type == "cuda":
        # NHWC convolutions run on tensor cores under bf16 autocast without layout transposes.
        core.to(memory_format=torch.channels_last)
    # Multi-step families train one sub-network per step through their own methods, which DDP's
    # forward hook would not see: they are not wrapped, and gradients are all-reduced by hand.
    model = ray.train.torch.prepare_model(core, parallel_strategy=None if staged else "ddp")
    opt = sched = None
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    for epoch in range(start_epoch, len(schedule)):
        stage = schedule[epoch]
        if opt is None or schedule[epoch - 1] != stage:
            if staged:
                core.set_stage(stage)
                freeze_pretrained(core, cfg.optim)   # a step turns its whole sub-network back on
            step_optim = replace(cfg.optim, lr=cfg.stage_lr[stage]) if stage in cfg.stage_lr else cfg.optim
            opt = build_optimizer(optimizer_params(core, step_optim), step_optim)
            sched = build_scheduler(opt, cfg.optim, schedule.count(stage))
            if state is not None and state.get("stage") == stage and epoch == start_epoch:
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                if state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
            elif staged:  # a new step: early stopping starts afresh
                best, stale = -1.0, 0
        last_step = stage == schedule[-1]
        if last_step and stale and cfg.early_stop_patience and stale >= cfg.early_stop_patience:
            break
        loss_fn = (lambda b, _s=stage: core.stage_loss(_s, b)) if staged else None  # noqa: E731
        # A step the model declares video-ordered (e.g. pairwise-rank's mapping) reads its shard
        # unshuffled in store (video) order, cut as evaluation cuts it.
        video_order = staged and stage in core.video_order_stages
        shuffle = cfg.shuffle_buffer if not video_order else 0
        t0 = time.perf_counter()
        losses, seen = [], 0
        # Time the loop spent waiting for the input pipeline: the first batch (Ray Data starts the
        # epoch's streaming execution) and every later wait, so a user sees whether the model or
        # the data sets the pace.
        first_batch_s, data_wait_s, asked = None, 0.0, t0
        for step, batch in enumerate(train_shard.iter_torch_batches(
                batch_size=VIDEO_BATCH_ROWS if video_order else cfg.batch_size,
                local_shuffle_buffer_size=shuffle or None, local_shuffle_seed=cfg.seed + epoch if shuffle else None,
                drop_last=not video_order)):
            if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
                break
            batch = finish(batch, cfg.augment)
            waited = time.perf_counter() - asked
            first_batch_s = waited if first_batch_s is None else first_batch_s
            data_wait_s += waited
            parts = train_step(model, batch, opt, scaler, cfg.optim, device, loss_fn,
                               sync_grads=staged and world > 1)
            losses.append(parts["loss"])
            seen += len(batch["labels"])
            asked = time.perf_counter()
        sched.step()
        train_s = time.perf_counter() - t0
        val = predict_batches(model, (finish(b, None) for b in val_shard.iter_torch_batches(
            batch_size=cfg.batch_size * 2)), device, cfg.optim.amp)
        res = evaluate_occurrence(val["probs"], val["labels"], aus)
        val_bce = masked_bce_of_probs(val["probs"], val["labels"]) if len(val["labels"]) else float("nan")
        # This epoch's thresholds, chosen on the validation subjects, travel in its checkpoint; the
        # epoch is ranked as that checkpoint will decide (at 0.5, the all-positive start of a
        # class-balanced run would outrank the epochs that learnt).
        decisions = validation_decisions(val["probs"], val["labels"], aus, cfg.tune_thresholds)
        mean_f1 = float(res["mean_f1"])
        score = (decisions["val_tuned_mean_f1"] if cfg.select_metric == "f1"
                 else 0.5 * decisions["val_tuned_mean_accuracy"] + 0.5 * decisions["val_tuned_mean_f1"])
        improved = score > best
        best, stale = (score, 0) if improved else (best, stale + 1)
        train_loss, seen_all = _all_ranks_mean(losses, seen, world)
        metrics = {"epoch": epoch, "train_loss": train_loss, "samples_all_workers": seen_all,
                   "val_mean_f1": mean_f1, "val_accuracy": float(res["mean_accuracy"]), "val_bce": val_bce,
                   "val_score": score, "best_val_score": best, **decisions,
                   "best_val_mean_f1": max([mean_f1] + [h["val_mean_f1"] for h in history
                                                        if h["stage"] == (stage or "train")]),
                   "samples_per_s": seen / max(train_s, 1e-9),
                   "first_batch_s": first_batch_s or 0.0, "data_wait_s": data_wait_s,
                   "epoch_seconds": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"],
                   "stage": stage or "train", "worker_nodes": worker_nodes,
                   # The epoch this worker group started at: > 0 after a resume from a checkpoint.
                   "group_start_epoch": start_epoch}
        history.append(metrics)
        if rank == 0:
            step_name = f" ({stage})" if stage else ""
            print(f"[{cfg.run_name()}] epoch {epoch + 1}/{len(schedule)}{step_name} loss {metrics['train_loss']:.4f} "
                  f"val mean F1 {mean_f1:.3f}, {cfg.select_metric} {score:.3f} (best {best:.3f}) "
                  f"{metrics['samples_per_s']:.1f} samples/s, "
                  f"waited {data_wait_s:.1f} s for data")
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                saved = make_checkpoint(
                    model, cfg.model, epoch=epoch, preprocess=config["preprocess"],
                    provenance=config["provenance"], train_config=checkpoint_train_config(config["train"]),
                    thresholds=decisions["val_thresholds"], metrics=metrics, optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(), scaler=scaler.state_dict())
                saved["train_state"] = {"best": best, "stale": stale, "history": history}
                saved["stage"] = stage
                save_checkpoint(saved, tmp)
                storage.write_text(storage.join(config["run_dir"], "metrics.jsonl"),
                                   "".join(json.dumps(h) + "\n" for h in history))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)
        if epoch_hook is not None:  # tests only (fault injection); a run's config never sets one
            epoch_hook(epoch=epoch, rank=rank, **hook_kwargs)


def checkpoint_train_config(train: dict[str, Any]) -> dict[str, Any]:
    """The run's TrainConfig as a checkpoint stores it: a ``model_kwargs.pretrained`` weights
    path becomes its name (``components.models.registry.pretrained_name``), so a checkpoint never
    points at the training machine's disk."""
    from components.models.registry import pretrained_name

    kwargs = train.get("model_kwargs") or {}
    if not kwargs.get("pretrained"):
        return train
    return {**train, "model_kwargs": {**kwargs, "pretrained": pretrained_name(kwargs["pretrained"])}}


def epoch_schedule(model: Any, cfg: TrainConfig) -> list["str | None"]:
    """The step each epoch trains: [None] * epochs, or a multi-step family's steps in order."""
    from components.models.base import training_stages

    stages = training_stages(model)
    if not stages:
        return [None] * cfg.epochs
    for key in ("stage_epochs", "stage_lr"):
        unknown = sorted(set(getattr(cfg, key)) - set(stages))
        if unknown:
            raise ValueError(f"{key} names {unknown}; {cfg.model} trains {list(stages)}")
    return [s for s in stages for _ in range(cfg.stage_epochs.get(s, cfg.epochs))]


def _epoch_hook(spec: "tuple[str, dict[str, Any]] | list | None") -> "tuple[Any, dict[str, Any]]":
    """``("module:function", kwargs)`` → the function and its kwargs; (None, {}) without one."""
    if not spec:
        return None, {}
    import importlib

    path, kwargs = spec
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name), dict(kwargs)


def run_training(cfg: TrainConfig, callbacks: "list[Any] | None" = None,
                 epoch_hook: "tuple[str, dict[str, Any]] | None" = None) -> dict[str, Any]:
    """Train one run (one fold) on the connected Ray cluster; return its summary.

    ``callbacks`` are Ray Train ``UserCallback``s for the run config, e.g. Tune's
    ``TuneReportCallback`` when a tuning trial drives this run (workflows/tune.py).
    ``epoch_hook``: for tests only, ``("module:function", kwargs)`` that every worker calls as
    ``function(epoch=, rank=, **kwargs)`` after reporting each epoch (fault injection lives in
    ``tests/faults.py``, not in the loop).
    """
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from components.provenance import provenance

    from components.models.registry import default_pretrained, init_provenance

    if not storage.is_remote(cfg.out):
        # Workers write metrics.jsonl into run_dir from their own working folder.
        cfg = replace(cfg, out=os.path.abspath(cfg.out))
    # The variant's default weights are resolved here, once: train.yaml, the checkpoints and
    # run.json name the weights the run really started from ("" = random).
    cfg = replace(cfg, model_kwargs={**cfg.model_kwargs,
                                     "pretrained": default_pretrained(cfg.model, cfg.model_kwargs.get("pretrained"))})
    info = store_info(cfg.data)
    run_dir = storage.join(cfg.out, cfg.run_name())
    done_marker = storage.join(run_dir, "run.json")
    if storage.exists(done_marker):
        summary = read_run(run_dir)
        log.info("run %s already finished: reusing its result (delete %s to retrain)", cfg.run_name(), run_dir)
        summary["reused"] = True
        return summary
    counts = subject_label_counts(cfg.data)
    split = load_split(cfg.data, info, cfg.split, counts)
    val_labels = validation_labels(counts, split, cfg)
    # Frames with labels of their own (label counts per AU): a small training set gets a smaller
    # batch, so that an epoch still has min_steps_per_epoch steps; train.yaml records the batch.
    cfg = replace(cfg, batch_size=cfg.fitted_batch_size(
        sum(int(counts[s][1].max(initial=0)) for s in split.train if s in counts)))
    # One line per epoch from the loop is the progress a person follows; per-epoch Ray Data
    # progress bars from every worker would drown it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    datasets = split_datasets(split, info, cfg, train=True, val_labels=val_labels)
    config = {
        "train": to_dict(cfg), "aus": list(info["aus"]), "run_dir": run_dir,
        # The face pipeline the store was cut with travels with every checkpoint, so predict and
        # Serve answer with the crops the model learnt from (components.plan).
        "preprocess": {"store": cfg.data, "image_size": info["image_size"], "diff_steps": info["diff_steps"],
                       "dataset": info["dataset"], **({"faces": info["faces"]} if info.get("faces") else {})},
        "provenance": provenance(cfg.seed, cfg.data, split.fold_hash),
        "epoch_hook": epoch_hook,
        "pos_weight": (balanced_pos_weight(counts, split.train)
                       if cfg.pos_weight == "balanced" else None),
    }
    storage.makedirs(run_dir)
    if not storage.is_remote(run_dir):
        save_yaml(cfg, storage.join(run_dir, "train.yaml"))
    storage.write_json(storage.join(run_dir, "split.json"), split.to_dict())
    storage_path, storage_fs = _storage_target(cfg.out)
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpu,
                                               resources_per_worker={"CPU": cfg.worker_cpus}),
        run_config=ray.train.RunConfig(
            name=cfg.run_name(), storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.keep_best, checkpoint_score_attribute="val_score",
                checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            callbacks=list(callbacks or []) + _tracking_callbacks(cfg)),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    t0 = time.perf_counter()
    from components.models.registry import build_model
    from components.training import freeze_pretrained
    from workflows.core.train_callbacks import EpochLines, run_warning

    probe = build_model(cfg.model, info["aus"], **cfg.model_kwargs)
    freeze_pretrained(probe, cfg.optim)   # fine-tuning options without pretrained weights stop here
    total = len(epoch_schedule(probe, cfg))
    init = init_provenance(cfg.model_kwargs["pretrained"])["init_weights"]
    print(f"[{cfg.run_name()}] training {cfg.model} from {init} weights: {len(split.train)} train / "
          f"{len(split.val)} val subjects, {cfg.workers} worker(s) x {cfg.worker_cpus:g} CPU"
          f"{', GPU' if cfg.gpu else ''}, batches of {cfg.batch_size} per worker, {total} epochs")
    with EpochLines(cfg.run_name(), run_dir, total):
        result = trainer.fit()
    best = _as_uri(cfg.out, _best_checkpoint(result))
    history = [json.loads(line) for line in storage.read_text(storage.join(run_dir, "metrics.jsonl")).splitlines()]
    latest = _as_uri(cfg.out, result.checkpoint.path) if result.checkpoint else None
    summary = {"run": cfg.run_name(), "run_dir": run_dir, "model": cfg.model,
               "checkpoint": latest if cfg.select == "last" and latest else best, "select": cfg.select,
               "select_metric": cfg.select_metric,
               "best_val_score": max(h.get("val_score", h["val_mean_f1"]) for h in history),
               "best_checkpoint": best, "latest_checkpoint": latest,
               "best_val_mean_f1": max(h["val_mean_f1"] for h in history), "epochs_run": len(history),
               "history": history, "split": split.to_dict(), "val_labels": val_labels,
               "seconds": round(time.perf_counter() - t0, 1),
               "init": init_provenance(cfg.model_kwargs["pretrained"])}
    warning = run_warning(history, cfg.pos_weight)
    if warning:
        summary["warning"] = warning
    storage.write_json(done_marker, summary)
    return summary


def validation_labels(counts: dict[str, Any], split: Any, cfg: TrainConfig) -> str:
    """What validation (model selection, threshold tuning) scores against: 'own' where the
    validation subjects have labels of their own; else 'teacher' (the teacher's decisions: its
    soft labels at its thresholds, ``labels.json``) when ``label_sources`` includes it; else a
    ``UserError`` naming the fold and store. ``counts``: ``subject_label_counts`` of the store."""
    if any(counts[s][1].sum() for s in split.val if s in counts):
        return "own"
    if LABEL_SOURCE_TEACHER in cfg.label_sources:
        from components.store.splits import teacher_labelling

        teacher_labelling(cfg.data)  # says what is missing before any worker starts
        return "teacher"
    from components.errors import UserError

    raise UserError(f"fold {split.fold}: the validation subjects {split.val} of {cfg.data} have no labels of "
                    "their own (a store of unlabeled video?); validation needs labelled subjects, or the "
                    "teacher's decisions: label the store (`facsflow label`) and train with --label-sources teacher")


def read_run(run_dir: str) -> dict[str, Any]:
    """A finished run's ``run.json``; ``checkpoint`` is the one to evaluate, ensemble and serve
    (run.json files written before ``select`` existed name only ``best_checkpoint``)."""
    summary = json.loads(storage.read_text(storage.join(run_dir, "run.json")))
    summary.setdefault("checkpoint", summary["best_checkpoint"])
    summary.setdefault("select", "best")
    summary.setdefault("select_metric", "f1")
    return summary


def _tracking_callbacks(cfg: TrainConfig) -> list[Any]:
    if not cfg.tensorboard:
        return []
    from workflows.core.train_callbacks import TensorBoardCallback

    return [TensorBoardCallback(cfg.tensorboard)]


def _all_ranks_mean(losses: list[float], seen: int, world: int) -> tuple[float, int]:
    """Mean training loss over every rank's steps, and samples seen by all ranks together."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(sum(losses)), float(len(losses)), float(seen)], dtype=torch.float64)
    if world > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0] / max(1.0, float(t[1]))), int(t[2])


def _worker_nodes(world: int) -> list[str]:
    """Ray node id of every rank, in rank order: where the run really ran (multi-node checks)."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if world == 1 or not dist.is_initialized():
        return [node]
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return nodes


def _storage_target(out: str) -> tuple[str, Any]:
    """Ray Train's (storage_path, storage_filesystem). A URI goes through components.storage, so
    a custom S3 endpoint (AWS_ENDPOINT_URL) is honoured; Ray then wants the path without scheme."""
    if not storage.is_remote(out):
        return os.path.abspath(out), None
    fs, path = storage.resolve(out)
    return path, fs


def _as_uri(out: str, path: str) -> str:
    """A checkpoint path from Ray Train (scheme stripped on remote storage) as a URI again."""
    if storage.is_remote(out) and "://" not in path:
        return f"{out.split('://', 1)[0]}://{path}"
    return path


def _best_checkpoint(result: Any) -> str:
    pairs = [(m.get("val_score", -1.0), c) for c, m in (result.best_checkpoints or [])]
    if not pairs:
        raise RuntimeError("training reported no checkpoint")
    score, ckpt = max(pairs, key=lambda p: p[0])
    return ckpt.path
