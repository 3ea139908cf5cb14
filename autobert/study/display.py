"""What people see in the terminal: live progress and the leaderboard."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autobert.config.space import format_value
from autobert.run.aggregate import mean_std
from autobert.store.record import StudyRecord, TrialRecord
from autobert.strategy.planner import finalists, trial_summary


class SearchProgress:
    """A rich display of the search: trials done, the running trial's steps, best so far.

    Implements the pipeline's ``Progress`` protocol and is an Optuna callback.
    """

    def __init__(self, console: Console, n_trials: int | None, direction: str, metric: str):
        self.metric = metric
        self.maximize = direction == "maximize"
        self.best: float | None = None
        self.last: str = ""
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console, transient=False,
        )
        self.trials = self.progress.add_task("trials", total=n_trials, info="")
        self.steps = self.progress.add_task("steps", total=None, info="", visible=False)

    def __enter__(self) -> "SearchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    # pipeline Progress protocol
    def trial_started(self, number: int, total_steps: int) -> None:
        self.progress.reset(self.steps, total=total_steps, description=f"trial {number}", visible=True, info="")

    def step(self, global_step: int) -> None:
        self.progress.update(self.steps, completed=global_step)

    def evaluated(self, global_step: int, value: float) -> None:
        self.last = f"{self.metric}={value:.4f} at step {global_step}"
        self.progress.update(self.steps, info=self.last)

    # Optuna callback
    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        stored = TrialRecord.from_trial(trial)
        if stored.is_skipped:
            self.progress.console.print(f"[dim]trial {trial.number}: skipped, {stored.not_started}[/]")
            return
        if stored.is_finalist:
            value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
            self.progress.console.print(f"finalist: trial {stored.finalist_of}'s recipe on fresh seed "
                                        f"{stored.finalist_seed}: [cyan]{value}[/]  {_timing(trial)}")
            return
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            if self.best is None or (trial.value > self.best) == self.maximize and trial.value != self.best:
                self.best = trial.value
        outcome = {
            TrialState.COMPLETE: f"[green]{trial.value:.4f}[/]" if trial.value is not None else "",
            TrialState.PRUNED: "[yellow]pruned[/]",
            TrialState.FAIL: "[red]failed[/]",
        }.get(trial.state, trial.state.name)
        best = f"best {self.metric}={self.best:.4f}" if self.best is not None else ""
        self.progress.console.print(f"trial {trial.number}: {outcome}  {_timing(trial)}  {_reason(trial)}".rstrip())
        self.progress.update(self.trials, advance=1, info=best)


def _timing(trial: optuna.trial.FrozenTrial) -> str:
    """``41s (predicted 38s)``: the trial's actual and predicted seconds, where stored."""
    stored = TrialRecord.from_trial(trial)
    seconds, predicted = stored.seconds, stored.predicted_seconds
    if seconds is None:
        return ""
    return f"{seconds:.0f}s" + (f" (predicted {predicted:.0f}s)" if predicted is not None else "")


def _reason(trial: optuna.trial.FrozenTrial) -> str:
    stored = TrialRecord.from_trial(trial)
    reason = stored.reason
    lost = stored.retry_of  # queued again after its worker was lost
    if lost is not None:
        reason = f"(re-run of lost trial {lost}) {reason}".strip()
    return reason


def _recipe(params: dict[str, Any]) -> str:
    """One line per technique: ``pooling: kind=mean, k=2``."""
    by_technique: dict[str, list[str]] = {}
    for name, value in params.items():
        technique, short = name.split(".", 1)
        by_technique.setdefault(technique, []).append(f"{short}={format_value(value)}")
    return "\n".join(f"[bold]{t}[/]: {', '.join(items)}" for t, items in sorted(by_technique.items()))


def _combination_row(combination: dict[str, Any], columns: int) -> list[str]:
    """The leaderboard's last line: the combination of runs the search chose (or why it kept the single recipe)."""
    members = combination.get("members") or []
    if combination["kind"] == "none":
        what = f"[bold]combination: none[/] ({combination['reason']})"
        value = f"{combination['single']['value']:.4f}"
    else:
        runs = ", ".join(f"{m['trial']}/seed {m['seed']}" + (f" x{m['weight']:.2f}" if combination["kind"] == "ensemble"
                                                              else "") for m in members)
        many = f"{len(members)} run{'s' if len(members) > 1 else ''}"
        what = f"[bold]combined: {combination['kind']} ({combination['variant']})[/] of {many}: {runs}\n" \
               f"[dim]{combination['reason']}[/]"
        value = f"{combination['value']:.4f}"
    cells = ["★", combination["kind"], value] + [""] * (columns - 4) + [what]
    return cells


