"""Recipe portfolios: a few recipes that won across tasks, so a search does not start blind.

auto-sklearn 2.0 and AutoGluon start from a *portfolio*: configurations chosen
offline so that, over many data sets, the best of them is close to the best
one could have found. autobert does the same for fine-tuning recipes:

1. :func:`evaluate` runs candidate recipes on a set of task studies and stores
   every (recipe, task, seed) score as an ordinary Optuna trial, one study per
   task (``<name>.<task>``), so an interrupted evaluation resumes where it was.
2. :func:`read_matrix` reads the score matrix back; :func:`build` chooses ``K``
   recipes greedily so that, averaged over tasks, the best recipe in the
   portfolio scores as high as possible. Scores are normalised per task (0 =
   the worst candidate on that task, 1 = the best), as auto-sklearn 2.0 and
   TabRepo do, so that an easy task does not outvote a hard one.
3. :func:`fit_recipe` fits a recipe to a study's own space (the warm start,
   :mod:`autobert.strategy.warm_start`): values outside an override move to the nearest
   allowed value; a recipe that needs a technique the study does not have is
   skipped, with the reason.

A portfolio file is YAML::

    recipes:
      - name: plain-1e-4
        params: {<technique>.<parameter>: value, ...}   # every parameter the recipe sets
    provenance: {tasks: [...], model: ..., seeds: [0], scores: {...}, ...}

A file of candidates has the same ``recipes:`` list (``provenance`` optional);
a frozen config (``best.yaml``) is read as one candidate.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Mapping

from autobert.config.schema import dump_yaml, load_yaml, write_atomic
from autobert.errors import AutobertError, ConfigError
from autobert.store.record import StudyRecord, TrialRecord
from autobert.store.storage import open_storage, shown
from autobert.strategy.planner import top_distinct_trials
from autobert.strategy.declarations import off_values
from autobert.run.plugin_manager import get_plugin_manager, installed_techniques
from autobert.version import __version__

BUILTIN = Path(__file__).parents[1] / "portfolios" / "minilm.yaml"


@dataclass(frozen=True)
class Recipe:
    """One recipe of a portfolio: a name and the parameters it fixes (``technique.parameter``)."""

    name: str
    params: dict[str, Any]
    source: str = ""
    #: A frozen config's provenance: each technique and the distribution and version it came from (for the
    #: warm start's message when one is not installed here).
    plugins: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "params": dict(sorted(self.params.items()))}
        if self.source:
            out["source"] = self.source
        return out


@dataclass(frozen=True)
class Portfolio:
    recipes: list[Recipe]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> str:
        data: dict[str, Any] = {"recipes": [r.to_dict() for r in self.recipes]}
        if self.provenance:
            data["provenance"] = self.provenance
        return dump_yaml(data)


# ---------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------


def load_recipes(path: str | Path) -> Portfolio:
    """A portfolio or candidates file (``recipes:``), or a frozen config read as one recipe.

    Raises:
        ConfigError: the file is missing, not YAML, or a recipe is malformed; every problem at once.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}; give a portfolio YAML file (`autobert portfolio "
                                      "build --output FILE` writes one) or a frozen config (best.yaml)"])
    try:
        raw = load_yaml(path.read_text(encoding="utf-8-sig"))
    except Exception as exc:  # yaml.YAMLError, UnicodeDecodeError
        raise ConfigError(str(path), [f"not a readable YAML file: {exc}"]) from None
    if isinstance(raw, dict) and "recipes" not in raw and isinstance(raw.get("provenance"), dict) \
            and isinstance(raw["provenance"].get("params"), dict):
        name = f"{raw['provenance'].get('study', path.stem)}#{raw['provenance'].get('trial', 0)}"
        plugins = raw["provenance"].get("plugins")
        return Portfolio([Recipe(name, dict(raw["provenance"]["params"]), str(path),
                                 dict(plugins) if isinstance(plugins, dict) else None)])
    if not isinstance(raw, dict) or not isinstance(raw.get("recipes"), list):
        raise ConfigError(str(path), ["expected a mapping with a `recipes:` list (each `- name: ...` with `params: "
                                      "{technique.parameter: value}`) or a frozen config with `provenance.params`"])
    problems, recipes, names = [], [], set()
    for i, item in enumerate(raw["recipes"]):
        where = f"recipes[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            problems.append(f"{where}: needs `params:` as a mapping of technique.parameter to value")
            continue
        name = str(item.get("name") or f"recipe-{i}")
        if name in names:
            problems.append(f"{where}: the name {name!r} is used twice; give each recipe its own name")
        names.add(name)
        bad = [k for k in item["params"] if not isinstance(k, str) or "." not in k]
        if bad:
            problems.append(f"{where} ({name}): parameter {bad[0]!r} is not namespaced; write technique.parameter "
                            "as `autobert plugins` lists them")
        unknown = set(item) - {"name", "params", "source"}
        if unknown:
            problems.append(f"{where} ({name}): unknown key(s) {', '.join(sorted(unknown))}; use name, params, source")
        recipes.append(Recipe(name, dict(item["params"]), str(item.get("source") or path)))
    if problems:
        raise ConfigError(str(path), problems)
    provenance = raw.get("provenance") if isinstance(raw.get("provenance"), dict) else {}
    return Portfolio(recipes, provenance)


