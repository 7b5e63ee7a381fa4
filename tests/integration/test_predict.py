"""``facsflow predict`` on real media on a local Ray: CSVs pandas reads, one row per frame, the
documented columns, success = 0 where there is no face, and one Parquet dataset of everything."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_media
from tests.serving_fixtures import AUS, make_ensemble



@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run over a folder (a video, a group photo, a broken file) and a manifest (a faceless
    video, a drawing)."""
    media = require_media("single_face.mp4", "multi_face.jpg", "no_face.mp4", "free-mountain-vector-01.jpg")
    from workflows import predict
    from workflows.predict import main
    from workflows.core.runtime import init_ray

    import ray

    tmp = tmp_path_factory.mktemp("predict")
    ensemble = make_ensemble(tmp / "ensemble")
    folder = tmp / "inputs"
    folder.mkdir()
    for name in ("single_face.mp4", "multi_face.jpg"):
        os.symlink(media / name, folder / name)
    (folder / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 500)
    listing = tmp / "more.txt"
    listing.write_text(f"{media / 'no_face.mp4'}\n{media / 'free-mountain-vector-01.jpg'}\n")
    out = tmp / "out"
    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("facsflow.predict")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # the CLI's basicConfig sets INFO; under pytest the root keeps WARNING
    every, predict.PROGRESS_EVERY_S = predict.PROGRESS_EVERY_S, 0.2  # a 72-frame video is "long" here
    try:
        code = main(["--ensemble", str(ensemble), "--input", str(folder), str(listing), "--out", str(out),
                     "--actors", "2"])
    finally:
        predict.PROGRESS_EVERY_S = every
        logger.removeHandler(handler)
        logger.setLevel(level)
        if started:
            ray.shutdown()
    return {"code": code, "out": out, "log": lines}


def test_every_readable_input_gets_a_csv_with_the_documented_columns(predicted: dict) -> None:
    from components.au_detector import openface_columns

    assert predicted["code"] == 1, "the broken file is reported in the exit code"
    out = predicted["out"]
    names = sorted(p.stem for p in out.glob("*.csv"))
    assert names == ["free-mountain-vector-01", "multi_face", "no_face", "single_face"]
    # The image member has an intensity head, so every table carries AUxx_r, faces or not.
    expected = openface_columns(AUS, intensity=True)
    assert expected[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert {"AU01_c", "AU01_r", "AU01_p", "AU26_p", "x_67", "y_0"} <= set(expected)
    for name in names:
        assert list(pd.read_csv(out / f"{name}.csv").columns) == expected, name


def test_video_has_one_row_per_frame_with_the_tracked_face(predicted: dict) -> None:
    df = pd.read_csv(predicted["out"] / "single_face.csv")
    assert len(df) == 72 and df["frame"].tolist() == list(range(72))  # 72 frames at 30 fps
    np.testing.assert_allclose(df["timestamp"], np.arange(72) / 30.0, atol=1e-4)
    assert (df["success"] == 1).all() and (df["face_id"] == 0).all()
    # Landmarks lie on the face, inside the 640x360 frame; probabilities are probabilities.
    xs, ys = df[[f"x_{i}" for i in range(68)]].to_numpy(), df[[f"y_{i}" for i in range(68)]].to_numpy()
    assert (xs > 0).all() and (xs < 640).all() and (ys > 0).all() and (ys < 360).all()
    probs = df[[f"AU{a:02d}_p" for a in AUS]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    occ = df[[f"AU{a:02d}_c" for a in AUS]].to_numpy()
    np.testing.assert_array_equal(occ, (probs >= 0.5).astype(int))  # manifest thresholds are 0.5


def test_videos_report_progress_and_leave_no_job_behind(predicted: dict) -> None:
    """Each video runs as a segment-wise job (workflows/predict.py): progress lines (frames done
    of the total, fps, ETA) while it runs; its job folder goes once its CSV is written, and the jobs folder with the last one."""
    progress = [ln for ln in predicted["log"] if ln.startswith("single_face: ")]
    assert progress and all(re.fullmatch(r"single_face: \d+/72 frames \(\d+%\), [\d.]+ fps, ETA (\d+:\d\d|\?)", ln)
                            for ln in progress), predicted["log"]
    assert not (predicted["out"] / ".jobs").exists()  # neither the job nor its empty folder


def test_faceless_inputs_are_success_zero_rows(predicted: dict) -> None:
    out = predicted["out"]
    video = pd.read_csv(out / "no_face.csv")
    assert len(video) >= 95 and video["frame"].tolist() == list(range(len(video)))
    assert (video["success"] == 0).all() and (video["face_id"] == -1).all()
    assert video["AU12_p"].isna().all() and video["x_0"].isna().all()
    drawing = pd.read_csv(out / "free-mountain-vector-01.csv")
    assert len(drawing) == 1 and drawing.loc[0, "success"] == 0


def test_group_photo_has_a_row_per_face_and_parquet_holds_every_row(predicted: dict) -> None:
    from workflows.predict import read_predictions

    out = predicted["out"]
    group = pd.read_csv(out / "multi_face.csv")
    assert len(group) >= 4 and (group["success"] == 1).all()  # dlib finds 4 of the 5 faces
    assert sorted(group["face_id"]) == list(range(len(group)))
    table = read_predictions(str(out))
    assert list(table.columns[:2]) == ["input", "name"]
    per_file = table.groupby("name").size().to_dict()
    for name, n in per_file.items():
        assert n == len(pd.read_csv(out / f"{name}.csv")), name
    assert Path(table.loc[table["name"] == "no_face", "input"].iloc[0]).name == "no_face.mp4"


def test_the_resolved_config_is_saved_with_the_outputs(predicted: dict) -> None:
    from components.configuration import load_yaml
    from workflows.predict import PredictConfig

    cfg = load_yaml(PredictConfig, predicted["out"] / "predict.yaml")
    assert (cfg.out, cfg.actors, cfg.detector, len(cfg.input)) == (str(predicted["out"]), 2, None, 2)  # detector unset: the ensemble's default (dlib)


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    from workflows.predict import collect_inputs
    from workflows.core.runtime import UserError

    (tmp_path / "notes.txt").write_text("missing.mp4\n")
    with pytest.raises(UserError, match="missing.mp4"):
        collect_inputs([str(tmp_path / "notes.txt")])
    with pytest.raises(UserError, match="input not found"):
        collect_inputs([str(tmp_path / "nowhere")])


def test_landmarker_flag_answers_with_the_landmarker_named_over_the_ensembles(tmp_path: Path) -> None:
    """``--landmarker`` goes over the ensemble's recorded face pipeline (a student of the
    built-in, whose store recorded MediaPipe, is answered with dlib's this way): the model card
    beside the CSVs names what answered, and the face is found."""
    media = require_media("single_face.jpg")
    import json

    import ray

    from workflows.core.runtime import init_ray
    from workflows.predict import main

    from components.plan import resolve_ensemble

    ensemble = make_ensemble(tmp_path / "ensemble")
    assert resolve_ensemble(str(ensemble)).faces["landmarker"] == "dlib"  # what it recorded
    out = tmp_path / "out"
    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    try:
        code = main(["--ensemble", str(ensemble), "--input", str(media / "single_face.jpg"), "--out", str(out),
                     "--actors", "1", "--landmarker", "mediapipe"])
    finally:
        if started:
            ray.shutdown()
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["faces"]["landmarker"] == "mediapipe"
    assert pd.read_csv(out / "single_face.csv")["success"].tolist() == [1]
