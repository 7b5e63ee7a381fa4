"""Peak resident memory of a benchmark's driver plus its Ray actors, sampled from Linux /proc.

Shared by benchmarks/preprocess.py and benchmarks/label.py (imported as ``procmem``: the
benchmarks run as scripts, with this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PeakRss", "wait_for_actors_to_exit"]


def _rss(pid: "int | str") -> int:
    """Resident set size of a process in bytes (0 if it is gone), from /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _actor_pids(marker: bytes) -> list[str]:
    """Processes whose command line holds ``marker`` (Ray titles actors by their class, e.g.
    b"UnitProcessor" for preprocessing, b"TeacherLabeller" for labelling)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


class PeakRss:
    """Samples the RSS of this process plus every actor whose title holds ``marker`` (Linux
    /proc); keeps the peak."""

    def __init__(self, every_s: float = 0.25, marker: bytes = b"UnitProcessor") -> None:
        self.every_s = every_s
        self.marker = marker
        self.before = set(_actor_pids(marker))  # a previous run's actors, still exiting
        self.peak_driver = self.peak_actors = self.peak_total = 0
        self.driver_before = _rss(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            driver = _rss(os.getpid())
            actors = sum(_rss(pid) for pid in _actor_pids(self.marker) if pid not in self.before)
            self.peak_driver = max(self.peak_driver, driver)
            self.peak_actors = max(self.peak_actors, actors)
            self.peak_total = max(self.peak_total, driver + actors)
            self._stop.wait(self.every_s)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mb(self) -> dict[str, float]:
        return {"driver": round(self.peak_driver / 2**20, 1), "actors": round(self.peak_actors / 2**20, 1),
                "total": round(self.peak_total / 2**20, 1),
                "driver_growth": round((self.peak_driver - self.driver_before) / 2**20, 1)}


def wait_for_actors_to_exit(timeout_s: float = 60.0, marker: bytes = b"UnitProcessor") -> None:
    """Let a previous run's actors finish exiting so that they neither compete nor get counted."""
    deadline = time.monotonic() + timeout_s
    while _actor_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
