"""The built-in detector end to end on a local Ray: ``facsflow predict`` with no ensemble writes
CSVs for the posed photos whose AU probabilities pass the FACS prototype contrasts, and
``facsflow serve`` with no ensemble answers a real photo over HTTP with the built-in's model card."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import require_media

pytestmark = pytest.mark.integration

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
    rows = {expr: pd.read_csv(out / f"{name}.csv").iloc[0] for expr, name in POSED.items()}
    for expr, row in rows.items():
        assert row["success"] == 1, expr
    for col, face in CONTRASTS.items():
        assert max(rows, key=lambda e: rows[e][col]) == face, {e: rows[e][col] for e in rows}


def test_serve_without_ensemble_answers_a_real_photo(ray_local) -> None:
    import httpx
    from ray import serve

    from workflows.serve import builtin_app, start

    media = require_media("0-f15-hao-ph.jpg")
    ensemble, app = builtin_app({"ingress": {"max_replicas": 1}, "faces": {"max_replicas": 1},
                                 "member": {"max_replicas": 1}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        url = start(ensemble, "127.0.0.1", port, app=app)
        with httpx.Client(base_url=url, timeout=300) as c:
            card = c.get("/v1/models").json()["model_card"]
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
