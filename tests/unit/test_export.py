"""Exported members (TorchScript, ONNX) give PyTorch's probabilities on inputs of another batch
size than the one traced; the sidecar JSON describes the graph; bad requests fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.serving_fixtures import AUS, make_member


# Small inputs keep the export and the pure-numpy ONNX reference run to seconds.
MEMBERS = {
    "image": ("baseline_mobilenetv3_112", {"image_size": 32, "intensity_head": True}),
    "temporal": ("to_sequence_small", {"diff_steps": (1, 2)}),  # its pooling needs 112 px for ONNX
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    return {k: make_member(root / k, name, seed=3, **kw) for k, (name, kw) in MEMBERS.items()}


def _eager(checkpoint: str, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """The member's own forward pass on the same tensors, outside the export wrapper."""
    from components.checkpoint import load_checkpoint, model_from_checkpoint

    model, spec = model_from_checkpoint(load_checkpoint(checkpoint))
    batch = {"image": inputs[0]}
    if spec.diff_steps:
        batch.update(landmarks=inputs[1], landmark_diff=inputs[2], diff_valid=inputs[3])
    with torch.no_grad():
        out = model(batch)
    res = [torch.sigmoid(out["logits"]).numpy()]
    if "intensity" in out:
        res.append(out["intensity"].numpy())
    return res


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("kind", ["image", "temporal"])
def test_export_matches_pytorch_on_a_new_batch_size(checkpoints: dict, tmp_path: Path, kind: str, fmt: str) -> None:
    from components.export import _run_onnx, example_inputs, export_member
    from components.models.base import InputSpec

    out = tmp_path / f"member.{fmt}"
    record = export_member(checkpoints[kind], out, fmt)
    assert record["max_abs_diff"] < 1e-4
    spec = InputSpec.from_dict(record["input_spec"])
    inputs = example_inputs(spec, batch=5, seed=11)  # traced with 2, checked with 3, run with 5
    expected = _eager(checkpoints[kind], inputs)
    if fmt == "torchscript":
        with torch.no_grad():
            got = [t.numpy() for t in torch.jit.load(str(out))(*inputs)]
    else:
        got = _run_onnx(str(out), {n: t.numpy() for n, t in zip(record["inputs"], inputs)})
    assert len(got) == len(expected) == (2 if kind == "image" else 1)
    for e, g in zip(expected, got):
        assert g.shape == (5, len(AUS))
        np.testing.assert_allclose(g, e, atol=1e-4)


def test_temporal_inputs_reach_the_exported_graph(checkpoints: dict, tmp_path: Path) -> None:
    """diff_valid is an input, not a constant frozen at trace time: zeroing it changes the answer
    exactly as it does in PyTorch."""
    from components.export import _run_onnx, example_inputs, export_member
    from components.models.base import InputSpec

    out = tmp_path / "t.onnx"
    record = export_member(checkpoints["temporal"], out, "onnx")
    image, lms, diff, _ = example_inputs(InputSpec.from_dict(record["input_spec"]), batch=2, seed=4)
    diff = diff * 10
    answers = []
    for valid in (torch.zeros(2, 2), torch.ones(2, 2)):
        got = _run_onnx(str(out), {"image": image.numpy(), "landmarks": lms.numpy(),
                                   "landmark_diff": diff.numpy(), "diff_valid": valid.numpy()})[0]
        np.testing.assert_allclose(got, _eager(checkpoints["temporal"], (image, lms, diff, valid))[0], atol=1e-4)
        answers.append(got)
    assert np.abs(answers[0] - answers[1]).max() > 1e-6


def test_sidecar_json_describes_the_graph(checkpoints: dict, tmp_path: Path) -> None:
    from components.export import export_member

    out = tmp_path / "m.pt"
    export_member(checkpoints["temporal"], out, "torchscript")
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["aus"] == AUS and meta["model_name"] == "to_sequence_small"
    assert meta["inputs"] == ["image", "landmarks", "landmark_diff", "diff_valid"]
    assert meta["outputs"] == ["probs"]
    assert meta["input_spec"]["channels"] == "gray+sobel" and meta["input_spec"]["diff_steps"] == [1, 2]
    assert meta["thresholds"] == [0.5] * len(AUS)
    assert meta["init"]["init_weights"] == "random" and meta["init"]["licence"] == ""


def test_unknown_format_is_refused_with_the_known_ones(checkpoints: dict, tmp_path: Path) -> None:
    from components.export import export_member

    with pytest.raises(ValueError, match="torchscript, onnx"):
        export_member(checkpoints["image"], tmp_path / "x", "tflite")


def test_a_graph_onnx_cannot_express_is_refused_with_the_member_named(tmp_path: Path) -> None:
    """To-Sequence at 32 px pools 2x2 maps to 7x7, which ONNX's average pool cannot express."""
    from components.export import export_member

    ckpt = make_member(tmp_path / "small", "to_sequence_small", image_size=32)
    with pytest.raises(ValueError, match="to_sequence_small cannot be exported to ONNX.*torchscript"):
        export_member(ckpt, tmp_path / "x.onnx", "onnx")
