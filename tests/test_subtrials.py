"""The public services a technique uses instead of the engine: sub-trials, notes, the run's techniques."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import FixedTrial

from autobert import hookimpl, services
from autobert.config.schema import load_study
from autobert.errors import PluginError
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.validation import validate_study
from autobert.stage_cache import StageCache
from autobert.testing import write_study
from autobert.trial_run import TrialRun

FINETUNE = {"learning_rate": 5e-3, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}
RECIPE = {f"finetune.{k}": v for k, v in FINETUNE.items()}
DISTILLED = {**RECIPE, "distillation.enabled": True, "distillation.alpha": 0.5, "distillation.temperature": 2.0,
             "distillation.teachers": 1}


class Recorder:
    """A technique without parameters whose effect is observable: it records every run it takes part in."""

    def __init__(self):
        self.runs: list[dict] = []

    @hookimpl
    def autobert_modify_model(self, model, run):
        self.runs.append({"distillation": run.params.get("distillation.enabled"), "seed": run.seed,
                          "techniques": run.techniques})


def manager(*techniques: str, recorder: Recorder | None = None):
    pm = get_plugin_manager(only=list(techniques))
    if recorder is not None:
        pm.register_technique(recorder, Technique("recorder", "tests", "autobert-tests", "0"))
    return pm


@pytest.fixture
def study(tmp_path):
    return load_study(write_study(tmp_path, n_train=64, n_validation=32, only=["finetune", "distillation"],
                                  techniques={"finetune": FINETUNE}))


def teachers(study) -> int:
    return len(StageCache(study.cache_path).entries("teacher"))


def test_a_distillation_teacher_runs_every_technique_of_the_trial_even_one_without_parameters(study):
    recorder = Recorder()
    pm = manager("finetune", "distillation", recorder=recorder)
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial(DISTILLED), pm, data)

    teacher, student = recorder.runs
    assert (teacher["distillation"], student["distillation"]) == (False, True)
    assert teacher["techniques"] == student["techniques"]
    assert set(teacher["techniques"]) == {"finetune", "distillation", "recorder"}


def test_a_teacher_trained_without_a_technique_is_not_served_to_a_trial_with_it(study):
    without = manager("finetune", "distillation")
    data = validate_study(study, without)
    run_pipeline(study, FixedTrial(DISTILLED), without, data)
    assert teachers(study) == 1

    recorder = Recorder()
    run_pipeline(study, FixedTrial(DISTILLED), manager("finetune", "distillation", recorder=recorder), data)

    assert teachers(study) == 2 and len(recorder.runs) == 2  # its own teacher, trained with the recorder


def test_a_teacher_replays_its_recipe_where_the_study_fixes_distillation_on(tmp_path):
    # The study fixes `distillation.enabled: true` and a learning rate past finetune's default range; the
    # teacher's recipe (distillation off, that rate) replaces the overrides instead of contradicting them.
    study = load_study(write_study(tmp_path, n_train=48, n_validation=16, only=["finetune", "distillation"],
                                   techniques={"finetune": FINETUNE, "distillation": {"enabled": True}}))
    pm = manager("finetune", "distillation")
    data = validate_study(study, pm)

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*out of the range")  # Optuna's, for a value past a range
        run_pipeline(study, FixedTrial(DISTILLED), pm, data)

    assert teachers(study) == 1


def test_a_sub_trial_of_named_techniques_runs_only_those_and_reports_its_value(study):
    recorder = Recorder()
    found = {}

    class Asker:
        @hookimpl
        def autobert_modify_datasets(self, datasets, run):
            if "asked" not in found:
                found["asked"] = services.train_model(run, {"train": datasets["train"]}, params=RECIPE,
                                                      techniques=["finetune"], seed=7)

    pm = manager("finetune", recorder=recorder)
    pm.register_technique(Asker(), Technique("asker", "tests", "autobert-tests", "0"))
    data = validate_study(study, pm)
    run_pipeline(study, FixedTrial(RECIPE), pm, data)

    assert [r["seed"] for r in recorder.runs] == [study.seed]  # the sub-trial ran finetune alone
    assert 0.0 <= found["asked"].value <= 1.0 and found["asked"].steps > 0


def test_a_sub_trial_refuses_a_technique_the_trial_does_not_run(study):
    pm = manager("finetune")

    with pytest.raises(PluginError, match="distillation do not run in this trial"):
        pm.subset(["distillation"])


def test_a_note_reaches_the_stored_trial_and_the_runs_metadata(tmp_path):
    storage = optuna.create_study(storage=f"sqlite:///{tmp_path / 'notes.db'}")
    trial = storage.ask()
    run = TrialRun(study=None, params={}, seed=0, tokenizer=None, label_names=[], workdir=tmp_path,
                   cache_dir=tmp_path, trial=trial)

    run.note("probe", {"steps": 3})

    assert run.metadata["probe"] == {"steps": 3}
    assert storage.trials[0].user_attrs["probe"] == {"steps": 3}


def test_parameter_groups_by_layer_give_each_depth_its_rate():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=32, vocab_size=50))
    groups = services.parameter_groups(model, 1.0, 0.1, layer_rate=lambda depth: 0.5 ** depth)

    rates = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rates[id(named["bert.embeddings.word_embeddings.weight"])] == 0.25
    assert rates[id(named["bert.encoder.layer.0.output.dense.weight"])] == 0.5
    assert rates[id(named["bert.encoder.layer.1.output.dense.weight"])] == 1.0
    assert rates[id(named["classifier.weight"])] == 1.0
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(named["bert.encoder.layer.0.output.dense.bias"])] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(named)
