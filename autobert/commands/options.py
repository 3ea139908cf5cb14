"""Options and argument types several commands share: the study file's, the device, seed lists, counts."""

from __future__ import annotations

import argparse


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The study file, its storage and ``--disable``: what every command on a study takes."""
    parser.add_argument("study", help="the study YAML file")
    parser.add_argument("--storage", help="Optuna storage URL (default: SQLite file beside the study)")
    parser.add_argument("--disable", action="append", default=[], metavar="NAME",
                        help="turn a technique off (repeatable)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="cpu|cuda|cuda:N",
                        help="train on this device (default: the first GPU if there is one, else the CPU)")


def add_replay_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """The flags of a command that replays a frozen config (train, ablate): what its checks may let through."""
    parser.add_argument("--allow-data-change", action="store_true", help=f"{verb} even if the data's fingerprint changed")
    parser.add_argument("--allow-version-change", action="store_true",
                        help=f"{verb} even if a technique, autobert, torch, transformers or the model differs from the "
                             "recipe's provenance (each difference is then a warning; exact replay is not guaranteed)")


def prepare_replay(args: argparse.Namespace):
    """Select ``--device``, then load and check ``args.frozen`` (every replay check at once); print what it found."""
    # Imported here, not at the top: building the parser (`autobert --help`) stays light.
    from autobert.commands.console import print_notes, print_warnings
    from autobert.run.device import select_device
    from autobert.study.prepare import prepare_recipe

    select_device(args.device)  # before anything touches CUDA
    recipe = prepare_recipe(args.frozen, allow_data_change=args.allow_data_change,
                            allow_version_change=args.allow_version_change)
    print_warnings(recipe.warnings)
    print_notes(recipe.notes)
    return recipe


def at_least_one(what: str):
    """An argument type: a whole number, 1 or more, of ``what`` (the error names it)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of {what}, 1 or more")
        return value

    return parse


#: A count of workers (``--workers``).
positive = at_least_one("workers")


def seed_list(text: str) -> list[int]:
    """``0,1,2`` as ``[0, 1, 2]``: one or more distinct integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2,3,4") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more distinct integer seeds, e.g. 0,1,2,3,4")
    return seeds


__all__ = ["add_study_arguments", "add_device_argument", "add_replay_arguments", "prepare_replay", "positive", "seed_list"]
