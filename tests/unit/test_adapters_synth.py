"""Each adapter reads the synthetic generator's output in that dataset's layout, and agrees
with the generator's own record of what it wrote (synth_meta/videos.csv, landmarks.npz)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from components.datasets import build_adapter
from components.datasets.video_io import read_frame_source


synth = pytest.importorskip("components.datasets.synth.generator",
                            reason="synthetic generator (components/datasets/synth/generator.py) not present")


def generate(tmp_path: Path, layout: str) -> tuple[Path, list[dict[str, str]], dict]:
    out = tmp_path / layout
    synth.generate(synth.SynthConfig(out=str(out), layout=layout, subjects_per_identity=2,
                                     videos_per_subject=1, frames_per_video=4, frame_size=64,
                                     max_identities=1, seed=3))
    with open(out / "synth_meta" / "videos.csv", newline="") as fh:
        videos = list(csv.DictReader(fh))
    landmarks = dict(np.load(out / "synth_meta" / "landmarks.npz"))
    return out, videos, landmarks


def with_pixels(landmarks: np.ndarray) -> int:
    """Frames the generator wrote pixels for (NaN landmarks mark frames without)."""
    return int((~np.isnan(landmarks.reshape(len(landmarks), -1)).any(axis=1)).sum())


@pytest.mark.parametrize("layout, dataset, size", [
    ("bp4d", "bp4d", 64), ("disfa", "disfa", 64), ("affwild2", "affwild2", 112),
    ("manifest", "manifest", 64),
])
def test_adapter_reads_generator_layout(tmp_path: Path, layout: str, dataset: str,
                                        size: int) -> None:
    out, videos, landmarks = generate(tmp_path, layout)
    groups = out / "synth_meta" / "videos.csv"
    options = {} if dataset == "manifest" else {"groups": groups}
    units = list(build_adapter(dataset, out, **options).units())

    assert len(units) == len(videos) == 2
    for unit, row in zip(units, videos):
        # Aff-Wild2 files name the video only: the adapter's subject is the video name.
        assert unit.subject == (row["video"] if layout == "affwild2" else row["subject"])
        assert unit.group == row["group"]
        assert len(unit.frames) == int(row["frames"])
        assert unit.meta["warnings"] == []
        key = f"{row['subject']}/{row['video']}"
        assert sum(bool(f.source) for f in unit.frames) == with_pixels(landmarks[key])
        assert all(len(f.labels) == len(unit.aus) for f in unit.frames)
        first = next(f for f in unit.frames if f.source)
        assert read_frame_source(first).shape == (size, size, 3)
        if layout == "affwild2":
            assert unit.prealigned
            assert unit.meta["split"] == {"Train_Set": "train",
                                          "Validation_Set": "validation"}[row["split"]]
        if layout == "disfa":
            assert [f.video_frame for f in unit.frames] == list(range(len(unit.frames)))
            assert len(unit.frames[0].intensities) == len(unit.aus)
