"""Batched torch versions of the model-input transform and the training augmentation.

One implementation for every device: the training worker runs them on its accelerator (CPU when it
has none) on a batch of uint8 crops already at the model's size, and ``components.batches.
BatchBuilder`` (evaluation, prediction, Serve) runs the deterministic part on CPU, so a model's
input has one definition. They follow ``components.faces.transforms`` (the per-sample reference,
pixel-centre coordinates): ``model_input_batch`` equals ``model_input`` on a crop already resized
to the model's size, up to float rounding and the background mask's boundary pixels (the mask is
rasterised here from the hull's half-planes at pixel centres, OpenCV's ``fillConvexPoly`` draws
the boundary with its line algorithm: tests/unit/test_batched_input.py measures both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from components.au import LEFT_RIGHT_LANDMARK_PERMUTATION
from components.faces.transforms import FOREHEAD_FRACTION, IMAGENET_MEAN, IMAGENET_STD
from components.models.base import InputSpec

__all__ = ["AugmentDraw", "draw_augment", "augment_batch", "hull_mask_batch", "model_input_batch"]

_BROWS = slice(17, 27)
_CHIN = 8
_EDGE_REACH = 0.5
"""Pixels whose centre lies within this many pixels outside a hull edge are on the face, as the
boundary pixels OpenCV's ``fillConvexPoly`` draws (tests/unit/test_batched_input.py)."""
_GRAY_WEIGHTS = (9798.0, 19235.0, 3735.0)
"""OpenCV's fixed-point BT.601 luma weights (R, G, B; sum 2**15): RGB2GRAY on uint8 rounds
(w . rgb + 2**14) >> 15, which float32 reproduces exactly for integer pixels."""


@dataclass
class AugmentDraw:
    """One batch's augmentation parameters, each (B,): zoom factor, translation in pixels of the
    model-size crop, horizontal flip, brightness and contrast factors."""

    scale: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor
    flip: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor


def draw_augment(n: int, size: int, cfg: Any, generator: "torch.Generator | None" = None) -> AugmentDraw:
    """Parameters for ``n`` crops of side ``size`` from ``cfg`` (``components.batches.AugmentConfig``),
    drawn on CPU from ``generator``: the same uniform ranges as the per-sample augmentation."""
    def uniform(half: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2.0 - 1.0) * half

    flip = (torch.rand(n, generator=generator) < 0.5) if cfg.flip else torch.zeros(n, dtype=torch.bool)
    return AugmentDraw(scale=1.0 + uniform(cfg.scale_jitter), tx=uniform(cfg.crop_jitter) * size,
                       ty=uniform(cfg.crop_jitter) * size, flip=flip,
                       brightness=1.0 + uniform(cfg.brightness), contrast=1.0 + uniform(cfg.contrast))


def augment_batch(images: torch.Tensor, landmarks: torch.Tensor, draw: AugmentDraw
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine jitter (zoom about the centre, translation), horizontal flip with the left/right
    landmark swap, then brightness/contrast jitter, in one ``grid_sample`` and a few tensor ops.

    ``images`` (B, 3, S, S) in [0, 255] (any dtype), ``landmarks`` (B, 68, 2) pixel-centre
    coordinates of the same crops. Returns float32 images in [0, 255] and the moved landmarks.
    Borders reflect, as the per-sample version's BORDER_REFLECT101 does (about the edge pixels'
    outer edges here, a half-pixel apart)."""
    b, _, s, _ = images.shape
    dev = images.device
    scale, tx, ty = (t.to(dev, torch.float32).view(b, 1, 1) for t in (draw.scale, draw.tx, draw.ty))
    flip = draw.flip.to(dev).view(b, 1, 1)
    c = (s - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(s, device=dev, dtype=torch.float32),
                            torch.arange(s, device=dev, dtype=torch.float32), indexing="ij")
    xs = torch.where(flip, (s - 1) - xs, xs)          # flip after the affine: read the mirrored pixel
    src_x = (xs - c - tx) / scale + c
    src_y = (ys - c - ty) / scale + c
    grid = torch.stack([(2.0 * src_x + 1.0) / s - 1.0, (2.0 * src_y + 1.0) / s - 1.0], dim=-1)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    lms = (landmarks.float() - c) * scale + c + torch.cat([tx, ty], dim=-1)
    mirrored = torch.stack([(s - 1) - lms[..., 0], lms[..., 1]], dim=-1)[:, list(LEFT_RIGHT_LANDMARK_PERMUTATION)]
    lms = torch.where(flip, mirrored, lms)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    bright = draw.brightness.to(dev, torch.float32).view(b, 1, 1, 1)
    contrast = draw.contrast.to(dev, torch.float32).view(b, 1, 1, 1)
    return ((out - mean) * contrast + mean * bright).clamp(0.0, 255.0), lms


def _hull_next(pts: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point i of (B, N, 2): the vector to its next counter-clockwise hull vertex (gift
    wrapping: the point seen most clockwise from i, measured from the direction of the centroid,
    which lies inside the hull), and whether i is on the hull (no point right of that edge).
    ``d[b, i, k] = p_k - p_i``; O(N^2) per crop."""
    u = pts.mean(1, keepdim=True) - pts                                      # (B, N, 2) towards the inside
    cross_u = u[:, :, None, 0] * d[..., 1] - u[:, :, None, 1] * d[..., 0]
    dot_u = (u[:, :, None, :] * d).sum(-1)
    angle = torch.atan2(cross_u, dot_u)
    length = d.norm(dim=-1)
    angle = torch.where(length > 1e-6, angle, torch.full_like(angle, 10.0))   # i itself, duplicates
    j = angle.argmin(-1, keepdim=True)                                        # (B, N, 1)
    dij = torch.gather(d, 2, j[..., None].expand(-1, -1, 1, 2)).squeeze(2)   # (B, N, 2)
    cross = dij[:, :, None, 0] * d[..., 1] - dij[:, :, None, 1] * d[..., 0]
    on_hull = (cross >= -1e-4 * dij.norm(dim=-1, keepdim=True) * length).all(-1) & (dij.norm(dim=-1) > 1e-6)
    return dij, on_hull


