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
           "model_info", "resolve_pretrained", "pretrained_name", "constructor_record", "rebuild_model"]

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
                   tags: Sequence[str] = ()) -> Callable[[ConfigFn], ConfigFn]:
    """Decorator: register ``fn() -> config`` as variant ``name`` of ``model_cls``'s family."""

    def deco(fn: ConfigFn) -> ConfigFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, model_cls, fn, description, tuple(tags))
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


def build_model(name: str, aus: Sequence[int], pretrained: "str | None" = None, **kwargs: Any) -> AUModel:
    """Build registered model ``name`` for AU list ``aus``; ``kwargs`` override config fields.

    ``pretrained`` names backbone weights (``resolve_pretrained``); the family's constructor
    loads them. Unknown names list the known ones; unknown fields list the config's fields.
    """
    info = model_info(name)
    model = info.model_cls(aus, model_config(name, **kwargs), weights=resolve_pretrained(pretrained))
    model.registered_name = name
    model.pretrained = pretrained_name(pretrained)
    return model


def constructor_record(model: AUModel) -> dict[str, Any]:
    """Everything ``rebuild_model`` needs, as plain data for a checkpoint (weights_only-safe):
    ``model`` (registered name), ``kwargs`` (the config) and ``pretrained`` (weights name or
    None; provenance only: the rebuilt model gets its weights from the state dict)."""
    core = getattr(model, "module", model)
    return {"model": core.registered_name, "kwargs": core.constructor_kwargs(), "pretrained": core.pretrained}


def rebuild_model(name: str, aus: Sequence[int], kwargs: "dict[str, Any]") -> AUModel:
    """Rebuild a model from a checkpoint's record, without pretrained weights (its state dict
    holds them); drops the ``LEGACY_KWARGS`` older checkpoints carry."""
    clean = {k: v for k, v in kwargs.items() if k not in LEGACY_KWARGS}
    return build_model(name, aus, **clean)
