"""`facsflow label` on a real local Ray with the real built-in teacher: a small store of
../shared/media (single_face.mp4 in 3 chunks, a happy and a surprised photo, a drawing without a
face) preprocessed with the built-in's face pipeline (RetinaFace + MediaPipe) gets one labels row
per frames row, probabilities in [0, 1] equal to what the built-in answers on the photos, the
drawing counted as a frame without a face; a rerun labels nothing; a run killed after some units
resumes and labels every row exactly once; another teacher replaces the labels only when asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from components.faces.pipeline import FacePipelineConfig
from components.store.rows import StoreConfig
from tests.conftest import ROOT, require_media
from workflows.label import FAULT_ENV, LabelConfig, resolve_teacher, run_label
from workflows.preprocess import PreprocessConfig, run_preprocess
from workflows.core.runtime import UserError

PHOTOS = {"0-f15-hao-ph.jpg": "happy", "0-f1-su-ph.jpg": "surprise"}
FILES = ["single_face.mp4", "free-mountain-vector-01.jpg", *PHOTOS]
KILLED = "media/root~3a52ce78/single_face.mp4.c0001"  # the second of single_face.mp4's 3 chunks
LABEL_STATE = ("labels", "_label_markers", "_label_run.json", "labels.json", "_fault")


@pytest.fixture(scope="module")
def media_store(ray_local, tmp_path_factory) -> Path:
    """The store every test copies: 6 units (3 chunks of 24 frames, 3 stills), built-in faces."""
    media = require_media(*FILES)
    root = tmp_path_factory.mktemp("label") / "media"
    root.mkdir()
    for name in FILES:
        os.symlink(media / name, root / name)
    out = root.parent / "store"
    run_preprocess(PreprocessConfig(dataset="media", root=str(root), out=str(out), actors=2, actor_cpus=1.0,
                                    face=FacePipelineConfig(detector="retinaface", landmarker="mediapipe"),
                                    store=StoreConfig(chunk_frames=24, chunk_overlap=12)))
    return out


@pytest.fixture
def store(media_store: Path, tmp_path: Path) -> Path:
    """A fresh unlabelled copy of the store for one test."""
    out = tmp_path / "store"
    shutil.copytree(media_store, out, ignore=shutil.ignore_patterns(*LABEL_STATE))
    return out


def read_dir(path: Path) -> dict[str, list]:
    return pads.dataset(str(path), format="parquet").to_table().to_pydict()


def labels_by_row(store: Path) -> dict[str, np.ndarray]:
    """sample_id → soft labels, asserting each frames row has exactly one labels row."""
    labels, frames = read_dir(store / "labels"), read_dir(store / "frames")
    counts = Counter(labels["sample_id"])
    assert set(counts) == set(frames["sample_id"]) and set(counts.values()) == {1}, counts
    return {s: np.asarray(v, np.float32) for s, v in zip(labels["sample_id"], labels["soft_labels"])}


def markers(store: Path) -> set[str]:
    d = store / "_label_markers"
    return {str(p.relative_to(d))[: -len(".json")] for p in d.glob("**/*.json")}


def test_builtin_teacher_labels_rows_with_faces_and_counts_frames_without(store: Path) -> None:
    from components.au_detector import Detector
    from components.builtin import BUILTIN_AUS

    summary = run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    frames = read_dir(store / "frames")
    n = len(frames["sample_id"])
    assert n == 74 and summary["units"] == summary["units_total"] == 6  # 3 chunks, 3 stills (the drawing: no rows)
    assert (summary["rows"], summary["store_rows"], summary["labelled"], summary["unknown"]) == (n, n, n, 0)
    # The drawing: no face, a reject of preprocessing, no row to label.
    assert summary["no_face_frames"] == len(read_dir(store / "rejects")["sample_id"]) == 1
    soft = labels_by_row(store)
    values = np.stack(list(soft.values()))
    assert values.shape == (n, len(BUILTIN_AUS)) and np.isfinite(values).all()
    assert (values >= 0).all() and (values <= 1).all() and values.max() > 0.5
    sources = set(read_dir(store / "labels")["label_source"])
    assert sources == {summary["teacher"]} == {resolve_teacher("builtin").source}
    assert summary["teacher"].startswith("teacher:builtin@")
    done = json.loads((store / "labels.json").read_text())
    assert (done["aus"], done["rows"], done["no_face_frames"]) == (list(BUILTIN_AUS), n, 1)
    # The teacher's decision thresholds, recorded beside its labels (evaluation and validation read them).
    from components.builtin import builtin_ensemble_dir
    from components.ensemble import EnsembleManifest
    from components.inference import thresholds_of

    assert done["thresholds"] == thresholds_of(EnsembleManifest.load(builtin_ensemble_dir())).tolist()
    # The labels of a photo's row are what the built-in answers on that photo (same face pipeline).
    detector = Detector.pretrained()
    for name, expression in PHOTOS.items():
        rgb = cv2.cvtColor(cv2.imread(str(require_media(name) / name)), cv2.COLOR_BGR2RGB)
        answer = detector.predictor.predict_image(rgb)[0]["probs"]
        row = soft[f"media/./{name}/000000"]
        np.testing.assert_allclose(row, [answer[f"AU{a}"] for a in BUILTIN_AUS], atol=1e-6)
        top = {BUILTIN_AUS[i] for i in np.argsort(-row)[:3]}
        # Happiness: AU12 among the three highest; surprise: the three highest are all the
        # prototype's (1+2+5+26, lips parting 25: EMFACS).
        assert (12 in top) if expression == "happy" else top <= {1, 2, 5, 25, 26}, (name, top)


def test_video_rows_are_answered_with_their_faces_neutral_over_the_whole_video(store: Path) -> None:
    """The built-in's blendshape member subtracts each face's running neutral, which serving
    computes over the whole track. single_face.mp4's rows sit in 3 chunk files of 24 frames and
    the teacher and evaluation answer them a chunk and 64 rows at a time, yet every row gets what
    the built-in answers for the whole video at once: preprocessing stored each row's neutral over
    every earlier frame of the video (``neutral/``), and both readers join it."""
    from components.builtin import builtin_ensemble_dir
    from components.predictor import Predictor
    from components.store.splits import frames_files
    from workflows.core.store_scoring import predict_store_files

    frames = read_dir(store / "frames")
    video = sorted((i for i, v in enumerate(frames["video"]) if v == "single_face.mp4"),
                   key=lambda i: frames["frame_order"][i])
    assert len(video) == 72 and {p.name for p in (store / "neutral").glob("**/single_face.mp4.c*.parquet")} == {
        f"single_face.mp4.c{k:04d}.parquet" for k in range(3)}
    rows = {k: [frames[k][i] for i in video] for k in frames}
    predictor = Predictor.from_manifest(builtin_ensemble_dir())
    whole = predictor.predict_store_rows(rows, [])["probs"]
    run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    soft = labels_by_row(store)
    np.testing.assert_allclose(np.stack([soft[s] for s in rows["sample_id"]]), whole, atol=1e-5)
    pred = predict_store_files(frames_files(str(store)), builtin_ensemble_dir(), "manifest", [])
    at = {s: i for i, s in enumerate(pred["sample_id"])}
    np.testing.assert_allclose(pred["probs"][[at[s] for s in rows["sample_id"]]], whole, atol=1e-5)
    # What a reader restarting at the third chunk would have answered (its neutral from its own
    # 24 frames): another answer on this video, so the equalities above say something.
    third = {k: v[48:] for k, v in rows.items()}
    restarted = predictor.predict_store_rows(third, [])["probs"]
    assert np.abs(restarted - whole[48:]).max() > 0.05


def test_preprocess_run_again_on_a_store_without_neutral_tables_writes_only_them(
        media_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store written before the neutral tables existed: the same preprocess command, run
    again, processes no unit and writes the tables (what docs/measurements.md tells users).
    Here in Ray tasks (a large store's way), the fixture's in the driver (a small one's): the
    same tables."""
    from workflows.core import preprocessing

    monkeypatch.setattr(preprocessing, "IN_DRIVER_VIDEOS", 0)
    out = tmp_path / "store"
    shutil.copytree(media_store, out, ignore=shutil.ignore_patterns(*LABEL_STATE, "neutral"))
    before = {p: p.stat().st_mtime_ns for p in (out / "frames").glob("**/*.parquet")}
    summary = run_preprocess(PreprocessConfig(
        dataset="media", root=str(media_store.parent / "media"), out=str(out), actors=2, actor_cpus=1.0,
        face=FacePipelineConfig(detector="retinaface", landmarker="mediapipe"),
        store=StoreConfig(chunk_frames=24, chunk_overlap=12)))
    assert summary["units"] == 0 and summary["neutral_videos"] == 4  # the video and 3 stills (the drawing: an empty table)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    tables = {str(p.relative_to(out / "neutral")) for p in (out / "neutral").glob("**/*.parquet")}
    assert tables == {str(p.relative_to(out / "frames")) for p in before}
    for p in (out / "neutral").glob("**/*.parquet"):
        original = media_store / "neutral" / p.relative_to(out / "neutral")
        assert pq.read_table(p).equals(pq.read_table(original)), p


