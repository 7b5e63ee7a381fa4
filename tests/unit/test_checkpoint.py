"""The checkpoint contract: weights_only loading, strict rebuild from name + kwargs."""

from __future__ import annotations

import pytest
import torch

from components.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from components.models.registry import build_model

pytestmark = pytest.mark.unit


def test_round_trip_rebuilds_identical_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("baseline_resnet18_112", [1, 2, 4], dropout=0.1)
    ckpt = make_checkpoint(model, "baseline_resnet18_112", epoch=3, preprocess={"image_size": 112},
                           provenance={"seed": 0}, train_config={"epochs": 4}, thresholds=[0.4, 0.5, 0.6])
    path = save_checkpoint(ckpt, tmp_path / "ck")
    loaded = load_checkpoint(path)  # weights_only=True inside
    again, spec = model_from_checkpoint(loaded)
    assert loaded["epoch"] == 3 and loaded["thresholds"] == [0.4, 0.5, 0.6]
    assert again.config.dropout == 0.1 and spec.image_size == 112
    x = {"image": torch.randn(2, 3, 112, 112)}
    model.eval()
    torch.testing.assert_close(model(x)["logits"], again(x)["logits"])


def test_torch_load_weights_only_accepts_it(tmp_path) -> None:
    model = build_model("baseline_resnet18_112", [1, 2])
    path = save_checkpoint(make_checkpoint(model, "baseline_resnet18_112", epoch=0, preprocess={},
                                           provenance={}, train_config={}), tmp_path)
    assert torch.load(path, weights_only=True)["model_name"] == "baseline_resnet18_112"


def test_missing_checkpoint_is_clear(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none")


def test_read_run_names_the_selected_checkpoint_also_for_older_run_files(tmp_path) -> None:
    import json

    from workflows.train import read_run

    (tmp_path / "run.json").write_text(json.dumps({"run": "r", "best_checkpoint": "/c/best"}))
    old = read_run(str(tmp_path))
    assert (old["checkpoint"], old["select"]) == ("/c/best", "best")
    (tmp_path / "run.json").write_text(json.dumps({"run": "r", "best_checkpoint": "/c/best",
                                                   "latest_checkpoint": "/c/last", "checkpoint": "/c/last",
                                                   "select": "last"}))
    assert read_run(str(tmp_path))["checkpoint"] == "/c/last"
