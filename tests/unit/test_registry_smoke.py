"""One smoke test over every registered model (STYLE.md §9).

Each model builds for 8 and 12 AUs, declares without being built the input it declares once
built (``input_spec(name)``), runs forward and backward on CPU over a small batch whose labels
hold unknowns (-1), gives logits (B, n_AU), a finite loss and finite gradients, takes one
optimiser step, and is rebuilt from ``constructor_kwargs()`` into a model whose state dict loads
strictly and whose eval-mode logits are finite and equal. The batch is made from the model's own
``input_spec()``: channels, size, the landmark differences of its steps, and a video window when
it declares one.
"""

from __future__ import annotations

import pytest
import torch

from components.au import DATASET_AUS
from components.models import build_model, input_spec, list_models


AU_LISTS = {8: DATASET_AUS["synthetic"], 12: DATASET_AUS["bp4d"]}

# Paper-size models that take many seconds per forward/backward on one CPU thread (IResNet-100
# ~15 s, IResNet-50 ~5 s, VGG16 f and h at 224 over a window ~2 min; FaceNet at 160 px with
# 896-wide per-AU layers, EfficientNet f and h at 224): still smoke-tested, in the slow tier.
# Everything else runs in the unit tier in about a second.
SLOW_ON_CPU = {"lrp_arl_ff", "lrp_arl_ff_iresnet100", "lrp_arl_ff_r50", "pairwise_rank", "pairwise_rank_vgg16"}
# A shorter video window where the declared one makes the paper-size model crawl on CPU; the
# window path is the same code for any length.
SMOKE_KWARGS = {"pairwise_rank": {"window": 2}, "pairwise_rank_vgg16": {"window": 2}}
# The architecture is what is smoke-tested: every variant builds from random weights here (a
# variant's default catalogue weights are loaded and checked in tests/integration/test_weights.py).
RANDOM = {"pretrained": ""}
BATCH = 2


@pytest.fixture(scope="session", autouse=True)
def _text_cache(tmp_path_factory):
    """One embedding cache for the session: the sentence encoder runs once per AU text."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACSFLOW_CACHE", str(tmp_path_factory.mktemp("facsflow-cache")))
    torch.set_num_threads(1)
    yield
    mp.undo()


def _cases() -> list:
    cases = []
    for info in list_models():
        for n in AU_LISTS:
            marks = [pytest.mark.slow] if info.name in SLOW_ON_CPU else []
            cases.append(pytest.param(info.name, n, id=f"{info.name}-{n}au", marks=marks))
    return cases


def make_batch(model, n_aus: int, b: int = BATCH) -> dict:
    """A batch as ``components.batches`` delivers it, shaped by the model's declaration."""
    g = torch.Generator().manual_seed(0)
    spec = model.input_spec()
    c, s = spec.num_channels, spec.image_size
    labels = torch.randint(0, 2, (b, n_aus), generator=g).float()
    labels[0, 0] = -1.0                       # unknown cells must not reach the loss
    labels[1, :] = -1.0                       # nor a whole unknown frame
    labels[1, 1] = 1.0
    batch = {
        "image": torch.randn(b, c, s, s, generator=g),
        "landmarks": torch.rand(b, 68, 2, generator=g) * s,
        "landmark_diff": torch.randn(b, len(spec.diff_steps), 68, 2, generator=g),
        "diff_valid": torch.ones(b, len(spec.diff_steps), dtype=torch.bool),
        "labels": labels,
        "intensity": torch.where(labels < 0, labels, labels * 3.0),
        "video_index": torch.zeros(b, dtype=torch.long),
        "frame_order": torch.arange(b),
    }
    if spec.blendshapes:
        batch["blendshapes"] = torch.rand(b, 52, generator=g)
    if spec.window:
        batch["window"] = torch.randn(b, spec.window, c, s, s, generator=g)
    return batch


