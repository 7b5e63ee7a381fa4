"""The preprocess workflow on a real local Ray (2 CPUs): every input frame lands once, the store
opens in ordinary tools, reruns resume, and chunking and actor count do not change the rows."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import cv2
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from components.configuration import ConfigError, from_dict
from components.datasets.base import VideoUnit, build_adapter, sample_id
from components.faces.pipeline import FacePipeline, FacePipelineConfig
from components.store.rows import StoreConfig, process_unit
from components.store.schema import REJECT_REASONS, SCHEMA_VERSION, read_store_metadata
from tests.conftest import require_media
from workflows.preprocess import PreprocessConfig, main, run_preprocess, unit_stem
from workflows.core.runtime import UserError


BP4D_AUS = [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
# dlib at half resolution, a detection every 6th frame: the throughput setting of the benchmark.
FAST_FACE = FacePipelineConfig(detect_every=6, detect_scale=0.5)


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


def read_dir(path: Path) -> pa.Table:
    """Every Parquet file under ``path``, rows sorted by sample id."""
    return pads.dataset(str(path), format="parquet").to_table().sort_by("sample_id")


def input_ids(cfg: PreprocessConfig) -> tuple[list[str], list[str]]:
    """Sample ids of the input frames the adapter lists: (with pixels, without an image)."""
    units = build_adapter(cfg.dataset, cfg.root, **cfg.adapter_options).units()
    records = [(sample_id(u.dataset, u.subject, u.video, f.frame), f.source) for u in units for f in u.frames]
    return [i for i, src in records if src], [i for i, src in records if not src]


def assert_lands_once(cfg: PreprocessConfig, summary: dict, extra_rejects: int = 0) -> tuple[pa.Table, pa.Table]:
    frames, rejects = read_dir(Path(cfg.out) / "frames"), read_dir(Path(cfg.out) / "rejects")
    ids = frames.column("sample_id").to_pylist() + rejects.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)), "a sample id is stored twice"
    assert len(ids) == summary["frames_in"] + extra_rejects
    assert (summary["rows"], summary["rejects"]) == (frames.num_rows, rejects.num_rows)
    assert set(rejects.column("reason").to_pylist()) <= set(REJECT_REASONS)
    return frames, rejects


# --- the generator's dataset layouts -------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from components.datasets.synth.generator import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    for layout in ("bp4d", "disfa", "affwild2", "manifest"):
        generate(SynthConfig(out=str(root / layout), layout=layout, subjects_per_identity=2,
                             videos_per_subject=1, frames_per_video=12, frame_size=128,
                             max_identities=1, seed=3))
    return root


def synth_config(root: Path, layout: str, out: Path, face: FacePipelineConfig = FAST_FACE) -> PreprocessConfig:
    options = {} if layout == "manifest" else {"groups": str(root / layout / "synth_meta" / "videos.csv")}
    return PreprocessConfig(dataset=layout, root=str(root / layout), out=str(out), adapter_options=options,
                            face=face, actors=1, log_every_s=0)


@pytest.mark.parametrize("layout", ["disfa", "affwild2", "manifest"])
def test_every_generated_frame_lands_once(ray_2cpu, synth_root: Path, tmp_path: Path, layout: str) -> None:
    cfg = synth_config(synth_root, layout, tmp_path / "store")
    summary = run_preprocess(cfg)
    frames, rejects = assert_lands_once(cfg, summary)
    with_pixels, without = input_ids(cfg)
    assert summary["frames_in"] == len(with_pixels) + len(without) == 24  # 2 subjects x 1 video x 12
    # The generated faces are clear: every frame with pixels gives one face, the labelled frames
    # the generator left without an image (as ABAW does) are rejects "missing image".
    assert frames.column("sample_id").to_pylist() == sorted(with_pixels)
    assert rejects.column("sample_id").to_pylist() == sorted(without)
    assert set(rejects.column("reason").to_pylist()) <= {"missing image"}
    if layout == "affwild2":
        assert len(without) > 0
        assert set(frames.column("image_size").to_pylist()) == {112}


@pytest.fixture(scope="module")
def bp4d_store(ray_2cpu, synth_root: Path, tmp_path_factory) -> tuple[PreprocessConfig, dict]:
    cfg = synth_config(synth_root, "bp4d", tmp_path_factory.mktemp("bp4d") / "store")
    return cfg, run_preprocess(cfg)


def test_bp4d_store_has_metadata_and_opens_in_pyarrow_pandas_duckdb(bp4d_store) -> None:
    cfg, summary = bp4d_store
    frames, _ = assert_lands_once(cfg, summary)
    assert frames.num_rows == 24 and summary["units"] == 2
    out = Path(cfg.out)
    for path in sorted(out.glob("frames/**/*.parquet")) + sorted(out.glob("rejects/**/*.parquet")):
        meta = read_store_metadata(pq.read_schema(path))
        assert meta["schema_version"] == SCHEMA_VERSION
        assert list(meta["aus"]) == BP4D_AUS
        assert list(meta["diff_steps"]) == [1, 2, 4]
    # Labels travelled from the AU_OCC CSVs: one int8 per AU, 1/0/-1.
    labels = frames.column("labels").to_pylist()
    assert {len(x) for x in labels} == {12} and {v for x in labels for v in x} <= {-1, 0, 1}
    df = pd.read_parquet(out / "frames")
    assert len(df) == 24 and sorted(df["sample_id"]) == frames.column("sample_id").to_pylist()
    con = duckdb.connect()
    n, subjects = con.execute(
        f"SELECT count(*), count(DISTINCT subject) FROM read_parquet('{out}/frames/**/*.parquet')").fetchone()
    assert (n, subjects) == (24, 2)
    assert con.execute(f"SELECT count(*) FROM read_parquet('{out}/rejects/**/*.parquet')").fetchone() == (0,)


def _mtimes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.glob("**/*.parquet"))}


def test_rerun_skips_finished_units_and_no_resume_reprocesses(bp4d_store, caplog) -> None:
    cfg, _ = bp4d_store
    out = Path(cfg.out)
    before, stamps = read_dir(out / "frames"), _mtimes(out)
    again = run_preprocess(cfg)
    assert (again["units"], again["rows"], again["rejects"]) == (0, 0, 0)
    assert _mtimes(out) == stamps and read_dir(out / "frames").equals(before)
    # The CLI: --no-resume clears the store and processes every unit again, to the same rows.
    caplog.set_level(logging.INFO, logger="facsflow.preprocess")
    argv = ["--dataset", "bp4d", "--root", cfg.root, "--out", cfg.out, "--no-resume",
            "--set", f"adapter_options.groups={cfg.adapter_options['groups']}",
            "--set", "face.detect_scale=0.5", "--set", "actors=1", "--set", "log_every_s=0"]
    assert main(argv) == 0
    stamps_after = _mtimes(out)
    assert set(stamps_after) == set(stamps) and all(stamps_after[k] > stamps[k] for k in stamps)
    assert read_dir(out / "frames").equals(before)
    progress = [r.getMessage() for r in caplog.records if "units," in r.getMessage()]
    assert any(m.startswith("preprocess: 2/2 units, 24/24 frames") for m in progress), progress
    # Other face settings on the same store would mix two kinds of rows: refused.
    with pytest.raises(UserError, match="--no-resume"):
        run_preprocess(synth_config(Path(cfg.root).parent, "bp4d", out,
                                    face=FacePipelineConfig(detect_every=3, detect_scale=0.5)))


# --- real media with broken files ------------------------------------------------------------------

def broken_media(tmp: Path) -> Path:
    media = require_media("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg",
                          "free-mountain-vector-01.jpg", "single_face.mp4", "no_face.mp4")
    root = tmp / "media"
    root.mkdir()
    for name in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "no_face.mp4"):
        os.symlink(media / name, root / name)
    shutil.copy(media / "free-mountain-vector-01.jpg", root / "drawing.jpg")
    (root / "zero.jpg").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    # A 40-frame MJPG AVI cut in half: its header promises frames that no longer decode.
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    writer = cv2.VideoWriter(str(tmp / "full.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(40):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    data = (tmp / "full.avi").read_bytes()
    (root / "truncated.avi").write_bytes(data[: len(data) // 2])
    # An mp4 cut in half loses its index: no frame can be listed, it is one reject of its own.
    mp4 = (media / "single_face.mp4").read_bytes()
    (root / "unopenable.mp4").write_bytes(mp4[: len(mp4) // 2])
    return root


def test_broken_media_each_end_in_rejects_with_a_reason(ray_2cpu, tmp_path: Path) -> None:
    cfg = PreprocessConfig(dataset="media", root=str(broken_media(tmp_path)), out=str(tmp_path / "store"),
                           face=FAST_FACE, log_every_s=0)
    summary = run_preprocess(cfg)
    frames, rejects = assert_lands_once(cfg, summary, extra_rejects=1)  # + the unopenable video
    assert (Path(cfg.out) / "store.json").is_file()  # the job finished
    by_file: dict[str, list[dict]] = {}
    for r in rejects.to_pylist():
        by_file.setdefault(Path(r["source"]).name, []).append(r)
    rows = frames.to_pylist()
    for photo in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"):
        assert [Path(r["source"]).name for r in rows].count(photo) == 1
    assert [r["reason"] for r in by_file["drawing.jpg"]] == ["no face"]
    assert [r["reason"] for r in by_file["zero.jpg"]] == ["unreadable"]
    assert "0 bytes" in by_file["zero.jpg"][0]["detail"]
    assert [r["reason"] for r in by_file["corrupt.jpg"]] == ["unreadable"]
    assert [r["reason"] for r in by_file["unopenable.mp4"]] == ["unreadable"]
    # no_face.mp4's header promises 98 frames, 95 decode: those are "no face", the rest unreadable.
    no_face = sorted(by_file["no_face.mp4"], key=lambda r: r["frame"])
    assert [r["frame"] for r in no_face] == list(range(98))
    assert {r["reason"] for r in no_face[:95]} == {"no face"}
    assert {r["reason"] for r in no_face[95:]} == {"unreadable"}
    assert not [r for r in rows if r["video"] == "no_face.mp4"]
    kept = [r for r in rows if r["video"] == "truncated.avi"]
    cut = by_file["truncated.avi"]
    assert 10 < len(kept) < 40 and len(kept) + len(cut) == 40
    assert {r["reason"] for r in cut} == {"unreadable"}
    assert max(r["frame"] for r in kept) < min(r["frame"] for r in cut)  # the end was cut off


def test_same_stem_inputs_each_land_once_and_counts_come_from_the_store(ray_2cpu, tmp_path: Path, capsys) -> None:
    # 2026-12-03: face.jpg and face.png shared the video id 'face'; the run reported 3 rows for
    # 3 files and the store held 2. Same stems with other extensions and in other folders.
    media = require_media("single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "single_face.mp4")
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    shutil.copy(media / "single_face.jpg", root / "face.jpg")
    cv2.imwrite(str(root / "face.png"), cv2.imread(str(media / "0-f1-su-ph.jpg")))
    shutil.copy(media / "15-f13-anc-ph.jpg", root / "sub" / "face.jpg")
    shutil.copy(media / "0-f1-su-ph.jpg", root / "clip.jpg")
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    out = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                          (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    for _ in range(6):
        out.write(cap.read()[1])
    out.release()
    cap.release()
    store = tmp_path / "store"
    argv = ["--dataset", "media", "--root", str(root), "--out", str(store), "--set", "actors=1",
            "--set", "log_every_s=0", "--set", "face.detect_every=6", "--set", "face.detect_scale=0.5"]
    assert main(argv) == 0
    frames, rejects = read_dir(store / "frames"), read_dir(store / "rejects")
    inputs = {"face.jpg", "face.png", "sub/face.jpg", "clip.jpg", "clip.mp4"}
    sources = frames.column("source").to_pylist() + rejects.column("source").to_pylist()
    landed = [str(Path(p).relative_to(root)) for p in sources]
    assert set(landed) == inputs
    assert len(frames.column("sample_id").to_pylist() + rejects.column("sample_id").to_pylist()) == 4 + 6
    assert sorted(set(frames.column("video").to_pylist() + rejects.column("video").to_pylist())) == [
        "clip.jpg", "clip.mp4", "face.jpg", "face.png", "sub/face.jpg"]
    printed = capsys.readouterr().out
    assert f"({frames.num_rows} rows)" in printed and f"({rejects.num_rows} rejects)" in printed
    assert "10 input frames" in printed


# --- chunking ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    media = require_media("single_face.mp4")
    root = tmp_path_factory.mktemp("video") / "media"
    root.mkdir()
    os.symlink(media / "single_face.mp4", root / "single_face.mp4")
    return root


def video_config(root: Path, out: Path, actors: int) -> PreprocessConfig:
    return PreprocessConfig(dataset="media", root=str(root), out=str(out), face=FAST_FACE, actors=actors,
                            store=StoreConfig(chunk_frames=24, chunk_overlap=12), log_every_s=0)


def test_chunked_video_equals_whole_video_on_any_number_of_actors(ray_2cpu, video_root: Path, tmp_path: Path) -> None:
    cfg = video_config(video_root, tmp_path / "one", 1)
    # The reference: the whole video in one piece, sequentially, without Ray.
    unit = next(iter(build_adapter("media", video_root).units()))
    whole = process_unit(unit, FacePipeline(FAST_FACE), cfg.store).frames.sort_by("sample_id")
    assert whole.num_rows == 72
    assert whole.column("sample_id").to_pylist() == [f"media/./single_face.mp4/{i:06d}" for i in range(72)]
    one = run_preprocess(cfg)
    two = run_preprocess(video_config(video_root, tmp_path / "two", 2))
    assert (one["units"], two["units"], one["rejects"], two["rejects"]) == (3, 3, 0, 0)
    for name in ("one", "two"):
        got = read_dir(tmp_path / name / "frames")
        assert len(list((tmp_path / name / "frames").glob("**/*.parquet"))) == 3
        for col in ("sample_id", "landmarks", "landmark_diff", "diff_valid", "image", "tracked", "det_score"):
            assert got.column(col).equals(whole.column(col)), f"{name}: {col} differs from the whole video"


def test_chunk_overlap_shorter_than_tracker_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match=r"chunk_overlap=8 .* >= face.detect_every \+ max\(store.diff_steps\) - 1 = 9"):
        PreprocessConfig(store=StoreConfig(chunk_frames=100, chunk_overlap=8))
    with pytest.raises(ConfigError, match="chunk_overlap"):
        from_dict(PreprocessConfig, {"face": {"detect_every": 10}, "store": {"chunk_frames": 50}})
    assert PreprocessConfig(store=StoreConfig(chunk_frames=100, chunk_overlap=9)).store.chunk_overlap == 9
    assert PreprocessConfig(store=StoreConfig(chunk_frames=0, chunk_overlap=0)).store.chunk_frames == 0


def test_store_file_names_are_distinct_and_visible_to_readers() -> None:
    def stem(subject: str, video: str = "v") -> str:
        return unit_stem(VideoUnit("media", subject, video, (), []))

    assert stem("F001", "T1") == "media/F001/T1"
    # Sanitised names carry a hash of the original, so "a/b" and "a_b" never share files, and
    # no part starts with "." or "_" (pyarrow and Ray skip those as hidden).
    assert stem("a_b") == "media/a_b/v" and stem("a/b").startswith("media/a_b~")
    assert stem(".").startswith("media/root~") and stem("_x").startswith("media/x~")
    assert len({stem(s) for s in ("a/b", "a_b", "a b", ".", "..", "_x", "x")}) == 7
