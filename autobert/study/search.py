"""The Optuna study: validation, storage, sampler, pruner, resume, export."""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from autobert.config.schema import FrozenConfig, StudyConfig, relocate, write_atomic
from autobert.run.data import TaskData
from autobert.run.device import free_accelerator_memory, is_out_of_memory
from autobert.errors import AutobertError, ConfigError, PluginError, TrialFailed
from autobert.run import clock
from autobert.strategy import warm_start
from autobert.run.pipeline import Progress, TrialResult, batch_parameters, draw_params, run_seeds
from autobert.run.aggregate import mean_std
from autobert.strategy.planner import Planner, finalists, search_trials, winner
from autobert.run.plugin_manager import PluginManager, get_plugin_manager
from autobert.config.settings import declared_settings, relocated_settings
from autobert.store import artifacts, record
from autobert.store.record import StudyRecord, TrialRecord
from autobert.store.storage import (SQLiteWorkerLock, make_storage, recover_dead_trials, shown, storage_kind,
                                    storage_problem)
from autobert.study.combine import combination_for, describe
from autobert.stage_cache import cache_key
from autobert.study.validation import changed_space, combination_contract, provenance_of, stored_definitions
from autobert.strategy.pruners import ScheduleFractionPruner


# ---------------------------------------------------------------------------
# The plugins a study runs with
# ---------------------------------------------------------------------------


def plugin_manager_for(study: StudyConfig, disable: list[str] = ()) -> PluginManager:
    """The plugin manager a study runs with: a frozen config gets exactly its own techniques."""
    if isinstance(study, FrozenConfig):
        try:
            return get_plugin_manager(only=study.provenance.plugins)
        except PluginError as exc:
            recorded = ", ".join(f"{name} from {source}" for name, source in study.provenance.plugins.items())
            raise PluginError(f"{exc}. This recipe was found with: {recorded}") from None
    return get_plugin_manager(disable=[*study.disable, *disable])


# ---------------------------------------------------------------------------
# The Optuna study
# ---------------------------------------------------------------------------


def worker_name() -> str:
    """``host:pid``, recorded on every trial (user attribute ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def make_sampler(study: StudyConfig, n_existing: int = 0, worker: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler. A resumed study offsets the seed by its trial count,
    so it goes on exploring instead of replaying the first run's draws; a
    ``worker`` id (its process id) is mixed in too, so that workers starting
    together on one study draw different recipes."""
    cfg = study.sampler
    seed = None if cfg.seed is None else cfg.seed + n_existing
    if seed is not None and worker is not None:
        import numpy as np

        seed = int(np.random.SeedSequence([seed, worker]).generate_state(1)[0])
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kwargs = {"seed": seed}
    if cfg.n_startup_trials is not None:
        kwargs["n_startup_trials"] = cfg.n_startup_trials
    return optuna.samplers.TPESampler(**kwargs)


def make_pruner(study: StudyConfig) -> optuna.pruners.BasePruner:
    cfg = study.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1 if cfg.n_startup_trials is None else cfg.n_startup_trials,
                                           n_warmup_steps=cfg.n_warmup_steps)
    if cfg.name == "fraction":
        return ScheduleFractionPruner(min_fraction=cfg.min_fraction, percentile=cfg.percentile,
                                      n_startup_trials=3 if cfg.n_startup_trials is None else cfg.n_startup_trials)
    if cfg.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if cfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if cfg.name == "wilcoxon":
        # Steps are seed indices: each trial's value on seed i is paired with the best trial's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(p_threshold=cfg.p_threshold, n_startup_steps=cfg.n_startup_steps)
    return optuna.pruners.NopPruner()


