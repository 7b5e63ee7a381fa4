"""Pairwise-rank: pseudo-intensities from a siamese ranking network, their uncertainty, and a
video-level mapping to AU labels (paper 004, Saito et al., "Action units recognition using
improved pairwise deep architecture", ABAW 2021).

Three networks, trained one after the other (§3, Fig. 1):
1. pseudo-intensity network f (§3.1): a CNN (VGG16 in the paper) scoring a face; trained as a
   siamese pair on two frames of the same video with different labels, with the ranking hinge
   max(0, m - r_ij (f(x_i) - f(x_j))), m = 1 (``.losses.ranking_hinge``);
2. uncertainty network h (§3.2): a second CNN giving σ = softplus(h(x)) + ε, trained on the same
   pairs with f frozen to minimise the probability of misordering (sign-corrected, see
   ``.losses``);
3. mapping network (§3.3): fully connected layers (shaped like the VGG16 classifier: FC, ReLU,
   dropout) on the frame's pseudo-intensity ŷ, its σ and statistics G of both over the frames of
   the same video around it, trained with MAE against the labels (occurrence in [0, 1] and,
   optionally, intensity 0-5).
The model implements ``MultiStepTraining``: ``stages()`` lists the steps, ``set_stage`` freezes
all but the stage's network and ``stage_loss`` is one batch's loss for a step (``loss_rank``,
``loss_uncertainty`` and ``loss_mapping`` are the three steps on explicit inputs);
``components.training.fit_stages`` runs them as one call. At inference it is one model:
``forward`` returns ``logits`` (the logit of the mapped occurrence probability, thresholded at
0 ⇔ 0.5), ``pseudo_intensity``, ``sigma`` and ``intensity`` when configured. A generic loop that
only calls ``forward`` and ``loss`` trains all three networks end to end on the mapping MAE,
which is not the paper's schedule: drive training through the stages.

Batch keys read: ``image`` (B, C, S, S); ``labels`` (B, n_AU); ``intensity`` (B, n_AU) when
ranking or mapping intensities; video context for G, first match wins:
- ``window`` (B, T, C, S, S): T context frames around each frame (``InputSpec.window``), G over them;
- ``video_index`` or ``video`` (B,): video ids (int tensor, or strings as ``BatchBuilder`` passes
  them), with optional ``frame_index`` or ``frame_order`` (B,): G over the batch's frames of the
  same video within ±``window_frames``//2 frames (all of them when ``whole_video``). Training
  batches of the rank and uncertainty stages need video ids (pairs come from one video, §3.1);
- neither (``context_fallback``): 'batch' treats the whole batch as one video in frame order,
  which is what the Predictor's video path passes (one face track per batch); 'frame' uses the
  frame alone (G degenerates to ŷ, σ and zero spread), for unrelated stills.

Departures (docs/models.md): f and h of ``pairwise_rank`` start from ImageNet EfficientNet-Lite0 (the
weights catalogue has no ImageNet VGG16; ``pairwise_rank_vgg16`` keeps the paper's network for a
user with torchvision's file); one trunk per network with one output per AU (the paper's description is
per AU; a pair is ordered independently for each AU where both labels are known and differ);
global average pooling and a linear layer replace the VGG16 classifier in f and h; σ = softplus(h)
+ ε instead of the raw h; the uncertainty loss sign is corrected; G is ours (mean, standard
deviation, minimum, maximum and σ⁻²-weighted mean of ŷ; mean and standard deviation of σ) as the
paper names only "probability distribution and variance", and the mapping also reads the
frame's relative position (ŷ − min) / (max − min + m) in its context (``mapping_features``; with
``mapping_inputs='relative'`` only ŷ features relative to the context); the mapping FCN width is a config
and it starts with a standardisation of its inputs by the statistics of every training row
(``RunningStandardize``; ŷ has no fixed scale, and BatchNorm's per-batch statistics differ
between one-video training batches and inference). The siamese pair is one network: training
scores each frame of a batch once and forms every pair from those scores (``loss_pairs``).

Cross-fitting (``mapping_crossfit = k ≥ 2``, ours; off by default, the paper's schedule): the
paper trains the mapping on ŷ and σ of the same training frames f and h were fitted to (§3.3),
where they are more confident than on unseen frames, so the mapping learns a relation it will
not see at inference. With k groups of training subjects (``subject_groups``), the model also
holds k fold copies f_g, h_g, each trained in the same steps on the pairs of the subjects outside
group g; the mapping step scores each frame with the fold networks of its subject's group, which
never saw it (nor, through the context G, its video). Inference, validation and the checkpoint's
main networks are f and h trained on every subject, whose scores on new faces are what the
out-of-fold scores stand in for. Cost: the rank and uncertainty steps train k+1 copies (about k
times the compute: each fold copy sees (k−1)/k of the pairs), and the checkpoint carries the fold
copies (unused at inference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from components.losses import masked_l1
from components.models.backbones import build_backbone
from components.models.base import AUModel, InputSpec, MultiStepTraining
from components.models.pairwise_rank.config import PairwiseRankConfig
from components.models.pairwise_rank.context import (RunningStandardize, batch_frame_index, batch_video_ids,
                                                     pair_indices, subject_groups, window_statistics)
from components.models.pairwise_rank.losses import misordering_loss, ranking_hinge, sigma_from_raw
from components.models.registry import register_model

__all__ = ["PairwiseRankConfig", "PairwiseRankModel", "STAGES", "N_FRAME_FEATURES"]

STAGES: tuple[str, ...] = ("rank", "uncertainty", "mapping")
"""Training steps of paper 004 in order (§3.1, §3.2, §3.3)."""

N_FRAME_FEATURES = 10
"""Mapping inputs per AU: ŷ, σ, the 7 statistics of ``window_statistics`` and the frame's place
in its context's range (``PairwiseRankModel.mapping_features``)."""