def seed_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """The trial's per-seed values, in the order its seeds ran (empty if none are stored)."""
    return [float(v) for v in (TrialRecord.from_trial(trial).seed_values or {}).values()]


def leaderboard(study: optuna.Study, metric: str, top: int = 10) -> Table:
    """The top completed trials with their recipes, value and time, plus state counts.

    When trials ran on several seeds, ``mean ± std`` and ``seeds`` columns show
    how stable each recipe is (the value is the study's aggregate).
    """
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE and not TrialRecord.from_trial(t).is_finalist]
    complete.sort(key=lambda t: t.value if t.value is not None else -math.inf, reverse=maximize)
    counts = trial_summary(study)
    total_seconds = sum(TrialRecord.from_trial(t).seconds or 0 for t in study.get_trials(deepcopy=False))
    caption = (
        f"{counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
        f"{counts.get('fail', 0)} failed, {counts.get('running', 0)} running"
        + (f", {counts['skipped']} not started (over the time budget)" if counts.get("skipped") else "")
        + (f", {counts['finalist']} finalist run(s)" if counts.get("finalist") else "")
        + f"; {total_seconds / 60:.1f} min of trials"
    )
    warm = StudyRecord.from_study(study).warm_start or {}
    if warm.get("enqueued"):
        caption += (f"\nwarm start from {warm.get('source')}: {len(warm['enqueued'])} recipe(s) ran first"
                    + (f", {len(warm['skipped'])} skipped" if warm.get("skipped") else ""))
    finalist_rows = {r["trial"]: r for r in finalists(study)}
    if len(finalist_rows) >= 2:
        # The winner is the best finalist by its fresh seeds' mean: the finalists lead, in that order.
        order = list(finalist_rows)
        complete.sort(key=lambda t: order.index(t.number) if t.number in finalist_rows else len(order))
    names = sorted({n for t in complete[:top] for n in t.params})
    # Parameters with one value across the board go in the caption, to keep the table narrow.
    sampled = [t for t in study.get_trials(deepcopy=False) if t.params]
    fixed = {n: complete[0].params.get(n) for n in names
             if len({repr(t.params.get(n)) for t in sampled}) == 1 and len(sampled) > 1}
    names = [n for n in names if n not in fixed]
    if fixed:
        caption += "\nsame in every trial: " + ", ".join(f"{n}={format_value(v)}" for n, v in fixed.items())
    table = Table(title=f"{study.study_name}: top {min(top, len(complete))} by {metric}", caption=caption)
    table.add_column("rank", justify="right")
    table.add_column("trial", justify="right")
    table.add_column(metric, justify="right", style="bold green")
    multi_seed = any(len(seed_values(t)) > 1 for t in complete[:top])
    if multi_seed:
        table.add_column("mean ± std", justify="right")
        table.add_column("seeds", justify="right")
    if finalist_rows:
        table.add_column("fresh seeds (finalists)", justify="right", style="cyan")
    table.add_column("time", justify="right")
    table.add_column("predicted", justify="right", style="dim")
    table.add_column("recipe (what differs between trials)" if fixed else "recipe")
    for rank, t in enumerate(complete[:top], 1):
        spread = []
        if multi_seed:
            values = seed_values(t)
            mean, std = mean_std(values) if values else (math.nan, math.nan)
            spread = [f"{mean:.4f} ± {std:.4f}" if values else "", str(len(values))]
        if finalist_rows:
            row = finalist_rows.get(t.number)
            spread.append(f"{row['mean']:.4f} (seeds {', '.join(row['seed_values'])})" if row else "")
        stored = TrialRecord.from_trial(t)
        predicted, warm = stored.predicted_seconds, stored.warm_start
        table.add_row(
            str(rank), str(t.number) + (f"\n[dim]warm start: {warm}[/]" if warm else ""), f"{t.value:.4f}", *spread, f"{stored.seconds or 0:.0f}s",
            f"{predicted:.0f}s" if predicted is not None else "",
            _recipe({n: t.params[n] for n in names if n in t.params}),
        )
    combination = StudyRecord.from_study(study).combination
    if combination:
        table.add_section()
        table.add_row(*_combination_row(combination, len(table.columns)))
    if len(finalist_rows) >= 2:
        table.caption += (f"\nwinner: trial {next(iter(finalist_rows))}, the best mean over fresh seeds of the "
                          f"{len(finalist_rows)} finalists (re-runs on seeds the search did not use)")
    return table
