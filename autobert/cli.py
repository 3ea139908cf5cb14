"""The ``autobert`` command line: the top-level parser, error handling and dispatch.

Each command is a module of :mod:`autobert.commands` with ``add_parser(subparsers)``
(its own arguments) and ``run(args) -> int`` (the exit code); adding a command
is adding its module to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys

from autobert.commands import ablate, best, cache, plugins, portfolio, predict, report, search, train, validate
from autobert.commands.console import err_console, print_error
from autobert.errors import AutobertError

#: The commands, in the order ``autobert --help`` lists them.
COMMANDS = (search, train, predict, ablate, best, report, validate, plugins, cache, portfolio)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autobert", description="Search BERT fine-tuning recipes.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers).set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.run(args)
    except AutobertError as exc:
        print_error(str(exc))
        return 2
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
