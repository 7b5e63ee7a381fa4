"""The video key (dataset, subject, video) on the real adapter layouts: BP4D names its videos by
task (T1..T8, the same names for every subject) and DISFA by camera, so two subjects share a
``video``. Built through the adapters and the real batch path (BatchBuilder on store-like rows,
then pairwise-rank's pairs and window statistics G): no pair or window crosses subjects. Also:
the media adapter's ids keep extension and relative path, and two inputs that would still share
a key are refused naming both paths."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from components.batches import BatchBuilder
from components.datasets import LayoutError, build_adapter
from components.datasets.base import FrameRecord, VideoUnit, unique_units
from components.datasets.samplers import ResampleSpec, rare_au_resample
from components.models.base import InputSpec
from components.models.pairwise_rank import pair_indices
from components.models.registry import build_model
from components.video_key import video_index, video_key, video_keys


BP4D_HEADER = ["0", "1", "2", "4", "6", "7", "10", "12", "14", "15", "17", "23", "24"]


def write_jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def bp4d_layout(root: Path) -> Path:
    """F001 and M002 both recorded task T1 (F001 also T2); AU1 alternates 1/0 over 4 frames."""
    for subject, task in (("F001", "T1"), ("M002", "T1"), ("F001", "T2")):
        rows = [[f, f % 2] + [0] * (len(BP4D_HEADER) - 2) for f in range(1, 5)]
        path = root / "AUCoding" / "AU_OCC" / f"{subject}_{task}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(",".join(map(str, r)) for r in [BP4D_HEADER] + rows) + "\n")
        for f in range(1, 5):
            write_jpg(root / "images" / subject / task / f"{f}.jpg", 10 * f)
    return root


def disfa_layout(root: Path) -> Path:
    """SN001 and SN002, both filmed by the left camera: DISFA's video id is 'left' for both."""
    for sn in ("SN001", "SN002"):
        path = root / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi"
        path.parent.mkdir(parents=True, exist_ok=True)
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (32, 32))
        for i in range(4):
            w.write(np.full((32, 32, 3), 40 * i, np.uint8))
        w.release()
        d = root / "ActionUnit_Labels" / sn
        d.mkdir(parents=True)
        for au in (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26):      # AU1 intensity 3 on odd frames
            (d / f"{sn}_au{au}.txt").write_text("".join(f"{f},{3 * (f % 2) if au == 1 else 0}\n"
                                                         for f in range(1, 5)))
    return root


def store_rows(units: list[VideoUnit]) -> dict[str, np.ndarray]:
    """Feature-store-like rows of every frame of ``units``, interleaved across units (as a shuffled
    training batch mixes videos): the id columns, labels, a crop and landmarks."""
    per_unit = [[(u, pos, rec) for pos, rec in enumerate(u.frames)] for u in units]
    rows = [r for group in zip(*per_unit) for r in group]
    return {
        "dataset": np.array([u.dataset for u, _, _ in rows]),
        "subject": np.array([u.subject for u, _, _ in rows]),
        "video": np.array([u.video for u, _, _ in rows]),
        "frame_order": np.array([pos for _, pos, _ in rows]),
        "labels": [list(rec.labels) for _, _, rec in rows],
        "crop": [np.full((16, 16, 3), 100, np.uint8) for _ in rows],
        "landmarks": [np.zeros(136, np.float32) for _ in rows],
    }


@pytest.mark.parametrize("layout", ["bp4d", "disfa"])
def test_no_pair_or_window_crosses_subjects_on_the_adapter_layouts(tmp_path: Path, layout: str) -> None:
    root = bp4d_layout(tmp_path) if layout == "bp4d" else disfa_layout(tmp_path)
    units = [u for u in build_adapter(layout, root).units()]
    shared = [u for u in units if u.video == units[0].video]
    assert len({u.subject for u in shared}) == 2, "the fixture must have two subjects sharing a video name"
    rows = store_rows(shared)
    batch = BatchBuilder(InputSpec(image_size=16), (), len(units[0].aus))(rows)
    subjects = rows["subject"]
    targets = torch.as_tensor(batch["labels"])

    ii, jj, _ = pair_indices(torch.as_tensor(batch["video_index"]), targets)
    assert len(ii) == 2 * 4, "each subject's 4 frames give 2 x 2 AU1-ordered pairs"
    assert all(subjects[i] == subjects[j] for i, j in zip(ii.tolist(), jj.tolist()))
    # The defect this guards against: the ``video`` column alone pairs the two people.
    ci, cj, _ = pair_indices(list(rows["video"]), targets)
    assert any(subjects[i] != subjects[j] for i, j in zip(ci.tolist(), cj.tolist()))

    # Window statistics G over the batch's frames of the same video (paper 004 §3.3): give one
    # subject ŷ = 0 and the other ŷ = 10; each frame's context mean must be its own subject's.
    model = build_model("pairwise_rank_small", units[0].aus, whole_video=True).eval()
    first = torch.as_tensor(subjects == subjects[0])
    y = torch.where(first, 0.0, 10.0)[:, None].expand(-1, len(units[0].aus)).contiguous()
    feats = model.mapping_features({k: torch.as_tensor(v) for k, v in batch.items()
                                    if k in ("video_index", "frame_order")}, y, torch.ones_like(y))
    g = feats.view(len(y), len(units[0].aus), -1)
    assert torch.equal(g[:, 0, 2], y[:, 0])          # G's mean of ŷ (index 2: after ŷ and σ)
    assert torch.equal(g[:, 0, 5] - g[:, 0, 4], torch.zeros(len(y)))     # max - min: one level


