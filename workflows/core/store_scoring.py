"""Ray Data inference over feature-store rows with the one ``Predictor`` (class UDF: models load
once per actor). Used by evaluation and ensemble selection.

The store already holds aligned faces, temporal landmark differences and each row's face track
key (dataset, subject, video, face_id: ``components.video_key``) and frame order, so the rows enter the orchestration
(``components.inference``) as tracks at the members: ``Predictor.predict_store_rows`` (members,
combination); batches are cut in video order (``VIDEO_BATCH_ROWS``, the orchestration's
segments). Rows that carry blendshapes bring their face's running neutral over the whole video,
joined from the store's ``neutral/`` tables (``components.store.neutral``), so a batch boundary
does not restart it. Smoothing, the orchestration's option, runs over each whole face track
once every row is scored (``smooth_by_video``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from components.batches import VIDEO_BATCH_ROWS

log = logging.getLogger("facsflow.evaluate")

__all__ = ["StoreRowsPredictor", "predict_store_files", "own_labels", "reference_labels"]

_COLUMNS = ["sample_id", "dataset", "subject", "video", "face_id", "frame_order", "image", "landmarks", "landmark_diff",
            "diff_valid", "labels", "intensities", "blendshapes", "geometry"]


class StoreRowsPredictor:
    """Ray Data class UDF: a Predictor built once per actor, applied to store rows."""

    def __init__(self, source: str, kind: str, diff_steps: list[int], neutral: "dict[str, Any] | None" = None) -> None:
        from components.predictor import Predictor
        from workflows.core.runtime import torch_single_thread

        torch_single_thread()
        self.predictor = (Predictor.from_checkpoint(source) if kind == "checkpoint"
                          else Predictor.from_manifest(source))
        self.diff_steps = diff_steps
        # Only members that read blendshapes subtract a neutral: other ensembles skip the join.
        self.neutral = neutral if self.predictor.plan.blendshapes else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.neutral is not None:  # each row's running neutral over its whole video
            from workflows.core.store_reader import joined_column

            batch = {**batch, "neutral": joined_column(batch, self.neutral)}
        ans = self.predictor.predict_store_rows(batch, self.diff_steps)
        n = len(batch["sample_id"])
        labels = np.stack([np.asarray(v, np.float32) for v in batch["labels"]]) if n else np.zeros((0, 0))
        out = {k: np.asarray(batch[k]) for k in ("sample_id", "dataset", "subject", "video", "face_id", "frame_order")}
        out.update(probs=ans["probs"].astype(np.float32), labels=labels)
        for name, p in ans["member_probs"].items():
            out[f"member:{name}"] = p.astype(np.float32)
        if "intensity" in ans:
            out["intensity_pred"] = ans["intensity"].astype(np.float32)
        ints = [np.asarray(v, np.float32) for v in batch["intensities"]]
        if ints and all(len(v) for v in ints):
            out["intensity_true"] = np.stack(ints)
        return out


def predict_store_files(files: list[str], source: str, kind: str, diff_steps: list[int],
                        actors: int = 1, actor_cpus: float = 1.0, batch_size: int = VIDEO_BATCH_ROWS,
                        smooth_window: int = 1, reads_neutral: bool = False) -> dict[str, np.ndarray]:
    """Predict every row of the given feature-store files; arrays sorted by sample_id.

    ``smooth_window`` > 1: each face track's ensemble probabilities (``probs``; member columns
    stay raw) become the centred moving mean over its frames in order (paper 002 §3), as
    serving's. ``reads_neutral``: some member subtracts the running neutral
    (``components.store.neutral.reads_neutral``); the caller knows, and a store without
    ``neutral/`` tables is then warned about here.
    """
    import ray.data

    if not files:
        return {}
    from workflows.core.store_reader import read_store_frames

    from components.store.neutral import files_store, neutral_join, no_tables_warning

    store = files_store(files)
    neutral = neutral_join(store)
    if reads_neutral and neutral is None:
        log.warning(no_tables_warning(store, f"{source} scores its rows with a running neutral that restarts at "
                                             f"every {batch_size}-row batch, not each face's over its video as "
                                             "serving's does"))
    ds = read_store_frames(files, _COLUMNS, include_paths=neutral is not None)
    out = ds.map_batches(StoreRowsPredictor, batch_size=batch_size, batch_format="numpy",
                         fn_constructor_kwargs={"source": source, "kind": kind, "diff_steps": diff_steps,
                                                "neutral": neutral},
                         compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
                         num_cpus=actor_cpus)
    parts: dict[str, list[np.ndarray]] = {}
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        for k, v in batch.items():
            parts.setdefault(k, []).append(v)
    res = {k: np.concatenate(v) for k, v in parts.items()}
    if smooth_window > 1:
        from components.inference import smooth_by_video

        res["probs"] = smooth_by_video(res["probs"], res, res["frame_order"], smooth_window).astype(np.float32)
    order = np.argsort(res["sample_id"], kind="stable")
    return {k: v[order] for k, v in res.items()}


def own_labels(pred: dict[str, np.ndarray], n_aus: int) -> np.ndarray:
    """The rows' own labels; all unknown (-1) for a store without any (unlabeled video, whose AU
    list is its teacher's: the rows hold empty label lists)."""
    labels = pred["labels"]
    return labels if labels.shape[1:] == (n_aus,) else np.full((len(pred["probs"]), n_aus), -1, np.int8)


def reference_labels(pred: dict[str, np.ndarray], store: str, files: list[str], aus: "list[int]",
                     val_labels: str = "own") -> np.ndarray:
    """int8 (N, n_AU) labels that ``pred``'s rows (``predict_store_files`` of ``files``) are scored
    against: their own, or where the run validated on its store's teacher (run.json
    ``val_labels: teacher``: a store of unlabeled video) the teacher's decisions at its recorded
    thresholds (``components.store.splits.teacher_decision_labels``); -1 unknown."""
    if val_labels != "teacher":
        return own_labels(pred, len(aus))
    n = len(pred["sample_id"])
    from components.store.splits import teacher_decision_labels

    decisions = teacher_decision_labels(store, files, aus)
    unknown = [-1] * len(aus)
    return np.array([decisions.get(str(s), unknown) for s in pred["sample_id"]], np.int8).reshape(n, len(aus))

