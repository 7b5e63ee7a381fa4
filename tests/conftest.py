"""Shared fixtures. Real media come from ../shared/media beside the project root: tests that
need it skip with a clear reason when it is absent, and fail instead when CI=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACSFLOW_MEDIA", ROOT.parent / "shared" / "media"))


def require_media(*names: str) -> Path:
    """Return the media folder; skip (or fail under CI=true) when it or a named file is absent."""
    missing = [n for n in names if not (MEDIA / n).is_file()]
    if not MEDIA.is_dir() or missing:
        what = f"{MEDIA} (missing: {', '.join(missing) or 'folder'})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real media required under CI=true: {what}")
        pytest.skip(f"real media not found: {what}")
    return MEDIA


@pytest.fixture
def media_dir() -> Path:
    """../shared/media (skips, or fails under CI=true, when absent)."""
    return require_media()
