"""Dataset adapters (one per on-disk layout), fold splits, samplers and the synthetic generator."""

from components.datasets.base import (
    DatasetAdapter, FrameRecord, LayoutError, VideoUnit, build_adapter, list_adapters,
    register_adapter, sample_id,
)

__all__ = ["DatasetAdapter", "FrameRecord", "LayoutError", "VideoUnit", "build_adapter",
           "list_adapters", "register_adapter", "sample_id"]

# Importing the adapter modules registers them under their --dataset names.
from components.datasets import affwild2, bp4d, disfa, manifest, media  # noqa: E402,F401
