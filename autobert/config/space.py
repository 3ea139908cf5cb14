"""A namespaced search space over an Optuna trial, with study-file overrides.

Plugins declare their own default ranges; the study file may fix a value, narrow
a range or restrict choices, and the plugin never knows. The same code draws
from a live ``optuna.Trial`` during search and from an ``optuna.trial.FixedTrial``
when a frozen config is replayed, so a search trial and ``autobert train`` run
the very same pipeline.

What a technique may check against is the *effective space*: every parameter's
:class:`ParamSpec` after the study file's overrides (:class:`EffectiveSpace`,
explored once per command by :func:`explore`; ``autobert_validate_study``
receives it as ``space``, and a trial's own specs are ``run.space``). A technique
never reads the overrides themselves.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

from autobert.errors import ConfigError, PluginError
from autobert.config.settings import Setting

Scalar = bool | int | float | str | None
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's distribution: ``float``, ``int`` or ``categorical``."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] | None = None
    # The values that make sense at all, in interval notation ("[1, inf)", "(0, 1]"); a study-file override
    # outside it is refused even where the search range would never reach it. A log range implies "(0, inf)".
    valid: str | None = None
    # Choices that exist but that this study cannot offer, each with the reason and the fix (a categorical's
    # override naming one is refused with it): ((choice, "needs a domain corpus; set ..."), ...).
    unavailable: tuple[tuple[Scalar, str], ...] | None = None

    @property
    def technique(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def is_fixed(self) -> bool:
        if self.kind == "categorical":
            return len(self.choices or ()) == 1
        return self.low == self.high

    @property
    def lowest(self) -> Any:
        """The smallest value the parameter can take (a categorical's smallest choice)."""
        return min(self.choices) if self.kind == "categorical" else self.low

    @property
    def highest(self) -> Any:
        """The largest value the parameter can take (a categorical's largest choice)."""
        return max(self.choices) if self.kind == "categorical" else self.high

    def can_be(self, value: Any) -> bool:
        """Whether a trial may draw ``value``: one of the choices, or inside the range."""
        if self.kind == "categorical":
            return value in (self.choices or ())
        return _is_number(value) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.is_fixed:
            return f"= {self.choices[0]!r}" if self.kind == "categorical" else f"= {self.low!r}"
        if self.kind == "categorical":
            return "{" + ", ".join(repr(c) for c in self.choices) + "}"
        text = f"{self.kind} [{self.low:g}, {self.high:g}]"
        if self.log:
            text += " log"
        if self.step is not None and not (self.kind == "int" and self.step == 1):
            text += f" step {self.step:g}"
        return text

    @property
    def valid_range(self) -> str | None:
        """``valid``, or ``(0, inf)`` for a log-scaled range; ``None`` where any number makes sense."""
        if self.valid is not None:
            return self.valid
        return "(0, inf)" if self.log and self.kind != "categorical" else None

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies in the parameter's valid range."""
        if self.valid_range is None:
            return True
        lo_open, lo, hi, hi_open = parse_interval(self.valid_range)
        if not math.isfinite(value):
            return False
        return (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "choices" in d:
            d["choices"] = list(d["choices"])
        return d


def format_value(value: Any, digits: int | None = None) -> str:
    """A parameter's value (or a score) for people: a float to a few significant digits, anything else as ``str``.

    Without ``digits``, 4 significant digits, or 3 where the number is small
    or large enough to be written with an exponent; a model card, which a
    reader may copy a learning rate from, asks for more.

    >>> format_value(0.97834), format_value(0.0031234), format_value(2.5e-05, digits=6), format_value("mean")
    ('0.9783', '0.00312', '2.5e-05', 'mean')
    """
    if not isinstance(value, float):
        return str(value)
    if digits is None:
        digits = 3 if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else 4
    return f"{value:.{digits}g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_INTERVAL = re.compile(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*")


def parse_interval(text: str) -> tuple[bool, float, float, bool]:
    """``"(0, 1]"`` -> ``(low_open, low, high, high_open)``; ``-inf``/``inf`` for an open end.

    Raises:
        ValueError: ``text`` is not an interval.
    """
    found = _INTERVAL.fullmatch(text or "")
    if not found:
        raise ValueError(f"{text!r} is not an interval such as '[0, 1]', '(0, inf)' or '[1, inf)'")
    left, low, high, right = found.groups()
    return left == "(", float(low), float(high), right == ")"


def _check_valid(spec: ParamSpec, values: Iterable[Any], where: str, given: str) -> None:
    bad = [v for v in values if _is_number(v) and not spec.admits(v)]
    if bad:
        raise ValueError(
            f"{where}: {given} {bad[0]!r} is outside this parameter's valid range {spec.valid_range}"
            f" (its search range is {spec.describe()}); give a value in {spec.valid_range}"
        )


def apply_override(spec: ParamSpec, override: Any) -> ParamSpec:
    """Return ``spec`` as restricted by a study-file override.

    A scalar fixes the value, a list restricts the choices, a mapping with
    ``low``/``high``/``log``/``step`` replaces the range.

    Raises:
        ValueError: the override does not fit the parameter; the message says why.
    """
    if override is None:
        return spec
    where = f"techniques.{spec.technique}.{spec.short_name}"
    if isinstance(override, Mapping):
        if spec.kind == "categorical":
            raise ValueError(
                f"{where}: a range {{low, high}} does not fit a categorical parameter; "
                f"give one value or a list of choices from {spec.describe()}"
            )
        unknown = set(override) - RANGE_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown range key(s) {', '.join(sorted(unknown))}; "
                "use low, high, log, step"
            )
        low, high = override.get("low", spec.low), override.get("high", spec.high)
        log = bool(override.get("log", spec.log))
        step = override.get("step", None if log else spec.step)
        if not (_is_number(low) and _is_number(high)):
            raise ValueError(f"{where}: low and high must be numbers, got {low!r} and {high!r}; write two numbers")
        if spec.kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"{where}: an integer parameter needs integer low/high; give whole numbers")
        if low > high:
            raise ValueError(f"{where}: low ({low}) is greater than high ({high}); swap them")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0 (got {low}); set log: false or raise low")
        if log and step not in (None, 1):
            raise ValueError(f"{where}: log and step cannot be combined; drop one")
        _check_valid(spec, (low, high), where, "the range end")
        if spec.kind == "int":
            low, high, step = int(low), int(high), int(step or 1)
        return dataclasses.replace(spec, low=low, high=high, log=log, step=step, valid=spec.valid_range)
    values = list(override) if isinstance(override, (list, tuple)) else [override]
    if not values:
        raise ValueError(f"{where}: an empty list of choices; give at least one value")
    for value in values:
        if spec.kind == "categorical":
            why = dict(spec.unavailable or ()).get(value) if value not in spec.choices else None
            if why is not None:
                raise ValueError(f"{where}: {value!r} is not available in this study: {why}; "
                                 f"or choose from {spec.describe()}")
            if value not in spec.choices:
                raise ValueError(
                    f"{where}: {value!r} is not a choice of this parameter; "
                    f"choose from {spec.describe()}"
                )
        elif not _is_number(value):
            raise ValueError(f"{where}: {value!r} is not a number; give a number (this parameter is {spec.describe()})")
        elif spec.kind == "int" and not float(value).is_integer():
            raise ValueError(f"{where}: {value!r} is not an integer; give a whole number (this parameter is {spec.describe()})")
    if spec.kind != "categorical":
        _check_valid(spec, values, where, "the value")
    if spec.kind == "int":
        values = [int(v) for v in values]
    if len(values) == 1 and spec.kind != "categorical" and not isinstance(override, (list, tuple)):
        # A fixed number stays a (degenerate) range, so a later run of the same
        # study may fix another value without Optuna refusing the change.
        value = values[0] if spec.kind == "int" else float(values[0])
        return dataclasses.replace(spec, low=value, high=value, log=False, step=None, valid=spec.valid_range)
    return ParamSpec(spec.name, "categorical", choices=tuple(values))


