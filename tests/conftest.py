"""Shared fixtures. Real media come from ../shared/media beside the project root: tests that
need it skip with a clear reason when it is absent, and fail instead when CI=true."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.processes import MARK, kill_all, wait_gone

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


def require_weights(name: str) -> None:
    """Skip (fail under CI=true, whose .ci/run fetches the catalogue's archives) when the weights
    catalogue entry ``name``'s file or code is not on this machine."""
    from components import weights

    try:
        weights.require_code(weights.get(name))
        weights.locate(name)
    except weights.WeightsMissingError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must install the catalogue's weights: {exc}")
        pytest.skip(str(exc))


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



# ----------------------------------------------------------------------------- leftover processes
# Every process this session starts (Ray's GCS, raylet, workers, Train controllers, subprocess
# CLIs) inherits MARK from the environment set here; at the end, after Ray is shut down, any
# still alive is a fixture or command that did not clean up: they are listed, killed, and the
# session fails. Other people's Ray processes on a shared machine carry no mark.
_SESSION_MARK = os.environ.setdefault(MARK, uuid.uuid4().hex)
LEFTOVER_GRACE_S = 30.0
"""How long Ray's processes get to exit after the last shutdown before they count as left."""


def pytest_sessionfinish(session, exitstatus) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    left = wait_gone(_SESSION_MARK, LEFTOVER_GRACE_S)
    if not left:
        return
    kill_all(left)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {cmd[:160]}" for pid, cmd in sorted(left.items())]
    text = "processes started by this test session were still running at its end (now killed):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(text, red=True)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
