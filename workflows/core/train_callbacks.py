"""Ray Train callbacks for experiment tracking (they run in the Train controller process), the
driver's console line per epoch (``EpochLines``), and what a run says when its model predicts no
AU (``no_au_note``, ``run_warning``): a validation F1 of 0, or a model no better than predicting
every AU, must never pass silently."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from ray.train import UserCallback

from components import storage

__all__ = ["TensorBoardCallback", "EpochLines", "epoch_line", "no_au_note", "run_warning"]


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
    note = no_au_note(m)
    tuned = (f"; {m['val_tuned_mean_f1']:.3f} at val thresholds, all-positive {m['val_all_positive_f1']:.3f}"
             if "val_tuned_mean_f1" in m and not note else "")
    return (f"[{run}] epoch {done}/{total}{step}  loss {m['train_loss']:.4f}  val F1 {m['val_mean_f1']:.3f}"
            f"{' — ' + note if note else ''} (best {m['best_val_mean_f1']:.3f}{tuned})  "
            f"{m['samples_per_s']:.1f} samples/s  {m['epoch_seconds']:.0f} s  ETA {_clock(eta)}")


def no_au_note(m: dict[str, Any]) -> str:
    """'' for an epoch whose validation F1 at 0.5 is above 0; else what the model does instead:
    predicts no AU at all (the unweighted-loss failure on rare AUs) or only wrong positives, and
    the F1 at the thresholds chosen on validation against the all-positive predictor's."""
    if round(float(m["val_mean_f1"]), 3) > 0:
        return ""
    rate = m.get("val_positive_rate")
    what = ("predicts no AU: no validation probability reaches 0.5" if rate is not None and rate == 0
            else "no correct positive on validation at 0.5")
    if "val_tuned_mean_f1" in m:
        what += (f"; at the thresholds chosen on validation F1 {m['val_tuned_mean_f1']:.3f} vs all-positive "
                 f"{m['val_all_positive_f1']:.3f}")
    return what


def run_warning(history: list[dict[str, Any]], pos_weight: str) -> str:
    """The end-of-run warning ('' if none). Either validation F1 at 0.5 stayed 0 in every epoch,
    so the model predicts no AU (or no AU right) at its raw threshold; or, scored at the
    thresholds chosen on validation, no epoch of the step that makes the AU outputs beat the
    all-positive predictor on the same frames (``val_tuned_mean_f1`` never above
    ``val_all_positive_f1``, to 3 decimals): the model learned nothing the AU base rates do not
    give, typically a constant output. Each says what to change."""
    if not history:
        return ""
    last = history[-1]
    if all(round(float(h["val_mean_f1"]), 3) <= 0 for h in history):
        hint = ("train with --set pos_weight=balanced (class-balanced loss)" if pos_weight == "none"
                else "train longer, on more subjects, or with lighter augmentation")
        beaten = ""
        if "val_tuned_mean_f1" in last:
            beaten = (f"; at the thresholds chosen on validation F1 {last['val_tuned_mean_f1']:.3f} vs all-positive "
                      f"{last['val_all_positive_f1']:.3f}")
        return (f"validation F1 stayed 0.000 in all {len(history)} epochs — the model "
                f"{'predicts no AU' if last.get('val_positive_rate') == 0 else 'gets no AU right'} at 0.5{beaten}: "
                f"{hint}")
    # A multi-step family (pairwise-rank) makes its AU outputs in its last step only.
    final = [h for h in history if h.get("stage", "train") == last.get("stage", "train")
             and "val_tuned_mean_f1" in h and "val_all_positive_f1" in h]
    if not final or any(round(float(h["val_tuned_mean_f1"]), 3) > round(float(h["val_all_positive_f1"]), 3)
                        for h in final):
        return ""
    best = max(final, key=lambda h: float(h["val_tuned_mean_f1"]))
    step = f" of its {last['stage']} step" if last.get("stage", "train") != "train" else ""
    return (f"no epoch{step} beat the all-positive predictor on validation (best F1 at the validation "
            f"thresholds {best['val_tuned_mean_f1']:.3f} vs all-positive {best['val_all_positive_f1']:.3f}, "
            f"{len(final)} epochs): the model learned nothing the AU base rates do not give; train longer, at a "
            f"lower learning rate, from pretrained weights or with light augmentation")


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
