"""Portfolio evaluation: every candidate recipe scored on every task study, each score an Optuna trial (resumable).

The portfolio itself (recipes, the score matrix, the greedy choice, fitting a recipe to a space) is
:mod:`autobert.strategy.portfolio`; this module runs the candidates through the study's objective.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna

from autobert.config.schema import PrunerConfig, SamplerConfig
from autobert.errors import TrialFailed
from autobert.run.data import load_task_data
from autobert.strategy.portfolio import PORTFOLIO_KEY, Recipe, candidate_of, fit_recipe, study_space, task_study_name
from autobert.study.search import discard_queued, make_objective, open_study, plugin_manager_for


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
            if opened.user_attrs.get(PORTFOLIO_KEY) is None:
                opened.set_user_attr(PORTFOLIO_KEY, name)
                opened.set_user_attr("task", task.name)
                opened.set_user_attr("rows", {k: len(v) for k, v in data.splits.items()})
            prepared.append((task, seed, pm, effective, off, opened, make_objective(run_config, pm, data, progress)))
    # Candidate by candidate over the tasks: an interrupted evaluation has whole columns, not whole rows.
    told: set[tuple[str, str]] = set()
    for recipe in candidates:
        for task, seed, pm, effective, off, opened, objective in prepared:
            trials = opened.get_trials(deepcopy=False)
            if any(candidate_of(t, trials) == recipe.name and t.state == optuna.trial.TrialState.COMPLETE
                   and t.user_attrs.get("seed") == seed for t in trials):
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
            opened.enqueue_trial(fitted.params, user_attrs={"candidate": recipe.name, "recipe": recipe.params})
            opened.optimize(objective, n_trials=1, catch=(TrialFailed,))
            trial = next((t for t in reversed(opened.get_trials(deepcopy=False))
                          if t.user_attrs.get("candidate") == recipe.name), None)
            counts["run"] += 1
            if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
                counts["failed"] += 1
                reason = trial.user_attrs.get("fail_reason", "") if trial else ""
                say(f"{task.name}: candidate {recipe.name} (seed {seed}) failed: {reason}")
            else:
                say(f"{task.name}: candidate {recipe.name} (seed {seed}): {task.metric} {trial.value:.4f} "
                    f"in {trial.user_attrs.get('seconds', 0):.0f}s")
    return counts


__all__ = ["evaluate"]
