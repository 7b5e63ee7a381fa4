"""Ray Train: 2-worker CPU DDP learns on held-out subjects; a killed worker resumes from the
latest checkpoint; a finished run started again is reused, not retrained; a multi-step family
(pairwise-rank) trains its steps in order as one run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

# Both the learning and the resume test are in the default run. The learning test preprocesses and
# trains the demo's run (147 s in the CI run of 2026-12-02; held-out 0.404 and 0.396 that day
# against all-positive 0.324); the resume test restarts Ray in a subprocess (107 s).


def _cfg(store: str, out: str, **kw):
    from components.store.splits import SplitConfig
    from workflows.train import TrainConfig
    from components.training import OptimConfig

    base = TrainConfig(model="baseline_resnet18_112", data=store, out=out, epochs=8, batch_size=16,
                       workers=2, worker_cpus=0.5, data_cpus=0.25, early_stop_patience=0, keep_best=1,
                       split=SplitConfig(fold=1, k=3, val_fraction=0.25),
                       optim=OptimConfig(lr=1e-3, schedule="cosine"))
    return replace(base, **kw)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, ray_local) -> str:
    """The demo's data set (8 identities x 2 pseudo-subjects x 2 videos x 40 frames), generated
    and preprocessed with the demo's settings. The tiny store (one subject per identity) leaves
    a fold 4 training subjects and 1 validation subject: too few to beat the trivial predictor."""
    from components.configuration import load_yaml
    from components.datasets.synth.generator import SynthConfig, generate
    from tests.integration.conftest import face_photos_dir
    from workflows.demo import CONFIG_DIR, DemoConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess

    root, demo = tmp_path_factory.mktemp("demo-set"), DemoConfig()
    generate(SynthConfig(out=str(root / "data"), layout="manifest", faces=str(face_photos_dir(root)), seed=0,
                         subjects_per_identity=demo.subjects_per_identity,
                         videos_per_subject=demo.videos_per_subject, frames_per_video=demo.frames_per_video))
    run_preprocess(load_yaml(PreprocessConfig, CONFIG_DIR / "preprocess-demo.yaml",
                             [f"root={root / 'data'}", f"out={root / 'store'}"]))
    return str(root / "store")


def test_two_worker_ddp_learns_and_beats_trivial(demo_store, tmp_path: Path) -> None:
    """The demo's training run (train-demo.yaml: 2 gloo workers, 6 epochs, balanced BCE), then
    evaluation with thresholds tuned on the validation subjects: the loss falls and the held-out
    mean F1 beats both trivial predictors on the same test labels."""
    from components.configuration import load_yaml
    from workflows.demo import CONFIG_DIR
    from workflows.evaluate import EvaluateConfig, run_evaluation
    from workflows.train import TrainConfig, run_training

    cfg = load_yaml(TrainConfig, CONFIG_DIR / "train-demo.yaml", [f"data={demo_store}", f"out={tmp_path / 'runs'}"])
    assert cfg.workers == 2
    summary = run_training(cfg)
    losses = [h["train_loss"] for h in summary["history"]]  # mean over both ranks' steps
    assert len(losses) == cfg.epochs
    assert (losses[-1] + losses[-2]) / 2 < 0.85 * losses[0], losses
    split = summary["split"]
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    ev = run_evaluation(EvaluateConfig(runs=(summary["run_dir"],), out=str(tmp_path / "report"),
                                       tune_thresholds=True, bootstrap=50))
    res = ev["results"]
    model_f1 = res["models"][cfg.model]["summary"]["mean_f1"]["mean"]
    trivial = {k: v["mean_f1"]["mean"] for k, v in res["trivial"]["summary"].items()}
    print(f"2-worker DDP: held-out mean F1 {model_f1:.3f}, trivial {trivial}, losses {losses}")
    assert model_f1 > max(trivial.values()), (model_f1, trivial)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "trivial" in report and (tmp_path / "report" / "report.md").is_file()


RESUME_SCRIPT = textwrap.dedent('''
    import json, sys
    from dataclasses import replace
    sys.path.insert(0, {root!r})
    from tests.integration.test_train import _cfg
    from workflows.core.runtime import init_ray
    from workflows.train import run_training
    init_ray(num_cpus=2)
    cfg = _cfg({store!r}, {out!r}, epochs=4, max_failures=2, max_steps_per_epoch=4)
    first = run_training(cfg, epoch_hook=("tests.faults:kill_worker_once",
                                          {{"at_epoch": 1, "on_rank": 1, "marker": {marker!r}}}))
    again = run_training(cfg)
    print("RESULT" + json.dumps({{"first": first, "again": again}}))
''')


def test_killed_worker_resumes_from_latest_checkpoint(tiny_store, tmp_path: Path) -> None:
    """Runs in its own Ray instance (a subprocess): a worker exits right after reporting epoch 2's
    checkpoint; the restarted group continues from a saved checkpoint, not from scratch; a second
    start reuses the result."""
    root = Path(__file__).resolve().parents[2]
    script = RESUME_SCRIPT.format(root=str(root), store=tiny_store["store"], out=str(tmp_path / "runs"),
                                  marker=str(tmp_path / "failed-once"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900, cwd=root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "failed-once").exists(), "the fault was not injected"
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    epochs = [h["epoch"] for h in out["first"]["history"]]
    assert epochs == [0, 1, 2, 3], epochs  # no epoch repeated or skipped across the restart
    # The restarted group loaded a checkpoint and went on from there: it did not start over. Which
    # one is Ray's call: the step in which a worker dies may not have its checkpoint committed
    # (measured: resumed from epoch 1's, re-running epoch 2, history [0, 1, 1, 1]), so epoch 1's
    # or epoch 2's checkpoint both count, and the history holds each epoch once either way.
    starts = [h["group_start_epoch"] for h in out["first"]["history"]]
    assert starts[0] == 0 and starts == sorted(starts) and starts[-1] in (1, 2), starts
    assert out["again"]["reused"] is True
    assert out["again"]["best_checkpoint"] == out["first"]["best_checkpoint"]


# The cross-fitting run trains three copies of f and h (186 s against 132 s, 2-core machine,
# shared): slow tier.
@pytest.mark.parametrize("crossfit", [0, pytest.param(2, marks=pytest.mark.slow)], ids=["paper", "crossfit"])
def test_pairwise_rank_trains_its_three_steps_as_one_run(tiny_store, tmp_path: Path, crossfit: int) -> None:
    """Paper 004's schedule through Ray Train on 2 workers: rank, uncertainty, mapping epochs in
    order, each step with its own learning rate, one checkpoint that serves as one model; with
    ``mapping_crossfit`` the fold copies train from the batches' subjects the same way."""
    import numpy as np

    cfg = _cfg(tiny_store["store"], str(tmp_path / "runs"), model="pairwise_rank_small", batch_size=8,
               max_steps_per_epoch=2, stage_epochs={"rank": 1, "uncertainty": 1, "mapping": 2},
               stage_lr={"mapping": 1e-2}, select="last",
               model_kwargs={"backbone": "resnet18", "mapping_hidden": [16], "mapping_crossfit": crossfit})
    from workflows.train import run_training

    summary = run_training(cfg)
    hist = summary["history"]
    assert [h["stage"] for h in hist] == ["rank", "uncertainty", "mapping", "mapping"]
    assert all(np.isfinite(h["train_loss"]) for h in hist)
    # Each epoch says how long it waited for the input pipeline: its first batch is part of the wait,
    # the wait part of the epoch (Ray Data's start of an epoch takes a measurable time).
    assert all(0 < h["first_batch_s"] <= h["data_wait_s"] < h["epoch_seconds"] for h in hist), hist
    # The logged lr is after the epoch's scheduler step: cosine over each step's own epochs, so a
    # one-epoch step ends at 0 and the mapping's two epochs start from its own peak of 1e-2.
    assert hist[2]["lr"] == pytest.approx(0.5e-2) and hist[3]["lr"] == pytest.approx(0.0, abs=1e-12)
    # select: last hands on the end of the schedule (the mapping's last epoch), whatever validation says.
    assert summary["checkpoint"] == summary["latest_checkpoint"] and summary["select"] == "last"
    with pytest.raises(ValueError, match="select"):
        replace(cfg, select="median")
    # One model at inference: the checkpoint predicts store rows through the evaluation path.
    from components.store.splits import _split_files, store_info
    from workflows.core.store_scoring import predict_store_files

    files = _split_files(tiny_store["store"], summary["split"]["test"])
    pred = predict_store_files(files, summary["checkpoint"], "checkpoint",
                               list(store_info(tiny_store["store"])["diff_steps"]))
    assert pred["probs"].shape == pred["labels"].shape and len(pred["probs"]) > 0
    assert np.isfinite(pred["probs"]).all() and ((pred["probs"] >= 0) & (pred["probs"] <= 1)).all()