@pytest.mark.parametrize("name,n_aus", _cases())
def test_every_registered_model_trains_a_step_and_rebuilds(name: str, n_aus: int) -> None:
    aus = AU_LISTS[n_aus]
    torch.manual_seed(0)
    model = build_model(name, aus, **RANDOM, **SMOKE_KWARGS.get(name, {}))
    assert model.aus == aus and model.num_aus == n_aus
    assert input_spec(name, **SMOKE_KWARGS.get(name, {})) == model.input_spec()
    batch = make_batch(model, n_aus)
    model.train()
    out = model(batch)
    out["logits"].retain_grad()
    assert out["logits"].shape == (BATCH, n_aus)
    assert torch.isfinite(out["logits"]).all(), f"{name}: non-finite logits"
    loss = model.loss(out, batch)["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss), f"{name}: loss {loss}"
    loss.backward()
    unknown = batch["labels"] < 0
    assert out["logits"].grad is not None and float(out["logits"].grad[~unknown].abs().sum()) > 0.0
    assert float(out["logits"].grad[unknown].abs().max()) == 0.0, f"{name}: an unknown label reached the loss"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, f"{name}: no parameter received a gradient"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:5]}"
    assert sum(float(g.abs().sum()) for g in grads) > 0.0, f"{name}: every gradient is zero"
    torch.optim.SGD(model.parameters(), lr=1e-2).step()

    # Eval mode after a training step, BatchNorm running statistics as training left them (no
    # reset): every family must give finite logits (IResNet's zero-initialised residual
    # branches keep IResNet-100's activations bounded; see components.models.iresnet).
    rebuilt = build_model(name, aus, **RANDOM, **model.constructor_kwargs())
    missing, unexpected = rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert not missing and not unexpected
    assert type(rebuilt) is type(model) and rebuilt.input_spec() == model.input_spec()
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        want = model(batch)["logits"]
        assert torch.isfinite(want).all(), f"{name}: non-finite eval-mode logits"
        torch.testing.assert_close(rebuilt(batch)["logits"], want)



def _row_cases() -> list:
    return [pytest.param(info.name, id=info.name, marks=[pytest.mark.slow] if info.name in SLOW_ON_CPU else [])
            for info in list_models()]


@pytest.mark.parametrize("name", _row_cases())
def test_a_rows_independent_model_answers_the_same_in_chunks(name: str) -> None:
    """``rows_independent`` lets inference cut a batch into CPU-sized chunks
    (``components.predictor.forward_rows``): in eval mode the chunked answers must be the whole
    batch's, row for row. A family that groups frames (pairwise-rank's video statistics) must
    not say so: it is answered in one pass."""
    from components.predictor import forward_rows

    aus = AU_LISTS[8]
    torch.manual_seed(0)
    model = build_model(name, aus, **RANDOM, **SMOKE_KWARGS.get(name, {})).eval()
    assert model.rows_independent is (model.family not in ("pairwise-rank",)), model.family
    batch = make_batch(model, len(aus), b=5)
    batch["video_index"] = torch.tensor([0, 0, 1, 1, 1])
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        whole = model(batch)
        chunked = forward_rows(model, batch, chunk=2)
    assert len(calls) == (1 + 3 if model.rows_independent else 2)   # 2 + 2 + 1 rows, or one pass
    torch.testing.assert_close(chunked["logits"], whole["logits"], rtol=1e-4, atol=1e-5)
    if "intensity" in whole:
        torch.testing.assert_close(chunked["intensity"], whole["intensity"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["baseline_mobilenetv3_112", "baseline_resnet18_112"])
def test_batchnorm_running_statistics_follow_a_short_training(name: str) -> None:
    # torchvision's MobileNetV3 momentum 0.01 leaves its running statistics near 0 and 1 after a
    # few hundred steps: eval mode then answers alike for every face.
    model = build_model(name, DATASET_AUS["synthetic"])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and {m.momentum for m in norms} == {0.1}
