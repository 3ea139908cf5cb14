"""Conformance tests a technique's author runs against their own plugin.

Subclass in your package's tests and name the technique::

    from autobert.testing import TechniqueConformance

    class TestMyTechnique(TechniqueConformance):
        technique = "mytechnique"          # its entry-point name

pytest then checks that the technique is installed through the entry-point
group, that its hooks match the contract, that every parameter is namespaced
by it, that its space is explorable, and that a trial with it runs end to end
on a tiny model and completes.
"""

from __future__ import annotations

from pathlib import Path

import pytest


class TechniqueConformance:
    technique: str = ""

    #: Extra study keys for the end-to-end trial (e.g. settings the technique needs).
    study_overrides: dict = {}

    @pytest.fixture
    def plugin_manager(self):
        from autobert.run.plugin_manager import get_plugin_manager

        return get_plugin_manager()

    def test_installed_through_entry_point(self, plugin_manager):
        assert self.technique, "set `technique` to the technique's entry-point name"
        assert self.technique in plugin_manager.techniques, (
            f"{self.technique!r} is not registered in the autobert.techniques entry-point group"
        )

    def test_parameters_are_namespaced(self, plugin_manager):
        from autobert.config.space import explore

        report = explore(plugin_manager.hook.autobert_search_space, plugin_manager.techniques, hooks=plugin_manager.hook)
        own = [n for n in report.defaults if n.startswith(self.technique + ".")]
        others = [n for n in report.defaults if n.split(".", 1)[0] not in plugin_manager.techniques]
        assert not others, f"parameters outside any technique's namespace: {others}"
        for name in own:
            assert report.defaults[name].kind in {"float", "int", "categorical"}

    def test_trial_runs_end_to_end(self, tmp_path: Path, plugin_manager):
        import optuna

        from autobert.config.schema import load_study
        from autobert.study.search import run_search
        from autobert.study.validation import validate_study
        from autobert.testing import write_study

        path = write_study(tmp_path, name="conformance", **self.study_overrides)
        study = load_study(path)
        data = validate_study(study, plugin_manager)
        opened = run_search(study, plugin_manager, data, n_trials=1)
        trial = opened.trials[0]
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        from autobert.config.space import explore

        declared = [n for n in explore(plugin_manager.hook.autobert_search_space, plugin_manager.techniques, hooks=plugin_manager.hook).defaults
                    if n.startswith(self.technique + ".")]
        if declared:
            assert any(n.startswith(self.technique + ".") for n in trial.params), (
                f"{self.technique} declares {declared} but the trial recorded none of them"
            )
