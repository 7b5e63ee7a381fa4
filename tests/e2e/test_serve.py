"""Every endpoint of the real Serve app over HTTP on 127.0.0.1, on real media: five faces in the
group photo, none in the drawing, a tracked face through a video; JSON and CSV; the served
answer is the in-process Predictor's answer."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_media
from tests.serving_fixtures import AUS


KEYS = [f"AU{a}" for a in AUS]


def _post(client, path: str, data: bytes, ctype: str, **kw):
    return client.post(path, content=data, headers={"content-type": ctype, **kw.pop("headers", {})}, **kw)


def test_healthz_runs_every_member(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["members"] == ["img-mobilenet", "vid-tosequence"]


def test_models_lists_members_inputs_aus_and_a_synthetic_model_card(client) -> None:
    m = client.get("/v1/models").json()
    assert [a["number"] for a in m["aus"]] == AUS
    assert {a["number"]: a["name"] for a in m["aus"]}[12] == "Lip Corner Puller"
    img, vid = m["members"]
    assert (img["name"], img["needs_video"], img["answers_images"]) == ("img-mobilenet", False, True)
    assert (vid["name"], vid["needs_video"], vid["answers_images"]) == ("vid-tosequence", True, False)
    assert vid["input"]["diff_steps"] == [1, 2] and vid["input"]["channels"] == "gray+sobel"
    assert "SYNTHETIC" in m["model_card"]["data_note"] and m["model_card"]["trained_on"] == ["synthetic"]
    assert m["provenance"] == {"test_fixture": True} and m["rule"] == "mean"
    assert m["limits"]["max_image_pixels"] == 4_000_000
    # Where each member's weights started, and whether that allows commercial use.
    assert img["init"]["init_weights"] == "random" and img["init"]["commercial_use"] == "yes"
    assert m["model_card"]["commercial_use"] == "yes" and "licence_notice" not in m["model_card"]


def test_group_photo_gives_five_faces_with_landmarks_and_aus(client) -> None:
    media = require_media("multi_face.jpg")
    r = _post(client, "/v1/predict", (media / "multi_face.jpg").read_bytes(), "image/jpeg")
    assert r.status_code == 200
    ans = r.json()
    assert ans["n_faces"] == 5 and (ans["width"], ans["height"]) == (1000, 667)
    assert ans["members_voted"] == ["img-mobilenet"]
    assert [m["name"] for m in ans["members_left_out"]] == ["vid-tosequence"]
    assert sorted(f["face_id"] for f in ans["faces"]) == [0, 1, 2, 3, 4]
    for f in ans["faces"]:
        x0, y0, x1, y1 = f["box"]
        assert 0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 667
        lms = np.asarray(f["landmarks"])
        assert lms.shape == (68, 2)
        cx, cy = lms.mean(0)  # the landmarks sit on the detected face
        assert x0 < cx < x1 and y0 < cy < y1
        assert set(f["probs"]) == set(KEYS) and all(0 <= p <= 1 for p in f["probs"].values())
        assert all(f["occurrence"][k] == int(f["probs"][k] >= 0.5) for k in KEYS)
        assert all(0 <= v <= 5 for v in f["intensity"].values())
        assert f["members"] == ["img-mobilenet"] and f["score"] > 0.9


def test_drawing_has_no_face(client) -> None:
    media = require_media("free-mountain-vector-01.jpg")
    r = _post(client, "/v1/predict", (media / "free-mountain-vector-01.jpg").read_bytes(), "image/jpeg")
    assert r.status_code == 200 and r.json()["faces"] == [] and r.json()["n_faces"] == 0


def test_served_answer_is_the_in_process_predictor_answer(client, served) -> None:
    """Serve's face pipeline, member and combiner deployments reproduce the one inference path."""
    import cv2
    import torch

    from components.predictor import Predictor

    torch.set_num_threads(1)
    media = require_media("single_face.jpg")
    data = (media / "single_face.jpg").read_bytes()
    served_faces = _post(client, "/v1/predict", data, "image/jpeg").json()["faces"]
    local = Predictor.from_manifest(str(served.ensemble), faces={"detector": "mtcnn", "policy": "all"})  # as the app's
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    local_faces = local.predict_image(rgb)
    assert len(served_faces) == len(local_faces) == 1
    s, loc = served_faces[0], local_faces[0]
    np.testing.assert_allclose(s["box"], loc["box"], atol=0.01)
    np.testing.assert_allclose([s["probs"][k] for k in KEYS], [loc["probs"][k] for k in KEYS], atol=1e-4)
    np.testing.assert_allclose([s["intensity"][k] for k in KEYS], [loc["intensity"][k] for k in KEYS], atol=1e-3)


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_png_and_webp_are_accepted(client, fmt: str, ctype: str) -> None:
    from PIL import Image

    media = require_media("single_face.jpg")
    buf = io.BytesIO()
    Image.open(media / "single_face.jpg").save(buf, fmt, **({"quality": 95} if fmt == "WEBP" else {}))
    r = _post(client, "/v1/predict", buf.getvalue(), ctype)
    assert r.status_code == 200 and r.json()["n_faces"] == 1


