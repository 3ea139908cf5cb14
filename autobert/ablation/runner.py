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
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autobert.ablation.plan import Arm, plan
from autobert.ablation.stats import ArmResult, recommend, summarise
from autobert.config.schema import FrozenConfig
from autobert.errors import AutobertError
from autobert.run.data import TaskData
from autobert.run.pipeline import run_seeds
from autobert.run.plugin_manager import PluginManager
from autobert.stage_cache import cache_key
from autobert.store import record
from autobert.store.record import TrialRecord
from autobert.store.storage import SQLiteWorkerLock, make_storage, storage_kind, storage_problem


# ---------------------------------------------------------------------------
# Running the arms
# ---------------------------------------------------------------------------


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
    try:
        return optuna.create_study(study_name=study_name(frozen), storage=make_storage(frozen, url),
                                   direction=frozen.direction, load_if_exists=True)
    except Exception as exc:  # noqa: BLE001  (the storage's own errors, said for people)

        raise AutobertError(storage_problem(url, exc)) from None


def _stored_seeds(opened: optuna.Study, key: str, want_test: bool) -> dict[str, dict[str, Any]]:
    """Every stored seed result of the recipe ``key``, from finished and from stopped trials."""
    seeds: dict[str, dict[str, Any]] = {}
    for trial in opened.get_trials(deepcopy=False):
        stored = TrialRecord.from_trial(trial)
        if stored.arm_key != key:
            continue
        for seed, result in (stored.seed_results or {}).items():
            if want_test and not result.get("test"):
                continue
            seeds.setdefault(seed, result)
    return seeds


def _fail_leftovers(opened: optuna.Study, url: str) -> Any:
    """Take SQLite's one-worker lock and fail trials a killed ablation left RUNNING; elsewhere, stale ones."""
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
    return any(TrialRecord.from_trial(t).arm_key == key
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
            record.store(trial, arm=arm.name, arm_key=arm.key, technique=arm.technique, changes=arm.changes,
                         arm_params=arm.params, seeds=seeds)
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
                        record.store(trial, seed_results=stored)
                        result.seeds[str(seed)] = stored[str(seed)]
                        result.ran.append(seed)
                        done += 1
                        if progress is not None:
                            progress.arm_seed_finished(arm.name, seed, run.value, run.seconds)
            except BaseException as exc:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                record.store(trial, fail_reason=reason[:2000])
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


__all__ = ["Ablation", "AblationProgress", "default_output", "run_ablation", "run_arms", "study_name"]
