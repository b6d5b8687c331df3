"""Tables for people and for pipes: a rich table on a terminal, tab-separated lines otherwise (as ``ls`` and ``git``
print a different layout when their output is piped). ``--json`` on the commands that print tables is the other
choice for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

import click


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None, stream: IO[str] | None = None
) -> None:
    """``rows`` under ``headers``: boxed on a terminal; else one tab-separated line per row, no header and no title,
    a value's own tabs and line breaks turned into spaces, None as an empty field."""
    stream = stream or sys.stdout
    if stream.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        Console(file=stream).print(table)
        return
    for row in rows:
        click.echo("\t".join("" if value is None else " ".join(str(value).split()) for value in row), file=stream)
