"""``kansa packs``: rule packs (YAML). Validating and showing them here; signing, trust,
feeds and activation in ``packs_feed``, NIST OSCAL in ``packs_oscal``: their commands
join this group."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from kansa.cli import packs_feed, packs_oscal
from kansa.cli._common import command_group, fail, out

app = command_group("packs", "Validate and inspect rule packs (YAML).")


@app.command("validate")
def validate(files: Annotated[list[Path], typer.Argument(help="Pack files.")]) -> None:
    """Check pack files strictly; print each pack's id@version and hash, or file:line: why."""
    from kansa.policy.pack import PackError, load_pack

    failed = 0
    for f in files:
        try:
            p = load_pack(f)
        except PackError as e:
            out.print(f"[red]✗[/] {escape(str(e))}")
            failed += 1
            continue
        out.print(f"[green]✓[/] {escape(str(f))}: {escape(p.ref)} ({p.status}, "
                  f"{len(p.obligations)} obligations) {p.hash}")
    if failed:
        raise typer.Exit(1)


@app.command("show")
def show(file: Annotated[Path, typer.Argument(help="A pack file.")]) -> None:
    """Print a pack's obligations: citation, role, force, dates, check or evidence."""
    from kansa.policy.pack import PackError, load_pack

    try:
        p = load_pack(file)
    except PackError as e:
        raise fail(str(e)) from None
    # wrapped at words to the terminal; one block per obligation (a table of seven columns,
    # one of them CEL, crushed every column at 80)
    say = partial(out.print, soft_wrap=False)
    say(Text(p.title, style="bold"))
    say(f"{escape(p.ref)}  {p.hash}")
    say(f"publisher: {escape(p.publisher)}; jurisdiction: {escape(p.jurisdiction)}; "
        f"status: {p.status}; in force {p.effective_from} → "
        f"{p.effective_until or '…'} ({p.timezone})")
    for src in p.sources:
        out.print(f"source: {escape(src)}", soft_wrap=True)  # a URL stays whole, to copy
    for o in p.obligations:
        say()
        say(Text.assemble((o.id, "bold"), f"  {o.citation}"))
        lines = [f"{o.role}, {o.legal_force}, in force {o.effective_from} → "
                 f"{o.effective_until or '…'}"]
        if o.check:
            lines += [f"applies: {o.check.applies or 'always'}", f"expr: {o.check.expr}"]
        elif o.evidence:
            lines.append(f"evidence ({o.evidence.kind}): {o.evidence.description}")
        lines += [f"transition: if {tr.applies_if} → from {tr.effective_from or '='} "
                  f"until {tr.effective_until or '='}" for tr in o.transitions]
        for line in lines:  # Text: a CEL "[...]" is not markup
            say(Padding(Text(line), (0, 0, 0, 2)))


app.add_typer(packs_feed.app)  # sign, trust, add/update from feeds, list, activate
app.add_typer(packs_oscal.app)  # export-oscal, import-oscal, crosswalk-oscal
