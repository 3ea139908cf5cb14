"""What a search runs next and when it stops: the time budget, cheap first, finalists.

A :class:`Planner` lives for one ``autobert search`` run. It predicts each
trial's cost (:mod:`autobert.strategy.budget`), refuses to start one that does not fit
the time left or the cheap-first cap, stops the search at its deadline, and
then spends the budget's last share (``finalists.share``, 20 % by default)
re-running the best ``finalists.top`` recipes on seeds the search has not
used. Finalist runs are ordinary trials, enqueued with the recipe's
parameters and the user attributes ``finalist_of`` (the trial they re-run)
and ``finalist_seed``; the winner is the finalist with the best mean over the
fresh seeds (:func:`winner`), not the luckiest single run. The finalists
end early enough to leave the combination step its time
(:meth:`Planner.combination_seconds`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from autobert.run.clock import Clock
from autobert.store import record
from autobert.store.record import StudyRecord, TrialRecord
from autobert.strategy import budget
from autobert.strategy.budget import Calibration, Prediction
from autobert.strategy.declarations import CostKnob, declared_cost_knobs, off_values
from autobert.config.settings import declared_settings, resolve_settings

#: Stop the main phase after this many recipes in a row that did not fit (nothing affordable is left).
MAX_SKIPS_IN_A_ROW = 30
#: At most this many fresh seeds per finalist.
MAX_FINALIST_SEEDS = 5
#: Soups the finalists leave time to score (see Planner.combination_seconds), and what one costs: its validation
#: pass, plus loading its members (a quarter of a pass for MiniLM on SST-2's 872 rows: the step scored soups in
#: 10-13 s where a trial's pass took 6.5-8.9 s), plus a fixed overhead.
SOUPS_RESERVED = 2
SOUP_PER_PASS = 1.25
SOUP_OVERHEAD = 0.25


def is_finalist(trial: optuna.trial.FrozenTrial) -> bool:
    return TrialRecord.from_trial(trial).is_finalist


def is_skipped(trial: optuna.trial.FrozenTrial) -> bool:
    return TrialRecord.from_trial(trial).is_skipped


def search_trials(opened: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed trials of the search itself (finalist re-runs excluded)."""
    return [t for t in opened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_finalist(t)]


