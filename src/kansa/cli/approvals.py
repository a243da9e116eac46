"""``kansa approvals list|approve|deny``: decide calls held by ``require_approval``.

    kansa approvals list                       # pending ones (--all for every one)
    kansa approvals approve apr_0123... --by alice --note "ticket 42"
    kansa approvals deny apr_0123...
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from kansa.cli._common import (
    Column,
    HomeOpt,
    StoreOpt,
    command_group,
    console,
    errors,
    out,
    print_table,
)

if TYPE_CHECKING:
    from kansa.policy.approvals import Approvals

app = command_group(
    "approvals",
    "Calls held by a require_approval obligation wait here. Approve one and the caller "
    "retries it with the header x-kansa-approval: ID; it passes once.",
)

ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (default: your login).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why (kept with the approval).")]


def _approvals(home: HomeOpt, store: StoreOpt) -> Approvals:
    from kansa.home import Home
    from kansa.ledger.storage import open_store
    from kansa.policy.approvals import Approvals

    return Approvals(open_store(store or Home.load(home).store_url))


def _when(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("list")
def list_command(
    all_: Annotated[bool, typer.Option("--all", help="Every approval, not only pending.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """List approval requests (pending ones unless --all)."""
    with errors():
        ap = _approvals(home, store)
        try:
            rows = ap.list(None if all_ else "pending")
        finally:
            ap.store.close()
    if as_json:
        out.print(json.dumps([a.as_dict() for a in rows], indent=2), markup=False)
        return
    if not rows:
        console.print("no approvals" if all_ else "no pending approvals")
        return
    # the id is what 'kansa approvals approve' takes: whole; dates break between day and time
    columns = [Column("id", whole=True), Column("status", whole=True),
               Column("requested", min_width=10), Column("system", priority=1),
               Column("obligations", priority=2, min_width=16),
               Column("expires", priority=3, min_width=10), Column("model", priority=4),
               Column("app", priority=5), Column("held record", priority=6, whole=True)]
    print_table(out, columns, [
        [escape(a.id), a.status, _when(a.created), escape(a.system),
         escape(", ".join(a.obligations)), _when(a.expires), escape(a.model or ""),
         escape(a.app or ""), escape(a.record_id)] for a in rows])


def _decide(approval_id: str, approve: bool, by: str | None, note: str | None,
            home: HomeOpt, store: StoreOpt) -> None:
    with errors():
        ap = _approvals(home, store)
        try:
            a = ap.decide(approval_id, approve=approve, by=by or _login(), note=note)
        finally:
            ap.store.close()
    if approve:
        console.print(f"approved {a.id}: the caller may now retry the held request once, with "
                      f"the header x-kansa-approval: {a.id}")
    else:
        console.print(f"denied {a.id}")


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@app.command("approve")
def approve_command(
    approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
    by: ByOpt = None,
    note: NoteOpt = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Approve a pending request: its retry (same request) passes once."""
    _decide(approval_id, True, by, note, home, store)


@app.command("deny")
def deny_command(
    approval_id: Annotated[str, typer.Argument(help="The approval id (apr_...).")],
    by: ByOpt = None,
    note: NoteOpt = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Deny a pending request: retries with it are refused."""
    _decide(approval_id, False, by, note, home, store)