@pytest.mark.parametrize("how", ["query", "accept"])
def test_csv_on_request_has_the_predict_columns(client, how: str) -> None:
    from components.au_detector import openface_columns

    media = require_media("multi_face.jpg")
    path, headers = ("/v1/predict?format=csv", {}) if how == "query" else ("/v1/predict", {"accept": "text/csv"})
    r = _post(client, path, (media / "multi_face.jpg").read_bytes(), "image/jpeg", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    df = pd.read_csv(io.StringIO(r.text))
    assert list(df.columns) == openface_columns(AUS, intensity=True)
    assert len(df) == 5 and (df["success"] == 1).all() and (df["frame"] == 0).all()


@pytest.fixture(scope="module")
def video_answer(client) -> dict:
    media = require_media("single_face.mp4")
    r = _post(client, "/v1/predict/video", (media / "single_face.mp4").read_bytes(), "video/mp4")
    assert r.status_code == 200, r.text
    return r.json()


def test_video_rows_follow_the_tracked_face_frame_by_frame(video_answer: dict) -> None:
    ans = video_answer
    assert (ans["n_frames"], ans["fps"], ans["width"], ans["height"]) == (72, 30.0, 640, 360)
    assert ans["face_ids"] == [0] and ans["members_voted"] == ["img-mobilenet", "vid-tosequence"]
    assert ans["members_left_out"] == [] and ans["diff_steps"] == [1, 2]
    rows = ans["rows"]
    assert [r["frame"] for r in rows] == list(range(72))
    assert all(r["success"] == 1 and r["face_id"] == 0 for r in rows)
    assert rows[30]["timestamp"] == 1.0
    boxes = np.asarray([r["box"] for r in rows])
    assert np.abs(np.diff(boxes, axis=0)).max() < 40  # one face, followed, not jumping around


def test_video_temporal_features_and_smoothing(video_answer: dict) -> None:
    """Occurrence follows the smoothed probability: a centred mean of 5 frames, edges repeated."""
    rows = video_answer["rows"]
    raw = np.asarray([[r["raw_probs"][k] for k in KEYS] for r in rows])
    smooth = np.asarray([[r["probs"][k] for k in KEYS] for r in rows])
    np.testing.assert_allclose(smooth[10], raw[8:13].mean(0), atol=2e-5)
    np.testing.assert_allclose(smooth[0], (3 * raw[0] + raw[1] + raw[2]) / 5, atol=2e-5)
    np.testing.assert_allclose(smooth[71], (raw[69] + raw[70] + 3 * raw[71]) / 5, atol=2e-5)
    occ = np.asarray([[r["occurrence"][k] for k in KEYS] for r in rows])
    np.testing.assert_array_equal(occ, (smooth >= 0.5).astype(int))
    # Landmark motion per difference step: 0 where the step reaches past the video's ends.
    assert rows[0]["motion"] == {"s1": 0.0, "s2": 0.0} and rows[1]["motion"]["s2"] == 0.0
    assert max(r["motion"]["s2"] for r in rows) > 0


def test_video_csv_has_a_row_per_frame(client) -> None:
    media = require_media("single_face.mp4")
    r = _post(client, "/v1/predict/video?format=csv", (media / "single_face.mp4").read_bytes(), "video/mp4")
    df = pd.read_csv(io.StringIO(r.text))
    assert r.status_code == 200 and len(df) == 72 and df["frame"].tolist() == list(range(72))


def test_web_page_and_its_files_are_served_and_nothing_else(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/serve.py").status_code == 404
    assert client.get("/static/..%2Fserve.py").status_code == 404
