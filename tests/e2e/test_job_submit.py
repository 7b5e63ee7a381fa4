"""cluster/submit.py against a real Ray head (`ray start --head`) with token authentication on.

The head runs in its own temporary folder with its own HOME and token file, so it never touches
~/.ray of the person running the tests, and is stopped afterwards by signalling the processes it
started (its own process group), never with `ray stop` (which stops every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from cluster.auth import save_token
from tests.conftest import require_media


ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOKEN = "facsflow-e2e-0123456789abcdef0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env(home: Path) -> dict[str, str]:
    """The environment with every Ray address/auth variable removed and an empty HOME."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["HOME"] = str(home)
    # The job's `python` must be the one with Ray and the project, as on a cluster image.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _get(url: str, token: "str | None" = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0  # not listening (yet)


class Head:
    """A started head: its dashboard URL, token file and work folder."""

    def __init__(self, url: str, token_file: Path, work: Path) -> None:
        self.url, self.token_file, self.work = url, token_file, work

    def run_submit(self, *args: str, env: "dict[str, str] | None" = None,
                   timeout: float = 300) -> subprocess.CompletedProcess:
        """`python -m cluster.submit --address URL ARGS` as a user would, from the checkout."""
        return subprocess.run([sys.executable, "-m", "cluster.submit", "--address", self.url, *args],
                              cwd=ROOT, env=env if env is not None else self.client_env(),
                              capture_output=True, text=True, timeout=timeout)

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client with the token only in RAY_AUTH_TOKEN_PATH and RAY_AUTH_MODE left unset."""
        home = self.work / "client-home"
        home.mkdir(exist_ok=True)
        env = _base_env(home)
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        env.update(extra)
        return env


def _kill_leftovers(marker: str) -> None:
    """SIGKILL any process whose command line names this head's own temp folder (ours only)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """A Ray head on 127.0.0.1 with 2 CPUs, dashboard and job server, RAY_AUTH_MODE=token."""
    work = Path(tempfile.mkdtemp(prefix="ffe2e-"))  # short: Ray's socket paths must fit 107 bytes
    home = work / "head-home"
    home.mkdir()
    token_file = save_token(TOKEN, work / "auth_token")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    env = _base_env(home)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # no Serve traffic to drain: stop at once
    dash = _free_port()
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
           "--include-dashboard", "true", "--num-cpus", "2", "--num-gpus", "0",
           "--ray-client-server-port", str(_free_port()),
           "--dashboard-agent-listen-port", str(_free_port()),
           "--temp-dir", str(work / "ray"), "--disable-usage-stats"]
    log = open(work / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while _get(f"{url}/api/version", TOKEN) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("ray start --head did not come up:\n" + (work / "ray-start.log").read_text()[-3000:])
            time.sleep(1)
        yield Head(url, token_file, work)
    finally:
        # SIGTERM lets `ray start --block` drain and stop the processes it started.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only processes this test started
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)
        _kill_leftovers(str(work))
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def test_cluster_requires_the_token(head: Head) -> None:
    """The head really enforces token auth: a request without the token is refused."""
    assert _get(f"{head.url}/api/version") == 401
    with urllib.request.urlopen(f"{head.url}/api/authentication_mode", timeout=5) as r:
        assert json.loads(r.read())["authentication_mode"] == "token"


def test_trivial_job_runs_in_the_uploaded_working_dir(head: Head) -> None:
    probe = ("import os, pathlib; p = pathlib.Path; "
             "print('ok', p('cluster/submit.py').is_file(), p('.venv').exists(), "
             "p('.git').exists(), os.environ['OMP_NUM_THREADS'], os.getcwd())")
    res = head.run_submit("--", "python", "-c", probe)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("ok "))
    _, has_code, has_venv, has_git, threads, cwd = line.split(" ", 5)
    # Code came with the upload; the virtualenv and git history stayed behind (excludes).
    assert (has_code, has_venv, has_git, threads) == ("True", "False", "False", "1")
    assert Path(cwd).resolve() != ROOT
    assert "SUCCEEDED" in res.stderr


def test_job_exit_status_is_returned(head: Head) -> None:
    res = head.run_submit("--", "python", "-c", "import sys; print('failing on purpose'); sys.exit(3)")
    assert res.returncode == 3, res.stderr[-2000:]
    assert "failing on purpose" in res.stdout
    assert "FAILED" in res.stderr


