"""The evaluation report: JSON keys and hand-computed values, Markdown rows, HTML plot
references, threshold provenance and fairness checks between models."""

import json

import numpy as np
import pytest

from components.report.document import (build_results, evaluate_cross_dataset, evaluate_model_outputs,
                               write_report)

pytestmark = pytest.mark.filterwarnings("error")

# The hand-worked example of test_metrics.py: at threshold 0.5, F1 AU1 2/3, AU2 1/2,
# mean F1 7/12, total accuracy 5/9, ABAW 41/72; base rates 0.6 and 0.25, so all-positive
# F1 0.75 / 0.4 (mean 0.575) and base-rate random 0.6 / 0.25 (mean 0.425).
LABELS = np.array([[1, 0], [1, -1], [0, 1], [0, 0], [-1, 0], [1, -1]])
PROBS = np.array([[0.9, 0.1], [0.2, 0.7], [0.7, 0.8], [0.4, 0.5], [0.6, 0.95], [0.55, 0.3]])
AUS = [1, 2]


def _evaluations(n_boot=50):
    evals = []
    for fold in (0, 1):
        subjects = [f"f{fold}s{i // 2}" for i in range(6)]
        evals.append(evaluate_model_outputs("cnn", PROBS, LABELS, subjects, AUS, fold=fold,
                                            dataset="synthetic", n_boot=n_boot))
        evals.append(evaluate_model_outputs("oracle", LABELS.clip(0) * 0.9, LABELS, subjects,
                                            AUS, fold=fold, dataset="synthetic", n_boot=n_boot))
    return evals


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    cross = evaluate_cross_dataset("cnn", rng.random((6, 8)), (rng.random((6, 12)) < 0.5) * 1,
                                   list("aabbcc"), "disfa", "bp4d", n_boot=20)
    results = build_results(_evaluations(), cross_dataset=[cross], n_boot=50)
    paths = write_report(out, results, {"git_commit": "0123abc", "seed": 7})
    return paths


def test_json_has_models_trivial_and_hand_values(report):
    doc = json.loads(report["json"].read_text())
    cnn = doc["models"]["cnn"]
    assert cnn["f1"] == pytest.approx({"AU1": 0.6666666667, "AU2": 0.5})
    assert cnn["mean_f1"] == pytest.approx(0.5833333333)
    assert cnn["mean_f1_std"] == 0.0
    assert cnn["accuracy"] == pytest.approx(0.5555555556)
    assert cnn["abaw"] == pytest.approx(0.5694444444)
    assert cnn["n_folds"] == 2
    assert [f["fold"] for f in cnn["folds"]] == [0, 1]
    assert cnn["folds"][0]["threshold_source"] == "default 0.5"
    assert cnn["folds"][0]["ci"]["mean_f1"]["n_subjects"] == 3
    assert doc["models"]["oracle"]["mean_f1"] == 1.0
    assert doc["trivial"]["all_positive"]["mean_f1"] == pytest.approx(0.575)
    assert doc["trivial"]["all_positive"]["f1"] == pytest.approx({"AU1": 0.75, "AU2": 0.4})
    assert doc["trivial"]["base_rate_random"]["mean_f1"] == pytest.approx(0.425)
    assert doc["trivial"]["best"] == "all_positive"
    assert doc["provenance"] == {"git_commit": "0123abc", "seed": 7}
    (comp,) = doc["comparisons"]
    assert (comp["a"], comp["b"]) == ("cnn", "oracle")
    assert comp["paired_bootstrap"]["difference"] == pytest.approx(0.5833333333 - 1.0)
    # Two equal per-fold differences: only ++ and -- reach the observed |mean| -> 2 of 4.
    assert comp["sign_flip"]["p_value"] == 0.5
    assert doc["cross_dataset"][0]["aus"] == [1, 2, 4, 6, 12]
    assert doc["cross_dataset"][0]["train_dataset"] == "disfa"


def test_markdown_tables_put_trivial_predictors_beside_models(report):
    md = report["md"].read_text()
    assert "| AU | cnn | oracle | all-positive (trivial) | base-rate random (trivial) |" in md
    assert "| AU1 | 66.7 ± 0.0 | 100.0 ± 0.0 | 75.0 ± 0.0 | 60.0 ± 0.0 |" in md
    assert "| AU2 | 50.0 ± 0.0 | 100.0 ± 0.0 | 40.0 ± 0.0 | 25.0 ± 0.0 |" in md
    assert "| **mean** | 58.3 ± 0.0 | 100.0 ± 0.0 | 57.5 ± 0.0 | 42.5 ± 0.0 |" in md
    assert "| all-positive (trivial, best) | 57.5 ± 0.0 |" in md
    assert "| cnn | oracle | -41.67 |" in md
    assert "disfa → bp4d" in md
    assert "| git_commit | 0123abc |" in md
    assert "## Per fold" in md


def test_html_embeds_the_plots(report):
    pytest.importorskip("matplotlib")
    html = report["html"].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<td>all-positive (trivial, best)</td>" in html
    for name in ("f1_per_au", "pr_curves", "cooccurrence"):
        png = report["json"].parent / "plots" / f"{name}.png"
        assert f'<img src="plots/{name}.png"' in html
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in report["plots"]] == ["f1_per_au.png", "pr_curves.png",
                                                 "cooccurrence.png"]


def test_thresholds_tuned_on_validation_are_owned_by_the_evaluation():
    # Validation AU1 (0.1-, 0.3+, 0.2+): F1 1.0 at 0.15 and 0.20 -> 0.20; AU2 has no
    # positive in validation -> 0.5.
    val_probs = np.array([[0.1, 0.2], [0.3, 0.1], [0.2, 0.9]])
    val_labels = np.array([[0, 0], [1, 0], [1, 0]])
    out = evaluate_model_outputs("cnn", PROBS, LABELS, list("aabbcc"), AUS,
                                 val_probs=val_probs, val_labels=val_labels,
                                 val_subjects=["v1", "v1", "v2"], n_boot=0)
    assert out["thresholds"] == pytest.approx([0.2, 0.5])
    assert out["threshold_source"] == "tuned on validation subjects"
    assert out["ci"] is None
    with pytest.raises(ValueError, match="validation subjects only"):
        evaluate_model_outputs("cnn", PROBS, LABELS, list("aabbcc"), AUS, val_probs=val_probs,
                               val_labels=val_labels, val_subjects=["a", "x", "y"], n_boot=0)


def test_models_must_share_the_test_samples_of_a_fold():
    good = evaluate_model_outputs("a", PROBS, LABELS, list("aabbcc"), AUS, fold=0, n_boot=0)
    short = evaluate_model_outputs("b", PROBS[:4], LABELS[:4], list("aabb"), AUS, fold=0,
                                   n_boot=0)
    with pytest.raises(ValueError, match="model 'b' fold 0: 4 samples"):
        build_results([good, short])
