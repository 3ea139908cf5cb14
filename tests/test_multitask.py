"""The multi-task auxiliary loss: examples are pulled towards their own label's description."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from optuna.trial import TrialState
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.search import export_best, run_search
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, write_study

TECHNIQUES = ["finetune", "multitask"]
LABELS = ["negative", "positive"]
FINETUNE = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("multitask")
    path = write_study(directory, n_train=96, n_validation=32, only=TECHNIQUES,
                       techniques={"finetune": FINETUNE, "multitask": {"enabled": True}})
    return SimpleNamespace(path=path, model=directory / "tiny-bert")


def loss_of(model, tokenizer, texts, labels, *, enabled=True, weight=1.0, temperature=0.1, base=0.0, descriptions=None):
    """The training loss the hooks compute for a batch, the other techniques' loss being ``base``."""
    pm = get_plugin_manager(only=["multitask"])
    inputs = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    inputs["labels"] = torch.tensor(labels)
    params = {"multitask.enabled": enabled, "multitask.weight": weight, "multitask.temperature": temperature}
    return pm.hook.autobert_compute_loss(
        model=model, inputs=inputs, outputs=SimpleNamespace(loss=torch.tensor(base), logits=None), extras={},
        run=SimpleNamespace(params=params, tokenizer=tokenizer, label_names=LABELS,
                            settings={"multitask.descriptions": descriptions}),
    )


@pytest.fixture(scope="module")
def bert(tiny):
    model = AutoModelForSequenceClassification.from_pretrained(tiny.model, num_labels=2)
    return model.eval(), AutoTokenizer.from_pretrained(tiny.model)


def test_loss_is_lower_when_examples_align_with_their_label_descriptions(bert):
    model, tokenizer = bert
    # Each text is a label's description, so its vector is exactly that description's vector.
    texts = ["negative", "positive", "negative", "positive"]

    aligned = loss_of(model, tokenizer, texts, [0, 1, 0, 1])
    misaligned = loss_of(model, tokenizer, texts, [1, 0, 1, 0])

    assert aligned < misaligned


def test_the_auxiliary_loss_is_added_with_its_weight(bert):
    model, tokenizer = bert
    texts = ["the film was good", "the plot was bad"]

    base, light, heavy = (loss_of(model, tokenizer, texts, [1, 0], base=0.5, weight=w).item() for w in (0.0, 0.1, 1.0))

    assert base == pytest.approx(0.5) and light > 0.5
    assert (heavy - 0.5) == pytest.approx(10 * (light - 0.5), rel=1e-4)


def test_disabled_leaves_the_loss_unchanged(bert):
    model, tokenizer = bert

    assert loss_of(model, tokenizer, ["good"], [1], enabled=False, base=0.25) == torch.tensor(0.25)


def test_the_auxiliary_loss_reaches_the_encoder(bert):
    model, tokenizer = bert
    model.zero_grad()
    loss_of(model, tokenizer, ["the film was good", "the plot was bad"], [1, 0]).backward()

    grad = model.bert.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.zero_grad()


def test_label_descriptions_from_the_study_replace_the_label_names(bert):
    model, tokenizer = bert
    described = {"negative": "awful boring dull", "positive": "superb brilliant lovely"}
    texts = ["awful boring dull", "superb brilliant lovely"]

    by_name = loss_of(model, tokenizer, texts, [0, 1])
    aligned = loss_of(model, tokenizer, texts, [0, 1], descriptions=described)
    misaligned = loss_of(model, tokenizer, texts, [1, 0], descriptions=described)

    assert aligned != by_name  # the descriptions, not the names, were encoded
    assert aligned < misaligned  # each text is its own label's description


def described(tiny, descriptions) -> str:
    """The validation problems of the tiny study with these descriptions ('' if none)."""
    path = write_study(tiny.path.parent, name="described", n_train=96, n_validation=32, only=TECHNIQUES,
                       techniques={"finetune": FINETUNE, "multitask": {"enabled": True, "descriptions": descriptions}})
    try:
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))
    except ConfigError as exc:
        return str(exc)
    return ""


def test_descriptions_of_every_label_are_accepted(tiny):
    assert described(tiny, {"negative": "a scathing review", "positive": "a glowing review"}) == ""


def test_unknown_and_missing_labels_in_descriptions_are_reported_before_any_trial(tiny):
    message = described(tiny, {"negativ": "a scathing review", "positive": ""})

    assert "techniques.multitask.descriptions: 'negativ' is not a label of this task (labels: negative, positive)" in message
    assert "techniques.multitask.descriptions: no description for 'negative'; describe every label" in message
    assert "techniques.multitask.descriptions.positive: the description must be non-empty text" in message


def test_a_pooled_head_works_too(tiny):
    from autobert.heads._pooled_model import AutobertPooledForSequenceClassification

    model = AutobertPooledForSequenceClassification.from_encoder(str(tiny.model), pooling="mean", num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny.model)
    texts = ["negative", "positive"]

    assert loss_of(model, tokenizer, texts, [0, 1]) < loss_of(model, tokenizer, texts, [1, 0])


def test_autobert_train_of_a_frozen_config_reproduces_the_trial(tiny, tmp_path):
    study = load_study(tiny.path)
    pm = get_plugin_manager(only=TECHNIQUES)
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, n_trials=1)
    trial = opened.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["multitask.enabled"] is True
    frozen = export_best(study, opened, pm, data, tmp_path / "best.yaml")

    assert main(["train", str(frozen), "--output", str(tmp_path / "run")]) == 0

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["value"] == trial.value
    assert metrics["validation"]["loss"] == trial.user_attrs["metrics"]["loss"]


class TestMultitaskConformance(TechniqueConformance):
    technique = "multitask"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)
