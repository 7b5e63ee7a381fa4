"""``facsflow serve`` stops cleanly on SIGTERM (how Kubernetes stops a pod) and SIGINT (Ctrl-C):
Serve drains and shuts down, one line says so, the exit code is 0, no C++ stack trace is
printed, Ray's note on its own controller's end ("(raylet) Task ServeController.graceful_shutdown
failed ... killed by `ray.kill`") stays in the Ray log file, and no process the command started
is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import APP_ARGS, free_port
from tests.processes import MARK, kill_all, wait_gone
from tests.serving_fixtures import IMAGE_MEMBER, make_ensemble


ROOT = Path(__file__).resolve().parents[2]


def _reader(stream, lines: list[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.append(line)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    import yaml

    ensemble = make_ensemble(tmp_path / "ensemble", [IMAGE_MEMBER])
    args = {k: v for k, v in APP_ARGS.items() if k != "video_faces"}
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(args))
    port = free_port()
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workflows.cli", "serve", "--ensemble", str(ensemble), "--port", str(port),
         "--args", str(tmp_path / "app.yaml")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    threads = [threading.Thread(target=_reader, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_reader, args=(proc.stderr, err), daemon=True)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 600
        while not any(line.startswith("serving ") for line in out):
            assert proc.poll() is None, f"serve exited early ({proc.returncode}):\n{''.join(out + err)}"
            assert time.monotonic() < deadline, f"serve did not start in 600 s:\n{''.join(out + err)}"
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=60).status_code == 200
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(timeout=10)
        left = wait_gone(mark, 30)
        kill_all(left)
    text = "".join(out + err)
    assert rc == 0, text
    stop = [line for line in out if "stopped cleanly" in line]
    assert len(stop) == 1 and sig.name in stop[0], text
    assert "Stack trace" not in text and "*** " not in text and "Traceback" not in text, text
    assert "graceful_shutdown failed" not in text, text
    assert not left, f"processes left after serve stopped: {left}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