def open_study(study: StudyConfig, storage: str | None = None) -> optuna.Study:
    """Create the study in its storage, or load it to resume.

    Safe for workers starting together: the storage's schema and the study are
    created by whichever comes first, the others load them.
    """
    url = storage or study.storage_url
    backend = make_storage(study, storage)
    opened = None
    for attempt in range(5):
        try:
            opened = optuna.create_study(
                study_name=study.name, storage=backend, sampler=make_sampler(study), pruner=make_pruner(study),
                direction=study.direction, load_if_exists=True,
            )
            break
        except (ValueError, ImportError) as exc:
            raise ConfigError("storage", [f"storage {shown(url)!r}: {exc}"]) from None
        except Exception as exc:  # sqlalchemy's OperationalError and friends
            if attempt < 4 and ("IntegrityError" in type(exc).__name__ or isinstance(exc, optuna.exceptions.DuplicatedStudyError)):
                time.sleep(random.uniform(0.2, 1.0))  # another worker created it first: load it
                continue
            raise ConfigError("storage", [storage_problem(url, exc)]) from None
    n_existing = len(opened.get_trials(deepcopy=False))
    # Workers sharing a study start together: each gets its own sampler seed, or they draw the same recipes.
    opened.sampler = make_sampler(study, n_existing, os.getpid() if storage_kind(url) != "sqlite" else None)
    if opened.direction.name.lower() != study.direction:
        raise ConfigError(
            "study file",
            [f"direction: the stored study {study.name!r} is set to {opened.direction.name.lower()}, the study file "
             f"says {study.direction}; a study cannot change direction: restore `direction: "
             f"{opened.direction.name.lower()}` or use a new study name"],
        )
    stored_metric = StudyRecord.from_study(opened).metric
    if stored_metric is None:
        record.store_study(opened, metric=study.metric)
    if opened.metric_names != [study.metric] and stored_metric in (None, study.metric):
        # Optuna's own name for the objective: the dashboard and `optuna` CLI show it instead of "Objective 0".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            opened.set_metric_names([study.metric])
    elif stored_metric != study.metric:
        raise ConfigError(
            "study file",
            [f"metric: the stored study {study.name!r} optimises {stored_metric!r}, not {study.metric!r}; "
             f"restore `metric: {stored_metric}` or use a new study name to change the metric"],
        )
    return opened


class _StoredSpaceTrial:
    """A live trial that draws some parameters from their stored distributions (``--keep-stored-space``)."""

    def __init__(self, trial: optuna.Trial, stored: dict[str, Any]):
        self._trial, self._stored = trial, stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def suggest_float(self, name, low, high, *, log=False, step=None):
        old = self._stored.get(name)
        if isinstance(old, optuna.distributions.FloatDistribution):
            low, high, log, step = old.low, old.high, old.log, old.step
        return self._trial.suggest_float(name, low, high, log=log, step=step)

    def suggest_int(self, name, low, high, *, log=False, step=1):
        old = self._stored.get(name)
        if isinstance(old, optuna.distributions.IntDistribution):
            low, high, log, step = old.low, old.high, old.log, old.step
        return self._trial.suggest_int(name, low, high, log=log, step=step)

    def suggest_categorical(self, name, choices):
        old = self._stored.get(name)
        if isinstance(old, optuna.distributions.CategoricalDistribution):
            choices = list(old.choices)
        return self._trial.suggest_categorical(name, choices)


