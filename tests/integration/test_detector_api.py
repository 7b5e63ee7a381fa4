"""The Python API without Ray: DataFrames with the documented columns from an ensemble or a
checkpoint, hand-worked table building, and the ensemble's mean rule checked member by member."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_media
from tests.serving_fixtures import AUS, IMAGE_MEMBER, make_ensemble



def test_columns_follow_openface_order_with_zero_padded_aus() -> None:
    from components.au_detector import openface_columns

    cols = openface_columns([1, 12], intensity=True)
    assert len(cols) == 5 + 68 + 68 + 5 + 3 * 2
    assert cols[:7] == ["frame", "face_id", "timestamp", "confidence", "success", "x_0", "x_1"]
    assert cols[5 + 67] == "x_67" and cols[5 + 68] == "y_0"
    assert cols[141:146] == ["gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry", "pose_Rz"]
    assert cols[-6:] == ["AU01_c", "AU12_c", "AU01_r", "AU12_r", "AU01_p", "AU12_p"]
    assert "AU01_r" not in openface_columns([1, 12])


def test_rows_land_in_their_columns_and_faceless_rows_stay_empty() -> None:
    from components.au_detector import rows_to_openface

    lms = np.stack([np.arange(68) * 1.0, 100 + np.arange(68) * 0.5], axis=1)
    face = {"frame": 3, "face_id": 0, "timestamp": 0.1, "score": 0.98766, "success": 1, "landmarks": lms,
            "pose": {"pitch": 90.0, "yaw": -45.0, "roll": 180.0}, "gaze": {"angle_x": 0.1, "angle_y": -0.2},
            "probs": {"AU6": 0.5, "AU1": 0.25, "AU12": 0.75}, "occurrence": {"AU6": 1, "AU1": 0, "AU12": 1},
            "intensity": {"AU6": 2.5, "AU1": 0.5, "AU12": 3.0}, "emotions": {"happiness": 0.625}}
    empty = {"frame": 4, "timestamp": 4 / 30, "success": 0}
    dlib = dict(face, frame=5, gaze=None)  # a landmarker without a mesh: no gaze
    df = rows_to_openface([face, empty, dlib], [6, 1, 12])
    row = df.iloc[0]
    assert (row["frame"], row["face_id"], row["success"]) == (3, 0, 1)
    assert row["confidence"] == 0.9877 and row["x_5"] == 5.0 and row["y_4"] == 102.0
    assert (row["AU01_p"], row["AU12_p"], row["AU12_c"], row["AU12_r"]) == (0.25, 0.75, 1, 3.0)
    # pose: degrees in answers, OpenFace's radians in the table; gaze is radians in both.
    np.testing.assert_allclose(row[["pose_Rx", "pose_Ry", "pose_Rz"]].to_numpy(float), [np.pi / 2, -np.pi / 4, np.pi])
    assert (row["gaze_angle_x"], row["gaze_angle_y"], row["emotion_happiness"]) == (0.1, -0.2, 0.625)
    gone = df.iloc[1]
    assert (gone["frame"], gone["face_id"], gone["success"], gone["confidence"]) == (4, -1, 0, 0.0)
    assert gone["timestamp"] == 0.1333
    assert pd.isna(gone["x_0"]) and pd.isna(gone["AU12_p"]) and pd.isna(gone["AU12_c"])
    assert gone[["pose_Rx", "gaze_angle_x", "emotion_happiness"]].isna().all()
    assert pd.isna(df.iloc[2]["gaze_angle_x"]) and df.iloc[2]["pose_Rz"] == row["pose_Rz"]


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("detector")
    second = ("img-resnet", "baseline_resnet18_112", {})
    return {"mixed": make_ensemble(root / "mixed"),
            "pair": make_ensemble(root / "pair", [IMAGE_MEMBER, second], weights=[0.25, 0.75])}


def test_image_rows_per_face_and_video_members_left_out(ensembles: dict) -> None:
    from components.au_detector import Detector, openface_columns

    media = require_media("0-f15-hao-ph.jpg", "free-mountain-vector-01.jpg")
    det = Detector.from_ensemble(ensembles["mixed"])
    df = det.predict_image(media / "0-f15-hao-ph.jpg")
    assert list(df.columns) == openface_columns(AUS, intensity=True)
    assert len(df) == 1 and df.loc[0, "success"] == 1 and df.loc[0, "face_id"] == 0
    assert df.attrs["members_voted"] == ["img-mobilenet"]  # the To-Sequence member needs video
    xs = df[[f"x_{i}" for i in range(68)]].to_numpy()
    assert 0 < xs.min() < xs.max() < 512  # a 512x512 portrait
    p = df[[f"AU{a:02d}_p" for a in AUS]].to_numpy()[0]
    np.testing.assert_array_equal(df[[f"AU{a:02d}_c" for a in AUS]].to_numpy()[0], (p >= 0.5).astype(int))
    none = det.predict_image(media / "free-mountain-vector-01.jpg")
    assert len(none) == 1 and none.loc[0, "success"] == 0 and list(none.columns) == list(df.columns)


def test_weighted_mean_of_members_is_the_ensemble_answer(ensembles: dict) -> None:
    """rule 'mean' with weights 0.25/0.75: p = 0.25 p_1 + 0.75 p_2, each p_i from its own checkpoint."""
    from components.au_detector import Detector
    from components.ensemble import EnsembleManifest

    media = require_media("0-f1-su-ph.jpg")
    image = media / "0-f1-su-ph.jpg"
    cols = [f"AU{a:02d}_p" for a in AUS]
    ens = Detector.from_ensemble(ensembles["pair"]).predict_image(image)[cols].to_numpy()
    members = EnsembleManifest.load(str(ensembles["pair"])).members
    p1, p2 = (Detector.from_checkpoint(m.checkpoint).predict_image(image)[cols].to_numpy() for m in members)
    np.testing.assert_allclose(ens, 0.25 * p1 + 0.75 * p2, atol=1e-6)
    assert np.abs(p1 - p2).max() > 1e-3  # the members really differ, so the weights matter


def test_video_rows_one_per_frame_with_every_member(ensembles: dict) -> None:
    from components.au_detector import Detector

    media = require_media("single_face.mp4")
    df = Detector.from_ensemble(ensembles["mixed"]).predict_video(media / "single_face.mp4")
    assert df["frame"].tolist() == list(range(72)) and (df["success"] == 1).all()
    np.testing.assert_allclose(df["timestamp"], np.round(np.arange(72) / 30.0, 4))
    assert df.attrs["members_voted"] == ["img-mobilenet", "vid-tosequence"] and df.attrs["fps"] == 30.0
    assert df["AU12_r"].between(0, 5).all()


def test_bad_inputs_name_the_file(tmp_path: Path, ensembles: dict) -> None:
    from components.au_detector import Detector, read_image

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg: not a readable image"):
        read_image(bad)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        read_image(np.zeros((4, 4, 3), np.float32))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="clip.mp4"):
        Detector.from_ensemble(ensembles["mixed"]).predict_video(clip)
