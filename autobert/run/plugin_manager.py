"""The plugin manager: default implementations, built-in and third-party techniques.

Techniques, built-in or not, arrive through the ``autobert.techniques``
entry-point group; the entry point's name is the technique's name (the
namespace of its parameters and its key in the study file's ``techniques:``).
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pluggy

from autobert import hookspecs
from autobert.run import defaults
from autobert.errors import PluginError
from autobert.config.space import explore

if TYPE_CHECKING:
    from autobert.config.space import EffectiveSpace

ENTRY_POINT_GROUP = "autobert.techniques"
DEFAULTS_NAME = "autobert.run.defaults"


@dataclass(frozen=True)
class Technique:
    """A loaded technique: where it came from, for listings and provenance."""

    name: str
    module: str
    distribution: str
    version: str

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}".strip()


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows which techniques are loaded."""

    def __init__(self) -> None:
        super().__init__("autobert")
        self.add_hookspecs(hookspecs)
        self.techniques: dict[str, Technique] = {}

    def register_technique(self, plugin: object, technique: Technique) -> None:
        """Register ``plugin`` as the technique ``technique.name``; check its hooks."""
        where = f"technique {technique.name!r} ({technique.module}, from {technique.source})"
        if technique.name in self.techniques:
            other = self.techniques[technique.name]
            raise PluginError(
                f"{where} has the same name as {other.module} from {other.source}; "
                f"uninstall one of them or disable it with --disable {technique.name}"
            )
        try:
            self.register(plugin, name=technique.name)
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(f"{where} does not match the autobert hook contract: {detail}") from exc
        unknown = [c.name for c in self.get_hookcallers(plugin) or [] if c.spec is None]
        if unknown:
            self.unregister(plugin)
            raise PluginError(
                f"{where} implements unknown hook(s) {', '.join(sorted(unknown))}; "
                "see `autobert/hookspecs.py` for the hook names"
            )
        self.techniques[technique.name] = technique

    def subset(self, names: Iterable[str]) -> PluginManager:
        """A plugin manager with the defaults and only the techniques ``names``, the same plugin objects.

        Raises:
            PluginError: a name is not a technique of this manager.
        """
        wanted = set(names)
        missing = wanted - set(self.techniques)
        if missing:
            raise PluginError(
                f"technique(s) {', '.join(sorted(missing))} do not run in this trial (it runs "
                f"{', '.join(self.techniques) or 'none'}); enable them in the study file"
            )
        pm = PluginManager()
        defaults_plugin = self.get_plugin(DEFAULTS_NAME)
        if defaults_plugin is not None:
            pm.register(defaults_plugin, name=DEFAULTS_NAME)
        for name, technique in self.techniques.items():  # registration order, as here
            if name in wanted:
                pm.register_technique(self.get_plugin(name), technique)
        return pm

    def effective_space(self, overrides: Mapping[str, Any] | None = None) -> EffectiveSpace:
        """The techniques' search space after ``overrides`` (a study's ``overrides``), explored once.

        Every later call with the same overrides (and the same plugins) answers
        the same :class:`autobert.config.space.EffectiveSpace` without calling
        ``autobert_search_space`` again: a command explores the space once,
        however many of its steps (validation, the stored-space check, the
        planner) read it.
        """
        key = (json.dumps(dict(overrides or {}), sort_keys=True, default=str),
               tuple(name for name, _ in self.list_name_plugin()))
        memo = self.__dict__.setdefault("_effective_spaces", {})
        if key not in memo:
            memo[key] = explore(self.hook.autobert_search_space, self.techniques, overrides, hooks=self.hook)
        return memo[key]

def _entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    # Sorted, so that hook order does not depend on installation order.
    return sorted(eps, key=lambda ep: ep.name)


def available_technique_names() -> list[str]:
    """Names of every installed technique, without importing any of them."""
    return sorted({ep.name for ep in _entry_points()})


def installed_techniques() -> dict[str, str]:
    """``{name: "distribution version"}`` of every installed technique, without importing any (for replay's checks)."""
    found = {}
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        found[ep.name] = f"{dist} {ep.dist.version if ep.dist is not None else ''}".strip()
    return found


def get_plugin_manager(
    disable: Iterable[str] = (), only: Iterable[str] | None = None
) -> PluginManager:
    """Build a plugin manager with the defaults and the installed techniques.

    Args:
        disable: Technique names not to load at all (a broken plugin can be
            disabled this way).
        only: If given, load only these techniques (used to replay a frozen
            config with exactly the techniques it was found with).

    Raises:
        PluginError: a technique fails to import, has a bad hook, or a name in
            ``only`` is not installed.
    """
    disabled = set(disable)
    wanted = None if only is None else set(only)
    pm = PluginManager()
    pm.register(defaults, name=DEFAULTS_NAME)
    found = set()
    for ep in _entry_points():
        found.add(ep.name)
        if ep.name in disabled or (wanted is not None and ep.name not in wanted):
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        version = ep.dist.version if ep.dist is not None else ""
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"technique {ep.name!r} (entry point {ep.name} = {ep.value} in group "
                f"{ENTRY_POINT_GROUP}, from {f'{dist} {version}'.strip()}) failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or uninstall {dist}, or run with "
                f"--disable {ep.name}"
            ) from exc
        pm.register_technique(plugin, Technique(ep.name, ep.value, dist, version))
    if wanted is not None and wanted - found:
        missing = ", ".join(sorted(wanted - found))
        raise PluginError(
            f"technique(s) {missing} are not installed (installed: "
            f"{', '.join(sorted(found)) or 'none'}); install the package that provides them"
        )
    return pm
