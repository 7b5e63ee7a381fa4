"""Model registry: name → (model class, variant config), as timm registers its variants.

A variant is a few lines: a decorated function that returns the family's config dataclass with
the variant's defaults. The registry is the one place that
- builds a model (``build_model``: the variant's config with keyword overrides, then the class);
- handles pretrained weights: ``pretrained`` is a weights *name* (an entry of the weights
  catalogue, ``components.weights``, or a local file), checked by ``resolve_pretrained`` and handed
  to the family's constructor, which puts it into its backbone(s);
- says what a checkpoint stores to rebuild a model (``constructor_record``): the registered
  name, the config as plain data and the weights *name*, never a local path (the weights it
  initialised travel in the state dict, so the serving host needs no weights file);
- declares a model's input without building it (``input_spec``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from components.models.base import AUModel, InputSpec

__all__ = ["ModelInfo", "register_model", "build_model", "model_config", "input_spec", "list_models",
           "model_info", "resolve_pretrained", "pretrained_name", "default_pretrained", "constructor_record",
           "rebuild_model", "init_provenance"]

ConfigFn = Callable[[], Any]

LEGACY_KWARGS = ("pretrained", "uncertainty_pretrained")
"""Constructor keys that checkpoints written before the registry owned pretrained weights may
hold (a local path or ''); ignored on rebuild, since the weights are in the state dict."""


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: a family's class with one variant's default config."""

    name: str
    """Registered name (what configs, checkpoints and the CLI use)."""
    model_cls: type[AUModel]
    """The family's ``AUModel`` subclass."""
    config_fn: ConfigFn
    """Returns the variant's default config dataclass (keyword overrides replace its fields)."""
    description: str
    """One line for ``facsflow models``."""
    tags: tuple[str, ...] = ()
    """e.g. 'small' for configurations the tests, demo and serving benchmarks use."""
    default_pretrained: str = ""
    """Catalogue entry the variant starts from when ``pretrained`` is not given ("" = random
    weights). Never a non-commercial entry: those are used only when a user names them."""

    @property
    def family(self) -> str:
        return self.model_cls.family

    @property
    def paper(self) -> str:
        return self.model_cls.paper

    @property
    def builder(self) -> Callable[..., AUModel]:
        """``fn(aus, **kwargs) -> AUModel`` for this name (``build_model`` bound to it)."""
        return lambda aus, **kwargs: build_model(self.name, aus, **kwargs)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, model_cls: type[AUModel], *, description: str,
                   tags: Sequence[str] = (), pretrained: str = "") -> Callable[[ConfigFn], ConfigFn]:
    """Decorator: register ``fn() -> config`` as variant ``name`` of ``model_cls``'s family;
    ``pretrained`` is the catalogue entry it starts from by default ("" = random)."""

    def deco(fn: ConfigFn) -> ConfigFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        if pretrained:
            from components import weights

            if weights.get(pretrained).commercial_use == "no":
                raise ValueError(f"model {name!r}: default weights {pretrained!r} are non-commercial; "
                                 "such weights are used only when a user names them")
        _REGISTRY[name] = ModelInfo(name, model_cls, fn, description, tuple(tags), pretrained)
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the package registers every family (one module or package each).
    import components.models  # noqa: F401


def model_info(name: str) -> ModelInfo:
    """The registration of ``name``; an unknown name raises KeyError listing the known ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}") from None


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def model_config(name: str, **kwargs: Any) -> Any:
    """Variant ``name``'s config with ``kwargs`` replacing fields (checked by the config)."""
    info = model_info(name)
    base = info.config_fn()
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise TypeError(f"model {name!r} ({type(base).__name__}) has no field(s) {unknown}; "
                        f"fields: {sorted(fields)}")
    return dataclasses.replace(base, **kwargs)


def input_spec(name: str, **kwargs: Any) -> InputSpec:
    """What model ``name`` (with config overrides ``kwargs``) reads, without building it."""
    kwargs.pop("pretrained", None)
    return model_info(name).model_cls.input_spec_for(model_config(name, **kwargs))


