"""One inference path: the same image and video through the Python ``Detector`` (in process),
``facsflow predict`` (Ray Data on a local Ray) and the Serve app (HTTP, concurrent clients) give
the same numbers, with a pairwise-rank member that reads each video's frames as its context.

The app here is its own (a pairwise-rank member, the same face configuration for all three
paths, a long batch wait so concurrent clients' segments share the members' forward passes),
in the staged layout (face pipeline, member and combiner deployments behind the ingress; the
folder's shared app runs the default, fused on this CPU machine), so both layouts answer the
same as in process; it is torn down before the e2e folder's shared app starts (this file sorts first)."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_media
from tests.serving_fixtures import AUS, make_ensemble


IMAGE_MEMBER = ("img-resnet", "baseline_resnet18_112", {})
"""An image member whose seeded answers vary with the face (the serving fixtures' seeded
MobileNet answers every input alike, so agreeing on it would prove nothing)."""
PAIRWISE_MEMBER = ("pair-rank", "pairwise_rank_small", {})
"""Reads each video segment's frames as its context (window statistics G, paper 004 §3.3)."""
FACES = {"detector": "dlib", "policy": "tracked"}
"""One face configuration for stills and videos, so the three paths see the same faces."""
PROBS = [f"AU{a:02d}_p" for a in AUS]
CLIENTS = 3
"""Concurrent clients per input."""


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Per path: the image's and the video's prediction tables (OpenFace columns)."""
    import httpx
    import ray
    from ray import serve

    from components.au_detector import Detector
    from components.faces.pipeline import FacePipelineConfig
    from tests.e2e.conftest import free_port
    from workflows.predict import read_predictions, run_predict
    from workflows.core.runtime import init_ray
    from workflows.serve.app import start

    media = require_media("single_face.jpg", "single_face.mp4")
    image, video = media / "single_face.jpg", media / "single_face.mp4"
    root = tmp_path_factory.mktemp("agreement")
    ensemble = make_ensemble(root / "ensemble", [IMAGE_MEMBER, PAIRWISE_MEMBER])
    det = Detector.from_ensemble(ensemble, faces=FacePipelineConfig(**FACES))
    out: dict[str, Any] = {"detector": {"image": det.predict_image(image), "video": det.predict_video(video)}}

    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    try:
        res = run_predict(str(ensemble), [str(image), str(video)], str(root / "predict"), actors=1, faces=FACES)
        assert not any(r["error"] for r in res), res
        table = read_predictions(str(root / "predict"))
        out["predict"] = {kind: table[table["input"] == str(path)].drop(columns=["input", "name"])
                          .sort_values(["frame", "face_id"]).reset_index(drop=True)
                          for kind, path in (("image", image), ("video", video))}
        app = {"image_faces": FACES, "video_faces": FACES, "batch_wait_timeout_s": 0.25, "layout": "staged",
               "ingress": {"max_replicas": 1}, "faces": {"max_replicas": 1}, "member": {"max_replicas": 1}}
        url = start(str(ensemble), "127.0.0.1", free_port(), app=app, name="agreement")
        try:
            served: dict[str, list] = {"image": [], "video": []}
            errors: list[str] = []

            def client(kind: str, path: Path, ctype: str) -> None:
                route = "/v1/predict?format=csv" if kind == "image" else "/v1/predict/video?format=csv"
                with httpx.Client(base_url=url, timeout=600) as c:
                    r = c.post(route, content=path.read_bytes(), headers={"content-type": ctype})
                if r.status_code != 200:
                    errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
                else:
                    served[kind].append(pd.read_csv(io.StringIO(r.text)))

            threads = [threading.Thread(target=client, args=args) for _ in range(CLIENTS)
                       for args in (("video", video, "video/mp4"), ("image", image, "image/jpeg"))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            out["serve"] = served
        finally:
            serve.shutdown()
    finally:
        if started:
            ray.shutdown()
    yield out


def test_image_answers_agree(answers: dict) -> None:
    ref = answers["detector"]["image"]
    assert len(ref) == 1 and ref.loc[0, "success"] == 1
    assert ref.attrs["members_voted"] == [IMAGE_MEMBER[0]]  # pairwise-rank needs video
    others = [answers["predict"]["image"], *answers["serve"]["image"]]
    assert len(others) == 1 + CLIENTS
    for df in others:
        assert list(df.columns) == list(ref.columns)
        np.testing.assert_allclose(df[PROBS].to_numpy(), ref[PROBS].to_numpy(), atol=1e-5)
        _derived_columns_agree(df, ref)


def _derived_columns_agree(df: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Head pose, gaze and the emotion scores derived from the AUs: the same on every path
    (gaze is NaN here: the test ensembles' faces have dlib's 68 points, no iris)."""
    extra = [c for c in ref.columns if c.startswith(("pose_", "gaze_", "emotion_"))]
    assert {"pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x", "emotion_happiness"} <= set(extra)
    assert ref["pose_Ry"].notna().all()
    np.testing.assert_allclose(df[extra].to_numpy(float), ref[extra].to_numpy(float), atol=1e-4, equal_nan=True)


