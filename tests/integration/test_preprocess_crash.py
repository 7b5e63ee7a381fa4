"""A preprocessing actor SIGKILLed in the middle of a unit (after the unit's Parquet files are
written, before its completion marker) in a separate `python -m workflows.preprocess` run with
its own Ray: without retries the run fails and a rerun resumes; with retries the run itself
recovers. Either way the store ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from components.faces.pipeline import FacePipelineConfig
from components.store.rows import StoreConfig
from tests.conftest import ROOT, require_media
from workflows.preprocess import FAULT_ENV, PreprocessConfig, run_preprocess


# single_face.mp4 (72 frames) in 6 chunks of 12: the killed chunk is the 4th.
CHUNK, OVERLAP = 12, 12
KILLED = "media/root~3a52ce78/single_face.mp4.c0003"  # the top-level subject "." hashed into a name
SETTINGS = ["--set", "face.detect_scale=0.5", "--set", f"store.chunk_frames={CHUNK}",
            "--set", f"store.chunk_overlap={OVERLAP}", "--set", "actors=2", "--set", "log_every_s=0"]


@pytest.fixture(scope="module")
def ray_2cpu():
    """One embedded local Ray with 2 CPUs for this module (left running if someone else started it)."""
    import ray

    from workflows.core.runtime import init_ray

    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    media = require_media("single_face.mp4")
    root = tmp_path_factory.mktemp("crash") / "media"
    root.mkdir()
    os.symlink(media / "single_face.mp4", root / "single_face.mp4")
    return root


def config(root: Path, out: Path) -> PreprocessConfig:
    return PreprocessConfig(dataset="media", root=str(root), out=str(out), actors=2, log_every_s=0,
                            face=FacePipelineConfig(detect_scale=0.5),
                            store=StoreConfig(chunk_frames=CHUNK, chunk_overlap=OVERLAP))


@pytest.fixture(scope="module")
def reference(ray_2cpu, video_root: Path, tmp_path_factory) -> tuple[pa.Table, pa.Table]:
    out = tmp_path_factory.mktemp("reference") / "store"
    summary = run_preprocess(config(video_root, out))
    assert summary["units"] == 6
    return read_dir(out / "frames"), read_dir(out / "rejects")


def read_dir(path: Path) -> pa.Table:
    return pads.dataset(str(path), format="parquet").to_table().sort_by("sample_id")


def run_cli(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`python -m workflows.preprocess` with its own embedded Ray and the fault armed."""
    env = {**os.environ, FAULT_ENV: KILLED, "RAY_ADDRESS": "", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    cmd = [sys.executable, "-m", "workflows.preprocess", "--dataset", "media", "--root", str(root),
           "--out", str(out), *SETTINGS, *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def markers(out: Path) -> set[str]:
    return {str(p.relative_to(out / "_markers"))[: -len(".json")] for p in (out / "_markers").glob("**/*.json")}


def test_killed_actor_without_retries_fails_the_run_and_a_rerun_completes_it(
        reference, video_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    proc = run_cli(video_root, out, "--set", "unit_retries=0")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "did not finish" in proc.stderr and KILLED in proc.stderr
    assert (out / "_fault" / f"{KILLED}.fired").is_file()
    # The crash left the killed unit's files written but unmarked, and no store.json.
    assert (out / "frames" / f"{KILLED}.parquet").is_file()
    assert list((out / "frames").rglob(".tmp-*")), "the killed actor left no torn temp file"
    done = markers(out)
    assert KILLED not in done and 0 < len(done) < 6
    assert not (out / "store.json").exists()

    kept = {stem: (out / "frames" / f"{stem}.parquet").stat().st_mtime_ns for stem in done}
    summary = run_preprocess(config(video_root, out))
    assert summary["units"] == 6 - len(done)
    assert {stem: (out / "frames" / f"{stem}.parquet").stat().st_mtime_ns for stem in done} == kept
    # The killed unit (and any other unit queued on the dead actor) were redone, nothing else.
    assert KILLED in markers(out) and len(markers(out)) == 6 and (out / "store.json").is_file()
    assert not list(out.rglob(".tmp-*"))  # the rerun removed the torn write
    frames, rejects = reference
    assert read_dir(out / "frames").equals(frames) and read_dir(out / "rejects").equals(rejects)


def test_killed_actor_is_restarted_and_its_unit_retried_within_the_run(
        reference, video_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    proc = run_cli(video_root, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "_fault" / f"{KILLED}.fired").is_file()  # the actor really was killed
    assert len(markers(out)) == 6
    assert json.loads((out / "store.json").read_text())["units"] == 6
    # The killed actor's torn temp file, written while the run went on, was removed at its end:
    # a plain glob over frames/ finds only whole files.
    assert not list(out.rglob(".tmp-*"))
    frames, rejects = reference
    assert read_dir(out / "frames").equals(frames) and read_dir(out / "rejects").equals(rejects)
