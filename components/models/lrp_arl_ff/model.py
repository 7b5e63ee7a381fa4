"""LRP + ARL + FF: local region perception, AU relationship learning and feature fusion.

Paper 001: Yu et al., "Local region perception and relationship learning combined with feature
fusion for facial action unit detection" (USTC, ABAW5 / CVPRW 2023). Section by section:

- §3 / §4.2 backbone: IResNet (insightface layout, ``components.models.iresnet``), Glint360K
  weights (``build_model(..., pretrained=...)``) when the user has them. Its B×C×7×7 map (112 px input) feeds two
  branches; its face embedding feeds the backbone logits and the backbone token.
- §3.1 LRP: m LANets [Wang & Guo, LS-CNN], each 1×1 conv C→C/r, ReLU, 1×1 conv C/r→1; the m maps
  are stacked, max-reduced over the stack, passed through a sigmoid and multiplied into the map.
- §3.2 ARL, after ME-GraphAU [Luo et al. 2022]: AFG — one fully connected layer per AU over every
  location, then global average pooling, gives node v_k; FGG — a graph per face that links each
  node to its k most similar nodes, one GNN layer over it, then a fully connected layer per node
  gives the AU logits.
- §3.3 FF: backbone logits from an FC head, fused with the AU logits by a fixed weight or by
  the weight token of a 2-layer transformer encoder over [weight, backbone, AU tokens] (Fig. 3).
  A third mode, ``fusion="per_au"`` (ours, between the paper's two), learns one weight per AU.

Ablation switches (Table 2 removes LRP, ARL and FF in turn): ``lrp=False`` drops §3.1;
``graph=False`` drops the FGG graph of §3.2 (the AFG node features go straight to the per-AU
head); ``fusion`` picks the §3.3 weight: "transformer" (Fig. 3), "fixed", "per_au" or "none".
- §3.4.2 loss: BCE (eq. 1) + multi-label circle loss (eq. 2, ``.losses``), summed (eq. 3)
  with a configurable circle weight; -1 labels never contribute.

Pretrained starts: the paper's Glint360K IResNet-100 ships in no package, so ``lrp_arl_ff``
starts from the catalogue's FaceNet (Inception-ResNet-V1 on MS-Celeb-1M, map taken at stride 16:
896×8×8 at its 160 px); ``lrp_arl_ff_arcface`` takes insightface's ArcFace MobileFaceNet
(512×7×7 at 112 px), whose weights are non-commercial and are used only when a user names them;
``lrp_arl_ff_iresnet100`` is the paper's network for a user with the Glint360K file.

Departures (the paper leaves these open; ours): m = 8 LANets and r = 8 by default; a ReLU
between the two LANet convolutions (two stacked linear 1×1 convs would collapse into one); the
fusion is convex, ``α·AU + (1−α)·backbone`` with one α per face (sigmoid of an FC on the weight
token) or the fixed α; the per-AU FC of AFG is Linear+ReLU (ME-GraphAU adds BatchNorm); the
input, ImageNet-normalised RGB, is mapped to ArcFace's (x−0.5)/0.5 so Glint360K weights see
what they were trained on. Not here: the paper's resampling (samplers) and 5-model vote
(ensemble recipe) live with the datasets and the ensemble modules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import nn

from components.losses import masked_l1
from components.models.base import AUModel, InputSpec
from components.models.backbones import FACE_ARCHITECTURES, build_face_backbone, from_imagenet
from components.models.iresnet import IRESNET_LAYERS, build_iresnet
from components.weights import Normalisation
from components.models.lrp_arl_ff.losses import multilabel_circle_loss
from components.models.registry import register_model

__all__ = ["LrpArlFfConfig", "LrpArlFfModel", "LocalRegionPerception", "AUGraph",
           "TransformerFusion", "knn_adjacency", "imagenet_to_arcface"]

_PAPER = "Yu et al., LRP+ARL+FF, ABAW5 / CVPRW 2023 (paper 001)"
_ARCFACE = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
"""insightface's IResNet input: ((pixel/255) − 0.5) / 0.5."""


