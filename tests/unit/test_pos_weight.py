"""Class-balanced losses (``TrainConfig.pos_weight='balanced'``): the weights from label counts,
the weighted masked BCE and the weighted masked MAE of pairwise-rank's mapping step, against
numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.losses import masked_l1
from components.models.registry import build_model
from components.store.splits import balanced_pos_weight
from workflows.train import TrainConfig



def test_balanced_weights_are_negatives_over_positives_clipped() -> None:
    counts = {  # (positives, known) per AU
        "s1": np.array([[2, 0, 5, 1], [10, 10, 5, 100]]),
        "s2": np.array([[2, 0, 0, 0], [10, 10, 0, 100]]),
        "test": np.array([[50, 50, 50, 50], [50, 50, 50, 50]]),  # not a training subject
    }
    # totals over s1+s2: pos [4, 0, 5, 1], known [20, 20, 5, 200]
    # → 16/4 = 4; no positives → 1; 0/5 = 0 → clipped up to 1; 199/1 → capped at 20
    assert balanced_pos_weight(counts, ["s1", "s2"]) == [4.0, 1.0, 1.0, 20.0]
    assert balanced_pos_weight(counts, []) == []


def test_model_bce_applies_pos_weight_to_known_positives_only() -> None:
    model = build_model("baseline_resnet18_112", [1, 2])
    logits = torch.zeros(2, 2)
    labels = torch.tensor([[1, 0], [1, -1]])
    log2 = math.log(2.0)
    # unweighted: three known entries, each -log σ(0) = log 2
    assert float(model.bce(logits, labels)) == pytest.approx(log2)
    model.pos_weight = torch.tensor([3.0, 1.0])
    # the two positives of AU1 weigh 3: (3 log2 + log2 + 3 log2) / 3 known entries
    assert float(model.bce(logits, labels)) == pytest.approx(7 * log2 / 3)
    parts = model.loss({"logits": logits}, {"labels": labels})
    assert float(parts["loss"]) == pytest.approx(7 * log2 / 3)


def test_masked_l1_weighs_known_active_labels_only() -> None:
    pred = torch.tensor([[0.2, 0.5], [0.9, 0.1]])
    target = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # known: |0.2-1| = 0.8, |0.5-0| = 0.5, |0.1-1| = 0.9 → unweighted 2.2 / 3
    assert float(masked_l1(pred, target)) == pytest.approx(2.2 / 3)
    # weights 3 and 2 on the two active entries: (3·0.8 + 0.5 + 2·0.9) / 3 = 4.7 / 3
    assert float(masked_l1(pred, target, pos_weight=torch.tensor([3.0, 2.0]))) == pytest.approx(4.7 / 3)


def test_pairwise_mapping_mae_uses_the_models_pos_weight() -> None:
    model = build_model("pairwise_rank_small", [1, 2])
    logits = torch.zeros(2, 2)              # σ = 0.5 everywhere: every known entry's error is 0.5
    labels = torch.tensor([[1.0, 0.0], [1.0, -1.0]])
    assert float(model.loss({"logits": logits}, {"labels": labels})["mapping_mae"]) == pytest.approx(0.5)
    model.pos_weight = torch.tensor([4.0, 1.0])
    # (4·0.5 + 0.5 + 4·0.5) / 3 known entries
    assert float(model.loss({"logits": logits}, {"labels": labels})["mapping_mae"]) == pytest.approx(4.5 / 3)


def test_pos_weight_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="pos_weight must be 'none' or 'balanced'"):
        TrainConfig(pos_weight="inverse")


def test_defaults_are_the_fields_practice() -> None:
    # Unweighted BCE at 0.5 on AUs with 5-30 % base rates learns to predict no AU (F1 0): the
    # defaults balance the loss and choose thresholds on the validation subjects.
    cfg = TrainConfig()
    assert cfg.pos_weight == "balanced"
    assert cfg.tune_thresholds is True


def test_small_training_sets_get_smaller_batches_and_light_augmentation() -> None:
    from components.configuration import from_dict

    cfg = TrainConfig()
    # 240 frames, 2 workers: 32 a batch would give 3 steps an epoch; 8 gives 15.
    assert (cfg.batch_size, cfg.min_steps_per_epoch) == (32, 16)
    assert cfg.fitted_batch_size(240) == 8
    assert cfg.fitted_batch_size(100_000) == 32 and cfg.fitted_batch_size(0) == 32
    assert TrainConfig(min_steps_per_epoch=0).fitted_batch_size(240) == 32
    assert TrainConfig(batch_size=4).fitted_batch_size(240) == 4
    assert (cfg.augment.crop_jitter, cfg.augment.scale_jitter, cfg.augment.flip) == (0.02, 0.02, True)
    # A partial augment mapping keeps the training defaults for the fields it leaves out.
    assert from_dict(TrainConfig, {"augment": {"flip": False}}).augment.crop_jitter == 0.02
