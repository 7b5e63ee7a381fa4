"""The frame-record contract between dataset adapters and preprocessing.

An adapter turns one on-disk layout into ``VideoUnit`` objects: one video (or image sequence)
of one subject with its frames in temporal order, each frame a ``FrameRecord``. The unit of
parallel preprocessing is a ``VideoUnit`` (temporal features need ordered neighbours).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

__all__ = [
    "FrameRecord",
    "VideoUnit",
    "DatasetAdapter",
    "LayoutError",
    "register_adapter",
    "build_adapter",
    "list_adapters",
    "sample_id",
    "unit_origin",
    "unique_units",
    "distinct_units",
]

SourceKind = Literal["image", "video", "zip"]


class LayoutError(ValueError):
    """A dataset file that does not follow its layout; the message names file and line."""


def sample_id(dataset: str, subject: str, video: str, frame: int, face_id: int = 0) -> str:
    """Stable id of one face in one frame: ``dataset/subject/video/frame[#face]``."""
    base = f"{dataset}/{subject}/{video}/{frame:06d}"
    return base if face_id == 0 else f"{base}#{face_id}"


@dataclass(frozen=True)
class FrameRecord:
    """One input frame (adapter → preprocess)."""

    frame: int
    """The dataset's own frame number (as in its label files)."""
    timestamp: float
    """Seconds from the start of the video (frame / fps; frame order for image folders)."""
    source: str
    """Where the pixels are: an image path, a video path, or ``zip_path::member``.

    Empty (with ``source_kind='image'``) for a labelled frame that has no pixels (image
    missing from the copy, label line past the video's end): preprocessing writes it to the
    rejects with reason "missing image" instead of dropping it silently."""
    source_kind: SourceKind
    """'image', 'video' (decode frame ``video_frame``) or 'zip' (member of a zip archive)."""
    labels: tuple[int, ...] = ()
    """Occurrence per AU of the unit's AU list: 1, 0, or -1 unknown. Empty: unlabelled."""
    intensities: tuple[int, ...] = ()
    """Intensity 0-5 per AU, -1 unknown; empty where the dataset has none."""
    video_frame: int = -1
    """0-based frame position inside a video source (-1 for images)."""


@dataclass
class VideoUnit:
    """One ordered sequence of frames of one subject: the unit of parallel work."""

    dataset: str
    subject: str
    video: str
    aus: tuple[int, ...]
    frames: list[FrameRecord]
    group: str = ""
    """Identity group (folds never split one); defaults to the subject."""
    prealigned: bool = False
    """Frames are already aligned face crops (Aff-Wild2 cropped_aligned): skip detection."""
    fps: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group:
            self.group = self.subject

    @property
    def key(self) -> str:
        """Unique id of the unit inside its dataset (completion markers use it)."""
        return f"{self.dataset}/{self.subject}/{self.video}"


def unit_origin(unit: VideoUnit) -> str:
    """The input a unit was read from, for messages: its media file, label file or label folder,
    else its first frame's source, else its key."""
    for key in ("path", "label_file", "labels_dir"):
        if unit.meta.get(key):
            return str(unit.meta[key])
    first = next((f.source for f in unit.frames if f.source), "")
    return first or unit.key


def unique_units(units: Iterable[VideoUnit]) -> Iterator[VideoUnit]:
    """Pass ``units`` through; raise ``LayoutError`` naming both inputs when two share a key.

    Two units with one (dataset, subject, video) key would write the same store files (one
    silently replacing the other) and be grouped as one video (``components.video_key``).
    """
    seen: dict[str, str] = {}
    for unit in units:
        origin = unit_origin(unit)
        if unit.key in seen:
            raise LayoutError(f"{seen[unit.key]} and {origin} both give the video {unit.key!r}: one would "
                              "replace the other in the feature store; rename or move one of them")
        seen[unit.key] = origin
        yield unit


def distinct_units(method: Callable[..., Iterator[VideoUnit]]) -> Callable[..., Iterator[VideoUnit]]:
    """Decorator for an adapter's ``units``: refuse two units with one key (``unique_units``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Iterator[VideoUnit]:
        return unique_units(method(self, *args, **kwargs))

    return wrapper


class DatasetAdapter(Protocol):
    """One on-disk layout. ``units()`` yields every video of the dataset in a stable order."""

    name: str
    aus: tuple[int, ...]

    def units(self) -> Iterator[VideoUnit]: ...


AdapterFactory = Callable[..., DatasetAdapter]
_ADAPTERS: dict[str, AdapterFactory] = {}


def register_adapter(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Class decorator: register an adapter under its ``--dataset`` name."""

    def deco(cls: AdapterFactory) -> AdapterFactory:
        if name in _ADAPTERS:
            raise ValueError(f"adapter {name!r} registered twice")
        _ADAPTERS[name] = cls
        return cls

    return deco


def build_adapter(name: str, root: "str | Path", **options: Any) -> DatasetAdapter:
    """Adapter ``name`` over ``root``; unknown names list the known ones."""
    import components.datasets  # noqa: F401  (registers adapters)

    if name not in _ADAPTERS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(_ADAPTERS)}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset root not found: {root}")
    return _ADAPTERS[name](root, **options)


def list_adapters() -> list[str]:
    import components.datasets  # noqa: F401

    return sorted(_ADAPTERS)
