"""The paper-004 training schedule of the pairwise-rank family as one plain-Python call.

Paper 004 (§3) trains the pseudo-intensity network f on pairs, then the uncertainty network h
with f frozen, then the mapping network on the frozen networks' outputs. ``fit_pairwise`` runs
the three steps in order; ``pairwise_step`` is the loss of one batch for one stage, for loops
that do their own optimisation (AMP, clipping, reporting). Ray-free.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import torch

from components.models.pairwise_rank import PairwiseRankModel, batch_video_ids, pair_indices

__all__ = ["pairwise_step", "fit_pairwise"]


def pairwise_step(model: PairwiseRankModel, stage: str, batch: Mapping[str, Any], max_pairs: "int | None" = None,
                  generator: "torch.Generator | None" = None) -> "dict[str, torch.Tensor] | None":
    """Loss parts of one batch for ``stage`` ('rank', 'uncertainty' or 'mapping').

    Rank and uncertainty stages build same-video pairs with ``pair_indices`` from the video ids
    (``batch['video_index']`` or ``batch['video']``) and ``model.ranking_targets(batch)``, and
    score each frame once (``PairwiseRankModel.loss_pairs``); they return None when the batch
    holds no ordered pair. ``max_pairs`` None keeps every ordered pair (pairs cost no forward
    pass). The mapping stage is ``model.loss_mapping(batch)``, None for a one-frame batch (G
    over a single frame says nothing about the video's neutral level; a video cut into batches
    can leave one frame over).
    """
    if stage == "mapping":
        return model.loss_mapping(dict(batch)) if len(batch["image"]) > 1 else None
    if stage not in ("rank", "uncertainty"):
        raise ValueError(f"pairwise_step: unknown stage {stage!r}")
    targets = model.ranking_targets(batch)
    vid = batch_video_ids(batch, targets.device)
    if vid is None:
        raise KeyError("pairwise-rank training needs batch['video_index'] or batch['video']: pairs come "
                       "from one video (paper 004 §3.1)")
    ii, jj, r = pair_indices(vid, targets, max_pairs, generator)
    if len(ii) == 0:
        return None
    device = batch["image"].device
    return model.loss_pairs(stage, batch, ii.to(device), jj.to(device), r.to(device))


def fit_pairwise(model: PairwiseRankModel, batches_iter_factory: Callable[[str], Iterable[Mapping[str, Any]]],
                 epochs_per_stage: "int | Mapping[str, int]",
                 optimizer_factory: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
                 max_pairs: "int | None" = None,
                 on_step: "Callable[[str, int, dict[str, float]], None] | None" = None) -> dict[str, list[float]]:
    """Train f, then h (f frozen), then the mapping (f, h frozen): paper 004 §3 in one call.

    ``batches_iter_factory(stage)`` returns a fresh iterable of batches for one epoch of that
    stage (rank/uncertainty batches need video ids; mapping batches should hold video
    context, see ``components.models.pairwise_rank``). ``epochs_per_stage``: one count for every
    stage or a mapping stage → count (missing or 0 skips it). ``optimizer_factory(params)`` makes
    a fresh optimizer per stage over the stage's trainable parameters. ``on_step(stage, step,
    losses)`` is called after every optimizer step. Returns stage → mean loss per epoch (NaN
    for an epoch without a usable batch). The model ends in eval mode with every network
    trainable again (stage None).
    """
    counts = ({s: int(epochs_per_stage) for s in model.stages()} if isinstance(epochs_per_stage, int)
              else {s: int(epochs_per_stage.get(s, 0)) for s in model.stages()})
    unknown = set(epochs_per_stage) - set(model.stages()) if isinstance(epochs_per_stage, Mapping) else set()
    if unknown:
        raise ValueError(f"fit_pairwise: unknown stage(s) {sorted(unknown)}; this model runs {model.stages()}")
    history: dict[str, list[float]] = {}
    step = 0
    for stage in model.stages():
        if counts[stage] <= 0:
            continue
        model.set_stage(stage)
        model.train()
        optimizer = optimizer_factory(model.trainable_parameters())
        history[stage] = []
        for _ in range(counts[stage]):
            losses = []
            for batch in batches_iter_factory(stage):
                parts = pairwise_step(model, stage, batch, max_pairs)
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
    model.set_stage(None)
    model.eval()
    return history
