"""``autobert plugins``: the installed techniques, their parameter spaces and settings (a table, or JSON)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from autobert.commands.console import console


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plugins", help="list techniques and their parameter spaces")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--disable", action="append", default=[], metavar="NAME")
    return p


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `autobert --help` builds every command's parser and stays light (no pydantic,
    # optuna or torch) that way.
    from autobert.config.settings import declared_settings
    from autobert.run.plugin_manager import get_plugin_manager

    pm = get_plugin_manager(disable=args.disable)
    space = pm.effective_space()
    declared = declared_settings(pm)
    listing: list[dict[str, Any]] = []
    for name, technique in sorted(pm.techniques.items()):
        params = [spec.to_dict() for n, spec in sorted(space.defaults.items()) if spec.technique == name]
        settings = [{"name": n, "default": s.default, "help": s.help, "path": s.path}
                    for n, s in sorted(declared.items()) if n.split(".", 1)[0] == name]
        listing.append({"name": name, "module": technique.module, "source": technique.source, "parameters": params,
                        "settings": settings})
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="autobert techniques")
    for col in ("technique", "source", "parameter", "space"):
        table.add_column(col)
    for entry in listing:
        specs = [s for s in space.defaults.values() if s.technique == entry["name"]]
        first = True
        for spec in sorted(specs, key=lambda s: s.name) or [None]:
            table.add_row(
                entry["name"] if first else "", entry["source"] if first else "",
                spec.short_name if spec else "—", spec.describe() if spec else "",
            )
            first = False
        for setting in entry["settings"]:
            table.add_row("", "", setting["name"].split(".", 1)[1],
                          f"setting, default {setting['default']!r}" + (f": {setting['help']}" if setting["help"] else ""))
    console.print(table)
    return 0


__all__ = ["add_parser", "run"]
