"""workflows.core.stderr_filter: lines written straight to descriptor 2 (as Ray's C++ core worker
writes them) and the ``(raylet)`` lines Ray's driver prints for its error channel are filtered by
their text; everything else reaches the console unchanged and in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import os, sys
from pathlib import Path
from workflows.core.stderr_filter import filter_native_stderr
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
    from workflows.core.stderr_filter import HARMLESS_NATIVE_LINES

    line = ("[2026-12-04 11:35:10,895 E 27559 27559] core_worker.cc:2465: Actor with class name: "
            "'MapWorker(MapBatches(UnitProcessor))' and ID: 'a0bf' has constructor arguments in the "
            "object store and max_restarts > 0. If the arguments in the object store go out of scope")
    assert any(t in line for t in HARMLESS_NATIVE_LINES)


def test_named_ray_driver_lines_go_to_the_log_file_and_the_rest_to_stdout(tmp_path, capsys, monkeypatch) -> None:
    import ray._private.worker as ray_worker

    from workflows.core.stderr_filter import filter_ray_driver_lines, restore_ray_driver_lines

    monkeypatch.setenv("RAY_COLOR_PREFIX", "0")
    log = tmp_path / "ray-driver.log"
    original = ray_worker.print_to_stdstream
    assert filter_ray_driver_lines(log, ["harmless driver note"])
    try:
        ray_worker.print_to_stdstream({"lines": ["Task X failed: a real error (unit test)"], "pid": "raylet",
                                       "is_err": False}, ignore_prefix=False)
        ray_worker.print_to_stdstream({"lines": ["Task Y: harmless driver note (unit test)"], "pid": "raylet",
                                       "is_err": False}, ignore_prefix=False)
    finally:
        restore_ray_driver_lines()
    assert ray_worker.print_to_stdstream is original
    assert capsys.readouterr().out == "(raylet) Task X failed: a real error (unit test)\n"
    assert log.read_text() == "(raylet) Task Y: harmless driver note (unit test)\n"


def test_ray_driver_prints_its_error_channel_through_the_wrapped_function() -> None:
    """``listen_error_messages`` looks ``print_to_stdstream`` up by name at every message: the
    wrapper only works while it does (a Ray upgrade that changes this fails here)."""
    import ray._private.worker as ray_worker

    assert "print_to_stdstream" in ray_worker.listen_error_messages.__code__.co_names


def test_serve_shutdown_note_is_named() -> None:
    from workflows.core.stderr_filter import HARMLESS_RAY_DRIVER_LINES

    line = ("Task ServeController.graceful_shutdown failed. There are infinite retries remaining, so the task "
            "will be retried. Error: The actor is dead because it was killed by `ray.kill`.")
    assert any(t in line for t in HARMLESS_RAY_DRIVER_LINES)
    assert not any(t in "Task ServeController.deploy_applications failed." for t in HARMLESS_RAY_DRIVER_LINES)
