"""SEV-Net: semantic embedding of AU descriptions guiding attention over visual features.

Paper 003: Yang et al., "Exploiting semantic embedding and visual feature for facial action unit
detection" (CVPR 2021). Section by section:

- §3.1 image encoding: ResNet-18 (§4.2) gives V = {V_1..V_{w×h}}, V_i ∈ R^{d_v} (7×7×512 at
  224 px; 4×4×512 at 112 px for the small variant).
- §3.2 intra-AU encoder: each AU's catalogue description through a frozen pre-trained sentence
  encoder, mean over its token outputs (``.text_encoder``). Computed once, never per forward,
  and kept in the ``text_embeddings`` buffer.
- §3.2 inter-AU encoder: a 2-layer transformer encoder (eqs. 2–3: post-norm, GELU feed-forward)
  across the AU sentence embeddings, then a linear projection R^{d_w} → R^{d_v} (w̄_k).
- §3.3 cross-modality attention: z_k^i = ReLU(cos(V_i, w̄_k)) (eq. 4), α_k^i = z_k^i / Σ_i z_k^i
  (eq. 5), x_k = Σ_i α_k^i V_i (eq. 6).
- §3.4 one classifier f_C: R^{d_v} → R shared by all AUs; BCE (eq. 7), masked for -1 labels.

Departures: ``sev_net`` starts its visual branch from ImageNet EfficientNet-Lite0 (the weights
catalogue has no ImageNet ResNet-18; 7×7×1280 at 224 px); ``sev_net_resnet18`` is the paper's
network for a user who has torchvision's ResNet-18 file. The default intra-AU encoder is all-MiniLM-L6-v2 (384-d, bundled offline) rather than
BERT-Large (select ``encoder='bert-large-nli-mean-tokens'`` with ``inter_heads`` dividing 1024,
e.g. 16, when that model is on disk); the descriptions are our own words (components.au), not
the paper's FACS summaries; ``center_text`` (on by default, off = the paper) subtracts the mean
AU embedding before the inter-AU encoder, because descriptions written in one style embed close
together (cosine ~0.6-0.7) and every AU would otherwise start with nearly the same attention
map; on a tiny fixed batch the text model then learns as fast as the no-text ablation.
Eq. 5 is undefined when every cosine of an AU is ≤ 0 (all z = 0): we then use uniform
weights α = 1/(w·h), i.e. average pooling, so the output stays finite and the classifier still
sees the face. The ablation ``text=False`` drops the whole text branch and
learns one query vector per AU in R^{d_v} instead.

The ablation ``cross_attention=False`` drops §3.3 (eqs. 4–6) and keeps the text: the paper's own
test of that module (§4.4, Fig. 3) is ML-GCN [2] against MS-CAM [24], which differ only by the
cross-modality attention. Without it, every AU reads the uniformly pooled map
x̄ = (1/(w·h)) Σ_i V_i (eq. 6 with α_k^i = 1/(w·h)), and the AU embedding reaches the decision
as in ML-GCN, as AU k's classifier weight: logit_k = w̄_k·x̄ + b_k (ML-GCN has no bias; ours
has one per AU, as f_C has one). The shared classifier f_C (§3.4) is then absent — fed the same
x̄ it would give every AU the same logit. With ``text=False`` as well, the learned queries are
the weights of a plain linear head over the pooled map: the ResNet-18 baseline of Fig. 3.

Text embeddings are encoded lazily on the first forward (or by ``prepare_text()``), then stored
with the weights: a checkpoint loaded with ``torch.load(weights_only=True)`` carries them, so
serving needs no sentence encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from components.models.backbones import BACKBONES, build_backbone
from components.models.base import AUModel, InputSpec
from components.models.registry import register_model
from components.models.sev_net.text_encoder import DEFAULT_ENCODER, ENCODER_DIMS, encode_au_texts

__all__ = ["SevNetConfig", "SevNetModel", "cross_modality_attention"]

_PAPER = "Yang et al., SEV-Net, CVPR 2021 (paper 003)"


@dataclass(frozen=True)
class SevNetConfig:
    backbone: str = "resnet18"
    """Visual backbone (the paper uses ResNet-18)."""
    image_size: int = 224
    """Input crop side in pixels (224 in the paper: a 7x7 map)."""
    text: bool = True
    """Use the AU-description branch; False is the 'no text' ablation (learned AU queries)."""
    cross_attention: bool = True
    """Use the cross-modality attention of §3.3 (eqs. 4–6: the AU embeddings weight the map's
    locations). False is its ablation, after the paper's §4.4 comparison (ML-GCN vs MS-CAM): the
    map is average-pooled and w̄_k becomes AU k's linear classifier (see the module docstring);
    the text branch, when on, is otherwise unchanged."""
    center_text: bool = True
    """Subtract the mean over this model's AUs from the intra-AU embeddings w_i^{L_Intra} before
    the inter-AU encoder (§3.2; our addition, False is the paper). Descriptions share wording,
    so raw embeddings are ~0.6-0.7 cosine-similar and all AUs would start with nearly the same
    attention map."""
    encoder: str = DEFAULT_ENCODER
    """Frozen intra-AU sentence encoder (§3.2 eqs. 1–3, token-mean pooled): a name in
    ``.text_encoder`` or a local folder. The paper uses BERT-Large (§4.2,
    'bert-large-nli-mean-tokens'); the default is MiniLM (bundled offline)."""
    text_dim: int = 0
    """d_w, the embedding size of ``encoder``; 0 = the known size of a named encoder (required
    for a local folder)."""
    inter_layers: int = 2
    """Inter-AU transformer encoder layers (2 in the paper)."""
    inter_heads: int = 6
    """Inter-AU attention heads (6 in the paper); must divide the text embedding size."""
    inter_ff: int = 1024
    """Inter-AU feed-forward hidden size (1024 in the paper)."""
    inter_dropout: float = 0.1
    """Dropout inside the inter-AU transformer."""
    intensity_head: bool = False
    """Add a shared regression head for AU intensity (0-5) on the attended features x_k (needs
    ``cross_attention``: without it every AU's x_k is the same pooled map)."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} not in {list(BACKBONES)}")
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ValueError(f"encoder must be an encoder name or a local folder, got "
                             f"{self.encoder!r} (known names: {sorted(ENCODER_DIMS)})")
        if self.text_dim < 0:
            raise ValueError(f"text_dim must be >= 0 (0 = the known size of encoder "
                             f"{self.encoder!r}), got {self.text_dim}")
        if self.intensity_head and not self.cross_attention:
            raise ValueError("intensity_head needs cross_attention=True: its shared head reads "
                             "the per-AU attended features x_k (eq. 6), which are all the same "
                             "pooled map without the cross-modality attention")
        if self.text and self.text_dim <= 0 and self.encoder not in ENCODER_DIMS:
            raise ValueError(f"encoder {self.encoder!r} has no known size: set text_dim "
                             f"(known: {ENCODER_DIMS})")
        dim = self.embedding_dim
        if self.text and dim % self.inter_heads:
            raise ValueError(f"inter_heads={self.inter_heads} must divide the text embedding "
                             f"size {dim} of encoder {self.encoder!r}")
        if self.inter_layers < 1 or self.inter_ff < 1:
            raise ValueError(f"inter_layers and inter_ff must be >= 1, got {self.inter_layers}, "
                             f"{self.inter_ff}")
        if not 0.0 <= self.inter_dropout < 1.0:
            raise ValueError(f"inter_dropout must be in [0, 1), got {self.inter_dropout}")

    @property
    def embedding_dim(self) -> int:
        """d_w, the size of one intra-AU embedding."""
        return self.text_dim if self.text_dim > 0 else ENCODER_DIMS.get(self.encoder, 0)


def cross_modality_attention(visual: torch.Tensor,
                             queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper 003 §3.3, eqs. 4–6, for every face and AU.

    Args:
        visual: (B, L, d_v) visual features V_i at the L = w·h locations.
        queries: (n, d_v) projected AU embeddings w̄_k.

    Returns:
        (x, α): x (B, n, d_v) with x_k = Σ_i α_k^i V_i (eq. 6), and α (B, n, L) where
        α_k^i = z_k^i / Σ_i z_k^i (eq. 5), z_k^i = ReLU(cos(V_i, w̄_k)) (eq. 4). Where Σ_i z_k^i
        = 0 (every cosine ≤ 0, or zero vectors) α_k^i = 1/L: uniform weights, documented guard.
    """
    v = nn.functional.normalize(visual, dim=-1)
    w = nn.functional.normalize(queries, dim=-1)
    z = torch.relu(torch.einsum("bld,nd->bnl", v, w))
    total = z.sum(-1, keepdim=True)
    # The clamp keeps the unused branch of `where` finite, so gradients stay NaN-free.
    alpha = torch.where(total > 0, z / total.clamp_min(torch.finfo(z.dtype).tiny),
                        torch.full_like(z, 1.0 / z.shape[-1]))
    return alpha @ visual, alpha


class SevNetModel(AUModel):
    """Paper 003: backbone → cross-modality attention guided by AU text → shared classifier."""

    family = "sev-net"
    rows_independent = True
    pretrained_parts = ("features",)
    paper = _PAPER

    def __init__(self, aus: Sequence[int], config: SevNetConfig, weights: "str | Path | None" = None) -> None:
        super().__init__(aus, config)
        c = config
        # ``weights``: a torchvision state dict of the whole classifier (§4.2 ResNet-18).
        self.features, width = build_backbone(c.backbone, 3, str(weights or ""))
        if c.text:
            dim = c.embedding_dim
            self.register_buffer("text_embeddings", torch.zeros(self.num_aus, dim))
            self.register_buffer("text_ready", torch.zeros((), dtype=torch.bool))
            layer = nn.TransformerEncoderLayer(dim, c.inter_heads, dim_feedforward=c.inter_ff,
                                               dropout=c.inter_dropout, activation="gelu",
                                               batch_first=True)
            self.inter_au = nn.TransformerEncoder(layer, c.inter_layers, enable_nested_tensor=False)
            self.project = nn.Linear(dim, width)
            self._text_checked = False
            self.register_load_state_dict_post_hook(_recheck_text)
        else:
            self.queries = nn.Parameter(torch.randn(self.num_aus, width) * width ** -0.5)
        if c.cross_attention:
            self.classifier = nn.Linear(width, 1)
        else:
            # ML-GCN's head (§4.4 ablation): logit_k = w̄_k · x̄ + b_k, no shared f_C.
            self.classifier = None
            self.au_bias = nn.Parameter(torch.zeros(self.num_aus))
        self.intensity = nn.Linear(width, 1) if c.intensity_head else None

    @classmethod
    def input_spec_for(cls, config: SevNetConfig) -> InputSpec:
        return InputSpec(image_size=config.image_size, channels="rgb")

    @torch.no_grad()
    def prepare_text(self) -> None:
        """Encode the AU descriptions once into ``text_embeddings`` unless already there.

        A model restored from a checkpoint already holds them and never loads the encoder.
        """
        if not self.config.text or self._text_checked:
            return
        if not bool(self.text_ready):
            emb = encode_au_texts(self.aus, self.config.encoder)
            if emb.shape != self.text_embeddings.shape:
                raise ValueError(f"encoder {self.config.encoder!r} gives {tuple(emb.shape)} "
                                 f"embeddings, the model expects {tuple(self.text_embeddings.shape)}: "
                                 "set text_dim to the encoder's size")
            self.text_embeddings.copy_(emb)
            self.text_ready.fill_(True)
        self._text_checked = True

    def au_queries(self) -> torch.Tensor:
        """w̄_k for every AU (n, d_v): inter-AU transformer + projection, or learned queries.

        Attention queries (§3.3), or per-AU classifier weights without cross-modality attention.
        """
        if not self.config.text:
            return self.queries
        self.prepare_text()
        text = self.text_embeddings
        if self.config.center_text and self.num_aus > 1:
            text = text - text.mean(0, keepdim=True)
        return self.project(self.inter_au(text.unsqueeze(0)).squeeze(0))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fmap = self.features(batch["image"])
        b, d, h, w = fmap.shape
        if self.classifier is None:
            # No eqs. 4–5: uniform α, x̄ = mean of V_i; w̄_k is AU k's classifier weight.
            pooled = fmap.mean(dim=(2, 3))
            return {"logits": pooled @ self.au_queries().t() + self.au_bias}
        x, alpha = cross_modality_attention(fmap.flatten(2).transpose(1, 2), self.au_queries())
        out = {"logits": self.classifier(x).squeeze(-1), "attention": alpha.view(b, -1, h, w)}
        if self.intensity is not None:
            out["intensity"] = 5.0 * torch.sigmoid(self.intensity(x).squeeze(-1))
        return out


def _recheck_text(module: nn.Module, incompatible_keys: Any) -> None:
    # A freshly loaded state dict may hold other (or not yet encoded) embeddings.
    module._text_checked = False


@register_model("sev_net_small", SevNetModel, tags=("small",),
                description="ResNet-18 at 112 px (4x4 map) + MiniLM AU text + cross-modality attention")
def sev_net_small() -> SevNetConfig:
    return SevNetConfig(image_size=112)


@register_model("sev_net_no_text", SevNetModel, tags=("small",),
                description="ablation of sev_net_small without the text branch (learned AU queries)")
def sev_net_no_text() -> SevNetConfig:
    return SevNetConfig(image_size=112, text=False)


@register_model("sev_net_no_cross_attention", SevNetModel, tags=("small",),
                description="ablation of sev_net_small without cross-modality attention "
                            "(pooled map, AU text as per-AU classifier, as ML-GCN)")
def sev_net_no_cross_attention() -> SevNetConfig:
    return SevNetConfig(image_size=112, cross_attention=False)


@register_model("sev_net", SevNetModel, pretrained="efficientnet_lite0-imagenet",
                description="224 px, EfficientNet-Lite0 from ImageNet (7x7x1280; the paper: ResNet-18) + MiniLM AU text")
def sev_net() -> SevNetConfig:
    return SevNetConfig(backbone="efficientnet_lite0")


@register_model("sev_net_resnet18", SevNetModel,
                description="the paper's network: ResNet-18 at 224 px (7x7x512) + MiniLM AU text (weights: a local file)")
def sev_net_resnet18() -> SevNetConfig:
    return SevNetConfig()
