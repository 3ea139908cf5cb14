"""What techniques declare about themselves beyond their hooks' work: how to switch them off (``autobert_ablation``).

Read by the planner (a cheaper variant), the portfolio (which techniques a recipe uses), the warm start and
``autobert ablate``; a technique answers through :func:`~autobert.hookspecs.autobert_ablation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from autobert.errors import PluginError

DECLARATION_KEYS = {"off", "on", "reason"}


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


def off_values(pm: Any) -> dict[str, dict[str, Any]]:
    """``{technique: its off values}`` of every enabled technique that declares them."""
    return {name: d.off for name, d in declared_ablations(pm).items() if d.off}


def uses(params: Mapping[str, Any], declaration: Declaration) -> bool:
    """Whether a recipe uses the technique: one of its off parameters is drawn, with another value."""
    return any(key in params and params[key] != value for key, value in (declaration.off or {}).items())


__all__ = ["Declaration", "declared_ablations", "off_values", "uses"]
