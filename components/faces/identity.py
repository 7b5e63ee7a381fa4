"""Identity across cuts: one ``face_id`` per person in a video, even when the face leaves the
frame and comes back, or a cut puts another person where the tracked one was.

The tracker (``components.faces.tracking``) follows a face by box overlap; a face that is lost
(out of frame, a cut) and found again starts a new track with a new id, and a cut that puts
another face at the same place keeps the old id. ``reidentify`` fixes both from face
embeddings of the aligned crops, after tracking:

1. each track's crops are embedded every ``sample_every`` frames (FaceNet, the weights
   catalogue's ``inception_resnet_v1-facenet``: 128-d, L2-normalised; its licence is the model
   card's ``identity`` entry);
2. a track is cut where two consecutive samples are farther apart than ``max_distance`` (another
   person took the tracked place);
3. the pieces, in order of their first frame, join the earliest earlier identity whose mean
   embedding is within ``max_distance`` and that is not on screen at the same frames, else they
   get a new id (0, 1, ... in order of appearance).

The FaceNet threshold: embeddings of one person lie within about 0.9-1.1 (Euclidean, unit
vectors) of each other, of two people beyond (Schroff et al. 2015, FaceNet, §5.2: 1.1 on LFW).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["IDENTITY_WEIGHTS", "MAX_DISTANCE", "FaceEncoder", "reidentify", "identity_card"]

IDENTITY_WEIGHTS = "inception_resnet_v1-facenet"
"""The catalogue's face encoder used for identities (``facsflow weights`` says how to get it)."""
MAX_DISTANCE = 1.0
"""Largest Euclidean distance between unit FaceNet embeddings that counts as one person."""


def identity_card() -> dict[str, Any]:
    """What re-identification adds to a model card: the encoder, its data and licence."""
    from components import weights

    entry = weights.get(IDENTITY_WEIGHTS)
    return {"weights": entry.name, "trained_on": entry.trained_on, "licence": entry.licence,
            "commercial_use": entry.commercial_use,
            "what": "face embeddings that keep one face_id per person across cuts (components.faces.identity)"}


class FaceEncoder:
    """FaceNet embeddings of aligned face crops (loaded once; CPU)."""

    def __init__(self, device: str = "cpu") -> None:
        import torch

        from components.models.backbones import build_pretrained_network

        self.device = torch.device(device)
        self.net = build_pretrained_network(IDENTITY_WEIGHTS).to(self.device)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """float32 (n, 128) unit embeddings of uint8 RGB crops (n, S, S, 3)."""
        import torch
        import torch.nn.functional as F

        from components import weights

        if not len(crops):
            return np.zeros((0, 128), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        x = F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False)
        with torch.no_grad():
            emb = self.net(weights.normalise(x, IDENTITY_WEIGHTS))
        return F.normalize(emb.float(), dim=1).cpu().numpy()


def _cuts(emb: np.ndarray, sampled: Sequence[int], max_distance: float) -> list[int]:
    """Row indices where a track is cut: a sampled embedding far from the previous sample's."""
    cuts = []
    for a, b in zip(sampled, sampled[1:]):
        if np.linalg.norm(emb[b] - emb[a]) > max_distance:
            cuts.append(b)
    return cuts


def reidentify(tracks: dict[int, list[tuple[int, Any]]], embed: Callable[[np.ndarray], np.ndarray],
               crop_of: Callable[[Any], np.ndarray], max_distance: float = MAX_DISTANCE,
               sample_every: int = 6) -> dict[int, list[tuple[int, Any]]]:
    """``tracks`` (tracker id → [(frame, face), ...] in frame order) with ids by identity.

    ``embed`` maps crops (n, S, S, 3) to unit embeddings; ``crop_of(face)`` is a face's aligned
    crop. Returns new id → frames, ids 0, 1, ... in order of first appearance.
    """
    pieces: list[tuple[list[tuple[int, Any]], np.ndarray]] = []
    for seq in tracks.values():
        if not seq:
            continue
        sampled = sorted(set(range(0, len(seq), max(1, sample_every))) | {len(seq) - 1})
        emb = np.zeros((len(seq), 128), np.float32)
        emb[sampled] = embed(np.stack([crop_of(seq[i][1]) for i in sampled]))
        bounds = [0, *_cuts(emb, sampled, max_distance), len(seq)]
        for lo, hi in zip(bounds, bounds[1:]):
            rows = [i for i in sampled if lo <= i < hi]
            pieces.append((seq[lo:hi], emb[rows].mean(0)))
    pieces.sort(key=lambda p: p[0][0][0])
    gallery: list[tuple[np.ndarray, set[int]]] = []  # per identity: mean embedding, frames on screen
    out: dict[int, list[tuple[int, Any]]] = {}
    for seq, mean in pieces:
        frames = {t for t, _ in seq}
        best, best_d = -1, max_distance
        for pid, (g, seen) in enumerate(gallery):
            d = float(np.linalg.norm(g / max(np.linalg.norm(g), 1e-9) - mean / max(np.linalg.norm(mean), 1e-9)))
            if d <= best_d and not seen & frames:
                best, best_d = pid, d
        if best < 0:
            gallery.append((mean.copy(), set(frames)))
            best = len(gallery) - 1
        else:
            g, seen = gallery[best]
            gallery[best] = (g + mean, seen | frames)
        out.setdefault(best, []).extend(seq)
    return {pid: sorted(seq, key=lambda x: x[0]) for pid, seq in out.items()}
