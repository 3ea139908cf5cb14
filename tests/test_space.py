"""The namespaced search space and study-file overrides."""

from __future__ import annotations

import optuna
import pytest

from autobert.errors import ConfigError, PluginError
from autobert.config.space import ParamSpec, SearchSpace, apply_override, explore


def _space(overrides=None, trial=None):
    trial = trial or optuna.create_study().ask()
    return SearchSpace(trial, {"tech"}, overrides or {})


def test_fixed_value_is_recorded_in_the_trial():
    space = _space({"tech.lr": 0.01})
    assert space.suggest_float("tech.lr", 1e-5, 1e-3, log=True) == 0.01
    assert space.trial.params == {"tech.lr": 0.01}


def test_narrowed_range_is_respected():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        space = _space({"tech.lr": {"low": 0.2, "high": 0.3}}, study.ask())
        assert 0.2 <= space.suggest_float("tech.lr", 0.0, 1.0) <= 0.3


def test_restricted_choices_are_the_only_ones_drawn():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {_space({"tech.kind": ["b", "c"]}, study.ask()).suggest_categorical("tech.kind", ["a", "b", "c"]) for _ in range(30)}
    assert drawn == {"b", "c"}


def test_a_list_of_numbers_turns_a_range_into_choices():
    spec = apply_override(ParamSpec("tech.n", "int", low=1, high=8), [2, 4])
    assert spec.kind == "categorical" and spec.choices == (2, 4)


@pytest.mark.parametrize("override, message", [
    ({"low": 0, "high": 1, "log": True}, "log range needs low > 0"),
    ({"low": 1, "hi": 2}, "unknown range key(s) hi"),
    ("abc", "is not a number"),
    ([], "empty list"),
])
def test_bad_overrides_say_what_to_do(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_override(ParamSpec("tech.x", "float", low=0.0, high=1.0), override)


def test_bad_override_during_a_trial_is_a_config_error():
    with pytest.raises(ConfigError, match="not a choice"):
        _space({"tech.kind": "z"}).suggest_categorical("tech.kind", ["a", "b"])


def test_unnamespaced_parameter_is_a_plugin_error():
    with pytest.raises(PluginError, match="not namespaced"):
        _space().suggest_float("lr", 0.0, 1.0)
    with pytest.raises(PluginError, match="not namespaced"):
        _space().suggest_float("other.lr", 0.0, 1.0)


def test_fixed_trial_replays_the_same_values():
    space = SearchSpace(optuna.trial.FixedTrial({"tech.lr": 0.5, "tech.kind": "b"}), {"tech"})
    assert space.suggest_float("tech.lr", 0.0, 1.0) == 0.5
    assert space.suggest_categorical("tech.kind", ["a", "b"]) == "b"


def test_explore_finds_conditional_parameters_under_every_choice():
    def hook(space):
        kind = space.suggest_categorical("tech.kind", ["plain", "fancy", "both"])
        if kind in ("fancy", "both"):
            space.suggest_float("tech.alpha", 0.0, 1.0)
            if space.suggest_categorical("tech.deep", [False, True]):
                space.suggest_int("tech.depth", 1, 4)

    report = explore(hook, {"tech"})
    assert set(report.defaults) == {"tech.kind", "tech.alpha", "tech.deep", "tech.depth"}
    # Restricting the choice removes the branch that holds the conditional parameters.
    report = explore(hook, {"tech"}, {"tech.kind": "plain"})
    assert set(report.effective) == {"tech.kind"}


def test_a_value_is_shown_to_four_significant_digits_or_three_where_it_would_take_an_exponent():
    from autobert.config.space import format_value

    assert format_value(0.97834) == "0.9783" and format_value(1.0) == "1"
    assert format_value(0.0031234) == "0.00312" and format_value(123456.0) == "1.23e+05"
    assert format_value(2.34567e-05, digits=6) == "2.34567e-05"  # the model card keeps more
    assert format_value(16) == "16" and format_value("mean") == "mean" and format_value(True) == "True"
