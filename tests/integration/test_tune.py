"""facsflow tune: ASHA over real Ray Train runs on a tiny synthetic feature store.

The search itself (``test_asha_stops_weak_trials_and_writes_a_trainable_best_config``) runs the
``facsflow tune`` entrypoint on an embedded local Ray; the other tests check the search config,
the resource arithmetic and every shipped search space without Ray.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from components.configuration import ConfigError, load_yaml
from tests.conftest import require_media
from workflows.demo import DEMO_FACE_PHOTOS, link_face_photos
from workflows.train import TrainConfig


ROOT = Path(__file__).resolve().parents[2]
MAX_T = 3

# Tiny on purpose: 1-worker trials of the fastest CPU model, 2 steps of 8 frames per epoch, so
# 4 trials x 3 epochs fit in a few minutes on 2 cores. The learning rate spans four decades so the
# trials really differ after one epoch and ASHA has something to cut. ASHA ranks on train_loss
# here: after 2 steps most trials predict every AU absent, so validation F1 at the 0.5 threshold is
# exactly 0 for several of them, and ASHA never cuts a tie.
SEARCH_YAML = f"""
train:
  model: baseline_mobilenetv3_112
  split: {{fold: 1, folds: kfold, k: 3, val_fraction: 0.34}}
  epochs: {MAX_T}
  batch_size: 8
  workers: 1
  worker_cpus: 0.5
  data_cpus: 0.25
  shuffle_buffer: 0
  max_steps_per_epoch: 2
  early_stop_patience: 0
  keep_best: 1
  max_failures: 0
space:
  optim.lr: {{kind: loguniform, low: 1.0e-5, high: 1.0e-1}}
  model_kwargs.dropout: {{kind: uniform, low: 0.0, high: 0.5}}
samples: 4
max_concurrent_trials: 1
metric: train_loss
mode: min
asha: {{grace_period: 1, reduction_factor: 2}}
"""


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for this module, one trial at a time (max_concurrent_trials: 1).

    4 logical CPUs on a 2-core machine leave room for the 0.5-CPU placement group of each trial
    that ASHA stops: Ray Train 2.60 removes it from a detached cleaner actor that finds its cluster
    by auto-detection, and on a host running several Ray instances it may query another one and
    leave the group in place until Ray shuts down. With 2 CPUs one such group starves the next
    trial's data pipeline (Ray Data's file listing takes a whole CPU).
    """
    # Trials start worker processes on a machine shared with other work: give them time.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
    import ray

    from workflows.core.runtime import ray_session

    if ray.is_initialized():  # another module's 2-CPU Ray would be reused as is
        ray.shutdown()
    with ray_session(num_cpus=4) as resources:
        yield resources


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, local_ray) -> Path:
    """Synthetic manifest dataset from the real face photos (one 16-frame video per identity),
    preprocessed into a feature store."""
    media = require_media(*DEMO_FACE_PHOTOS)
    from components.datasets.synth.generator import SynthConfig, generate
    from components.faces.pipeline import FacePipelineConfig
    from workflows.preprocess import PreprocessConfig, run_preprocess

    work = tmp_path_factory.mktemp("tune-store")
    faces = link_face_photos(media, work)
    generate(SynthConfig(out=str(work / "synth"), layout="manifest", faces=str(faces),
                         subjects_per_identity=1, videos_per_subject=1, frames_per_video=16))
    summary = run_preprocess(PreprocessConfig(dataset="manifest", root=str(work / "synth"),
                                              out=str(work / "store"), face=FacePipelineConfig(),
                                              actor_cpus=0.5))
    assert summary["rows"] > 0
    return work / "store"


def test_asha_stops_weak_trials_and_writes_a_trainable_best_config(tiny_store: Path, tmp_path: Path) -> None:
    from workflows import train
    from workflows.tune import main

    config = tmp_path / "search.yaml"
    config.write_text(SEARCH_YAML)
    out = tmp_path / "tune"
    assert main(["--config", str(config), "--data", str(tiny_store), "--out", str(out)]) == 0

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4
    assert {r["status"] for r in rows} <= {"completed", "stopped_early"}, rows
    epochs = sorted(int(r["epochs_run"]) for r in rows)
    assert epochs[-1] == MAX_T, epochs  # ASHA lets the leader run to max_t
    stopped = [r for r in rows if r["status"] == "stopped_early"]
    assert stopped and all(int(r["epochs_run"]) < MAX_T for r in stopped), rows
    for r in rows:
        run_dir = Path(r["run_dir"])
        assert run_dir.parent == out / "trials"
        # Tune's count is the Train run's: every epoch the trial ran left a checkpointed report.
        assert (run_dir / "metrics.jsonl").is_file(), r
        # A stopped trial's Train run was killed with its driver: it never wrote its summary.
        assert (run_dir / "run.json").is_file() == (r["status"] == "completed"), r
    lrs = {float(r["optim.lr"]) for r in rows}
    assert len(lrs) == 4 and all(1e-5 <= lr <= 1e-1 for lr in lrs)

    best_path = out / "best_config.yaml"
    cfg = train.config_from_args(train.build_parser().parse_args(["--config", str(best_path)]))
    best = min(rows, key=lambda r: float(r["best_train_loss"]))
    assert cfg.optim.lr == pytest.approx(float(best["optim.lr"]))
    assert cfg.model_kwargs["dropout"] == pytest.approx(float(best["model_kwargs.dropout"]))
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.workers) == ("baseline_mobilenetv3_112", MAX_T, 8, 1)
    assert cfg.data == str(tiny_store) and cfg.out == str(out / "runs") and cfg.name == ""
    assert "facsflow train --config" in best_path.read_text().splitlines()[1]