class SearchSpace:
    """The object passed to ``autobert_search_space``.

    Args:
        trial: An ``optuna.Trial`` or ``optuna.trial.FixedTrial``.
        techniques: Names of the enabled techniques; a parameter must be
            namespaced by one of them.
        overrides: ``{"<technique>.<parameter>": override}`` from the study file.
        hooks: The plugin manager's hook relay (``pm.hook``), so that a
            technique offering an extension point of its own can ask the other
            plugins (``space.hooks.autobert_augmenters(settings=space.settings)``);
            ``None`` outside a plugin manager.
    """

    def __init__(self, trial: Any, techniques: Iterable[str], overrides: Mapping[str, Any] | None = None,
                 hooks: Any = None):
        self.trial = trial
        self.techniques = set(techniques)
        self.overrides = dict(overrides or {})
        self.hooks = hooks
        self.params: dict[str, Any] = {}
        #: The effective spec of every parameter drawn so far (after the study file's overrides).
        self.specs: dict[str, ParamSpec] = {}

    @property
    def configured(self) -> frozenset[str]:
        """The techniques the study file configures (a ``techniques.<name>`` section with a key).

        For a technique that is opt-in: it declares its parameters only where
        the study asks for it (``if "pet" not in space.configured: return``).
        """
        return frozenset(name.split(".", 1)[0] for name in self.overrides)

    @property
    def settings(self) -> dict[str, Any]:
        """Every enabled technique's settings (see ``autobert_settings``): the study file's value or the default.

        Paths are as written, not resolved. Lets a technique offer only what
        the study configured (back-translation without translation models is
        no choice). Empty outside a plugin manager.
        """
        if self.hooks is None:
            return {}

        values: dict[str, Any] = {}
        for impl in self.hooks.autobert_settings.get_hookimpls():
            for name, setting in (impl.function() or {}).items():
                values[name] = self.overrides.get(name, setting.default if isinstance(setting, Setting) else setting)
        return values

    # -- the plugin-facing API ---------------------------------------------

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None,
                      valid: str | None = None) -> float:
        """A float in ``[low, high]``; ``valid`` (e.g. ``"(0, 1]"``) is every value that makes sense, for overrides."""
        return self._suggest(ParamSpec(name, "float", low=low, high=high, log=log, step=step, valid=valid))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False, step: int = 1,
                    valid: str | None = None) -> int:
        """An integer in ``[low, high]``; ``valid`` (e.g. ``"[1, inf)"``) is every value that makes sense."""
        return self._suggest(ParamSpec(name, "int", low=low, high=high, log=log, step=step, valid=valid))

    def suggest_categorical(self, name: str, choices: Sequence[Scalar], *,
                            unavailable: Mapping[Scalar, str] | None = None) -> Scalar:
        """One of ``choices``; ``unavailable`` maps further choices this study cannot offer to the reason and fix,
        which a study-file override naming one is refused with."""
        return self._suggest(ParamSpec(name, "categorical", choices=tuple(choices),
                                       unavailable=tuple(unavailable.items()) if unavailable else None))

    # -- internals ---------------------------------------------------------

    def _check_name(self, name: str) -> None:
        technique, _, rest = name.partition(".")
        if not rest or technique not in self.techniques:
            raise PluginError(
                f"parameter {name!r} is not namespaced by a technique: name it "
                f"'<technique>.<parameter>' with one of {', '.join(sorted(self.techniques))}"
            )

    def _suggest(self, spec: ParamSpec) -> Any:
        self._check_name(spec.name)
        self._check_declared(spec)
        if spec.name in self.params:
            return self.params[spec.name]
        effective = self.resolve(spec)
        value = self._draw(effective)
        self.specs[spec.name] = effective
        self.params[spec.name] = value
        return value

    @staticmethod
    def _check_declared(spec: ParamSpec) -> None:
        if spec.valid_range is None or spec.kind == "categorical":
            return
        try:
            parse_interval(spec.valid_range)
        except ValueError as exc:
            raise PluginError(f"parameter {spec.name!r}: valid={exc}") from None
        if not (spec.admits(spec.low) and spec.admits(spec.high)):
            raise PluginError(f"parameter {spec.name!r}: its search range {spec.describe()} leaves its valid "
                              f"range {spec.valid_range}; fix one of them in the plugin")

    def resolve(self, spec: ParamSpec) -> ParamSpec:
        try:
            return apply_override(spec, self.overrides.get(spec.name))
        except ValueError as exc:
            raise ConfigError("study file", [str(exc)]) from exc

    def _draw(self, spec: ParamSpec) -> Any:
        try:
            return self._draw_from_trial(spec)
        except ValueError as exc:
            if "dynamic value space" not in str(exc):
                raise

            raise ConfigError("study file", [
                f"techniques.{spec.technique}.{spec.short_name}: the stored study searched other choices "
                f"for this parameter, and Optuna cannot change a categorical parameter's choices within "
                f"one study; keep the stored choices or start a new study (change `name`)"
            ]) from None

    def _draw_from_trial(self, spec: ParamSpec) -> Any:
        if spec.kind == "float":
            return self.trial.suggest_float(spec.name, spec.low, spec.high, log=spec.log, step=spec.step)
        if spec.kind == "int":
            return self.trial.suggest_int(spec.name, spec.low, spec.high, log=spec.log, step=spec.step or 1)
        return self.trial.suggest_categorical(spec.name, list(spec.choices))


