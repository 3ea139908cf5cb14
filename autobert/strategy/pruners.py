"""A pruner that compares trials at the same share of their own schedule.

Optuna's median pruner compares trials at the same training *step*. In a study
that searches epochs, batch size and warm-up, step 32 is the end of training
for one trial and the first warm-up steps of another, so the comparison is
between unlike things; ``docs/benchmarks/run.md`` found it stopping a winner in
its warm-up. :class:`ScheduleFractionPruner` maps every report to the fraction
of its own trial's schedule (``step / total steps``; autobert stores each
trial's ``total_steps`` and ``warmup_steps``) and compares a running trial
with what the finished trials had reached at the same fraction (interpolated
between their reports). It never prunes during warm-up nor before
``min_fraction`` of the schedule (30 %), and prunes only below the
``percentile`` of the finished trials (the 10th: a weaker rule than the
median, it stops the clearly hopeless trials and keeps the ones that might
still win; the defaults are the setting that kept the best trial of every
task in ``docs/benchmarks/pruning_audit.md``).

:func:`should_prune` is the rule itself, a pure function, so that
``benchmarks/pruning_audit.py`` can replay it on recorded curves.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from autobert.store.record import TrialRecord

Curve = Sequence[tuple[float, float]]  # (fraction of the schedule, value), in order


def value_at(curve: Curve, fraction: float) -> float | None:
    """The curve's value at ``fraction``, linearly interpolated between reports (None before the first)."""
    before = [(f, v) for f, v in curve if f <= fraction + 1e-9]
    if not before:
        return None
    f0, v0 = before[-1]
    after = [(f, v) for f, v in curve if f > fraction + 1e-9]
    if not after or f0 >= fraction:
        return v0
    f1, v1 = after[0]
    return v0 + (v1 - v0) * (fraction - f0) / (f1 - f0)


def should_prune(value: float, fraction: float, warmup_fraction: float, finished: list[Curve], *, maximize: bool = True,
                 min_fraction: float = 0.3, percentile: float = 10.0, n_startup_trials: int = 3) -> bool:
    """Whether a trial at ``value`` after ``fraction`` of its schedule is worse than the finished ones were.

    Args:
        value: The running trial's latest report.
        fraction: The share of its own schedule done at that report.
        warmup_fraction: The share of its schedule that is learning-rate warm-up.
        finished: Each finished trial's curve of ``(fraction, value)``.
        maximize: The study's direction.
        min_fraction: Never prune before this share of the schedule.
        percentile: Prune below this percentile of the finished trials' values
            at the same fraction (above ``100 - percentile`` when minimising).
        n_startup_trials: Never prune before this many trials finished.
    """
    if math.isnan(value):
        return True
    if fraction <= warmup_fraction or fraction < min_fraction or fraction >= 1.0:
        return False
    others = [v for v in (value_at(c, fraction) for c in finished) if v is not None and not math.isnan(v)]
    if len(others) < max(1, n_startup_trials):
        return False
    if maximize:
        return value < float(np.percentile(others, percentile))
    return value > float(np.percentile(others, 100 - percentile))


def trial_curve(trial: optuna.trial.FrozenTrial) -> list[tuple[float, float]]:
    """The trial's reports as ``(fraction of its schedule, value)``; empty without ``total_steps``."""
    total = TrialRecord.from_trial(trial).total_steps
    if not total:
        return []
    return [(step / total, value) for step, value in sorted(trial.intermediate_values.items())]


class ScheduleFractionPruner(optuna.pruners.BasePruner):
    """Optuna pruner applying :func:`should_prune` to the study's completed trials (finalist re-runs excluded)."""

    def __init__(self, min_fraction: float = 0.3, percentile: float = 10.0, n_startup_trials: int = 3):
        self.min_fraction, self.percentile, self.n_startup_trials = min_fraction, percentile, n_startup_trials

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        record = TrialRecord.from_trial(trial)
        total = record.total_steps
        if step is None or not total:
            return False
        finished = [trial_curve(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if not TrialRecord.from_trial(t).is_finalist]
        warmup = (record.warmup_steps or 0) / total
        return should_prune(trial.intermediate_values[step], step / total, warmup, [c for c in finished if c],
                            maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
                            min_fraction=self.min_fraction, percentile=self.percentile,
                            n_startup_trials=self.n_startup_trials)


__all__ = ["ScheduleFractionPruner", "should_prune", "value_at", "trial_curve"]