@dataclass(frozen=True)
class LrpArlFfConfig:
    backbone: Literal["iresnet", "inception_resnet_v1", "mobilefacenet"] = "iresnet"
    """Face-recognition backbone (§4.2 uses IResNet-100 on Glint360K): ``iresnet`` (``depth``,
    ``width``, ``num_features``; weights: a local insightface file), or a catalogue network whose
    weights ship in a package: ``inception_resnet_v1`` (FaceNet, 896×8×8 stride-16 map at 160 px,
    128-d embedding) or ``mobilefacenet`` (ArcFace w600k, 512×7×7 at 112 px, 512-d; its weights are
    non-commercial). For the catalogue networks ``depth``/``width``/``num_features`` are unused and
    the input is prepared as their weights expect (``arcface_input`` is IResNet's)."""
    depth: int = 100
    """IResNet depth: 18, 34, 50 or 100 (the paper uses 100)."""
    width: int = 64
    """IResNet stem width; 64 is the insightface layout (needed for Glint360K weights)."""
    num_features: int = 512
    """Face-embedding size of the IResNet ``fc`` (512 in insightface)."""
    image_size: int = 112
    """Input crop side in pixels (112 for ArcFace weights)."""
    arcface_input: bool = True
    """Map ImageNet-normalised input to ArcFace's (x-0.5)/0.5 before the backbone."""
    lrp: bool = True
    """Use the local region perception module (§3.1); False is the 'no LRP' ablation."""
    lanets: int = 8
    """m, the number of LANets in LRP (the paper does not give it)."""
    lanet_reduction: int = 8
    """r, the channel compression of each LANet's first 1x1 conv (C -> C/r)."""
    neighbours: int = 4
    """k, the neighbours each AU node links to in the per-face graph (§3.2; clipped to n_AU)."""
    graph: bool = True
    """Use the FGG graph of ARL (§3.2, Table 2's ARL row): the per-face kNN graph and its GNN
    layers over the AU nodes. False is the 'no graph' ablation: the AFG node features v_k (per-AU
    FC + global average pooling over the LRP map) go straight to the per-AU head, and are the AU
    tokens of transformer fusion; ``neighbours``, ``graph_metric`` and ``graph_layers`` are then
    unused. (Table 2's row before ARL also lacks AFG: a plain classification head. We keep AFG so
    that only the relation learning is ablated and the fusion still has AU tokens.)"""
    graph_metric: Literal["dot", "cosine"] = "dot"
    """Node similarity that builds the graph (ME-GraphAU's 'dots' or cosine)."""
    graph_layers: int = 1
    """GNN layers over the AU graph (ME-GraphAU's FGG uses one)."""
    fusion: Literal["transformer", "fixed", "per_au", "none"] = "transformer"
    """FF (§3.3), the weight α of the AU logits in α·AU + (1−α)·backbone: "transformer" = one α
    per face from the weight token of a self-attention encoder (Fig. 3); "fixed" = the constant
    ``fixed_weight`` (the paper's other FF module); "per_au" = one learned α_k per AU, shared by
    all faces, α_k = sigmoid(a_k) with a_k starting at logit(fixed_weight) (ours: between the
    paper's fixed weight and its per-face token, it lets AUs the backbone detects better lean on
    the backbone logits); "none" = AU logits only (the paper's Table 2 row before FF)."""
    fixed_weight: float = 0.5
    """Weight of the AU logits in fixed fusion (the backbone logits get 1 - weight), and the
    starting α_k of every AU in per-AU fusion (there it must lie strictly inside (0, 1))."""
    fusion_layers: int = 2
    """Transformer encoder layers of the fusion module (2 in the paper, Fig. 3)."""
    fusion_heads: int = 8
    """Attention heads of the fusion transformer (must divide the token width, 8*width)."""
    circle_weight: float = 1.0
    """Weight of the circle loss (eq. 2) added to BCE (eq. 3 uses 1)."""
    dropout: float = 0.0
    """Dropout on the flattened map before the embedding fc (insightface's dropout)."""
    intensity_head: bool = False
    """Add a per-AU regression head for intensity (0-5) on the graph node features."""

    def __post_init__(self) -> None:
        if self.backbone not in ("iresnet",) + FACE_ARCHITECTURES:
            raise ValueError(f"backbone must be iresnet or one of {list(FACE_ARCHITECTURES)}, got {self.backbone!r}")
        if self.backbone == "mobilefacenet" and self.image_size != 112:
            raise ValueError(f"the mobilefacenet backbone reads 112 px faces (its flatten head), got {self.image_size}")
        if self.depth not in IRESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(IRESNET_LAYERS)}, got {self.depth}")
        if self.width < 4 or self.num_features < 1:
            raise ValueError(f"width must be >= 4 and num_features >= 1, got {self.width}, "
                             f"{self.num_features}")
        if self.image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {self.image_size}")
        if self.lanets < 1 or self.lanet_reduction < 1 or 8 * self.width < self.lanet_reduction:
            raise ValueError(f"lanets >= 1 and 1 <= lanet_reduction <= {8 * self.width} needed, "
                             f"got {self.lanets}, {self.lanet_reduction}")
        if self.neighbours < 1 or self.graph_layers < 1:
            raise ValueError(f"neighbours and graph_layers must be >= 1, got {self.neighbours}, "
                             f"{self.graph_layers}")
        if self.graph_metric not in ("dot", "cosine"):
            raise ValueError(f"graph_metric must be dot or cosine, got {self.graph_metric!r}")
        if self.fusion not in ("transformer", "fixed", "per_au", "none"):
            raise ValueError(f"fusion must be transformer, fixed, per_au or none, got "
                             f"{self.fusion!r}")
        if not 0.0 <= self.fixed_weight <= 1.0:
            raise ValueError(f"fixed_weight must be in [0, 1], got {self.fixed_weight}")
        if self.fusion == "per_au" and not 0.0 < self.fixed_weight < 1.0:
            raise ValueError(f"fusion='per_au' starts every α_k at fixed_weight = sigmoid(a_k), "
                             f"which needs 0 < fixed_weight < 1, got {self.fixed_weight}")
        if self.fusion_layers < 1 or (8 * self.width) % self.fusion_heads:
            raise ValueError(f"fusion_layers >= 1 and fusion_heads dividing {8 * self.width} "
                             f"needed, got {self.fusion_layers}, {self.fusion_heads}")
        if self.circle_weight < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"circle_weight >= 0 and dropout in [0, 1) needed, got "
                             f"{self.circle_weight}, {self.dropout}")


