"""Technique settings: fixed, never-searched values a technique reads from the study file.

Parameters are what the search samples (``<technique>.<parameter>``); settings
are what the user tells a technique once: a corpus path, a vector file, a pair
of translation models. A technique declares them with
:func:`autobert.hookspecs.autobert_settings`; the study file sets them in the
technique's section of ``techniques:``, next to its parameter overrides::

    techniques:
      further_pretraining:
        stages: [none, domain+task]     # a parameter: searched
        domain_corpus: data/movies.txt  # a setting: fixed

Settings reach hooks as ``run.settings["further_pretraining.domain_corpus"]``,
are never sampled, and are copied into the frozen config, so ``autobert train``
sees the same values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autobert.errors import PluginError

if TYPE_CHECKING:
    from autobert.config.schema import StudyConfig
    from autobert.run.plugin_manager import PluginManager


@dataclass(frozen=True)
class Setting:
    """One declared setting.

    Attributes:
        default: The value when the study file does not set it.
        help: One line for ``autobert plugins`` and error messages.
        path: The value is a file or folder; a relative path is resolved
            against the study file's folder, and a frozen config exported
            elsewhere keeps pointing at the same file.
    """

    default: Any = None
    help: str = ""
    path: bool = False


def declared_settings(pm: PluginManager) -> dict[str, Setting]:
    """Every enabled technique's settings, keyed by full name (``technique.setting``).

    Raises:
        PluginError: a technique declares a setting outside its own namespace.
    """
    found: dict[str, Setting] = {}
    for impl in pm.hook.autobert_settings.get_hookimpls():
        for name, setting in (impl.function() or {}).items():
            technique, _, short = name.partition(".")
            if technique != impl.plugin_name or not short:
                raise PluginError(
                    f"technique {impl.plugin_name!r} declares the setting {name!r}; name its settings "
                    f"'{impl.plugin_name}.<setting>'"
                )
            found[name] = setting if isinstance(setting, Setting) else Setting(default=setting)
    return found


def resolve_settings(study: StudyConfig, declared: dict[str, Setting]) -> dict[str, Any]:
    """The value of every declared setting for ``study``: its study-file value or the default.

    Relative paths of ``path`` settings come back absolute (resolved against the study's folder).
    """
    overrides = study.overrides
    values: dict[str, Any] = {}
    for name, setting in declared.items():
        value = overrides.get(name, setting.default)
        if setting.path and isinstance(value, (str, os.PathLike)):
            value = str(study.resolve_path(value))
        values[name] = value
    return values


def relocated_settings(study: StudyConfig, declared: dict[str, Setting], new_dir: Path) -> dict[str, Any]:
    """The study file's own setting values, with relative paths rewritten to be valid from ``new_dir``."""
    new_dir = Path(new_dir).resolve()
    moved: dict[str, Any] = {}
    for name, value in study.overrides.items():
        setting = declared.get(name)
        if setting is None:
            continue
        if setting.path and isinstance(value, str) and not Path(os.path.expanduser(value)).is_absolute():
            value = os.path.relpath(study.resolve_path(value), new_dir)
        moved[name] = value
    return moved
