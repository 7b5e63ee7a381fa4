"""A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no
CPUs and two worker nodes, each with its own raylet, object store and resources).

Preprocessing and a 2-worker DDP training run place work on both worker nodes and give the
rows (bit for bit) and the metrics (within a stated tolerance) of the same runs on one node; a
worker node removed while preprocessing runs costs nothing: the job finishes with the rows of
an undisturbed run.

The cluster runs in a subprocess (its own Ray driver, separate from the session's embedded Ray
that the one-node reference runs use). Worker nodes have 3 logical CPUs; preprocessing actors
and training workers ask for 2, so two of them cannot share a node and placement on both nodes
is forced by resources, not left to the scheduler (Ray Train packs its workers by default); the
CPU left on each node runs Ray Data's listing, read and transform tasks (listing the Parquet
files takes a whole CPU: with less free on every node, training waits forever). The node-loss run uses 1-CPU
actors, spread over both nodes by Ray Data's SPREAD scheduling, so the surviving node has room
for the restarted actor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parents[2]
FRAMES_PER_VIDEO = 12
LOSS_RTOL = 0.10
"""Train loss per epoch (averaged over every rank's steps), multi-node vs one node, relative.
Both runs have the same seed, init, data and split, no augmentation and no shuffle buffer, and
each epoch is one DDP step over the whole training set (each worker's shard is exactly one batch
of 24), so the averaged gradient does not depend on which worker got which rows. What still
differs is that assignment (Ray Data's streaming split follows block completion order), and
BatchNorm normalises each worker's batch with its own statistics. Measured: two one-node runs
whose workers got different rows differed by 0.6 % and 1.3 % (0.689/0.411 vs 0.693/0.405, when
the loss was still rank 0's own); one-node vs three-node runs gave equal losses (0.687/0.405).
10 % is that spread with margin, while a broken run (a worker without data, another store's
rows, no gradient sync) trains to a visibly different loss after the second step."""
VAL_BCE_RTOL = 0.10
"""Validation cross-entropy (``val_bce``, over known labels) per epoch, multi-node vs one node,
relative. Validation is not split (every worker scores the whole validation set with the
synchronised weights), so what differs is the training difference above carried through. Unlike
accuracy and F1 it is continuous: after two steps many frames sit near p = 0.5, where a tiny
weight difference flips them (validation accuracy at epoch 1 measured 0.896 on a CI run, 0.844
and 0.823 here; F1 0.25, 0.17, 0.15 and 0), so thresholded metrics are not compared. Measured over three
pairs of runs: 0.621/0.563, 0.616/0.571 multi-node vs 0.611/0.554 one node, at most 3.0 % apart;
10 % is that with margin, while a broken run lands elsewhere."""


def _synth(root: Path) -> dict:
    from components.datasets.synth.generator import SynthConfig, generate
    from tests.integration.conftest import face_photos_dir

    data = root / "data"
    s = generate(SynthConfig(out=str(data), layout="manifest", faces=str(face_photos_dir(root)), seed=0,
                             subjects_per_identity=1, videos_per_subject=1,
                             frames_per_video=FRAMES_PER_VIDEO))
    return {"data": str(data), "videos": s.videos, "frames": s.frames}


def _preprocess_cfg(data: str, out: str, **kw):
    from workflows.preprocess import PreprocessConfig

    return PreprocessConfig(dataset="manifest", root=data, out=out, **kw)


def _train_cfg(store: str, out: str, **kw):
    from components.batches import AugmentConfig
    from components.training import OptimConfig
    from components.store.splits import SplitConfig
    from workflows.train import TrainConfig

    # SGD: the update is the averaged gradient itself (with AdamW's sign-like first steps the
    # validation accuracy did not move in two steps, leaving nothing to compare).
    base = TrainConfig(model="baseline_resnet18_112", data=store, out=out, epochs=2, batch_size=24,
                       workers=2, worker_cpus=0.5, data_cpus=0.25, early_stop_patience=0, keep_best=1,
                       max_steps_per_epoch=1, min_steps_per_epoch=0, pos_weight="none", shuffle_buffer=0, seed=0,
                       augment=AugmentConfig(crop_jitter=0, scale_jitter=0, flip=False, brightness=0,
                                             contrast=0),
                       split=SplitConfig(fold=1, k=3, val_fraction=0.25),
                       optim=OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, schedule="none"))
    return replace(base, **kw)


def _preprocess_losing_a_node(cluster, victim, data: str, out: str, total: int) -> dict:
    """Preprocess while a thread removes ``victim`` (hard kill of all its processes) as soon as
    the first unit's completion marker appears."""
    import threading
    import time

    from workflows.preprocess import run_preprocess

    markers = Path(out) / "_markers"
    seen: dict = {}

    def remove_when_under_way() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not list(markers.rglob("*.json")):
            time.sleep(0.05)
        seen["markers_before"] = len(list(markers.rglob("*.json")))
        cluster.remove_node(victim, allow_graceful=False)
        seen["removed"] = True

    thread = threading.Thread(target=remove_when_under_way, daemon=True)
    thread.start()
    summary = run_preprocess(_preprocess_cfg(data, out, actors=2, actor_cpus=1.0))
    thread.join(timeout=60)
    seen["markers_after"] = len(list(markers.rglob("*.json")))
    return {"summary": summary, "total": total, **seen}


def _start_cluster(tmp: str, attempts: int = 3):
    """Head with no CPUs and two 3-CPU worker nodes. Ray gives a starting raylet a fixed 30 s to
    register, which a very busy 2-core machine can miss: then the whole cluster starts again (a
    late raylet of the failed attempt cannot join the new cluster, whose GCS is another one)."""
    from ray.cluster_utils import Cluster

    for attempt in range(attempts):
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": tmp,
                                                                    "include_dashboard": False})
            workers = [cluster.add_node(num_cpus=3, temp_dir=tmp) for _ in range(2)]
            cluster.wait_for_nodes(timeout=120)
            return cluster, workers
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the startup timeout
            if cluster is not None:
                cluster.shutdown()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def cluster_runs(data: str, work: str, total: int) -> dict:
    """Everything that runs on the 3-node cluster (called in a subprocess)."""
    import shutil
    import tempfile
    import traceback

    import ray

    from workflows.preprocess import run_preprocess
    from workflows.core.runtime import init_ray
    from workflows.train import run_training

    # The cluster's sessions and logs in a private temp dir, removed afterwards (short: Unix
    # socket paths have a length limit).
    tmp = tempfile.mkdtemp(prefix="ffmn", dir="/tmp")
    cluster, workers = _start_cluster(tmp)
    out: dict = {"head": cluster.head_node.node_id, "workers": [w.node_id for w in workers]}
    try:
        init_ray(cluster.address)
        ray.data.DataContext.get_current().enable_progress_bars = False
        store = f"{work}/store-multi"
        out["preprocess"] = run_preprocess(_preprocess_cfg(data, store, actors=2, actor_cpus=2.0))
        out["train"] = run_training(_train_cfg(store, f"{work}/runs-multi", worker_cpus=2.0))
        try:
            out["node_loss"] = _preprocess_losing_a_node(cluster, workers[1], data, f"{work}/store-lost", total)
        except Exception:  # noqa: BLE001 - reported by the node-loss test, not fatal to the others
            out["node_loss_error"] = traceback.format_exc()
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@pytest.fixture(scope="module")
def one_node(ray_local, tmp_path_factory) -> dict:
    """The reference: the same data preprocessed and trained on the session's one-node Ray."""
    from workflows.preprocess import run_preprocess
    from workflows.train import run_training

    root = tmp_path_factory.mktemp("multinode")
    synth = _synth(root)
    store = str(root / "store-one")
    pre = run_preprocess(_preprocess_cfg(synth["data"], store, actor_cpus=1.0))
    train = run_training(_train_cfg(store, str(root / "runs-one")))
    return {"root": root, **synth, "store": store, "preprocess": pre, "train": train,
            "node": ray_local.get_runtime_context().get_node_id()}


@pytest.fixture(scope="module")
def multi_node(one_node) -> dict:
    root = one_node["root"]
    script = ("import json, sys; sys.path.insert(0, {r!r}); "
              "from tests.integration.test_multinode import cluster_runs; "
              "print('RESULT' + json.dumps(cluster_runs({d!r}, {w!r}, {t})))"
              ).format(r=str(ROOT), d=one_node["data"], w=str(root), t=one_node["videos"])
    # RAY_agent_register_timeout_ms: a starting raylet waits for its agents' ports; on a busy
    # 2-core machine they can take longer than the default, and the raylet then aborts.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {"RAY_agent_register_timeout_ms": "120000", **os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1200,
                          cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {**json.loads(proc.stdout.split("RESULT", 1)[1]), "store": str(root / "store-multi"),
            "lost_store": str(root / "store-lost")}


def _rows(store: str):
    """Every stored frame of a store, sorted by sample id (all columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(Path(store, "frames").rglob("*.parquet"))
    assert files, f"no frames in {store}"
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("sample_id")


def _assert_same_rows(store: str, reference: str) -> None:
    assert not list(Path(store).rglob(".tmp-*")), f"{store} kept temp files of writes cut short"
    got, want = _rows(store), _rows(reference)
    assert got.column("sample_id").to_pylist() == want.column("sample_id").to_pylist()
    for col in ("landmarks", "landmark_diff", "labels", "image"):
        a = np.asarray(got.column(col).to_pylist(), dtype=object)
        b = np.asarray(want.column(col).to_pylist(), dtype=object)
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b)), col


def test_preprocess_and_training_use_both_worker_nodes_and_match_one_node(one_node, multi_node) -> None:
    head, workers = multi_node["head"], set(multi_node["workers"])
    assert len(workers) == 2 and head not in workers

    # Preprocessing: units ran on both worker nodes (never on the CPU-less head), every frame
    # landed once, and the rows equal the one-node rows exactly.
    pre = multi_node["preprocess"]
    assert set(pre["nodes"]) == workers, (pre["nodes"], workers)
    assert pre["units"] == one_node["videos"] == 8
    assert pre["rows"] + pre["rejects"] == one_node["preprocess"]["rows"] + one_node["preprocess"]["rejects"] \
        == 8 * FRAMES_PER_VIDEO
    assert pre["rows"] == one_node["preprocess"]["rows"]
    assert one_node["preprocess"]["nodes"] == [one_node["node"]]
    _assert_same_rows(multi_node["store"], one_node["store"])

    # Training: rank 0 and rank 1 ran on different worker nodes, in every epoch.
    train, ref = multi_node["train"], one_node["train"]
    for h in train["history"]:
        assert len(h["worker_nodes"]) == 2 and set(h["worker_nodes"]) == workers, h["worker_nodes"]
    for h in ref["history"]:
        assert h["worker_nodes"] == [one_node["node"]] * 2
    assert train["split"] == ref["split"]
    # 4 training subjects x 12 frames, no rejects: each worker's shard is one batch of 24, and
    # each epoch's one step sees all 48 rows on both clusters.
    assert len(ref["split"]["train"]) == 4 and one_node["preprocess"]["rejects"] == 0
    for run in (train, ref):
        assert [h["samples_all_workers"] for h in run["history"]] == [48, 48]

    # ... and its metrics are the one-node run's within the tolerances stated above.
    keys = ("train_loss", "val_bce")
    got = {k: [h[k] for h in train["history"]] for k in keys}
    want = {k: [h[k] for h in ref["history"]] for k in keys}
    assert len(got["train_loss"]) == len(want["train_loss"]) == 2
    for key, rtol in (("train_loss", LOSS_RTOL), ("val_bce", VAL_BCE_RTOL)):
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, err_msg=f"multi-node {got} vs one node {want}")
    # Both really learned: training loss down by over 10 % (measured 30 %), and the held-out
    # subject's cross-entropy down too (measured 7-9 %). Validation accuracy and F1 are not asked
    # to rise: after two steps they flip with frames at p = 0.5 (see VAL_BCE_RTOL).
    for run in (got, want):
        assert run["train_loss"][1] < 0.9 * run["train_loss"][0], run
        assert run["val_bce"][1] < run["val_bce"][0], run


def test_worker_node_removed_mid_preprocess_gives_the_undisturbed_rows(one_node, multi_node) -> None:
    assert "node_loss_error" not in multi_node, multi_node.get("node_loss_error")
    lost = multi_node["node_loss"]
    assert lost.get("removed"), "the node was not removed"
    # The node went away while work remained, and the job still finished every unit.
    assert 1 <= lost["markers_before"] < lost["total"] == 8, lost
    assert lost["markers_after"] == lost["total"]
    summary = lost["summary"]
    assert summary["rows"] + summary["rejects"] == 8 * FRAMES_PER_VIDEO
    assert Path(multi_node["lost_store"], "store.json").is_file()
    _assert_same_rows(multi_node["lost_store"], one_node["store"])