def make_objective(
    study: StudyConfig, pm: PluginManager, data: TaskData, progress: Progress | None = None,
    stored: dict[str, Any] | None = None, planner: Planner | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective: the recipe once per seed, aggregated; failures become a FAIL with a reason.

    ``stored`` (``{name: distribution}``) keeps those parameters' stored
    definitions over the study file's (``--keep-stored-space``).

    Every trial stores ``seed_values`` (``{"0": value, ...}``) in its user
    attributes. With several seeds, the value on seed i is reported at step i,
    so ``WilcoxonPruner`` can stop a recipe after its first seeds.

    With a ``planner`` (:mod:`autobert.strategy.planner`), every trial also stores its
    ``predicted_seconds`` (and ``predicted_work``, ``cost_terms``, ``runs``)
    before it starts; one the planner refuses is pruned at once with the
    reason in ``not_started``; one the clock stops is pruned with the reason
    in ``stopped_reason``. A finalist run (user attributes ``finalist_of`` and
    ``finalist_seed``) trains its recipe once on its fresh seed, unpruned.
    """
    seeds = study.run_seeds

    def after_seed(trial: optuna.Trial, index: int, seed: int, results: list[TrialResult]) -> None:
        values = [r.value for r in results]
        record.store(trial, seed_values={str(s): v for s, v in zip(seeds, values)})
        trial.report(values[-1], index)
        if index + 1 < len(seeds) and trial.should_prune():
            mean, _ = mean_std(values)
            raise optuna.TrialPruned(
                f"pruned after seed {seed} ({index + 1} of {len(seeds)} seeds) with mean {study.metric}={mean:.4f}"
            )

    def objective(trial: optuna.Trial) -> float:
        live = trial  # Optuna's own trial: the artifact store names its files on it
        if stored:
            trial = _StoredSpaceTrial(trial, stored)
        record.store(trial, worker=worker_name())
        queued = TrialRecord.from_trial(trial)  # what the trial was queued with (a finalist, a variant, a warm start)
        finalist_seed = queued.finalist_seed
        run_seeds_ = [int(finalist_seed)] if finalist_seed is not None else seeds
        record.store(trial, seed=run_seeds_[0], seeds=run_seeds_)
        prediction = None
        try:
            if planner is not None:
                params = draw_params(study, trial, pm)
                prediction = planner.predict(params, len(run_seeds_))
                record.store(trial, predicted_seconds=round(prediction.seconds, 2),
                             predicted_work=round(prediction.work, 1),
                             cost_terms={k: round(v, 1) for k, v in prediction.terms.items() if v},
                             runs=len(run_seeds_))
                refusal = planner.refusal(prediction, finalist_seed is not None, queued.variant_of is not None,
                                          queued.is_warm_start)
                if refusal:
                    variant = None if finalist_seed is not None else planner.cheaper_variant(params, prediction)
                    if variant is not None:
                        # The cheaper variant runs next (any worker may take it): the sampler's choice, made affordable.
                        fitted, cheaper, changes = variant
                        cut = ", ".join(changes)
                        # A warm start is still the portfolio's recipe, cut to fit: say so.
                        record.enqueue(planner.opened, fitted, variant_of=trial.number,
                                       warm_start=f"{queued.warm_start} ({cut})" if queued.is_warm_start else None)
                        refusal += f"; its cheaper variant ({cut}: {cheaper.seconds:.0f}s) runs instead"
                    elif finalist_seed is None and planner.first_may_run(prediction):
                        refusal = None  # already at its cheapest, and the search needs a first finished trial
                    if refusal:
                        record.store(trial, not_started=refusal)
                        raise optuna.TrialPruned(f"not started: {refusal}")
                if finalist_seed is not None:
                    # A finalist replays its recipe unpruned: the trial itself only records the result.
                    trial = _Unpruned(trial)
        except KeyboardInterrupt:  # before the run's own handler below: the trial still says why it failed
            record.store(trial, fail_reason="interrupted (Ctrl-C)")
            raise
        start = time.perf_counter()
        keeper = _Keeper(study, data, live, finalist_seed is not None) if study.combine.kind != "none" else None
        result = None
        try:
            with clock.running(planner.clock(prediction, finalist_seed is not None) if planner else clock.Clock()):
                result = run_seeds(
                    study, trial, pm, data, seeds=run_seeds_, progress=progress,
                    after_seed=lambda index, seed, results: after_seed(trial, index, seed, results),
                    keep_model=keeper.keep_model if keeper else None, after_run=keeper.after_run if keeper else None,
                    average_checkpoints=study.combine.averages_checkpoints,
                )
        except clock.TrialStopped as exc:
            record.store(trial, stopped_reason=str(exc), pruned_reason=str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned as exc:
            record.store(trial, pruned_reason=str(exc))
            raise
        except (ConfigError, PluginError):
            raise  # a configuration problem ends the study: every trial would hit it
        except KeyboardInterrupt:
            record.store(trial, fail_reason="interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}"
            if is_out_of_memory(exc):
                # Training itself halves the batch first (pipeline.BatchFit), and its TrialFailed says what it tried.
                if not isinstance(exc, TrialFailed):
                    reason += (f"; the recipe ran out of memory: narrow {batch_parameters(trial.params)} "
                               "or lower max_length")
                free_accelerator_memory()
            record.store(trial, fail_reason=reason[:2000])
            raise TrialFailed(reason) from exc
        finally:
            record.store(trial, seconds=round(time.perf_counter() - start, 3))
            if keeper is not None and result is None:
                keeper.close()  # it did not finish: nothing of it is kept but the probabilities of runs that did
        record.store(trial, seed_values=result.seed_values, metrics=_mean_metrics([r.metrics for r in result.results]),
                     steps=result.first.steps)
        if keeper is not None:
            try:
                keeper.finish(result.value)
            finally:
                keeper.close()
        return result.value

    return objective


class _Keeper:
    """What one trial keeps for the combination step (autobert.study.combine): every run's validation
    probabilities, and the weights of the best runs.

    A finalist run always keeps its weights (the finalists are the best recipes, on fresh seeds); a search run
    keeps them when its value is among the best ``combine.keep_weights`` completed trials' so far, and a trial that
    drops out of those then loses its stored weights, so the store holds about ``keep_weights`` search models.
    """

    def __init__(self, study: StudyConfig, data: TaskData, trial: optuna.Trial, finalist: bool):
        self.study, self.trial, self.finalist = study, trial, finalist
        self.fingerprint = data.fingerprints.get("validation")
        self.store = artifacts.artifact_store(study)
        self.folder: Path | None = None

    def _ranked(self) -> list[optuna.trial.FrozenTrial]:
        maximize = self.study.direction == "maximize"
        done = [t for t in search_trials(self.trial.study) if t.value is not None]
        return sorted(done, key=lambda t: t.value, reverse=maximize)

    def keep_model(self, seed: int, value: float) -> Path | None:
        """Every run's model is saved to a temporary folder; :meth:`finish` keeps them once the trial's value is known."""
        if self.study.combine.weights_kept <= 0:
            return None
        self.folder = self.folder or Path(tempfile.mkdtemp(prefix="keep-", dir=self.study.study_dir))
        return self.folder / f"seed-{seed}"

    def after_run(self, seed: int, result: TrialResult) -> None:
        if result.probabilities is not None:
            averaged = result.averaged
            artifacts.save_probabilities(self.store, self.trial, seed, result.probabilities, self.fingerprint,
                                         averaged=None if averaged is None else averaged.probabilities,
                                         checkpoints=None if averaged is None else averaged.checkpoints)

    def finish(self, value: float) -> None:
        """Store the runs' weights when the trial is a finalist run or among the best ``keep_weights`` trials."""
        if self.folder is None:
            return
        ranked: list[optuna.trial.FrozenTrial] = []
        if not self.finalist:
            kept, ranked = self.study.combine.weights_kept, self._ranked()
            if len(ranked) >= kept:
                bar = ranked[kept - 1].value
                if (value <= bar) if self.study.direction == "maximize" else (value >= bar):
                    return
        for saved in sorted(self.folder.iterdir()):
            artifacts.save_weights(self.store, self.trial, int(saved.name.removeprefix("seed-")), saved)
        # The search trials no longer among the best `keep_weights` lose theirs: this one, not complete yet, takes
        # one of the places (a finalist run takes none).
        for trial in ranked[max(self.study.combine.weights_kept - 1, 0):]:
            if TrialRecord.from_trial(trial).weights:
                artifacts.drop_weights(self.store, trial)

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class _Unpruned:
    """A live trial whose reports never prune it (finalist runs)."""

    def __init__(self, trial: Any):
        self._trial = trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def report(self, value: float, step: int) -> None:
        self._trial.report(value, step)

    def should_prune(self) -> bool:
        return False


def _mean_metrics(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the seeds (just the metrics, with one seed)."""
    if len(per_seed) == 1:
        return per_seed[0]
    names = [n for n in per_seed[0] if all(isinstance(m.get(n), (int, float)) for m in per_seed)]
    return {n: mean_std([m[n] for m in per_seed])[0] for n in names}


def run_search(
    study: StudyConfig,
    pm: PluginManager,
    data: TaskData,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    progress: Progress | None = None,
    callbacks: list[Callable] = (),
    keep_stored_space: bool = False,
) -> optuna.Study:
    """Run ``n_trials`` more trials (or until ``timeout``); the study resumes where it was.

    ``keep_stored_space``: parameters whose choices or log scale the study
    file changed keep their stored definitions instead of being refused.

    Before any trial: on SQLite, take the one-worker lock and fail (and queue
    again) the trials a dead worker left RUNNING; everywhere, refuse a study
    file whose space the stored trials cannot continue with.

    With a ``timeout`` the search keeps it (:mod:`autobert.strategy.planner`): trials
    that do not fit the time left, or the cheap-first cap, are not started;
    a running trial stops at the deadline; the last ``finalists.share`` of
    the time re-runs the best recipes on fresh seeds. ``n_trials`` with a
    ``timeout`` stops at whichever comes first.

    Raises:
        ConfigError: the space changed incompatibly, or a trial hit a configuration problem.
        AutobertError: another worker holds the SQLite study.
    """
    url = storage or study.storage_url
    lock = SQLiteWorkerLock(url).acquire() if storage_kind(url) == "sqlite" else None
    try:
        opened = open_study(study, storage)
        problems = changed_space(study, pm, opened, keep_stored_space)
        if problems:
            raise ConfigError("study file", problems)
        stored = stored_definitions(study, pm, opened) if keep_stored_space else None
        if lock is not None and lock.held:
            recover_dead_trials(opened, study.heartbeat.retries, study.study_dir)
        warm_start.enqueue(study, opened, pm, lambda message: _say(progress, message))
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        planner = Planner(study, pm, data, opened, timeout, n_trials if timeout else None)
        planner.prior()  # the throughput probe, before the clock matters
        objective = make_objective(study, pm, data, progress, stored, planner)
        if timeout is None:
            opened.optimize(objective, n_trials=n_trials, catch=(TrialFailed,), callbacks=list(callbacks))
        else:
            _timed_search(opened, objective, planner, list(callbacks), progress)
        if study.combine.kind != "none":
            combination = combination_for(study, pm, data, opened, deadline=planner.deadline,
                                          say=lambda message: _say(progress, message))
            _say(progress, describe(combination, study.metric))
    finally:
        if lock is not None:
            lock.release()
    return opened


def _timed_search(opened: optuna.Study, objective: Callable, planner: Planner, callbacks: list[Callable],
                  progress: Progress | None) -> None:
    """The main phase until its deadline, then finalists on fresh seeds until the budget's end."""
    opened.optimize(objective, catch=(TrialFailed,), callbacks=[*callbacks, planner])
    _say(progress, f"search phase ended: {planner.stop_reason}"
         + (f" ({planner.returned_share})" if planner.returned_share else ""))
    if planner.next_finalist_run() is None and planner.stop_reason and "trial(s) run" not in planner.stop_reason:
        # Fewer than two recipes to compare: the finalists' share goes to the search instead.
        planner.give_share_to_search()
        planner.stop_reason = None
        opened.optimize(objective, catch=(TrialFailed,), callbacks=[*callbacks, planner])
    discard_queued(opened, "not started: the search phase ended first")
    while (pick := planner.next_finalist_run()) is not None:
        trial, seed = pick
        prediction = planner.predict(trial.params, 1)
        if prediction.seconds > planner.deadline - time.monotonic():
            _say(progress, f"finalists: no time for another run ({prediction.seconds:.0f}s predicted)")
            break
        record.enqueue(opened, trial.params, finalist_of=trial.number, finalist_seed=seed)
        opened.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks)


def discard_queued(opened: optuna.Study, reason: str) -> list[int]:
    """End the queued trials that are not finalist runs (warm-start recipes, cheaper variants) as not started.

    They belong to the search phase; left queued, Optuna would pop one before
    the finalists' own runs. Returns their numbers.
    """

    storage = opened._storage  # Optuna has no public call that ends a WAITING trial
    ended = []
    for t in opened.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if TrialRecord.from_trial(t).is_finalist:
            continue
        if not storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):  # dated, like any trial run
            continue  # another worker took it
        record.store_by_id(storage, t._trial_id, not_started=reason)
        storage.set_trial_state_values(t._trial_id, TrialState.PRUNED)
        ended.append(t.number)
    return ended


