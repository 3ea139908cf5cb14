"""The warm start: a new study's first trials are recipes that won before.

``warm_start:`` in the study file says where they come from:

* ``builtin`` (the default): the portfolio shipped with autobert
  (``autobert/portfolios/minilm.yaml``, learned on six sentence tasks);
* a portfolio file (``autobert portfolio build --output FILE``);
* ``{studies: [{storage: URL, name: NAME}], top: K}``: the ``K`` best recipes
  of each earlier study;
* ``none``: the sampler starts on its own.

The recipes are fitted to this study's space (:func:`autobert.strategy.portfolio.fit_recipe`)
and enqueued once, when the study has no trial yet, as ordinary Optuna trials
(``enqueue_trial``) with the user attribute ``warm_start`` naming the recipe;
the sampler then continues from what they found. What was enqueued, adjusted
or skipped, and why, is stored in the study's user attribute ``warm_start`` and
said on the console.
"""

from __future__ import annotations

from typing import Any, Callable

from autobert.store import record
from autobert.store.record import StudyRecord
from autobert.strategy.portfolio import Recipe, builtin_portfolio, candidates_from_study, fit_recipe, load_recipes, study_space
from autobert.errors import ConfigError


def source_recipes(study: Any) -> tuple[str, list[Recipe]]:
    """``(description, recipes)`` named by the study's ``warm_start`` key (no recipes for ``none``)."""
    spec = study.warm_start
    if spec == "none":
        return "none", []
    if spec == "builtin":
        return "the built-in portfolio", builtin_portfolio().recipes
    if isinstance(spec, str):
        path = study.resolve_path(spec)
        return f"portfolio {spec}", load_recipes(path).recipes
    recipes: list[Recipe] = []
    for ref in spec.studies:
        recipes += candidates_from_study(ref.storage, ref.name, spec.top, study.base_dir)
    return f"the top {spec.top} of {', '.join(r.name for r in spec.studies)}", recipes


def enqueue(study: Any, opened: Any, pm: Any, say: Callable[[str], None] = lambda _: None) -> dict[str, Any] | None:
    """Enqueue the warm-start recipes as the first trials of a study that has none yet.

    Returns what was done (also stored as the study's ``warm_start`` user
    attribute), or ``None`` when the study already has trials or a warm start.
    """
    if StudyRecord.from_study(opened).warm_start is not None or opened.get_trials(deepcopy=False):
        return None
    description, recipes = source_recipes(study)
    done: dict[str, Any] = {"source": description, "enqueued": [], "adjusted": {}, "skipped": {}}
    if recipes:
        effective, off = study_space(study, pm)
        seen = set()
        for recipe in recipes:
            fitted = fit_recipe(recipe, effective, off, pm.techniques)
            if fitted.skipped:
                done["skipped"][recipe.name] = fitted.skipped
                say(f"warm start: {recipe.name} skipped: {fitted.skipped}")
                continue
            key = repr(sorted(fitted.params.items()))
            if key in seen:
                done["skipped"][recipe.name] = reason = "the same as an earlier recipe once fitted to this space"
                say(f"warm start: {recipe.name} skipped: {reason}")
                continue
            seen.add(key)
            if fitted.adjusted:
                done["adjusted"][recipe.name] = fitted.adjusted
                say(f"warm start: {recipe.name} adjusted: {'; '.join(fitted.adjusted)}")
            record.enqueue(opened, fitted.params, warm_start=recipe.name)
            done["enqueued"].append(recipe.name)
        say(f"warm start from {description}: {len(done['enqueued'])} recipe(s) enqueued"
            + (f", {len(done['skipped'])} skipped" if done["skipped"] else ""))
    record.store_study(opened, warm_start=done)
    return done


def problems(study: Any) -> list[str]:
    """What is wrong with the study's ``warm_start`` file, for validation (every problem, with the fix)."""
    spec = study.warm_start
    if not isinstance(spec, str) or spec in ("builtin", "none"):
        return []
    try:
        load_recipes(study.resolve_path(spec))
    except ConfigError as exc:
        return [f"warm_start: {problem}" for problem in exc.problems]
    return []


__all__ = ["enqueue", "problems", "source_recipes"]
