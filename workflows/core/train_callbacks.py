"""Ray Train callbacks for experiment tracking (they run in the Train controller process), and
the driver's console line per epoch (``EpochLines``)."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from ray.train import UserCallback

from components import storage

__all__ = ["TensorBoardCallback", "EpochLines", "epoch_line"]


class TensorBoardCallback(UserCallback):
    """Write every numeric metric rank 0 reports to TensorBoard event files, step = epoch.

    ``logdir`` must be reachable from the node that runs the Train controller (a local path on
    one machine, a shared filesystem on a cluster).
    """

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self._writer: Any = None

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        from tensorboardX import SummaryWriter

        if not metrics:
            return
        if self._writer is None:
            self._writer = SummaryWriter(self.logdir)
        m = metrics[0]
        step = int(m.get("epoch", 0))
        for key, value in m.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self._writer.add_scalar(key, value, step)
        self._writer.flush()


def epoch_line(run: str, m: dict[str, Any], total: int) -> str:
    """One console line for an epoch's metrics (``train_loop_per_worker``'s report), with an
    ETA of this epoch's time over the epochs left (early stopping may end the run sooner)."""
    done = int(m["epoch"]) + 1
    step = f" ({m['stage']})" if m.get("stage", "train") != "train" else ""
    eta = float(m["epoch_seconds"]) * max(0, total - done)
    return (f"[{run}] epoch {done}/{total}{step}  loss {m['train_loss']:.4f}  val F1 {m['val_mean_f1']:.3f} "
            f"(best {m['best_val_mean_f1']:.3f})  {m['samples_per_s']:.1f} samples/s  "
            f"{m['epoch_seconds']:.0f} s  ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class EpochLines:
    """Print each epoch of a run once, from the driver, while ``trainer.fit()`` runs.

    Rank 0 appends every epoch to ``<run_dir>/metrics.jsonl`` (local or remote storage); a
    thread here reads it every ``poll_s`` seconds and prints the new epochs. Printing from the
    driver keeps worker output (and its duplicates) out of the console, and works the same on a
    cluster, where worker stdout is on other machines.
    """

    def __init__(self, run: str, run_dir: str, total_epochs: int, poll_s: float = 1.0,
                 out: Callable[[str], None] = print) -> None:
        self.run, self.total, self.poll_s, self.out = run, total_epochs, poll_s, out
        self.path = storage.join(run_dir, "metrics.jsonl")
        self._printed = 0
        self._stop = threading.Event()
        self._thread: "threading.Thread | None" = None

    def __enter__(self) -> "EpochLines":
        self._thread = threading.Thread(target=self._loop, name="facsflow-epoch-lines", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._emit()   # the last epoch, written just before fit() returned

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._emit()

    def _emit(self) -> None:
        try:
            if not storage.exists(self.path):
                return
            lines = storage.read_text(self.path).splitlines()
        except (OSError, ValueError):   # a write in progress: read again next time
            return
        for raw in lines[self._printed:]:
            try:
                m = json.loads(raw)
            except ValueError:
                return
            self.out(epoch_line(self.run, m, self.total))
            self._printed += 1