def imagenet_to_arcface(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised RGB → ArcFace's input scale ((pixel/255) − 0.5) / 0.5 ∈ [-1, 1].

    insightface trains its IResNets (and the Glint360K weights) on RGB mapped that way.
    """
    return from_imagenet(x, _ARCFACE)


class LocalRegionPerception(nn.Module):
    """§3.1: m LANets → stack → max over the stack → sigmoid → multiply into the map."""

    def __init__(self, channels: int, lanets: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.lanets = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))
            for _ in range(lanets)
        )

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) → (attended map (B, C, h, w), attention score map (B, 1, h, w))."""
        maps = torch.cat([lanet(fmap) for lanet in self.lanets], dim=1)
        score = torch.sigmoid(maps.amax(dim=1, keepdim=True))
        return fmap * score, score


def knn_adjacency(nodes: torch.Tensor, k: int, metric: str = "dot") -> torch.Tensor:
    """§3.2 FGG graph: A[b, i, j] = 1 where node j is among node i's k most similar (ties kept).

    Similarity is the dot product (or cosine) of node features, computed without gradient: the
    topology is a discrete choice per face, as in ME-GraphAU.
    """
    with torch.no_grad():
        x = nn.functional.normalize(nodes, dim=-1) if metric == "cosine" else nodes
        sim = x @ x.transpose(1, 2)
        kth = sim.topk(min(k, sim.shape[-1]), dim=-1).values[..., -1:]
        return (sim >= kth).to(nodes.dtype)


class _GraphLayer(nn.Module):
    """One GNN layer over a per-face graph: v' = ReLU(v + BN(Â·V(v) + U(v))).

    Â = D^{-1/2} A D^{-1/2} is the symmetrically normalised adjacency (D: out-degrees), as in
    ME-GraphAU's FGG; BN normalises each AU node over the batch and channels.
    """

    def __init__(self, dim: int, num_nodes: int, k: int, metric: str) -> None:
        super().__init__()
        self.k, self.metric = k, metric
        self.U = nn.Linear(dim, dim)
        self.V = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(num_nodes)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        adj = knn_adjacency(nodes, self.k, self.metric)
        inv_sqrt = adj.sum(-1).rsqrt()
        norm_adj = inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)
        return torch.relu(nodes + self.bn(norm_adj @ self.V(nodes) + self.U(nodes)))