def _say(progress: Progress | None, message: str) -> None:
    console = getattr(getattr(progress, "progress", None), "console", None)
    if console is not None:
        console.print(f"[dim]{message}[/]")


def init_study(study: StudyConfig, pm: PluginManager, storage: str | None = None) -> optuna.Study:
    """Create the study and its storage's schema (or check a stored one) without running a trial.

    Run once before starting several workers, so they only ever load it.
    """
    opened = open_study(study, storage)
    problems = changed_space(study, pm, opened)
    if problems:
        raise ConfigError("study file", problems)
    warm_start.enqueue(study, opened, pm)  # here, once, rather than by whichever worker starts first
    return opened


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def best_trial(opened: optuna.Study) -> optuna.trial.FrozenTrial:
    """The recipe to export: the best finalist by its fresh-seed mean, else the best search trial."""
    best = winner(opened)
    if best is None:
        raise AutobertError(
            f"study {opened.study_name!r} has no completed trial yet; run `autobert search` "
            "(failed and pruned trials cannot be exported)"
        )
    return best


def frozen_config(study: StudyConfig, pm: PluginManager, data: TaskData, trial: optuna.trial.FrozenTrial, where: Path,
                  finalist_rows: list[dict[str, Any]] | None = None,
                  combination: dict[str, Any] | None = None) -> FrozenConfig:
    """The study with every parameter fixed to ``trial``'s values, plus provenance (and the finalists, if any ran,
    and the combination the search chose, which ``autobert train`` trains instead of the single recipe)."""
    raw = relocate(study, where)
    for key in ("storage", "heartbeat", "output_dir", "provenance"):
        raw.pop(key, None)
    if "cache_dir" not in raw and study.cache_path.is_dir():
        # `autobert train` reuses the search's cached stages (the same checkpoints, so the same metric).
        raw["cache_dir"] = os.path.relpath(study.cache_path, Path(where).resolve())
    techniques: dict[str, dict[str, Any]] = {name: {} for name in sorted(pm.techniques)}
    for name, value in sorted(trial.params.items()):
        technique, short = name.split(".", 1)
        techniques.setdefault(technique, {})[short] = value
    for name, value in relocated_settings(study, declared_settings(pm), where).items():
        technique, short = name.split(".", 1)
        techniques.setdefault(technique, {})[short] = value
    raw["techniques"] = techniques
    # What `precision: auto` resolved to where the trial ran (autobert.run.pipeline.run_seeds records it);
    # a trial without it ran before autobert had precisions, in fp32.
    stored = TrialRecord.from_trial(trial)
    raw["precision"] = stored.precision or "fp32"
    # Hashed as it replays: the study's keys, with the precision `auto` resolved to (paths are not hashed).
    raw["provenance"] = provenance_of(study.model_copy(update={"precision": raw["precision"]}), pm, data,
                                      trial.params, trial=trial.number, value=trial.value)
    seed_values = stored.seed_values or {}
    if len(seed_values) > 1:
        raw["provenance"]["seed_values"] = dict(seed_values)
    if finalist_rows:
        raw["provenance"]["finalists"] = finalist_rows
    if combination and combination.get("kind") not in (None, "none"):
        raw["provenance"]["combination"] = {k: combination[k] for k in ("kind", "variant", "checkpoints", "members",
                                                                         "value", "single", "holdout", "reason")
                                            if k in combination}
        raw["provenance"]["recipe"]["provenance.combination"] = (
            "sha256:" + cache_key(combination_contract(raw["provenance"]["combination"]), 8))
    return FrozenConfig.model_validate({**raw, "base_dir": Path(where).resolve()})


