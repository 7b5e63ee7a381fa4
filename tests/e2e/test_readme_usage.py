"""The README's usage lines run as written, with their defaults, for every synthetic layout:
synth (no photos: the built-in face) → preprocess → train → evaluate. Slow tier: four layouts
at default sizes and epochs take most of an hour on a 2-core machine.

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

README_LINES = (
    "facsflow synth --out data --layout {layout}",
    "facsflow preprocess --dataset {layout} --root data --out store",
    "facsflow train --model baseline_mobilenetv3_112 --data store --out runs{train_extra}",
    "facsflow evaluate --runs runs/baseline_mobilenetv3_112-fold1 --out report",
)
"""The usage lines, per layout. One face gives the manifest layout one identity group, too few
for its 3 folds by identity group: synth says so and the line splits by subject instead."""
TRAIN_EXTRA = {"manifest": " --set split.by=subject"}


@pytest.mark.timeout(3600)   # default sizes and epochs: most of an hour on a loaded 2-core machine
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
    assert "baseline_mobilenetv3_112-fold1" in json.dumps(report)
