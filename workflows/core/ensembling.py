"""Choose an ensemble from trained runs and write its manifest: the logic of the
``ensemble`` stage (its entry: ``workflows/ensemble.py``), which recipe and demo compose.

``python -m workflows.ensemble --runs RUNS... --out DIR [--rule mean|vote|best_per_au]
[--thresholds EVAL_DIR]``

Weights and per-AU choices come from each member's validation subjects only. Per-AU thresholds
are each member checkpoint's own (chosen on the run's validation subjects at the selected epoch
during training, ``TrainConfig.tune_thresholds``; 0.5 for a run trained without), or copied from
an evaluation's ``thresholds.json`` when given (``--thresholds``). The
ensemble is reported beside its members only on subjects that no member trained or validated on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from components import storage
from components.ensemble import EnsembleManifest, Member

log = logging.getLogger("facsflow.ensemble")

__all__ = ["EnsembleConfig", "build_ensemble"]


@dataclass
class EnsembleConfig:
    """One ensemble; saved as ``<out>/ensemble.yaml`` beside ``ensemble.json``."""

    runs: tuple[str, ...] = ()
    """Run folders (or folders holding runs): the members."""
    out: str = ""
    """Ensemble folder (ensemble.json, ensemble_report.json)."""
    rule: Literal["mean", "vote", "best_per_au"] = "mean"
    """Combination rule: weighted mean of probabilities, weighted vote of occurrences, or per AU
    the member with the best validation F1."""
    thresholds: str = ""
    """Evaluation folder whose thresholds.json to copy ('' : each checkpoint's own, chosen on its
    run's validation subjects in training)."""
    actors: int = 1
    """Prediction actors for the validation and unseen-subject predictions."""
    max_subjects: int = 0
    """Score members and ensemble on at most this many validation and unseen subjects each: a
    sample fixed by the subjects' names (``components.store.splits.subject_sample``), for a store
    too large to score whole; 0: all. ``ensemble_report.json`` lists the subjects scored."""

    def __post_init__(self) -> None:
        if self.max_subjects < 0:
            raise ValueError(f"max_subjects must be >= 0, got {self.max_subjects}")
        if self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors}")


def _member(run_dir: str, thresholds: dict[str, Any]) -> tuple[Member, dict[str, Any]]:
    from components.checkpoint import load_checkpoint
    from components.models.registry import init_provenance
    from workflows.core.training import read_run

    run = read_run(run_dir)
    split = json.loads(storage.read_text(storage.join(run_dir, "split.json")))
    ckpt = load_checkpoint(run["checkpoint"])
    thr = thresholds.get(run_dir, {}).get("thresholds", ckpt["thresholds"])
    member = Member(name=run["run"], checkpoint=run["checkpoint"], model_name=ckpt["model_name"],
                    input_spec=ckpt["input_spec"], preprocess=ckpt["preprocess"], thresholds=list(thr),
                    trained_on=ckpt["preprocess"].get("dataset", ""),
                    init=ckpt.get("init") or init_provenance(ckpt.get("pretrained")))
    return member, {"split": split, "aus": ckpt["aus"], "store": ckpt["preprocess"]["store"],
                    "diff_steps": ckpt["preprocess"]["diff_steps"], "provenance": ckpt["provenance"],
                    "val_labels": run.get("val_labels", "own"), "label_sources": _label_sources(run_dir)}


def _label_sources(run_dir: str) -> list[str]:
    """The run's ``label_sources`` (train.yaml; runs from before the option: human labels)."""
    import yaml

    cfg = yaml.safe_load(storage.read_text(storage.join(run_dir, "train.yaml"))) or {}
    return list(cfg.get("label_sources") or ["human"])


