"""``autobert validate``: check a study file, its techniques, model and data, without running anything."""

from __future__ import annotations

import argparse

from autobert.commands.console import console, print_warnings
from autobert.commands.options import add_study_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("validate", help="check a study file without running anything")
    add_study_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # optuna, which `autobert --help` and the light commands (plugins, cache) do without.
    from autobert.study.prepare import prepare_study

    prepared = prepare_study(args.study, args.disable)
    print_warnings(prepared.warnings)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in prepared.data.splits.items())
    console.print(f"[green]ok[/]: {prepared.study.name}: {sizes} rows, {prepared.data.num_labels} labels, techniques "
                  f"{', '.join(sorted(prepared.pm.techniques))}")
    return 0


__all__ = ["add_parser", "run"]
