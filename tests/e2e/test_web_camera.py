"""The web page's camera mode in headless Chromium, its camera faked from a real video (Chromium's
fake media stream, fed a Y4M file made from ../shared/media in a temporary folder): frames go to
``/v1/stream`` and the AU bars and the face box change on screen as the video plays."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import pytest

from tests.conftest import require_media
from tests.e2e.chromium import chromium


def write_y4m(video: Path, out: Path, frames: int = 90, width: int = 320) -> Path:
    """The first ``frames`` frames of ``video`` as a YUV 4:2:0 Y4M file ``width`` pixels wide."""
    cap = cv2.VideoCapture(str(video))
    with open(out, "wb") as f:
        for k in range(frames):
            ok, bgr = cap.read()
            if not ok:
                break
            h = int(round(bgr.shape[0] * width / bgr.shape[1] / 2)) * 2
            bgr = cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA)
            if k == 0:
                f.write(f"YUV4MPEG2 W{width} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
            f.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    cap.release()
    return out


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("camera")
    fake = write_y4m(require_media("single_face.mp4") / "single_face.mp4", tmp / "camera.y4m")
    with chromium(tmp / "profile", "1280,1000", ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                                  f"--use-file-for-fake-video-capture={fake}")) as driver:
        yield driver


def test_camera_mode_streams_and_the_bars_change(camera_browser, served, tmp_path_factory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    b = camera_browser
    b.get(served.url + "/")
    b.find_element(By.ID, "camera").click()
    WebDriverWait(b, 180).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#overlay .face-box"))

    def bars() -> tuple:
        # Read in one script: the bars are redrawn with every answer.
        return tuple(b.execute_script("return [...document.querySelectorAll('#bars .au-row')].map(e => +e.dataset.p)"))

    seen = {bars()}
    box = b.execute_script("const r = document.querySelector('#overlay .face-box'); return r && r.getAttribute('x')")
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        seen.add(bars())
    assert len(seen) >= 3 and all(len(s) == len(next(iter(seen))) > 0 for s in seen)
    assert "frames answered" in b.find_element(By.ID, "status").text
    assert not b.find_element(By.ID, "cam").get_attribute("hidden")
    shot = tmp_path_factory.mktemp("shots") / "camera.png"  # media stays out of the repository (NOTICE)
    b.save_screenshot(str(shot))
    print(f"camera mode screenshot: {shot}; first box x {box}")
    b.find_element(By.ID, "camera").click()
    WebDriverWait(b, 30).until(lambda d: "Camera off" in d.find_element(By.ID, "status").text)
