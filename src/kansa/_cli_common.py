"""What every `kansa` sub-command shares: consoles, the --home/--store options, errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from kansa.errors import KansaError, VerificationError

console = Console(stderr=True, soft_wrap=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="KANSA_HOME", help="Ledger home (keys, config, SQLite store)."),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="KANSA_STORE",
        help="Store URL (sqlite:///PATH or postgresql://...); default: the home's store.",
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn kansa's errors into a clear message and exit code 1 (no traceback)."""
    try:
        yield
    except VerificationError as e:
        for p in e.problems:
            console.print(f"[red]✗[/] {escape(p)}")
        raise fail(f"verification failed: {len(e.problems)} problem(s) found") from None
    except KansaError as e:
        raise fail(str(e)) from None
