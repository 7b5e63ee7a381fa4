"""DISFA adapter.

Videos: ``Videos_LeftCamera/LeftVideo<SN>_comp.avi`` (``camera='right'``:
``Videos_RightCamera/RightVideo<SN>_comp.avi``). Labels: ``ActionUnit_Labels/<SN>/<SN>_au<k>.txt``
with one ``frame,intensity`` line per frame, frames 1-indexed, intensity 0-5. Intensities are
kept and occurrence is derived as intensity >= 2, the threshold of the field's DISFA protocol
(JAA-Net, ME-GraphAU).

Label frame ``f`` is video frame ``f - 1``. When the label files and the video disagree in
length nothing is cut: label frames past the video's end are yielded with ``source=''`` (→
"missing image"), video frames past the labels with labels -1, and ``meta['warnings']`` says so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from components.au import DATASET_AUS, validate_au_list
from components.datasets.base import (FrameRecord, LayoutError, VideoUnit, distinct_units,
                                      register_adapter)
from components.datasets.folds import read_groups
from components.datasets.media import find_dir, natural_key
from components.datasets.video_io import video_frame_count

__all__ = ["DISFAAdapter", "DISFA_CODED_AUS", "OCCURRENCE_THRESHOLD", "read_disfa_labels"]

log = logging.getLogger(__name__)

DISFA_CODED_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
"""The 12 AUs DISFA codes; ``aus=`` may pick any of them."""
OCCURRENCE_THRESHOLD = 2
"""Occurrence = intensity >= 2 (the common DISFA protocol)."""

_AU_FILE = re.compile(r"_au(\d+)\.txt$", re.IGNORECASE)
_CAMERAS = {"left": ("Videos_LeftCamera", "LeftVideo"), "right": ("Videos_RightCamera", "RightVideo")}


def _int(text: str, path: Path, line: int, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise LayoutError(f"{path}: line {line}: non-numeric {what} {text.strip()!r}") from None


def read_disfa_labels(path: Path) -> dict[int, int]:
    """Parse one ``<SN>_au<k>.txt``: frame (1-indexed) → intensity 0-5. Raises LayoutError
    naming file and line for a malformed line, an intensity outside 0-5 or a repeated frame."""
    out: dict[int, int] = {}
    with open(path) as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            cells = text.replace("\t", ",").split(",")
            if len(cells) != 2:
                raise LayoutError(f"{path}: line {line}: expected 'frame,intensity', got "
                                  f"{text.strip()!r}")
            frame = _int(cells[0], path, line, "frame")
            value = _int(cells[1], path, line, "intensity")
            if not 0 <= value <= 5:
                raise LayoutError(f"{path}: line {line}: intensity {value} outside 0-5")
            if frame in out:
                raise LayoutError(f"{path}: line {line}: frame {frame} appears twice")
            out[frame] = value
    return out


@register_adapter("disfa")
class DISFAAdapter:
    """DISFA: one unit per subject (``video`` = the camera name), frames of the ``_comp`` video.

    Options: ``camera`` ('left' or 'right'), ``aus`` (default the 8 AUs of the 3-fold protocol),
    ``verify_count`` (check the container's frame count by reading its last frame), ``groups``
    (CSV of subject → identity group, see ``folds.read_groups``).
    """

    name = "disfa"

    def __init__(self, root: Path, camera: str = "left", aus: "Sequence[int] | None" = None,
                 verify_count: bool = True, groups: "str | Path | None" = None) -> None:
        self.root = Path(root)
        self.groups = read_groups(groups) if groups else {}
        if camera not in _CAMERAS:
            raise ValueError(f"disfa: camera must be 'left' or 'right', not {camera!r}")
        self.camera = camera
        self.aus = validate_au_list(aus) if aus else DATASET_AUS["disfa"]
        bad = [a for a in self.aus if a not in DISFA_CODED_AUS]
        if bad:
            raise ValueError(f"disfa: AU(s) {bad} are not coded in DISFA; coded: "
                             f"{list(DISFA_CODED_AUS)}")
        self.verify_count = verify_count

    def _dir(self, name: str) -> "Path | None":
        return find_dir(self.root, name, (name,), max_depth=3)

    @distinct_units
    def units(self) -> Iterator[VideoUnit]:
        """One unit per subject folder of ActionUnit_Labels, in natural order (SN001, SN002...)."""
        labels_dir = self._dir("ActionUnit_Labels")
        if labels_dir is None:
            raise LayoutError(f"{self.root}: no ActionUnit_Labels folder")
        folder, prefix = _CAMERAS[self.camera]
        video_dir = self._dir(folder)
        subjects = sorted((d for d in labels_dir.iterdir() if d.is_dir()),
                          key=lambda d: natural_key(d.name))
        for sdir in subjects:
            video = (video_dir / f"{prefix}{sdir.name}_comp.avi") if video_dir else None
            yield self._unit(sdir, video)

    def _unit(self, sdir: Path, video: "Path | None") -> VideoUnit:
        subject = sdir.name
        warnings: list[str] = []
        files = {int(m.group(1)): p for p in sdir.iterdir() if (m := _AU_FILE.search(p.name))}
        per_au: dict[int, dict[int, int]] = {}
        for au in self.aus:
            if au in files:
                per_au[au] = read_disfa_labels(files[au])
            else:
                warnings.append(f"{sdir}: no {subject}_au{au}.txt: AU{au} unknown (-1)")
        lengths = {au: (max(v) if v else 0) for au, v in per_au.items()}
        gaps = [files[au].name for au, v in per_au.items() if len(v) != lengths[au]]
        if gaps:
            warnings.append(f"{sdir}: frame numbers skip in {gaps}; the skipped frames are -1")
        n_labels = max(lengths.values(), default=0)
        short = {au: n for au, n in lengths.items() if n != n_labels}
        if short:
            warnings.append(f"{sdir}: label files differ in length (longest {n_labels} frames; "
                            + ", ".join(f"{files[a].name}: {n}" for a, n in sorted(short.items()))
                            + "); the missing frames are -1")
        fps, n_video = 20.0, 0
        if video is None or not video.is_file():
            warnings.append(f"{subject}: {self.camera} video not found"
                            + (f" ({video})" if video else "") + ": frames have no image")
        else:
            try:
                count = video_frame_count(video, verify=self.verify_count)
                fps, n_video = (count.fps or fps), count.frames
                if count.header_frames != count.frames:
                    warnings.append(f"{video}: header says {count.header_frames} frames, "
                                    f"{count.frames} decode")
            except LayoutError as err:
                warnings.append(f"{err}: frames have no image")
        if video is not None and n_video and n_video != n_labels:
            warnings.append(f"{video}: {n_video} video frames but {n_labels} label lines in "
                            f"{sdir}; no frame dropped")
        frames = []
        for f in range(1, max(n_labels, n_video) + 1):
            inten = tuple(per_au[au].get(f, -1) if au in per_au else -1 for au in self.aus)
            occ = tuple(-1 if v < 0 else int(v >= OCCURRENCE_THRESHOLD) for v in inten)
            has_pixels = f <= n_video
            frames.append(FrameRecord(
                frame=f, timestamp=(f - 1) / fps,
                source=str(video) if has_pixels else "",
                source_kind="video" if has_pixels else "image",
                labels=occ, intensities=inten, video_frame=f - 1 if has_pixels else -1))
        for w in warnings:
            log.warning("%s", w)
        meta: dict[str, Any] = {"camera": self.camera, "labels_dir": str(sdir),
                                "video_path": str(video) if video else "", "warnings": warnings}
        return VideoUnit("disfa", subject, self.camera, self.aus, frames, fps=fps, meta=meta,
                         group=self.groups.get(subject, ""))
