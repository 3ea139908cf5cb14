"""Where the commands print: results to standard output, warnings and errors to standard error."""

from __future__ import annotations

from typing import Iterable

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def print_error(text: str) -> None:
    """``error: <text>`` on standard error, the text as given (no rich markup read in it)."""
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_warnings(warnings: Iterable[str]) -> None:
    """``warning: <text>`` on standard error for each of ``warnings``."""
    for warning in warnings:
        err_console.print("[bold yellow]warning:[/] ", end="")
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)


def print_notes(notes: Iterable[str]) -> None:
    """``note: <text>`` on standard error for each of ``notes``: facts the user should know once, not problems."""
    for note in notes:
        err_console.print("[bold]note:[/] ", end="")
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)


__all__ = ["console", "err_console", "print_error", "print_notes", "print_warnings"]
