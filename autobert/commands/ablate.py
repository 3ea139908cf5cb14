"""``autobert ablate``: re-train a frozen recipe with each of its techniques switched off, on paired seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from autobert.commands.console import console, err_console
from autobert.commands.options import add_device_argument, add_replay_arguments, prepare_replay, seed_list
from autobert.run.clock import interruptible


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ablate", help="re-train a frozen recipe with each of its techniques switched off, on "
                                             "paired seeds")
    p.add_argument("frozen", help="a frozen config (best.yaml)")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], metavar="S1,S2,...",
                   help="the seeds every arm trains on (default 0,1,2,3,4)")
    p.add_argument("--add", action="append", default=[], metavar="NAME",
                   help="also try a technique the recipe does not use, at its documented default (repeatable)")
    p.add_argument("--output", "-o", type=Path,
                   help="folder for ablation.md/.json, forest.png, recommended.yaml (default: "
                        "<frozen dir>/<stem>-ablation)")
    p.add_argument("--storage", help="Optuna storage URL of the ablation study (default: SQLite in the output folder)")
    p.add_argument("--test", action="store_true", help="also score the test split (reported apart, never decides a "
                                                       "verdict)")
    add_replay_arguments(p, "run")
    add_device_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # optuna, which `autobert --help` and the light commands (plugins, cache) do without.
    from autobert.ablation.plan import plan
    from autobert.ablation.render import rich_table, write_outputs
    from autobert.ablation.runner import AblationProgress, default_output, run_ablation
    from autobert.store.storage import shown

    recipe = prepare_replay(args)
    frozen = recipe.frozen
    out = Path(args.output) if args.output else default_output(Path(args.frozen))
    arms = plan(frozen, recipe.pm, args.add)
    console.print(f"ablating {frozen.provenance.origin()}: {len(arms.arms)} arm(s) "
                  f"({', '.join(a.name for a in arms.arms)}) on seed(s) {', '.join(map(str, args.seeds))}"
                  + (f"; not ablatable: {', '.join(sorted(arms.not_ablatable))}" if arms.not_ablatable else ""))
    with interruptible(), AblationProgress(console, len(arms.arms) * len(args.seeds), frozen.metric) as progress:
        try:
            ablation = run_ablation(frozen, recipe.pm, recipe.data, seeds=args.seeds, output=out,
                                    recipe_path=str(args.frozen), add=args.add, storage=args.storage,
                                    evaluate_test=args.test, progress=progress)
        except KeyboardInterrupt:
            progress.progress.stop()
            stored = args.storage or f"sqlite:///{(out / 'ablation.db').resolve()}"
            err_console.print(f"[yellow]interrupted[/]: finished arms and seeds are stored in {shown(stored)}; "
                              "run the same command to resume.")
            return 130
    written = write_outputs(ablation, out)
    console.print(rich_table(ablation))
    if "recommended" in written:
        dropped = ", ".join(ablation.dropped) or "nothing"
        console.print(f"recommended recipe (drops {dropped}): [bold]{written['recommended']}[/]")
    console.print(f"table, plot and JSON written to [bold]{out}[/]")
    return 0


__all__ = ["add_parser", "run"]
