"""What a command runs on, loaded and checked before anything heavy starts: a study file, or a frozen config.

:func:`prepare_study` (``autobert search``, ``best``, ``validate``) reports
every problem of the study file, its techniques, the model, the data and this
machine (its precision, its logging) in one :class:`ConfigError`;
:func:`prepare_recipe` (``autobert train``, ``ablate``) checks a frozen config
against this machine and the data it replays on. Both quiet the libraries'
chatter first: the command shows its own progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autobert.config.schema import FrozenConfig, StudyConfig, load_recipe, load_study, with_lines
from autobert.errors import ConfigError
from autobert.run.data import TaskData, load_task_data
from autobert.run.device import precision_problems
from autobert.run.pipeline import quiet_transformers, reporting_problems
from autobert.run.plugin_manager import PluginManager
from autobert.study.search import plugin_manager_for
from autobert.study.validation import check_frozen, check_replay, fixed_recipe, installed_problems, validate_study


@dataclass(frozen=True)
class PreparedStudy:
    """A checked study file, the plugin manager it runs with, and its data."""

    study: StudyConfig
    pm: PluginManager
    data: TaskData
    #: Doubts about the data (duplicates, rows shared between splits, rare classes), with their YAML lines:
    #: shown to the user, they do not stop the run.
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class PreparedRecipe:
    """A checked frozen config, the plugin manager with exactly its techniques, and its data."""

    frozen: FrozenConfig
    pm: PluginManager
    data: TaskData
    #: What replay found that does not stop it: versions that differ (allowed), what could not be checked.
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def prepare_study(path: str | os.PathLike, disable: Iterable[str] = ()) -> PreparedStudy:
    """Load the study file at ``path`` and check it all, with the techniques in ``disable`` turned off.

    Raises:
        ConfigError: every problem found, each with its line in the study file.
    """
    quiet_transformers()
    study = load_study(path)
    pm = plugin_manager_for(study, list(disable))
    # Whether this machine runs the study's precision and logging, reported with the study's other problems.
    problems = precision_problems(study.precision) + reporting_problems(study.report_to)
    try:
        data = validate_study(study, pm)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(str(path), with_lines(problems, Path(path).read_text(encoding="utf-8"))) from None
    warnings = with_lines(list(data.warnings), Path(path).read_text(encoding="utf-8"))
    return PreparedStudy(study, pm, data, tuple(warnings))


def prepare_recipe(path: str | os.PathLike, *, allow_data_change: bool = False,
                   allow_version_change: bool = False) -> PreparedRecipe:
    """Load the recipe at ``path`` (a frozen config, or a hand-written one) and check it before anything trains.

    Every problem comes at once, each with its key and line: a technique the recipe runs that is not installed
    (with the ``pip install`` that fixes it), a parameter outside its technique's space, a ``techniques:`` value
    that differs from the provenance's, a precision this machine cannot run, data that changed since the recipe
    was found (unless ``allow_data_change``), and versions that differ (unless ``allow_version_change``, which
    makes them warnings). See :func:`autobert.study.validation.check_replay`.

    Raises:
        ConfigError: listing every problem.
    """
    quiet_transformers()
    recipe = load_recipe(path)  # refuses a file it cannot read, with the fix
    text = Path(path).read_text(encoding="utf-8-sig")
    problems = [p + " (edit `precision` in the frozen config; the results then differ a little from the search's)"
                for p in precision_problems(recipe.precision)]
    if not isinstance(recipe, FrozenConfig):
        pm = plugin_manager_for(recipe)
        try:
            data = load_task_data(recipe)
            frozen = fixed_recipe(recipe, pm, data)
        except ConfigError as exc:
            raise ConfigError(str(path), with_lines(problems + exc.problems, text)) from None
        if problems:
            raise ConfigError(str(path), with_lines(problems, text))
        # Its provenance names exactly this manager's techniques: no second manager to build.
        return PreparedRecipe(frozen, pm, data, notes=(
            "a hand-written recipe (no provenance): nothing to check it against; the output's autobert.yaml "
            "records what it ran with",))
    frozen = recipe
    missing, notes = installed_problems(frozen)
    if missing:  # the plugin manager cannot be built without them
        raise ConfigError(str(path), with_lines(problems + missing, text))
    pm = plugin_manager_for(frozen)
    data, data_warnings = None, []
    try:
        data = load_task_data(frozen)
        data_warnings = check_frozen(frozen, data, allow_data_change)
    except ConfigError as exc:
        problems += exc.problems
    try:
        found = check_replay(frozen, pm, allow_version_change=allow_version_change)
    except ConfigError as exc:
        problems += exc.problems
        found = None
    if problems:
        raise ConfigError(str(path), with_lines(problems, text))
    return PreparedRecipe(frozen, pm, data, warnings=tuple(data_warnings) + found.warnings,
                          notes=tuple(notes) + found.notes)


__all__ = ["PreparedStudy", "PreparedRecipe", "prepare_study", "prepare_recipe"]