def test_store_reader_gives_every_row_and_leaves_ray_data_settings_alone(tiny_store) -> None:
    """read_store_frames (the reader of training, evaluation and prediction) returns the store's
    rows exactly as pyarrow reads them, and the reader choice does not leak into the user's
    DataContext."""
    import pyarrow.dataset as pads
    import ray.data

    from components.store.splits import frames_files

    from workflows.core.store_reader import read_store_frames
    from components import storage

    files = frames_files(tiny_store["store"])
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ds = read_store_frames(files, ["sample_id", "subject"], num_cpus=0.5)
    assert ctx.use_datasource_v2 == before
    got = sorted(r["sample_id"] for r in ds.iter_rows())
    want = sorted(pads.dataset([storage.resolve(f)[1] for f in files], format="parquet")
                  .to_table(columns=["sample_id"]).column("sample_id").to_pylist())
    assert got == want and len(got) > 0


def test_crop_cache_is_built_once_read_like_the_store_and_rebuilt_when_the_store_changes(tiny_store, tmp_path) -> None:
    """Training's crop cache: the first use decodes the store into it; the cached dataset gives the
    rows the per-epoch decode gives; a second use finds it; a changed frames file makes a new
    cache and the stale one goes."""
    import shutil

    import numpy as np
    import pyarrow.parquet as pq

    from components import storage
    from components.models.registry import input_spec
    from components.store.splits import frames_files, store_info
    from workflows.core.crop_cache import ensure_crop_cache
    from workflows.core.store_reader import transformed_dataset

    store = str(tmp_path / "store")
    shutil.copytree(tiny_store["store"], store)
    info, files = store_info(store), frames_files(store)
    spec = input_spec("baseline_resnet18_112", pretrained="")
    root = ensure_crop_cache(store, info, spec.image_size, 0.5)
    marker = Path(root) / "cache.json"
    built = marker.stat().st_mtime_ns
    assert json.loads(marker.read_text())["rows"] == sum(pq.read_metadata(f).num_rows for f in files)
    assert ensure_crop_cache(store, info, spec.image_size, 0.5) == root and marker.stat().st_mtime_ns == built

    def rows(cache):
        got = transformed_dataset(files[:2], info, spec, 0.5, cache=cache).take_all()
        return sorted(got, key=lambda r: (int(r["video_index"]), int(r["frame_order"])))
    decoded, cached = rows(None), rows((store, root))
    assert len(cached) == len(decoded) > 0
    for a, b in zip(decoded, cached):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    table = pq.read_table(files[0])
    pq.write_table(table.slice(0, table.num_rows - 1), files[0])   # the store changed
    new_root = ensure_crop_cache(store, info, spec.image_size, 0.5)
    assert new_root != root and not storage.exists(root) and (Path(new_root) / "cache.json").is_file()