class _Explorer(SearchSpace):
    """Follows one path of categorical choices and records what it meets."""

    def __init__(self, techniques: Iterable[str], overrides: Mapping[str, Any], path: list[int], hooks: Any = None):
        super().__init__(None, techniques, overrides, hooks)
        self.path = path
        self.branch_points: list[int] = []  # number of choices at each categorical met
        self.defaults: dict[str, ParamSpec] = {}
        self.problems: list[str] = []

    def resolve(self, spec: ParamSpec) -> ParamSpec:
        self.defaults.setdefault(spec.name, spec)
        try:
            return apply_override(spec, self.overrides.get(spec.name))
        except ValueError as exc:
            self.problems.append(str(exc))
            return spec

    def _draw(self, spec: ParamSpec) -> Any:
        if spec.kind != "categorical":
            return spec.low if spec.kind == "int" else float(spec.low)
        depth = len(self.branch_points)
        self.branch_points.append(len(spec.choices))
        index = self.path[depth] if depth < len(self.path) else 0
        return spec.choices[index]


class EffectiveSpace(Mapping[str, ParamSpec]):
    """Every parameter a study's trials can draw, after the study file's overrides.

    A read-only mapping ``{"llrd.decay": ParamSpec, ...}`` of the effective
    specs: what a technique checks the study against in
    ``autobert_validate_study(space)`` (``space["reinit.layers"].highest``,
    ``space.get("pet.enabled")``), instead of reading the overrides. A
    parameter that only some choices reach is in it; one no choice reaches
    is not.

    Attributes:
        declared: The specs as the techniques declared them (before overrides).
        problems: The overrides that do not fit their parameter (a parameter
            whose override does not fit keeps its declared spec here).
    """

    def __init__(self, effective: Mapping[str, ParamSpec], declared: Mapping[str, ParamSpec], problems: list[str]):
        self._effective = dict(effective)
        self.declared = dict(declared)
        self.problems = list(problems)

    def __getitem__(self, name: str) -> ParamSpec:
        return self._effective[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._effective)

    def __len__(self) -> int:
        return len(self._effective)

    def __repr__(self) -> str:
        return f"EffectiveSpace({', '.join(f'{n}: {s.describe()}' for n, s in sorted(self._effective.items()))})"

    def changed(self, name: str) -> bool:
        """Whether the study file changed ``name``'s space (fixed, narrowed or restricted it)."""
        return name in self._effective and self._effective[name] != self.declared.get(name)

    # The names of before (explore returned a report of three dicts).
    @property
    def effective(self) -> dict[str, ParamSpec]:
        return dict(self._effective)

    @property
    def defaults(self) -> dict[str, ParamSpec]:
        return self.declared


