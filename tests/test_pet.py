"""PET further pretraining: a cloze loss at the mask over the verbalizer words, and clear errors for bad words."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from optuna.trial import FixedTrial

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.plugins.further_pretraining import load_mlm
from autobert.plugins.pet import cloze_batch, pet_loss, verbalizer_ids
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, make_tiny_model, write_study

TECHNIQUES = ["finetune", "further_pretraining", "masking", "pet"]
VERBALIZER = {"negative": "bad", "positive": "good"}
FINETUNE = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    path = make_tiny_model(tmp_path_factory.mktemp("pet") / "tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model has no MLM head
        model = load_mlm(str(path))
    return model, AutoTokenizer.from_pretrained(str(path))


def test_the_loss_is_the_cross_entropy_over_the_verbalizer_words_at_the_mask(tiny):
    model, tokenizer = tiny
    model.eval()  # no dropout, so the full forward below sees the same activations
    words = verbalizer_ids(tokenizer, ["negative", "positive"], VERBALIZER)
    ids, attention, positions = cloze_batch(["the plot was dull", "a really superb cast and story"], tokenizer,
                                            "{text} It was [MASK].", 32)
    assert (ids[torch.arange(2), positions] == tokenizer.mask_token_id).all()
    labels = torch.tensor([0, 1])
    loss = pet_loss(model, ids, attention, positions, words, labels)
    logits = model(input_ids=ids, attention_mask=attention).logits
    expected = F.cross_entropy(logits[torch.arange(2), positions][:, words], labels)
    assert torch.allclose(loss, expected, atol=1e-5)
    # No other vocabulary word is a competitor: the full-vocabulary loss at the mask differs.
    assert not torch.allclose(loss, F.cross_entropy(logits[torch.arange(2), positions], torch.tensor(words)[labels]))


def test_only_the_verbalizer_words_outputs_at_the_mask_get_a_gradient(tiny):
    model, tokenizer = tiny
    words = verbalizer_ids(tokenizer, ["negative", "positive"], VERBALIZER)
    ids, attention, positions = cloze_batch(["the plot was dull", "superb"], tokenizer, "{text} It was [MASK].", 32)
    seen = []
    head = model.cls
    handle = head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    model.zero_grad()
    pet_loss(model, ids, attention, positions, words, torch.tensor([0, 1])).backward()
    handle.remove()
    assert seen == [torch.Size([2, model.config.hidden_size])]  # one position per example: its mask
    bias = dict(model.named_parameters())["cls.predictions.bias"].grad
    assert set(torch.nonzero(bias).flatten().tolist()) == set(words)


def test_the_pattern_keeps_its_mask_when_a_text_is_too_long(tiny):
    _, tokenizer = tiny
    ids, _, positions = cloze_batch(["the movie was good " * 40], tokenizer, "{text} It was [MASK].", 24)
    assert ids.shape[1] <= 24 and ids[0, positions[0]] == tokenizer.mask_token_id


def pet_study(directory, **pet):
    return write_study(directory, n_train=48, n_validation=16, only=TECHNIQUES,
                       techniques={"finetune": FINETUNE, "pet": pet})


def test_a_label_name_that_is_not_one_vocabulary_token_is_a_clear_error(tmp_path):
    # The tiny vocabulary has no word "negative": the default verbalizer (the label names) cannot work.
    path = pet_study(tmp_path, enabled=[False, True])
    with pytest.raises(ConfigError) as error:
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))
    message = str(error.value)
    assert "techniques.pet.verbalizer: a label word must be a single vocabulary token" in message
    assert "'negative' (label 'negative') is" in message and "the label names" in message


def test_a_verbalizer_word_that_is_not_one_token_is_named_and_a_good_one_validates(tmp_path):
    path = pet_study(tmp_path, enabled=True, verbalizer={"negative": "bad", "positive": "xylophone"})
    with pytest.raises(ConfigError, match=r"'xylophone' \(label 'positive'\)"):
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))
    path = pet_study(tmp_path, enabled=True, verbalizer=VERBALIZER)
    validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))


def test_a_pattern_without_its_mask_is_a_clear_error(tmp_path):
    path = pet_study(tmp_path, enabled=True, verbalizer=VERBALIZER, pattern="{text} It was great.")
    with pytest.raises(ConfigError, match=r"techniques.pet.pattern: .* must contain \{text\} and \[MASK\] once each"):
        validate_study(load_study(path), get_plugin_manager(only=TECHNIQUES))


def test_pet_is_opt_in_a_study_without_a_pet_section_has_no_pet_parameter(tmp_path):
    from autobert.config.space import explore

    pm = get_plugin_manager(only=TECHNIQUES)
    assert not any(n.startswith("pet.") for n in explore(pm.hook.autobert_search_space, pm.techniques, {}, hooks=pm.hook).defaults)
    report = explore(pm.hook.autobert_search_space, pm.techniques, {"pet.enabled": [False, True]}, hooks=pm.hook)
    assert {"pet.enabled", "pet.steps", "pet.learning_rate"} <= set(report.defaults)


class Probe:
    def __init__(self):
        self.built_from = []

    @hookimpl
    def autobert_build_model(self, checkpoint):
        self.built_from.append(checkpoint)


def run_trial(tmp_path, extra_params, **further):
    path = write_study(tmp_path, n_train=48, n_validation=16, only=TECHNIQUES, techniques={
        "finetune": FINETUNE, "pet": {"enabled": True, "verbalizer": VERBALIZER, "batch_size": 8},
        "further_pretraining": {"batch_size": 4, "task_steps": {"low": 2, "high": 4}, **further}})
    study = load_study(path)
    pm = get_plugin_manager(only=TECHNIQUES)
    probe = Probe()
    pm.register_technique(probe, Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    data = validate_study(study, pm)
    params = {**{f"finetune.{k}": v for k, v in FINETUNE.items()}, "pet.enabled": True, "pet.steps": 4,
              "pet.learning_rate": 1e-4, **extra_params}
    trial = FixedTrial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(study, trial, pm, data)
    return trial.user_attrs, probe


def test_a_trial_fine_tunes_the_encoder_pet_produced(tmp_path):
    attrs, probe = run_trial(tmp_path, {"further_pretraining.stages": "none"})
    assert probe.built_from[-1].endswith("pet/model")
    assert attrs["pet"] == "pet: 4 steps from the model"


def test_pet_continues_from_the_task_stage_when_both_run(tmp_path):
    attrs, probe = run_trial(tmp_path, {
        "further_pretraining.stages": "task", "further_pretraining.task_steps": 2,
        "further_pretraining.task_learning_rate": 1e-4, "masking.strategy": "dynamic", "masking.probability": 0.15})
    assert probe.built_from[-1].endswith("pet/model")
    assert attrs["pet"] == "pet: 4 steps from the further-pretrained encoder"
    assert attrs["further_pretraining"][0].startswith("task: 2 steps")


class TestPetConformance(TechniqueConformance):
    technique = "pet"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": TECHNIQUES,
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16},
                                      "further_pretraining": {"stages": "none"},
                                      "pet": {"enabled": True, "steps": 2, "verbalizer": VERBALIZER, "batch_size": 4}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=TECHNIQUES)
