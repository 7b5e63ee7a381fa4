"""The one model interface every AU model implements, the input declaration, and the
multi-step training interface.

A model takes a batch dict and returns a dict with ``logits`` of shape (B, n_AU), one logit per
AU in the model's AU order, plus optional extras (``intensity`` (B, n_AU) on the 0-5 scale,
attention maps, ...). Labels use int8 with -1 = unknown; unknown entries never contribute to a
loss (see ``components.losses``).

Batch keys (all tensors, first dimension B):
- ``image``: float32 (B, C, S, S), the model input after the family's input transform
  (``components.faces.transforms.model_input``), C and S as the model declares;
- ``landmarks``: float32 (B, 68, 2), landmarks in crop pixel coordinates;
- ``landmark_diff``: float32 (B, len(diff_steps), 68, 2), diff_t = l_{t+s} - l_{t-s}, in the
  pixels of ``landmarks`` (the store's crop pixels x model size / crop size, as the landmarks);
- ``labels``: float32 (B, n_AU) with 1, 0 or -1 (unknown);
- ``intensity``: float32 (B, n_AU), 0-5, -1 unknown (only where the data has it);
- ``window``: optional float32 (B, T, C, S, S) video window for families that need one;
- ``blendshapes``: float32 (B, 52) MediaPipe blendshape scores, for families that declare them;
- ``geometry``: float32 (B, K) mesh features (``components.faces.au_geometry``), where the faces
  have a mesh, for families that declare them; ``neutral`` float32 (B, 52 + K): each row's track's
  running neutral of [blendshapes, geometry] (videos and stores; ``au_geometry.track_neutral``).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

import torch
from torch import nn

from components.au import validate_au_list

__all__ = ["InputSpec", "AUModel", "MultiStepTraining", "training_stages"]

Channels = Literal["rgb", "gray", "gray+sobel"]


@dataclass(frozen=True)
class InputSpec:
    """What a model family needs as input: read by training, prediction, ensembles, serving."""

    image_size: int = 112
    """Side of the square aligned face crop fed to the model, in pixels."""
    channels: Channels = "rgb"
    """'rgb' (3 channels), 'gray' (1) or 'gray+sobel' (2: grayscale and Sobel magnitude)."""
    mask: bool = False
    """Apply the background mask (landmark hull extended over the forehead) before the channels."""
    diff_steps: tuple[int, ...] = ()
    """Temporal landmark difference steps s the model reads (empty: image only)."""
    window: int = 0
    """Frames of video context the model needs around each frame (0: none)."""
    blendshapes: bool = False
    """Reads MediaPipe's 52 blendshape scores (batch key ``blendshapes``, float32 (B, 52)) rather
    than pixels; faces must come from the face pipeline's 'mediapipe' landmarker."""
    geometry: bool = False
    """Also reads the mesh's geometric features (batch key ``geometry``, float32 (B, K)) and the
    tracks' running ``neutral`` where a batch has them; answers without them where it has none."""

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.channels not in ("rgb", "gray", "gray+sobel"):
            raise ValueError(f"channels must be rgb, gray or gray+sobel, got {self.channels!r}")
        if any(s < 1 for s in self.diff_steps):
            raise ValueError(f"diff_steps must be positive, got {self.diff_steps}")
        if self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")

    @property
    def num_channels(self) -> int:
        return {"rgb": 3, "gray": 1, "gray+sobel": 2}[self.channels]

    @property
    def needs_video(self) -> bool:
        """True when a single still image is not enough (temporal landmarks or a window)."""
        return bool(self.diff_steps) or self.window > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["diff_steps"] = list(self.diff_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        d = dict(d)
        d["diff_steps"] = tuple(d.get("diff_steps", ()))
        return cls(**d)


class AUModel(nn.Module):
    """Base class of every registered AU model.

    Subclasses set ``family`` and ``paper``, take ``(aus, config, weights=None)`` where
    ``weights`` is a local pretrained-weights file the registry resolved (their backbone(s) load
    it), store their config dataclass in ``self.config``, declare their input from the config
    alone (``input_spec_for``) and implement ``forward`` and (when the family's loss is not
    masked BCE) ``loss``. Build them through ``components.models.build_model``.
    """

    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    pretrained_parts: ClassVar[tuple[str, ...]] = ()
    """Dotted names of the submodules the ``weights`` load into (a feature ``Sequential`` each):
    what ``OptimConfig.freeze_stages`` and ``pretrained_lr_scale`` act on."""
    rows_independent: ClassVar[bool] = False
    """True when, in eval mode, each output row depends on its own input row only (no grouping
    of frames by video, no statistics over the batch): inference may then cut a batch into
    chunks (``components.predictor.CPU_CHUNK_ROWS``) and get the same answers
    (tests/unit/test_rows_independent.py checks it for every family that says so)."""

    def __init__(self, aus: Sequence[int], config: Any) -> None:
        super().__init__()
        self.aus: tuple[int, ...] = validate_au_list(aus)
        self.config = config
        self.pos_weight: "torch.Tensor | None" = None
        """Per-AU BCE weight of positive labels, set by training (``TrainConfig.pos_weight``);
        a plain attribute, not state: checkpoints and inference do not depend on it."""
        self.registered_name: str = ""
        """The registry name this model was built under (set by ``build_model``)."""
        self.pretrained: "str | None" = None
        """Name of the weights its backbone started from (set by ``build_model``; provenance)."""

    def pretrained_modules(self) -> list[nn.Module]:
        """The submodules that started from pretrained weights (none when built without them)."""
        if not self.pretrained:
            return []
        out = []
        for name in self.pretrained_parts:
            try:
                out.append(self.get_submodule(name))
            except AttributeError:  # an optional part this configuration does not build
                continue
        return out

    def positive_weight(self, like: torch.Tensor) -> "torch.Tensor | None":
        """``pos_weight`` on ``like``'s device and dtype (None when training set none)."""
        return None if self.pos_weight is None else self.pos_weight.to(like.device, like.dtype)

    def bce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Masked BCE with this model's ``pos_weight`` (the shared loss convention)."""
        from components.losses import masked_bce

        return masked_bce(logits, labels, pos_weight=self.positive_weight(logits))

    @property
    def num_aus(self) -> int:
        return len(self.aus)

    @classmethod
    def input_spec_for(cls, config: Any) -> InputSpec:  # pragma: no cover - abstract
        """What a model of this family built with ``config`` reads (no model needed)."""
        raise NotImplementedError

    def input_spec(self) -> InputSpec:
        """This model's input declaration (``input_spec_for`` of its config)."""
        return type(self).input_spec_for(self.config)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training loss; default: masked BCE on logits (+ masked L1 on intensity if present).

        Returns a dict with the total under ``loss`` and each part under its own name.
        """
        from components.losses import masked_l1

        parts = {"bce": self.bce(outputs["logits"], batch["labels"])}
        if "intensity" in outputs and "intensity" in batch:
            parts["intensity_l1"] = masked_l1(outputs["intensity"], batch["intensity"])
        parts["loss"] = sum(parts.values())
        return parts

    def constructor_kwargs(self) -> dict[str, Any]:
        """The config as plain data: ``build_model(name, aus, **kwargs)`` rebuilds this
        architecture (pretrained weights are not in the config: they travel in the state dict)."""
        from components.configuration import to_dict

        return to_dict(self.config)


class MultiStepTraining(abc.ABC):
    """A family trained as a sequence of steps, each training some of its networks.

    Training code (``components.training.fit_stages``, ``workflows/train.py``) drives any such
    family through this interface alone: for each stage of ``stages()`` in order it calls
    ``set_stage(stage)``, builds an optimiser over ``trainable_parameters()`` and takes steps
    on ``stage_loss(stage, batch)``. Batches of a stage in ``video_order_stages`` are cut in
    video order, unshuffled, as prediction cuts them; the others are shuffled.
    """

    video_order_stages: ClassVar[tuple[str, ...]] = ()
    """Stages whose batches must hold consecutive frames of one video (unshuffled)."""
    stage: "str | None" = None
    """The stage being trained (None: every network trainable)."""

    @abc.abstractmethod
    def stages(self) -> tuple[str, ...]:
        """The training steps this configuration runs, in order."""

    @abc.abstractmethod
    def set_stage(self, stage: "str | None") -> None:
        """Make only ``stage``'s networks trainable (None: all); sets ``self.stage``."""

    @abc.abstractmethod
    def stage_loss(self, stage: str, batch: dict[str, Any], **options: Any) -> "dict[str, torch.Tensor] | None":
        """Loss parts of one batch for ``stage`` (total under ``loss``), or None when the batch
        holds nothing that stage can learn from. ``options`` are family-specific knobs."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the current stage trains (for the stage's optimiser)."""
        return [p for p in self.parameters() if p.requires_grad]  # type: ignore[attr-defined]


def training_stages(model: nn.Module) -> tuple[str, ...]:
    """A (possibly DDP-wrapped) model's training steps; () for a family trained end to end."""
    core = getattr(model, "module", model)
    return core.stages() if isinstance(core, MultiStepTraining) else ()
