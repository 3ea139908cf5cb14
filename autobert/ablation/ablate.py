"""``autobert ablate``: which techniques of a recipe earned their place, with paired-seed evidence.

A search returns a recipe with several techniques switched on, and the
report's per-technique plots compare trials that differ in everything at once.
An ablation answers the question directly: it re-trains the frozen recipe
(the *full* arm) and, for every technique the recipe uses, the recipe with
that technique alone switched off (an *off* arm). ``--add`` also tries
techniques the recipe does not use, at their documented default (an *add*
arm). Each technique declares its off value and its default through the
:func:`~autobert.hookspecs.autobert_ablation` hook.

Every arm runs on the same seeds through :func:`autobert.run.pipeline.run_seeds`,
the code path of a search trial and of ``autobert train``: the same seed gives
the same initialisation, the same data order and the same cached stages, so
the per-seed differences between two arms are paired. Per technique the
result is the mean paired difference (with minus without), its 95 % t
interval over the seed pairs, the Wilcoxon signed-rank p-value, the extra wall
time, and a verdict: ``helps`` / ``hurts`` when the interval excludes zero,
``no evidence`` otherwise. With n seeds the two-sided signed-rank p is at
least 2/2**n (0.0625 at 5 seeds), so the verdict is the t interval's; the
p-value is shown beside it.

Each arm is a trial of an Optuna study of its own (``<study>-ablation-<key>``,
by default in ``<output>/ablation.db``); every finished seed is stored in the
trial's user attributes at once, so a stopped ablation resumes without
re-running a finished arm, or a finished seed.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from autobert.config.schema import FrozenConfig, dump_yaml, relocate, write_atomic
from autobert.run.data import TaskData
from autobert.errors import AutobertError, ConfigError, PluginError
from autobert.run.pipeline import draw_params, run_seeds
from autobert.run.plugin_manager import PluginManager
from autobert.stage_cache import cache_key
from autobert.strategy.declarations import Declaration, declared_ablations, uses

HELPS, HURTS, NO_EVIDENCE = "helps", "hurts", "no evidence"
FULL = "full recipe"


# ---------------------------------------------------------------------------
# Arms: the recipe with one change each
# ---------------------------------------------------------------------------


@dataclass
class Arm:
    """One recipe trained on every seed: the full one, or the full one with one technique switched."""

    name: str
    technique: str | None
    kind: str  # "full", "off" or "add"
    changes: dict[str, Any]
    config: FrozenConfig

    @property
    def params(self) -> dict[str, Any]:
        return self.config.params

    @property
    def key(self) -> str:
        """Identifies the recipe trained (its parameters and settings), not the arm's label."""
        return cache_key({"params": self.config.params, "techniques": self.config.techniques}, 16)


def changed_recipe(frozen: FrozenConfig, changes: Mapping[str, Any], pm: PluginManager, why: str) -> FrozenConfig:
    """``frozen`` with ``changes`` to its parameters; parameters the new recipe no longer draws are dropped.

    The result is a frozen config like any other (it trains with ``autobert
    train``); its provenance keeps the study and trial it was derived from,
    without a value (it was not trained in the search).

    Raises:
        AutobertError: the changed recipe needs a parameter nobody gave (``why`` says which change).
    """
    candidate = {**frozen.params, **changes}
    for _ in range(2):
        config = _with_params(frozen, candidate, frozen.params)
        try:
            drawn = draw_params(config, optuna.trial.FixedTrial(candidate), pm)
        except ValueError as exc:
            raise AutobertError(
                f"{why}: the recipe then needs a value the declaration does not give ({exc}); add it to the "
                "technique's autobert_ablation answer"
            ) from None
        except ConfigError as exc:
            raise AutobertError(f"{why}: {'; '.join(exc.problems)}") from None
        if drawn == candidate:
            return config
        candidate = drawn
    return _with_params(frozen, candidate, frozen.params)


