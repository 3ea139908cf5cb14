"""``autobert search --workers N``: N worker processes on this machine, sharing one study.

Each worker is an ordinary ``autobert search`` process on the study's shared
storage (an SQLite study is moved to a journal file beside it, since SQLite
takes one worker at a time; the message says so). Workers get a GPU each
where there are enough; otherwise they share the CPU cores, with their
thread counts set so that together they do not ask for more threads than
there are cores. This process shows one combined display, read from the
storage, and on Ctrl-C (or SIGTERM) stops every worker cleanly: each marks
its running trial failed ("interrupted"), as a single search does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autobert.config.schema import StudyConfig
from autobert.run.clock import interruptible
from autobert.run.device import gpu_count
from autobert.store.record import TrialRecord
from autobert.store.storage import shown, storage_kind
from autobert.strategy.budget import SearchBudget
from autobert.strategy.planner import trial_summary
from autobert.study.display import leaderboard
from autobert.study.search import export_best, init_study, open_study

# How long a worker has to end its trial after Ctrl-C before it is terminated, then killed.
STOP_GRACE = 30.0


@dataclass
class Slot:
    """Where one worker runs: a GPU (its id as CUDA_VISIBLE_DEVICES names it) or none, and its CPU threads."""

    gpu: str | None
    threads: int

    def describe(self) -> str:
        return f"GPU {self.gpu}" if self.gpu is not None else f"CPU, {self.threads} thread{'s' * (self.threads != 1)}"


def plan_slots(workers: int, gpus: list[str], cores: int) -> list[Slot]:
    """One slot per worker: a GPU each when there are enough, else GPUs in turn; threads split the cores.

    >>> plan_slots(2, ["0", "1", "2"], 16)
    [Slot(gpu='0', threads=8), Slot(gpu='1', threads=8)]
    >>> plan_slots(3, [], 8)
    [Slot(gpu=None, threads=2), Slot(gpu=None, threads=2), Slot(gpu=None, threads=2)]
    """
    threads = max(1, cores // workers)
    return [Slot(gpus[i % len(gpus)] if gpus else None, threads) for i in range(workers)]


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` names them."""
    count = gpu_count()
    if not count:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible and visible.strip():
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(i) for i in range(count)]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shared_storage(study: StudyConfig, given: str | None) -> tuple[str, str | None]:
    """The storage URL the workers share, and a note when it is not the study's own.

    An SQLite study takes one worker at a time, so its workers share a journal
    file beside it instead (``<study dir>/study.journal``).
    """
    url = given or study.storage_url
    if storage_kind(url) != "sqlite":
        return url, None
    journal = f"journal:///{str((study.study_dir / 'study.journal').resolve()).lstrip('/')}"
    return journal, (
        f"SQLite takes one worker at a time, so the workers share the journal file {journal} instead of "
        f"{shown(url)}; read it with `--storage {journal}` (autobert best, report), or give --storage "
        "postgresql://USER@HOST/DB or journal:///PATH to choose"
    )


