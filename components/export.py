"""Export one ensemble member to TorchScript or ONNX, for users outside Ray and Python servers.

    from components.export import export_member
    info = export_member("runs/x/checkpoint.pt", "x.onnx", format="onnx")

The exported graph starts at the model input, after alignment and the family's input
transform (``components.faces.transforms.model_input``: resize, optional background mask,
ImageNet-normalised RGB or [-1, 1] gray/Sobel planes), and ends at per-AU probabilities:

- inputs: ``image`` float32 (B, C, S, S) (a ``blendshape`` member: ``blendshapes`` float32 (B, 52)
  instead, MediaPipe's scores); for members that read temporal landmarks also
  ``landmarks`` float32 (B, 68, 2) in model-input pixels, ``landmark_diff`` float32
  (B, k, 68, 2) with diff_t = l_{t+s} - l_{t-s} for the member's k steps, in the same pixels,
  and ``diff_valid`` float32 (B, k), 0 where a step was clamped at a video edge;
- outputs: ``probs`` float32 (B, n_AU) = sigmoid(logits) in the checkpoint's AU order, and
  ``intensity`` (B, n_AU, 0-5) when the member has an intensity head.

A JSON file beside the export (``<out>.json``) records the AU list, input declaration,
thresholds, normalisation and input/output names, so the consumer needs nothing else from us.
The batch dimension is dynamic in both formats. Every export is checked here against PyTorch
on a random input (``max_abs_diff`` in the returned record).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from components.checkpoint import load_checkpoint, model_from_checkpoint
from components.faces.transforms import IMAGENET_MEAN, IMAGENET_STD
from components.models.base import AUModel, InputSpec
from components.models.registry import init_provenance

__all__ = ["ExportedMember", "export_member", "example_inputs", "FORMATS"]

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


class ExportedMember(nn.Module):
    """A member with positional tensor inputs and probability outputs (what exporters need)."""

    def __init__(self, model: AUModel, spec: InputSpec) -> None:
        super().__init__()
        self.model = model
        self.temporal = bool(spec.diff_steps)
        self.first = "blendshapes" if spec.blendshapes else "image"

    def forward(self, image: torch.Tensor, landmarks: "torch.Tensor | None" = None,
                landmark_diff: "torch.Tensor | None" = None,
                diff_valid: "torch.Tensor | None" = None) -> tuple[torch.Tensor, ...]:
        batch = {self.first: image}  # a blendshape member's only input is the (B, 52) blendshapes
        if self.temporal:
            batch.update(landmarks=landmarks, landmark_diff=landmark_diff, diff_valid=diff_valid)
        out = self.model(batch)
        probs = torch.sigmoid(out["logits"].float())
        return (probs, out["intensity"].float()) if "intensity" in out else (probs,)


def input_names(spec: InputSpec) -> list[str]:
    """Names of the exported graph's inputs for a member declaring ``spec``."""
    if spec.blendshapes:
        return ["blendshapes"]
    return ["image", "landmarks", "landmark_diff", "diff_valid"] if spec.diff_steps else ["image"]


def example_inputs(spec: InputSpec, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes and ranges for a member declaring ``spec``."""
    g = torch.Generator().manual_seed(seed)
    if spec.blendshapes:
        return (torch.rand(batch, 52, generator=g),)
    s = spec.image_size
    image = torch.randn(batch, spec.num_channels, s, s, generator=g)
    if not spec.diff_steps:
        return (image,)
    k = len(spec.diff_steps)
    landmarks = torch.rand(batch, 68, 2, generator=g) * (s - 1)
    diff = torch.randn(batch, k, 68, 2, generator=g)
    valid = (torch.rand(batch, k, generator=g) > 0.3).float()
    return (image, landmarks, diff, valid)


def _run_onnx(path: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:  # the pure-numpy reference runtime ships with onnx
        from onnx.reference import ReferenceEvaluator

        return list(ReferenceEvaluator(path).run(None, feeds))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return list(sess.run(None, feeds))


def export_member(checkpoint: "str | Path", out: "str | Path",
                  format: Literal["torchscript", "onnx"] = "torchscript",  # noqa: A002 - the user-facing name
                  check_batch: int = 3) -> dict[str, Any]:
    """Export the member in ``checkpoint`` to ``out`` and check it against PyTorch.

    The check runs both on a random batch of ``check_batch`` (a size other than the one traced,
    so a batch dimension frozen by the exporter fails). Returns a record with the path, the
    input/output names and ``max_abs_diff``; raises ValueError for an unknown format or a
    member that needs a video window (no exporter input for it yet).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    ckpt = load_checkpoint(checkpoint)
    model, spec = model_from_checkpoint(ckpt)
    if spec.window:
        raise ValueError(f"{checkpoint}: {ckpt['model_name']} reads a {spec.window}-frame video window, "
                         "which export does not support")
    wrapper = ExportedMember(model, spec).eval()
    names = input_names(spec)
    with torch.no_grad():
        n_out = len(wrapper(*example_inputs(spec, 2)))
    outputs = ["probs", "intensity"][:n_out]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trace_inputs = example_inputs(spec, 2, seed=1)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer and deprecation chatter; the check below is what tells a bad export.
        warnings.simplefilter("ignore")
        if format == "torchscript":
            traced = torch.jit.trace(wrapper, trace_inputs, check_trace=False)
            traced.save(str(out))
        else:
            try:
                torch.onnx.export(wrapper, trace_inputs, str(out), dynamo=False, opset_version=ONNX_OPSET,
                                  input_names=names, output_names=outputs,
                                  dynamic_axes={n: {0: "batch"} for n in names + outputs})
            except torch.onnx.errors.OnnxExporterError as e:
                raise ValueError(f"{checkpoint}: {ckpt['model_name']} cannot be exported to ONNX "
                                 f"({str(e).splitlines()[0][:200]}); try format='torchscript'") from None
    check = example_inputs(spec, check_batch, seed=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [t.numpy() for t in wrapper(*check)]
        if format == "torchscript":
            got = [t.numpy() for t in torch.jit.load(str(out))(*check)]
        else:
            got = _run_onnx(str(out), {n: t.numpy() for n, t in zip(names, check)})
    diff = max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got))
    record = {"path": str(out), "format": format, "model_name": ckpt["model_name"], "aus": list(ckpt["aus"]),
              "input_spec": spec.to_dict(), "inputs": names, "outputs": outputs,
              "thresholds": list(ckpt["thresholds"]),
              "normalisation": {"rgb": {"mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
                                        "scale": "x/255 then (x - mean) / std"},
                                "gray": "(g - 0.5) / 0.5 with g in [0, 1]; Sobel magnitude likewise"},
              "max_abs_diff": diff, "check_batch": check_batch,
              "init": ckpt.get("init") or init_provenance(ckpt.get("pretrained"))}
    Path(f"{out}.json").write_text(json.dumps(record, indent=1))
    return record
