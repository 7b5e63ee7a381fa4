"""Lines that Ray writes to the driver's console below Python's ``logging``, filtered by their text.

Two ways in, one rule. Ray's C++ core worker logs to the driver's file descriptor 2, where the
console filter of ``workflows.core.runtime`` cannot reach it: ``filter_native_stderr`` puts a pipe in
front of descriptor 2, and a reader thread passes every line through to the real stderr unchanged,
except lines that contain one of the given texts (``HARMLESS_NATIVE_LINES``). At exit the real
stderr is put back and what the pipe still holds is written out, so nothing printed during
shutdown is lost. Ray's driver also prints, with ``print`` to ``sys.stdout``, every message of the
cluster's error channel as a ``(raylet) ...`` line (``ray._private.worker.listen_error_messages``,
even with ``log_to_driver=False``): ``filter_ray_driver_lines`` wraps the function that prints
them and takes out the lines that ``HARMLESS_RAY_DRIVER_LINES`` names. Named lines of either
kind go to a log file instead; any other output, errors included, reaches the console as before.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["HARMLESS_NATIVE_LINES", "HARMLESS_RAY_DRIVER_LINES", "filter_native_stderr", "restore_native_stderr",
           "filter_ray_driver_lines", "restore_ray_driver_lines"]

HARMLESS_NATIVE_LINES: tuple[str, ...] = (
    # Ray Data's actor pools (preprocess, label) always pass their map transformer through the
    # object store and restart dead actors; Ray 2.60's core worker then warns once per actor that
    # a restart could fail if the argument were lost (ray-project/ray#53727). Nothing to fix here.
    "has constructor arguments in the object store and max_restarts > 0",
)
"""Texts of native stderr lines that are known and harmless: they go to the log file only."""

HARMLESS_RAY_DRIVER_LINES: tuple[str, ...] = (
    # serve.shutdown() waits on ServeController.graceful_shutdown, which never returns: the
    # controller ends itself with ray.kill once Serve is down. The call has infinite retries, so
    # the driver's core worker reports the failed attempt on the error channel ("Task
    # ServeController.graceful_shutdown failed ... killed by `ray.kill`") at every clean stop of
    # `facsflow serve` and `facsflow demo`.
    "Task ServeController.graceful_shutdown failed",
)
"""Texts of the driver's ``(raylet)`` error-channel lines that are known and harmless: they go to
the log file only."""

_state: "dict[str, object] | None" = None
_driver_state: "tuple[Any, Callable[..., None]] | None" = None
_lock = threading.Lock()


def filter_native_stderr(log_file: "Path | None", texts: Sequence[str] = HARMLESS_NATIVE_LINES) -> bool:
    """Route descriptor 2 through a line filter (once per process); True when installed.

    Lines containing any of ``texts`` are appended to ``log_file`` (dropped when None); every
    other byte goes to the original stderr. Idempotent; does nothing where descriptor 2 cannot
    be duplicated.
    """
    global _state
    with _lock:
        if _state is not None:
            return True
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
        except (OSError, ValueError):
            return False
        patterns = [t.encode() for t in texts]
        thread = threading.Thread(target=_pump, args=(read_end, saved, patterns, log_file),
                                  name="facsflow-stderr-filter", daemon=True)
        _state = {"saved": saved, "thread": thread}
        thread.start()
        atexit.register(restore_native_stderr)
        return True


def restore_native_stderr() -> None:
    """Put the original stderr back on descriptor 2 and let the reader drain the pipe."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(state["saved"], 2)   # the pipe's last write end closes: the reader sees its end
    state["thread"].join(timeout=2.0)


def filter_ray_driver_lines(log_file: "Path | None", texts: Sequence[str] = HARMLESS_RAY_DRIVER_LINES) -> bool:
    """Take the lines containing one of ``texts`` out of what Ray's driver prints for its error
    channel (once per process); True when installed.

    Those lines are appended to ``log_file`` with their ``(raylet)`` prefix (dropped when None);
    the rest are printed by Ray as before. Wraps ``ray._private.worker.print_to_stdstream``,
    which ``listen_error_messages`` looks up at every message; does nothing (False) where that
    private function is not there.
    """
    global _driver_state
    with _lock:
        if _driver_state is not None:
            return True
        try:
            import ray._private.worker as ray_worker

            original = ray_worker.print_to_stdstream
        except (ImportError, AttributeError):
            return False
        patterns = tuple(texts)

        def print_to_stdstream(data: "dict[str, Any]", ignore_prefix: bool) -> None:
            lines = list(data.get("lines") or [])
            kept = [ln for ln in lines if not any(t in ln for t in patterns)]
            if len(kept) == len(lines):
                original(data, ignore_prefix)
                return
            for line in lines:
                if line not in kept:
                    _to_log(f"({data.get('pid')}) {line}\n".encode(), log_file)
            if kept:
                original({**data, "lines": kept}, ignore_prefix)

        ray_worker.print_to_stdstream = print_to_stdstream
        _driver_state = (ray_worker, original)
        return True


def restore_ray_driver_lines() -> None:
    """Give Ray its own ``print_to_stdstream`` back (no-op when ``filter_ray_driver_lines`` is not on)."""
    global _driver_state
    with _lock:
        state, _driver_state = _driver_state, None
    if state is not None:
        ray_worker, original = state
        ray_worker.print_to_stdstream = original


def _pump(read_end: int, out: int, patterns: list[bytes], log_file: "Path | None") -> None:
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _emit(line + b"\n", out, patterns, log_file)
    if pending:
        _emit(pending, out, patterns, log_file)


def _emit(line: bytes, out: int, patterns: list[bytes], log_file: "Path | None") -> None:
    if any(p in line for p in patterns):
        _to_log(line, log_file)
        return
    view = memoryview(line)
    while view:
        try:
            n = os.write(out, view)
        except InterruptedError:
            continue
        except OSError:
            return
        view = view[n:]


def _to_log(line: bytes, log_file: "Path | None") -> None:
    if log_file is None:
        return
    try:
        with open(log_file, "ab") as f:
            f.write(line)
    except OSError:
        pass