def test_readers_of_a_store_without_neutral_tables_say_so_when_a_member_needs_them(
        media_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store written before the neutral tables existed: the teacher, and evaluation's and
    ensembling's scoring of a member that subtracts the neutral, warn and say how to add them; a
    member that does not read blendshapes is scored without a word."""
    import logging

    from components.builtin import builtin_ensemble_dir
    from components.ensemble import EnsembleManifest
    from components.models.registry import build_model
    from components.store.neutral import reads_neutral
    from components.store.splits import frames_files
    from workflows.core.store_scoring import predict_store_files

    out = tmp_path / "store"
    shutil.copytree(media_store, out, ignore=shutil.ignore_patterns(*LABEL_STATE, "neutral"))
    caplog.set_level(logging.WARNING, logger="facsflow")
    run_label(LabelConfig(teacher="builtin", data=str(out), log_every_s=0))
    builtin = EnsembleManifest.load(builtin_ensemble_dir())
    needs = any(reads_neutral(m.input_spec) for m in builtin.members)
    predict_store_files(frames_files(str(out)), builtin_ensemble_dir(), "manifest", [], reads_neutral=needs)
    said = [r.getMessage() for r in caplog.records if "no neutral/ tables" in r.getMessage()]
    assert needs and len(said) == 2, said
    assert all(str(out) in m and "run the same `facsflow preprocess` again" in m for m in said)
    assert "restarts at every chunk" in said[0] and "builtin" in said[1] and "64-row batch" in said[1]
    assert not reads_neutral(build_model("baseline_resnet18_112", [1, 2]).input_spec().to_dict())


def test_a_second_run_labels_nothing_new(store: Path) -> None:
    first = run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    stamps = {p: p.stat().st_mtime_ns for p in (store / "labels").glob("**/*.parquet")}
    second = run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    assert first["units"] == 6 and (second["units"], second["rows"]) == (0, 0)
    assert second["store_rows"] == first["store_rows"] == 74
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    soft = labels_by_row(store)
    # The labels reach training's batches: the store's AU list is now the teacher's, and with
    # label_sources 'teacher' alone every row's labels are its soft labels (the rows have none).
    from components.builtin import BUILTIN_AUS
    from components.models.base import InputSpec
    from components.store.splits import frames_files, store_info, subject_label_counts
    from workflows.core.store_reader import transformed_dataset

    # The rows' own labels: none (empty lists), counted as no AU columns, not an error.
    assert {s: c.shape for s, c in subject_label_counts(str(store)).items()} == {".": (2, 0)}

    info = store_info(str(store))
    assert (info["aus"], info["aus_from"]) == (list(BUILTIN_AUS), "labels")
    files = frames_files(str(store))
    join = {"frames": str(store / "frames"), "labels": str(store / "labels"), "source": "soft_labels",
            "column": "soft_labels", "decide": None}
    ds = transformed_dataset(files, info, InputSpec(image_size=32), 0.5, joins=[join], human_labels=False)
    got = ds.take_all()
    assert len(got) == 74
    np.testing.assert_allclose(np.sort(np.stack([r["labels"] for r in got]), 0),
                               np.sort(np.stack(list(soft.values())), 0), atol=1e-7)

    # A student's validation on this store: no labels of its own, so the teacher's decisions
    # (soft label >= the teacher's threshold) when it trains on the teacher's labels; else an error.
    from types import SimpleNamespace

    from components.store.splits import teacher_decision_labels
    from workflows.train import TrainConfig, validation_labels

    thr = np.asarray(json.loads((store / "labels.json").read_text())["thresholds"])
    decisions = teacher_decision_labels(str(store), files, info["aus"])
    assert decisions == {s: (v >= thr).astype(int).tolist() for s, v in soft.items()}
    assert 0 < sum(map(sum, decisions.values())) < len(decisions) * len(thr)
    counts, fold = subject_label_counts(str(store)), SimpleNamespace(val=["."], fold=1)
    assert validation_labels(counts, fold, TrainConfig(data=str(store), label_sources=("teacher",))) == "teacher"
    with pytest.raises(UserError, match="have no labels of their own.*--label-sources teacher"):
        validation_labels(counts, fold, TrainConfig(data=str(store)))


def test_a_killed_run_resumes_and_labels_each_row_exactly_once(store: Path, tmp_path: Path) -> None:
    env = {**os.environ, FAULT_ENV: KILLED, "RAY_ADDRESS": "", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    cmd = [sys.executable, "-m", "workflows.label", "--teacher", "builtin", "--data", str(store),
           "--set", "unit_retries=0", "--set", "actors=1", "--set", "log_every_s=0"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "were not labelled" in proc.stderr and KILLED in proc.stderr
    assert (store / "_fault" / "label" / f"{KILLED}.fired").is_file()  # the actor really was killed
    # Its labels file was written before it died, its marker was not; the run did not finish.
    assert (store / "labels" / f"{KILLED}.parquet").is_file()
    assert list((store / "labels").rglob(".tmp-*")), "the killed labeller left no torn temp file"
    done = markers(store)
    assert KILLED not in done and 0 < len(done) < 6 and not (store / "labels.json").exists()
    kept = {s: (store / "labels" / f"{s}.parquet").stat().st_mtime_ns for s in done}

    summary = run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    assert summary["units"] == 6 - len(done) and summary["store_rows"] == 74
    assert {s: (store / "labels" / f"{s}.parquet").stat().st_mtime_ns for s in done} == kept
    assert len(markers(store)) == 6 and (store / "labels.json").is_file()
    assert not list(store.rglob(".tmp-*"))  # the rerun removed the torn write
    soft = labels_by_row(store)  # every row exactly once
    assert all(np.isfinite(v).all() for v in soft.values())


def test_another_teacher_replaces_the_labels_only_with_no_resume(store: Path, tmp_path: Path) -> None:
    """An ensemble folder as teacher (a blendshape_calibrated member answering 3 AUs, at its
    initial weights: the mapped score, like the built-in's)."""
    from components.builtin import BUILTIN_AUS

    teacher = write_ensemble(tmp_path / "teacher3", [1, 6, 12])
    run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    builtin = labels_by_row(store)
    with pytest.raises(UserError, match="--no-resume"):
        run_label(LabelConfig(teacher=str(teacher), data=str(store), log_every_s=0))
    summary = run_label(LabelConfig(teacher=str(teacher), data=str(store), resume=False, log_every_s=0))
    assert summary["teacher"].startswith("teacher:teacher3@") and summary["aus"] == [1, 6, 12]
    assert set(read_dir(store / "labels")["label_source"]) == {summary["teacher"]}
    soft = labels_by_row(store)
    cols = [BUILTIN_AUS.index(a) for a in (1, 6, 12)]
    for key, row in soft.items():
        np.testing.assert_allclose(row, builtin[key][cols], atol=1e-6)


def write_ensemble(directory: Path, aus: list[int]) -> Path:
    """An ensemble folder of one untrained ``blendshape_calibrated`` member (ensemble.json)."""
    from components.checkpoint import make_checkpoint, save_checkpoint
    from components.ensemble import EnsembleManifest, Member
    from components.models.registry import build_model

    model = build_model("blendshape_calibrated", aus)
    preprocess = {"image_size": 112, "diff_steps": []}
    ckpt = make_checkpoint(model, "blendshape_calibrated", epoch=0, preprocess=preprocess, provenance={},
                           train_config={}, thresholds=[0.5] * len(aus))
    path = save_checkpoint(ckpt, directory / "member")
    member = Member(name="calibrated", checkpoint=path, model_name="blendshape_calibrated",
                    input_spec=model.input_spec().to_dict(), preprocess=preprocess, thresholds=[0.5] * len(aus))
    EnsembleManifest(aus=aus, members=[member]).save(str(directory))
    return directory


def test_a_students_reference_labels_are_the_teachers_decisions_on_a_store_without_labels(store: Path) -> None:
    """What `facsflow ensemble` (and validation) score a student of unlabeled video against: the
    store's rows, predicted through the real store reader, get the teacher's decisions at its
    recorded thresholds; the rows' own labels are all unknown (a media store has none)."""
    from components.builtin import BUILTIN_AUS, builtin_ensemble_dir
    from components.metrics.agreement import teacher_decisions
    from components.store.splits import frames_files
    from workflows.core.store_scoring import predict_store_files, reference_labels

    run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0))
    files = frames_files(str(store))
    aus = list(BUILTIN_AUS)
    pred = predict_store_files(files, builtin_ensemble_dir(), "manifest", [])
    own = reference_labels(pred, str(store), files, aus, "own")
    assert own.shape == (74, len(aus)) and (own == -1).all()
    taught = reference_labels(pred, str(store), files, aus, "teacher")
    soft = labels_by_row(store)
    thresholds = json.loads((store / "labels.json").read_text())["thresholds"]
    expected = teacher_decisions(np.stack([soft[str(s)] for s in pred["sample_id"]]), thresholds)
    np.testing.assert_array_equal(taught, expected)
    assert 0 < (taught == 1).sum() < taught.size  # some AUs on, most off: decisions, not a constant


