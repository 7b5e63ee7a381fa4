"""Writers of the synthetic generator's output in the real on-disk layouts of AU datasets.

Each writer reproduces the files an adapter finds in a real copy of its dataset, so the same
adapter reads synthetic and real data:

Subjects of ``bp4d`` and ``disfa`` take the real dataset's subject ids, from its fold lists
(``components/datasets/folds/<name>.yaml``) taken in turn (fold 1's first, fold 2's first, fold
3's first, fold 1's second, ...), so the official folds hold every generated subject and even a
small set has test subjects in each fold; these layouts therefore hold at most as many subjects
as the dataset has (``LayoutWriter.capacity``).

- ``bp4d``: ``<Subj>/<Task>/<frame>.jpg`` (subjects F001, M007, ...; tasks T1..T8; frame numbers
  from 1, zero-padded to 4 digits as in the common 2D-frame copies) and
  ``AUCoding/AU_OCC/<Subj>_<Task>.csv`` (header ``Frame,1,2,4,...``; 0/1, 9 = not coded).
- ``disfa``: ``Videos_LeftCamera/LeftVideo<SN>_comp.avi`` (SN002, SN013, ...; MJPG; one continuous recording per
  subject, as DISFA has) and ``ActionUnit_Labels/<SN>/<SN>_au<k>.txt`` (``frame,intensity``,
  frames from 1, intensities 0-5) for all 12 DISFA AUs.
- ``affwild2``: ``cropped_aligned/<video>/%05d.jpg`` (112x112 aligned crops, frames from 1) and
  ``annotations/AU_Detection_Challenge/{Train_Set,Validation_Set}/<video>.txt`` (header of the 12
  ABAW AUs, then one 0/1 line per video frame, -1 = unknown; as in ABAW, frames inside some
  unknown runs have no crop at all, "no face detected").
- ``manifest``: ``frames/<subject>/<video>/%05d.jpg`` and ``manifest.csv`` with columns
  ``path,subject,video,frame,AU1,AU2,...,group`` (0/1, -1 unknown).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from components.au import DATASET_AUS, au_name
from components.datasets.synth.timeline import occurrence
from components.geometry import align_face

__all__ = ["VideoPlan", "LayoutWriter", "LAYOUTS", "DISFA_AUS", "ABAW_AUS", "AFFWILD2_CROP", "fold_subject_ids"]


def fold_subject_ids(dataset: str) -> tuple[str, ...]:
    """The real subject ids of ``dataset``'s shipped fold lists, taken from each fold in turn
    (each list in natural order), so that the first n ids spread over the folds."""
    from components.datasets.folds import load_folds
    from components.datasets.media import natural_key

    parts = [sorted(f, key=natural_key) for f in load_folds(dataset).folds]
    return tuple(part[i] for i in range(max(map(len, parts), default=0)) for part in parts if i < len(part))

DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
"""All 12 AUs DISFA codes (intensity 0-5); its 8-AU protocol list is DATASET_AUS['disfa']."""
ABAW_AUS: tuple[int, ...] = DATASET_AUS["affwild2"]
"""The 12 AUs of the ABAW AU-detection challenge label files, in their column order."""
AFFWILD2_CROP = 112
"""Side of Aff-Wild2's ``cropped_aligned`` images."""


@dataclass(frozen=True)
class VideoPlan:
    """One video as the layout names it."""

    subject: str
    """The layout's subject name (F001, SN001, S001)."""
    video: str
    """The layout's video name (T1, SN001, 1-30-256x256, V1)."""
    group: str
    """Identity group of the subject."""
    n_frames: int
    """Frames rendered for this video."""
    split: str = ""
    """Aff-Wild2 annotation set ('Train_Set' / 'Validation_Set'); '' elsewhere."""


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"could not encode JPEG for {path}")
    path.write_bytes(buf.tobytes())


