"""``kansa demo``: the whole flow, narrated, on a scenario clock (the story is
``_demo_story``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kansa.cli._common import commands, errors

app = commands()


@app.command()
def demo(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Where to create the demo ledger (default: a new "
                     "temporary directory)."),
    ] = None,
    records: Annotated[int, typer.Option(help="How many usage records to append.")] = 2000,
    now: Annotated[
        str | None,
        typer.Option("--now", help="The scenario's clock: an ISO 8601 time (e.g. "
                     "2026-11-18T09:00:00Z) or 'today' for the real clock. Default: "
                     "2026-11-18 09:00 UTC, inside the EU Omnibus's Art. 50(2) grace "
                     "period, so the 'a law changes' step has verdicts to change."),
    ] = None,
) -> None:
    """Create a ledger, record realistic AI traffic, erase a person, export, verify offline,
    prove one record, and show tampering being caught. Explains each step.

    The story runs on a fixed scenario clock so it is the same on any day; pass --now to
    move it."""
    from kansa.cli._demo_story import SCENARIO_NOW, run_demo

    with errors():
        # the story wraps at words to fit the terminal; commands and keys print whole
        run_demo(home, records, Console(highlight=False),
                 now=_demo_clock(now) if now else SCENARIO_NOW)


@app.command("demo-agent")
def demo_agent(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Where to create the demo ledger (an empty or new "
                     "directory; default: a new temporary directory)."),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option("--now", help="The scenario's clock: an ISO 8601 time or 'today'. "
                     "Default: 2026-11-18 09:00 UTC."),
    ] = None,
) -> None:
    """An agent reads a poisoned document and tries to mail the customer list out: the
    agent guard holds the call, a security officer rejects it, the agent's retry is
    refused, and the ledger alone proves the episode (verified, then read back).

    A scripted agent (no model, no network) on a scenario clock: the same story every
    run. The guard's rules and the approvals: 'kansa approvals --help'."""
    from kansa.cli._demo_agent import SCENARIO_NOW, run_cli

    with errors():
        run_cli(home, _demo_clock(now) if now else SCENARIO_NOW, Console(highlight=False))


def _demo_clock(text: str) -> datetime:
    """``--now``: 'today'/'now' for the real clock, else an ISO 8601 time (UTC if naive)."""
    if text.strip().lower() in ("today", "now"):
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. "
                                 "2026-11-18T09:00:00Z) nor 'today'", param_hint="--now") \
            from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