def split_trials(n_trials: int | None, workers: int) -> list[int | None]:
    """Each worker's share of ``n_trials`` (None: until the timeout); the shares add up to ``n_trials``."""
    if n_trials is None:
        return [None] * workers
    return [n_trials // workers + (i < n_trials % workers) for i in range(workers)]


@dataclass
class Worker:
    index: int
    slot: Slot
    process: subprocess.Popen
    log: Path
    returncode: int | None = None
    trials: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"


def start_workers(study_path: str, url: str, shares: list[int | None], slots: list[Slot], logs: Path,
                  extra: list[str]) -> list[Worker]:
    """Start one ``autobert search --as-worker`` process per share, each in its own session.

    Their own session keeps a terminal's Ctrl-C from reaching them directly:
    this process forwards it once, so each worker stops its trial once.
    """
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for index, (share, slot) in enumerate(zip(shares, slots)):
        env = dict(os.environ)
        env.update({"OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads),
                    "TOKENIZERS_PARALLELISM": "false"})
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        command = [sys.executable, "-m", "autobert.cli", "search", study_path, "--storage", url, "--as-worker", *extra]
        if share is not None:
            command += ["--n-trials", str(share)]
        log = logs / f"worker-{index + 1}.log"
        with open(log, "w", encoding="utf-8") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        started.append(Worker(index + 1, slot, process, log))
    return started


def stop_workers(workers: list[Worker], grace: float = STOP_GRACE) -> None:
    """Ask every running worker to stop (SIGINT: it fails its trial as interrupted); terminate, then kill, stragglers."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        alive = [w for w in workers if w.process.poll() is None]
        if not alive:
            break
        for w in alive:
            try:
                w.process.send_signal(sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        try:
            while time.time() < deadline and any(w.process.poll() is None for w in alive):
                time.sleep(0.2)
        except KeyboardInterrupt:
            continue  # a second Ctrl-C: go straight on to the next, harder signal
    for w in workers:
        w.returncode = w.process.wait()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class CombinedDisplay:
    """One view of all workers, read from the shared storage: each worker's trial, step and last value."""

    def __init__(self, opened, workers: list[Worker], total: int | None, metric: str, direction: str):
        self.opened, self.workers, self.total = opened, workers, total
        self.metric, self.maximize = metric, direction == "maximize"
        self.before = {t.number for t in opened.get_trials(deepcopy=False)}

    def render(self) -> Group:
        trials = [t for t in self.opened.get_trials(deepcopy=False) if t.number not in self.before]
        by_worker: dict[str, list] = {}
        for t in trials:
            by_worker.setdefault(TrialRecord.from_trial(t).worker or "", []).append(t)
        table = Table(title=f"{len(self.workers)} workers on study {self.opened.study_name!r}", title_justify="left")
        for column in ("worker", "runs on", "trials done", "now"):
            table.add_column(column)
        for w in self.workers:
            mine = by_worker.get(w.name, [])
            done = sum(t.state.is_finished() for t in mine)
            running = [t for t in mine if t.state == TrialState.RUNNING]
            code = w.process.poll()
            if running:
                t = running[-1]
                steps = f"step {max(t.intermediate_values)}" if t.intermediate_values else "starting"
                total_steps = TrialRecord.from_trial(t).total_steps
                steps += f"/{total_steps}" if total_steps and t.intermediate_values else ""
                last = (f", {self.metric}={t.intermediate_values[max(t.intermediate_values)]:.4f}"
                        if t.intermediate_values else "")
                now = f"trial {t.number}: {steps}{last}"
            elif code is None:
                now = "starting"
            else:
                now = "finished" if code == 0 else f"[red]stopped (exit {code})[/]"
            table.add_row(f"{w.index} (pid {w.process.pid})", w.slot.describe(), str(done), now)
        states = [t.state for t in trials]
        complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = (max(complete) if self.maximize else min(complete)) if complete else None
        summary = (f"{states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned, "
                   f"{states.count(TrialState.FAIL)} failed, {states.count(TrialState.RUNNING)} running"
                   + (f" of {self.total}" if self.total else "")
                   + (f"; best {self.metric} {best:.4f}" if best is not None else ""))
        return Group(table, Text(summary))


@dataclass(frozen=True)
class WorkerOptions:
    """What ``autobert search --workers N`` was asked: the workers, the budget they share, and the options they get."""

    study_path: str  # each worker reads the same study file
    workers: int
    budget: SearchBudget  # resolved once (strategy.budget.resolve_budget) and shared out among the workers
    storage: str | None = None
    export: Path | None = None
    disable: tuple[str, ...] = ()
    keep_stored_space: bool = False


def run_workers(options: WorkerOptions, study: StudyConfig, pm: Any, data: Any, console: Console,
                err_console: Console) -> int:
    """Run ``autobert search --workers N``: start, watch and (on Ctrl-C) stop the workers, then export.

    Returns the command's exit code: 0, 1 (no trial completed), 2 (a worker
    found a problem with the input) or 130 (interrupted).
    """
    url, note = shared_storage(study, options.storage)
    if note:
        console.print(f"[yellow]note[/]: {note}")
    opened = init_study(study, pm, url)  # created once here, so the workers only load it
    n_trials, timeout = options.budget.n_trials, options.budget.timeout
    count = options.workers if n_trials is None else min(options.workers, n_trials)
    if count < options.workers:
        console.print(f"[yellow]note[/]: {n_trials} trial(s) to run, so {count} worker(s), not {options.workers}")
    gpus = visible_gpus()
    slots = plan_slots(count, gpus, usable_cores())
    extra = [f"--disable={name}" for name in options.disable] + (["--timeout", str(timeout)] if timeout else [])
    extra += ["--keep-stored-space"] if options.keep_stored_space else []
    logs = study.study_dir / "workers"
    sharing = (f"{len(gpus)} GPU(s) for {count} workers: they take turns on them" if gpus and len(gpus) < count
               else "one GPU each" if gpus else f"{usable_cores()} CPU core(s) shared")
    console.print(f"[bold]{study.name}[/]: {n_trials or 'unlimited'} trial(s) on {count} workers ({sharing}); "
                  f"storage {shown(url)}; worker logs in {logs}")

    workers: list[Worker] = []
    with interruptible():
        try:
            workers = start_workers(options.study_path, url, split_trials(n_trials, count), slots, logs, extra)
            display = CombinedDisplay(opened, workers, n_trials, study.metric, study.direction)
            with Live(display.render(), console=console, refresh_per_second=2, transient=False) as live:
                while any(w.process.poll() is None for w in workers):
                    time.sleep(0.5)
                    live.update(display.render())
                live.update(display.render())
            if not console.is_terminal:
                console.line()  # a captured display ends without one
            for w in workers:
                w.returncode = w.process.wait()
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: stopping {len(workers)} worker(s); each marks its running "
                              "trial failed (interrupted)")
            stop_workers(workers)
            err_console.print(f"[yellow]stopped[/]: completed trials are stored in {shown(url)}. Run the same "
                              "command to resume.")
            return 130

    failed = [w for w in workers if w.returncode not in (0, None)]
    for w in failed:
        err_console.print(f"[red]worker {w.index}[/] (pid {w.process.pid}) exited with code {w.returncode}; "
                          f"the end of {w.log}:")
        err_console.print(_log_tail(w.log), markup=False, highlight=False)
    opened = open_study(study, url)
    console.print(leaderboard(opened, study.metric))
    if not trial_summary(opened).get("complete"):
        err_console.print("[red]no trial completed[/], so there is no recipe to export; see the reasons above")
        return 2 if any(w.returncode == 2 for w in failed) else 1
    path = export_best(study, opened, pm, data, options.export)
    console.print(f"best recipe written to [bold]{path}[/]; reproduce it with `autobert train {path} --output DIR`")
    return 2 if any(w.returncode == 2 for w in failed) else 0


__all__ = ["run_workers", "WorkerOptions", "plan_slots", "split_trials", "shared_storage", "Slot"]