def ranked_search_trials(opened: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed search trials, best first (finalist re-runs excluded): what the planner, the warm start from an
    earlier study and ``autobert portfolio evaluate --from-study`` rank."""
    maximize = opened.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(search_trials(opened), key=lambda t: t.value, reverse=maximize)


def top_distinct_trials(opened: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``top`` search trials with distinct recipes (a recipe run twice counts once, at its best):
    the finalists, and the recipes ``--from-study`` and a warm start from an earlier study take."""
    found: list[optuna.trial.FrozenTrial] = []
    seen = set()
    for t in ranked_search_trials(opened):
        if len(found) == top:
            break
        key = repr(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            found.append(t)
    return found


def finalist_values(opened: optuna.Study) -> dict[int, dict[str, float]]:
    """``{search trial number: {fresh seed: value}}`` from the completed finalist runs."""
    found: dict[int, dict[str, float]] = {}
    for t in opened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        run = TrialRecord.from_trial(t)
        if run.is_finalist:
            found.setdefault(int(run.finalist_of), {})[str(run.finalist_seed)] = t.value
    return found


def finalists(opened: optuna.Study) -> list[dict[str, Any]]:
    """The finalists, best first: ``{trial, search_value, seed_values, mean}``.

    Means are taken over the fresh seeds every finalist ran (all of each one's
    seeds where they share none), so a finalist with an extra lucky run is not
    favoured.
    """
    values = finalist_values(opened)
    by_number = {t.number: t for t in search_trials(opened)}
    values = {n: v for n, v in values.items() if n in by_number}
    if not values:
        return []
    common = set.intersection(*(set(v) for v in values.values()))
    rows = []
    for number, seeds in values.items():
        used = [v for s, v in seeds.items() if s in common] if common else list(seeds.values())
        rows.append({"trial": number, "search_value": by_number[number].value,
                     "seed_values": dict(sorted(seeds.items(), key=lambda kv: int(kv[0]))),
                     "mean": sum(used) / len(used)})
    maximize = opened.direction == optuna.study.StudyDirection.MAXIMIZE
    rows.sort(key=lambda r: (r["mean"], r["search_value"]), reverse=maximize)
    return rows


def winner(opened: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The recipe to export: the best finalist by its fresh-seed mean when two or more ran, else the best trial."""
    ranked = ranked_search_trials(opened)
    if not ranked:
        return None
    rows = finalists(opened)
    if len(rows) >= 2:
        return next(t for t in ranked if t.number == rows[0]["trial"])
    return ranked[0]


def _costliest_first(prediction: Prediction, also: Any = ()) -> list[str]:
    """The techniques in ``prediction``'s terms, most predicted work first, then those of ``also`` it lacks."""
    work: dict[str, float] = {}
    for term, amount in prediction.terms.items():
        if term != budget.EVALUATION:  # the engine's own term: no technique to switch off or lower
            technique = term.split(":", 1)[0]
            work[technique] = work.get(technique, 0.0) + amount
    for technique in also:
        work.setdefault(technique, 0.0)
    return [technique for technique, _ in sorted(work.items(), key=lambda kv: -kv[1])]


def _allowed(spec: Any, value: Any) -> bool:
    """Whether ``value`` is in the study's effective space of the parameter (``spec`` None: not searched)."""
    if spec is None:
        return True
    if spec.kind == "categorical":
        return value in spec.choices
    return spec.low <= value <= spec.high


class Planner:
    """The budget of one ``autobert search`` run (see the module's docstring).

    Args:
        study: The study config.
        pm: Its plugin manager.
        data: The task's data.
        opened: The Optuna study.
        timeout: Seconds for this run (``None``: no time budget; trials are
            still predicted and timed, never refused).
        n_trials: Trials to start in this run (``None``: until the time is up).
    """

    def __init__(self, study: Any, pm: Any, data: Any, opened: optuna.Study, timeout: float | None,
                 n_trials: int | None):
        self.study, self.pm, self.opened, self.n_trials = study, pm, opened, n_trials
        self.split_rows = {name: len(split) for name, split in data.splits.items()}
        self.settings = resolve_settings(study, declared_settings(pm))
        self.data = data
        self.start = time.monotonic()
        self.timeout = timeout
        share = study.finalists.share if timeout else 0.0
        self.main_budget = timeout * (1 - share) if timeout else None
        self.main_deadline = self.start + self.main_budget if timeout else None
        self.deadline = self.start + timeout if timeout else None
        self.started = 0
        self.skips_in_a_row = 0
        self.cheapest: float = math.inf  # the cheapest recipe that may still run: started ones, queued variants
        self.stop_reason: str | None = None
        self.returned_share: str | None = None  # said once, when the finalists' share goes back to the search
        self._prior: Calibration | None = None

    # -- prediction ---------------------------------------------------------

    def prior(self) -> Calibration:
        """The probe's calibration: stored with the study, measured once when there is none."""
        if self._prior is None:
            stored = StudyRecord.from_study(self.opened).calibration
            if stored:
                self._prior = Calibration(stored["overhead"], stored["seconds_per_pass"], "probe")
            else:
                self._prior = budget.probe(self.study, self.data)
                record.store_study(self.opened, calibration={"overhead": round(self._prior.overhead, 4),
                                                             "seconds_per_pass": self._prior.seconds_per_pass})
        return self._prior

    def calibration(self) -> Calibration:
        return budget.calibrate(self.opened.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), self.prior())

    def predict(self, params: dict[str, Any], runs: int, calibration: Calibration | None = None) -> Prediction:
        return budget.predict(params, self.study, self.pm, self.split_rows, self.settings,
                              calibration or self.calibration(), runs)

    # -- admission ----------------------------------------------------------

    def combination_seconds(self) -> float:
        """The time the finalists leave to the combination step at the budget's end.

        Ensembles and checkpoint averages are arithmetic on stored probabilities; soups are scored, each with model
        loads and a validation pass (the slowest evaluation a completed search trial measured). The finalists leave
        time for ``SOUPS_RESERVED`` of them: the seed soup and the greedy soup's first step. A finalist run adds a
        member to every candidate, so the greedy soup's further steps use whatever time is left, and the step says
        which it skipped. 0 where no soup is scored, or no trial has measured a pass yet.
        """
        combine = self.study.combine
        if combine.kind not in ("auto", "soup") or combine.weights_kept <= 0:
            return 0.0
        passes = [(TrialRecord.from_trial(t).metrics or {}).get("runtime") for t in search_trials(self.opened)]
        passes = [p for p in passes if isinstance(p, (int, float))]
        return SOUPS_RESERVED * (SOUP_PER_PASS * max(passes) + SOUP_OVERHEAD) if passes else 0.0

    def finalist_deadline(self) -> float | None:
        """When finalist runs must have ended: the budget's end, less the combination step's time."""
        return None if self.deadline is None else self.deadline - self.combination_seconds()

    def cap(self, finalist: bool = False) -> float:
        """The most a trial starting now may be predicted to cost (``inf`` without a time budget)."""
        if self.deadline is None:
            return math.inf
        now = time.monotonic()
        if finalist:
            return self.finalist_deadline() - now
        best = ranked_search_trials(self.opened)
        incumbent = TrialRecord.from_trial(best[0]).seconds if best else None
        return budget.admission_cap(self.main_budget, self.main_deadline - now, incumbent)

    def refusal(self, prediction: Prediction, finalist: bool, variant: bool = False, warm: bool = False) -> str | None:
        """Why a trial predicted to cost ``prediction`` must not start now, or ``None`` when it may.

        A cheaper variant made while no recipe has completed yet may use the
        time left: it is already the sampled recipe at its cheapest, and the
        search needs one finished trial to calibrate its predictions on. A
        warm-start recipe (:mod:`autobert.strategy.warm_start`) may use the time left
        too: the cap guards against the sampler's expensive guesses, and a
        portfolio recipe is no guess.
        """
        cap = self.cap(finalist)
        if (warm or (variant and not search_trials(self.opened))) and self.main_deadline is not None:
            cap = self.main_deadline - time.monotonic()
        if prediction.seconds <= cap:
            if not finalist:
                self.cheapest = min(self.cheapest, prediction.seconds)  # of the recipes started: what may still fit
            return None
        if finalist:
            return f"predicted {prediction.seconds:.0f}s, {max(cap, 0):.0f}s of the budget left"
        remaining = self.main_deadline - time.monotonic()
        if cap >= remaining:
            return f"predicted {prediction.seconds:.0f}s, {max(remaining, 0):.0f}s of the search's time left"
        first = budget.FIRST_SHARE * self.main_budget
        return (f"predicted {prediction.seconds:.0f}s, over the cheap-first cap of {cap:.0f}s "
                f"({'2x the best recipe so far' if cap > first + 1e-6 else 'a sixth of the search time'})")

    def first_may_run(self, prediction: Prediction) -> bool:
        """Whether a recipe over the cap may run anyway: nothing has completed yet and it fits the time left.

        Used for a recipe already at its cheapest form (no cheaper variant
        exists): the search needs one finished trial to calibrate on.
        """
        return (self.main_deadline is not None and not search_trials(self.opened)
                and prediction.seconds <= self.main_deadline - time.monotonic())

    def cheaper_variant(self, params: dict[str, Any], prediction: Prediction) -> tuple[dict[str, Any], Prediction, list[str]] | None:
        """The same recipe made to fit the cap, or ``None``: its costliest techniques switched off, then its cost knobs lowered.

        A technique is switched off with the values it declares through
        ``autobert_ablation`` (``{"distillation.enabled": False}``), when the
        study's space allows them. Then the knobs techniques declare through
        ``autobert_cost_knobs`` (a count of epochs) are lowered, the technique
        with the most predicted work first, each a step at a time to the
        lowest value the space allows, while the recipe is over the cap and a
        step makes it cheaper. Cheap first in FLAML's sense: the expensive
        parts of a recipe wait until the search has shown it can afford them.
        """
        cap = self.cap()
        if not math.isfinite(cap) or cap <= 0:
            return None
        declared, knobs, effective = self._declarations()
        calibration = self.calibration()  # read the stored trials once, not once per step below
        variant, changes = dict(params), []
        for technique in _costliest_first(prediction):
            if prediction.seconds <= cap:
                break
            off = declared.get(technique)
            if not off or not all(_allowed(effective.get(k), v) for k, v in off.items()):
                continue
            variant.update(off)
            changes.append(f"{technique} off")
            prediction = self.predict(variant, prediction.runs, calibration)
        for technique in _costliest_first(prediction, also=knobs):
            for knob in knobs.get(technique, ()):
                if knob.parameter not in variant:
                    continue
                lowered = False
                for value in knob.cheaper(variant[knob.parameter], effective.get(knob.parameter)):
                    if prediction.seconds <= cap:
                        break
                    candidate = {**variant, knob.parameter: value}
                    cheaper = self.predict(candidate, prediction.runs, calibration)
                    if cheaper.seconds >= prediction.seconds:
                        break  # this knob no longer buys time (its technique is off, say)
                    variant, prediction, lowered = candidate, cheaper, True
                if lowered:
                    changes.append(f"{knob.parameter.split('.', 1)[1]} {variant[knob.parameter]}")
        if not changes:
            return None
        if prediction.seconds > cap and (search_trials(self.opened) or prediction.seconds > self.main_deadline - time.monotonic()):
            return None  # (with nothing completed yet, the cheapest form runs if it fits the time: see refusal)
        # What may still run: the phase does not end while this variant, queued to run next, fits the time left.
        self.cheapest = min(self.cheapest, prediction.seconds)
        return variant, prediction, changes

    def _declarations(self) -> tuple[dict[str, dict[str, Any]], dict[str, list[CostKnob]], dict[str, Any]]:
        if not hasattr(self, "_declared"):
            self._declared = off_values(self.pm)
            self._knobs = declared_cost_knobs(self.pm)
            self._effective = self.pm.effective_space(self.study.overrides).effective
        return self._declared, self._knobs, self._effective

    def clock(self, prediction: Prediction | None, finalist: bool) -> Clock:
        deadline = self.finalist_deadline() if finalist else self.main_deadline
        return Clock(deadline=deadline, predicted=prediction.seconds if prediction else None)

    # -- the main phase's stop rule (an Optuna callback) ---------------------

    def finalist_run_seconds(self) -> float | None:
        """The predicted seconds of the cheapest finalist run (one seed of a top recipe); ``None`` while fewer than
        two recipes could be compared."""
        top = top_distinct_trials(self.opened, self.study.finalists.top)
        if len(top) < 2:
            return None
        calibration = self.calibration()
        return min(self.predict(t.params, 1, calibration).seconds for t in top)

    def rebalance(self) -> None:
        """Give the finalists' share back to the search when it cannot hold one finalist run.

        The share is kept for re-running the best recipes on fresh seeds; a share shorter than one such run would
        end the budget unused (a search of 900 s whose recipes take about 460 s each returned after 495 s). The
        reverse needs nothing: when no recipe fits the search's time left, the phase ends and the finalists have
        all the time that is left.
        """
        if self.deadline is None or self.main_deadline >= self.deadline:
            return
        run = self.finalist_run_seconds()
        share = self.deadline - self.main_deadline
        if run is not None and run > share:
            self.returned_share = (f"the finalists' share ({share:.0f}s) cannot hold one run ({run:.0f}s "
                                   "predicted): it goes back to the search")
            self.give_share_to_search()

    def give_share_to_search(self) -> None:
        """The search phase runs to the budget's end: the finalists' share is the search's."""
        self.main_deadline, self.main_budget = self.deadline, self.timeout

    def __call__(self, opened: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if is_finalist(trial):
            return
        if not is_skipped(trial):
            self.rebalance()
        if is_skipped(trial):
            self.skips_in_a_row += 1
        else:
            self.started += 1
            self.skips_in_a_row = 0
        if self.n_trials is not None and self.started >= self.n_trials:
            self.stop_reason = f"{self.started} trial(s) run"
        elif self.main_deadline is not None and time.monotonic() >= self.main_deadline:
            self.stop_reason = "the search's share of the time budget is spent"
        elif self.main_deadline is not None and self.cheapest < math.inf and self.main_deadline - time.monotonic() < self.cheapest:
            self.stop_reason = (f"{self.main_deadline - time.monotonic():.0f}s left, less than the cheapest recipe "
                                f"that could still run (started, or a cheaper variant) was predicted to take "
                                f"({self.cheapest:.0f}s)")
        elif self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            self.stop_reason = f"{self.skips_in_a_row} recipes in a row did not fit the time left"
        if self.stop_reason:
            opened.stop()

    # -- finalists ----------------------------------------------------------

    def fresh_seeds(self) -> list[int]:
        used = set(self.study.run_seeds)
        seeds, candidate = [], max(used) + 1
        while len(seeds) < MAX_FINALIST_SEEDS:
            if candidate not in used:
                seeds.append(candidate)
            candidate += 1
        return seeds

    def next_finalist_run(self) -> tuple[optuna.trial.FrozenTrial, int] | None:
        """The next (recipe, fresh seed) to run: round by round over the top recipes, or ``None``."""
        if self.deadline is None or self.study.finalists.share <= 0:
            return None
        top = top_distinct_trials(self.opened, self.study.finalists.top)
        if len(top) < 2:
            return None
        runs = [(TrialRecord.from_trial(t), t.state) for t in self.opened.get_trials(deepcopy=False)]
        taken = {(int(run.finalist_of), int(run.finalist_seed)) for run, state in runs
                 if run.is_finalist and state != TrialState.FAIL}
        for seed in self.fresh_seeds():
            for t in top:
                if (t.number, seed) not in taken:
                    return t, seed
        return None


def trial_summary(opened: optuna.Study) -> dict[str, int]:
    """Trials by state; ``skipped`` (refused by the time budget, never started) and ``finalist`` runs apart."""
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    counts.update(skipped=0, finalist=0)
    for t in opened.get_trials(deepcopy=False):
        kind = "skipped" if is_skipped(t) else "finalist" if is_finalist(t) and t.state == TrialState.COMPLETE else t.state.name.lower()
        counts[kind] = counts.get(kind, 0) + 1
    return counts


__all__ = ["Planner", "winner", "finalists", "finalist_values", "is_finalist", "is_skipped", "search_trials",
           "ranked_search_trials", "top_distinct_trials", "trial_summary"]
