"""Smoothing toward confusions: a cached stage of the technique's own, through autobert's public API."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F

from autobert import StageCache
from autobert.cli import main
from autobert.run.plugin_manager import get_plugin_manager
from autobert.testing import write_study
from autobert_label_smoothing import TARGETS
from autobert_label_smoothing.confusions import KIND, targets_from

FINETUNE = {"learning_rate": 3e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


def test_each_class_is_smoothed_toward_the_classes_it_is_mistaken_for():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([1, 1, 2, 1, 1, 2])

    targets = targets_from(labels, predicted, 3)

    assert targets[0].tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])
    # No mistake: uniform over the other classes.
    assert targets[1].tolist() == pytest.approx([0.5, 0.0, 0.5]) and targets[2].tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_the_loss_mixes_the_cross_entropy_with_the_targets_of_each_label():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3) * 3, torch.tensor([0, 1, 2, 0, 1, 2])
    targets = [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]
    run = SimpleNamespace(params={"label_smoothing.factor": 0.2}, metadata={TARGETS: targets})
    outputs = SimpleNamespace(logits=logits, loss=F.cross_entropy(logits, labels))

    loss = get_plugin_manager(only=["label_smoothing"]).hook.autobert_compute_loss(
        model=None, inputs={"labels": labels}, outputs=outputs, extras={}, run=run)

    toward = torch.tensor(targets)[labels]
    expected = 0.8 * F.cross_entropy(logits, labels) - 0.2 * (toward * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(loss, expected)


def test_trials_differing_only_in_the_factor_share_one_cached_stage(tmp_path):
    cache = tmp_path / "shared-cache"
    studies = []
    for name, factor in (("low", 0.1), ("high", 0.2)):
        path = write_study(tmp_path, name=name, n_train=64, n_validation=32, only=["finetune", "label_smoothing"],
                           cache_dir=str(cache), budget={"trials": 1},
                           techniques={"finetune": FINETUNE, "label_smoothing": {"factor": factor, "toward": "confusions"}})
        assert main(["search", str(path)]) == 0
        studies.append(optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}"))

    (entry,) = StageCache(cache).entries(KIND)
    notes = [study.trials[0].user_attrs[TARGETS] for study in studies]
    assert notes[0] == notes[1] and len(notes[0]) == 2  # one row per class, the same quick model's
    assert [row[i] for i, row in enumerate(notes[0])] == [0.0, 0.0]  # a class is never smoothed toward itself
    assert entry.key


def test_an_unknown_target_is_refused_before_any_trial(tmp_path, capsys):
    path = write_study(tmp_path, n_train=32, n_validation=16, only=["finetune", "label_smoothing"],
                       techniques={"label_smoothing": {"toward": "prior"}})

    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "techniques.label_smoothing.toward" in err and "'prior' is not one of uniform, confusions" in err