def hull_mask_batch(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """Background masks (B, S, S) bool: the convex hull of the 68 landmarks and of the brows moved
    up the face by ``FOREHEAD_FRACTION`` of the brow-to-chin distance (``background_mask``).

    Each hull edge (``_hull_next``) is a half-plane; the mask of a row of pixels is the span of x
    between the tightest left and right bounds at that row's centre: O(B (N^2 + N S + S^2))."""
    lm = landmarks.float()
    brows = lm[:, _BROWS]
    axis = brows.mean(1, keepdim=True) - lm[:, _CHIN:_CHIN + 1]
    pts = torch.cat([lm, brows + FOREHEAD_FRACTION * axis], dim=1)          # (B, N, 2)
    d = pts[:, None, :, :] - pts[:, :, None, :]                              # d[b, i, j] = p_j - p_i
    dij, on_hull = _hull_next(pts, d)
    # Half-plane of edge i -> j: a x + b y + c >= 0 with (a, b) = (-dy, dx) (its left normal).
    a, bcoef = -dij[..., 1], dij[..., 0]
    # Half a pixel outwards: OpenCV's fill also takes the pixels its edge lines cross.
    c = -(a * pts[..., 0] + bcoef * pts[..., 1]) + _EDGE_REACH * dij.norm(dim=-1)
    a, bcoef = (torch.where(on_hull, t, torch.zeros_like(t)) for t in (a, bcoef))
    c = torch.where(on_hull, c, torch.ones_like(c))                          # not on the hull: always true
    rows = torch.arange(size, device=lm.device, dtype=torch.float32)
    rhs = -(bcoef[:, :, None] * rows + c[:, :, None])                        # a x >= rhs at each row
    av = a[:, :, None]
    big = torch.full_like(rhs, float(size) * 4)
    lo = torch.where(av > 1e-9, rhs / av.clamp(min=1e-9), -big).amax(1)                 # (B, S)
    hi = torch.where(av < -1e-9, rhs / av.clamp(max=-1e-9), big).amin(1)
    empty = ((av.abs() <= 1e-9) & (rhs > 0)).any(1)                          # a = 0 rows outside
    cols = rows.view(1, 1, size)
    mask = (cols >= lo[:, :, None]) & (cols <= hi[:, :, None]) & ~empty[:, :, None]
    height = axis.squeeze(1).norm(dim=-1)
    return mask & (height > 1e-6).view(-1, 1, 1)


def _sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """3x3 Sobel gradient magnitude of (B, 1, S, S), replicated borders, divided by each image's
    maximum (zeros for a flat image): ``transforms.sobel_magnitude`` as one conv2d."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=gray.device)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)                          # (2, 1, 3, 3)
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    peak = mag.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 1e-8, mag / peak.clamp(min=1e-8), torch.zeros_like(mag))


def model_input_batch(images: torch.Tensor, landmarks: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """The image tensor (B, C, S, S) float32 a model declared in ``spec`` reads, from crops at the
    model's size: ``images`` (B, 3, S, S) RGB in [0, 255] (uint8, or float after augmentation) and
    their ``landmarks`` (B, 68, 2) in pixel-centre coordinates. Mask (``spec.mask``, paper 000
    sec. 2.2.1), then 'rgb' ImageNet normalisation, or gray (OpenCV's rounded BT.601 luma) and the
    Sobel magnitude of the masked gray, each mapped to [-1, 1] (``transforms.model_input``)."""
    b, _, s, _ = images.shape
    if s != spec.image_size:
        raise ValueError(f"model_input_batch: crops must be {spec.image_size} px (the model's size), got {s}")
    x = images.float()
    if spec.mask:
        x = x * hull_mask_batch(landmarks, s).unsqueeze(1).to(x.dtype)
    if spec.channels == "rgb":
        mean = torch.as_tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std
    w = torch.tensor(_GRAY_WEIGHTS, device=x.device).view(1, 3, 1, 1)
    gray = torch.floor(((x * w).sum(1, keepdim=True) + 16384.0) / 32768.0) / 255.0
    planes = [gray] if spec.channels == "gray" else [gray, _sobel_magnitude(gray)]
    return (torch.cat(planes, dim=1) - 0.5) / 0.5