SpaceReport = EffectiveSpace  # the earlier name


def explore(hook: Any, techniques: Iterable[str], overrides: Mapping[str, Any] | None = None, max_paths: int = 512,
            *, hooks: Any = None) -> EffectiveSpace:
    """Run ``autobert_search_space`` along every path of categorical choices.

    Conditional parameters only appear under some choices, so one pass would
    miss them; this walks the choices depth-first (bounded by ``max_paths``).
    ``hooks`` (``pm.hook``) becomes each space's ``hooks``.

    Given a pluggy hook caller, each technique's implementation is walked on
    its own: techniques draw their parameters independently, so the paths add
    up across techniques instead of multiplying (and ``max_paths`` bounds each).
    """
    techniques = list(techniques)
    overrides = dict(overrides or {})
    defaults: dict[str, ParamSpec] = {}
    effective: dict[str, ParamSpec] = {}
    problems: list[str] = []
    for call in _separate_calls(hook):
        stack: list[list[int]] = [[]]
        seen = 0
        while stack and seen < max_paths:
            path = stack.pop()
            seen += 1
            space = _Explorer(techniques, overrides, path, hooks)
            call(space=space)
            for name, spec in space.defaults.items():
                defaults.setdefault(name, spec)
            for name, spec in space.specs.items():
                effective.setdefault(name, spec)
            problems.extend(p for p in space.problems if p not in problems)
            # Every branch point beyond the fixed prefix spawns its alternatives.
            for depth in range(len(path), len(space.branch_points)):
                for alt in range(1, space.branch_points[depth]):
                    stack.append(path + [0] * (depth - len(path)) + [alt])
    return EffectiveSpace(effective, defaults, problems)


def _separate_calls(hook: Any) -> list[Any]:
    """One callable per implementation of a pluggy hook caller; ``[hook]`` for anything else."""
    impls = hook.get_hookimpls() if hasattr(hook, "get_hookimpls") else None
    if not impls or any(impl.hookwrapper or impl.wrapper for impl in impls):
        return [hook]

    def one(impl: Any) -> Any:
        return lambda space: impl.function(*[{"space": space}[arg] for arg in impl.argnames])

    return [one(impl) for impl in impls]


def is_finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)
