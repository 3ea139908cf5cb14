"""``autobert portfolio``: score candidate recipes on several task studies (``evaluate``), choose a portfolio (``build``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from autobert.commands.console import console
from autobert.commands.options import add_device_argument, at_least_one, seed_list
from autobert.errors import ConfigError
from autobert.run.device import select_device


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("portfolio", help="score candidate recipes on several task studies and choose a "
                                                "portfolio of them (the warm start of later studies)")
    psub = p.add_subparsers(dest="portfolio_command", required=True)
    q = psub.add_parser("evaluate", help="run every candidate on every task study; each score is an Optuna trial, "
                                         "so the same command resumes")
    q.add_argument("tasks", nargs="+", help="task study YAML files (model, data, max_length, ...)")
    q.add_argument("--candidates", nargs="+", default=[], type=Path, metavar="FILE",
                   help="portfolio or candidate files (`recipes:` lists) or frozen configs (best.yaml)")
    q.add_argument("--from-study", nargs=2, action="append", default=[], metavar=("STORAGE", "NAME"),
                   help="also the best recipes of this finished study (repeatable)")
    q.add_argument("--top", type=int, default=3, help="recipes taken from each --from-study (default 3)")
    q.add_argument("--seeds", type=seed_list, default=[0], metavar="S1,S2,...", help="seeds per (recipe, task)")
    q.add_argument("--storage", required=True, help="Optuna storage URL for the scores (sqlite:///, journal:///, ...)")
    q.add_argument("--name", default="portfolio", help="the evaluation's name (its task studies are NAME.TASK)")
    add_device_argument(q)
    q = psub.add_parser("build", help="choose --size recipes greedily from a stored evaluation and write a portfolio")
    q.add_argument("--storage", required=True, help="the storage `portfolio evaluate` wrote to")
    q.add_argument("--name", default="portfolio")
    q.add_argument("--size", type=at_least_one("recipes"), required=True, metavar="K", help="recipes in the portfolio")
    q.add_argument("--output", "-o", type=Path, required=True, help="the portfolio YAML file to write")
    q.add_argument("--exclude", action="append", default=[], metavar="TASK",
                   help="leave a task out (e.g. the one the portfolio will be tested on); repeatable")
    return p


def run(args: argparse.Namespace) -> int:
    return _evaluate(args) if args.portfolio_command == "evaluate" else _build(args)


def _evaluate(args: argparse.Namespace) -> int:
    # Imported when the evaluation runs, not when `autobert` builds its parser: they import torch, which
    # `autobert --help` and `portfolio build` do without.
    from autobert.run.pipeline import quiet_transformers
    from autobert.study.portfolio import evaluate, evaluation_inputs

    select_device(args.device)
    quiet_transformers()
    inputs = evaluation_inputs(args.tasks, args.candidates, args.from_study, args.top)
    console.print(f"[bold]{len(inputs.candidates)}[/] candidate(s) x {len(inputs.tasks)} task(s) x {len(args.seeds)} "
                  f"seed(s); scores in {args.storage} (evaluation {args.name!r})")
    counts = evaluate(inputs.candidates, inputs.tasks, args.seeds, args.storage, name=args.name,
                      say=lambda m: console.print(m, markup=False, highlight=False))
    console.print(f"{counts['run']} run, {counts['stored']} already stored, {counts['skipped']} skipped, "
                  f"{counts['failed']} failed; choose a portfolio with `autobert portfolio build --storage "
                  f"{args.storage} --name {args.name} --size K --output FILE`")
    return 0 if not counts["failed"] else 1


def _build(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `autobert --help` builds every command's parser and stays light (no pydantic,
    # optuna or torch) that way.
    from autobert.run.plugin_manager import get_plugin_manager
    from autobert.strategy import portfolio
    from autobert.strategy.declarations import off_values

    matrix = portfolio.read_matrix(args.storage, args.name)
    unknown = sorted(set(args.exclude) - set(matrix.tasks))
    if unknown:
        raise ConfigError("--exclude", [f"no task {', '.join(unknown)} in evaluation {args.name!r}; its tasks are "
                                        f"{', '.join(matrix.tasks)}"])
    pm = get_plugin_manager()
    built = portfolio.build(matrix, args.size, exclude=args.exclude, off=off_values(pm), techniques=pm.techniques)
    path = portfolio.write_portfolio(built, args.output)
    table = Table(title=f"portfolio of {len(built.recipes)} (coverage {built.provenance['coverage']:.2f}; best single "
                        f"recipe {built.provenance['best_single']['coverage']:.2f})")
    table.add_column("recipe")
    tasks = built.provenance["tasks"]
    for task in tasks:
        table.add_column(task, justify="right")
    for recipe in built.recipes:
        table.add_row(recipe.name, *(f"{v:.4f}" if (v := matrix.mean(t, recipe.name)) is not None else "—"
                                     for t in tasks))
    console.print(table)
    console.print(f"techniques that won a place: {', '.join(built.provenance['techniques_won']) or '—'}; not chosen: "
                  f"{', '.join(built.provenance['techniques_not_chosen']) or '—'}")
    console.print(f"portfolio written to [bold]{path}[/]; use it with `warm_start: {path}` in a study file")
    return 0


__all__ = ["add_parser", "run"]
