"""Layer-wise learning-rate decay: the learning rates the optimiser really gets, and the models it refuses."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace

import pytest
import torch
from optuna.trial import TrialState
from transformers import TrainerCallback

from autobert import hookimpl
from autobert.run import defaults
from autobert.config.schema import load_study
from autobert.errors import ConfigError, PluginError
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.plugins import llrd
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.testing import TechniqueConformance, write_study

LR, DECAY, WEIGHT_DECAY = 1e-3, 0.9, 0.05
FINETUNE = {"learning_rate": LR, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": WEIGHT_DECAY}
LAYER = re.compile(r"\.layer\.(\d+)\.")


def expected_lr(name: str, n_layers: int) -> float:
    """Head and top layer: LR; layer i (1 = bottom): LR * DECAY^(L - i); embeddings: LR * DECAY^L."""
    if "embeddings" in name:
        return LR * DECAY ** n_layers
    if match := LAYER.search(name):
        return LR * DECAY ** (n_layers - 1 - int(match.group(1)))
    return LR


def lr_by_name(model, groups) -> dict[str, list[float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    found: dict[str, list[float]] = {}
    for group in groups:
        for param in group["params"]:
            found.setdefault(names[id(param)], []).append(group["lr"])
    return found


@pytest.fixture(scope="module")
def optimizer_of_a_trial(tmp_path_factory):
    """``{parameter name: [(lr, weight decay), ...]}`` of the AdamW of a real trial with llrd.decay = 0.9."""
    seen = {}

    class Probe:
        @hookimpl
        def autobert_trainer_callbacks(self):
            class Record(TrainerCallback):
                def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
                    names = {id(p): n for n, p in model.named_parameters()}
                    for group in optimizer.param_groups:
                        for param in group["params"]:
                            seen.setdefault(names[id(param)], []).append(
                                (group.get("initial_lr", group["lr"]), group["weight_decay"]))

            return [Record()]

    study = load_study(write_study(tmp_path_factory.mktemp("llrd"), n_train=32, n_validation=16,
                                   only=["finetune", "llrd"], techniques={"finetune": FINETUNE, "llrd": {"decay": DECAY}}))
    pm = get_plugin_manager(only=["finetune", "llrd"])
    pm.register_technique(Probe(), Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    trial = run_search(study, pm, validate_study(study, pm), n_trials=1).trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["llrd.decay"] == DECAY
    return seen


def test_each_parameter_of_a_real_trial_gets_the_learning_rate_of_its_depth(optimizer_of_a_trial):
    lrs = {name: [lr for lr, _ in groups] for name, groups in optimizer_of_a_trial.items()}

    assert all(len(found) == 1 for found in lrs.values()), "a parameter is in more than one group"
    assert lrs["bert.embeddings.word_embeddings.weight"] == [pytest.approx(LR * 0.81)]
    assert lrs["bert.encoder.layer.0.attention.self.query.weight"] == [pytest.approx(LR * 0.9)]
    assert lrs["bert.encoder.layer.1.output.dense.weight"] == [pytest.approx(LR)]
    assert lrs["classifier.weight"] == [pytest.approx(LR)]
    for name, found in lrs.items():
        assert found == [pytest.approx(expected_lr(name, 2))], name


def test_weight_decay_stays_off_biases_and_layernorm_weights(optimizer_of_a_trial):
    for name, ((_, weight_decay),) in optimizer_of_a_trial.items():
        off = name.endswith(("bias", "LayerNorm.weight"))
        assert weight_decay == (0.0 if off else WEIGHT_DECAY), name


def test_decay_one_leaves_the_default_optimizer_groups():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=64, vocab_size=100))
    args = SimpleNamespace(learning_rate=LR, weight_decay=WEIGHT_DECAY)
    pm = get_plugin_manager(only=["llrd"])

    groups = pm.hook.autobert_optimizer_param_groups(model=model, args=args, run=SimpleNamespace(params={"llrd.decay": 1.0}))

    expected = defaults.autobert_optimizer_param_groups(model, args)
    assert [(g["lr"], g["weight_decay"], [id(p) for p in g["params"]]) for g in groups] == \
           [(g["lr"], g["weight_decay"], [id(p) for p in g["params"]]) for g in expected]


class PoolingModel(torch.nn.Module):
    """A custom model holding a transformers encoder as ``encoder``, as a pooling head does."""

    def __init__(self, config):
        from transformers import BertModel

        super().__init__()
        self.encoder = BertModel(config, add_pooling_layer=False)
        self.mix = torch.nn.Parameter(torch.zeros(config.num_hidden_layers))
        self.head = torch.nn.Linear(config.hidden_size, 2)


def tiny_model(family: str):
    import transformers as tf

    size = dict(vocab_size=100, max_position_embeddings=64, num_labels=2)
    bert = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, **size)
    if family == "bert":
        return tf.BertForSequenceClassification(tf.BertConfig(**bert))
    if family == "roberta":
        return tf.RobertaForSequenceClassification(tf.RobertaConfig(**bert, pad_token_id=1))
    if family == "electra":  # embeddings narrower than the layers: an embeddings_project below layer 1
        return tf.ElectraForSequenceClassification(tf.ElectraConfig(**bert, embedding_size=16))
    if family == "distilbert":
        return tf.DistilBertForSequenceClassification(
            tf.DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64, **size))
    return PoolingModel(tf.BertConfig(**bert))


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "distilbert", "custom pooling model"])
def test_layers_are_found_in_each_supported_family(family):
    model = tiny_model(family)
    args = SimpleNamespace(learning_rate=LR, weight_decay=WEIGHT_DECAY)

    groups = llrd.autobert_optimizer_param_groups(model, args, SimpleNamespace(params={"llrd.decay": DECAY}))

    lrs = lr_by_name(model, groups)
    assert set(lrs) == {n for n, _ in model.named_parameters()}
    assert {LAYER.search(n).group(1) for n in lrs if LAYER.search(n)} == {"0", "1", "2"}
    for name, found in lrs.items():
        assert found == [pytest.approx(expected_lr(name, 3))], name
    assert min(g["lr"] for g in groups) == pytest.approx(LR * DECAY ** 3)  # the embeddings'


def test_a_model_without_findable_layers_fails_with_the_fix_named():
    args = SimpleNamespace(learning_rate=LR, weight_decay=0.0)

    with pytest.raises(PluginError, match=r"llrd cannot find the encoder layers of Linear.*disable: \[llrd\]"):
        llrd.autobert_optimizer_param_groups(torch.nn.Linear(4, 2), args, SimpleNamespace(params={"llrd.decay": 0.9}))


@pytest.fixture
def gpt2_study(tmp_path):
    """A study over a tiny GPT-2 (the tiny BERT's tokenizer, a GPT-2 config, no weights needed)."""
    from transformers import GPT2Config

    def write(**llrd_overrides):
        path = write_study(tmp_path, n_train=32, n_validation=16, only=["finetune", "llrd"], model="tiny-gpt2",
                           techniques={"finetune": FINETUNE, "llrd": llrd_overrides})
        shutil.copytree(tmp_path / "tiny-bert", tmp_path / "tiny-gpt2")
        config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=400, bos_token_id=0, eos_token_id=0,
                            pad_token_id=0)  # [PAD]: GPT-2 classifies a padded batch only with one
        config.save_pretrained(tmp_path / "tiny-gpt2")
        return load_study(path)

    return write


