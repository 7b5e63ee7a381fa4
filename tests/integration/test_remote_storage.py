"""Remote storage for real: preprocess → train → evaluate with the feature store, the runs and
the checkpoints on an S3-compatible server (moto's server mode on 127.0.0.1, the one stand-in
this suite allows: it plays the cloud API, everything above it is the real code path).

The pipeline runs in a subprocess with its own embedded Ray, started after AWS_ENDPOINT_URL and
the credentials are in the environment, so every Ray worker (preprocessing actors, Ray Train
workers, Ray Data tasks, prediction actors) inherits them, as on a cluster whose nodes carry the
cloud credentials. The test then looks into the bucket itself with boto3.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


BUCKET = "facsflow-it"
ROOT = Path(__file__).resolve().parents[2]


def _aws_env(endpoint: str) -> dict[str, str]:
    """What a node needs to reach the bucket (moto accepts any credentials)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "facsflow-test",
            "AWS_SECRET_ACCESS_KEY": "facsflow-test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3-compatible server on 127.0.0.1 (free port) with an empty bucket."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _client(endpoint: str):
    import boto3

    env = _aws_env(endpoint)
    return boto3.client("s3", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _keys(endpoint: str, prefix: str) -> list[str]:
    pages = _client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def remote_pipeline(data: str, base: str, report: str) -> dict:
    """preprocess → train → evaluate with every store/run path under the ``base`` URI (run in a
    fresh process whose environment points at the S3 server)."""
    import ray

    from components.batches import AugmentConfig
    from components.training import OptimConfig
    from components.store.splits import SplitConfig
    from workflows.evaluate import EvaluateConfig, run_evaluation
    from workflows.preprocess import PreprocessConfig, run_preprocess
    from workflows.core.runtime import init_ray
    from workflows.train import TrainConfig, run_training

    init_ray(num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    store, runs = f"{base}/store", f"{base}/runs"
    pre = run_preprocess(PreprocessConfig(dataset="manifest", root=data, out=store, actor_cpus=1.0))
    train = run_training(TrainConfig(
        model="baseline_resnet18_112", data=store, out=runs, epochs=2, batch_size=8, workers=2,
        worker_cpus=0.5, data_cpus=0.25, early_stop_patience=0, keep_best=1, max_steps_per_epoch=2,
        shuffle_buffer=0, augment=AugmentConfig(crop_jitter=0, scale_jitter=0, flip=False,
                                                brightness=0, contrast=0),
        split=SplitConfig(fold=1, k=3, val_fraction=0.25), optim=OptimConfig(lr=1e-3)))
    ev = run_evaluation(EvaluateConfig(runs=(runs,), out=report, bootstrap=0))
    [fold] = ev["results"]["models"]["baseline_resnet18_112"]["folds"]
    return {"preprocess": pre, "train": train, "thresholds": ev["thresholds"],
            "test_subjects": fold["n_subjects"]}


def _synth(root: Path) -> Path:
    from components.datasets.synth.generator import SynthConfig, generate
    from tests.integration.conftest import face_photos_dir

    data = root / "data"
    generate(SynthConfig(out=str(data), layout="manifest", faces=str(face_photos_dir(root)), seed=0,
                         subjects_per_identity=1, videos_per_subject=1, frames_per_video=12))
    return data


def test_store_runs_and_checkpoints_live_in_the_bucket(s3_endpoint, tmp_path: Path, monkeypatch) -> None:
    import torch

    from components.checkpoint import load_checkpoint, model_from_checkpoint

    data = _synth(tmp_path)
    base = f"s3://{BUCKET}/exp"
    script = ("import json, sys; sys.path.insert(0, {root!r}); "
              "from tests.integration.test_remote_storage import remote_pipeline; "
              "print('RESULT' + json.dumps(remote_pipeline({data!r}, {base!r}, {report!r})))"
              ).format(root=str(ROOT), data=str(data), base=base, report=str(tmp_path / "report"))
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, **_aws_env(s3_endpoint), "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                          cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])

    # Nothing landed on the local disk under a path spelled like the URI.
    assert not any(work.iterdir()), sorted(p.name for p in work.iterdir())

    # The feature store is in the bucket: one frames/ and one rejects/ file and one marker per
    # video (8 identities x 1 video), store.json last.
    store = _keys(s3_endpoint, "exp/store/")
    frames = [k for k in store if k.startswith("exp/store/frames/") and k.endswith(".parquet")]
    rejects = [k for k in store if k.startswith("exp/store/rejects/") and k.endswith(".parquet")]
    markers = [k for k in store if k.startswith("exp/store/_markers/") and k.endswith(".json")]
    assert len(frames) == len(rejects) == len(markers) == out["preprocess"]["units"] == 8, store
    assert "exp/store/store.json" in store
    assert out["preprocess"]["rows"] + out["preprocess"]["rejects"] == out["preprocess"]["frames_in"] == 96

    # The run (metrics, split, run.json) and Ray Train's checkpoints are in the bucket too.
    train = out["train"]
    run = f"exp/runs/{train['run']}/"
    keys = _keys(s3_endpoint, run)
    for name in ("run.json", "split.json", "metrics.jsonl"):
        assert run + name in keys, keys
    ckpts = [k for k in keys if k.endswith("/checkpoint.pt")]
    assert ckpts, keys
    assert train["best_checkpoint"].startswith(f"s3://{BUCKET}/{run}checkpoint_"), train["best_checkpoint"]
    best_key = train["best_checkpoint"][len(f"s3://{BUCKET}/"):] + "/checkpoint.pt"
    assert best_key in ckpts
    assert [h["epoch"] for h in train["history"]] == [0, 1]
    run_json = json.loads(_client(s3_endpoint).get_object(Bucket=BUCKET, Key=run + "run.json")["Body"].read())
    assert run_json["best_checkpoint"] == train["best_checkpoint"]

    # Evaluation found the run in the bucket and predicted its test subjects with its checkpoint.
    [(run_dir, thr)] = out["thresholds"].items()
    assert run_dir == f"{base}/runs/{train['run']}" and thr["checkpoint"] == train["best_checkpoint"]
    assert out["test_subjects"] == len(train["split"]["test"]) >= 1
    assert (tmp_path / "report" / "report.json").is_file()

    # The checkpoint loads back from S3 with weights_only=True, directly and through facsflow.
    blob = _client(s3_endpoint).get_object(Bucket=BUCKET, Key=best_key)["Body"].read()
    raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    for k, v in _aws_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    ckpt = load_checkpoint(train["best_checkpoint"])
    assert ckpt["model_name"] == raw["model_name"] == "baseline_resnet18_112"
    assert ckpt["preprocess"]["store"] == f"{base}/store"
    model, _ = model_from_checkpoint(ckpt)  # strict load: every weight present
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["state_dict"][name]), name


def test_a_video_job_reads_and_writes_the_bucket_and_carries_on(s3_endpoint, tmp_path: Path, monkeypatch) -> None:
    """A video job (components/video_jobs.py, what POST /v1/jobs runs) whose video and folder are
    s3:// URIs: its parts, carry and status land in the bucket; stopped after its first part and
    taken up by a fresh Detector (another replica), it ends with predict's rows, every frame once."""
    import pandas as pd

    from components import video_jobs as vj
    from components.au_detector import Detector
    from components.datasets.video_io import loop_video
    from tests.conftest import require_media

    for k, v in _aws_env(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    media = require_media("WolfgangLanger_Pexels.mp4")
    clip = loop_video(media / "WolfgangLanger_Pexels.mp4", tmp_path / "clip.avi", 150, 320)
    _client(s3_endpoint).upload_file(str(clip), BUCKET, "videos/clip.avi")
    root = f"s3://{BUCKET}/jobs"
    job = vj.new_job(root, f"s3://{BUCKET}/videos/clip.avi")
    parts = lambda: [k for k in _keys(s3_endpoint, f"jobs/{job['id']}/parts/") if k.endswith(".parquet")]  # noqa: E731
    first = vj.run_job(Detector.pretrained(), root, job["id"], 64, stop=lambda: bool(parts()))
    assert first["state"] == "running" and first["segments"] == 1, first  # stopped, left for another runner
    det = Detector.pretrained()
    final = vj.run_job(det, root, job["id"], 64)
    assert final["state"] == "done" and final["runs"] == 2 and final["resumed_from"] == 64, final
    keys = _keys(s3_endpoint, f"jobs/{job['id']}/")
    assert {f"jobs/{job['id']}/{k}" for k in ("job.json", "status.json", "carry.pkl")} <= set(keys)
    assert len(parts()) == 3
    got = vj.result_table(root, job["id"]).to_pandas()
    assert got["frame"].tolist() == list(range(150))
    pd.testing.assert_frame_equal(got, det.predict_video(clip), check_dtype=False, atol=1e-6)
