"""Where facsflow keeps what it computes once and reuses: one root for every cache.

Text embeddings (SEV-Net), converted pretrained weights, downloaded weight archives and the
built-in detector's files live under ``$FACSFLOW_CACHE`` (default ``~/.cache/facsflow``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "FACSFLOW_CACHE"
"""Environment variable naming the cache root."""


def cache_root() -> Path:
    """Root of facsflow's caches: ``$FACSFLOW_CACHE`` or ``~/.cache/facsflow`` (not created)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facsflow"
