"""What techniques declare about themselves beyond their hooks' work: how to switch them off (``autobert_ablation``)
and what makes them cheaper (``autobert_cost_knobs``).

Off values are read by the planner (a cheaper variant), the portfolio (which techniques a recipe uses), the warm
start and ``autobert ablate``; a technique answers through :func:`~autobert.hookspecs.autobert_ablation`. Cost knobs
are read by the planner (what a cheaper variant lowers) and the cost model (what the evaluation's count scales
with); a technique answers through :func:`~autobert.hookspecs.autobert_cost_knobs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from autobert.errors import PluginError

DECLARATION_KEYS = {"off", "on", "reason"}
KNOB_KEYS = {"steps", "passes"}
#: The ``steps`` of an integer knob lowered one at a time, down to the lowest value the study's space allows.
DOWN = "down"


@dataclass(frozen=True)
class Declaration:
    """One technique's answer to ``autobert_ablation``: its off values, its default, or why it has none."""

    technique: str
    off: dict[str, Any] | None = None
    on: dict[str, Any] | None = None
    reason: str = ""


def declared_ablations(pm: Any) -> dict[str, Declaration]:
    """Every enabled technique's declaration, keyed by technique; one without the hook gets a reason.

    Raises:
        PluginError: a declaration has unknown keys, or off values outside the technique's namespace.
    """
    found: dict[str, Declaration] = {}
    for impl in pm.hook.autobert_ablation.get_hookimpls():
        name = impl.plugin_name
        answer = impl.function() or {}
        where = f"technique {name!r} (its autobert_ablation)"
        if not isinstance(answer, Mapping) or set(answer) - DECLARATION_KEYS:
            raise PluginError(f"{where} returned {answer!r}; return {{'off': {{...}}, 'on': {{...}}}} or "
                              "{'reason': 'why it cannot be switched off'}")
        off, on = answer.get("off"), answer.get("on")
        for key in off or {}:
            if key.split(".", 1)[0] != name:
                raise PluginError(f"{where} switches off {key!r}; off values must be the technique's own "
                                  f"parameters ('{name}.<parameter>')")
        reason = answer.get("reason") or ("" if off else "declares no off value")
        found[name] = Declaration(name, dict(off) if off else None, dict(on) if on else None, reason)
    for name in pm.techniques:
        found.setdefault(name, Declaration(name, reason="declares no off value (no autobert_ablation hook)"))
    return found


@dataclass(frozen=True)
class CostKnob:
    """One parameter a technique declares through ``autobert_cost_knobs``: the steps a cheaper variant tries."""

    technique: str
    parameter: str
    steps: str | tuple[Any, ...]  # DOWN, or the values to try, dearest first
    passes: bool = False  # counts passes over the training data: the evaluation's count scales with it

    def cheaper(self, current: Any, spec: Any) -> list[Any]:
        """The values a cheaper variant tries after ``current``, in order, that the effective ``spec`` allows.

        ``spec`` is the parameter's effective space (``None``: not searched, nothing to lower).
        """
        if spec is None:
            return []
        if self.steps == DOWN:
            if spec.kind != "int":
                return []
            return list(range(int(current) - 1, spec.low - 1, -1))
        if current in self.steps:
            after = list(self.steps[self.steps.index(current) + 1:])
        elif _is_number(current):
            after = [value for value in self.steps if _is_number(value) and value < current]
        else:
            after = []  # a choice the list does not rank: no step is known to be cheaper
        if spec.kind == "categorical":
            return [value for value in after if value in spec.choices]
        return [value for value in after if _is_number(value) and spec.low <= value <= spec.high]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def declared_cost_knobs(pm: Any) -> dict[str, list[CostKnob]]:
    """Every enabled technique's cost knobs, keyed by technique, each technique's in its declared order.

    Raises:
        PluginError: a knob outside the technique's namespace, of another shape, or a second technique's knob
            counting passes over the data.
    """
    found: dict[str, list[CostKnob]] = {}
    for impl in pm.hook.autobert_cost_knobs.get_hookimpls():
        name = impl.plugin_name
        answer = impl.function() or {}
        where = f"technique {name!r} (its autobert_cost_knobs)"
        if not isinstance(answer, Mapping):
            raise PluginError(f"{where} returned {answer!r}; return {{'{name}.<parameter>': {{'steps': ...}}}}")
        knobs = []
        for parameter, knob in answer.items():
            if not isinstance(parameter, str) or parameter.split(".", 1)[0] != name:
                raise PluginError(f"{where} declares {parameter!r}; cost knobs must be the technique's own "
                                  f"parameters ('{name}.<parameter>')")
            knobs.append(_knob(name, parameter, knob, where))
        found[name] = knobs
    counting = [knob for knobs in found.values() for knob in knobs if knob.passes]
    if len(counting) > 1:
        named = " and ".join(f"{knob.parameter!r} ({knob.technique})" for knob in counting)
        raise PluginError(f"{named} both declare that they count passes over the training data; only one enabled "
                          "technique may (disable one of them, or declare 'passes' on one knob only)")
    return found


def _knob(technique: str, parameter: str, knob: Any, where: str) -> CostKnob:
    if knob == DOWN or isinstance(knob, (list, tuple)):
        knob = {"steps": knob}
    shape = (f"{where} declares {parameter!r} as {knob!r}; give {{'steps': 'down'}} (an integer, one less at a "
             "time) or {'steps': [values, dearest first]}, and 'passes': True where it counts passes over the data")
    if not isinstance(knob, Mapping) or set(knob) - KNOB_KEYS or "steps" not in knob:
        raise PluginError(shape)
    steps, passes = knob["steps"], knob.get("passes", False)
    if not (steps == DOWN or (isinstance(steps, (list, tuple)) and steps)) or not isinstance(passes, bool):
        raise PluginError(shape)
    return CostKnob(technique, parameter, steps if steps == DOWN else tuple(steps), passes)


def passes_parameter(pm: Any) -> str | None:
    """The parameter that counts passes over the training data (its knob says ``passes``), or ``None``."""
    return next((knob.parameter for knobs in declared_cost_knobs(pm).values() for knob in knobs if knob.passes), None)


def off_values(pm: Any) -> dict[str, dict[str, Any]]:
    """``{technique: its off values}`` of every enabled technique that declares them."""
    return {name: d.off for name, d in declared_ablations(pm).items() if d.off}


def uses(params: Mapping[str, Any], declaration: Declaration) -> bool:
    """Whether a recipe uses the technique: one of its off parameters is drawn, with another value."""
    return any(key in params and params[key] != value for key, value in (declaration.off or {}).items())


__all__ = ["CostKnob", "Declaration", "declared_ablations", "declared_cost_knobs", "off_values", "passes_parameter",
           "uses"]