def test_video_answers_agree_with_a_pairwise_rank_member_and_concurrent_clients(answers: dict) -> None:
    ref = answers["detector"]["video"]
    assert ref["frame"].tolist() == list(range(72)) and (ref["success"] == 1).all()
    assert ref.attrs["members_voted"] == [IMAGE_MEMBER[0], PAIRWISE_MEMBER[0]]
    others = [answers["predict"]["video"], *answers["serve"]["video"]]
    assert len(others) == 1 + CLIENTS
    for df in others:
        assert df["frame"].tolist() == ref["frame"].tolist()
        np.testing.assert_allclose(df[PROBS].to_numpy(), ref[PROBS].to_numpy(), atol=1e-5)
        np.testing.assert_array_equal(df[[p.replace("_p", "_c") for p in PROBS]].to_numpy(),
                                      ref[[p.replace("_p", "_c") for p in PROBS]].to_numpy())
        xs = [f"x_{i}" for i in range(68)]
        np.testing.assert_allclose(df[xs].to_numpy(), ref[xs].to_numpy(), atol=0.01)
        _derived_columns_agree(df, ref)
    # The answers move over the video (the members see different frames, not one constant).
    assert ref[PROBS].to_numpy().std(0).max() > 1e-3


@pytest.fixture(scope="module")
def retinaface_answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ensemble trained on a store preprocessed with ``--face.detector retinaface``
    (synth → preprocess → train one epoch → ensemble), answered by the Detector, ``predict`` and
    Serve, none of them told which detector to use."""
    import httpx
    import ray
    from ray import serve

    from components.au_detector import Detector
    from components.datasets.synth.generator import SynthConfig, generate
    from components.faces.pipeline import FacePipelineConfig
    from components.store.splits import SplitConfig
    from tests.e2e.conftest import free_port
    from tests.integration.conftest import face_photos_dir
    from workflows.ensemble import build_ensemble
    from workflows.predict import read_predictions, run_predict
    from workflows.preprocess import PreprocessConfig, run_preprocess
    from workflows.core.runtime import init_ray
    from workflows.serve.app import start
    from workflows.train import TrainConfig, run_training

    image = require_media("single_face.jpg") / "single_face.jpg"
    root = tmp_path_factory.mktemp("recorded-faces")
    started = not ray.is_initialized()
    init_ray(num_cpus=2)
    try:
        generate(SynthConfig(out=str(root / "data"), layout="manifest", faces=str(face_photos_dir(root)), seed=0,
                             subjects_per_identity=1, videos_per_subject=1, frames_per_video=8))
        run_preprocess(PreprocessConfig(dataset="manifest", root=str(root / "data"), out=str(root / "store"),
                                        face=FacePipelineConfig(detector="retinaface", landmarker="dlib"),
                                        actor_cpus=0.5))
        run = run_training(TrainConfig(model="baseline_mobilenetv3_112", data=str(root / "store"),
                                       out=str(root / "runs"), epochs=1, batch_size=8, workers=1, worker_cpus=0.5,
                                       data_cpus=0.25, early_stop_patience=0, keep_best=1,
                                       split=SplitConfig(fold=1, k=3, val_fraction=0.25)))
        build_ensemble([run["run_dir"]], str(root / "ensemble"))
        ensemble = str(root / "ensemble")
        det = Detector.from_ensemble(ensemble)
        out: dict[str, Any] = {"plan": det.plan, "detector": det.predict_image(image),
                               "dlib": Detector.from_ensemble(ensemble, faces={"detector": "dlib"}).predict_image(image)}
        res = run_predict(ensemble, [str(image)], str(root / "predict"), actors=1)
        assert not any(r["error"] for r in res), res
        out["predict"] = read_predictions(str(root / "predict")).drop(columns=["input", "name"])
        url = start(ensemble, "127.0.0.1", free_port(), app={"ingress": {"max_replicas": 1}}, name="recorded")
        try:
            with httpx.Client(base_url=url, timeout=300) as c:
                r = c.post("/v1/predict?format=csv", content=image.read_bytes(), headers={"content-type": "image/jpeg"})
                assert r.status_code == 200, r.text[:300]
                out["serve"] = pd.read_csv(io.StringIO(r.text))
                out["models"] = c.get("/v1/models").json()
        finally:
            serve.shutdown()
    finally:
        if started:
            ray.shutdown()
    yield out


def test_an_ensemble_is_answered_with_the_detector_its_store_was_built_with(retinaface_answers: dict) -> None:
    from components.au_detector import read_image
    from components.faces.detectors import build_detector
    from components.faces.pipeline import FacePipelineConfig

    ans = retinaface_answers
    assert ans["plan"].faces["detector"] == "retinaface" and ans["models"]["faces"]["detector"] == "retinaface"
    ref = ans["detector"]
    assert len(ref) == 1 and ref.loc[0, "success"] == 1
    # The face's confidence is RetinaFace's own score for that face, not dlib's.
    image = require_media("single_face.jpg") / "single_face.jpg"
    cfg = FacePipelineConfig(detector="retinaface")
    (face,) = build_detector(cfg.detector, **cfg.detector_options()).detect(read_image(image))
    assert ref.loc[0, "confidence"] == pytest.approx(float(face.score), abs=1e-3)
    assert ans["dlib"].loc[0, "confidence"] != pytest.approx(ref.loc[0, "confidence"], abs=1e-3)
    for df in (ans["predict"], ans["serve"]):
        assert list(df.columns) == list(ref.columns)
        cols = ["confidence"] + [c for c in ref.columns if c.startswith(("x_", "y_"))]
        np.testing.assert_allclose(df[cols].to_numpy(), ref[cols].to_numpy(), atol=0.01)
        probs = [c for c in ref.columns if c.endswith("_p")]
        np.testing.assert_allclose(df[probs].to_numpy(), ref[probs].to_numpy(), atol=1e-5)
