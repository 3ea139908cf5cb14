"""Ablation arms: the frozen recipe with one technique switched off (or added) each.

Each technique declares its off value and its default through the
:func:`~autobert.hookspecs.autobert_ablation` hook (read by :mod:`autobert.strategy.declarations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import optuna

from autobert.config.schema import FrozenConfig
from autobert.config.space import format_value
from autobert.errors import AutobertError, ConfigError
from autobert.run.pipeline import draw_params
from autobert.run.plugin_manager import PluginManager
from autobert.stage_cache import cache_key
from autobert.strategy.declarations import Declaration, declared_ablations, uses
from autobert.study.validation import rehashed

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
            return rehashed(config, pm)
        candidate = drawn
    return rehashed(_with_params(frozen, candidate, frozen.params), pm)


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


def describe(changes: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """``llrd.decay 0.978 → 1.0`` for each parameter a change sets."""
    return ", ".join(f"{name} {format_value(params[name])} → {format_value(value)}" if name in params
                     else f"{name} = {format_value(value)}"
                     for name, value in changes.items())


__all__ = ["FULL", "Arm", "Plan", "changed_recipe", "describe", "plan"]
