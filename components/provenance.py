"""Provenance recorded in every checkpoint and report: code, packages, seed, data, folds."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["provenance", "git_commit"]

_PACKAGES = ("facsflow", "torch", "torchvision", "ray", "numpy", "pyarrow", "opencv-python", "dlib-bin",
             "facenet-pytorch", "face-alignment")


def git_commit() -> str:
    """Commit of the checkout facsflow runs from ('unknown' outside git; '+dirty' if modified)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(seed: int, store: str, fold_hash: str) -> dict[str, Any]:
    from components.store.splits import store_fingerprint

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": git_commit(), "packages": versions, "python": platform.python_version(),
            "seed": seed, "store": store, "store_fingerprint": store_fingerprint(store),
            "fold_hash": fold_hash}
