"""The blendshape member's calibration and its batches: the calibrated variant learns a per-AU
logistic from labelled blendshape rows, and store rows without blendshapes fail by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.batches import BatchBuilder
from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES
from components.models.registry import build_model



def _data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """AU12 present iff the mean smile exceeds 0.2 (the raw score's 0.5 threshold is too high),
    AU4 present iff browDown exceeds 0.1."""
    g = np.random.default_rng(seed)
    b = g.uniform(0, 0.4, (n, 52)).astype(np.float32)
    smile = b[:, [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]].mean(1)
    brow = b[:, [BLENDSHAPE_NAMES.index("browDownLeft"), BLENDSHAPE_NAMES.index("browDownRight")]].mean(1)
    labels = np.stack([smile > 0.2, brow > 0.1], 1).astype(np.float32)
    return torch.from_numpy(b), torch.from_numpy(labels)


def test_calibrated_variant_fits_a_per_au_logistic_and_the_plain_one_starts_at_the_table() -> None:
    torch.manual_seed(0)
    b, y = _data()
    plain = build_model("blendshape", [12, 4])
    calib = build_model("blendshape_calibrated", [12, 4])
    with torch.no_grad():  # both start at the table: probability == mapped score
        assert torch.allclose(torch.sigmoid(calib({"blendshapes": b})["logits"]),
                              torch.sigmoid(plain({"blendshapes": b})["logits"]))
    batch = {"blendshapes": b, "labels": y}
    before = calib.loss(calib(batch), batch)["bce"].item()
    opt = torch.optim.Adam(calib.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = calib.loss(calib(batch), batch)["loss"]
        loss.backward()
        opt.step()
    after = calib.loss(calib(batch), batch)["bce"].item()
    assert after < 0.5 * before, (before, after)
    test_b, test_y = _data(seed=1)
    pred = (torch.sigmoid(calib({"blendshapes": test_b})["logits"]) >= 0.5).float()
    assert (pred == test_y).float().mean().item() > 0.9


def test_batch_builder_passes_blendshapes_and_names_rows_without_them() -> None:
    model = build_model("blendshape", [12])
    spec = model.input_spec()
    assert spec.blendshapes and not spec.needs_video
    crop = np.zeros((112, 112, 3), np.uint8)
    lms = np.zeros(136, np.float32)
    bs = np.linspace(0, 1, 52, dtype=np.float32)
    rows = {"crop": [crop, crop], "landmarks": [lms, lms], "blendshapes": [bs, bs * 0],
            "sample_id": np.array(["a", "b"])}
    out = BatchBuilder(spec, (), 1)(rows)
    assert out["blendshapes"].shape == (2, 52) and np.allclose(out["blendshapes"][0], bs)
    rows["blendshapes"] = [bs, None]
    with pytest.raises(ValueError, match=r"^b: blendshapes must be 52 floats.*mediapipe"):
        BatchBuilder(spec, (), 1)(rows)
    del rows["blendshapes"]
    with pytest.raises(ValueError, match="landmarker='mediapipe'"):
        BatchBuilder(spec, (), 1)(rows)
    # Other models ignore a store's null blendshapes column.
    plain_spec = type(spec)(image_size=112)
    rows["blendshapes"] = [None, None]
    assert "blendshapes" not in BatchBuilder(plain_spec, (), 1)(rows)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_blendshape_member_exports_with_blendshapes_as_its_only_input(tmp_path, fmt: str) -> None:
    from components.checkpoint import make_checkpoint, save_checkpoint
    from components.export import export_member

    model = build_model("blendshape", [1, 12, 26])
    path = save_checkpoint(make_checkpoint(model, "blendshape", epoch=0, preprocess={"image_size": 112},
                                           provenance={}, train_config={}), tmp_path / "m")
    info = export_member(path, tmp_path / f"m.{'pt' if fmt == 'torchscript' else 'onnx'}", format=fmt)
    assert info["inputs"] == ["blendshapes"] and info["outputs"] == ["probs", "intensity"]
    assert info["max_abs_diff"] < 1e-5
