"""Conformance tests a technique's author runs against their own plugin.

Subclass in your package's tests and name the technique::

    from autobert.testing import TechniqueConformance

    class TestMyTechnique(TechniqueConformance):
        technique = "mytechnique"          # its entry-point name

pytest then checks that the technique is installed through the entry-point
group, that its hooks match the contract, that every parameter is namespaced
by it, that its space is explorable, that a trial with it runs end to end on a
tiny model and completes, and that switching it on changes what is trained.

That last test trains the same recipe twice on the same seed, once with the
technique on and once with it off, and fails when the two trained models
(every weight) and their validation metrics are the same. "On" is the
technique's documented default (the ``on`` of its ``autobert_ablation``),
"off" its declared off values; a technique that declares no off value is
compared with the same recipe trained without it loaded at all (as
``disable: [name]`` would). Set :attr:`TechniqueConformance.on_values` or
:attr:`TechniqueConformance.off_values` where the declaration does not say
enough (a technique with no ``on``, or one that acts only with another
technique's help).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

# The engine is imported inside each test, not here: `import autobert.testing` (which plugin authors' test
# modules do at collection) stays free of torch, transformers and optuna until a test runs.

#: A weight or metric that moved by less than this did not change (a GPU's non-deterministic sums move by less).
TOLERANCE = 1e-6


class TechniqueConformance:
    technique: str = ""

    #: Extra study keys for the end-to-end trial (e.g. settings the technique needs).
    study_overrides: dict = {}

    #: Parameter values that switch the technique on (default: the ``on`` its ``autobert_ablation`` declares,
    #: else what the seeded sampler draws). May name other techniques' parameters it needs (``augmentation.method``).
    #: A value the study file sets (``study_overrides``, e.g. a cheap number of steps) wins over these.
    on_values: dict | None = None

    #: Parameter values that switch it off (default: the ``off`` its ``autobert_ablation`` declares, else the
    #: technique is not loaded at all).
    off_values: dict | None = None

    @pytest.fixture
    def plugin_manager(self):
        from autobert.run.plugin_manager import get_plugin_manager

        return get_plugin_manager()

    def write_study(self, directory: Path) -> Path:
        """Write the study the end-to-end tests run under ``directory``; return its path.

        Override to prepare more than :func:`autobert.testing.write_study` does (a data column the technique reads).
        """
        from autobert.testing import write_study

        return write_study(directory, name="conformance", **self.study_overrides)

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
        from autobert.config.space import explore
        from autobert.store.record import TrialRecord
        from autobert.study.search import run_search
        from autobert.study.validation import validate_study

        study = load_study(self.write_study(tmp_path))
        data = validate_study(study, plugin_manager)
        opened = run_search(study, plugin_manager, data, n_trials=1)
        trial = opened.trials[0]
        assert trial.state == optuna.trial.TrialState.COMPLETE, TrialRecord.from_trial(trial).fail_reason

        declared = [n for n in explore(plugin_manager.hook.autobert_search_space, plugin_manager.techniques,
                                       hooks=plugin_manager.hook).defaults
                    if n.startswith(self.technique + ".")]
        if declared:
            assert any(n.startswith(self.technique + ".") for n in trial.params), (
                f"{self.technique} declares {declared} but the trial recorded none of them"
            )

    def test_switching_it_on_changes_what_is_trained(self, tmp_path: Path, plugin_manager):
        from autobert.config.schema import load_study
        from autobert.study.validation import validate_study

        study = load_study(self.write_study(tmp_path))
        data = validate_study(study, plugin_manager)
        declared = _ablation(plugin_manager, self.technique)
        on = dict(self.on_values if self.on_values is not None else declared.get("on") or {})
        off = self.off_values if self.off_values is not None else declared.get("off")

        # The study file's own values come first (a cheap number of steps), then `on`, then the seeded sampler.
        recipe_on = _recipe(study, plugin_manager, {n: v for n, v in on.items() if n not in study.overrides})
        if off:
            assert any(name in recipe_on and recipe_on[name] != value for name, value in off.items()), (
                f"the recipe meant to switch {self.technique} on ({recipe_on}) has its off values {off}: set "
                f"`on_values`, declare `on` in its autobert_ablation, or do not fix it off in `study_overrides`"
            )
            # The off values win over the study file's overrides, as `autobert ablate` switches a technique off.
            off_study, off_manager = _fixing(study, off), plugin_manager
            recipe_off = _recipe(off_study, plugin_manager, {**recipe_on, **off})
            how = f"off ({off})"
        else:  # no off value: the same recipe without the technique loaded, as `disable: [name]` does
            off_manager = plugin_manager.subset(n for n in plugin_manager.techniques if n != self.technique)
            off_study = study.model_copy(update={
                "techniques": {n: v for n, v in study.techniques.items() if n != self.technique},
                "disable": sorted({*study.disable, self.technique})})
            recipe_off = _recipe(off_study, off_manager,
                                 {n: v for n, v in recipe_on.items() if not n.startswith(self.technique + ".")})
            how = "disabled"

        trained_on = _train(study, plugin_manager, data, recipe_on, tmp_path / "on")
        trained_off = _train(off_study, off_manager, data, recipe_off, tmp_path / "off")

        assert _differences(trained_on, trained_off), (
            f"{self.technique} on ({recipe_on}) trained the very same model as {self.technique} {how} "
            f"({recipe_off}): every weight and validation metric is equal, so the technique changed nothing"
        )


def _ablation(pm: Any, technique: str) -> dict[str, Any]:
    """What ``technique``'s own ``autobert_ablation`` answers (``{}`` without one)."""
    for impl in pm.hook.autobert_ablation.get_hookimpls():
        if impl.plugin_name == technique:
            return dict(impl.function() or {})
    return {}


