"""What every `kansa` command shares: consoles, the --home/--store options, errors,
tables that fit the terminal, and the two kinds of typer app a command module exposes
(:func:`command_group`, :func:`commands`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console, JustifyMethod, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from kansa.errors import KansaError, VerificationError

if TYPE_CHECKING:  # the click that typer runs on (its own copy since typer 0.2x)
    from typer._click.core import Context as ClickContext

    from kansa.api import Ledger

console = Console(stderr=True, soft_wrap=True)  # messages, errors, progress
out = Console(highlight=False, soft_wrap=True)  # results (standard output)

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


class HelpGroup(TyperGroup):
    """A command group that, run bare (``kansa``, ``kansa log``), prints its help on
    standard output and exits 0: asking what a command does is not an error."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            text = ctx.get_help()  # rich help prints itself; plain help is returned
            if text:
                typer.echo(text)
            ctx.exit(0)
        return super().parse_args(ctx, args)


def command_group(name: str, help: str, **settings: Any) -> typer.Typer:
    """The app of a command group, ``kansa NAME ...``. Run bare it prints its help and
    exits 0; ``settings`` (typer's) override that, e.g. a group that runs as a command
    itself (``kansa gateway``)."""
    settings = {"no_args_is_help": True, **settings}
    return typer.Typer(name=name, help=help, cls=HelpGroup, rich_markup_mode="markdown",
                       **settings)


def commands() -> typer.Typer:
    """The app of commands that join the group including it (``kansa init``, ...,
    ``kansa packs sign``, ...): it has no name, so ``parent.add_typer(app)`` adds its
    commands to the parent's."""
    return typer.Typer(rich_markup_mode="markdown")


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


def progress() -> Progress:
    """A progress bar on stderr, shown only on a terminal and gone when done."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def open_ledger(home: Path | None, store: str | None) -> Ledger:
    """The ledger of --home / --store (``kansa.Ledger.open``)."""
    from kansa.api import Ledger

    return Ledger.open(store, home=home)


def home_dir(home: Path | None) -> Path:
    """--home, or $KANSA_HOME / ./.kansa when it is not given."""
    from kansa.home import default_home

    return home if home is not None else default_home()


def system_facts(path: Path | None) -> dict[str, Any]:
    """The facts of a --systems file (none without one); a bad file is an error."""
    from kansa.policy.systems import SystemsError, load_systems

    try:
        return load_systems(path)
    except SystemsError as e:
        raise fail(str(e)) from None


REPORT_FORMATS = ("html", "pdf")


def report_formats(value: str) -> list[str]:
    """--format: html, pdf or html,pdf (each once, in the order given)."""
    wanted = [f.strip().lower() for f in value.split(",") if f.strip()]
    bad = [f for f in wanted if f not in REPORT_FORMATS]
    if bad or not wanted:
        raise fail(f"--format takes html, pdf or html,pdf (got {value!r})")
    return list(dict.fromkeys(wanted))

# -- tables that fit the terminal ---------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a :func:`fit_table`.

    ``priority`` 0 columns are always shown; when the console is too narrow, the column
    with the highest priority number (the rightmost among equals) is left out first.
    A ``whole`` column (ids, pack refs, hashes, dates) is never wrapped nor cut: it is as
    wide as its widest cell. Other columns wrap at spaces and are never narrower than
    their header's longest word, nor than ``min_width`` unless all their cells are: a
    word wider than that is folded (so names, such as systems and models, take a larger
    one).
    """

    header: str
    priority: int = 0
    whole: bool = False
    min_width: int = 10
    justify: JustifyMethod = "left"
    style: str | None = None


@dataclass
class FittedTable:
    """A table laid out for one console width, and the columns it had to leave out."""

    table: Table
    hidden: list[str]
    width: int


def _as_text(console: Console, cell: RenderableType) -> RenderableType:
    return console.render_str(cell) if isinstance(cell, str) else cell


