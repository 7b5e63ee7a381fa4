"""workflows.stderr_filter: lines written straight to descriptor 2 (as Ray's C++ core worker
writes them) are filtered by their text; everything else reaches stderr unchanged and in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import os, sys
from pathlib import Path
from workflows.stderr_filter import filter_native_stderr
assert filter_native_stderr(Path(sys.argv[1]), ["harmless native note"])
os.write(2, b"[E core_worker.cc] keep: a real error\n")
os.write(2, b"[E core_worker.cc] Actor X: harmless native note, see ray#53727\n[W] keep too\n")
print("python's own stderr line", file=sys.stderr, flush=True)
os.write(2, b"last line without newline")
"""


def _run(tmp_path: Path) -> tuple[str, str]:
    log = tmp_path / "ray-driver.log"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return p.stderr, log.read_text() if log.is_file() else ""


def test_named_native_lines_go_to_the_log_file_and_the_rest_to_stderr(tmp_path) -> None:
    err, log = _run(tmp_path)
    assert err == ("[E core_worker.cc] keep: a real error\n[W] keep too\npython's own stderr line\n"
                   "last line without newline")
    assert log == "[E core_worker.cc] Actor X: harmless native note, see ray#53727\n"


def test_ray_data_actor_restart_note_is_named() -> None:
    from workflows.stderr_filter import HARMLESS_NATIVE_LINES

    line = ("[2026-12-04 11:35:10,895 E 27559 27559] core_worker.cc:2465: Actor with class name: "
            "'MapWorker(MapBatches(UnitProcessor))' and ID: 'a0bf' has constructor arguments in the "
            "object store and max_restarts > 0. If the arguments in the object store go out of scope")
    assert any(t in line for t in HARMLESS_NATIVE_LINES)
