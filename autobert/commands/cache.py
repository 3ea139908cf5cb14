"""``autobert cache``: list or prune the cache of every kind (stages, teachers, task models, masks, ...)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from autobert.commands.console import console
from autobert.stage_cache import StageCache


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cache", help="list or prune the cache of every kind: further-pretraining stages, "
                                            "distillation teachers, task models, maskers, masks, augmented rows and "
                                            "plugins' own kinds")
    p.add_argument("action", choices=["ls", "prune"])
    p.add_argument("study", help="the study YAML file (its cache_dir, default <study dir>/cache), or a cache folder")
    p.add_argument("--kind", "--namespace", dest="kind",
                   help="only this kind of entry (stage, teacher, task-model, masker, mask, augmentation, or a "
                        "plugin's)")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="prune: entries unused for this many days")
    p.add_argument("--all", action="store_true", help="prune: every entry")
    return p


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `autobert --help` builds every command's parser and stays light (no pydantic,
    # optuna or torch) that way.
    from autobert.config.schema import load_study

    target = Path(args.study)
    root = target if target.is_dir() else load_study(target).cache_path
    cache = StageCache(root)
    if args.action == "prune":
        return _prune(cache, root, args)
    entries = cache.entries(args.kind)
    table = Table(title=f"cache {root}")
    for col in ("kind", "entry", "size", "age", "hits", "last use", "built from"):
        table.add_column(col, justify="left" if col in ("kind", "entry", "built from") else "right")
    now = time.time()
    for e in sorted(entries, key=lambda e: (e.kind, e.last_used)):
        short = e.key if len(e.key) <= 20 else f"{e.key[:8]}…{e.key[-8:]}"
        table.add_row(e.kind, short, f"{e.size / 2**20:.1f} MiB", _age(now - e.created), str(e.hits),
                      f"{_age(now - e.last_used)} ago", e.summary())
    console.print(table)
    leftovers = list(cache.leftovers(args.kind))
    by_kind: dict[str, list] = {}
    for e in entries:
        by_kind.setdefault(e.kind, []).append(e)
    kinds = "; ".join(f"{kind} {len(found)} ({sum(e.size for e in found) / 2**20:.1f} MiB)"
                      for kind, found in sorted(by_kind.items()))
    total = sum(e.size for e in entries)
    console.print(f"{len(entries)} entries, {total / 2**20:.1f} MiB, {sum(e.hits for e in entries)} hits"
                  + (f": {kinds}" if kinds else "")
                  + (f"; {len(leftovers)} unfinished build(s) (`autobert cache prune` removes them)" if leftovers else ""))
    return 0


def _prune(cache: StageCache, root: Path, args: argparse.Namespace) -> int:
    """Without --older-than or --all, only unfinished builds go."""
    if args.older_than is None and not args.all:
        removed = cache.prune(kind=args.kind)
    else:
        older = None if args.older_than is None else args.older_than * 86400
        removed = cache.prune(older_than=older, kind=args.kind, everything=args.all)
    console.print(f"removed {len(removed)} folder(s) from {root}" + ("" if args.all or args.older_than is not None
                  else " (unfinished builds only; add --older-than DAYS or --all for entries)"))
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


__all__ = ["add_parser", "run"]
