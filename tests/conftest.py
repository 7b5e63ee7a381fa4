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


# ----------------------------------------------------------------------------- test tiers
# Each tier is its folder (unit/, integration/, e2e/) and has a time budget on a 2-core machine;
# the summary prints each tier's total against its budget and flags a tier over it.
TIER_BUDGET_S = {"unit": 600.0, "integration": 2100.0, "e2e": 1200.0}
_tier_seconds: dict[str, float] = {t: 0.0 for t in TIER_BUDGET_S}


def _tier(nodeid: str) -> "str | None":
    for tier in TIER_BUDGET_S:
        if nodeid.startswith(f"tests/{tier}/"):
            return tier
    return None


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        tier = _tier(item.nodeid)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_runtest_logreport(report) -> None:
    tier = _tier(report.nodeid)
    if tier is not None:
        _tier_seconds[tier] += report.duration


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    terminalreporter.section("time per test tier (budget on a 2-core machine)")
    for tier, budget in TIER_BUDGET_S.items():
        spent = _tier_seconds[tier]
        flag = "OVER BUDGET" if spent > budget else "ok"
        terminalreporter.write_line(f"{tier:<12} {spent:8.1f} s of {budget:6.0f} s  {flag}")