def _with_params(frozen: FrozenConfig, params: dict[str, Any], old_params: Mapping[str, Any]) -> FrozenConfig:
    raw = frozen.model_dump(mode="json", exclude_none=True)
    techniques = {t: {k: v for k, v in section.items() if f"{t}.{k}" not in old_params}
                  for t, section in raw.get("techniques", {}).items()}
    for name, value in sorted(params.items()):
        technique, short = name.split(".", 1)
        techniques.setdefault(technique, {})[short] = value
    raw["techniques"] = techniques
    raw["provenance"] = {**raw["provenance"], "params": dict(sorted(params.items()))}
    changed = dict(params) != dict(frozen.params)
    if changed:
        raw["provenance"]["value"] = None
        raw["provenance"].pop("seed_values", None)
    return FrozenConfig.model_validate({**raw, "base_dir": frozen.base_dir})


@dataclass
class Plan:
    arms: list[Arm]
    not_ablatable: dict[str, str]
    declarations: dict[str, Declaration]


def plan(frozen: FrozenConfig, pm: PluginManager, add: list[str] = ()) -> Plan:
    """The arms of an ablation: the full recipe, one per technique it uses switched off, one per ``add``.

    Raises:
        AutobertError: an ``add`` names an unknown technique, one the recipe uses, or one without a default.
    """
    declarations = declared_ablations(pm)
    params = frozen.params
    arms = [Arm(FULL, None, "full", {}, changed_recipe(frozen, {}, pm, "the full recipe"))]
    not_ablatable: dict[str, str] = {}
    for name, declaration in sorted(declarations.items()):
        takes_part = any(p.split(".", 1)[0] == name for p in params)
        if declaration.off is None:
            if takes_part:
                not_ablatable[name] = declaration.reason
            continue
        if uses(params, declaration):
            off = {k: v for k, v in declaration.off.items()}
            arms.append(Arm(f"without {name}", name, "off", off,
                            changed_recipe(frozen, off, pm, f"switching {name} off")))
    problems = []
    for name in add:
        declaration = declarations.get(name)
        if declaration is None:
            problems.append(f"--add {name}: no technique of that name in this recipe's plugins "
                            f"({', '.join(sorted(declarations))})")
        elif declaration.off is not None and uses(params, declaration):
            problems.append(f"--add {name}: the recipe already uses {name}; it is ablated anyway")
        elif not declaration.on:
            problems.append(f"--add {name}: {name} declares no default to switch on"
                            + (f" ({declaration.reason})" if declaration.reason else ""))
        else:
            arms.append(Arm(f"with {name}", name, "add", dict(declaration.on),
                            changed_recipe(frozen, declaration.on, pm, f"switching {name} on")))
    if problems:
        raise AutobertError("; ".join(problems))
    return Plan(arms, not_ablatable, declarations)


# ---------------------------------------------------------------------------
# Statistics over seed pairs
# ---------------------------------------------------------------------------


def paired_summary(with_values: list[float], without_values: list[float], direction: str = "maximize") -> dict[str, Any]:
    """Mean paired difference (with - without), its 95 % t interval, Wilcoxon's p and the verdict."""
    from scipy import stats

    diffs = [a - b for a, b in zip(with_values, without_values)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    if n > 1:
        sd = statistics.stdev(diffs)
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low = high = math.nan
    if n > 0 and any(diffs):
        try:
            p = float(stats.wilcoxon(diffs).pvalue)
        except ValueError:
            p = math.nan
    else:
        p = 1.0 if n else math.nan
    better = 1 if direction == "maximize" else -1
    if n > 1 and math.isfinite(low) and (low > 0 or high < 0) and (low != 0 or high != 0):
        verdict = HELPS if (mean * better) > 0 else HURTS
    else:
        verdict = NO_EVIDENCE
    return {"differences": diffs, "mean_difference": mean, "ci95": [low, high], "wilcoxon_p": p, "verdict": verdict}


# ---------------------------------------------------------------------------
# Running the arms
# ---------------------------------------------------------------------------


@dataclass
class ArmResult:
    arm: Arm
    seeds: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"0": {"value", "metrics", "test", "seconds"}}
    ran: list[int] = field(default_factory=list)  # seeds trained in this process (the rest came from storage)

    def values(self, seeds: list[int], split: str = "value") -> list[float]:
        if split == "value":
            return [float(self.seeds[str(s)]["value"]) for s in seeds]
        return [float(self.seeds[str(s)]["test"][split]) for s in seeds]


