"""Find the processes a test (or the whole test session) started, by an environment marker.

Every process inherits its parent's environment, and Ray's raylet, GCS and workers are started
from the driver's: a marker variable set before Ray starts therefore tags all of them, even
after their parent is gone (an orphaned ``ray::TrainController`` re-parented to init). Other
people's Ray processes on a shared machine do not carry it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARK = "FACSFLOW_TEST_SESSION"
"""Environment variable whose value tags the processes of one test session (or one test)."""


def marked_processes(value: str) -> dict[int, str]:
    """pid → command line of every live process (not this one) whose environment has
    ``MARK=value``; processes of other users are unreadable and skipped."""
    needle = f"{MARK}={value}".encode()
    found: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
            if needle not in env.split(b"\0"):
                continue
            state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
            if "Z" in state.split()[1:2]:   # a zombie is already dead: only its parent's wait is missing
                continue
            found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, StopIteration):
            continue
    return found


def wait_gone(value: str, timeout_s: float) -> dict[int, str]:
    """Wait up to ``timeout_s`` for the marked processes to exit; return those still alive."""
    deadline = time.monotonic() + timeout_s
    left = marked_processes(value)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked_processes(value)
    return left


def kill_all(pids: "dict[int, str]") -> None:
    """SIGKILL ``pids`` (leftovers found by ``marked_processes``), ignoring those already gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def run_command(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
    """Run a command; (exit code, stdout, stderr). On a timeout, or when the test itself is
    stopped, the command gets SIGTERM first, so that it shuts down the Ray it started, and
    SIGKILL only if it has not exited 60 s later."""
    import subprocess

    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
