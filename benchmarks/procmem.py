"""Peak resident memory of a benchmark's driver plus its Ray actors, sampled from Linux /proc.

Shared by benchmarks/preprocess.py, benchmarks/label.py and benchmarks/scale.py (imported as ``procmem``: the
benchmarks run as scripts, with this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PeakRss", "TreeMeter", "process_tree", "wait_for_actors_to_exit"]


def _memory(pid: "int | str") -> tuple[int, int]:
    """(resident set size, its anonymous part) of a process in bytes, (0, 0) if it is gone, from
    one read of /proc/<pid>/status. The anonymous part (RssAnon) is the process's own memory,
    without the shared memory it maps (Ray's object store) and file pages."""
    found = {"VmRSS": 0, "RssAnon": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in found:
                    found[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found["VmRSS"], found["RssAnon"]


def _rss(pid: "int | str") -> int:
    """Resident set size of a process in bytes (0 if it is gone), from /proc."""
    return _memory(pid)[0]


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


class _Sampler:
    """A daemon thread that calls ``_sample`` every ``every_s`` while the ``with`` block runs."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PeakRss(_Sampler):
    """Samples the RSS of this process plus every actor whose title holds ``marker`` (Linux
    /proc); keeps the peak."""

    def __init__(self, every_s: float = 0.25, marker: bytes = b"UnitProcessor") -> None:
        super().__init__(every_s)
        self.marker = marker
        self.before = set(_actor_pids(marker))  # a previous run's actors, still exiting
        self.peak_driver = self.peak_actors = self.peak_total = 0
        self.driver_before = _rss(os.getpid())

    def _sample(self) -> None:
        driver = _rss(os.getpid())
        actors = sum(_rss(pid) for pid in _actor_pids(self.marker) if pid not in self.before)
        self.peak_driver = max(self.peak_driver, driver)
        self.peak_actors = max(self.peak_actors, actors)
        self.peak_total = max(self.peak_total, driver + actors)

    def mb(self) -> dict[str, float]:
        return {"driver": round(self.peak_driver / 2**20, 1), "actors": round(self.peak_actors / 2**20, 1),
                "total": round(self.peak_total / 2**20, 1),
                "driver_growth": round((self.peak_driver - self.driver_before) / 2**20, 1)}


def wait_for_actors_to_exit(timeout_s: float = 60.0, marker: bytes = b"UnitProcessor") -> None:
    """Let a previous run's actors finish exiting so that they neither compete nor get counted."""
    deadline = time.monotonic() + timeout_s
    while _actor_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.5)



def _stat(pid: "int | str") -> "tuple[int, float] | None":
    """(parent pid, CPU seconds the process has used itself) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state(0) ppid(1) ... utime(11) stime(12), in clock ticks.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: "int | str") -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def process_tree(root: int) -> dict[int, float]:
    """pid → CPU seconds used so far, of ``root`` and every descendant."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(p)) is not None}
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid][1]
            todo.extend(kids.get(pid, ()))
    return out


class TreeMeter(_Sampler):
    """CPU seconds and peak resident memory of a command's process tree (Linux /proc), sampled.

    ``driver`` is the command's own process (a stage's ``facsflow`` process); its descendants are
    the embedded Ray it started: Ray's workers (command line ``ray::...``: tasks, actors, training
    workers) and Ray's own services (GCS, raylet, dashboard). Every process seen once is followed
    to its end (also after its parent died), and its CPU time is the last value sampled: what a
    process uses in its last ``every_s`` is missed, as is a process that lives shorter than that.
    Peaks are of the sums over each group at one instant, and of the largest single worker.
    """

    def __init__(self, driver: int, every_s: float = 0.5) -> None:
        super().__init__(every_s)
        self.driver = driver
        self.peak = {"driver": 0, "workers": 0, "worker_max": 0, "ray_services": 0, "total": 0}
        self.peak_anon = dict(self.peak)
        self.cpu: dict[int, float] = {}
        self.kind: dict[int, str] = {}

    def _sample(self) -> None:
        for pid, cpu in process_tree(self.driver).items():
            if self.kind.get(pid) in (None, "ray_services"):
                # A Ray worker starts as python .../default_worker.py and retitles itself ray::<task>.
                cmd = _cmdline(pid)
                self.kind[pid] = ("driver" if pid == self.driver else
                                  "workers" if cmd.startswith(b"ray::") or b"default_worker.py" in cmd
                                  else "ray_services")
            self.cpu[pid] = cpu
        sums = [{"driver": 0, "workers": 0, "ray_services": 0} for _ in range(2)]   # RSS, anonymous
        for pid, kind in self.kind.items():
            st = _stat(pid)
            if st is None:
                continue
            self.cpu[pid] = st[1]
            for sum_, peak, value in zip(sums, (self.peak, self.peak_anon), _memory(pid)):
                sum_[kind] += value
                if kind == "workers":
                    peak["worker_max"] = max(peak["worker_max"], value)
        for sum_, peak in zip(sums, (self.peak, self.peak_anon)):
            for key, value in (*sum_.items(), ("total", sum(sum_.values()))):
                peak[key] = max(peak[key], value)

    def mb(self, private: bool = False) -> dict[str, float]:
        """Peak resident memory per group, MiB; ``private``: of the anonymous memory only
        (``_memory``'s RssAnon: a process's own heap, not the object-store pages it has mapped)."""
        return {k: round(v / 2**20, 1) for k, v in (self.peak_anon if private else self.peak).items()}

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds per group and in all."""
        out = {k: 0.0 for k in ("driver", "workers", "ray_services")}
        for pid, cpu in self.cpu.items():
            out[self.kind[pid]] += cpu
        out["total"] = sum(out.values())
        return {k: round(v, 1) for k, v in out.items()}
