"""``kansa approvals list|show|approve|reject|edit|serve``: decide held calls.

    kansa approvals list                       # pending ones (--all for every one)
    kansa approvals show apr_0123...           # one approval, with a tool call's arguments
    kansa approvals approve apr_0123... --by alice --reason "ticket 42"
    kansa approvals reject apr_0123... --reason "mails data to an outside address"
    kansa approvals edit apr_0123... --arguments '{"to": "boss@example.co.jp"}'
    kansa approvals serve --token alice=s3cret  # the same over HTTP, for a review tool

Every decision is appended to the ledger as a record (kind kansa.event, operation
approval.<decision>). ``deny`` is the old name of ``reject`` and still works.

Listed in ``kansa.cli.COMMANDS``.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from kansa.cli._common import (
    Column,
    HomeOpt,
    StoreOpt,
    command_group,
    console,
    errors,
    fail,
    out,
    print_table,
)

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.policy.approvals import Approvals

app = command_group(
    "approvals",
    "Calls held for a person's decision wait here: model calls held by a "
         "require_approval obligation, and agent tool calls held by the agent guard. "
         "Approve, reject or edit one (each decision is a ledger record); the caller then "
         "resumes it with the approval id (a model call: header x-kansa-approval: ID; a "
         "tool: kansa.context(approval=ID)) and it passes once, with exactly the approved "
         "(or edited) arguments. Undecided approvals expire (the policy's or the agent "
         "guard's approval_ttl_hours).",
)

ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (default: your login).")]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", "--note", help="Why: kept with the approval and in the decision's record.")]
IdArg = Annotated[str, typer.Argument(help="The approval id (apr_...), as 'list' shows it.")]


def _approvals(home: HomeOpt, store: StoreOpt) -> Approvals:
    from kansa.home import Home
    from kansa.ledger.storage import open_store
    from kansa.policy.approvals import Approvals

    return Approvals(open_store(store or Home.load(home).store_url))


def _ledger(home: HomeOpt, store: StoreOpt) -> Ledger:
    from kansa.api import Ledger

    return Ledger.open(store, home=home)


def _when(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _now_us() -> int:
    from kansa._time import to_us

    return to_us(datetime.now(UTC))


@app.command("list")
def list_command(
    all_: Annotated[bool, typer.Option("--all", help="Every approval, not only pending.")] = False,
    status: Annotated[str | None, typer.Option(
        "--status", help="Only this state: pending, approved, rejected, edited, expired, used."
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """List approval requests (pending ones unless --all or --status).

    An undecided or unused approval past its expiry shows as expired."""
    with errors():
        ap = _approvals(home, store)
        try:
            now = _now_us()
            rows = ap.list(None if all_ and status is None else (status or "pending"), now=now)
        finally:
            ap.store.close()
    if as_json:
        out.print(json.dumps([a.as_dict(now) for a in rows], indent=2), markup=False)
        return
    if not rows:
        console.print("no approvals" if all_ or status else "no pending approvals")
        return
    # the id is what 'kansa approvals approve' takes: whole; dates break between day and time
    columns = [Column("id", whole=True), Column("state", whole=True),
               Column("requested", min_width=10), Column("system", priority=1),
               Column("held by", priority=2, min_width=16),
               Column("expires", priority=3, min_width=10), Column("tool", priority=4),
               Column("model", priority=5), Column("app", priority=6),
               Column("held record", priority=7, whole=True)]
    print_table(out, columns, [
        [escape(a.id), a.state(now), _when(a.created), escape(a.system),
         escape(", ".join(a.obligations)), _when(a.expires), escape(a.tool or ""),
         escape(a.model or ""), escape(a.app or ""), escape(a.record_id)] for a in rows])


@app.command("show")
def show_command(
    approval_id: IdArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """One approval: its state, what held it, and for a tool call the tool and the
    arguments it was asked with (and the edited ones, if edited)."""
    with errors():
        ap = _approvals(home, store)
        try:
            a = ap.get(approval_id)
        finally:
            ap.store.close()
        if a is None:
            raise fail(f"no approval {approval_id!r}")
    now = _now_us()
    if as_json:
        out.print(json.dumps(a.as_dict(now), indent=2), markup=False)
        return
    lines = [("id", a.id), ("state", a.state(now)), ("system", a.system),
             ("app", a.app or ""), ("model", a.model or ""), ("held record", a.record_id),
             ("held by", ", ".join(a.obligations)), ("requested", _when(a.created)),
             ("expires", _when(a.expires)), ("digest", a.digest)]
    if a.tool is not None:
        lines += [("tool", a.tool), ("arguments", json.dumps(a.arguments, ensure_ascii=False))]
    if a.was_edited:
        lines.append(("edited to", json.dumps(a.edited, ensure_ascii=False)))
    if a.decided is not None:
        lines += [("decided", f"{_when(a.decided)} by {a.decided_by or '?'}"),
                  ("reason", a.note or ""), ("decision record", a.decision_record or "")]
    if a.used is not None:
        lines.append(("used", f"{_when(a.used)} by record {a.used_by}"))
    for k, v in lines:
        out.print(f"{k + ':':<17}{v}", markup=False)


def _decide(approval_id: str, decision: str, by: str | None, reason: str | None,
            home: HomeOpt, store: StoreOpt, arguments: Any = None) -> None:
    from kansa.policy.approvals import Approvals

    with errors():
        led = _ledger(home, store)
        try:
            ap = Approvals.for_ledger(led)
            who = by or _login()
            if decision == "approved":
                a = ap.approve(approval_id, by=who, reason=reason)
            elif decision == "rejected":
                a = ap.reject(approval_id, by=who, reason=reason)
            else:
                a = ap.edit(approval_id, arguments, by=who, reason=reason)
        finally:
            led.close()
    rec = f" (record {a.decision_record})" if a.decision_record else ""
    if decision == "rejected":
        console.print(f"rejected {a.id}{rec}: resuming the held call with it is refused")
    else:
        what = "with the edited arguments" if decision == "edited" else "unchanged"
        console.print(f"{decision} {a.id}{rec}: the caller may now resume the held call once, "
                      f"{what}, with the approval id {a.id} (header x-kansa-approval)")


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@app.command("approve")
def approve_command(approval_id: IdArg, by: ByOpt = None, reason: ReasonOpt = None,
                    home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Approve a pending request: the same call, resumed with the id, passes once."""
    _decide(approval_id, "approved", by, reason, home, store)


