"""Model registry: name → builder, as timm registers its variants.

A builder is ``fn(aus, **kwargs) -> AUModel``; kwargs override the variant's config fields.
A variant is a few lines: a function that calls the family builder with other defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from components.models.base import AUModel

__all__ = ["ModelInfo", "register_model", "build_model", "list_models", "model_info"]

Builder = Callable[..., AUModel]


@dataclass(frozen=True)
class ModelInfo:
    """One registered model."""

    name: str
    family: str
    paper: str
    description: str
    builder: Builder
    tags: tuple[str, ...] = ()
    """e.g. 'small' for configurations the tests, demo and serving benchmarks use."""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, family: str, paper: str, description: str,
                   tags: Sequence[str] = ()) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(aus, **kwargs) -> AUModel`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, family, paper, description, fn, tuple(tags))
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the package registers every family (one file each).
    import components.models  # noqa: F401


def model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}") from None


def build_model(name: str, aus: Sequence[int], **kwargs: Any) -> AUModel:
    """Build registered model ``name`` for AU list ``aus``; unknown names list the known ones."""
    return model_info(name).builder(aus, **kwargs)


def list_models() -> list[ModelInfo]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
