"""The checkpoint contract: weights_only loading, strict rebuild from name + kwargs, and a
pretrained backbone recorded by name, never by this machine's path."""

from __future__ import annotations

import pytest
import torch

from components.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from components.models.registry import build_model



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


def test_pretrained_baseline_checkpoint_stores_the_weights_name_not_the_path(tmp_path) -> None:
    import torchvision

    from workflows.train import checkpoint_train_config

    weights = tmp_path / "weights" / "resnet18-imagenet.pth"
    weights.parent.mkdir()
    donor = torchvision.models.resnet18(weights=None)
    torch.save(donor.state_dict(), weights)
    model = build_model("baseline_resnet18_112", [1, 2], pretrained=str(weights))
    assert torch.equal(model.features[0].weight, donor.conv1.weight)
    train = {"model": "baseline_resnet18_112", "model_kwargs": {"pretrained": str(weights), "dropout": 0.1}}
    path = save_checkpoint(make_checkpoint(model, "baseline_resnet18_112", epoch=0, preprocess={}, provenance={},
                                           train_config=checkpoint_train_config(train)), tmp_path / "ck")
    raw = (tmp_path / "ck" / "checkpoint.pt").read_bytes()
    assert str(weights.parent).encode() not in raw, "the checkpoint names a local weights path"
    loaded = load_checkpoint(path)
    assert loaded["pretrained"] == "resnet18-imagenet.pth" and "pretrained" not in loaded["model_kwargs"]
    assert loaded["train_config"]["model_kwargs"] == {"pretrained": "resnet18-imagenet.pth", "dropout": 0.1}
    weights.unlink()    # the serving host has no weights file: the state dict carries them
    again, _ = model_from_checkpoint(loaded)
    assert torch.equal(again.features[0].weight, donor.conv1.weight) and again.pretrained == "resnet18-imagenet.pth"


def test_older_checkpoints_with_a_pretrained_path_rebuild_without_the_file(tmp_path) -> None:
    model = build_model("baseline_resnet18_112", [1, 2])
    ckpt = make_checkpoint(model, "baseline_resnet18_112", epoch=0, preprocess={}, provenance={}, train_config={})
    ckpt["model_kwargs"]["pretrained"] = str(tmp_path / "gone.pth")     # as baseline checkpoints stored it
    again, _ = model_from_checkpoint(ckpt)
    torch.testing.assert_close(again.state_dict(), model.state_dict())


def test_registry_errors_name_what_is_wrong(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"no field\(s\) \['dropot'\].*'dropout'"):
        build_model("baseline_resnet18_112", [1, 2], dropot=0.1)
    with pytest.raises(FileNotFoundError, match="absent.pth.*never downloads"):
        build_model("baseline_resnet18_112", [1, 2], pretrained=str(tmp_path / "absent.pth"))
    with pytest.raises(KeyError, match="baseline_resnet18_112"):
        build_model("baseline_resnet19", [1, 2])


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
