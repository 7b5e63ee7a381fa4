"""Integration fixtures: an embedded local Ray per test module, one tiny synthetic feature store.

The store is generated from real photos in ../shared/media (several identities, so held-out
subjects are other people) and preprocessed with the real Ray Data workflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require_media
from workflows.demo import DEMO_FACE_PHOTOS, link_face_photos


@pytest.fixture(scope="module")
def ray_local():
    """An embedded local Ray with 2 CPUs, all free, for one test module.

    Module scope, and a fresh instance: a Ray that an earlier module left running (a Serve app,
    a Tune run's placement groups) may hold CPUs that these workflows then wait for forever, and
    a module that needs another size (test_tune's 4 logical CPUs) must not inherit this one."""
    import ray

    from workflows.core.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if ray.is_initialized():
        ray.shutdown()
    init_ray(num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    free = ray.available_resources().get("CPU", 0.0)
    assert free >= 2.0, f"the fresh local Ray has only {free} of 2 CPUs free"
    yield ray
    ray.shutdown()


def face_photos_dir(tmp: Path) -> Path:
    """A folder of symlinks to the media photos (several real identities)."""
    return link_face_photos(require_media(*DEMO_FACE_PHOTOS), tmp)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, ray_local) -> dict:
    """A small synthetic manifest dataset preprocessed into a feature store (per module)."""
    from components.datasets.synth.generator import SynthConfig, generate
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