def test_video_key_and_index_name_the_subject() -> None:
    assert video_key("bp4d", "F001", "T1") == "bp4d/F001/T1"
    batch = {"dataset": ["bp4d"] * 3, "subject": ["F001", "M002", "F001"], "video": ["T1"] * 3}
    assert video_keys(batch) == ["bp4d/F001/T1", "bp4d/M002/T1", "bp4d/F001/T1"]
    idx = video_index(batch)
    assert idx[0] == idx[2] != idx[1]
    assert video_index({"subject": ["a"]}) is None


def test_resampling_strides_each_video_on_its_own() -> None:
    # Two 10-frame videos back to back: at one-half, each keeps 5 frames at an even stride of 2,
    # whatever the first video's phase; with one key for all, the stride runs across both.
    labels = np.zeros((20, 1), np.int8)
    videos = ["bp4d/F001/T1"] * 10 + ["bp4d/M002/T1"] * 10
    spec = ResampleSpec(fraction=0.5)
    for seed in range(6):
        keep = rare_au_resample(labels, (1,), spec, seed=seed, videos=videos)
        a, b = keep[keep < 10], keep[keep >= 10]
        assert len(a) == len(b) == 5 and set(np.diff(a)) == set(np.diff(b)) == {2}
    phases = {tuple(rare_au_resample(labels, (1,), spec, seed=s, videos=videos)[[0, 5]] % 2)
              for s in range(12)}
    assert any(p[0] != p[1] for p in phases)        # each video draws its own phase
    with pytest.raises(ValueError, match="3 video keys for 20 frames"):
        rare_au_resample(labels, (1,), spec, videos=videos[:3])


def test_media_ids_keep_extension_and_relative_path(tmp_path: Path) -> None:
    for rel in ("face.jpg", "face.png", "a/face.jpg", "b/face.jpg"):
        write_jpg(tmp_path / rel, 50)
    units = list(build_adapter("media", tmp_path).units())
    assert [u.key for u in units] == ["media/a/a/face.jpg", "media/b/b/face.jpg",
                                      "media/./face.jpg", "media/./face.png"]
    # With one subject for every file, the relative path still keeps them apart.
    same = list(build_adapter("media", tmp_path, subject="p").units())
    assert len({u.key for u in same}) == 4


def test_two_inputs_with_one_key_are_refused_naming_both() -> None:
    def unit(path: str) -> VideoUnit:
        rec = FrameRecord(frame=0, timestamp=0.0, source=path, source_kind="image")
        return VideoUnit("media", ".", "face", (), [rec], meta={"path": path})

    with pytest.raises(LayoutError, match=r"/d/face\.jpg and /d/face\.png both give the video 'media/\./face'"):
        list(unique_units([unit("/d/face.jpg"), unit("/d/face.png")]))
    assert len(list(unique_units([unit("/d/face.jpg")]))) == 1


def test_affwild2_name_in_train_and_validation_is_refused(tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "AU_Detection_Challenge"
    header = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
    for split in ("Train_Set", "Validation_Set"):
        (ann / split).mkdir(parents=True)
        (ann / split / "v1.txt").write_text(header + "\n" + ",".join(["0"] * 12) + "\n")
    write_jpg(tmp_path / "cropped_aligned" / "v1" / "00001.jpg", 9)
    with pytest.raises(LayoutError) as err:
        list(build_adapter("affwild2", tmp_path).units())
    assert "Train_Set/v1.txt" in str(err.value) and "Validation_Set/v1.txt" in str(err.value)


def test_manifest_video_files_sharing_an_id_are_refused(tmp_path: Path) -> None:
    for name in ("clip.mp4", "clip.avi"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "manifest.csv").write_text("subject,video,frame,AU1\ns1,clip.mp4,0,1\ns1,clip.avi,0,0\n")
    with pytest.raises(LayoutError, match=r"line 3: .*clip\.avi and .*clip\.mp4 \(line 2\) both give video s1/clip"):
        list(build_adapter("manifest", tmp_path).units())
