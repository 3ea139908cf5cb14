"""Errors meant for people: each says what is wrong, where, and what to do."""

from __future__ import annotations


class AutobertError(Exception):
    """Base class of every error autobert reports without a traceback."""


class PluginError(AutobertError):
    """A technique plugin cannot be loaded or breaks the hook contract."""


class ConfigError(AutobertError):
    """A study file or frozen config has problems; ``problems`` lists them all."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}:\n{lines}")


class TrialFailed(AutobertError):
    """A trial could not finish (NaN loss, ...); the study goes on."""