def test_missing_token_gives_one_clear_line(head: Head) -> None:
    home = head.work / "tokenless-home"
    home.mkdir(exist_ok=True)
    res = head.run_submit("--", "python", "-c", "print('never runs')", env=_base_env(home))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "requires an authentication token and none was found" in lines[0]
    assert "ray get-auth-token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
    assert not (home / ".ray").exists()  # nothing was generated behind the user's back


def test_wrong_token_is_rejected_clearly(head: Head) -> None:
    env = head.client_env(RAY_AUTH_TOKEN="not-the-cluster-token")
    res = head.run_submit("--", "python", "-c", "print('never runs')", env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"facsflow: error: the Ray cluster at {head.url} rejected the token from RAY_AUTH_TOKEN: it is not "
        "this cluster's token (on the head node: `ray get-auth-token`)"]


def test_no_wait_returns_at_once_and_the_job_finishes(head: Head) -> None:
    from ray.job_submission import JobSubmissionClient

    res = head.run_submit("--no-wait", "--submission-id", "facsflow-e2e-nowait", "--",
                          "python", "-c", "import time; time.sleep(2); print('late')")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "facsflow-e2e-nowait" in res.stderr and "late" not in res.stdout
    client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + 120
    while str(client.get_job_status("facsflow-e2e-nowait")) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(0.5)
    assert str(client.get_job_status("facsflow-e2e-nowait")) == "SUCCEEDED"
    assert "late" in client.get_job_logs("facsflow-e2e-nowait")


def test_preprocess_job_writes_the_feature_store(head: Head) -> None:
    """The real preprocess stage as a Ray job: every input frame lands in frames/ or rejects/."""
    media = require_media("0-f1-su-ph.jpg", "free-mountain-vector-01.jpg")
    root = head.work / "media-in"
    root.mkdir(exist_ok=True)
    for name in ("0-f1-su-ph.jpg", "free-mountain-vector-01.jpg"):  # one face; a drawing with none
        shutil.copy(media / name, root / name)
    store = head.work / "store"
    res = head.run_submit("preprocess", "--dataset", "media", "--root", str(root), "--out", str(store),
                          timeout=600)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    frames = pq.ParquetDataset(str(store / "frames")).read()
    rejects = pq.ParquetDataset(str(store / "rejects")).read()
    assert frames.num_rows + rejects.num_rows == 2
    assert frames.num_rows == 1 and rejects.num_rows == 1


def test_generated_serve_config_is_accepted_by_a_real_serve(head: Head) -> None:
    """`serve deploy` of the generated config on the token cluster: the controller builds
    workflows.serve.app:build_app with our args and starts our deployment, whose replica then reports
    the (deliberately) missing ensemble, proving the args reached it."""
    config = head.work / "serve_config.yaml"
    missing = head.work / "no-ensemble-here"
    gen = subprocess.run([sys.executable, "-m", "cluster.serve_config", "--ensemble", str(missing),
                          "--host", "127.0.0.1", "--port", str(_free_port()), "--max-replicas", "1",
                          "--out", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    env = head.client_env(RAY_AUTH_MODE="token")
    dep = subprocess.run([str(VENV_BIN / "serve"), "deploy", str(config), "-a", head.url], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert dep.returncode == 0, dep.stderr[-2000:]
    req = urllib.request.Request(f"{head.url}/api/serve/applications/",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        deadline = time.monotonic() + 180
        while True:
            with urllib.request.urlopen(req, timeout=10) as r:
                app = json.loads(r.read()).get("applications", {}).get("facsflow", {})
            if app.get("status") in ("DEPLOY_FAILED", "RUNNING") or time.monotonic() > deadline:
                break
            time.sleep(2)
        deployment = app.get("deployments", {}).get("AUService", {})
        assert app.get("status") == "DEPLOY_FAILED", app
        assert "ensemble manifest not found" in json.dumps(deployment), deployment
        assert str(missing) in json.dumps(deployment)
    finally:
        subprocess.run([str(VENV_BIN / "serve"), "shutdown", "-y", "-a", head.url], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)
