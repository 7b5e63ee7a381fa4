"""Ray Train callbacks for experiment tracking (they run in the Train controller process)."""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback

__all__ = ["TensorBoardCallback"]


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
