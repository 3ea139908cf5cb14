"""The technique smooths the training loss that autobert's trainer asks the hooks for."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from autobert.run.plugin_manager import get_plugin_manager


def training_loss(factor: float, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    pm = get_plugin_manager(only=["label_smoothing"])
    outputs = SimpleNamespace(logits=logits, loss=F.cross_entropy(logits, labels))
    return pm.hook.autobert_compute_loss(
        model=None, inputs={"labels": labels}, outputs=outputs, extras={},
        run=SimpleNamespace(params={"label_smoothing.factor": factor}),
    )


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.randn(8, 3) * 4, torch.randint(0, 3, (8,))


def test_factor_zero_leaves_the_loss_unchanged(batch):
    logits, labels = batch
    assert torch.equal(training_loss(0.0, logits, labels), F.cross_entropy(logits, labels))


def test_loss_is_the_smoothed_cross_entropy(batch):
    logits, labels = batch
    expected = F.cross_entropy(logits, labels, label_smoothing=0.2)
    assert torch.allclose(training_loss(0.2, logits, labels), expected)
    assert not torch.allclose(expected, F.cross_entropy(logits, labels))


def test_out_of_range_factor_is_reported_before_any_trial():
    from autobert.config.schema import StudyConfig

    pm = get_plugin_manager(only=["label_smoothing"])
    study = StudyConfig.model_validate({
        "name": "s", "model": "m", "data": {"train": "t.csv", "validation": "v.csv"},
        "techniques": {"label_smoothing": {"factor": {"low": 0.0, "high": 1.5}}},
    })
    problems = pm.effective_space(study.overrides).problems  # what `autobert validate` reports
    assert problems == ["techniques.label_smoothing.factor: the range end 1.5 is outside this parameter's valid "
                        "range [0, 1) (its search range is float [0, 0.2]); give a value in [0, 1)"]
