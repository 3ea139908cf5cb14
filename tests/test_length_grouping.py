"""finetune's `group_by_length` setting: similar lengths share a batch, so batches carry less padding."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from torch.utils.data import RandomSampler

from autobert import hookimpl
from autobert.config.schema import load_frozen, load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import export_best, run_search
from autobert.study.validation import validate_study
from autobert.testing import synthetic_rows, write_study

N_TRAIN = 320  # 5 batches of 16 per mega-batch: transformers groups at most a quarter of the rows together
FINETUNE = {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


def varied_rows(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Sentences of 1 to 40 words, so that a batch's longest row is far from its average."""
    return synthetic_rows(n, seed, fillers=(0, 39))


def study_path(directory, name="grouping", **finetune_settings):
    path = write_study(directory, name=name, n_train=N_TRAIN, n_validation=32, only=["finetune"], max_length=64,
                       techniques={"finetune": {**FINETUNE, **finetune_settings}})
    lines = ["text,label"] + [f"{t},{l}" for t, l in varied_rows(N_TRAIN)]
    (directory / "data" / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class BatchProbe:
    """Records the training sampler and every training batch's attention mask."""

    def __init__(self):
        self.samplers, self.masks = [], []

    @hookimpl
    def autobert_trainer_callbacks(self):
        samplers = self.samplers

        class Record(TrainerCallback):
            def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
                loader = getattr(train_dataloader, "base_dataloader", train_dataloader)
                samplers.append(loader.batch_sampler.sampler)

        return [Record()]

    @hookimpl(wrapper=True)
    def autobert_compute_loss(self, inputs):
        self.masks.append(inputs["attention_mask"].clone())
        return (yield)


def trained(path) -> tuple[BatchProbe, optuna.Study]:
    """One trial of the study at ``path``, watched by a :class:`BatchProbe`."""
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune"])
    probe = BatchProbe()
    pm.register_technique(probe, Technique("probe", f"{__name__}:BatchProbe", "autobert-tests", "0"))
    opened = run_search(study, pm, validate_study(study, pm), n_trials=1)
    assert opened.trials[-1].state == TrialState.COMPLETE, opened.trials[-1].user_attrs.get("fail_reason")
    return probe, opened


def padding_share(masks) -> float:
    """The share of the training batches' positions that are padding."""
    positions = sum(m.numel() for m in masks)
    return (positions - sum(int(m.sum()) for m in masks)) / positions


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    return trained(study_path(tmp_path_factory.mktemp("grouped")))


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    directory = tmp_path_factory.mktemp("uniform")
    return directory, trained(study_path(directory, group_by_length=False))


def test_by_default_training_batches_are_grouped_by_length(grouped):
    probe, _ = grouped

    (sampler,) = probe.samplers
    assert isinstance(sampler, LengthGroupedSampler)
    assert len(probe.masks) == N_TRAIN // 16


def test_grouped_batches_carry_less_than_half_the_padding_of_random_ones(grouped, uniform):
    (probe, _), (_, (random_probe, _)) = grouped, uniform

    grouped_waste, random_waste = padding_share(probe.masks), padding_share(random_probe.masks)

    assert random_waste > 0.3  # the lengths do vary
    assert grouped_waste < random_waste / 2, (grouped_waste, random_waste)


def test_group_by_length_false_gives_uniformly_random_batches(uniform):
    _, (probe, _) = uniform

    (sampler,) = probe.samplers
    assert isinstance(sampler, RandomSampler)  # accelerate's seedable subclass
    assert len(probe.masks) == N_TRAIN // 16


def test_a_frozen_config_keeps_group_by_length_false(uniform):
    directory, (_, opened) = uniform
    study = load_study(directory / "grouping.yaml")
    pm = get_plugin_manager(only=["finetune"])

    frozen = load_frozen(export_best(study, opened, pm, validate_study(study, pm), directory / "best.yaml"))

    assert frozen.techniques["finetune"]["group_by_length"] is False
    assert "finetune.group_by_length" not in frozen.provenance.params  # a setting, never searched


def test_a_value_other_than_true_or_false_is_refused_at_validation(tmp_path):
    study = load_study(study_path(tmp_path, group_by_length="yes"))

    with pytest.raises(ConfigError) as excinfo:
        validate_study(study, get_plugin_manager(only=["finetune"]))

    (problem,) = excinfo.value.problems
    assert problem.startswith("techniques.finetune.group_by_length: must be true or false, got 'yes'")
