"""Self-knowledge distillation: the loss follows the teacher, the teacher is trained once per recipe."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from optuna.trial import FixedTrial, TrialState

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.run.pipeline import run_pipeline
from autobert.stage_cache import StageCache
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.search import export_best, run_search
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, write_study

TECHNIQUES = ["finetune", "distillation"]
FINETUNE = {"learning_rate": 5e-3, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


def training_loss(alpha, temperature, logits, labels, teacher):
    pm = get_plugin_manager(only=["distillation"])
    outputs = SimpleNamespace(logits=logits, loss=F.cross_entropy(logits, labels))
    params = {"distillation.enabled": True, "distillation.alpha": alpha, "distillation.temperature": temperature}
    return pm.hook.autobert_compute_loss(
        model=None, inputs={"labels": labels}, outputs=outputs, extras={"teacher_logits": teacher},
        run=SimpleNamespace(params=params),
    )


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.randn(8, 2) * 3, torch.randint(0, 2, (8,)), torch.randn(8, 2) * 3


def test_loss_is_alpha_soft_kl_times_t_squared_plus_the_rest_hard(batch):
    logits, labels, teacher = batch
    t = 4.0
    soft = F.kl_div(F.log_softmax(logits / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")
    expected = 0.3 * soft * t * t + 0.7 * F.cross_entropy(logits, labels)

    assert torch.allclose(training_loss(0.3, t, logits, labels, teacher), expected)


def test_changing_the_temperature_changes_the_loss(batch):
    logits, labels, teacher = batch

    assert not torch.allclose(training_loss(0.5, 1.0, logits, labels, teacher),
                              training_loss(0.5, 4.0, logits, labels, teacher))


def test_the_loss_follows_the_teachers_soft_labels(batch):
    logits, labels, teacher = batch

    assert training_loss(0.9, 2.0, logits, labels, logits) < training_loss(0.9, 2.0, logits, labels, teacher)


def test_disabled_leaves_the_loss_unchanged(batch):
    logits, labels, teacher = batch
    pm = get_plugin_manager(only=["distillation"])
    outputs = SimpleNamespace(logits=logits, loss=F.cross_entropy(logits, labels))
    loss = pm.hook.autobert_compute_loss(model=None, inputs={"labels": labels}, outputs=outputs, extras={},
                                         run=SimpleNamespace(params={"distillation.enabled": False}))
    assert torch.equal(loss, outputs.loss)


# --------------------------------------------------------------------------
# In a real trial
# --------------------------------------------------------------------------


def study_path(directory, **distillation):
    return write_study(directory, n_train=96, n_validation=32, only=TECHNIQUES,
                       techniques={"finetune": FINETUNE, "distillation": distillation})


def params(alpha, temperature=2.0):
    return {**{f"finetune.{k}": v for k, v in FINETUNE.items()}, "distillation.enabled": True,
            "distillation.alpha": alpha, "distillation.temperature": temperature, "distillation.teachers": 1}


def entries(study):
    return [e.key for e in StageCache(study.cache_path).entries("teacher")]


def test_the_teacher_is_trained_once_for_trials_differing_only_in_alpha_and_the_cache_changes_nothing(tmp_path):
    study = load_study(study_path(tmp_path))
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)

    cold = run_pipeline(study, FixedTrial(params(0.3)), pm, data)
    assert len(entries(study)) == 1
    other_alpha = run_pipeline(study, FixedTrial(params(0.7)), pm, data)
    warm = run_pipeline(study, FixedTrial(params(0.3)), pm, data)

    assert len(entries(study)) == 1
    # The validation loss too: equal to the last bit, not merely the same accuracy.
    assert (warm.value, warm.metrics["loss"]) == (cold.value, cold.metrics["loss"])
    assert other_alpha.metrics["loss"] != cold.metrics["loss"]
    assert other_alpha.steps == cold.steps


def test_the_training_split_gets_the_teachers_logits_and_validation_does_not(tmp_path):
    seen = {}

    class Probe:
        from autobert import hookimpl

        @hookimpl(trylast=True)
        def autobert_modify_datasets(self, datasets):
            seen.update({split: ds.column_names for split, ds in datasets.items()})

    study = load_study(study_path(tmp_path))
    pm = get_plugin_manager(only=TECHNIQUES)
    from autobert.run.plugin_manager import Technique

    pm.register_technique(Probe(), Technique("probe", "tests", "autobert-tests", "0"))
    data = validate_study(study, pm)
    run_pipeline(study, FixedTrial(params(0.5)), pm, data)

    assert "teacher_logits" in seen["train"] and "teacher_logits" not in seen["validation"]


def test_autobert_train_of_a_frozen_config_reproduces_the_trial(tmp_path):
    path = study_path(tmp_path, enabled=True, alpha=0.5, temperature=2.0)
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, n_trials=1)
    trial = opened.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["distillation.enabled"] is True
    frozen = export_best(study, opened, pm, data)

    assert main(["train", str(frozen), "--output", str(tmp_path / "run")]) == 0

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["value"] == trial.value


class TestDistillationConformance(TechniqueConformance):
    technique = "distillation"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)