def builtin_portfolio() -> Portfolio:
    """The portfolio shipped with autobert (``autobert/portfolios/minilm.yaml``)."""
    return load_recipes(BUILTIN)


def write_portfolio(portfolio: Portfolio, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, portfolio.to_yaml())
    return path


def candidates_from_study(storage: str, name: str, top: int, base_dir: Path | None = None) -> list[Recipe]:
    """The ``top`` best completed trials of an earlier study, best first, one per distinct recipe.

    Raises:
        AutobertError: the storage or the study cannot be opened (the message names both).
    """
    import optuna


    try:
        backend = open_storage(storage, lambda p: (base_dir or Path.cwd()) / p, must_exist=True)
        opened = optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        raise AutobertError(f"no study named {name!r} in {shown(storage)}; check the name (`optuna studies "
                            f"--storage {shown(storage)}` lists them)") from None
    except ConfigError:
        raise
    except Exception as exc:
        raise AutobertError(f"cannot open storage {shown(storage)} for study {name!r}: {exc}") from None

    return [Recipe(f"{name}#{t.number}", dict(t.params), f"{shown(storage)} {name}")
            for t in top_distinct_trials(opened, top)]


# ---------------------------------------------------------------------------
# Fitting a recipe to a study's space
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A recipe fitted to a space: the parameters to enqueue, what changed, or why it was skipped."""

    recipe: Recipe
    params: dict[str, Any]
    adjusted: list[str]
    skipped: str | None = None


def _nearest(spec: Any, value: Any) -> tuple[Any, bool]:
    """``value`` moved into ``spec``'s allowed values: ``(value, changed)``; ``(None, True)`` when none is near."""
    if spec.kind == "categorical":
        if value in spec.choices:
            return value, False
        numeric = [c for c in spec.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
            return min(numeric, key=lambda c: (abs(c - value), str(c))), True
        return None, True
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, True
    new = min(max(value, spec.low), spec.high)
    if spec.step:
        new = spec.low + round((new - spec.low) / spec.step) * spec.step
        new = min(new, spec.high)
    if spec.kind == "int":
        new = int(round(new))
    else:
        new = float(new)
    changed = not math.isclose(new, value, rel_tol=1e-9, abs_tol=1e-12)
    return (new if changed else value), changed


def fit_recipe(recipe: Recipe, effective: Mapping[str, Any], off: Mapping[str, Mapping[str, Any]],
               techniques: Iterable[str]) -> Fitted:
    """Fit ``recipe`` to a study's space.

    Args:
        recipe: The recipe.
        effective: The study's effective space (``{name: ParamSpec}`` after overrides).
        off: Each technique's declared off values (``autobert_ablation``).
        techniques: The study's enabled techniques.

    A value outside the space moves to the nearest allowed value (a note per
    parameter in ``adjusted``); a recipe that uses a technique the study does
    not have, or a choice the study does not allow, is skipped with the reason.
    A technique of the study that the recipe does not mention at all is set to
    its off values, so the recipe runs as it was chosen; its other missing
    parameters are left to the sampler.
    """
    techniques = set(techniques)
    params, adjusted = {}, []
    by_technique: dict[str, dict[str, Any]] = {}
    for name, value in recipe.params.items():
        by_technique.setdefault(name.split(".", 1)[0], {})[name] = value
    for technique, values in sorted(by_technique.items()):
        switched_off = off.get(technique) or {}
        used = not switched_off or any(values.get(k, v) != v for k, v in switched_off.items())
        if technique not in techniques:
            if used:
                shown_values = ", ".join(f"{k}={v!r}" for k, v in values.items() if k in switched_off) or \
                    ", ".join(f"{k}={v!r}" for k, v in list(values.items())[:2])
                source = (recipe.plugins or {}).get(technique)
                if source and technique not in installed_techniques():
                    dist, _, version = source.partition(" ")
                    return Fitted(recipe, {}, adjusted, f"uses {technique} ({shown_values}) from {source}, which is "
                                  f"not installed here; install it (pip install '{dist}=={version}') to start from it")
                return Fitted(recipe, {}, adjusted, f"uses {technique} ({shown_values}), which this study does not "
                                                     "enable (disabled, switched off by an override, or not installed)")
            continue  # the technique is off in the recipe and absent here: nothing to carry over
        for name, value in values.items():
            spec = effective.get(name)
            if spec is None:
                if switched_off.get(name, object()) != value:  # an off value the space lacks says nothing
                    adjusted.append(f"{name} dropped: not in this study's space")
                continue
            new, changed = _nearest(spec, value)
            if new is None:
                return Fitted(recipe, {}, adjusted, f"{name}={value!r} is not allowed here ({spec.describe()}) and no "
                                                     "value is near it")
            if changed:
                adjusted.append(f"{name} {value!r} -> {new!r} (allowed: {spec.describe()})")
            params[name] = new
    for technique in sorted(techniques - set(by_technique)):
        for name, value in (off.get(technique) or {}).items():
            spec = effective.get(name)
            if spec is not None and _nearest(spec, value) == (value, False):
                params[name] = value
    return Fitted(recipe, params, adjusted)


def study_space(study: Any, pm: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A study's effective space and its techniques' off values."""
    effective = pm.effective_space(study.overrides).effective
    # Every installed technique's off values, enabled here or not: a recipe that names a technique the study
    # does not enable, at its off value, does not need it.
    off = {**off_values(get_plugin_manager()), **off_values(pm)}
    return effective, off


def uses_technique(params: Mapping[str, Any], technique: str, off: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a recipe uses ``technique``: it names one of its parameters with a value other than its off value."""
    mine = {k: v for k, v in params.items() if k.split(".", 1)[0] == technique}
    switched_off = off.get(technique)
    if not mine:
        return False
    if not switched_off:
        return True
    return any(mine.get(k, v) != v for k, v in switched_off.items())


# ---------------------------------------------------------------------------
# Evaluating candidates on task studies
# ---------------------------------------------------------------------------


def task_study_name(name: str, task: str) -> str:
    return f"{name}.{task}"


def candidate_of(trial: Any, trials: list[Any]) -> str | None:
    """The candidate a stored trial scored; a re-run of a lost trial scored its original's."""
    stored = TrialRecord.from_trial(trial)
    name, original = stored.candidate, stored.retry_of
    if name is None and original is not None and 0 <= int(original) < len(trials):
        return TrialRecord.from_trial(trials[int(original)]).candidate
    return name


# ---------------------------------------------------------------------------
# The score matrix and the greedy choice
# ---------------------------------------------------------------------------


@dataclass
class ScoreMatrix:
    """Scores of candidates on tasks: ``values[task][candidate] = [value per seed]``."""

    values: dict[str, dict[str, list[float]]]
    params: dict[str, dict[str, Any]]
    directions: dict[str, str]
    seconds: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.values)

    @property
    def candidates(self) -> list[str]:
        return sorted(self.params)

    def mean(self, task: str, candidate: str) -> float | None:
        values = self.values.get(task, {}).get(candidate)
        return statistics.fmean(values) if values else None

    def normalised(self, tasks: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
        """Per task, each candidate's mean scaled to [0, 1] (0: the worst candidate, 1: the best; missing: 0)."""
        out = {}
        for task in tasks or self.tasks:
            means = {c: self.mean(task, c) for c in self.candidates}
            present = [m for m in means.values() if m is not None]
            if not present:
                continue
            lo, hi = min(present), max(present)
            sign = 1 if self.directions.get(task, "maximize") == "maximize" else -1
            out[task] = {c: (0.0 if m is None else (1.0 if hi == lo else
                                                     ((m - lo) if sign > 0 else (hi - m)) / (hi - lo)))
                         for c, m in means.items()}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "params": self.params, "directions": self.directions,
                "seconds": self.seconds, "meta": self.meta}


def read_matrix(storage: str, name: str = "portfolio") -> ScoreMatrix:
    """The score matrix of the evaluation ``name`` stored in ``storage``.

    Raises:
        AutobertError: the storage holds no task study of that evaluation.
    """
    import optuna


    try:
        backend = open_storage(storage, must_exist=True)
        summaries = optuna.get_all_study_summaries(storage=backend)
    except Exception as exc:
        raise AutobertError(f"cannot read storage {shown(storage)}: {exc}") from None
    values: dict[str, dict[str, list[float]]] = {}
    params: dict[str, dict[str, Any]] = {}
    seconds: dict[str, dict[str, float]] = {}
    directions: dict[str, str] = {}
    meta: dict[str, Any] = {"rows": {}, "seeds": set()}
    for summary in summaries:
        stored = StudyRecord.from_study(summary)
        if stored.portfolio != name:
            continue
        task = stored.task if stored.task is not None else summary.study_name
        opened = optuna.load_study(study_name=summary.study_name, storage=backend)
        directions[task] = opened.direction.name.lower()
        meta["rows"][task] = stored.rows
        trials = opened.get_trials(deepcopy=False)
        for trial in trials:
            candidate = candidate_of(trial, trials)
            if trial.state != optuna.trial.TrialState.COMPLETE:
                continue
            if candidate is None:
                continue
            values.setdefault(task, {}).setdefault(candidate, []).append(float(trial.value))
            run = TrialRecord.from_trial(trial)
            seconds.setdefault(task, {})[candidate] = float(run.seconds if run.seconds is not None else 0.0)
            params.setdefault(candidate, dict(run.recipe or trial.params))
            meta["seeds"].add(int(run.seed if run.seed is not None else 0))
    if not values:
        raise AutobertError(f"no portfolio evaluation named {name!r} in {shown(storage)}; run `autobert portfolio "
                            f"evaluate ... --storage {shown(storage)} --name {name}` first")
    meta["seeds"] = sorted(meta["seeds"])
    return ScoreMatrix(values, params, directions, seconds, meta)


def greedy(normalised: Mapping[str, Mapping[str, float]], size: int) -> list[str]:
    """Choose ``size`` candidates one by one, each time the one that most raises the mean over tasks of the
    best normalised score in the portfolio.

    Ties, as when the portfolio already holds the best candidate of every task and no pick can raise its
    coverage, go to the candidate with the higher mean normalised score (the one most likely to do well on a
    task it was not scored on), then to the earlier name.
    """
    tasks = sorted(normalised)
    candidates = sorted({c for scores in normalised.values() for c in scores})
    overall = {c: statistics.fmean(normalised[t].get(c, 0.0) for t in tasks) for c in candidates}
    chosen: list[str] = []
    best = {t: 0.0 for t in tasks}
    while len(chosen) < min(size, len(candidates)):
        def gain(c: str) -> float:
            return statistics.fmean(max(best[t], normalised[t].get(c, 0.0)) for t in tasks)

        pick = max((c for c in candidates if c not in chosen),
                   key=lambda c: (round(gain(c), 12), round(overall[c], 12), [-ord(x) for x in c]))
        chosen.append(pick)
        best = {t: max(best[t], normalised[t].get(pick, 0.0)) for t in tasks}
    return chosen


def coverage(normalised: Mapping[str, Mapping[str, float]], chosen: Iterable[str]) -> float:
    """Mean over tasks of the best normalised score among ``chosen``."""
    chosen = list(chosen)
    return statistics.fmean(max((normalised[t].get(c, 0.0) for c in chosen), default=0.0) for t in normalised)


def build(matrix: ScoreMatrix, size: int, *, exclude: Iterable[str] = (), off: Mapping[str, Mapping[str, Any]] | None = None,
          techniques: Iterable[str] = (), model: str | None = None) -> Portfolio:
    """The greedy portfolio of ``size`` recipes over the matrix's tasks (less ``exclude``), with its provenance.

    ``off`` and ``techniques`` (the installed techniques' off values and
    names) let the provenance say which techniques won places and which did not.
    """
    exclude = set(exclude)
    tasks = [t for t in matrix.tasks if t not in exclude]
    if not tasks:
        raise AutobertError(f"no task left to build a portfolio on (tasks {matrix.tasks}, excluded {sorted(exclude)})")
    if size < 1:
        raise AutobertError(f"--size must be at least 1, got {size}")
    normalised = matrix.normalised(tasks)
    chosen = greedy(normalised, size)
    singles = {c: coverage(normalised, [c]) for c in matrix.candidates}
    best_single = greedy(normalised, 1)[0]
    off = off or {}
    in_candidates = sorted({t for c in matrix.candidates for t in _techniques_of(matrix.params[c], off)})
    won = sorted({t for c in chosen for t in _techniques_of(matrix.params[c], off)})
    provenance = {
        "built": date.today().isoformat(),
        "autobert_version": __version__,
        "model": model or matrix.meta.get("model"),
        "tasks": tasks,
        "rows": {t: matrix.meta.get("rows", {}).get(t) for t in tasks},
        "seeds": matrix.meta.get("seeds", []),
        "candidates": len(matrix.candidates),
        "normalisation": "per task, (mean - worst candidate) / (best - worst); a portfolio's coverage is the mean "
                         "over tasks of its best recipe's normalised score (1 = the best candidate on every task)",
        "coverage": round(coverage(normalised, chosen), 4),
        "best_single": {"recipe": best_single, "coverage": round(singles[best_single], 4)},
        "techniques_won": won,
        "techniques_not_chosen": sorted(set(in_candidates) - set(won)),
        "techniques_never_candidates": sorted(set(techniques) - set(in_candidates)),
        "scores": {c: {t: round(matrix.mean(t, c), 4) for t in tasks if matrix.mean(t, c) is not None}
                   for c in chosen},
    }
    recipes = [Recipe(c, matrix.params[c], "portfolio evaluation") for c in chosen]
    return Portfolio(recipes, provenance)


def _techniques_of(params: Mapping[str, Any], off: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted(t for t in {k.split(".", 1)[0] for k in params} if uses_technique(params, t, off))


def leave_one_task_out(matrix: ScoreMatrix, size: int) -> list[dict[str, Any]]:
    """For each task: the portfolio built without it, scored on it (normalised and raw), beside the oracle
    (the best candidate on the task) and the best single recipe chosen without it."""
    rows = []
    full = matrix.normalised()
    for task in matrix.tasks:
        others = [t for t in matrix.tasks if t != task]
        if not others:
            continue
        normalised = matrix.normalised(others)
        chosen = greedy(normalised, size)
        single = greedy(normalised, 1)[0]
        pick = max(chosen, key=lambda c: (full[task].get(c, 0.0), c))
        oracle = max(matrix.candidates, key=lambda c: (full[task].get(c, 0.0), c))
        rows.append({
            "task": task, "portfolio": chosen, "best_in_portfolio": pick,
            "portfolio_value": matrix.mean(task, pick), "portfolio_normalised": round(full[task].get(pick, 0.0), 4),
            "single": single, "single_value": matrix.mean(task, single),
            "single_normalised": round(full[task].get(single, 0.0), 4),
            "oracle": oracle, "oracle_value": matrix.mean(task, oracle),
            "median_value": statistics.median(v for v in (matrix.mean(task, c) for c in matrix.candidates) if v is not None),
        })
    return rows


__all__ = [
    "BUILTIN", "Fitted", "Portfolio", "Recipe", "ScoreMatrix", "build", "builtin_portfolio", "candidates_from_study",
    "candidate_of", "coverage", "fit_recipe", "greedy", "leave_one_task_out", "load_recipes", "read_matrix", "study_space", "task_study_name",
    "uses_technique", "write_portfolio",
]
