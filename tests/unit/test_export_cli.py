"""``facsflow export``: every exportable member of an ensemble written and checked, the one that
reads a video window reported by name while the others still go out, and bad requests refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
import torch

from tests.serving_fixtures import make_ensemble


MEMBERS = [("img", "baseline_mobilenetv3_112", {"image_size": 32, "intensity_head": True}),
           ("ranker", "pairwise_rank_small", {"window": 2, "image_size": 32})]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_ensemble(tmp_path_factory.mktemp("export-cli") / "ens", MEMBERS)


def test_ensemble_export_writes_each_member_and_names_the_one_it_cannot(ensemble: Path, tmp_path: Path,
                                                                         capsys) -> None:
    from workflows.export import main

    out = tmp_path / "onnx"
    assert main(["--ensemble", str(ensemble), "--format", "onnx", "--out", str(out)]) == 1
    summary = json.loads((out / "export.json").read_text())
    assert [r["path"] for r in summary["exported"]] == [str(out / "img.onnx")]
    assert list(summary["failed"]) == ["ranker"] and "video window" in summary["failed"]["ranker"]
    assert "ranker: not exported" in capsys.readouterr().out
    sidecar = json.loads((out / "img.onnx.json").read_text())
    assert sidecar["outputs"] == ["probs", "intensity"] and sidecar["max_abs_diff"] < 1e-4
    assert sidecar["aus"] == json.loads((ensemble / "ensemble.json").read_text())["aus"]


def test_selected_member_to_torchscript_gives_pytorchs_probabilities(ensemble: Path, tmp_path: Path) -> None:
    from components.checkpoint import load_checkpoint, model_from_checkpoint
    from workflows.export import main

    out = tmp_path / "ts"
    assert main(["--ensemble", str(ensemble), "--member", "img", "--format", "torchscript", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "export.yaml", "img.pt", "img.pt.json"]
    # The resolved config beside the outputs: what was asked, flags applied.
    saved = yaml.safe_load((out / "export.yaml").read_text())
    assert saved == {"ensemble": str(ensemble), "checkpoint": [], "member": ["img"], "format": "torchscript",
                     "out": str(out)}
    manifest = json.loads((ensemble / "ensemble.json").read_text())
    model, spec = model_from_checkpoint(load_checkpoint(manifest["members"][0]["checkpoint"]))
    x = torch.randn(5, spec.num_channels, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = torch.sigmoid(model.eval()({"image": x})["logits"]).numpy()
        got = torch.jit.load(str(out / "img.pt"))(x)[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_unknown_member_and_missing_manifest_are_refused_clearly(ensemble: Path, tmp_path: Path) -> None:
    from workflows.core.runtime import UserError
    from workflows.export import main

    with pytest.raises(UserError, match="no member named nope; members: img, ranker"):
        main(["--ensemble", str(ensemble), "--member", "nope", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="ensemble manifest not found"):
        main(["--ensemble", str(tmp_path / "absent"), "--out", str(tmp_path)])
    img = str(ensemble / "img" / "checkpoint.pt")
    with pytest.raises(UserError, match=r"checkpoints from the same folder \(img\) would get one output name"):
        main(["--checkpoint", img, img, "--out", str(tmp_path)])
