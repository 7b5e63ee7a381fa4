"""The console of a short real run (the demo's first stages as CLI commands: synth, preprocess,
a 2-epoch train) is ours: a few dozen lines at most, each stage's progress, one line per epoch
printed once with loss, validation F1, samples/s and ETA, the Ray log folder named once, and
none of Ray's internals; ``--verbose`` is what brings those back."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


from tests.conftest import require_media
from tests.processes import run_command
from workflows.demo import DEMO_FACE_PHOTOS, link_face_photos


ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 30
"""Most console lines one stage may print here (the issue: 'a few dozen')."""
RAY_INTERNALS = ("TrainController", "Failed to query", "TrainingReport", "Execution plan", "Progress bars disabled",
                 "RayTrainWorker", "SplitCoordinator", "worker processes have been started",
                 "Token authentication is enabled", "logging_progress", "streaming_executor",
                 # Ray's C++ core worker, on the driver's stderr below Python's logging (ray#53727)
                 "has constructor arguments in the object store")


def _facsflow(*args: str, cwd: Path) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("FACSFLOW_VERBOSE", None)
    env.pop("RAY_ADDRESS", None)
    rc, out, err = run_command([sys.executable, "-m", "workflows.cli", *args], cwd, env, 900)
    lines = (out + err).splitlines()
    assert rc == 0, "\n".join(lines)
    return lines


def _quiet(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert len(lines) <= MAX_LINES, f"{len(lines)} console lines:\n{text}"
    for internal in RAY_INTERNALS:
        assert internal not in text, f"Ray internals ({internal!r}) on the console:\n{text}"


def test_short_run_console(tmp_path: Path) -> None:
    link_face_photos(require_media(*DEMO_FACE_PHOTOS), tmp_path)
    # The demo's first stages, small: 8 identities x 1 subject x 1 video x 12 frames.
    synth = _facsflow("synth", "--out", "data", "--faces", "faces", "--subjects-per-identity", "1",
                      "--videos-per-subject", "1", "--frames-per-video", "12", cwd=tmp_path)
    _quiet(synth)
    assert sum(bool(re.match(r"synth: subject S\d{3} \(\d/8, group ", ln)) for ln in synth) == 8
    assert any("every fold of train's default split has train, validation and test subjects" in ln for ln in synth)

    pre = _facsflow("preprocess", "--dataset", "manifest", "--root", "data", "--out", "store",
                    "--config", str(ROOT / "workflows" / "configs" / "preprocess-demo.yaml"), cwd=tmp_path)
    _quiet(pre)
    assert sum("Ray logs: " in ln and "--verbose or FACSFLOW_VERBOSE=1" in ln for ln in pre) == 1
    assert any(re.search(r"preprocess: 8/8 units, 96/96 frames, [\d.]+ frames/s, ETA 0:00, ", ln) for ln in pre), "\n".join(pre)

    train = _facsflow("train", "--model", "baseline_mobilenetv3_112", "--data", "store", "--out", "runs",
                      "--config", str(ROOT / "workflows" / "configs" / "train-demo.yaml"), "--epochs", "2",
                      cwd=tmp_path)
    _quiet(train)
    epoch = re.compile(r"\[baseline_mobilenetv3_112-fold1\] epoch (\d)/2  loss [\d.]+  val F1 [\d.]+"
                       r"(?: — predicts no AU[^(]*| — no correct positive[^(]*)? \(best [\d.]+"
                       r"(?:; [\d.]+ at val thresholds, all-positive [\d.]+)?\)  [\d.]+ samples/s  \d+ s  ETA \d+:\d\d$")
    assert [m.group(1) for ln in train if (m := epoch.search(ln))] == ["1", "2"], "\n".join(train)
    assert sum(ln.startswith("run baseline_mobilenetv3_112-fold1: best validation mean F1 ") for ln in train) == 1
    assert (tmp_path / "runs" / "baseline_mobilenetv3_112-fold1" / "run.json").is_file()
