"""The effective space: explored once per command, handed to techniques instead of the overrides."""

from __future__ import annotations

import functools

import pytest
from optuna.trial import FixedTrial

from autobert import hookimpl
from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.pipeline import run_pipeline
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.config.space import EffectiveSpace, ParamSpec, SearchSpace, explore
from autobert.study.validation import validate_study

FINETUNE = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


@pytest.fixture
def finetune_space_calls(monkeypatch):
    """Count the calls of finetune's ``autobert_search_space`` in plugin managers built from now on."""
    import autobert.plugins.finetune as finetune

    calls = []
    original = finetune.autobert_search_space

    @functools.wraps(original)  # keeps the hookimpl marker and the signature
    def counting(space):
        calls.append(type(space).__name__)
        return original(space)

    monkeypatch.setattr(finetune, "autobert_search_space", counting)
    return calls


def test_validate_explores_the_space_once(tiny_study, finetune_space_calls):
    # finetune's space (batch size fixed) has one path: one call per exploration.
    assert main(["validate", str(tiny_study(only=["finetune"]))]) == 0

    assert len(finetune_space_calls) == 1


def test_a_search_explores_the_space_once_however_many_trials_it_draws(tiny_study, finetune_space_calls):
    # Validation, the stored-space check, warm start and the planner all read the one exploration;
    # each trial draws its own parameters from a live space (not an exploration).
    assert main(["search", str(tiny_study(only=["finetune"])), "--n-trials", "2"]) == 0

    assert finetune_space_calls.count("_Explorer") == 1
    assert finetune_space_calls.count("SearchSpace") >= 2


def test_a_resumed_timed_search_still_explores_once(tiny_study, finetune_space_calls):
    path = str(tiny_study(only=["finetune"]))
    assert main(["search", path, "--n-trials", "1"]) == 0
    finetune_space_calls.clear()

    assert main(["search", path, "--n-trials", "1", "--timeout", "600"]) == 0

    assert finetune_space_calls.count("_Explorer") == 1


def test_the_plugin_manager_answers_the_same_exploration_for_the_same_overrides():
    pm = get_plugin_manager(only=["finetune"])

    first = pm.effective_space({"finetune.epochs": 2})
    assert pm.effective_space({"finetune.epochs": 2}) is first
    assert pm.effective_space({"finetune.epochs": 3}) is not first
    assert first["finetune.epochs"].is_fixed and first["finetune.epochs"].lowest == 2


def test_a_plugin_registered_later_is_explored_too():
    pm = get_plugin_manager(only=["finetune"])
    before = pm.effective_space()

    class Probe:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_int("probe.depth", 1, 3)

    pm.register_technique(Probe(), Technique("probe", "tests", "autobert-tests", "0"))

    assert "probe.depth" not in before and "probe.depth" in pm.effective_space()


# --------------------------------------------------------------------------
# What a technique receives
# --------------------------------------------------------------------------


class SpaceProbe:
    """Declares one parameter of each kind; records the space its validation receives."""

    def __init__(self):
        self.validated: list[EffectiveSpace] = []
        self.runs = []

    @hookimpl
    def autobert_search_space(self, space):
        space.suggest_int("probe.layers", 0, 6)
        if space.suggest_categorical("probe.mode", ["a", "b"]) == "b":
            space.suggest_float("probe.share", 0.1, 0.9)

    @hookimpl
    def autobert_validate_study(self, space):
        self.validated.append(space)

    @hookimpl
    def autobert_modify_datasets(self, run):
        self.runs.append(run)


def probed(tiny_study, **probe):
    study = load_study(tiny_study(only=["finetune"], techniques={"finetune": FINETUNE, "probe": probe}))
    pm = get_plugin_manager(only=["finetune"])
    plugin = SpaceProbe()
    pm.register_technique(plugin, Technique("probe", "tests", "autobert-tests", "0"))
    return study, pm, plugin


def test_validation_hands_techniques_the_space_after_the_study_files_overrides(tiny_study):
    study, pm, plugin = probed(tiny_study, layers={"low": 1, "high": 2}, mode="b")

    validate_study(study, pm)

    (space,) = plugin.validated
    assert (space["probe.layers"].lowest, space["probe.layers"].highest) == (1, 2)
    assert space["probe.mode"].choices == ("b",) and space["probe.share"].can_be(0.5)
    assert space.changed("probe.layers") and not space.changed("probe.share")
    assert space.declared["probe.layers"].high == 6


def test_a_parameter_no_choice_reaches_is_not_in_the_effective_space(tiny_study):
    study, pm, plugin = probed(tiny_study, mode="a")

    validate_study(study, pm)

    assert "probe.share" not in plugin.validated[0] and "probe.layers" in plugin.validated[0]


def test_a_trial_sees_its_own_effective_specs_as_run_space(tiny_study):
    study, pm, plugin = probed(tiny_study, layers=[2, 4])
    data = validate_study(study, pm)

    run_pipeline(study, FixedTrial({**{f"finetune.{k}": v for k, v in FINETUNE.items()},
                                    "probe.layers": 4, "probe.mode": "a"}), pm, data)

    (run,) = plugin.runs
    assert run.space["probe.layers"] == ParamSpec("probe.layers", "categorical", choices=(2, 4))
    assert run.space["finetune.epochs"].is_fixed and "probe.share" not in run.space


def test_an_unavailable_choice_is_refused_with_the_techniques_reason():
    class Corpusless:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_categorical("probe.stage", ["none", "task"],
                                      unavailable={"domain": "it needs a corpus; set techniques.probe.corpus"})

    pm = get_plugin_manager(only=[])
    pm.register_technique(Corpusless(), Technique("probe", "tests", "autobert-tests", "0"))

    report = explore(pm.hook.autobert_search_space, pm.techniques, {"probe.stage": ["none", "domain"]})
    assert report.problems == ["techniques.probe.stage: 'domain' is not available in this study: it needs a corpus; "
                               "set techniques.probe.corpus; or choose from {'none', 'task'}"]
    with pytest.raises(ConfigError, match="set techniques.probe.corpus"):
        SearchSpace(FixedTrial({"probe.stage": "domain"}), {"probe"}, {"probe.stage": "domain"}).suggest_categorical(
            "probe.stage", ["none", "task"], unavailable={"domain": "it needs a corpus; set techniques.probe.corpus"})


def test_a_technique_with_a_study_file_section_is_configured():
    space = SearchSpace(None, {"pet", "llrd"}, {"pet.pattern": "{text} [MASK]", "finetune.epochs": 2})

    assert space.configured == {"pet", "finetune"}
