"""The web page in a real headless Chromium (Debian's chromium + chromium-driver): upload a real
face and check what a person would see: a box on the face, its landmarks, labelled AU bars;
for a video, an AU timeline; for a broken file, the server's error."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import require_media
from tests.serving_fixtures import AUS


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (shutil.which("chromium") and Path(CHROMEDRIVER).is_file()):
        msg = "Debian's chromium and chromium-driver are needed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _upload(browser: Any, url: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))


def _wait(browser: Any, css: str, timeout: float = 240) -> list:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def test_uploaded_face_gets_a_box_landmarks_and_labelled_au_bars(browser, served) -> None:
    from selenium.webdriver.common.by import By

    media = require_media("single_face.jpg")
    _upload(browser, served.url, media / "single_face.jpg")
    rows = _wait(browser, "#bars .au-row")
    assert browser.find_element(By.ID, "status").text == "Found 1 face."
    boxes = browser.find_elements(By.CSS_SELECTOR, "#overlay rect.face-box")
    assert len(boxes) == 1
    assert float(boxes[0].get_attribute("width")) > 50  # in image pixels
    assert boxes[0].size["width"] > 20 and boxes[0].size["height"] > 20  # and really drawn on screen
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overlay circle.landmark")) == 68
    assert len(rows) == len(AUS)
    labels = [r.find_element(By.CLASS_NAME, "au-label").text for r in rows]
    assert labels[0] == "AU1 Inner Brow Raiser" and "AU12 Lip Corner Puller" in labels
    for r in rows:  # bar length and the printed value show the probability; dark bars are present AUs
        p = float(r.get_attribute("data-p"))
        width = float(re.match(r"([\d.]+)%", r.find_element(By.CLASS_NAME, "au-bar").get_attribute("style")
                               .split("width:")[1].strip()).group(1))
        assert abs(width - 100 * p) <= 0.051
        assert r.find_element(By.CLASS_NAME, "au-value").text == f"{p:.2f}"
        assert ("on" in r.get_attribute("class").split()) == (p >= 0.5)  # thresholds are 0.5
    assert "SYNTHETIC" in browser.find_element(By.ID, "card").text
    assert "vid-tosequence" in browser.find_element(By.ID, "members").text  # left out: needs video


def test_video_gets_an_au_timeline(browser, served) -> None:
    from selenium.webdriver.common.by import By

    media = require_media("single_face.mp4")
    _upload(browser, served.url, media / "single_face.mp4")
    lines = _wait(browser, "#timeline polyline.au-line")
    assert len(lines) == len(AUS)
    assert [ln.get_attribute("data-au") for ln in lines] == [f"AU{a}" for a in AUS]
    assert all(len(ln.get_attribute("points").split()) == 72 for ln in lines)  # one point per frame
    assert browser.find_element(By.ID, "status").text.startswith("72 frames, a face in 72")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overlay rect.face-box")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .au-row")) == len(AUS)


def test_broken_file_shows_the_server_error(browser, served, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = (require_media("single_face.jpg") / "single_face.jpg").read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 3])
    _upload(browser, served.url, broken)
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 120).until(lambda d: "Error" in status.text)
    assert status.text.startswith("Error 400:") and "truncated" in status.text
    assert "error" in status.get_attribute("class")
