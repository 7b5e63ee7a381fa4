"""components.store.neutral: each stored row's running neutral is its face track's over the
whole video in frame order, whatever order the rows come in, across chunk files; and the
benchmark that measures what restarting it changes (benchmarks/neutral_restart.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.faces.au_geometry import K, track_neutral
from components.store.neutral import files_store, row_neutral, stem_neutral, write_video_neutral

ROOT = Path(__file__).resolve().parents[2]


def _rows(seed: int = 0) -> tuple[dict, dict]:
    """Two faces of one video and one face of another, 30 frames each, rows shuffled; every
    fifth frame of face 1 has no blendshapes (MediaPipe fitted no mesh)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("sample_id", "dataset", "subject", "video", "face_id",
                                              "frame_order", "blendshapes", "geometry")}
    tracks = {}
    for video, face in (("v1", 0), ("v1", 1), ("v2", 0)):
        b = rng.uniform(0, 0.6, (30, 52)).astype(np.float32)
        g = rng.normal(0, 1, (30, K)).astype(np.float32)
        tracks[(video, face)] = (b, g)
        for t in range(30):
            missing = face == 1 and t % 5 == 0
            rows["sample_id"].append(f"{video}/{t}/{face}")
            rows["dataset"].append("d")
            rows["subject"].append("s")
            rows["video"].append(video)
            rows["face_id"].append(face)
            rows["frame_order"].append(t)
            rows["blendshapes"].append(None if missing else b[t].tolist())
            rows["geometry"].append(None if missing else g[t].tolist())
    order = rng.permutation(len(rows["sample_id"]))
    return {k: [v[i] for i in order] for k, v in rows.items()}, tracks


def test_each_row_gets_its_face_tracks_neutral_in_frame_order() -> None:
    rows, tracks = _rows()
    got = dict(zip(rows["sample_id"], row_neutral(rows)))
    for (video, face), (b, g) in tracks.items():
        keep = [t for t in range(30) if not (face == 1 and t % 5 == 0)]
        want = track_neutral(b[keep], g[keep])
        for j, t in enumerate(keep):
            np.testing.assert_allclose(got[f"{video}/{t}/{face}"], want[j], atol=1e-6)
        for t in set(range(30)) - set(keep):
            assert got[f"{video}/{t}/{face}"] is None  # no blendshapes, no neutral
    # The neutral moves with the track (a person's, not a constant) and differs between faces.
    a, b = np.asarray(got["v1/29/0"]), np.asarray(got["v1/29/1"])
    assert np.abs(a - np.asarray(got["v1/3/0"])).max() > 0 and np.abs(a - b).max() > 0


def test_a_video_in_chunk_files_gets_one_neutral_across_them(tmp_path: Path) -> None:
    """Two chunk files of one video: the second chunk's neutral reads the first chunk's frames,
    and each file's table lists its own rows in its order."""
    rows, tracks = _rows()
    face0 = sorted((i for i, (v, f) in enumerate(zip(rows["video"], rows["face_id"])) if v == "v1" and f == 0),
                   key=lambda i: rows["frame_order"][i])
    store = tmp_path / "store"
    stems = ["d/s/v1.c0000", "d/s/v1.c0001"]
    for stem, part in zip(stems, (face0[:12], face0[12:])):
        path = store / "frames" / f"{stem}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pydict({k: [v[i] for i in part] for k, v in rows.items()}), path)
    assert write_video_neutral(str(store), stems + ["d/s/v1.c0002"]) == 30  # a chunk without rows: skipped
    b, g = tracks[("v1", 0)]
    want = track_neutral(b, g)
    second = [rows["sample_id"][i] for i in face0[12:]]
    got = stem_neutral(str(store), stems[1], list(reversed(second)))
    np.testing.assert_allclose(np.array(got), want[12:][::-1], atol=1e-6)
    assert stem_neutral(str(store), "d/s/absent", ["x"]) is None
    assert stem_neutral(str(store), stems[0], ["not a row"]) == [None]
    files = [str(store / "frames" / f"{s}.parquet") for s in stems]
    assert files_store(files) == str(store) and files_store([str(tmp_path / "x.parquet")]) == ""


def _bench():
    spec = importlib.util.spec_from_file_location("neutral_restart_bench", ROOT / "benchmarks" / "neutral_restart.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmark_restarts_the_neutral_per_block_and_counts_changed_decisions_by_hand() -> None:
    bench = _bench()
    _, tracks = _rows()
    b, g = tracks[("v2", 0)]
    got = bench.restarted_neutral(b, g, 8)
    np.testing.assert_allclose(got[16:24], track_neutral(b[16:24], g[16:24]), atol=1e-6)
    np.testing.assert_allclose(got[:8], track_neutral(b, g)[:8], atol=1e-6)  # the first block: the same
    # Two frames, two AUs at thresholds 0.5 and 0.3: one of four decisions differs (AU 2, frame 1).
    probs = np.array([[0.6, 0.2], [0.4, 0.35]])
    ref = np.array([[0.7, 0.1], [0.45, 0.25]])
    r = bench.flips(probs, ref, np.array([0.5, 0.3]), [1, 2])
    assert r["flipped"] == 0.25 and r["flipped_per_au"] == {1: 0.0, 2: 0.5}
    assert abs(r["mean_abs_dp"] - (0.1 + 0.1 + 0.05 + 0.1) / 4) < 1e-12