class AblationProgress:
    """A rich display of an ablation: seeds run over all arms, and the running seed's training steps.

    Implements the pipeline's ``Progress`` protocol, plus the ablation's own
    ``arm_seed_started`` / ``arm_seed_finished`` / ``skipped``.
    """

    def __init__(self, console: Any, total: int, metric: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console, self.metric = console, metric
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)
        self.runs = self.progress.add_task("arm × seed runs", total=total, info="")
        self.steps = self.progress.add_task("steps", total=None, info="", visible=False)

    def __enter__(self) -> "AblationProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def arm_seed_started(self, arm: str, seed: int, index: int, total: int) -> None:
        self.progress.update(self.runs, completed=index, info=f"{arm}, seed {seed}")

    def arm_seed_finished(self, arm: str, seed: int, value: float, seconds: float) -> None:
        self.progress.console.print(f"{arm}, seed {seed}: {self.metric}={value:.4f} ({seconds:.0f} s)")
        self.progress.update(self.runs, advance=1)

    def skipped(self, arm: str, seeds: list[int]) -> None:
        if seeds:
            self.progress.console.print(f"{arm}: seed(s) {', '.join(map(str, seeds))} stored, not re-run")
        self.progress.update(self.runs, advance=len(seeds))

    # pipeline Progress protocol
    def trial_started(self, number: int, total_steps: int) -> None:
        self.progress.reset(self.steps, total=total_steps, description="steps", visible=True, info="")

    def step(self, global_step: int) -> None:
        self.progress.update(self.steps, completed=global_step)

    def evaluated(self, global_step: int, value: float) -> None:
        self.progress.update(self.steps, info=f"{self.metric}={value:.4f} at step {global_step}")


def study_name(frozen: FrozenConfig) -> str:
    """The ablation study's name: the recipe's study, trial and a digest of the recipe and data."""
    key = cache_key({"params": frozen.params, "techniques": frozen.techniques, "model": frozen.model,
                     "data": frozen.provenance.data_fingerprint, "max_length": frozen.max_length}, 16)
    return f"{frozen.provenance.study}-ablation-{key}"


def default_output(frozen_path: Path) -> Path:
    """``<frozen's folder>/<stem>-ablation``: ``best.yaml`` in a study folder gives ``<study dir>/best-ablation``."""
    frozen_path = Path(frozen_path)
    return frozen_path.parent / f"{frozen_path.stem}-ablation"


def _open(frozen: FrozenConfig, url: str) -> optuna.Study:
    from autobert.study.search import make_storage

    try:
        return optuna.create_study(study_name=study_name(frozen), storage=make_storage(frozen, url),
                                   direction=frozen.direction, load_if_exists=True)
    except Exception as exc:  # noqa: BLE001  (the storage's own errors, said for people)
        from autobert.store.storage import storage_problem

        raise AutobertError(storage_problem(url, exc)) from None


def _stored_seeds(opened: optuna.Study, key: str, want_test: bool) -> dict[str, dict[str, Any]]:
    """Every stored seed result of the recipe ``key``, from finished and from stopped trials."""
    seeds: dict[str, dict[str, Any]] = {}
    for trial in opened.get_trials(deepcopy=False):
        if trial.user_attrs.get("arm_key") != key:
            continue
        for seed, result in (trial.user_attrs.get("seed_results") or {}).items():
            if want_test and not result.get("test"):
                continue
            seeds.setdefault(seed, result)
    return seeds


def _fail_leftovers(opened: optuna.Study, url: str) -> Any:
    """Take SQLite's one-worker lock and fail trials a killed ablation left RUNNING; elsewhere, stale ones."""
    from autobert.store.storage import SQLiteWorkerLock, storage_kind

    if storage_kind(url) == "sqlite":
        lock = SQLiteWorkerLock(url).acquire()
        if lock.held:
            for trial in opened.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                with contextlib.suppress(Exception):
                    opened.tell(trial.number, state=TrialState.FAIL)
        return lock
    with contextlib.suppress(Exception):
        optuna.storages.fail_stale_trials(opened)
    return None


def _heartbeat(opened: optuna.Study, trial: optuna.Trial):
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # an Optuna without it: no heartbeat, as on SQLite
        return contextlib.nullcontext()
    return get_heartbeat_thread(trial._trial_id, opened._storage)


