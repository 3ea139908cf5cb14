"""Portfolio evaluation: every candidate recipe scored on every task study, each score an Optuna trial (resumable).

The portfolio itself (recipes, the score matrix, the greedy choice, fitting a recipe to a space) is
:mod:`autobert.strategy.portfolio`; this module runs the candidates through the study's objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import optuna

from autobert.config.schema import PrunerConfig, SamplerConfig, StudyConfig, load_study
from autobert.errors import AutobertError, ConfigError, TrialFailed
from autobert.run.data import load_task_data
from autobert.store import record
from autobert.store.record import StudyRecord, TrialRecord
from autobert.strategy.portfolio import (Recipe, candidate_of, candidates_from_study, fit_recipe,
                                         load_recipes, study_space, task_study_name)
from autobert.study.search import discard_queued, make_objective, open_study, plugin_manager_for


@dataclass(frozen=True)
class EvaluationInputs:
    """What an evaluation runs: the candidate recipes and the task studies they are scored on."""

    candidates: list[Recipe]
    tasks: list[StudyConfig]


def evaluation_inputs(task_paths: Iterable[str | Path], candidate_paths: Iterable[str | Path] = (),
                      from_studies: Iterable[tuple[str, str]] = (), top: int = 3) -> EvaluationInputs:
    """Load the task studies and the candidates: recipes from files, and the ``top`` best of finished studies.

    Args:
        candidate_paths: Portfolio or candidate files (``recipes:``), or frozen configs.
        from_studies: ``(storage URL, study name)`` of finished studies.

    Raises:
        ConfigError: every problem with them at once (a file, a study, a name given twice, no candidate at all).
    """
    problems: list[str] = []
    candidates: list[Recipe] = []
    for path in candidate_paths:
        try:
            candidates += load_recipes(path).recipes
        except ConfigError as exc:
            problems += [f"{path}: {p}" for p in exc.problems]
    for storage, name in from_studies:
        try:
            candidates += candidates_from_study(storage, name, top)
        except AutobertError as exc:
            problems.append(f"--from-study {storage} {name}: {exc}")
    tasks = []
    for path in task_paths:
        try:
            tasks.append(load_study(path))
        except ConfigError as exc:
            problems += [f"{path}: {p}" for p in exc.problems]
    names = [c.name for c in candidates]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"candidate name(s) {', '.join(repeated)} given twice; rename them so each score has one owner")
    if not candidates and not problems:
        problems.append("no candidates: give --candidates FILE ... and/or --from-study STORAGE NAME")
    if problems:
        raise ConfigError("portfolio evaluate", problems)
    return EvaluationInputs(candidates, tasks)


def evaluate(candidates: list[Recipe], tasks: list[Any], seeds: list[int], storage: str, *, name: str = "portfolio",
             say: Callable[[str], None] = print, progress: Any = None) -> dict[str, int]:
    """Run every candidate on every task study with every seed; store each score as a trial.

    Each task gets its own Optuna study ``<name>.<task study name>`` in
    ``storage``; a (candidate, seed) already stored (complete or failed) is not
    run again, so the same command resumes an interrupted evaluation.

    Returns: ``{"run": n, "stored": n, "skipped": n, "failed": n}``.
    """
    counts = {"run": 0, "stored": 0, "skipped": 0, "failed": 0}
    prepared = []
    for task in tasks:
        pm = plugin_manager_for(task)
        data = load_task_data(task)
        effective, off = study_space(task, pm)
        for seed in seeds:
            run_config = task.model_copy(update={
                "name": task_study_name(name, task.name), "seed": seed, "seeds": None, "storage": storage,
                "pruner": PrunerConfig(name="none"), "sampler": SamplerConfig(name="random", seed=seed),
                # A lost run is run again by the next `evaluate`, under its own name: no anonymous retries.
                "heartbeat": task.heartbeat.model_copy(update={"retries": 0})})
            opened = open_study(run_config, storage)
            if StudyRecord.from_study(opened).portfolio is None:
                record.store_study(opened, portfolio=name, task=task.name,
                                   rows={k: len(v) for k, v in data.splits.items()})
            prepared.append((task, seed, pm, effective, off, opened, make_objective(run_config, pm, data, progress)))
    # Candidate by candidate over the tasks: an interrupted evaluation has whole columns, not whole rows.
    told: set[tuple[str, str]] = set()
    for recipe in candidates:
        for task, seed, pm, effective, off, opened, objective in prepared:
            trials = opened.get_trials(deepcopy=False)
            if any(candidate_of(t, trials) == recipe.name and t.state == optuna.trial.TrialState.COMPLETE
                   and TrialRecord.from_trial(t).seed == seed for t in trials):
                counts["stored"] += 1
                continue
            fitted = fit_recipe(recipe, effective, off, pm.techniques)
            first_seed = (recipe.name, task.name) not in told
            told.add((recipe.name, task.name))
            if fitted.skipped:
                counts["skipped"] += 1
                if first_seed:
                    say(f"{task.name}: candidate {recipe.name} skipped: {fitted.skipped}")
                continue
            for note in fitted.adjusted if first_seed else ():
                say(f"{task.name}: candidate {recipe.name}: {note}")
            # Queued by an evaluation that was stopped: Optuna would run it before ours.
            discard_queued(opened, "not started: queued by an evaluation that was stopped")
            # The recipe as the candidate gave it: what a portfolio carries, not what the sampler filled in.
            record.enqueue(opened, fitted.params, candidate=recipe.name, recipe=recipe.params)
            opened.optimize(objective, n_trials=1, catch=(TrialFailed,))
            trial = next((t for t in reversed(opened.get_trials(deepcopy=False))
                          if TrialRecord.from_trial(t).candidate == recipe.name), None)
            counts["run"] += 1
            if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
                counts["failed"] += 1
                reason = (TrialRecord.from_trial(trial).fail_reason or "") if trial else ""
                say(f"{task.name}: candidate {recipe.name} (seed {seed}) failed: {reason}")
            else:
                say(f"{task.name}: candidate {recipe.name} (seed {seed}): {task.metric} {trial.value:.4f} "
                    f"in {TrialRecord.from_trial(trial).seconds or 0:.0f}s")
    return counts


__all__ = ["evaluate", "evaluation_inputs", "EvaluationInputs"]
