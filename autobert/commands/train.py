"""``autobert train``: train a frozen config's recipe on its seeds; save the model, its metrics and a model card."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from autobert.commands.console import console
from autobert.commands.options import add_device_argument, add_replay_arguments, prepare_replay, seed_list
from autobert.errors import AutobertError

if TYPE_CHECKING:
    from autobert.study.train import TrainedRecipe


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a frozen config's recipe")
    p.add_argument("frozen", help="a frozen config (best.yaml)")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for the model, metrics.json and the config")
    add_replay_arguments(p, "train")
    p.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                   help="train once per seed and report mean ± std (default: the recipe's own seeds); the model saved "
                        "is the first seed's. With a combination, each is an offset added to every member's own seed")
    p.add_argument("--single", action="store_true",
                   help="train the single best recipe alone, not the combination (soup or ensemble) the search chose")
    add_device_argument(p)
    return p


def run(args: argparse.Namespace) -> int:
    # The engine is imported when the command runs, not when `autobert` builds its parser: it imports torch and
    # optuna, which `autobert --help` and the light commands (plugins, cache) do without.
    from autobert.reporting.model_card import write_model_card
    from autobert.study.display import SearchProgress
    from autobert.study.train import KINDS, check_output, train_frozen

    recipe = prepare_replay(args)
    frozen, out = recipe.frozen, Path(args.output)
    check_output(out)  # before the first line of progress, not after it
    combination = frozen.provenance.combination
    if combination and combination.get("kind") in KINDS and not args.single:
        return _train_combination(args, recipe, out)
    seeds = args.seeds or frozen.run_seeds
    console.print(
        f"training {frozen.provenance.origin()} ({frozen.metric} in search: "
        f"{frozen.provenance.value}) on seed(s) {', '.join(map(str, seeds))} in {frozen.precision}"
    )
    with SearchProgress(console, None, frozen.direction, frozen.metric) as progress:
        trained = train_frozen(frozen, recipe.pm, recipe.data, seeds=seeds, output=out, progress=progress)
    try:
        write_model_card(out, frozen, trained.metrics)  # README.md in the Hub's model-card format
    except OSError as exc:
        raise AutobertError(f"cannot write the model card README.md to {out} ({exc.strerror or exc}); the model, "
                            "metrics.json and autobert.yaml are written. Free some space or choose another --output"
                            ) from None
    console.print(_table(trained))
    if len(seeds) > 1:
        mean, std = trained.runs.mean_std
        console.print(f"{frozen.metric}: {mean:.4f} ± {std:.4f} over {len(seeds)} seeds ({frozen.aggregate}: "
                      f"{trained.runs.value:.4f}); the saved model is seed {seeds[0]}'s")
    console.print(f"model, tokenizer, metrics.json, autobert.yaml and a model card (README.md) written to [bold]{out}[/]")
    return 0


def _train_combination(args: argparse.Namespace, recipe, out: Path) -> int:
    from autobert.reporting.model_card import write_model_card
    from autobert.study.display import SearchProgress
    from autobert.study.train import train_combination

    frozen = recipe.frozen
    combination = frozen.provenance.combination
    offsets = args.seeds or [0]
    members = combination["members"]
    runs = f"{len(members)} run{'s' if len(members) > 1 else ''}"
    console.print(
        f"training the {combination['kind']} ({combination['variant']}) of {runs} the search chose "
        f"({frozen.metric} in search: {combination['value']:.4f}; single recipe "
        f"{combination['single']['value']:.4f}); members: "
        + ", ".join(f"trial {m['trial']} seed {m['seed']}" for m in members)
        + (f"; seed offsets {', '.join(map(str, offsets))}" if args.seeds else "")
        + " (--single trains the best recipe alone)"
    )
    with SearchProgress(console, None, frozen.direction, frozen.metric) as progress:
        trained = train_combination(frozen, recipe.pm, recipe.data, offsets=offsets, output=out, progress=progress)
    try:
        write_model_card(out, frozen, trained.metrics)
    except OSError as exc:
        raise AutobertError(f"cannot write the model card README.md to {out} ({exc.strerror or exc}); the model, "
                            "metrics.json and autobert.yaml are written. Free some space or choose another --output"
                            ) from None
    table = Table(title=f"{frozen.name}: {combination['kind']} of {runs}"
                  + (f" on {len(offsets)} seed offsets" if len(offsets) > 1 else ""))
    table.add_column("what")
    shown = [n for n in trained.metric_names if n in (trained.scores[offsets[0]]["validation"] or {})]
    for name in shown:
        table.add_column(name, justify="right")
    for member in trained.members[offsets[0]]:
        table.add_row(f"member: trial {member.trial}, seed {member.seed} (weight {member.weight:.2f}), validation",
                      *[f"{member.result.metrics.get(n, float('nan')):.4f}" for n in shown])
    for offset in offsets:
        for split in ("validation", "test"):
            values = trained.scores[offset].get(split)
            if values:
                label = f"{combination['kind']}, {split}" + (f", offset {offset}" if len(offsets) > 1 else "")
                table.add_row(label, *[f"{values[n]:.4f}" for n in shown], style="bold")
    for split in ("validation", "test"):
        spread = trained.spread(split)
        if spread is not None:
            table.add_row(f"{split}, mean ± std", *[f"{spread[n][0]:.4f} ± {spread[n][1]:.4f}" for n in shown])
    console.print(table)
    metrics = trained.metrics
    console.print(f"{metrics.get('inference_ms_per_1000', float('nan')):.0f} ms per 1,000 sentences, "
                  f"{metrics.get('size_bytes', 0) / 1e6:.1f} MB on disk, trained in {metrics['seconds']:.0f}s")
    console.print(f"the combined model, its tokenizer, metrics.json, autobert.yaml and a model card (README.md) written "
                  f"to [bold]{out}[/]; label new data with `autobert predict {out} DATA --output FILE`")
    return 0


def _table(trained: TrainedRecipe) -> Table:
    """The scores: validation (and test) with one seed; each seed's validation and the mean ± std with several."""
    seeds, shown, first = trained.seeds, trained.shown, trained.runs.first
    table = Table(title=f"{trained.frozen.name}: trained recipe" + (f" on {len(seeds)} seeds" if len(seeds) > 1 else ""))
    table.add_column("split")
    for name in shown:
        table.add_column(name, justify="right")
    if len(seeds) == 1:
        table.add_row("validation", *[f"{first.metrics[n]:.4f}" for n in shown])
        if first.test_metrics:
            table.add_row("test", *[f"{first.test_metrics[n]:.4f}" for n in shown])
        return table
    for seed, r in zip(seeds, trained.runs.results):
        table.add_row(f"validation, seed {seed}", *[f"{r.metrics[n]:.4f}" for n in shown])
    for split in ("validation", "test"):
        spread = trained.spread(split)
        if spread is not None:
            table.add_row(f"{split}, mean ± std", *[f"{spread[n][0]:.4f} ± {spread[n][1]:.4f}" for n in shown])
    return table


__all__ = ["add_parser", "run"]