def _recipe(study: Any, pm: Any, fixed: dict[str, Any]) -> dict[str, Any]:
    """Every parameter a trial of ``study`` draws: ``fixed`` where it draws them, the seeded sampler elsewhere."""
    import optuna

    from autobert.run.pipeline import draw_params

    sampler = optuna.samplers.RandomSampler(seed=study.seed)
    draws = optuna.create_study(sampler=sampler, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "out of range": a value of `fixed` is taken even where the study narrows it
        draws.enqueue_trial(fixed, skip_if_exists=False)
        return draw_params(study, draws.ask(), pm)


def _fixing(study: Any, values: dict[str, Any]) -> Any:
    """``study`` with each of ``values`` (``{"llrd.decay": 1.0}``) fixed in its technique's section."""
    sections = {name: dict(section) for name, section in study.techniques.items()}
    for name, value in values.items():
        technique, _, short = name.partition(".")
        sections.setdefault(technique, {})[short] = value
    return study.model_copy(update={"techniques": sections})


def _train(study: Any, pm: Any, data: Any, recipe: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Train ``recipe`` once on the study's seed; its saved weights and validation metrics, by name."""
    from optuna.trial import FixedTrial

    from autobert.run.pipeline import run_pipeline

    result = run_pipeline(study, FixedTrial(recipe), pm, data, save_to=folder)
    found = {f"metric {name}": value for name, value in result.metrics.items()
             if name not in {"runtime", "samples_per_second", "steps_per_second"}}
    found.update(_weights(folder))
    return found


def _weights(folder: Path) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        from safetensors.torch import load_file

        found.update(load_file(str(file)))
    for file in sorted(folder.glob("pytorch_model*.bin")):  # not training_args.bin, which is no weights
        found.update(torch.load(file, map_location="cpu", weights_only=True))
    assert found, f"the trained model saved no weights in {folder}"
    return found


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The names whose values differ by more than :data:`TOLERANCE` (or that only one side has)."""
    import torch

    changed = sorted(set(a) ^ set(b))
    for name in sorted(set(a) & set(b)):
        x, y = torch.as_tensor(a[name]), torch.as_tensor(b[name])
        if x.shape != y.shape or (x.numel() and (x.double() - y.double()).abs().max().item() > TOLERANCE):
            changed.append(name)
    return changed