def test_concurrency_from_cluster_resources() -> None:
    from workflows.core.runtime import UserError
    from workflows.tune import concurrent_trials, trial_resources

    cpu = TrainConfig(workers=1, worker_cpus=0.5, data_cpus=0.25)
    # 0.1 driver + 1 x 0.5 worker + 1 whole CPU for the data pipeline = 1.6 CPUs a trial.
    assert trial_resources(cpu, 0.1) == {"CPU": pytest.approx(1.6), "GPU": 0.0}
    assert concurrent_trials({"CPU": 2.0}, trial_resources(cpu, 0.1), samples=4) == 1
    assert concurrent_trials({"CPU": 4.0}, trial_resources(cpu, 0.1), samples=4) == 2
    assert concurrent_trials({"CPU": 4.0}, trial_resources(cpu, 0.1), samples=1) == 1
    # 0.2 + 0.8 + 1 is 2.0 only up to rounding: 6 CPUs still fit exactly 3 trials.
    assert concurrent_trials({"CPU": 6.0}, trial_resources(TrainConfig(workers=1, worker_cpus=0.8), 0.2),
                             samples=8) == 3
    gpu = TrainConfig(workers=2, gpu=True, worker_cpus=4.0, data_cpus=1.5)
    # 0.1 + 2 x 4 + 2 (1.5 rounded up) = 10.1 CPUs and 2 GPUs a trial: 64 CPUs / 8 GPUs -> min(6, 4).
    assert trial_resources(gpu, 0.1) == {"CPU": pytest.approx(10.1), "GPU": 2.0}
    assert concurrent_trials({"CPU": 64.0, "GPU": 8.0}, trial_resources(gpu, 0.1), samples=16) == 4
    assert concurrent_trials({"CPU": 64.0, "GPU": 8.0}, trial_resources(gpu, 0.1), samples=16, cap=3) == 3
    with pytest.raises(UserError, match="one trial needs"):
        concurrent_trials({"CPU": 16.0}, trial_resources(gpu, 0.1), samples=4)


def test_search_config_rejects_what_a_search_must_not_vary(tmp_path: Path) -> None:
    from workflows.tune import SearchConfig

    def load(space: str, extra: str = "") -> SearchConfig:
        f = tmp_path / "s.yaml"
        f.write_text(f"space:\n  {space}\n{extra}")
        return load_yaml(SearchConfig, f)

    assert load("optim.lr: {kind: loguniform, low: 1.0e-4, high: 1.0e-2}").space["optim.lr"].high == 0.01
    with pytest.raises(ConfigError, match="space.workers: fixed during a search"):
        load("workers: {kind: choice, values: [1, 2]}")
    with pytest.raises(ConfigError, match="space.split.fold: fixed"):
        load("split.fold: {kind: choice, values: [1, 2]}")
    with pytest.raises(ConfigError, match="space.optim.lrr: not a TrainConfig field"):
        load("optim.lrr: {kind: uniform, low: 0.1, high: 0.2}")
    with pytest.raises(ConfigError, match="loguniform needs low > 0"):
        load("optim.lr: {kind: loguniform, low: 0.0, high: 0.1}")
    with pytest.raises(ConfigError, match="metric 'val_f1' is not reported by training"):
        load("optim.lr: {kind: uniform, low: 0.1, high: 0.2}", "metric: val_f1\n")


def test_apply_params_sets_dotted_fields_with_types() -> None:
    from components.configuration import to_dict
    from workflows.tune import apply_params

    base = to_dict(TrainConfig(model="baseline_resnet18_112", data="/s", out="/o"))
    cfg = apply_params(base, {"optim.lr": "3e-4", "batch_size": 16.0, "model_kwargs.dropout": 0.25})
    assert (cfg.optim.lr, cfg.batch_size, cfg.model_kwargs, cfg.data) == (3e-4, 16, {"dropout": 0.25}, "/s")
    assert base["optim"]["lr"] == 1e-3  # the base mapping is left as it was
    with pytest.raises(ConfigError, match="batch_size: expected an integer"):
        apply_params(base, {"batch_size": 16.5})


@pytest.mark.parametrize("path", sorted((ROOT / "workflows" / "configs").glob("tune-*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_build_their_family(path: Path) -> None:
    """Every shipped space parses, and its lower corner builds the family's small model."""
    from components.configuration import to_dict
    from components.models.registry import build_model, list_models, model_info
    from workflows.tune import SearchConfig, apply_params, default_config_path

    search = load_yaml(SearchConfig, path)
    family = model_info(search.train.model).family
    assert default_config_path(search.train.model) == path
    small = next(m.name for m in list_models() if m.family == family and "small" in m.tags)
    cfg = apply_params(to_dict(search.train), {k: p.example() for k, p in search.space.items()})
    model = build_model(small, [1, 2, 4, 6, 12], **cfg.model_kwargs)
    assert cfg.model_kwargs, "every family's space tunes at least one model argument"
    for key, value in cfg.model_kwargs.items():
        assert getattr(model.config, key) == value, key