def _running_elsewhere(opened: optuna.Study, key: str) -> bool:
    return any(t.user_attrs.get("arm_key") == key
               for t in opened.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def run_arms(
    frozen: FrozenConfig, arms: list[Arm], pm: PluginManager, data: TaskData, *, seeds: list[int], storage: str,
    evaluate_test: bool = False, progress: Any = None,
) -> tuple[list[ArmResult], str]:
    """Train every arm on every seed, skipping what the ablation study already stores.

    Returns:
        The arms' results (in ``arms``' order) and the ablation study's name.
    """
    opened = _open(frozen, storage)
    lock = _fail_leftovers(opened, storage)
    results = []
    total = sum(len(seeds) for _ in arms)
    done = 0
    try:
        for arm in arms:
            result = ArmResult(arm, _stored_seeds(opened, arm.key, evaluate_test))
            missing = [s for s in seeds if str(s) not in result.seeds]
            if not missing or (lock is None and _running_elsewhere(opened, arm.key)):
                if progress is not None:
                    progress.skipped(arm.name, [s for s in seeds if str(s) in result.seeds])
                done += len(seeds)
                results.append(result)
                continue
            done += len(seeds) - len(missing)
            if progress is not None and len(missing) < len(seeds):
                progress.skipped(arm.name, [s for s in seeds if s not in missing])
            trial = opened.ask()
            trial.set_user_attr("arm", arm.name)
            trial.set_user_attr("arm_key", arm.key)
            trial.set_user_attr("technique", arm.technique)
            trial.set_user_attr("changes", arm.changes)
            trial.set_user_attr("params", arm.params)
            trial.set_user_attr("seeds", seeds)
            stored = {s: r for s, r in result.seeds.items()}
            try:
                with _heartbeat(opened, trial):
                    for seed in missing:
                        if progress is not None:
                            progress.arm_seed_started(arm.name, seed, done, total)
                        run = run_seeds(arm.config, optuna.trial.FixedTrial(arm.params, number=trial.number), pm, data,
                                        seeds=[seed], evaluate_test=evaluate_test, progress=progress).first
                        stored[str(seed)] = {"value": run.value, "metrics": run.metrics, "test": run.test_metrics,
                                             "seconds": round(run.seconds, 3), "steps": run.steps}
                        trial.set_user_attr("seed_results", stored)
                        result.seeds[str(seed)] = stored[str(seed)]
                        result.ran.append(seed)
                        done += 1
                        if progress is not None:
                            progress.arm_seed_finished(arm.name, seed, run.value, run.seconds)
            except BaseException as exc:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("fail_reason", reason[:2000])
                opened.tell(trial, state=TrialState.FAIL)
                raise
            opened.tell(trial, statistics.fmean(result.values(seeds)))
            results.append(result)
    finally:
        if lock is not None:
            lock.release()
    return results, opened.study_name


# ---------------------------------------------------------------------------
# The ablation, end to end
# ---------------------------------------------------------------------------


@dataclass
class Ablation:
    """An ablation's results: what ``ablation.json`` holds."""

    frozen: FrozenConfig
    recipe_path: str
    seeds: list[int]
    arms: list[ArmResult]
    not_ablatable: dict[str, str]
    rows: list[dict[str, Any]]
    recommended: FrozenConfig | None
    dropped: list[str]
    storage: str
    study_name: str
    evaluate_test: bool

    @property
    def complete(self) -> bool:
        return all(all(str(s) in a.seeds for s in self.seeds) for a in self.arms)

    def to_json(self) -> dict[str, Any]:
        f = self.frozen
        return {
            "recipe": self.recipe_path,
            "study": f.provenance.study,
            "trial": f.provenance.trial,
            "params": f.params,
            "metric": f.metric,
            "direction": f.direction,
            "seeds": self.seeds,
            "storage": self.storage,
            "ablation_study": self.study_name,
            "complete": self.complete,
            "test": self.evaluate_test,
            "arms": [{"name": a.arm.name, "technique": a.arm.technique, "kind": a.arm.kind, "changes": a.arm.changes,
                      "params": a.arm.params, "seed_results": {str(s): a.seeds[str(s)] for s in self.seeds
                                                               if str(s) in a.seeds}}
                     for a in self.arms],
            "techniques": self.rows,
            "not_ablatable": [{"technique": t, "reason": r} for t, r in sorted(self.not_ablatable.items())],
            "recommended": None if self.recommended is None else {
                "path": "recommended.yaml", "dropped": self.dropped, "params": self.recommended.params},
        }


def _describe(changes: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """``llrd.decay 0.978 → 1.0`` for each parameter a change sets."""
    return ", ".join(f"{name} {_fmt(params[name])} → {_fmt(value)}" if name in params else f"{name} = {_fmt(value)}"
                     for name, value in changes.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def summarise(frozen: FrozenConfig, results: list[ArmResult], seeds: list[int], evaluate_test: bool) -> list[dict[str, Any]]:
    """One row per off or add arm: the technique's effect (with minus without) on the seeds both finished."""
    full = results[0]
    rows = []
    for result in results[1:]:
        arm = result.arm
        paired = [s for s in seeds if str(s) in full.seeds and str(s) in result.seeds]
        with_r, without_r = (full, result) if arm.kind == "off" else (result, full)
        row = {"technique": arm.technique, "arm": arm.name, "kind": "ablated" if arm.kind == "off" else "added",
               "switched": _describe(arm.changes, frozen.params), "seeds": paired}
        row.update(paired_summary(with_r.values(paired), without_r.values(paired), frozen.direction))
        extra = [with_r.seeds[str(s)]["seconds"] - without_r.seeds[str(s)]["seconds"] for s in paired]
        row["extra_seconds"] = statistics.fmean(extra) if extra else math.nan
        row["with_mean"] = statistics.fmean(with_r.values(paired)) if paired else math.nan
        row["without_mean"] = statistics.fmean(without_r.values(paired)) if paired else math.nan
        if evaluate_test and paired:
            test = paired_summary(with_r.values(paired, frozen.metric), without_r.values(paired, frozen.metric),
                                  frozen.direction)
            row["test"] = {k: test[k] for k in ("differences", "mean_difference", "ci95", "wilcoxon_p")}
        rows.append(row)
    return rows


def recommend(frozen: FrozenConfig, rows: list[dict[str, Any]], arms: list[Arm], pm: PluginManager) -> tuple[FrozenConfig, list[str]]:
    """The recipe without every ablated technique that showed no evidence of helping."""
    by_arm = {a.name: a for a in arms}
    dropped, changes = [], {}
    for row in rows:
        if row["kind"] == "ablated" and row["verdict"] != HELPS:
            dropped.append(row["technique"])
            changes.update(by_arm[row["arm"]].changes)
    return changed_recipe(frozen, changes, pm, "the recommended recipe"), dropped


def run_ablation(
    frozen: FrozenConfig, pm: PluginManager, data: TaskData, *, seeds: list[int], output: Path,
    recipe_path: str = "", add: list[str] = (), storage: str | None = None, evaluate_test: bool = False,
    progress: Any = None,
) -> Ablation:
    """Train every arm on ``seeds`` (resuming what is stored) and summarise; write nothing but the storage.

    Args:
        frozen: The recipe.
        pm: Its plugin manager (``plugin_manager_for(frozen)``).
        data: Its data.
        seeds: The seeds every arm runs on.
        output: The ablation's folder (default storage: ``<output>/ablation.db``).
        add: Techniques the recipe does not use, to try at their documented default.
        storage: An Optuna storage URL instead of the default.
        evaluate_test: Also score the test split (reported apart; never decides a verdict).
        progress: An :class:`AblationProgress` that is also a pipeline ``Progress``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(output / 'ablation.db').resolve()}"
    arms_plan = plan(frozen, pm, list(add))
    results, name = run_arms(frozen, arms_plan.arms, pm, data, seeds=list(seeds), storage=url,
                             evaluate_test=evaluate_test, progress=progress)
    rows = summarise(frozen, results, list(seeds), evaluate_test)
    recommended, dropped = recommend(frozen, rows, arms_plan.arms, pm) if rows else (None, [])
    return Ablation(frozen, recipe_path, list(seeds), results, arms_plan.not_ablatable, rows, recommended, dropped,
                    url, name, evaluate_test)


# ---------------------------------------------------------------------------
# Writing it down
# ---------------------------------------------------------------------------


def _pm(value: float, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def _ci(ci: list[float]) -> str:
    low, high = ci
    return "—" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low:+.4f}, {high:+.4f}]"


def _p(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else f"{p:.3f}"


def _seconds(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.1f} s"


HEAD = ["technique", "switched", "Δ {metric} (with − without)", "95 % CI", "Wilcoxon p", "extra time / seed", "verdict"]


def table_rows(ablation: Ablation) -> list[list[str]]:
    rows = []
    for row in ablation.rows:
        name = row["technique"] + (" (added)" if row["kind"] == "added" else "")
        cells = [name, row["switched"], _pm(row["mean_difference"]), _ci(row["ci95"]), _p(row["wilcoxon_p"]),
                 _seconds(row["extra_seconds"]), row["verdict"]]
        if ablation.evaluate_test:
            test = row.get("test") or {}
            cells += [_pm(test.get("mean_difference", math.nan)), _ci(test.get("ci95", [math.nan, math.nan]))]
        rows.append(cells)
    return rows


def _head(ablation: Ablation) -> list[str]:
    head = [h.format(metric=ablation.frozen.metric) for h in HEAD]
    if ablation.evaluate_test:
        head += [f"test Δ {ablation.frozen.metric} (not used for the verdict)", "test 95 % CI"]
    return head


def rich_table(ablation: Ablation):
    from rich.table import Table

    f = ablation.frozen
    table = Table(title=f"ablation of trial {f.provenance.trial} of {f.provenance.study}: {f.metric} ({f.direction}) "
                        f"on seeds {', '.join(map(str, ablation.seeds))}",
                  caption=_caption(ablation))
    short = ["technique", "switched", f"Δ {f.metric}", "95 % CI", "Wilcoxon p", "time / seed", "verdict"]
    if ablation.evaluate_test:
        short += [f"test Δ {f.metric}", "test 95 % CI"]
    for i, column in enumerate(short):
        table.add_column(column, justify="left" if i in (0, 1, 6) else "right")
    style = {HELPS: "green", HURTS: "red"}
    for cells, row in zip(table_rows(ablation), ablation.rows):
        cells = list(cells)
        if row["verdict"] in style:
            cells[6] = f"[{style[row['verdict']]}]{cells[6]}[/]"
        table.add_row(*cells)
    return table


def _caption(ablation: Ablation) -> str:
    full = ablation.arms[0]
    values = [full.seeds[str(s)]["value"] for s in ablation.seeds if str(s) in full.seeds]
    parts = ["Δ: mean over seed pairs of (with the technique − without it); 95 % t interval; time: extra seconds per seed"
             + ("; test: scored on the test split, not used for the verdict" if ablation.evaluate_test else "")]
    if values:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        parts.append(f"full recipe: {statistics.fmean(values):.4f} ± {sd:.4f} over {len(values)} seeds")
    if ablation.not_ablatable:
        parts.append("not ablatable: " + "; ".join(f"{t} ({r})" for t, r in sorted(ablation.not_ablatable.items())))
    if not ablation.complete:
        parts.append("INCOMPLETE: some arms have not finished every seed; run the same command to finish them")
    return "\n".join(parts)


def markdown(ablation: Ablation) -> str:
    f = ablation.frozen
    head = _head(ablation)
    lines = [
        f"# Ablation of trial {f.provenance.trial} of `{f.provenance.study}`",
        "",
        f"Recipe: `{ablation.recipe_path}`. Metric: validation {f.metric} ({f.direction}). "
        f"Seeds: {', '.join(map(str, ablation.seeds))}; every arm trains on each, so differences are paired "
        "(same seed: same initialisation and data order).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i in (0, 1, 6) else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table_rows(ablation)]
    if not ablation.rows:
        lines.append("| (the recipe uses no technique that can be switched off) |" + " |" * (len(head) - 1))
    lines += ["", "Δ is the mean over seed pairs of (with the technique − without it); the interval is the 95 % t "
              f"interval over the {len(ablation.seeds)} pairs. Verdict: *helps* / *hurts* when the interval excludes "
              "zero, else *no evidence at this many seeds*. The Wilcoxon signed-rank p (two-sided) cannot go below "
              f"{2 / 2 ** len(ablation.seeds):.4g} with {len(ablation.seeds)} seeds. Extra time: mean wall-time "
              "difference per seed (cached stages make a repeated arm cheaper).", ""]
    lines.append("## Per seed")
    lines.append("")
    lines.append("| arm | " + " | ".join(f"seed {s}" for s in ablation.seeds) + " | mean | time / seed |")
    lines.append("|---|" + "---:|" * (len(ablation.seeds) + 2))
    for result in ablation.arms:
        cells = [f"{result.seeds[str(s)]['value']:.4f}" if str(s) in result.seeds else "—" for s in ablation.seeds]
        have = [result.seeds[str(s)] for s in ablation.seeds if str(s) in result.seeds]
        mean = f"{statistics.fmean(r['value'] for r in have):.4f}" if have else "—"
        secs = f"{statistics.fmean(r['seconds'] for r in have):.1f} s" if have else "—"
        lines.append(f"| {result.arm.name} | " + " | ".join(cells) + f" | {mean} | {secs} |")
    lines.append("")
    if ablation.not_ablatable:
        lines += ["## Not ablatable", ""]
        lines += [f"- `{t}`: {r}" for t, r in sorted(ablation.not_ablatable.items())]
        lines.append("")
    if ablation.recommended is not None:
        lines += ["## Recommended recipe", ""]
        if ablation.dropped:
            lines.append(f"`recommended.yaml`: the recipe without {', '.join(f'`{d}`' for d in ablation.dropped)} "
                         "(no evidence that they help at this many seeds). The combination itself was not trained: "
                         "`autobert train recommended.yaml --seeds ...` checks it.")
        else:
            lines.append("`recommended.yaml`: the full recipe; every technique it uses showed evidence of helping.")
        lines.append("")
    lines += ["![forest plot](forest.png)", ""]
    return "\n".join(lines)


def forest_plot(ablation: Ablation) -> bytes | None:
    """Difference ± 95 % CI per technique, as PNG bytes (None without rows)."""
    if not ablation.rows:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = ablation.rows
    colour = {HELPS: "tab:green", HURTS: "tab:red", NO_EVIDENCE: "tab:gray"}
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.6))
    for i, row in enumerate(reversed(rows)):
        low, high = row["ci95"]
        mean = row["mean_difference"]
        if math.isfinite(low) and math.isfinite(high):
            ax.plot([low, high], [i, i], color=colour[row["verdict"]], linewidth=2)
        ax.plot([mean], [i], "o", color=colour[row["verdict"]])
        ax.scatter(row["differences"], [i] * len(row["differences"]), s=12, color="black", alpha=0.4, zorder=3)
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['technique']}{' (added)' if r['kind'] == 'added' else ''}\n{r['verdict']}"
                        for r in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"Δ validation {ablation.frozen.metric}, with − without (dots: seed pairs; bar: 95 % CI)")
    ax.set_title(f"Ablation of trial {ablation.frozen.provenance.trial} of {ablation.frozen.provenance.study}, "
                 f"{len(ablation.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(ablation: Ablation, output: Path) -> dict[str, Path]:
    """Write ``ablation.json``, ``ablation.md``, ``forest.png`` and ``recommended.yaml`` into ``output``."""
    output = Path(output)
    written = {}
    if ablation.recommended is not None:
        written["recommended"] = output / "recommended.yaml"
        raw = relocate(ablation.recommended, output)
        raw["provenance"].setdefault("value", None)  # not trained in the search (dropped as None by the dump)
        write_atomic(written["recommended"], dump_yaml(raw))
    png = forest_plot(ablation)
    if png is not None:
        written["forest"] = output / "forest.png"
        written["forest"].write_bytes(png)
    written["json"] = output / "ablation.json"
    write_atomic(written["json"], json.dumps(_finite(ablation.to_json()), indent=2, default=_json_default) + "\n")
    written["markdown"] = output / "ablation.md"
    write_atomic(written["markdown"], markdown(ablation))
    return written


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no NaN; one seed gives no interval)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def find_ablation(folder: Path, study: str, trial: int, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest ``ablation.json`` under ``folder`` (one level down) for this study's trial and recipe."""
    candidates = sorted(Path(folder).glob("*/ablation.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if found.get("study") == study and found.get("trial") == trial and found.get("params") == dict(params):
            found["folder"] = str(path.parent)
            return found
    return None


__all__ = ["run_ablation", "write_outputs", "plan", "paired_summary", "declared_ablations", "changed_recipe",
           "rich_table", "markdown", "find_ablation", "default_output", "Ablation"]
