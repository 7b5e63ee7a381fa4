"""The built-in detector end to end on a local Ray: ``facsflow predict`` with no ensemble writes
CSVs for the posed photos whose AU probabilities pass the FACS prototype contrasts, and
``facsflow serve`` with no ensemble answers a real photo over HTTP with the built-in's model card."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import numpy as np
import pytest

from tests.conftest import require_media


POSED = {"surprise": "0-f1-su-ph", "happy": "0-f15-hao-ph", "anger": "15-f13-anc-ph"}
CONTRASTS = {"AU12_p": "happy", "AU06_p": "happy", "AU01_p": "surprise", "AU02_p": "surprise",
             "AU26_p": "surprise", "AU04_p": "anger"}


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FACSFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def test_predict_without_ensemble_passes_the_posed_contrasts(ray_local, tmp_path: Path) -> None:
    from workflows.predict import main

    media = require_media(*(f"{n}.jpg" for n in POSED.values()))
    out = tmp_path / "out"
    code = main(["--input", *(str(media / f"{n}.jpg") for n in POSED.values()), "--out", str(out),
                 "--actors", "1"])
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["members"] == ["blendshape"] and "Apache-2.0" in card["licence"]
    rows = {expr: pd.read_csv(out / f"{name}.csv").iloc[0] for expr, name in POSED.items()}
    for expr, row in rows.items():
        assert row["success"] == 1, expr
    for col, face in CONTRASTS.items():
        assert max(rows, key=lambda e: rows[e][col]) == face, {e: rows[e][col] for e in rows}


def test_serve_without_ensemble_answers_a_real_photo(ray_local) -> None:
    import httpx
    from ray import serve

    from components.plan import resolve_ensemble
    from workflows.serve.app import start

    media = require_media("0-f15-hao-ph.jpg")
    plan = resolve_ensemble(None)  # what `facsflow serve` without --ensemble serves
    ensemble, app = plan.directory, {"ingress": {"max_replicas": 1}, "faces": {"max_replicas": 1},
                                     "member": {"max_replicas": 1}}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        url = start(ensemble, "127.0.0.1", port, app=app)
        with httpx.Client(base_url=url, timeout=300) as c:
            models = c.get("/v1/models").json()
            # No face flag: the app detects with the built-in's recorded pipeline.
            assert (models["faces"]["detector"], models["faces"]["landmarker"]) == ("retinaface", "mediapipe")
            card = models["model_card"]
            assert card["name"].startswith("facsflow built-in") and "Apache-2.0" in card["licence"]
            assert any("real faces" in t for t in card["trained_on"])
            r = c.post("/v1/predict", content=(media / "0-f15-hao-ph.jpg").read_bytes(),
                       headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
            face = r.json()["faces"][0]
            assert face["members"] == ["blendshape"]
            assert face["probs"]["AU12"] > 0.5 and face["occurrence"]["AU12"] == 1
            assert face["probs"]["AU12"] > face["probs"]["AU4"]
    finally:
        serve.shutdown()


# Preprocessing with RetinaFace + MediaPipe and four epochs: 700 s on the shared 2-core machine
# under load (2026-12-03), too much for the default integration budget: slow tier.
@pytest.mark.slow
def test_blendshape_calibrated_trains_from_a_store_preprocessed_with_mediapipe(ray_local, tmp_path: Path) -> None:
    """``facsflow train --model blendshape_calibrated`` on a store whose rows carry blendshapes:
    every row has 52 of them, and training the calibration lowers the loss."""
    import pyarrow.dataset as pads

    from components.datasets.synth.generator import SynthConfig, generate
    from components.faces.pipeline import FacePipelineConfig
    from components.training import OptimConfig
    from tests.integration.conftest import face_photos_dir
    from components.store.splits import SplitConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess
    from workflows.train import TrainConfig, run_training

    data, store = tmp_path / "data", tmp_path / "store"
    generate(SynthConfig(out=str(data), layout="manifest", faces=str(face_photos_dir(tmp_path)), seed=0,
                         subjects_per_identity=1, videos_per_subject=2, frames_per_video=16))
    run_preprocess(PreprocessConfig(dataset="manifest", root=str(data), out=str(store), actor_cpus=0.5,
                                    face=FacePipelineConfig(detector="retinaface", landmarker="mediapipe")))
    rows = pads.dataset(str(store / "frames"), format="parquet").to_table(columns=["blendshapes"])
    assert rows.num_rows > 0 and all(len(b) == 52 for b in rows.column("blendshapes").to_pylist())
    # Training's batches carry each face's running neutral over its whole video, as serving
    # subtracts it (components.store.neutral), not the population's.
    from components.faces.au_geometry import track_neutral
    from components.store.splits import load_split, store_info
    from components.video_key import video_index
    from workflows.core.store_reader import split_datasets

    frames = pads.dataset(str(store / "frames"), format="parquet").to_table(
        columns=["dataset", "subject", "video", "frame_order", "blendshapes", "geometry"]).to_pydict()
    keys = video_index(frames)
    expected = {}
    for key in set(keys.tolist()):
        idx = sorted(np.flatnonzero(keys == key), key=lambda i: frames["frame_order"][i])
        neutral = track_neutral(np.array([frames["blendshapes"][i] for i in idx], np.float32),
                                np.array([frames["geometry"][i] for i in idx], np.float32))
        expected.update({(key, frames["frame_order"][i]): n for i, n in zip(idx, neutral)})
    calibrated = TrainConfig(model="blendshape_calibrated", data=str(store),
                             split=SplitConfig(fold=1, k=3, val_fraction=0.25))
    info = store_info(str(store))
    split = load_split(str(store), info, calibrated.split)
    batches = list(split_datasets(split, info, calibrated)["train"].iter_batches(batch_size=None, batch_format="numpy"))
    got = np.concatenate([b["neutral"] for b in batches])
    want = np.stack([expected[(k, o)] for b in batches for k, o in zip(b["video_index"].tolist(), b["frame_order"].tolist())])
    assert len(got) > 16 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got[:, :52]).max() > 0  # a person's neutral, not the population's blendshapes (zeros)
    cfg = TrainConfig(model="blendshape_calibrated", data=str(store), out=str(tmp_path / "run"), epochs=4,
                      batch_size=16, workers=1, worker_cpus=0.5, data_cpus=0.25, early_stop_patience=0,
                      keep_best=1, split=SplitConfig(fold=1, k=3, val_fraction=0.25),
                      optim=OptimConfig(lr=0.05, schedule="cosine"))
    summary = run_training(cfg)
    losses = [h["train_loss"] for h in summary["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0], losses


def test_geometry_makes_au5_fire_on_the_surprised_face_and_au25_on_the_happy_one() -> None:
    """Widened eyes (AU5) and parted lips of a toothy smile (AU25), which blendshapes alone
    under-read, fire through the mesh geometry; the prototype AUs still rank highest."""
    from components.au_detector import Detector

    media = require_media(*(f"{n}.jpg" for n in POSED.values()))
    det = Detector.pretrained()
    rows = {e: det.predict_image(media / f"{n}.jpg").iloc[0] for e, n in POSED.items()}
    assert rows["surprise"]["AU05_c"] == 1 and rows["happy"]["AU25_c"] == 1
    assert rows["anger"]["AU25_c"] == 0 and rows["happy"]["AU05_c"] == 0
    for col, face in CONTRASTS.items():
        assert max(rows, key=lambda e: rows[e][col]) == face, {e: rows[e][col] for e in rows}
    assert 0 <= rows["happy"]["AU12_r"] <= 5 and rows["happy"]["AU12_r"] > rows["anger"]["AU12_r"]


def test_video_lips_part_while_she_laughs_and_blinks_are_counted() -> None:
    """WolfgangLanger_Pexels.mp4 (23.98 fps): closed lips and eyes in frames 0-69, lips apart
    while she laughs and speaks in 140-391, where 5 blinks were counted by eye (frames 153, 202,
    248, 288, 386). Unsmoothed (a 1-2 frame blink does not survive a 5-frame mean)."""
    from components.au_detector import Detector

    media = require_media("WolfgangLanger_Pexels.mp4")
    df = Detector.pretrained(smooth_window=1).predict_video(media / "WolfgangLanger_Pexels.mp4")
    df = df[df["success"] == 1].sort_values("frame").set_index("frame")
    assert df.loc[0:69, "AU25_c"].mean() < 0.05 and df.loc[140:391, "AU25_c"].mean() > 0.7
    blink = df.loc[140:391, "AU45_c"].to_numpy().astype(int)
    onsets = int(((blink[1:] == 1) & (blink[:-1] == 0)).sum() + blink[0])
    assert 4 <= onsets <= 7, onsets