class AUGraph(nn.Module):
    """§3.2 ARL: AFG (per-AU FC over every location + GAP) → FGG (kNN graph, GNN) → per-AU FC.

    With ``graph=False`` (the 'no graph' ablation) there is no FGG: ``gnn`` is None and the AFG
    node features go straight to the per-AU FC.
    """

    def __init__(self, channels: int, num_aus: int, k: int, metric: str, layers: int,
                 graph: bool = True) -> None:
        super().__init__()
        scale = channels ** -0.5
        self.afg_weight = nn.Parameter(torch.randn(num_aus, channels, channels) * scale)
        self.afg_bias = nn.Parameter(torch.zeros(num_aus, channels))
        self.gnn = (nn.Sequential(*(_GraphLayer(channels, num_aus, k, metric) for _ in range(layers)))
                    if graph else None)
        self.head_weight = nn.Parameter(torch.randn(num_aus, channels) * scale)
        self.head_bias = nn.Parameter(torch.zeros(num_aus))

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) → (AU logits (B, n), node features V' (B, n, C); V without the graph)."""
        tokens = fmap.flatten(2).transpose(1, 2)
        # AFG: v_k = GAP_i ReLU(W_k x_i + b_k), one FC per AU (the paper's "number of categories
        # of fully connected layers and global average pooling").
        per_au = torch.relu(torch.einsum("blc,kcd->bkld", tokens, self.afg_weight)
                            + self.afg_bias[None, :, None, :])
        nodes = per_au.mean(dim=2)
        if self.gnn is not None:
            nodes = self.gnn(nodes)
        logits = (nodes * self.head_weight).sum(-1) + self.head_bias
        return logits, nodes


class TransformerFusion(nn.Module):
    """§3.3, Fig. 3: [weight token, backbone token, AU tokens] → 2-layer encoder → α ∈ (0, 1).

    The weight token is a learnable vector (like ViT's class token); the backbone token is an FC
    of the face embedding; the AU tokens are the GNN node features. An FC on the encoded weight
    token, through a sigmoid, gives the face's fusion weight α of the AU logits.
    """

    def __init__(self, dim: int, embed_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.weight_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.backbone_token = nn.Linear(embed_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.1,
                                           batch_first=True, norm_first=True)
        # Pre-norm layers leave the residual stream unnormalised: a final LayerNorm before the
        # head, as ViT applies to its class token, bounds the weight logit's input.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.to_weight = nn.Linear(dim, 1)
        # α starts at 0.5 for every face: both branches get gradient from the first step.
        nn.init.zeros_(self.to_weight.weight)
        nn.init.zeros_(self.to_weight.bias)

    def forward(self, embedding: torch.Tensor, au_tokens: torch.Tensor) -> torch.Tensor:
        """(B, E) embedding, (B, n, C) AU tokens → fusion weight α (B, 1)."""
        b = embedding.shape[0]
        seq = torch.cat([self.weight_token.expand(b, -1, -1),
                         self.backbone_token(embedding).unsqueeze(1), au_tokens], dim=1)
        return torch.sigmoid(self.to_weight(self.encoder(seq)[:, 0]))


class LrpArlFfModel(AUModel):
    """Paper 001 (§3): IResNet → LRP → ARL → AU logits, fused with backbone logits by FF."""

    family = "lrp-arl-ff"
    rows_independent = True
    pretrained_parts = ("backbone",)
    paper = _PAPER

    def __init__(self, aus: Sequence[int], config: LrpArlFfConfig, weights: "str | Path | None" = None) -> None:
        super().__init__(aus, config)
        c = config
        if c.backbone == "iresnet":
            # ``weights``: an insightface IResNet state dict (e.g. Glint360K backbone.pth), §4.2.
            self.backbone = build_iresnet(c.depth, c.width, c.image_size, c.num_features, c.dropout,
                                          weights or "")
            num_features = c.num_features
        else:
            # ``weights``: the catalogue entry of a face-recognition network (§4.2's role).
            self.backbone = build_face_backbone(c.backbone, str(weights or ""))
            num_features = self.backbone.num_features
        channels = self.backbone.out_channels
        self.lrp = LocalRegionPerception(channels, c.lanets, c.lanet_reduction) if c.lrp else None
        self.arl = AUGraph(channels, self.num_aus, c.neighbours, c.graph_metric, c.graph_layers,
                           graph=c.graph)
        self.backbone_head = nn.Linear(num_features, self.num_aus) if c.fusion != "none" else None
        self.fusion = (TransformerFusion(channels, num_features, c.fusion_layers, c.fusion_heads)
                       if c.fusion == "transformer" else None)
        self.fusion_logit = None
        if c.fusion == "per_au":
            # a_k with α_k = sigmoid(a_k) = fixed_weight at the start, for every AU (§3.3 mode
            # "per_au" of the config).
            start = torch.logit(torch.tensor(c.fixed_weight, dtype=torch.float64)).item()
            self.fusion_logit = nn.Parameter(torch.full((self.num_aus,), start))
        self.intensity = None
        if c.intensity_head:
            self.intensity = nn.Parameter(torch.randn(self.num_aus, channels) * channels ** -0.5)

    @classmethod
    def input_spec_for(cls, config: LrpArlFfConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels="rgb")

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        if self.config.arcface_input and self.config.backbone == "iresnet":
            x = imagenet_to_arcface(x)
        fmap = self.backbone.forward_features(x)
        out: dict[str, torch.Tensor] = {}
        attended = fmap
        if self.lrp is not None:
            attended, out["attention"] = self.lrp(fmap)
        au_logits, nodes = self.arl(attended)
        out["au_logits"] = au_logits
        if self.backbone_head is None:
            out["logits"] = au_logits
        else:
            # The backbone branch reads the map before LRP (Fig. 1: two parallel branches).
            embedding = self.backbone.forward_embedding(fmap)
            backbone_logits = self.backbone_head(embedding)
            if self.fusion is not None:
                alpha = self.fusion(embedding, nodes)
            elif self.fusion_logit is not None:
                alpha = torch.sigmoid(self.fusion_logit).expand(au_logits.shape[0], -1)
            else:
                alpha = au_logits.new_full((au_logits.shape[0], 1), self.config.fixed_weight)
            out.update(logits=alpha * au_logits + (1 - alpha) * backbone_logits,
                       backbone_logits=backbone_logits, fusion_weight=alpha)
        if self.intensity is not None:
            out["intensity"] = 5.0 * torch.sigmoid((nodes * self.intensity).sum(-1))
        return out

    def loss(self, outputs: dict[str, torch.Tensor],
             batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. 3: BCE (eq. 1) + circle_weight · circle (eq. 2) on the fused logits, masked.

        Deviation for distillation (``label_sources`` teacher): BCE learns a teacher's
        probabilities as soft targets; the circle loss, defined on positive and negative label
        sets, reads ``batch['hard_labels']`` (the teacher's decisions at its thresholds) where the
        batch has them."""
        parts = {"bce": self.bce(outputs["logits"], batch["labels"]),
                 "circle": multilabel_circle_loss(outputs["logits"], batch.get("hard_labels", batch["labels"]))}
        total = parts["bce"] + self.config.circle_weight * parts["circle"]
        if "intensity" in outputs and "intensity" in batch:
            parts["intensity_l1"] = masked_l1(outputs["intensity"], batch["intensity"])
            total = total + parts["intensity_l1"]
        parts["loss"] = total
        return parts


_SMALL = LrpArlFfConfig(depth=18, width=32, num_features=256, fusion_heads=4)
"""IResNet-18 at half width (256-channel 7×7 map): the CPU test, demo and benchmark size."""


@register_model("lrp_arl_ff_small", LrpArlFfModel, tags=("small",),
                description="IResNet-18 (half width) at 112 px + LRP + ARL + transformer FF")
def lrp_arl_ff_small() -> LrpArlFfConfig:
    return _SMALL


@register_model("lrp_arl_ff_no_lrp", LrpArlFfModel, tags=("small",),
                description="ablation of lrp_arl_ff_small without the LRP module")
def lrp_arl_ff_no_lrp() -> LrpArlFfConfig:
    return replace(_SMALL, lrp=False)


@register_model("lrp_arl_ff_fixed_fusion", LrpArlFfModel, tags=("small",),
                description="ablation of lrp_arl_ff_small with fixed-weight fusion (0.5)")
def lrp_arl_ff_fixed_fusion() -> LrpArlFfConfig:
    return replace(_SMALL, fusion="fixed")


@register_model("lrp_arl_ff_no_graph", LrpArlFfModel, tags=("small",),
                description="ablation of lrp_arl_ff_small without the ARL graph (AFG nodes -> head)")
def lrp_arl_ff_no_graph() -> LrpArlFfConfig:
    return replace(_SMALL, graph=False)


@register_model("lrp_arl_ff_per_au_fusion", LrpArlFfModel, tags=("small",),
                description="ablation of lrp_arl_ff_small with a learned fusion weight per AU")
def lrp_arl_ff_per_au_fusion() -> LrpArlFfConfig:
    return replace(_SMALL, fusion="per_au")


@register_model("lrp_arl_ff", LrpArlFfModel, pretrained="inception_resnet_v1-facenet",
                description="FaceNet face-recognition backbone (catalogue) at 160 px + LRP + ARL + transformer FF")
def lrp_arl_ff() -> LrpArlFfConfig:
    return LrpArlFfConfig(backbone="inception_resnet_v1", image_size=160)


@register_model("lrp_arl_ff_arcface", LrpArlFfModel,
                description="ArcFace MobileFaceNet backbone at 112 px; its weights are NON-COMMERCIAL: name "
                            "mobilefacenet-arcface-w600k to use them")
def lrp_arl_ff_arcface() -> LrpArlFfConfig:
    return LrpArlFfConfig(backbone="mobilefacenet", image_size=112)


@register_model("lrp_arl_ff_iresnet100", LrpArlFfModel,
                description="the paper's network: IResNet-100 (insightface layout, Glint360K-loadable from a local file)")
def lrp_arl_ff_iresnet100() -> LrpArlFfConfig:
    return LrpArlFfConfig()


@register_model("lrp_arl_ff_r50", LrpArlFfModel,
                description="IResNet-50 (insightface layout, Glint360K-loadable) + LRP + ARL + FF")
def lrp_arl_ff_r50() -> LrpArlFfConfig:
    return LrpArlFfConfig(depth=50)
