"""The README's usage lines run as written, with their defaults, for every synthetic layout:
synth (no photos: the built-in face) → preprocess → train → evaluate; on the layout the README
shows, the model they train beats the best trivial predictor (all-positive, base-rate random) on
the held-out subjects' mean F1, read from report.json. Slow tier: four layouts at default epochs
take most of an hour on a 2-core machine.

``README_LINES`` is the text the README shows (one source: the README quotes it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.processes import run_command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

MODEL = "baseline_mobilenetv2_112"
"""The usage's model: MobileNetV2 from the catalogue's ImageNet weights (docs/measurements.md,
"Defaults on the README's usage": from random weights the 112 px baselines did not beat the
all-positive predictor on this set's held-out subjects)."""
README_LINES = (
    "facsflow synth --out data --layout {layout} --subjects-per-identity 12",
    "facsflow preprocess --dataset {layout} --root data --out store",
    f"facsflow train --model {MODEL} --data store --out runs{{train_extra}}",
    f"facsflow evaluate --runs runs/{MODEL}-fold1 --out report",
)
"""The usage lines, per layout. One face gives the manifest layout one identity group, too few
for its 3 folds by identity group: synth says so and the line splits by subject instead."""
TRAIN_EXTRA = {"manifest": " --set split.by=subject"}
BEATS_TRIVIAL = ("disfa",)
"""Layouts whose usage run is held to beating the best trivial predictor: the README's. Measured
(docs/measurements.md, "Defaults on the README's usage"): DISFA layout 0.485 and, repeated, 0.438
against 0.413 at seed 0, 0.511 against 0.312 at seed 1; the BP4D layout 0.439 against 0.251 at
seed 1 but a tie with all-positive at seed 0 (0.312), its AU1 and AU2 read from the
pseudo-subjects' brow shape; affwild2 and manifest were not measured."""


@pytest.mark.timeout(3600)   # 960 frames, default epochs: 5-20 min a layout on a loaded 2-core machine
@pytest.mark.parametrize("layout", ["bp4d", "disfa", "affwild2", "manifest"])
def test_readme_usage_runs_as_written(tmp_path: Path, layout: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    consoles = []
    for line in README_LINES:
        argv = line.format(layout=layout, train_extra=TRAIN_EXTRA.get(layout, "")).split()
        rc, out, err = run_command([sys.executable, "-m", "workflows.cli", *argv[1:]], tmp_path, env, 3000)
        consoles.append(f"$ {' '.join(argv)}\n{out}{err}")
        assert rc == 0, "\n".join(consoles)
    synth = consoles[0]
    if layout == "manifest":
        assert "--set split.by=subject" in synth   # synth said what train needs
    else:
        assert "every fold of train's default split has train, validation and test subjects" in synth
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert f"{MODEL}-fold1" in json.dumps(report)
    if layout not in BEATS_TRIVIAL:
        return
    model_f1 = report["models"][MODEL]["mean_f1"]
    trivial = report["trivial"]
    best_f1 = trivial[trivial["best"]]["mean_f1"]
    assert model_f1 > best_f1, (f"{layout}: held-out mean F1 {model_f1:.3f} does not beat the best trivial "
                                f"predictor ({trivial['best']}) {best_f1:.3f}\n" + "\n".join(consoles))
