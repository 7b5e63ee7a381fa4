"""Video jobs over HTTP on the real Serve app (tests/e2e/conftest.py: 64-frame job segments):
a job answers at once and its progress moves; its result, as CSV and as Parquet, is what
``facsflow predict``'s Detector answers for the same video; a job whose runner replica is killed
mid-way completes with every frame once; a cancelled job stops writing parts."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import require_media
from tests.e2e.conftest import APP_ARGS

FRAMES = 192
"""Frames of the test clip (three job segments of 64 frames)."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WolfgangLanger_Pexels.mp4 looped (forwards, backwards) to FRAMES frames at 480x270."""
    from components.datasets.video_io import loop_video

    media = require_media("WolfgangLanger_Pexels.mp4")
    return loop_video(media / "WolfgangLanger_Pexels.mp4", tmp_path_factory.mktemp("jobs") / "clip.avi", FRAMES, 480)


@pytest.fixture(scope="module")
def expected(served, clip: Path) -> pd.DataFrame:
    """The rows ``facsflow predict`` writes for the clip (its Detector, the app's video faces)."""
    from components.au_detector import Detector

    return Detector.from_ensemble(served.ensemble, faces=APP_ARGS["video_faces"]).predict_video(clip)


def _wait(client, job_id: str, until, timeout: float = 300.0) -> list[dict]:
    """Statuses seen while polling ``job_id`` until ``until(status)`` (or a final state)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if until(seen[-1]) or seen[-1]["state"] in ("done", "failed", "cancelled"):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


def _result(client, job_id: str, fmt: str) -> pd.DataFrame:
    r = client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt})
    assert r.status_code == 200, r.text
    return pd.read_csv(io.BytesIO(r.content)) if fmt == "csv" else pd.read_parquet(io.BytesIO(r.content))


def _same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["frame"].tolist() == want["frame"].tolist()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False,
                                  atol=1e-6)


def test_job_answers_at_once_moves_and_gives_predicts_rows(client, clip: Path, expected: pd.DataFrame) -> None:
    t0 = time.monotonic()
    r = client.post("/v1/jobs", content=clip.read_bytes(), params={"name": "clip.avi"},
                    headers={"content-type": "video/x-msvideo"})
    assert r.status_code == 202, r.text
    assert time.monotonic() - t0 < 10  # the answer does not wait for the video
    job = r.json()
    assert job["state"] == "queued" and job["url"] == f"/v1/jobs/{job['id']}"
    seen = _wait(client, job["id"], lambda s: False)
    assert seen[-1]["state"] == "done", seen[-1]
    done = [s["frames_done"] for s in seen if s["state"] == "running"]
    assert len(set(done)) >= 2 and done == sorted(done), done  # progress moved, forwards
    assert any(s["fps"] and s["eta_s"] is not None for s in seen if s["state"] == "running")
    assert seen[-1]["frames_done"] == seen[-1]["frames_total"] == FRAMES
    assert expected["success"].sum() > FRAMES * 0.9  # the clip's face is found: rows carry answers
    _same_rows(_result(client, job["id"], "csv"), expected)
    _same_rows(_result(client, job["id"], "parquet"), expected)
    assert job["id"] in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]


def test_job_completes_with_every_frame_once_after_its_replica_is_killed(client, clip: Path,
                                                                         expected: pd.DataFrame) -> None:
    import ray

    r = client.post("/v1/jobs", json={"uri": str(clip)})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    seen = _wait(client, job_id, lambda s: s["state"] == "running" and s["segments"] >= 1)
    assert seen[-1]["state"] == "running", seen[-1]  # killed mid-job, not after it
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "VideoJobs" in a["name"]]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    final = _wait(client, job_id, lambda s: False)[-1]
    assert final["state"] == "done", final
    # Serve's new replica carried the job on from its first unfinished segment.
    assert final["runs"] == 2 and final["resumed_from"] >= 64, final
    got = _result(client, job_id, "parquet")
    assert got["frame"].tolist() == list(range(FRAMES))  # every frame once (one tracked face)
    _same_rows(got, expected)


def test_cancel_stops_the_job_and_its_parts(client, served, clip: Path) -> None:
    from components.datasets.video_io import loop_video

    long = loop_video(clip, clip.parent / "long.avi", 2000, 480)
    job_id = client.post("/v1/jobs", json={"uri": str(long)}).json()["id"]
    _wait(client, job_id, lambda s: s["state"] == "running" and s["segments"] >= 1)
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 202, r.text
    final = _wait(client, job_id, lambda s: False, timeout=60)[-1]
    assert final["state"] == "cancelled" and final["frames_done"] < 2000, final
    parts = Path(served.args["jobs_dir"]) / job_id / "parts"
    written = sorted(parts.iterdir())
    time.sleep(3)
    assert sorted(parts.iterdir()) == written  # no segment written after the cancel
    r = client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 409 and "cancelled" in r.json()["error"]


def test_job_errors_are_clear(client, tmp_path: Path) -> None:
    assert client.get("/v1/jobs/0123456789abcdef").status_code == 404
    assert "no job" in client.get("/v1/jobs/0123456789abcdef/result").json()["error"]
    assert client.delete("/v1/jobs/nope").status_code == 404
    r = client.post("/v1/jobs", json={"uri": str(tmp_path / "missing.mp4")})
    assert r.status_code == 400 and "missing.mp4" in r.json()["error"]
    assert client.post("/v1/jobs", json={"path": "x"}).status_code == 400
    assert client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("not a video")
    job_id = client.post("/v1/jobs", json={"uri": str(bad)}).json()["id"]
    final = _wait(client, job_id, lambda s: False, timeout=60)[-1]
    assert final["state"] == "failed" and "not_a_video.mp4" in final["error"], final
