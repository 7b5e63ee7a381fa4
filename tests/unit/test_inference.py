"""The Ray-free inference orchestration (components.inference): video keys per request and face,
segments, member passes that never join two requests of one video, reassembly, smoothing.

A real pairwise-rank member (seeded random weights) shows why the keys matter: it reads its
video context G (paper 004 §3.3) from the batch, so joining two clients' frames without keys
changes its answers, and with keys the answer of a request does not depend on who shared its
forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.serving_fixtures import AUS, IMAGE_MEMBER, VIDEO_MEMBER, make_ensemble


PAIRWISE_MEMBER = ("pair-rank", "pairwise_rank_small", {})
"""A member that reads video context from the batch (window statistics over the same video)."""


def _track(face_id: int, n: int, seed: int, steps: tuple[int, ...] = ()) -> "object":
    from components.geometry import crop_template
    from components.faces.transforms import landmark_diffs
    from components.inference import FaceTrack

    rng = np.random.default_rng(seed)
    lms = crop_template(112)[None] + rng.normal(0, 1.5, (n, 68, 2)).astype(np.float32)
    t = FaceTrack(face_id=face_id, frames=list(range(n)), crop=rng.integers(0, 256, (n, 112, 112, 3), np.uint8),
                  landmarks=lms.reshape(n, -1).astype(np.float32), info=[{"face_id": face_id}] * n,
                  steps=steps)
    if steps:
        d, v = landmark_diffs(lms, steps)
        t.landmark_diff, t.diff_valid = d.reshape(n, -1), v
    return t


def test_segments_carry_the_request_face_and_input_as_video_key() -> None:
    from components.inference import gather_outputs, member_inputs
    from components.video_key import video_keys

    tracks = [_track(0, 70, 0, (1, 2)), _track(3, 5, 1, (1, 2))]
    inputs = member_inputs(tracks, "req-a", "talk.mp4", video=True, segment=64)
    assert [inp.parts for inp in inputs] == [[(0, 0, 64)], [(0, 64, 6)], [(1, 0, 5)]]
    assert set(video_keys(inputs[0].batch)) == {"req-a/0/talk.mp4"}
    assert set(video_keys(inputs[2].batch)) == {"req-a/3/talk.mp4"}
    assert inputs[1].batch["frame_order"].tolist() == list(range(64, 70))
    assert inputs[1].batch["landmark_diff"].shape == (6, 2 * 136)
    # Outputs come back per track in frame order: here each row's output is its frame number.
    outs = [{"probs": inp.batch["frame_order"][:, None] * np.ones((1, 2)), "batch_faces": 99} for inp in inputs]
    per_track = gather_outputs(tracks, inputs, outs)
    assert per_track[0]["probs"][:, 0].tolist() == list(range(70)) and set(per_track[0]) == {"probs"}
    assert per_track[1]["probs"][:, 1].tolist() == list(range(5))
    # A still: one request, every face its own key, even when the tracker gave them one id.
    still = member_inputs([_track(0, 1, 2), _track(0, 1, 3)], "req-b", "photo.jpg", video=False)
    assert len(still) == 1 and video_keys(still[0].batch) == ["req-b/face0/photo.jpg", "req-b/face1/photo.jpg"]


def test_forward_passes_never_join_two_requests_of_one_video() -> None:
    from components.inference import _passes

    def req(*keys: str) -> dict:
        return {"dataset": np.array(["r"] * len(keys)), "subject": np.array(["0"] * len(keys)),
                "video": np.array(list(keys))}

    # Requests 0 and 2 are two segments of video a: never one pass; 1 (b) joins 0; 3 (a still's
    # faces: other columns) has its own pass; 4 holds b again, so it joins 2, not 0 and 1.
    batches = [req("a", "a"), req("b"), req("a"), {"crop": np.zeros((1, 2))}, req("c", "b")]
    assert _passes(batches) == [[0, 1], [2, 4], [3]]


@pytest.fixture(scope="module")
def pairwise(tmp_path_factory: pytest.TempPathFactory) -> "object":
    import torch

    from components.predictor import Predictor

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("inference")
    return Predictor.from_manifest(str(make_ensemble(Path(root) / "ens", [PAIRWISE_MEMBER])))


def test_a_request_gets_the_same_answer_whoever_shares_its_forward_pass(pairwise) -> None:
    from components.inference import forward_member, member_inputs

    # Two clients each send frames of their face 0 of "video": the same face id and input name.
    a = member_inputs([_track(0, 20, 10)], "client-a", "video", video=True)[0].batch
    b = member_inputs([_track(0, 20, 11)], "client-b", "video", video=True)[0].batch
    steps = (1,)
    alone = [forward_member(pairwise.member(0, steps), [x])[0]["probs"] for x in (a, b)]
    joined = forward_member(pairwise.member(0, steps), [a, b])
    assert [o["batch_faces"] for o in joined] == [40, 40]  # one forward pass for both clients
    for lone, shared in zip(alone, joined):
        np.testing.assert_allclose(shared["probs"], lone, atol=1e-5)
    # Without the keys (how Serve batched before) the member reads both clients' frames as one
    # video's context, and client a's answer changes with client b's frames.
    strip = ("dataset", "subject", "video")
    mixed = pairwise.member_probs(0, {k: np.concatenate([a[k], b[k]]) for k in a if k not in strip}, steps)
    assert np.abs(mixed["probs"][:20] - alone[0]).max() > 1e-4


def test_smoothing_runs_over_each_video_in_frame_order() -> None:
    from components.inference import smooth_by_video

    # Rows of two videos interleaved and out of frame order; window 3, edges repeated.
    batch = {"dataset": np.array(["d"] * 6), "subject": np.array(["s1", "s2", "s1", "s2", "s1", "s2"]),
             "video": np.array(["v"] * 6)}
    order = np.array([2, 0, 0, 1, 1, 2])
    probs = np.array([[0.9], [0.0], [0.0], [0.3], [0.3], [0.6]])
    out = smooth_by_video(probs, batch, order, 3)
    # s1 in frame order: 0.0, 0.3, 0.9 → (0+0+0.3)/3, (0+0.3+0.9)/3, (0.3+0.9+0.9)/3
    np.testing.assert_allclose(out[[2, 4, 0], 0], [0.1, 0.4, 0.7])
    # s2 in frame order: 0.0, 0.3, 0.6 → 0.1, 0.3, 0.5
    np.testing.assert_allclose(out[[1, 3, 5], 0], [0.1, 0.3, 0.5])
    np.testing.assert_array_equal(smooth_by_video(probs, batch, order, 1), probs)
    with pytest.raises(ValueError, match="no 'video' column"):
        smooth_by_video(probs, {"subject": batch["subject"]}, order, 3)


def test_combine_track_smooths_and_thresholds_the_smoothed_values() -> None:
    from components.ensemble import EnsembleManifest, Member
    from components.inference import combine_track

    m = Member(name="m", checkpoint="", model_name="", input_spec={}, preprocess={}, thresholds=[0.5])
    man = EnsembleManifest(aus=[12], members=[m], thresholds=[0.5])
    raw = np.array([[0.0], [0.0], [0.9], [0.9], [0.9]])
    ans = combine_track(man, [0], [{"probs": raw}], smooth_window=3)
    np.testing.assert_allclose(ans["probs"][:, 0], [0.0, 0.3, 0.6, 0.9, 0.9])
    np.testing.assert_array_equal(ans["raw_probs"], raw)
    assert ans["occurrence"][:, 0].tolist() == [0, 0, 1, 1, 1]
    assert "raw_probs" not in combine_track(man, [0], [{"probs": raw}], smooth_window=1)


def test_plan_adds_step_one_and_leaves_video_members_out_of_stills(tmp_path: Path) -> None:
    from components.ensemble import EnsembleManifest, Member
    from components.plan import plan_for

    def member(name: str, spec: dict, size: int) -> Member:
        return Member(name=name, checkpoint="", model_name="", input_spec=spec, preprocess={"image_size": size},
                      thresholds=[0.5] * len(AUS))

    man = EnsembleManifest(aus=AUS, members=[member(IMAGE_MEMBER[0], {}, 112),
                                             member(VIDEO_MEMBER[0], {"diff_steps": [2, 4]}, 112),
                                             member(PAIRWISE_MEMBER[0], {"window": 8}, 128)])
    plan = plan_for(man)
    assert (plan.image_use, plan.video_use, plan.steps, plan.align_size) == ((0,), (0, 1, 2), (1, 2, 4), 128)
    assert plan.member_steps == (2, 4)
