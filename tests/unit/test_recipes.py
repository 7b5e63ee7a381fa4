"""The papers' recipes as shipped configs (workflows/configs/recipe-*.yaml): the published values,
a section cited and deviations marked; paper 001's step schedule and five folds; the selection
metric of papers 000/002."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.configuration import load_yaml
from components.datasets.folds import split_subjects
from components.training import OptimConfig, build_optimizer, build_scheduler
from components.store.splits import fold_spec
from workflows.train import TrainConfig


CONFIGS = Path(__file__).resolve().parents[2] / "workflows" / "configs"
RECIPES = sorted(CONFIGS.glob("recipe-*.yaml"))


def recipe(name: str) -> TrainConfig:
    return load_yaml(TrainConfig, CONFIGS / f"recipe-{name}.yaml")


def test_every_recipe_cites_its_paper_and_marks_deviations() -> None:
    assert [p.stem for p in RECIPES] == ["recipe-lrp-arl-ff-affwild2", "recipe-pairwise-rank-affwild2",
                                         "recipe-sev-net-bp4d", "recipe-to-sequence-affwild2"]
    for path in RECIPES:
        text = path.read_text()
        assert "Paper" in text.splitlines()[0] and "§" in text and "DEVIATION" in text, path.name
        assert isinstance(load_yaml(TrainConfig, path), TrainConfig)


def test_paper_001_recipe_values() -> None:
    cfg = recipe("lrp-arl-ff-affwild2")
    assert (cfg.model, cfg.epochs, cfg.batch_size * cfg.workers) == ("lrp_arl_ff", 15, 256)      # §4.2
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.schedule, cfg.optim.milestones, cfg.optim.gamma) == (
        "sgd", 0.001, "multistep", (4, 6, 8), 0.1)
    assert cfg.resample and cfg.augment.flip and cfg.augment.crop_jitter == cfg.augment.scale_jitter == 0.0
    assert cfg.select_metric == "f1" and cfg.split.train_folds == 4
    # Official split + 4 folds over the training videos: five models (§4.3).
    spec = fold_spec("affwild2", cfg.split)
    assert spec.n_folds == 5
    subjects = {f"t{i}": "train" for i in range(8)} | {"v1": "validation"}
    tests = [split_subjects(spec, k, list(subjects), splits=subjects)["test"] for k in range(1, 6)]
    assert tests[0] == ["v1"] and sorted(s for t in tests[1:] for s in t) == [f"t{i}" for i in range(8)]


def test_multistep_schedule_is_one_tenth_at_the_4th_6th_and_8th_epochs() -> None:
    cfg = recipe("lrp-arl-ff-affwild2").optim
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    sched = build_scheduler(opt, cfg, 15)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3] * 3 + [1e-4] * 2 + [1e-5] * 2 + [1e-6] * 3)
    with pytest.raises(ValueError, match="multistep' needs milestones"):
        OptimConfig(schedule="multistep")


def test_other_recipes_values() -> None:
    seq = recipe("to-sequence-affwild2")                   # papers 000 §3, 002 §3
    assert (seq.select_metric, seq.batch_size * seq.workers) == ("acc_f1", 64)
    sev = recipe("sev-net-bp4d")                            # paper 003 §4.2
    assert (sev.optim.optimizer, sev.optim.lr, sev.optim.schedule, sev.optim.gamma) == (
        "adam", 0.001, "epoch_decay", 0.85)
    assert (sev.epochs, sev.batch_size * sev.workers) == (50, 100)
    pair = recipe("pairwise-rank-affwild2")                 # paper 004 §3.1-3.3
    assert list(pair.stage_epochs) == ["rank", "uncertainty", "mapping"]
    assert pair.model_kwargs["margin"] == 1.0


def test_selection_metric_is_checked() -> None:
    assert TrainConfig().select_metric == "f1"
    with pytest.raises(ValueError, match="select_metric must be 'f1' or 'acc_f1'"):
        TrainConfig(select_metric="accuracy")


@pytest.mark.parametrize("kwargs, match", [({"freeze_stages": -1}, "freeze_stages"),
                                           ({"pretrained_lr_scale": 0.0}, "pretrained_lr_scale"),
                                           ({"pretrained_lr_scale": 1.5}, "pretrained_lr_scale")])
def test_fine_tuning_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimConfig(**kwargs)
    assert not OptimConfig().fine_tunes and OptimConfig(freeze_stages=1).fine_tunes
