"""Integration fixtures: one embedded local Ray per session, one tiny synthetic feature store.

The store is generated from real photos in ../shared/media (several identities, so held-out
subjects are other people) and preprocessed with the real Ray Data workflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require_media

FACE_PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "single_face.jpg", "multi_face.jpg")


@pytest.fixture(scope="session")
def ray_local():
    """An embedded local Ray with 2 CPUs for the whole session."""
    import ray

    from workflows.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


def face_photos_dir(tmp: Path) -> Path:
    """A folder of symlinks to the media photos (several real identities)."""
    media = require_media(*FACE_PHOTOS)
    d = tmp / "faces"
    d.mkdir(parents=True, exist_ok=True)
    for name in FACE_PHOTOS:
        if not (d / name).exists():
            os.symlink(media / name, d / name)
    return d


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, ray_local) -> dict:
    """A small synthetic manifest dataset preprocessed into a feature store (session-wide)."""
    from components.datasets.synth import SynthConfig, generate
    from components.faces.pipeline import FacePipelineConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess

    root = tmp_path_factory.mktemp("tiny")
    data = root / "data"
    summary = generate(SynthConfig(out=str(data), layout="manifest", faces=str(face_photos_dir(root)), seed=0,
                                   subjects_per_identity=1, videos_per_subject=2, frames_per_video=32))
    store = root / "store"
    pre = run_preprocess(PreprocessConfig(dataset="manifest", root=str(data), out=str(store),
                                          face=FacePipelineConfig(), actor_cpus=0.5))
    return {"data": str(data), "store": str(store), "synth": summary, "preprocess": pre, "root": root}
