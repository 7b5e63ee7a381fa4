"""The inference plan (components.plan): the face pipeline read from what a store recorded,
older records read as dlib's, the caller's overrides, blendshape readers on MediaPipe, the
built-in decided in one place; and the one orchestration driven sync and async alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.serving_fixtures import AUS, IMAGE_MEMBER, VIDEO_MEMBER, make_ensemble


def _member(name: str, preprocess: dict, spec: "dict | None" = None) -> "object":
    from components.ensemble import Member

    return Member(name=name, checkpoint="", model_name="", input_spec=spec or {},
                  preprocess={"image_size": 112, **preprocess}, thresholds=[0.5] * len(AUS))


def test_the_face_pipeline_is_the_one_the_store_recorded_and_older_records_read_as_dlib() -> None:
    from components.ensemble import EnsembleManifest
    from components.plan import plan_for

    recorded = EnsembleManifest(aus=AUS, members=[_member("a", {"faces": {"detector": "retinaface", "margin": 0.3}})])
    plan = plan_for(recorded)
    assert (plan.faces["detector"], plan.faces["landmarker"], plan.faces["margin"]) == ("retinaface", "dlib", 0.3)
    # A manifest that predates the record: its members were cut with the old default, dlib.
    legacy = EnsembleManifest(aus=AUS, members=[_member("a", {})])
    assert (plan_for(legacy).faces["detector"], plan_for(legacy).faces["landmarker"]) == ("dlib", "dlib")
    # The manifest's own record wins over its members'; a caller's override over both.
    legacy.faces = {"detector": "mtcnn"}
    assert plan_for(legacy).faces["detector"] == "mtcnn"
    assert plan_for(legacy, faces={"detector": "dlib"}).faces["detector"] == "dlib"


def test_a_blendshape_reader_gets_mediapipe_and_the_crop_size_stays_the_members() -> None:
    from components.ensemble import EnsembleManifest
    from components.plan import plan_for

    man = EnsembleManifest(aus=AUS, members=[_member("bs", {"faces": {"landmarker": "dlib"}, "image_size": 128},
                                                     {"blendshapes": True})])
    plan = plan_for(man, faces={"align_size": 64, "landmarker": "fan"})
    assert plan.blendshapes and plan.faces["landmarker"] == "mediapipe" and plan.align_size == 128
    cfg = plan.face_config(policy="all", landmarker="dlib", align_size=32)
    assert (cfg.policy, cfg.landmarker, cfg.align_size) == ("all", "mediapipe", 128)
    with pytest.raises(ValueError, match="odd"):
        plan_for(man, smooth_window=4)


def test_no_ensemble_means_the_builtin_in_one_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.builtin import BUILTIN_FACES
    from components.plan import resolve_ensemble

    monkeypatch.setenv("FACSFLOW_CACHE", str(tmp_path / "cache"))
    for empty in (None, ""):
        plan = resolve_ensemble(empty)
        assert plan.builtin and plan.directory.startswith(str(tmp_path / "cache"))
        assert {k: plan.faces[k] for k in BUILTIN_FACES} == BUILTIN_FACES
    ens = make_ensemble(tmp_path / "ens", [IMAGE_MEMBER], faces={"detector": "retinaface"})
    plan = resolve_ensemble(str(ens))
    assert not plan.builtin and plan.faces["detector"] == "retinaface" and plan.directory == str(ens)


def _track(face_id: int, n: int, seed: int, steps: tuple[int, ...]) -> "object":
    from components.geometry import crop_template
    from components.faces.transforms import landmark_diffs
    from components.inference import FaceTrack

    rng = np.random.default_rng(seed)
    lms = crop_template(112)[None] + rng.normal(0, 1.5, (n, 68, 2)).astype(np.float32)
    t = FaceTrack(face_id=face_id, frames=list(range(n)), crop=rng.integers(0, 256, (n, 112, 112, 3), np.uint8),
                  landmarks=lms.reshape(n, -1), info=[{"face_id": face_id}] * n, steps=steps)
    d, v = landmark_diffs(lms, steps)
    t.landmark_diff, t.diff_valid = d.reshape(n, -1), v
    return t


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> "object":
    import torch

    from components.predictor import Predictor

    torch.set_num_threads(1)
    return Predictor.from_manifest(str(make_ensemble(tmp_path_factory.mktemp("plan") / "ens",
                                                     [IMAGE_MEMBER, VIDEO_MEMBER])))


def test_the_orchestration_answers_alike_in_process_and_awaited(predictor) -> None:
    from components.inference import answer_tracks, answer_tracks_async, combine_track, forward_member

    plan = predictor.plan
    tracks = [_track(0, 70, 1, plan.steps), _track(1, 9, 2, plan.steps)]
    calls: list[tuple[int, int]] = []

    async def member(i: int, requests: list) -> list:
        calls.append((i, len(requests)))
        await asyncio.sleep(0)  # a real suspension, as a Serve handle's
        return forward_member(predictor.member(i, plan.steps), requests)

    async def combine(use, outs, window):
        return combine_track(plan.manifest, use, outs, window)

    sync = predictor.answer_tracks(tracks, True, "req", "v")
    awaited = asyncio.run(answer_tracks_async(plan, tracks, True, member, combine, "req", "v"))
    assert calls == [(0, 3), (1, 3)]  # every member once, with the 64 + 6 + 9 frame segments
    for a, b in zip(sync, awaited):
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-6)
        assert a["members"] == b["members"] == ["img-mobilenet", "vid-tosequence"]
    assert "raw_probs" in sync[0]  # videos get the plan's smoothing
    # Stills: the member that needs video is left out; a plan with none answering stills says so.
    still = answer_tracks(plan, [_track(0, 1, 3, plan.steps)], False,
                          lambda i, r: forward_member(predictor.member(i, plan.steps), r),
                          lambda use, outs, w: combine_track(plan.manifest, use, outs, w))
    assert still[0]["members"] == ["img-mobilenet"] and "raw_probs" not in still[0]


def test_store_rows_enter_as_tracks_and_come_back_in_row_order(predictor) -> None:
    from components.store.rows import encode_jpeg

    plan = predictor.plan
    tracks = [_track(0, 5, 4, plan.steps), _track(0, 4, 5, plan.steps)]
    # Two videos' rows interleaved and out of frame order, as JPEG bytes like the store holds.
    rows: dict = {k: [] for k in ("image", "landmarks", "landmark_diff", "diff_valid", "dataset", "subject", "video",
                                  "frame_order", "sample_id")}
    order = [(0, 3), (1, 0), (0, 0), (1, 3), (0, 1), (0, 4), (1, 1), (0, 2), (1, 2)]
    for v, f in order:
        t = tracks[v]
        rows["image"].append(encode_jpeg(t.crop[f], 95))
        for k, col in (("landmarks", t.landmarks), ("landmark_diff", t.landmark_diff), ("diff_valid", t.diff_valid)):
            rows[k].append(col[f])
        rows["dataset"].append("d"), rows["subject"].append(f"s{v}"), rows["video"].append("v")
        rows["frame_order"].append(f), rows["sample_id"].append(f"{v}:{f}")
    rows = {k: np.asarray(v) if k != "image" else v for k, v in rows.items()}
    ans = predictor.predict_store_rows(rows, plan.steps)
    assert ans["probs"].shape == (9, len(AUS)) and set(ans["member_probs"]) == {"img-mobilenet", "vid-tosequence"}
    # Each row's answer is its own frame's: row 1 is video 1's frame 0, answered apart from video 0.
    lone = predictor.predict_store_rows({k: (v[1:2] if k != "image" else v[1:2]) for k, v in rows.items()}, plan.steps)
    np.testing.assert_allclose(ans["member_probs"]["img-mobilenet"][1], lone["member_probs"]["img-mobilenet"][0],
                               atol=1e-5)
