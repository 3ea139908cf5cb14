"""``autobert search``: run (or resume) a study, in this process or as N local workers, then export the best recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from autobert.commands.console import console, err_console, print_warnings
from autobert.commands.options import add_device_argument, add_study_arguments, positive
from autobert.run.clock import interruptible
from autobert.run.device import select_device
from autobert.strategy.budget import resolve_budget


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("search", help="run (or resume) a study")
    add_study_arguments(p)
    p.add_argument("--n-trials", type=int, help="run this many more trials (default: the study's budget)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--export", type=Path, help="where to write the best frozen config (default: <study dir>/best.yaml)")
    p.add_argument("--keep-stored-space", action="store_true",
                   help="resume even though the study file changed a parameter's choices or log scale: those keep "
                        "the stored definition")
    p.add_argument("--init-only", action="store_true",
                   help="create the study in its storage (or check the stored one) and stop; run it once before "
                        "starting several workers")
    add_device_argument(p)
    p.add_argument("--workers", type=positive, metavar="N",
                   help="start N worker processes on this machine, sharing the study (one GPU each where there are "
                        "enough)")
    # A worker started by --workers: no export, no leaderboard (the parent does both once all have stopped).
    p.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # optuna, which `autobert --help` and the light commands (plugins, cache) do without.
    from autobert.store.storage import shown
    from autobert.strategy.planner import trial_summary
    from autobert.store.record import StudyRecord
    from autobert.study.combine import describe
    from autobert.study.display import SearchProgress, leaderboard
    from autobert.study.prepare import prepare_study
    from autobert.study.search import export_best, init_study, run_search
    from autobert.study.workers import WorkerOptions, run_workers

    select_device(args.device)  # before anything touches CUDA
    prepared = prepare_study(args.study, args.disable)
    print_warnings(prepared.warnings)
    study, pm, data = prepared.study, prepared.pm, prepared.data
    budget = resolve_budget(study.budget, args.n_trials, args.timeout)
    if args.workers and not args.as_worker and not args.init_only:
        options = WorkerOptions(study_path=args.study, workers=args.workers, budget=budget, storage=args.storage,
                                export=args.export, disable=tuple(args.disable),
                                keep_stored_space=args.keep_stored_space)
        return run_workers(options, study, pm, data, console, err_console)
    if args.init_only:
        opened = init_study(study, pm, args.storage)
        console.print(f"[green]ready[/]: study {study.name!r} in {shown(args.storage or study.storage_url)} "
                      f"({len(opened.trials)} trial(s) stored); start the workers with the same study file and "
                      "--storage")
        return 0
    console.print(
        f"[bold]{study.name}[/]: {budget.n_trials or 'unlimited'} trial(s), techniques: "
        f"{', '.join(sorted(pm.techniques))}; storage {shown(args.storage or study.storage_url)}"
    )
    with interruptible(), SearchProgress(console, budget.n_trials, study.direction, study.metric) as progress:
        try:
            opened = run_search(
                study, pm, data, n_trials=budget.n_trials, timeout=budget.timeout, storage=args.storage,
                progress=progress, callbacks=[progress], keep_stored_space=args.keep_stored_space,
            )
        except KeyboardInterrupt:
            progress.progress.stop()
            err_console.print(
                "[yellow]interrupted[/]: the running trial is marked failed; completed trials are stored. "
                "Run the same command to resume."
            )
            return 130
    if args.as_worker:
        return 0  # the process that started the workers shows the leaderboard and exports, once all have stopped
    console.print(leaderboard(opened, study.metric))
    if not trial_summary(opened).get("complete"):
        err_console.print("[red]no trial completed[/], so there is no recipe to export; see the reasons above")
        return 1
    path = export_best(study, opened, pm, data, args.export)
    if study.combine.kind != "none":
        console.print(describe(StudyRecord.from_study(opened).combination, study.metric))
    console.print(f"best recipe written to [bold]{path}[/]; reproduce it with `autobert train {path} --output DIR`")
    return 0


__all__ = ["add_parser", "run"]
