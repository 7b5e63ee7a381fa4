"""Lines that native code writes straight to this process's stderr, filtered by their text.

Ray's C++ core worker logs to the driver's file descriptor 2, below Python's ``logging``, so the
console filter of ``workflows.runtime`` cannot reach it. ``filter_native_stderr`` puts a pipe in
front of descriptor 2: a reader thread passes every line through to the real stderr unchanged,
except lines that contain one of the given texts, which go to a log file instead. Only known,
harmless lines are named (``HARMLESS_NATIVE_LINES``); any other output, errors included, reaches
the console as before. At exit the real stderr is put back and what the pipe still holds is
written out, so nothing printed during shutdown is lost.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Sequence

__all__ = ["HARMLESS_NATIVE_LINES", "filter_native_stderr", "restore_native_stderr"]

HARMLESS_NATIVE_LINES: tuple[str, ...] = (
    # Ray Data's actor pools (preprocess, label) always pass their map transformer through the
    # object store and restart dead actors; Ray 2.60's core worker then warns once per actor that
    # a restart could fail if the argument were lost (ray-project/ray#53727). Nothing to fix here.
    "has constructor arguments in the object store and max_restarts > 0",
)
"""Texts of native stderr lines that are known and harmless: they go to the log file only."""

_state: "dict[str, object] | None" = None
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
        if log_file is not None:
            try:
                with open(log_file, "ab") as f:
                    f.write(line)
            except OSError:
                pass
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