class LayoutWriter:
    """Base writer: subclasses name subjects/videos and write pixels and label files."""

    name: ClassVar[str] = ""
    default_aus: ClassVar[tuple[int, ...]] = DATASET_AUS["synthetic"]
    fixed_columns: ClassVar[tuple[int, ...] | None] = None
    """Label columns the layout always has (None: the configured AU list)."""
    default_fps: ClassVar[float] = 25.0
    max_videos: ClassVar[int] = 0
    """Most videos per subject the layout allows (0: no limit)."""
    unknown_code: ClassVar[int | None] = None
    """Label value for unknown (None: the layout has no unknowns)."""
    unknown_cells: ClassVar[bool] = False
    """Unknowns also as single cells (one AU of one frame), not only whole frames."""
    labels_at: ClassVar[str] = ""
    """Where the label files are, relative to the output folder."""
    fold_dataset: ClassVar[str] = ""
    """Dataset whose fold lists name the subjects ('' : the layout numbers them freely)."""

    @classmethod
    def capacity(cls) -> int:
        """Most subjects the layout can name (0: no limit): the fold lists' subject count."""
        return len(fold_subject_ids(cls.fold_dataset)) if cls.fold_dataset else 0

    def __init__(self, root: Path, aus: tuple[int, ...], fps: float, frame_size: int) -> None:
        self.root = Path(root)
        self.aus = aus
        self.fps = fps
        self.frame_size = frame_size
        self.columns: tuple[int, ...] = self.fixed_columns or aus

    def subject_name(self, index: int, identity: int) -> str:
        """Layout name of pseudo-subject ``index`` (0-based) made from source face ``identity``."""
        if self.fold_dataset:
            ids = fold_subject_ids(self.fold_dataset)
            if index >= len(ids):
                raise ValueError(f"{self.name}: subject {index + 1} asked for, the layout names "
                                 f"{len(ids)} (the real subject ids of its fold lists)")
            return ids[index]
        return f"S{index + 1:03d}"

    def group_key(self, plan: VideoPlan) -> tuple[str, str]:
        """(subject, video) names by which the layout's adapter looks a unit's group up."""
        return plan.subject, ""

    def plan(self, subject: str, group: str, n_videos: int, n_frames: int, validation: bool) -> list[VideoPlan]:
        """The videos of one subject."""
        return [VideoPlan(subject, f"V{v + 1}", group, n_frames) for v in range(n_videos)]

    def begin(self, plan: VideoPlan, unknown_frames: np.ndarray, rng: np.random.Generator) -> None:
        """Start a video; ``unknown_frames`` (T,) marks frames whose labels are unknown."""

    def frame_path(self, plan: VideoPlan, position: int) -> str:
        """Relative path of the pixels of frame ``position`` (0-based)."""
        raise NotImplementedError

    def frame_number(self, plan: VideoPlan, position: int) -> int:
        """The layout's frame number of ``position`` (0-based): 1-based everywhere here."""
        return position + 1

    def write_frame(self, plan: VideoPlan, position: int, rgb: np.ndarray, landmarks: np.ndarray,
                    quality: int) -> np.ndarray | None:
        """Write one frame; return its landmarks in the written pixels, None when left out."""
        _write_jpeg(self.root / self.frame_path(plan, position), rgb, quality)
        return landmarks

    def labels(self, levels: np.ndarray, unknown_frames: np.ndarray, unknown_cells: np.ndarray) -> np.ndarray:
        """Occurrence (T, columns) int with this layout's unknown code applied."""
        occ = occurrence(levels).astype(np.int16)
        if self.unknown_code is not None:
            occ[unknown_frames] = self.unknown_code
            if self.unknown_cells:
                occ[unknown_cells] = self.unknown_code
        return occ

    def end(self, plan: VideoPlan, levels: np.ndarray, unknown_frames: np.ndarray,
            unknown_cells: np.ndarray) -> np.ndarray:
        """Finish a video: write its labels from ``levels`` (T, columns) 0-5; return occurrence."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write files that cover the whole data set."""


