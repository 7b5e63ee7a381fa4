"""Small real ensembles for the serving, prediction, export and Python-API tests.

Members are registered models with seeded random weights saved through the checkpoint contract
(``components.checkpoint``), so everything downstream (manifest, Predictor, Serve) runs the
real code path; the AU answers carry no meaning, only their shape and consistency are tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AUS = [1, 2, 4, 6, 12, 15, 25, 26]
"""The AU list of every test ensemble (the demo's)."""

IMAGE_MEMBER = ("img-mobilenet", "baseline_mobilenetv3_112", {"intensity_head": True})
"""An image-only member with an intensity head."""
VIDEO_MEMBER = ("vid-tosequence", "to_sequence_small", {"diff_steps": (1, 2)})
"""A member that needs video (temporal landmark differences, steps 1 and 2)."""


def make_member(out: Path, model_name: str, seed: int = 0, trained_on: str = "synthetic",
                faces: "dict[str, Any] | None" = None, **model_kwargs: Any) -> str:
    """Write ``out/checkpoint.pt`` for a seeded randomly initialised registered model; ``faces``:
    the face pipeline record of the store it was 'trained' on (none: a checkpoint from before
    the record, read as dlib's)."""
    import torch

    from components.checkpoint import make_checkpoint, save_checkpoint
    from components.models.registry import build_model

    torch.manual_seed(seed)
    model = build_model(model_name, AUS, **model_kwargs).eval()
    ckpt = make_checkpoint(model, model_name, epoch=0,
                           preprocess={"store": "", "image_size": 112, "diff_steps": [1, 2, 4],
                                       "dataset": trained_on, **({"faces": dict(faces)} if faces else {})},
                           provenance={"test_fixture": True, "seed": seed}, train_config={},
                           thresholds=[0.5] * len(AUS))
    return save_checkpoint(ckpt, out)


def make_ensemble(out: Path, members: "list[tuple[str, str, dict]] | None" = None, rule: str = "mean",
                  weights: "list[float] | None" = None, seed: int = 0,
                  faces: "dict[str, Any] | None" = None) -> Path:
    """Write an ensemble folder (member checkpoints + ``ensemble.json``); return it. ``faces``:
    the face pipeline record its members' checkpoints carry (``make_member``)."""
    from components.checkpoint import load_checkpoint
    from components.ensemble import EnsembleManifest, Member

    members = members if members is not None else [IMAGE_MEMBER, VIDEO_MEMBER]
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for k, (name, model_name, kwargs) in enumerate(members):
        path = make_member(out / name, model_name, seed + k, faces=faces, **kwargs)
        ckpt = load_checkpoint(path)
        built.append(Member(name=name, checkpoint=path, model_name=model_name, input_spec=ckpt["input_spec"],
                            preprocess=ckpt["preprocess"], thresholds=[0.5] * len(AUS),
                            val_f1=[0.5] * len(AUS), trained_on="synthetic", init=ckpt["init"]))
    manifest = EnsembleManifest(
        aus=list(AUS), members=built, rule=rule, weights=weights or [], thresholds=[0.5] * len(AUS),
        choice=[0] * len(AUS) if rule == "best_per_au" else [],
        provenance={"test_fixture": True},
        model_card={"trained_on": ["synthetic"],
                    "data_note": "trained on facsflow's SYNTHETIC data: not a validated AU detector for real faces"})
    manifest.save(str(out))
    return out