def build_ensemble(runs: list[str], out: str, rule: str = "mean", thresholds_dir: str = "",
                   actors: int = 1, max_subjects: int = 0) -> dict[str, Any]:
    """Select weights on validation subjects, write the manifest, report on unseen subjects
    (``max_subjects``: at most that many of each, as ``EnsembleConfig.max_subjects``)."""
    from components.metrics.occurrence import evaluate_occurrence
    from components.plan import recorded_faces
    from components.store.splits import _split_files, subject_sample, teacher_labelling
    from components.store.neutral import reads_neutral
    from workflows.core.evaluation import find_runs
    from workflows.core.store_scoring import predict_store_files, reference_labels

    run_dirs = find_runs(runs)
    thresholds = {}
    if thresholds_dir:
        thresholds = json.loads(storage.read_text(storage.join(thresholds_dir, "thresholds.json")))
    members, infos = zip(*[_member(r, thresholds) for r in run_dirs])
    aus = list(infos[0]["aus"])
    for m, i in zip(members, infos):
        if list(i["aus"]) != aus:
            raise ValueError(f"member {m.name} predicts AUs {i['aus']}, the first member {aus}")
    val_f1 = []
    for m, i in zip(members, infos):
        # Validation as the run's own: its rows' labels, or its teacher's decisions (val_labels).
        files = _split_files(i["store"], subject_sample(i["split"]["val"], max_subjects))
        pred = predict_store_files(files, m.checkpoint, "checkpoint", i["diff_steps"], actors,
                                   reads_neutral=reads_neutral(m.input_spec))
        labels = reference_labels(pred, i["store"], files, aus, i["val_labels"])
        res = evaluate_occurrence(pred["probs"], labels, aus, m.thresholds)
        m.val_f1 = [res["per_au"][f"AU{a}"]["f1"] or 0.0 for a in aus]
        val_f1.append(float(res["mean_f1"] or 0.0))
    vf = np.asarray(val_f1)
    weights = (vf / vf.sum()).tolist() if vf.sum() > 0 else [1.0 / len(members)] * len(members)
    choice = [int(np.argmax([m.val_f1[a] for m in members])) for a in range(len(aus))]
    ens_thr = np.average(np.asarray([m.thresholds for m in members]), axis=0, weights=weights).tolist()
    datasets = sorted({m.trained_on for m in members})
    teachers = sorted({teacher_labelling(i["store"])["source"] for i in infos if "teacher" in i["label_sources"]})
    card = {"trained_on": datasets,
            "data_note": _data_note(datasets, teachers, all(i["val_labels"] == "teacher" for i in infos)),
            "selection": "weights ∝ validation mean F1; per-AU choice by validation F1; validation subjects only"
                         + ("; scored against the teacher's decisions where a store has no labels of its own"
                            if any(i["val_labels"] == "teacher" for i in infos) else "")}
    if teachers:
        card["teachers"] = teachers
    manifest = EnsembleManifest(aus=aus, members=list(members), rule=rule, weights=weights,
                                thresholds=ens_thr, choice=choice,
                                provenance={"members": [i["provenance"] for i in infos]}, model_card=card)
    manifest.faces = recorded_faces(manifest)  # what predict and Serve detect and align faces with
    path = manifest.save(out)
    report = _report_unseen(manifest, infos, out, actors, max_subjects)
    return {"manifest": path, "weights": weights, "val_mean_f1": val_f1, "report": report}


def _data_note(datasets: list[str], teachers: list[str], teacher_only: bool) -> str:
    """What the members learnt from, for the model card."""
    if teacher_only:  # stores without labels of their own: the students learnt the teacher's answers
        return (f"distilled: trained on {', '.join(teachers)}'s labels of unlabeled video ({', '.join(datasets)}); "
                "it answers like its teacher at best, and is validated only against it")
    note = ("trained on facsflow's SYNTHETIC data (AUs added by the generator to real photos): not a "
            "validated AU detector for real faces") if any(d in ("synthetic", "manifest") or "synth" in d
                                                           for d in datasets) else f"trained on {', '.join(datasets)}"
    return note + (f"; with labels from {', '.join(teachers)}" if teachers else "")


def _report_unseen(manifest: EnsembleManifest, infos: Any, out: str, actors: int,
                   max_subjects: int = 0) -> dict[str, Any]:
    """Ensemble vs members on test subjects that no member trained or validated on (at most
    ``max_subjects`` of them; 0: all)."""
    from components.metrics.occurrence import evaluate_occurrence
    from components.store.neutral import reads_neutral
    from components.store.splits import _split_files, subject_sample
    from workflows.core.store_scoring import predict_store_files, reference_labels

    seen = set()
    for i in infos:
        seen |= set(i["split"]["train"]) | set(i["split"]["val"])
    unseen = subject_sample(sorted(set(infos[0]["split"]["test"]) - seen), max_subjects)
    result: dict[str, Any] = {"subjects": unseen}
    if not unseen or len({i["store"] for i in infos}) != 1:
        result["note"] = ("no subject is unseen by every member (fold models need a held-out group "
                          "kept out of every fold): ensemble not scored")
    else:
        files = _split_files(infos[0]["store"], unseen)
        pred = predict_store_files(files, out, "manifest", infos[0]["diff_steps"], actors,
                                   reads_neutral=any(reads_neutral(m.input_spec) for m in manifest.members))
        against = "teacher" if all(i["val_labels"] == "teacher" for i in infos) else "own"
        labels = reference_labels(pred, infos[0]["store"], files, manifest.aus, against)
        result["labels"] = against
        result["ensemble"] = evaluate_occurrence(pred["probs"], labels, manifest.aus, manifest.thresholds)
        result["members"] = {m.name: evaluate_occurrence(pred[f"member:{m.name}"], labels, manifest.aus,
                                                         m.thresholds) for m in manifest.members}
    storage.write_json(storage.join(out, "ensemble_report.json"), result)
    return result
