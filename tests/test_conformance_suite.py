"""The conformance suite itself (autobert.testing.TechniqueConformance): it fails a technique that changes nothing."""

from __future__ import annotations

import pytest

from autobert import hookimpl
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.testing import TechniqueConformance

CHEAP = {"n_train": 32, "n_validation": 16, "only": ["finetune"],
         "techniques": {"finetune": {"epochs": 1, "batch_size": 16}}}


class Inert:
    """A technique with a parameter, and an off value for it, that acts on nothing."""

    def __init__(self, declares_off: bool):
        self.declares_off = declares_off

    @hookimpl
    def autobert_search_space(self, space):
        space.suggest_float("inert.strength", 0.0, 1.0)

    @hookimpl
    def autobert_ablation(self):
        return {"off": {"inert.strength": 0.0}, "on": {"inert.strength": 0.5}} if self.declares_off else None


class Penalising(Inert):
    """The same, but it adds ``strength`` times the mean squared logit to the training loss."""

    @hookimpl(wrapper=True)
    def autobert_compute_loss(self, outputs, run):
        loss = yield
        return loss + run.params["inert.strength"] * outputs.logits.pow(2).mean()


class InertConformance(TechniqueConformance):  # not collected (no Test prefix): run by hand below
    technique = "inert"
    study_overrides = CHEAP


def manager_with(plugin):
    pm = get_plugin_manager(only=["finetune"])
    pm.register_technique(plugin, Technique("inert", f"{__name__}:{type(plugin).__name__}", "autobert-tests", "0"))
    return pm


@pytest.mark.parametrize("declares_off", [True, False], ids=["against its off value", "against it disabled"])
def test_a_technique_that_changes_nothing_fails_the_suite(tmp_path, declares_off):
    with pytest.raises(AssertionError, match=r"inert on \(.*\) trained the very same model .* changed nothing"):
        InertConformance().test_switching_it_on_changes_what_is_trained(tmp_path, manager_with(Inert(declares_off)))


@pytest.mark.parametrize("declares_off", [True, False], ids=["against its off value", "against it disabled"])
def test_a_technique_that_changes_the_loss_passes_the_suite(tmp_path, declares_off):
    # Passing is returning: the suite's test raises AssertionError when it finds nothing changed.
    InertConformance().test_switching_it_on_changes_what_is_trained(tmp_path, manager_with(Penalising(declares_off)))