def _extent(console: Console, cell: RenderableType) -> tuple[int, int]:
    """(longest word, longest line) of a cell, in terminal cells (CJK counts double)."""
    if isinstance(cell, Text):
        lines = cell.plain.splitlines() or [""]
        words = [w for line in lines for w in line.split()] or [""]
        return max(cell_len(w) for w in words), max(cell_len(line) for line in lines)
    m = Measurement.get(console, console.options, cell)
    return m.minimum, m.maximum


def fit_table(console: Console, columns: Sequence[Column],
              rows: Iterable[Sequence[RenderableType]], *, title: str | None = None,
              width: int | None = None) -> FittedTable:
    """Lay a table out for ``width`` (default: the console's), never crushing a column.

    When every cell fits on one line the table is boxed as usual. Otherwise it is drawn
    without borders (two spaces between columns), columns are left out by priority until
    the rest fit at their minimum widths, and the room left is shared out so that the
    columns that wrap get as close to their natural width as they can.
    """
    width = width or console.width
    body = [[_as_text(console, c) for c in row] for row in rows]
    n = len(columns)
    extents = [_extent(console, Text(c.header)) for c in columns]
    natural = [ext[1] for ext in extents]
    for row in body:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], _extent(console, cell)[1])
    if sum(natural) + 1 + 3 * n <= width:
        table = Table(title=title)
        for c in columns:
            table.add_column(c.header, justify=c.justify, style=c.style,
                             no_wrap=c.whole)
        for row in body:
            table.add_row(*row)
        return FittedTable(table, [], sum(natural) + 1 + 3 * n)

    # a wrapping column is never narrower than its header's longest word, nor than
    # min_width unless every cell is narrower
    least = [natural[i] if c.whole else max(extents[i][0], min(natural[i], c.min_width))
             for i, c in enumerate(columns)]
    shown = list(range(n))

    def needed(idx: list[int]) -> int:
        return sum(least[i] for i in idx) + 2 * (len(idx) - 1)

    while needed(shown) > width:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    widths = {i: least[i] for i in shown}
    # still too wide with only the columns that must stay: the wrapping ones give up
    # their preferred minimum, down to their header's longest word; whole ones never shrink
    excess = needed(shown) - width
    while excess > 0:
        slack = {i: widths[i] - extents[i][0] for i in shown if not columns[i].whole}
        if not slack or max(slack.values()) <= 0:
            break
        widths[max(slack, key=lambda i: (slack[i], i))] -= 1
        excess -= 1
    room = width - sum(widths.values()) - 2 * (len(shown) - 1)
    # share the room out: first unwrap the columns that matter most (and, among equals,
    # those that need least to reach their natural width), then evenly among the rest
    for i in sorted(shown, key=lambda i: (columns[i].priority, natural[i] - widths[i], i)):
        if 0 < natural[i] - widths[i] <= room:
            room -= natural[i] - widths[i]
            widths[i] = natural[i]
    while room > 0:
        short = [i for i in shown if widths[i] < natural[i]]
        if not short:
            break
        share = max(1, room // len(short))
        for i in short:
            add = min(share, natural[i] - widths[i], room)
            widths[i] += add
            room -= add
            if room == 0:
                break
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1))
    for i in shown:
        c = columns[i]
        table.add_column(c.header, justify=c.justify, style=c.style, width=widths[i],
                         no_wrap=c.whole, overflow="ellipsis" if c.whole else "fold")
    for row in body:
        table.add_row(*(row[i] for i in shown))
    return FittedTable(table, [columns[i].header for i in range(n) if i not in shown],
                       sum(widths.values()) + 2 * (len(shown) - 1))


def print_table(out: Console, columns: Sequence[Column],
                rows: Iterable[Sequence[RenderableType]], *, title: str | None = None,
                more: str = "--json") -> None:
    """Print :func:`fit_table` on ``out`` and, on stderr, which columns it left out."""
    fitted = fit_table(out, columns, rows, title=title)
    out.print(fitted.table)
    if fitted.hidden:
        console.print(f"[dim]not shown at {out.width} columns: {escape(', '.join(fitted.hidden))}"
                      f" (widen, or use {escape(more)})[/]", soft_wrap=False)
