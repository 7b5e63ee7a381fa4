"""Fault injection for the tests, run inside Ray workers through the training loop's test-only
``epoch_hook`` (``workflows.core.training.run_training``): the product code holds no fault logic."""

from __future__ import annotations

import os


def kill_worker_once(epoch: int, rank: int, *, at_epoch: int, on_rank: int, marker: str) -> None:
    """Exit worker ``on_rank`` abruptly right after epoch ``at_epoch`` was reported (its checkpoint
    saved), once: ``marker`` records that it happened, so the restarted worker group goes on."""
    if epoch == at_epoch and rank == on_rank and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