def export_best(study: StudyConfig, opened: optuna.Study, pm: PluginManager, data: TaskData, path: Path | None = None) -> Path:
    """Write the best trial's frozen config atomically (default ``<study dir>/best.yaml``)."""
    path = Path(path) if path else study.study_dir / "best.yaml"
    combination = combination_for(study, pm, data, opened)  # the stored one, or built again from the stored runs
    frozen = frozen_config(study, pm, data, best_trial(opened), path.parent, finalists(opened), combination)
    try:
        write_atomic(path, frozen.to_yaml())
    except OSError as exc:
        kept = f"the previous {path.name} is unchanged" if path.is_file() else f"no {path.name} was written"
        raise AutobertError(
            f"cannot write the best recipe to {path} ({exc.strerror or exc}); {kept}. The study itself is stored: "
            "free some space or choose a writable --export path, then run `autobert best STUDY.yaml --export PATH`"
        ) from None
    return path


def replay_trial(frozen: FrozenConfig) -> optuna.trial.FixedTrial:
    return optuna.trial.FixedTrial(frozen.params, number=frozen.provenance.trial)


__all__ = [
    "open_study", "init_study", "run_search", "export_best", "frozen_config", "replay_trial", "plugin_manager_for",
    "discard_queued", "make_objective", "make_sampler", "make_pruner", "best_trial",
]