class Bp4dWriter(LayoutWriter):
    """BP4D / BP4D+: ``<Subj>/<Task>/%04d.jpg`` and ``AUCoding/AU_OCC/<Subj>_<Task>.csv``."""

    name = "bp4d"
    fold_dataset = "bp4d"
    labels_at = "AUCoding/AU_OCC"
    default_aus = DATASET_AUS["bp4d"]
    max_videos = 8
    unknown_code = 9
    unknown_cells = True

    def plan(self, subject: str, group: str, n_videos: int, n_frames: int, validation: bool) -> list[VideoPlan]:
        return [VideoPlan(subject, f"T{v + 1}", group, n_frames) for v in range(n_videos)]

    def frame_path(self, plan: VideoPlan, position: int) -> str:
        return f"{plan.subject}/{plan.video}/{self.frame_number(plan, position):04d}.jpg"

    def end(self, plan: VideoPlan, levels: np.ndarray, unknown_frames: np.ndarray,
            unknown_cells: np.ndarray) -> np.ndarray:
        occ = self.labels(levels, unknown_frames, unknown_cells)
        path = self.root / "AUCoding" / "AU_OCC" / f"{plan.subject}_{plan.video}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["Frame", *map(str, self.columns)])
            for pos, row in enumerate(occ):
                w.writerow([self.frame_number(plan, pos), *map(int, row)])
        return occ


