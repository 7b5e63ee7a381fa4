"""One headless Chromium for the page tests (Debian's chromium + chromium-driver): the flags this
machine's closed network needs, a fresh profile, and a clear skip (a failure under CI=true) when
the browser is missing."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
"""Without the background-networking flags Chromium keeps dialling hosts this network refuses."""


def require_chromium() -> None:
    if not (shutil.which("chromium") and Path(CHROMEDRIVER).is_file()):
        msg = "Debian's chromium and chromium-driver are needed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@contextlib.contextmanager
def chromium(profile: Path, window: str = "1280,1400", extra: Sequence[str] = ()) -> Iterator[Any]:
    """A WebDriver for headless Chromium with a new profile in ``profile``; quit on exit."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in (*QUIET_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}", *extra):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
