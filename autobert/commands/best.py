"""``autobert best``: show a study's leaderboard and export its best recipe again."""

from __future__ import annotations

import argparse
from pathlib import Path

from autobert.commands.console import console, print_warnings
from autobert.commands.options import add_study_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("best", help="show the leaderboard and re-export the best recipe")
    add_study_arguments(p)
    p.add_argument("--export", type=Path, help="where to write the frozen config")
    p.add_argument("--top", type=int, default=10)
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # optuna, which `autobert --help` and the light commands (plugins, cache) do without.
    from autobert.store.record import StudyRecord
    from autobert.study.combine import describe
    from autobert.study.display import leaderboard
    from autobert.study.prepare import prepare_study
    from autobert.study.search import export_best, open_study

    prepared = prepare_study(args.study, args.disable)
    print_warnings(prepared.warnings)
    study = prepared.study
    opened = open_study(study, args.storage)
    path = export_best(study, opened, prepared.pm, prepared.data, args.export)  # builds a missing combination first
    console.print(leaderboard(opened, study.metric, args.top))
    if study.combine.kind != "none":
        console.print(describe(StudyRecord.from_study(opened).combination, study.metric))
    console.print(f"best recipe written to [bold]{path}[/]")
    return 0


__all__ = ["add_parser", "run"]