def test_max_subjects_labels_a_sample_and_training_counts_the_rows_left_without(store: Path) -> None:
    """A store too large to label whole: ``max_subjects`` labels the units of that many subjects
    (a sample fixed by their names), labels.json says so, and the rows of the other subjects are
    counted as having no teacher label (what training logs, ``label_coverage``)."""
    from components.store.splits import frames_files, label_coverage

    # A second subject: one chunk of single_face.mp4 moved under another subject folder.
    moved = store / "frames" / "media" / "other" / "single_face.mp4.c0002.parquet"
    moved.parent.mkdir(parents=True)
    (store / "frames" / f"{KILLED[:-len('.c0001')]}.c0002.parquet").rename(moved)
    summary = run_label(LabelConfig(teacher="builtin", data=str(store), log_every_s=0, max_subjects=1))
    labelled = {str(p.relative_to(store / "labels")) for p in (store / "labels").glob("**/*.parquet")}
    subjects = {p.split("/")[1] for p in labelled}
    assert len(subjects) == 1 and summary["units"] == len(labelled) in (1, 5)
    done = json.loads((store / "labels.json").read_text())
    assert done["max_subjects"] == 1 and done["rows"] == summary["store_rows"] < 74
    missing, total = label_coverage(frames_files(str(store)), str(store / "frames"), str(store / "labels"))
    assert (missing, total) == (74 - done["rows"], 74)
