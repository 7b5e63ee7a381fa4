"""One real Serve app for the serving and web-page tests: a local Ray on 2 CPUs, the app bound
to 127.0.0.1 on a free port, built from a small seeded ensemble (an image member with an
intensity head, a To-Sequence member that needs video). Started once for the e2e folder and torn
down after its last test (package scope): a Serve app left running would hold CPUs the
integration tests that follow wait for. Its layout is the default ('auto': fused here, no GPU);
tests/e2e/test_agreement.py runs the staged one."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.serving_fixtures import IMAGE_MEMBER, VIDEO_MEMBER, make_ensemble

APP_ARGS: dict[str, Any] = {
    # MTCNN finds all five faces of multi_face.jpg (dlib's HOG finds four).
    "image_faces": {"detector": "mtcnn", "policy": "all"},
    "video_faces": {"detector": "dlib", "policy": "tracked"},
    "limits": {"max_body_bytes": 2_000_000, "max_image_pixels": 4_000_000, "max_video_bytes": 3_000_000,
               "max_video_seconds": 10.0, "max_video_frames": 600},
    # One replica keeps the app's start short.
    "ingress": {"max_replicas": 1},
    # Video jobs: a Parquet part (and a resumable step) every member segment, so a short clip
    # has several (tests/e2e/test_jobs.py).
    "job_segment_frames": 64,
}
"""The test app's arguments: limits small enough to hit with real media."""


@dataclass
class ServedApp:
    url: str
    ensemble: Path
    other_ensemble: Path
    args: dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """The running app (torn down with Serve, and Ray if this fixture started it)."""
    import ray
    from ray import serve

    from workflows.core.runtime import init_ray
    from workflows.serve.app import _DEPLOYED, start

    root = tmp_path_factory.mktemp("serve")
    ensemble = make_ensemble(root / "ensemble-a")
    other = make_ensemble(root / "ensemble-b", [("img-b", IMAGE_MEMBER[1], IMAGE_MEMBER[2]),
                                                ("vid-b", VIDEO_MEMBER[1], VIDEO_MEMBER[2])],
                          weights=[0.4, 0.6], seed=7)
    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    try:
        url = start(str(ensemble), "127.0.0.1", free_port(), app={**APP_ARGS, "jobs_dir": str(root / "jobs")})
        yield ServedApp(url, ensemble, other, _DEPLOYED["facsflow"])
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()


@pytest.fixture(scope="package")
def client(served: ServedApp) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=served.url, timeout=300) as c:
        yield c
