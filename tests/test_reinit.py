"""Re-initialising the top encoder layers: exactly those layers change, the same way for one seed.

The tiny BERT is "pretrained" here by adding noise to every weight, so that a
re-initialised LayerNorm (weight 1, bias 0) differs from the checkpoint too.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from optuna.trial import TrialState
from transformers import BertModel, TrainerCallback, set_seed

from autobert import hookimpl
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, write_study

FINETUNE = {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0}
LABELS = ["negative", "positive"]


def study_path(directory, model="pretrained-bert", **reinit):
    return write_study(directory, n_train=32, n_validation=16, only=["finetune", "reinit"], model=model,
                       techniques={"finetune": FINETUNE, "reinit": reinit})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-layer BERT whose every weight is off its initial value, as after pretraining."""
    directory = tmp_path_factory.mktemp("reinit")
    study_path(directory)  # writes the task and the untrained tiny BERT
    encoder = BertModel.from_pretrained(directory / "tiny-bert")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in encoder.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    encoder.save_pretrained(directory / "pretrained-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(directory / "tiny-bert" / name, directory / "pretrained-bert" / name)
    return directory


def weights(model) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def built(checkpoint, layers: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model a trial trains, built and modified by the hooks as the pipeline does."""
    pm = get_plugin_manager(only=["reinit"])
    run = SimpleNamespace(params={"reinit.layers": layers}, seed=seed, num_labels=2,
                          id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    set_seed(seed)  # as the pipeline does before building the model
    model = pm.hook.autobert_build_model(checkpoint=str(checkpoint / "pretrained-bert"), run=run)
    pm.hook.autobert_modify_model(model=model, run=run)
    return weights(model)


def in_layers(name: str, layers: range) -> bool:
    return any(name.startswith(f"bert.encoder.layer.{i}.") for i in layers)


@pytest.mark.parametrize("n", [1, 2])
def test_exactly_the_top_n_layers_differ_from_the_checkpoint(checkpoint, n):
    loaded = {f"bert.{k}": v for k, v in weights(BertModel.from_pretrained(checkpoint / "pretrained-bert")).items()}
    untouched = built(checkpoint, 0)

    after = built(checkpoint, n)

    top = range(2 - n, 2)
    changed = {name for name, value in after.items() if not torch.equal(value, untouched[name])}
    assert changed == {name for name in after if in_layers(name, top)}
    assert all(not torch.equal(after[name], loaded[name]) for name in changed)
    assert all(torch.equal(after[name], loaded[name]) for name in loaded if not in_layers(name, top))


def test_reinitialised_layers_get_bert_initial_values(checkpoint):
    after = built(checkpoint, 1)

    layer = {name.removeprefix("bert.encoder.layer.1."): v for name, v in after.items() if in_layers(name, range(1, 2))}
    assert torch.equal(layer["output.LayerNorm.weight"], torch.ones(32))
    assert all(torch.equal(v, torch.zeros_like(v)) for name, v in layer.items()
               if name.endswith("bias"))
    query = layer["attention.self.query.weight"]
    assert query.mean().abs() < 0.005 and 0.015 < query.std() < 0.025  # initializer_range 0.02


def test_more_layers_than_the_model_has_reinitialises_them_all(checkpoint):
    capped, everything = built(checkpoint, 3), built(checkpoint, 2)

    assert all(torch.equal(capped[name], everything[name]) for name in everything)


def test_one_seed_gives_the_same_layers_and_another_seed_others(checkpoint):
    first, again, other = built(checkpoint, 1), built(checkpoint, 1), built(checkpoint, 1, seed=1)

    name = "bert.encoder.layer.1.attention.self.query.weight"
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first[name], other[name])


def test_two_trials_with_one_seed_train_from_the_same_reinitialised_model(checkpoint):
    starts = []

    class Probe:
        @hookimpl
        def autobert_trainer_callbacks(self):
            class Record(TrainerCallback):
                def on_train_begin(self, args, state, control, model=None, **kwargs):
                    starts.append(weights(model))

            return [Record()]

    study = load_study(study_path(checkpoint, layers=1))
    pm = get_plugin_manager(only=["finetune", "reinit"])
    pm.register_technique(Probe(), Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))

    trials = run_search(study, pm, validate_study(study, pm), n_trials=2).trials

    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(t.params["reinit.layers"] == 1 for t in trials)
    first, second = starts
    assert all(torch.equal(first[name], second[name]) for name in first)
    expected = built(checkpoint, 1)
    assert all(torch.equal(first[name], expected[name]) for name in expected)


def test_fixing_more_layers_than_the_model_has_is_refused_at_validation(checkpoint):
    study = load_study(study_path(checkpoint, layers=3))

    with pytest.raises(ConfigError) as excinfo:
        validate_study(study, get_plugin_manager(only=["finetune", "reinit"]))

    assert excinfo.value.problems == [
        "techniques.reinit.layers: asks to re-initialise up to 3 layers, but 'pretrained-bert' has 2; use at most 2"
    ]


@pytest.fixture
def gpt2_study(tmp_path):
    """A study over a tiny GPT-2 (the tiny BERT's tokenizer, a GPT-2 config)."""
    from transformers import GPT2Config

    def write(**reinit):
        path = study_path(tmp_path, model="tiny-gpt2", **reinit)
        shutil.copytree(tmp_path / "tiny-bert", tmp_path / "tiny-gpt2")
        config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=400, bos_token_id=0, eos_token_id=0,
                            pad_token_id=0)  # [PAD]: GPT-2 classifies a padded batch only with one
        config.save_pretrained(tmp_path / "tiny-gpt2")
        return load_study(path)

    return write


def test_an_unsupported_architecture_is_refused_at_validation(gpt2_study):
    with pytest.raises(ConfigError) as excinfo:
        validate_study(gpt2_study(), get_plugin_manager(only=["finetune", "reinit"]))

    (problem,) = excinfo.value.problems
    assert "reinit cannot find the encoder layers of 'tiny-gpt2' (model type 'gpt2')" in problem
    assert "disable: [reinit]" in problem


def test_an_unsupported_architecture_passes_when_no_layer_is_reinitialised(gpt2_study):
    study, pm = gpt2_study(layers=0), get_plugin_manager(only=["finetune", "reinit"])

    data = validate_study(study, pm)  # no ConfigError: re-initialising no layer asks nothing of the model

    assert len(data.splits["train"]) == 32
    # And the trial it let through trains: with 0 layers reinit leaves the model alone instead of looking for them.
    trial = run_search(study, pm, data, n_trials=1).trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["reinit.layers"] == 0


class TestReinitConformance(TechniqueConformance):
    """autobert's conformance suite: entry point, namespaced space, a trial end to end."""

    technique = "reinit"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": ["finetune", "reinit"],
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=["finetune", "reinit"])
