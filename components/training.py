"""Small, Ray-free training pieces: optimiser and schedule builders, one train step, one eval
pass, and ``fit_stages`` for families trained in several steps (``MultiStepTraining``).

The Ray Train loop (workflows/train.py) wires these together; a plain PyTorch loop (the
benchmarks' reference) calls the very same functions, so their comparison measures Ray alone.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import torch

from components.models.base import AUModel, MultiStepTraining

__all__ = ["OptimConfig", "freeze_pretrained", "optimizer_params", "build_optimizer", "build_scheduler", "autocast_context", "train_step",
           "predict_batches", "to_device", "fit_stages"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, schedule, precision and clipping."""

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    """Optimiser (paper 001 §4.2: SGD, lr 1e-3, batch 256; paper 003 §4.2: Adam, lr 1e-3, batch
    100; papers 000/002/004 name none)."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 1e-4
    """Weight decay."""
    momentum: float = 0.9
    """SGD momentum."""
    schedule: Literal["none", "step", "epoch_decay", "cosine", "multistep"] = "cosine"
    """'step': ×gamma every step_epochs; 'epoch_decay': ×gamma every epoch (paper 003 §4.2);
    'multistep': ×gamma at each of ``milestones`` (paper 001 §4.2)."""
    step_epochs: int = 10
    """Epochs between decays for the step schedule."""
    gamma: float = 0.1
    """Decay factor for step / epoch_decay / multistep."""
    milestones: tuple[int, ...] = ()
    """multistep: epochs (1-based) from which the learning rate is ×gamma once more, e.g.
    (4, 6, 8): "reduced to one-tenth of the original at the 4th, 6th, and 8th steps" (paper 001)."""
    amp: Literal["none", "bf16", "fp16"] = "bf16"
    """Autocast precision on GPU (ignored on CPU: float32)."""
    grad_clip: float = 5.0
    """Clip the global gradient norm to this value (0: off)."""
    freeze_stages: int = 0
    """Fine-tuning: stop gradients in the first this many top-level blocks of each backbone that
    started from pretrained weights (``AUModel.pretrained_modules``; for a torchvision ResNet the
    blocks are conv1, bn1, relu, maxpool, layer1..4). Needs ``pretrained`` weights."""
    pretrained_lr_scale: float = 1.0
    """Fine-tuning: the pretrained backbones learn at ``lr`` x this (0 < scale <= 1; the heads
    and every layer trained from scratch keep ``lr``). Needs ``pretrained`` weights."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.schedule == "multistep" and (not self.milestones or min(self.milestones) < 1):
            raise ValueError(f"schedule 'multistep' needs milestones >= 1, got {self.milestones}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.freeze_stages < 0:
            raise ValueError(f"freeze_stages must be >= 0, got {self.freeze_stages}")
        if not 0 < self.pretrained_lr_scale <= 1:
            raise ValueError(f"pretrained_lr_scale must be in (0, 1], got {self.pretrained_lr_scale}")

    @property
    def fine_tunes(self) -> bool:
        """True when freezing or a lower pretrained learning rate is asked for."""
        return self.freeze_stages > 0 or self.pretrained_lr_scale != 1.0


def freeze_pretrained(model: torch.nn.Module, cfg: OptimConfig) -> list[str]:
    """Apply ``cfg.freeze_stages`` to the model's pretrained backbones (before any DDP wrapping:
    DDP registers only the parameters that need gradients); returns the frozen parameter names.
    A model without pretrained weights asked to fine-tune is a ConfigError, never a silent no-op."""
    from components.configuration import ConfigError
    from components.models.backbones import freeze_stages

    if not cfg.fine_tunes:
        return []
    parts = model.pretrained_modules() if hasattr(model, "pretrained_modules") else []
    if not parts:
        raise ConfigError("optim.freeze_stages / optim.pretrained_lr_scale fine-tune pretrained backbones, but "
                         f"{type(model).__name__} was built without pretrained weights: set model_kwargs.pretrained "
                         "to a catalogue entry (`facsflow weights`) or drop those options")
    return [name for part in parts for name in freeze_stages(part, cfg.freeze_stages)]


def optimizer_params(model: torch.nn.Module, cfg: OptimConfig, lr: "float | None" = None) -> list[dict]:
    """The optimizer's parameter groups: pretrained backbones at ``lr * cfg.pretrained_lr_scale``,
    the rest at ``lr`` (default ``cfg.lr``); frozen parameters are left out."""
    from components.models.backbones import param_groups

    lr = cfg.lr if lr is None else lr
    parts = model.pretrained_modules() if cfg.fine_tunes and hasattr(model, "pretrained_modules") else []
    return param_groups(model, parts, lr, cfg.pretrained_lr_scale)


def build_optimizer(params: "Iterable[torch.nn.Parameter] | list[dict]", cfg: OptimConfig) -> torch.optim.Optimizer:
    """The configured optimizer over trainable parameters, or over parameter groups
    (``optimizer_params``), each group keeping its own learning rate."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        params = [g for g in params if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # On CUDA the fused kernel updates every parameter in one launch (CPU keeps the default).
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    fused = {"fused": True} if tensors and all(p.is_cuda for p in tensors) else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch scheduler (``.step()`` once per epoch)."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.gamma)
    if cfg.schedule == "multistep":
        # Epoch e (0-based) runs at gamma^(milestones <= e + 1): milestone 4 = the 4th epoch.
        return torch.optim.lr_scheduler.MultiStepLR(opt, [m - 1 for m in cfg.milestones], gamma=cfg.gamma)
    if cfg.schedule == "epoch_decay":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; a no-op on CPU (one code path for every flag)."""
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device``; numpy float arrays become tensors; strings stay as they are."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, np.ndarray) and v.dtype.kind in "fiub":
            v = torch.from_numpy(np.ascontiguousarray(v) if v.flags.writeable else v.copy())
        out[k] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
    return out


def train_step(model: torch.nn.Module, batch: dict[str, Any], opt: torch.optim.Optimizer,
               scaler: "torch.amp.GradScaler", cfg: OptimConfig, device: torch.device,
               loss_fn: "Callable[[dict[str, Any]], dict[str, torch.Tensor] | None] | None" = None,
               sync_grads: bool = False) -> dict[str, float]:
    """One optimisation step; returns the loss parts as floats.

    ``model`` may be wrapped in DDP; the family's ``loss`` is read from the unwrapped module.
    ``loss_fn(batch)`` replaces forward + loss for multi-step families (it may return None when
    a batch holds nothing to learn from: a zero loss keeps every rank's collectives in step).
    ``sync_grads`` all-reduces gradients by hand for a model that is not DDP-wrapped.
    """
    core: AUModel = getattr(model, "module", model)
    model.train()
    batch = to_device(batch, device)
    opt.zero_grad(set_to_none=True)
    with autocast_context(device, cfg.amp):
        if loss_fn is None:
            outputs = model(batch)
            parts = core.loss({k: v.float() for k, v in outputs.items()}, batch)
        else:
            parts = loss_fn(batch)
    params = [p for g in opt.param_groups for p in g["params"]]
    if parts is None:
        parts = {"loss": sum(p.sum() * 0.0 for p in params)}
    scaler.scale(parts["loss"]).backward()
    if sync_grads and torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= world
    if cfg.grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    return {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def predict_batches(model: torch.nn.Module, batches: Iterable[dict[str, Any]], device: torch.device,
                    amp: str = "none") -> dict[str, np.ndarray]:
    """Run the model over batches; return probs (N, n_AU), labels, and passthrough id columns."""
    model.eval()
    probs, labels, intens, ids = [], [], [], {"sample_id": [], "subject": [], "video": [], "frame_order": []}
    for batch in batches:
        tb = to_device(batch, device)
        with autocast_context(device, amp):
            out = model(tb)
        probs.append(torch.sigmoid(out["logits"].float()).cpu().numpy())
        if "intensity" in out:
            intens.append(out["intensity"].float().cpu().numpy())
        labels.append(np.asarray(batch["labels"].cpu() if isinstance(batch["labels"], torch.Tensor) else batch["labels"]))
        for k in ids:
            if k in batch:
                v = batch[k]
                ids[k].extend(v.tolist() if hasattr(v, "tolist") else list(v))
    if not probs:
        return {"probs": np.zeros((0, 0), np.float32), "labels": np.zeros((0, 0), np.float32)}
    res = {"probs": np.concatenate(probs), "labels": np.concatenate(labels)}
    if intens:
        res["intensity"] = np.concatenate(intens)
    res.update({k: np.asarray(v) for k, v in ids.items() if v})
    return res


def fit_stages(model: MultiStepTraining, batches_iter_factory: Callable[[str], Iterable[Mapping[str, Any]]],
               epochs_per_stage: "int | Mapping[str, int]",
               optimizer_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
               on_step: "Callable[[str, int, dict[str, float]], None] | None" = None,
               scheduler_factory: "Callable[[torch.optim.Optimizer, int], Any] | None" = None,
               on_epoch: "Callable[[str, int, float], None] | None" = None,
               **stage_options: Any) -> dict[str, list[float]]:
    """Train a multi-step family's stages in order, each with only its networks trainable.

    ``batches_iter_factory(stage)`` returns a fresh iterable of batches for one epoch of that
    stage (video-ordered for ``model.video_order_stages``). ``epochs_per_stage``: one count for
    every stage or a mapping stage → count (missing or 0 skips it). ``optimizer_factory(params)``
    makes a fresh optimiser per stage over the stage's trainable parameters (``model.stage`` is
    already set when it is called). ``on_step(stage, step, losses)`` is called after every
    optimiser step. ``scheduler_factory(optimizer, epochs)`` makes a step's per-epoch schedule
    (stepped after each of its epochs, as the Ray Train loop does: ``build_scheduler``; None: a
    constant rate). ``on_epoch(stage, epoch, mean_loss)`` is called after every epoch (it may
    evaluate the model: the next epoch puts it back in training mode). ``stage_options`` go to
    ``model.stage_loss`` (e.g. pairwise-rank's ``max_pairs``). Returns stage → mean loss per
    epoch (NaN for an epoch without a usable batch). The model ends in eval mode with every
    network trainable again (stage None).
    """
    stages = model.stages()
    if isinstance(epochs_per_stage, Mapping):
        unknown = set(epochs_per_stage) - set(stages)
        if unknown:
            raise ValueError(f"fit_stages: unknown stage(s) {sorted(unknown)}; this model runs {stages}")
        counts = {s: int(epochs_per_stage.get(s, 0)) for s in stages}
    else:
        counts = {s: int(epochs_per_stage) for s in stages}
    history: dict[str, list[float]] = {}
    step = 0
    for stage in stages:
        if counts[stage] <= 0:
            continue
        model.set_stage(stage)
        optimizer = optimizer_factory(model.trainable_parameters())
        scheduler = scheduler_factory(optimizer, counts[stage]) if scheduler_factory is not None else None
        history[stage] = []
        for epoch in range(counts[stage]):
            model.train()  # type: ignore[attr-defined]
            losses = []
            for batch in batches_iter_factory(stage):
                parts = model.stage_loss(stage, dict(batch), **stage_options)
                if parts is None:
                    continue
                optimizer.zero_grad(set_to_none=True)
                parts["loss"].backward()
                optimizer.step()
                step += 1
                losses.append(float(parts["loss"].detach()))
                if on_step is not None:
                    on_step(stage, step, {k: float(v.detach()) for k, v in parts.items()})
            history[stage].append(sum(losses) / len(losses) if losses else math.nan)
            if scheduler is not None:
                scheduler.step()
            if on_epoch is not None:
                on_epoch(stage, epoch, history[stage][-1])
    model.set_stage(None)
    model.eval()  # type: ignore[attr-defined]
    return history