def resolve_pretrained(pretrained: "str | None") -> "str | Path | None":
    """The one hook that turns a weights name into what a family's backbone loads (None/'' → none).

    A name from the weights catalogue (``components.weights``, listed by ``facsflow weights``) is
    checked here, present and SHA-256 verified, and returned as the name (the backbone builds the
    entry's network); anything else must be a local state-dict file. facsflow never downloads
    weights: a missing entry raises with the command that installs it, a missing file names it.
    """
    if not pretrained:
        return None
    from components import weights

    try:
        weights.get(pretrained)
    except weights.UnknownWeightsError:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights {pretrained!r}: neither a catalogue entry (`facsflow weights` lists "
                f"them) nor a local file ({path}). facsflow never downloads weights; put the file there "
                "or leave `pretrained` empty.") from None
        return path
    weights.locate(pretrained)  # WeightsMissingError names the pip command; ChecksumError the file
    return pretrained


def pretrained_name(pretrained: "str | None") -> "str | None":
    """What a checkpoint records of ``pretrained``: its name, never a local path (a file's
    base name stands for it: it says which weights without pointing at this machine's disk)."""
    if not pretrained:
        return None
    return Path(str(pretrained)).name


def default_pretrained(name: str, pretrained: "str | None" = None) -> str:
    """The weights a build of ``name`` starts from: ``pretrained`` when given ("" = random, a
    catalogue entry or a local file), else the variant's ``default_pretrained``."""
    return model_info(name).default_pretrained if pretrained is None else pretrained


def build_model(name: str, aus: Sequence[int], pretrained: "str | None" = None, **kwargs: Any) -> AUModel:
    """Build registered model ``name`` for AU list ``aus``; ``kwargs`` override config fields.

    ``pretrained`` names backbone weights (``resolve_pretrained``); the family's constructor
    loads them. ``None`` takes the variant's default (``facsflow models`` lists them), ``""``
    asks for random weights. Unknown names list the known ones; unknown fields list the
    config's fields.
    """
    info = model_info(name)
    pretrained = default_pretrained(name, pretrained)
    model = info.model_cls(aus, model_config(name, **kwargs), weights=resolve_pretrained(pretrained))
    model.registered_name = name
    model.pretrained = pretrained_name(pretrained)
    return model


def init_provenance(pretrained: "str | None") -> dict[str, Any]:
    """What a model's initial weights were, as every record that travels with it says it (run
    config, checkpoint, ensemble member, ``GET /v1/models``, export sidecar): the catalogue's
    name, licence, commercial use, SHA-256 and training data; a local file by its base name with
    its licence unknown; ``init_weights: random`` when none."""
    from components import weights

    if not pretrained:
        return weights.provenance(None)
    try:
        return weights.provenance(pretrained)
    except weights.UnknownWeightsError:
        return {"init_weights": pretrained_name(pretrained), "licence": "unknown (a local file)",
                "commercial_use": "unclear", "sha256": "", "trained_on": "unknown"}


def constructor_record(model: AUModel) -> dict[str, Any]:
    """Everything ``rebuild_model`` needs, as plain data for a checkpoint (weights_only-safe):
    ``model`` (registered name), ``kwargs`` (the config) and ``pretrained`` (weights name or
    None; provenance only: the rebuilt model gets its weights from the state dict)."""
    core = getattr(model, "module", model)
    return {"model": core.registered_name, "kwargs": core.constructor_kwargs(), "pretrained": core.pretrained}


def rebuild_model(name: str, aus: Sequence[int], kwargs: "dict[str, Any]",
                  pretrained: "str | None" = None) -> AUModel:
    """Rebuild a model from a checkpoint's record, without loading pretrained weights (its state
    dict holds them; ``pretrained`` is the recorded name, kept as provenance). Drops the
    ``LEGACY_KWARGS`` older checkpoints carry; a config field the record lacks (a field added
    after it was written) takes the config class's default, which keeps the architecture the
    checkpoint was trained with even where the variant's own default has moved since."""
    clean = {k: v for k, v in kwargs.items() if k not in LEGACY_KWARGS}
    base = type(model_info(name).config_fn())
    for f in dataclasses.fields(base):
        if f.name not in clean and f.default is not dataclasses.MISSING:
            clean[f.name] = f.default
    model = build_model(name, aus, pretrained="", **clean)
    model.pretrained = pretrained or None
    return model