@app.command("reject")
def reject_command(approval_id: IdArg, by: ByOpt = None, reason: ReasonOpt = None,
                   home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Reject a pending request: resuming the call with it is refused."""
    _decide(approval_id, "rejected", by, reason, home, store)


@app.command("deny", hidden=True)
def deny_command(approval_id: IdArg, by: ByOpt = None, reason: ReasonOpt = None,
                 home: HomeOpt = None, store: StoreOpt = None) -> None:
    """The old name of 'reject'."""
    _decide(approval_id, "rejected", by, reason, home, store)


def _read_arguments(text: str | None, file: Path | None) -> Any:
    if (text is None) == (file is None):
        raise fail("give the edited arguments with --arguments JSON or --arguments-file FILE")
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    assert text is not None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise fail(f"--arguments is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
                   ) from None


@app.command("edit")
def edit_command(
    approval_id: IdArg,
    arguments: Annotated[str | None, typer.Option(
        "--arguments", help="The arguments the tool call must use instead, as a JSON "
                            "object (all of them, not a patch).")] = None,
    arguments_file: Annotated[Path | None, typer.Option(
        "--arguments-file", help="Read the JSON arguments from FILE ('-': standard input).")
    ] = None,
    by: ByOpt = None, reason: ReasonOpt = None, home: HomeOpt = None, store: StoreOpt = None,
) -> None:
    """Approve a held *tool call* with corrected arguments: it passes once, and only if
    it is resumed with exactly these arguments ('kansa approvals show' prints them)."""
    args = _read_arguments(arguments, arguments_file)
    _decide(approval_id, "edited", by, reason, home, store, arguments=args)


@app.command("serve")
def serve_command(
    token: Annotated[list[str], typer.Option(
        "--token", envvar="KANSA_APPROVALS_TOKENS",
        help="NAME=SECRET: a bearer token and the approver it stands for (repeat for "
             "several; the environment variable takes them space-separated). Decisions "
             "are recorded as made by NAME.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8790,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Serve the approvals over HTTP (JSON), for a review tool or a chat bot.

    GET /approvals (?status=pending), GET /approvals/ID, POST /approvals/ID/approve,
    /reject or /edit with {"reason": "...", "arguments": {...}}; every request carries
    Authorization: Bearer SECRET, and the decision is recorded as made by that secret's
    NAME."""
    import uvicorn

    from kansa.capture.approvals_http import create_approvals_app, parse_tokens

    with errors():
        tokens = parse_tokens([t for v in token for t in v.split()])
        led = _ledger(home, store)
    try:
        console.print(f"approvals on http://{host}:{port}/approvals "
                      f"({len(tokens)} approver token(s))")
        uvicorn.run(create_approvals_app(led, tokens), host=host, port=port,
                    log_level="warning")
    finally:
        led.close()
