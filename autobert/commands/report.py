"""``autobert report``: an HTML report of a study, with its figures as PNG files beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

from autobert.commands.console import console


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="write an HTML report and PNG figures of a study")
    p.add_argument("study", help="the study YAML file")
    p.add_argument("--storage", help="Optuna storage URL (default: the study's)")
    p.add_argument("--output", "-o", type=Path, help="folder for report.html and the PNGs (default: <study dir>/report)")
    p.add_argument("--top", type=int, default=10, help="recipes in the table and the per-seed figure")
    return p


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs, not when `autobert` builds its parser: it imports optuna (and, to draw,
    # matplotlib), which `autobert --help` and the other light commands do without.
    from autobert.config.schema import load_study
    from autobert.reporting.report import write_report

    html = write_report(load_study(args.study), output=args.output, storage=args.storage, top=args.top)
    console.print(f"report written to [bold]{html}[/] (figures beside it as PNG)")
    return 0


__all__ = ["add_parser", "run"]
