"""One module per `autobert` command: each parses its arguments and calls a library function.

A command module has ``add_parser(subparsers) -> ArgumentParser`` (its
subcommand, options and help) and ``run(args) -> int`` (the exit code); it is
registered by one line in :data:`autobert.cli.COMMANDS`. ``options`` and
``console`` are what several commands share, not commands.
"""