class DisfaWriter(LayoutWriter):
    """DISFA: ``Videos_LeftCamera/LeftVideo<SN>_comp.avi``, ``ActionUnit_Labels/<SN>/<SN>_au<k>.txt``."""

    name = "disfa"
    fold_dataset = "disfa"
    labels_at = "ActionUnit_Labels"
    default_aus = DISFA_AUS
    fixed_columns = DISFA_AUS
    default_fps = 20.0

    def __init__(self, root: Path, aus: tuple[int, ...], fps: float, frame_size: int) -> None:
        super().__init__(root, aus, fps, frame_size)
        self._writer: cv2.VideoWriter | None = None

    def plan(self, subject: str, group: str, n_videos: int, n_frames: int, validation: bool) -> list[VideoPlan]:
        # DISFA has one continuous recording per subject: the subject's videos run back to back.
        # The video is named by its camera, as the DISFA adapter names its units.
        return [VideoPlan(subject, "left", group, n_frames * n_videos)]

    def frame_path(self, plan: VideoPlan, position: int) -> str:
        return f"Videos_LeftCamera/LeftVideo{plan.subject}_comp.avi"

    def begin(self, plan: VideoPlan, unknown_frames: np.ndarray, rng: np.random.Generator) -> None:
        path = self.root / self.frame_path(plan, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), float(self.fps),
                                 (self.frame_size, self.frame_size))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write MJPG video {path}")
        self._writer = writer

    def write_frame(self, plan: VideoPlan, position: int, rgb: np.ndarray, landmarks: np.ndarray,
                    quality: int) -> np.ndarray | None:
        assert self._writer is not None, "begin() not called"
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return landmarks

    def end(self, plan: VideoPlan, levels: np.ndarray, unknown_frames: np.ndarray,
            unknown_cells: np.ndarray) -> np.ndarray:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        folder = self.root / "ActionUnit_Labels" / plan.subject
        folder.mkdir(parents=True, exist_ok=True)
        for col, au in enumerate(self.columns):
            lines = [f"{self.frame_number(plan, pos)},{int(v)}" for pos, v in enumerate(levels[:, col])]
            (folder / f"{plan.subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
        return self.labels(levels, unknown_frames, unknown_cells)


class AffWild2Writer(LayoutWriter):
    """Aff-Wild2 (ABAW): ``cropped_aligned/<video>/%05d.jpg`` and per-video AU label ``.txt``."""

    name = "affwild2"
    labels_at = "annotations/AU_Detection_Challenge"
    default_aus = ABAW_AUS
    fixed_columns = ABAW_AUS
    default_fps = 30.0
    unknown_code = -1

    def __init__(self, root: Path, aus: tuple[int, ...], fps: float, frame_size: int) -> None:
        super().__init__(root, aus, fps, frame_size)
        self._count = 0
        self._no_face: np.ndarray = np.zeros(0, bool)

    def plan(self, subject: str, group: str, n_videos: int, n_frames: int, validation: bool) -> list[VideoPlan]:
        plans = []
        split = "Validation_Set" if validation else "Train_Set"
        for _ in range(n_videos):
            self._count += 1
            # Aff-Wild2 names videos by index, frame rate and resolution (e.g. 1-30-1280x720).
            name = f"{self._count}-{int(round(self.fps))}-{self.frame_size}x{self.frame_size}"
            plans.append(VideoPlan(subject, name, group, n_frames, split))
        return plans

    def frame_path(self, plan: VideoPlan, position: int) -> str:
        return f"cropped_aligned/{plan.video}/{self.frame_number(plan, position):05d}.jpg"

    def group_key(self, plan: VideoPlan) -> tuple[str, str]:
        # Aff-Wild2 has no subject folders: its adapter knows a unit by the video name.
        return "", plan.video

    def begin(self, plan: VideoPlan, unknown_frames: np.ndarray, rng: np.random.Generator) -> None:
        # Half of the unknown runs are frames where ABAW's detector found no face: no crop.
        self._no_face = np.zeros(len(unknown_frames), bool)
        starts = np.flatnonzero(unknown_frames & ~np.r_[False, unknown_frames[:-1]])
        for s in starts:
            if rng.uniform() < 0.5:
                e = s
                while e < len(unknown_frames) and unknown_frames[e]:
                    e += 1
                self._no_face[s:e] = True

    def write_frame(self, plan: VideoPlan, position: int, rgb: np.ndarray, landmarks: np.ndarray,
                    quality: int) -> np.ndarray | None:
        if self._no_face[position]:
            return None
        aligned = align_face(rgb, landmarks, size=AFFWILD2_CROP)
        _write_jpeg(self.root / self.frame_path(plan, position), aligned.crop, quality)
        return aligned.landmarks

    def end(self, plan: VideoPlan, levels: np.ndarray, unknown_frames: np.ndarray,
            unknown_cells: np.ndarray) -> np.ndarray:
        occ = self.labels(levels, unknown_frames, unknown_cells)
        path = self.root / "annotations" / "AU_Detection_Challenge" / plan.split / f"{plan.video}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [",".join(au_name(a) for a in self.columns)]
        lines += [",".join(str(int(v)) for v in row) for row in occ]
        path.write_text("\n".join(lines) + "\n")
        return occ


class ManifestWriter(LayoutWriter):
    """A generic manifest: ``frames/<subject>/<video>/%05d.jpg`` and one ``manifest.csv``."""

    name = "manifest"
    labels_at = "manifest.csv"
    unknown_code = -1
    unknown_cells = True

    def __init__(self, root: Path, aus: tuple[int, ...], fps: float, frame_size: int) -> None:
        super().__init__(root, aus, fps, frame_size)
        self._rows: list[list[object]] = []

    def frame_path(self, plan: VideoPlan, position: int) -> str:
        return f"frames/{plan.subject}/{plan.video}/{self.frame_number(plan, position):05d}.jpg"

    def end(self, plan: VideoPlan, levels: np.ndarray, unknown_frames: np.ndarray,
            unknown_cells: np.ndarray) -> np.ndarray:
        occ = self.labels(levels, unknown_frames, unknown_cells)
        for pos, row in enumerate(occ):
            self._rows.append([self.frame_path(plan, pos), plan.subject, plan.video,
                               self.frame_number(plan, pos), *map(int, row), plan.group])
        return occ

    def finish(self) -> None:
        with (self.root / "manifest.csv").open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["path", "subject", "video", "frame", *(au_name(a) for a in self.columns), "group"])
            w.writerows(self._rows)


LAYOUTS: dict[str, type[LayoutWriter]] = {
    w.name: w for w in (Bp4dWriter, DisfaWriter, AffWild2Writer, ManifestWriter)
}
"""Layout name → writer class."""