class _ScoreNet(nn.Module):
    """Backbone, global average pooling and one linear output per AU."""

    def __init__(self, backbone: str, in_channels: int, weights: "str | Path | None", n_out: int) -> None:
        super().__init__()
        self.features, width = build_backbone(backbone, in_channels, str(weights or ""))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, n_out)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class PairwiseRankModel(AUModel, MultiStepTraining):
    """Siamese pseudo-intensity network f, uncertainty network h and mapping FCN (paper 004)."""

    family = "pairwise-rank"
    pretrained_parts = ("rank_net.features", "uncertainty_net.features")
    paper = "Saito et al., improved pairwise deep architecture (ABAW 2021), paper 004"
    video_order_stages: tuple[str, ...] = ("mapping",)
    """Steps whose training batches must be cut in video order like prediction's
    (``components.batches.VIDEO_BATCH_ROWS``, unshuffled): the mapping reads G from the batch's
    frames of the same video. The rank and uncertainty steps pair frames in shuffled batches."""

    def __init__(self, aus: Sequence[int], config: PairwiseRankConfig, weights: "str | Path | None" = None) -> None:
        super().__init__(aus, config)
        c, k = config, self.num_aus
        n_in = self.input_spec().num_channels
        missing = [a for a in c.uncertainty_aus if a not in self.aus]
        if missing:
            raise ValueError(f"pairwise-rank: uncertainty_aus holds AU{missing[0]}, which is not one "
                             f"of this model's AUs {list(self.aus)} (all not found: {missing})")
        # Which AUs use σ (§4.3 P1 / P2); not state: it follows from the config.
        uses = [not c.uncertainty_aus or a in c.uncertainty_aus for a in self.aus]
        self.register_buffer("uses_sigma", torch.tensor(uses) & c.uncertainty, persistent=False)
        # ``weights`` (torchvision classifier state dict; paper: ImageNet VGG16) start both f and,
        # when it has its own CNN, h: §3.2 describes h as a second network of the same kind.
        self.rank_net = _ScoreNet(c.backbone, n_in, weights, k)
        self.uncertainty_net = self._new_uncertainty_net(weights)
        # Cross-fitting: fold copies f_g, h_g, each started like f and h.
        self.fold_rank_nets: "nn.ModuleList | None" = None
        self.fold_uncertainty_nets: "nn.ModuleList | None" = None
        if c.mapping_crossfit:
            folds = range(c.mapping_crossfit)
            self.fold_rank_nets = nn.ModuleList(_ScoreNet(c.backbone, n_in, weights, k) for _ in folds)
            if c.uncertainty:
                self.fold_uncertainty_nets = nn.ModuleList(self._new_uncertainty_net(weights) for _ in folds)

        # ŷ has no fixed scale (only its order is trained), so the mapping standardises its
        # inputs first (our addition) with statistics over all training rows (RunningStandardize).
        layers: list[nn.Module] = [RunningStandardize(k * N_FRAME_FEATURES)]
        width = k * N_FRAME_FEATURES
        for h in c.mapping_hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(c.mapping_dropout)]
            width = h
        layers.append(nn.Linear(width, 2 * k if c.intensity_head else k))
        self.mapping = nn.Sequential(*layers)
        self.stage: "str | None" = None

    def pretrained_modules(self) -> list[nn.Module]:
        """f's and h's backbones (``pretrained_parts``) and those of the cross-fitting copies."""
        out = super().pretrained_modules()
        if out:
            for nets in (self.fold_rank_nets, self.fold_uncertainty_nets):
                out += [net.features for net in (nets or []) if isinstance(net, _ScoreNet)]
        return out

    def _new_uncertainty_net(self, weights: "str | Path | None") -> "nn.Module | None":
        c = self.config
        if not c.uncertainty:
            return None
        if c.uncertainty_backbone == "separate":
            return _ScoreNet(c.backbone, self.input_spec().num_channels, weights, self.num_aus)
        return nn.Linear(self.rank_net.head.in_features, self.num_aus)

    # ----- declaration and stage control ---------------------------------------------------------
    @classmethod
    def input_spec_for(cls, config: PairwiseRankConfig) -> InputSpec:
        c = config
        return InputSpec(image_size=c.image_size, channels=c.channels, mask=c.mask, window=c.window)

    def stages(self) -> tuple[str, ...]:
        """The training steps this configuration runs, in order."""
        return STAGES if self.config.uncertainty else tuple(s for s in STAGES if s != "uncertainty")

    def _parts(self) -> dict[str, list["nn.Module | None"]]:
        return {"rank": [self.rank_net, self.fold_rank_nets],
                "uncertainty": [self.uncertainty_net, self.fold_uncertainty_nets], "mapping": [self.mapping]}

    def set_stage(self, stage: "str | None") -> None:
        """Train only the stage's network: 'rank' (f), 'uncertainty' (h, f frozen, §3.2) or
        'mapping' (f and h frozen, §3.3); None makes everything trainable. Frozen networks get
        ``requires_grad=False`` and stay in eval mode (fixed BatchNorm statistics)."""
        if stage is not None and stage not in self.stages():
            raise ValueError(f"stage must be one of {self.stages()} or None, got {stage!r}")
        self.stage = stage
        for name, parts in self._parts().items():
            for part in parts:
                if part is not None:
                    part.requires_grad_(stage is None or name == stage)
        self.train(self.training)

    def train(self, mode: bool = True) -> "PairwiseRankModel":
        super().train(mode)
        if self.stage is not None:
            for name, parts in self._parts().items():
                for part in parts:
                    if part is not None and name != self.stage:
                        part.eval()
        return self

    # ----- the networks --------------------------------------------------------------------------
    def _check_images(self, x: torch.Tensor, where: str) -> torch.Tensor:
        s, ch = self.config.image_size, self.input_spec().num_channels
        if x.ndim != 4 or x.shape[1:] != (ch, s, s):
            raise ValueError(f"pairwise-rank: {where} must be (B, {ch}, {s}, {s}), got {tuple(x.shape)}")
        return x

    def _nets(self, fold: "int | None") -> tuple[_ScoreNet, "nn.Module | None"]:
        if fold is None:
            return self.rank_net, self.uncertainty_net
        if self.fold_rank_nets is None:
            raise ValueError("pairwise-rank: fold networks exist only with mapping_crossfit >= 2")
        h = None if self.fold_uncertainty_nets is None else self.fold_uncertainty_nets[fold]
        return self.fold_rank_nets[fold], h

    def score(self, images: torch.Tensor, fold: "int | None" = None) -> tuple[torch.Tensor, "torch.Tensor | None"]:
        """(ŷ = f(x), σ = softplus(h(x)) + ε or None without uncertainty), each (B, n_AU).

        AUs outside ``uncertainty_aus`` (when it is set) get σ = 1 (§4.3 P2). ``fold`` g scores
        with the cross-fitting copies f_g, h_g instead of f, h.
        """
        f, h = self._nets(fold)
        if h is None:
            return f(images), None
        if self.config.uncertainty_backbone == "shared":
            feat = f.embed(images)
            y, raw = f.head(feat), h(feat)
        else:
            y, raw = f(images), h(images)
        sigma = sigma_from_raw(raw, self.config.sigma_eps)
        if self.config.uncertainty_aus:
            sigma = torch.where(self.uses_sigma, sigma, torch.ones_like(sigma))
        return y, sigma

    def score_by_group(self, images: torch.Tensor, groups: "torch.Tensor | None"
                       ) -> tuple[torch.Tensor, "torch.Tensor | None"]:
        """``score`` of each row by the fold networks of its group (B,), or by f, h when None."""
        if groups is None:
            return self.score(images)
        y = sigma = None
        for g in groups.unique().tolist():
            rows = (groups == g).nonzero().squeeze(1)
            yg, sg = self.score(images[rows], fold=int(g))
            y = yg.new_zeros(len(images), yg.shape[1]) if y is None else y
            y = y.index_copy(0, rows, yg)
            if sg is not None:
                sigma = sg.new_zeros(len(images), sg.shape[1]) if sigma is None else sigma
                sigma = sigma.index_copy(0, rows, sg)
        assert y is not None
        return y, sigma

    def crossfit_groups(self, batch: dict[str, Any]) -> "torch.Tensor | None":
        """Rows' subject groups while the mapping step trains with cross-fitting, else None."""
        if self.fold_rank_nets is None or self.stage != "mapping" or not self.training:
            return None
        return subject_groups(batch, self.config.mapping_crossfit, batch["image"].device)

    def _context(self, batch: dict[str, Any], y: torch.Tensor, sigma: torch.Tensor,
                 groups: "torch.Tensor | None" = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context values (B, N, K) and mask (B, N) for G; see the module docstring for the keys."""
        b = y.shape[0]
        if "window" in batch:
            win = batch["window"]
            if win.ndim != 5 or win.shape[0] != b:
                raise ValueError(f"pairwise-rank: batch['window'] must be (B, T, C, S, S), got {tuple(win.shape)}")
            wy, ws = self.score_by_group(self._check_images(win.flatten(0, 1), "batch['window'] frames"),
                                         None if groups is None else groups.repeat_interleave(win.shape[1]))
            ws = torch.zeros_like(wy) if ws is None else ws
            t = win.shape[1]
            return wy.unflatten(0, (b, t)), ws.unflatten(0, (b, t)), y.new_ones(b, t)
        vid = batch_video_ids(batch, y.device)
        if vid is None and self.config.context_fallback == "frame":
            return y[:, None], sigma[:, None], y.new_ones(b, 1)
        if vid is not None and len(vid) != b:
            raise ValueError(f"pairwise-rank: {len(vid)} video ids for a batch of {b} frames")
        mask = torch.ones(b, b, dtype=torch.bool, device=y.device) if vid is None else vid[:, None] == vid[None, :]
        fi = batch_frame_index(batch, y.device)
        if fi is None and vid is None:
            fi = torch.arange(b, device=y.device)     # one video, rows in frame order
        if fi is not None and not self.config.whole_video:
            mask &= (fi[:, None] - fi[None, :]).abs() <= self.config.window_frames // 2
        return y[None].expand(b, -1, -1), sigma[None].expand(b, -1, -1), mask

    def mapping_features(self, batch: dict[str, Any], y: torch.Tensor, sigma: "torch.Tensor | None",
                         groups: "torch.Tensor | None" = None) -> torch.Tensor:
        """Mapping input (B, n_AU * 10): per AU [ŷ, σ, G(...), relative position] (§3.3, the set D_t).

        The relative position (ŷ − min) / (max − min + m) places the frame between the least and
        the most active frames of its context (m the ranking margin): ŷ is trained only to order
        frames within a video (§3.1), so its level differs from person to person, and this is
        the per-person normalisation §2.2 credits to [3] (subtracting a low percentile) made
        scale-free. The margin in the denominator keeps a video whose ŷ barely varies (an AU
        that never fires: pairs with different labels are pushed ≥ m apart) near 0 rather than
        stretching its noise over [0, 1]. Ours (docs/models.md). On the development folds of
        the learning set it matched or beat raw ŷ, and adding it to the mapping's inputs raised
        the learned mapping's held-out mean F1 (figures: docs/measurements.md).
        With ``mapping_inputs='relative'`` every ŷ feature is taken relative to the context.
        ``groups``: cross-fitting groups of the rows (window frames are scored by the same folds).
        """
        s = torch.zeros_like(y) if sigma is None else sigma
        cy, cs, mask = self._context(batch, y, s, groups)
        if sigma is None:
            cs = torch.ones_like(cy)        # equal weights in the weighted mean; σ features zeroed below
        stats = window_statistics(cy, cs, mask)
        if sigma is None:
            stats = torch.cat([stats[..., :5], torch.zeros_like(stats[..., 5:])], -1)
        y_mean, y_std, y_min, y_max, y_wmean = stats.unbind(-1)[:5]
        position = (y - y_min) / (y_max - y_min + self.config.margin)
        if self.config.mapping_inputs == "relative":
            feats = [y - y_mean, s, y_std, y - y_min, y_max - y, y - y_wmean, stats[..., 5], stats[..., 6],
                     position, y_max - y_min]
        else:
            feats = [y, s, *stats.unbind(-1), position]
        return torch.stack(feats, -1).flatten(1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        # Training the mapping with cross-fitting: each row scored by the folds that never saw it.
        groups = self.crossfit_groups(batch)
        y, sigma = self.score_by_group(self._check_images(batch["image"], "batch['image']"), groups)
        z = self.mapping(self.mapping_features(batch, y, sigma, groups))
        k = self.num_aus
        out = {"logits": z[:, :k], "pseudo_intensity": y}
        if sigma is not None:
            out["sigma"] = sigma
        if self.config.intensity_head:
            out["intensity"] = 5.0 * torch.sigmoid(z[:, k:])
        return out

    # ----- the three training steps --------------------------------------------------------------
    def ranking_targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """The labels y of eq. 1 that order pairs: batch['labels'] or batch['intensity'].

        Deviation for distillation (``label_sources`` teacher): occurrence pairs are ordered by
        ``batch['hard_labels']`` (the teacher's decisions at its thresholds, binary as eq. 1's
        labels) where the batch has them, not by tiny differences of its probabilities; the
        mapping's MAE (step 3) fits the probabilities themselves."""
        key = "intensity" if self.config.rank_target == "intensity" else "labels"
        if key == "labels" and "hard_labels" in batch:
            key = "hard_labels"
        if key not in batch:
            raise KeyError(f"pairwise-rank with rank_target={self.config.rank_target!r} needs batch[{key!r}]")
        return batch[key]

    def _pair_images(self, batch_i: dict[str, Any], batch_j: dict[str, Any], r: torch.Tensor) -> torch.Tensor:
        xi = self._check_images(batch_i["image"], "batch_i['image']")
        xj = self._check_images(batch_j["image"], "batch_j['image']")
        if xi.shape[0] != xj.shape[0] or r.shape != (xi.shape[0], self.num_aus):
            raise ValueError(f"pairwise-rank: pair batches of {xi.shape[0]} and {xj.shape[0]} images need "
                             f"r of shape ({xi.shape[0]}, {self.num_aus}), got {tuple(r.shape)}")
        return torch.cat([xi, xj])      # one pass through the shared (siamese) weights

    def _pair_scores(self, images: torch.Tensor, stage: str, fold: "int | None" = None
                     ) -> tuple[torch.Tensor, "torch.Tensor | None"]:
        if stage == "rank":
            return self._nets(fold)[0](images), None
        if self.uncertainty_net is None:
            raise RuntimeError("pairwise-rank built with uncertainty=False has no uncertainty step")
        y, sigma = self.score(images, fold)
        return y.detach(), sigma

    def _pair_loss(self, stage: str, yi: torch.Tensor, yj: torch.Tensor, si: "torch.Tensor | None",
                   sj: "torch.Tensor | None", r: torch.Tensor) -> dict[str, torch.Tensor]:
        if stage == "rank":
            loss = ranking_hinge(yi, yj, r, self.config.margin)
            return {"loss": loss, "rank_hinge": loss.detach()}
        # §4.3 P2: only the AUs that use σ train h (r = 0 leaves an entry out of the mean).
        loss = misordering_loss(yi, yj, si, sj, r * self.uses_sigma, self.config.margin)
        return {"loss": loss, "misordering": loss.detach(),
                "sigma_mean": torch.cat([si, sj])[:, self.uses_sigma].detach().mean()}

    def loss_rank(self, batch_i: dict[str, Any], batch_j: dict[str, Any], r: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 1 (§3.1): ranking hinge of f on pairs (x_i, x_j) with orders r (P, n_AU)."""
        y, _ = self._pair_scores(self._pair_images(batch_i, batch_j, r), "rank")
        return self._pair_loss("rank", *y.chunk(2), None, None, r)

    def loss_uncertainty(self, batch_i: dict[str, Any], batch_j: dict[str, Any], r: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """Step 2 (§3.2): misordering probability trains h; ŷ = f(x) is frozen (detached)."""
        y, sigma = self._pair_scores(self._pair_images(batch_i, batch_j, r), "uncertainty")
        return self._pair_loss("uncertainty", *y.chunk(2), *sigma.chunk(2), r)

    def loss_pairs(self, stage: str, batch: dict[str, Any], ii: torch.Tensor, jj: torch.Tensor, r: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
        """Step 1 or 2 on pairs (``ii``, ``jj``) of one batch's frames, each frame scored once.

        The same loss as ``loss_rank`` / ``loss_uncertainty`` on the pairs' images (the siamese
        weights are shared, so scoring each distinct frame once and indexing the scores is the
        siamese pass; only BatchNorm's batch statistics differ: each frame counts once), at B
        forward passes instead of 2P: a batch of 16 frames of one video holds up to 120 pairs.
        """
        if stage not in ("rank", "uncertainty"):
            raise ValueError(f"loss_pairs: stage must be rank or uncertainty, got {stage!r}")
        x = self._check_images(batch["image"], "batch['image']")
        if not (len(ii) == len(jj) == r.shape[0]) or r.shape[1:] != (self.num_aus,):
            raise ValueError(f"pairwise-rank: {len(ii)} and {len(jj)} pair indices need r of shape "
                             f"({len(ii)}, {self.num_aus}), got {tuple(r.shape)}")
        y, sigma = self._pair_scores(x, stage)
        parts = self._pair_loss(stage, y[ii], y[jj], None if sigma is None else sigma[ii],
                                None if sigma is None else sigma[jj], r)
        if self.fold_rank_nets is not None:
            parts = self._add_fold_losses(stage, batch, x, ii, jj, r, parts)
        return parts

    def _add_fold_losses(self, stage: str, batch: dict[str, Any], x: torch.Tensor, ii: torch.Tensor,
                         jj: torch.Tensor, r: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cross-fitting: fold g's networks learn the same step on the rows outside group g.

        A pair never leaves its video, so both its frames share a group. Only those rows are
        scored, so f_g (and its BatchNorm statistics) never see a frame of group g. The fold
        losses add to ``loss`` (each network gets its own gradient); ``crossfit_loss`` is their mean.
        """
        groups = subject_groups(batch, self.config.mapping_crossfit, x.device)
        total, fold_losses = parts["loss"], []
        for g in range(self.config.mapping_crossfit):
            rows = (groups != g).nonzero().squeeze(1)
            keep = groups[ii] != g
            if not bool(keep.any()):
                continue
            at = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
            at[rows] = torch.arange(len(rows), device=x.device)
            fi, fj = at[ii[keep]], at[jj[keep]]
            y, sigma = self._pair_scores(x[rows], stage, fold=g)
            fold = self._pair_loss(stage, y[fi], y[fj], None if sigma is None else sigma[fi],
                                   None if sigma is None else sigma[fj], r[keep])
            total = total + fold["loss"]
            fold_losses.append(fold["loss"].detach())
        parts = dict(parts, loss=total)
        if fold_losses:
            parts["crossfit_loss"] = torch.stack(fold_losses).mean()
        return parts

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Step 3 (§3.3) loss: MAE of the mapped occurrence probability (and intensity) on known labels.

        With ``pos_weight`` set (``TrainConfig.pos_weight='balanced'``) active labels weigh
        negatives/positives in the occurrence MAE. Unweighted, the MAE's optimum is the median
        label, 0 for AUs under 50 % base rate; on the synthetic set the mapping then ends near
        0 for every frame (docs/measurements.md).
        """
        probs = torch.sigmoid(outputs["logits"])
        parts = {"mapping_mae": masked_l1(probs, batch["labels"], pos_weight=self.positive_weight(probs))}
        if "intensity" in outputs and "intensity" in batch:
            parts["intensity_mae"] = masked_l1(outputs["intensity"], batch["intensity"])
        parts["loss"] = sum(parts.values())
        return parts

    def loss_mapping(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Step 3 (§3.3): forward (G over the batch's video context) and the mapping MAE."""
        return self.loss(self(batch), batch)

    def stage_loss(self, stage: str, batch: dict[str, Any], max_pairs: "int | None" = None,
                   generator: "torch.Generator | None" = None) -> "dict[str, torch.Tensor] | None":
        """Loss parts of one batch for ``stage`` ('rank', 'uncertainty' or 'mapping').

        Rank and uncertainty stages build same-video pairs with ``pair_indices`` from the video ids
        (``batch['video_index']`` or ``batch['video']``) and ``ranking_targets(batch)``, and score
        each frame once (``loss_pairs``); they return None when the batch holds no ordered pair.
        ``max_pairs`` None keeps every ordered pair (pairs cost no forward pass). The mapping
        stage is ``loss_mapping(batch)``, None for a one-frame batch (G over a single frame says
        nothing about the video's neutral level; a video cut into batches can leave one over).
        """
        if stage == "mapping":
            return self.loss_mapping(dict(batch)) if len(batch["image"]) > 1 else None
        if stage not in ("rank", "uncertainty"):
            raise ValueError(f"pairwise-rank: unknown stage {stage!r}; stages are {STAGES}")
        targets = self.ranking_targets(batch)
        vid = batch_video_ids(batch, targets.device)
        if vid is None:
            raise KeyError("pairwise-rank training needs batch['video_index'] or batch['video']: pairs "
                           "come from one video (paper 004 §3.1)")
        ii, jj, r = pair_indices(vid, targets, max_pairs, generator)
        if len(ii) == 0:
            return None
        device = batch["image"].device
        return self.loss_pairs(stage, batch, ii.to(device), jj.to(device), r.to(device))


@register_model("pairwise_rank_small", PairwiseRankModel, tags=("small",),
                description="ResNet-18 f and h at 112 px, mapping FCN 64-64 on ŷ, σ and window statistics")
def pairwise_rank_small() -> PairwiseRankConfig:
    return PairwiseRankConfig(backbone="resnet18", image_size=112, mapping_hidden=(64, 64))


@register_model("pairwise_rank", PairwiseRankModel, pretrained="efficientnet_lite0-imagenet",
                description="f and h from ImageNet EfficientNet-Lite0 at 224 px (the paper: VGG16), mapping FCN 1024-1024")
def pairwise_rank() -> PairwiseRankConfig:
    return PairwiseRankConfig(backbone="efficientnet_lite0", mapping_hidden=(1024, 1024))


@register_model("pairwise_rank_vgg16", PairwiseRankModel,
                description="the paper's network: VGG16 f and h at 224 px (weights: a local file), mapping FCN 1024-1024")
def pairwise_rank_vgg16() -> PairwiseRankConfig:
    return PairwiseRankConfig(mapping_hidden=(1024, 1024))
