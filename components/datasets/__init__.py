"""Dataset adapters (one per on-disk layout), fold splits, samplers and the synthetic generator."""

from components.datasets.base import (
    DatasetAdapter, FrameRecord, LayoutError, VideoUnit, build_adapter, list_adapters,
    register_adapter, sample_id,
)

__all__ = ["DatasetAdapter", "FrameRecord", "LayoutError", "VideoUnit", "build_adapter",
           "list_adapters", "register_adapter", "sample_id"]