def test_an_unsupported_architecture_is_refused_at_validation(gpt2_study):
    with pytest.raises(ConfigError) as excinfo:
        validate_study(gpt2_study(), get_plugin_manager(only=["finetune", "llrd"]))

    (problem,) = [p for p in excinfo.value.problems if "llrd" in p]
    assert "model type 'gpt2'" in problem
    assert "disable: [llrd]" in problem


def test_an_unsupported_architecture_passes_when_decay_is_fixed_to_one(gpt2_study):
    study, pm = gpt2_study(decay=1.0), get_plugin_manager(only=["finetune", "llrd"])

    data = validate_study(study, pm)  # no ConfigError: llrd switched off asks nothing of the model

    assert len(data.splits["train"]) == 32
    # And the trial it let through trains: at 1.0 llrd leaves the optimiser alone instead of looking for layers.
    trial = run_search(study, pm, data, n_trials=1).trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.params["llrd.decay"] == 1.0


class TestLlrdConformance(TechniqueConformance):
    """autobert's conformance suite: entry point, namespaced space, a trial end to end."""

    technique = "llrd"
    study_overrides = {"n_train": 32, "n_validation": 16, "only": ["finetune", "llrd"],
                       "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}

    @pytest.fixture
    def plugin_manager(self):
        return get_plugin_manager(only=["finetune", "llrd"])
