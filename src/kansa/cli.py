"""The ``kansa`` command line. Every command teaches itself through ``--help``."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from kansa._cli_common import (
    Column,
    HelpGroup,
    HomeOpt,
    StoreOpt,
    console,  # noqa: E402  (one stderr console for all commands)
    print_table,
)
from kansa._cli_common import errors as _errors
from kansa._cli_common import fail as _fail
from kansa.capture.cli_gateway import gateway_app
from kansa.capture.cli_otel import otel_app
from kansa.errors import RecordError
from kansa.policy.cli_approvals import approvals_app
from kansa.policy.cli_oscal import findings_app
from kansa.policy.cli_policy import impact_command, packs_app, replay_command
from kansa.report.cli_report import evidence_app, report_app
from kansa.web.cli_web import serve_log, web_app

out = Console(highlight=False, soft_wrap=True)

app = typer.Typer(rich_markup_mode="markdown",
    name="kansa",
    cls=HelpGroup,
    help=(
        "kansa (監査): a tamper-evident, offline-verifiable ledger of AI usage records.\n\n"
        "Start with 'kansa demo' to see the whole flow, or 'kansa init' to create a ledger "
        "in $KANSA_HOME (default ./.kansa). Auditors need only the verifier key that "
        "'kansa key' prints and a directory written by 'kansa export'."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log_app = typer.Typer(
    rich_markup_mode="markdown", help="Append usage records and read them back.",
    no_args_is_help=True, cls=HelpGroup,
)
witness_app = typer.Typer(rich_markup_mode="markdown",
    help="Run a C2SP tlog-witness, or collect witness cosignatures for this log.",
    no_args_is_help=True, cls=HelpGroup,
)
app.add_typer(log_app, name="log")
app.add_typer(witness_app, name="witness")
app.add_typer(gateway_app, name="gateway", cls=HelpGroup)
app.add_typer(otel_app, name="otel", cls=HelpGroup)
app.add_typer(packs_app, name="packs", cls=HelpGroup)
app.add_typer(findings_app, name="findings", cls=HelpGroup)
app.add_typer(approvals_app, name="approvals", cls=HelpGroup)
app.command("replay")(replay_command)
app.command("impact")(impact_command)
app.add_typer(report_app, name="report", cls=HelpGroup)
app.add_typer(evidence_app, name="evidence", cls=HelpGroup)
app.add_typer(web_app, name="web", cls=HelpGroup)
app.command("serve-log")(serve_log)







def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed standard input
        return False


def _when(ts: str) -> str:
    """A record time for a table: the date and the time to the second (--json has it
    all), with a space between them so a narrow column breaks there, never inside."""
    day, sep, clock = ts.partition("T")
    return f"{day} {clock[:8]}" if sep else ts


def _progress() -> Progress:
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


def _open(home: Path | None, store: str | None) -> Any:
    from kansa.api import Ledger

    return Ledger.open(store, home=home)


# -- init and keys ------------------------------------------------------------------------


@app.command()
def init(
    home: HomeOpt = None,
    origin: Annotated[
        str | None,
        typer.Option(help="Log name, a schema-less URL like example.com/ai-log (default: "
                     "kansa.local/<host>/<random>). It is the key name auditors see."),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Create a ledger: an Ed25519 log key, a master key for content, and the store."""
    from kansa.api import Ledger

    with _errors():
        ledger = Ledger.init(home, origin=origin, url=store)
        try:
            assert ledger.home is not None
            out.print(f"Created ledger [bold]{escape(str(ledger.log.origin))}[/] in "
                      f"{escape(str(ledger.home.path))}")
            out.print(f"  store: {ledger.home.store_url}")
            out.print("  keys:  log.key and master.key (keep secret), log.vkey (publish)")
            out.print("Verifier key for auditors:")
            out.print(ledger.verifier.vkey)
        finally:
            ledger.close()


@app.command()
def key(home: HomeOpt = None) -> None:
    """Print the log's C2SP verifier key (last line), which is all an auditor needs."""
    from kansa.home import Home

    with _errors():
        h = Home.load(home)
        v = h.verifier()
        out.print(f"log:    {escape(v.name)}")
        out.print(f"key id: {v.key_id.hex()}")
        out.print(v.vkey)


# -- log append / show --------------------------------------------------------------------


APPEND_EXIT_CODES = """Exit status: 0 every record was appended (or the input held none); 1 an error
that is not about one line (unreadable file, not UTF-8: nothing was appended; store or
key problem); 2 nothing was appended because some lines are invalid;
3 with --skip-invalid, the valid lines were appended and the invalid ones skipped."""

EXIT_APPEND_PARTIAL = 3


@log_app.command("append", epilog=APPEND_EXIT_CODES)
def log_append(
    file: Annotated[
        str, typer.Argument(help="JSON Lines file of flat records, or - for standard input.")
    ] = "-",
    home: HomeOpt = None,
    store: StoreOpt = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(help="Append the valid lines and report the invalid ones (exit 3), "
                     "instead of appending nothing when any line is invalid (exit 2)."),
    ] = False,
) -> None:
    """Append usage records from JSON Lines, e.g.

    {"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "user-7",
    "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 31,
    "attributes": {"kansa.ai_disclosure": true}, "input": "...", "output": "..."}

    Content ('input', 'output', 'gen_ai.input.messages', ...) is stored encrypted per data
    subject; the ledger entry holds only a salted commitment to it. Every line is checked
    completely first (JSON, fields, canonical RFC 8785 encoding, the 65,535-byte entry
    bound): by default, one invalid line means nothing is appended.
    """
    from kansa.records.jsonl import bounded_lines, parse_numbered
    from kansa.records.model import UsageRecord

    with _errors():
        if file == "-" and _is_terminal(sys.stdin):
            # someone typed 'kansa log append' with nothing piped in: say what it waits for
            end = "Ctrl-Z then Enter" if sys.platform == "win32" else "Ctrl-D"
            console.print(f"reading JSON Lines from standard input… ({end} to end)")
        try:
            # UTF-8 whatever the locale (under C, Python decodes stdin with surrogateescape:
            # bytes that are not UTF-8 became lone surrogates), a leading BOM allowed
            stream = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="strict")
                      if file == "-" else open(file, encoding="utf-8-sig"))  # noqa: SIM115
        except OSError as e:
            raise _fail(f"cannot read {file}: {e.strerror}") from None
        try:
            numbered = list(parse_numbered(bounded_lines(stream)))
        except UnicodeDecodeError as e:
            raise _fail(f"{file}: not UTF-8 text ({e.reason}); nothing was appended") from None
        except OSError as e:
            raise _fail(f"cannot read {file}: {e.strerror}; nothing was appended") from None
        finally:
            if file == "-":
                stream.detach()  # leave sys.stdin open
            else:
                stream.close()

        def refuse_if_bad(parsed: list[UsageRecord | RecordError]) -> None:
            bad = [p for p in parsed if isinstance(p, RecordError)]
            if bad and (not skip_invalid or len(bad) == len(parsed)):
                for err in bad[:50]:
                    console.print(f"[red]✗[/] {escape(file)}: {escape(str(err))}")
                if len(bad) > 50:
                    console.print(f"[red]… and {len(bad) - 50} more invalid lines[/]")
                raise _fail(
                    f"{len(bad)} invalid line(s); nothing was appended"
                    + ("" if skip_invalid else " (fix them, or pass --skip-invalid)"),
                    code=2,
                )

        refuse_if_bad([p for _n, p in numbered])  # before the store is even opened
        if not numbered:
            out.print("no records to append")
            return
        ledger = _open(home, store)
        try:
            # ids the log already holds: errors now, with their line, before anything is
            # appended (the append refused them only after appending the lines before)
            taken = ledger.log.store.existing_ext_ids(
                [p.id for _n, p in numbered if isinstance(p, UsageRecord)])
            parsed = [RecordError(f"record id {p.id!r} is already in the log; record ids "
                                  "are unique (give this record another id, or leave the "
                                  "id out to get a fresh one)", line=n, field="id")
                      if isinstance(p, UsageRecord) and p.id in taken else p
                      for n, p in numbered]
            refuse_if_bad(parsed)
            bad = [p for p in parsed if isinstance(p, RecordError)]
            good = [p for p in parsed if isinstance(p, UsageRecord)]
            for err in bad[:50]:
                console.print(f"[red]✗[/] {escape(file)}: {escape(str(err))}")
            if len(bad) > 50:
                console.print(f"[red]… and {len(bad) - 50} more invalid lines[/]")
            with _progress() as prog:
                task = prog.add_task("appending", total=len(good))
                done = ledger.append_many(good, progress=lambda n: prog.advance(task, n))
            cp = ledger.checkpoint()
        finally:
            ledger.close()
        out.print(
            f"appended {len(done)} record(s) at {done[0].index}..{done[-1].index}; "
            f"checkpoint signed at size {cp.checkpoint.size}"
        )
        if bad:
            console.print(f"[yellow]skipped {len(bad)} invalid line(s)[/]")
            raise typer.Exit(EXIT_APPEND_PARTIAL)


@log_app.command("show")
def log_show(
    home: HomeOpt = None,
    store: StoreOpt = None,
    since: Annotated[str | None, typer.Option(help="From this time (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (RFC 3339).")] = None,
    system: Annotated[str | None, typer.Option(help="Only this system.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this request or response model.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this data subject.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 50,
    content: Annotated[bool, typer.Option(help="Decrypt and show content too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show records, oldest first, filtered by time, system, model and subject."""
    with _errors():
        ledger = _open(home, store)
        try:
            rows = list(
                ledger.find(since=since, until=until, system=system, model=model,
                            subject=subject, limit=limit, with_content=content)
            )
        finally:
            ledger.close()
        if as_json:
            for r in rows:
                obj = {"index": r.index, "entry": r.entry, "content_state": r.content_state}
                if content:
                    obj["content"] = r.content
                    if r.content_problem:
                        obj["content_problem"] = r.content_problem
                # stored text goes out verbatim: plain writes, never through rich, whose
                # markup would drop "[tool]" and choke on "[/INST]"
                sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        # the record id is what 'kansa prove' takes: always shown, never cut
        columns = [Column("#", priority=3, whole=True, justify="right"),
                   Column("record id", whole=True),
                   Column("time (UTC)", min_width=10),
                   Column("system", priority=1, min_width=24),
                   Column("model", priority=2, min_width=24),
                   Column("outcome", whole=True),
                   Column("tokens in/out", priority=4, min_width=7),
                   Column("kind", priority=5)]
        if content:
            columns.append(Column("content", min_width=24))
        table: list[list[RenderableType]] = []
        for r in rows:
            e = r.entry
            # Text cells: a recorded "[tool]" or "[/INST]" is text, not rich markup
            cells: list[RenderableType] = [Text(c) for c in (
                str(r.index),
                str(r.id),
                _when(str(e.get("ts", ""))),
                str(e.get("system", "")),
                str(e.get("gen_ai.request.model", e.get("gen_ai.response.model", ""))),
                str(e.get("outcome", "")),
                f"{e.get('gen_ai.usage.input_tokens', '-')}/"
                f"{e.get('gen_ai.usage.output_tokens', '-')}",
                str(e.get("kind", "")),
            )]
            if content:
                if r.content_state == "erased":
                    cells.append(Text("erased", style="italic"))
                elif r.content_state == "missing":
                    cells.append(Text(f"missing: {r.content_problem}", style="bold red"))
                elif r.content is None:
                    cells.append(Text(""))
                else:
                    text = json.dumps(r.content, ensure_ascii=False)
                    cells.append(Text(text[:80] + ("…" if len(text) > 80 else "")))
            table.append(cells)
        print_table(out, columns, table)
        out.print(f"{len(rows)} record(s)")


# -- checkpoints, export, verification, receipts -----------------------------------------


@app.command()
def checkpoint(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Sign a checkpoint for the current tree (if it grew) and print the signed note."""
    with _errors():
        ledger = _open(home, store)
        try:
            cp = ledger.checkpoint()
            cos = ledger.log.store.cosignatures(cp.checkpoint.size)
        finally:
            ledger.close()
        sys.stdout.write(cp.note.to_text() + "".join(cos))


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="New directory to write (must not exist).")],
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write the log as a C2SP tlog-tiles directory: checkpoint, tiles, entry bundles.

    Anyone can check it offline with 'kansa verify DIR --key VKEY'.
    """
    with _errors():
        ledger = _open(home, store)
        try:
            with _progress() as prog:
                task = prog.add_task("exporting", total=None)

                def tick(done: int, total: int) -> None:
                    prog.update(task, completed=done, total=total)

                summary = ledger.export(directory, progress=tick)
            vkey = ledger.verifier.vkey
        finally:
            ledger.close()
        out.print(f"exported {summary}")
        out.print(f"verify with: kansa verify {directory} --key '{vkey}'")


def _kept_note(raw: bytes) -> bytes:
    """A checkpoint file as given: a signed note, or a $KANSA_HOME/latest-checkpoint.json
    (the copy the log keeps outside its store), whose note is taken out of it."""
    if raw.lstrip()[:1] == b"{":
        try:
            obj = json.loads(raw)
        except ValueError:
            return raw
        note = obj.get("note") if isinstance(obj, dict) else None
        if isinstance(note, str):
            return note.encode("utf-8", "surrogateescape")
    return raw


@app.command()
def verify(
    directory: Annotated[
        Path | None,
        typer.Argument(help="An exported directory; omit to verify the live store."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="The log's verifier key (name+keyid+base64). Required "
                     "for a directory; defaults to the home's log.vkey for the live store."),
    ] = None,
    checkpoint_file: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="A checkpoint of this log kept from before (an "
                     "auditor's copy, e.g. the 'checkpoint' file of an earlier export): "
                     "what is verified must extend it (repeatable)."),
    ] = None,
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness verifier key whose cosignatures are "
                     "verified (repeatable); others are counted as not verified."),
    ] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Check every entry, tile and checkpoint against the verifier key.

    For an exported directory nothing else is trusted: kansa recomputes every hash. The
    live store is also checked against the latest checkpoint kept in $KANSA_HOME (a
    store rolled back to an old backup fails), and each record's time, id, subject
    pseudonym and stored content against its entry.
    """
    from kansa.ledger.files import MAX_CHECKPOINT_BYTES, read_bounded
    from kansa.ledger.note import Verifier

    with _errors():
        known: list[bytes] = []
        for f in checkpoint_file or []:
            try:
                raw = read_bounded(f, MAX_CHECKPOINT_BYTES)
            except OSError as e:
                raise _fail(f"cannot read {f}: {e.strerror}") from None
            known.append(_kept_note(raw))
        witnesses = [Verifier.parse(w) for w in witness or []]
        with _progress() as prog:
            task = prog.add_task("verifying", total=None)

            def tick(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)

            if directory is not None:
                if key is None:
                    raise _fail("verifying a directory needs --key (the log's verifier key)")
                from kansa.ledger.verify import verify_directory

                report = verify_directory(directory, Verifier.parse(key), progress=tick,
                                          known_checkpoints=known, witnesses=witnesses)
            else:
                ledger = _open(home, store)
                try:
                    if key is not None and Verifier.parse(key) != ledger.verifier:
                        raise _fail("--key is not this log's verifier key")
                    report = ledger.verify(progress=tick, known_checkpoints=known,
                                           witnesses=witnesses)
                finally:
                    ledger.close()
        out.print(f"[green]✓[/] verified: {escape(str(report))}")


@app.command()
def prove(
    ref: Annotated[
        str | None, typer.Argument(help="Record id (always an id, even if all digits).")
    ] = None,
    index: Annotated[
        int | None, typer.Option("--index", help="Prove the entry at this index instead.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write a C2SP tlog-proof receipt for one record: its entry, inclusion proof and the
    signed checkpoint it is proven against. Check it with 'kansa verify-receipt'.

    'kansa prove 7' proves the record whose id is "7"; 'kansa prove --index 7' the entry
    at index 7."""
    with _errors():
        if (ref is None) == (index is None):
            raise _fail("give a record id, or --index N for an entry index (not both)")
        ledger = _open(home, store)
        try:
            receipt = ledger.prove(ref if ref is not None else index)
        finally:
            ledger.close()
        if output is None:
            sys.stdout.write(receipt.decode())
        else:
            output.write_bytes(receipt)
            console.print(f"receipt written to {output}")


@app.command("verify-receipt")
def verify_receipt_cmd(
    file: Annotated[Path, typer.Argument(help="A .tlog-proof receipt from 'kansa prove'.")],
    key: Annotated[str, typer.Option("--key", help="The log's verifier key.")],
    witness: Annotated[
        list[str] | None,
        typer.Option("--witness", help="A witness verifier key that must have cosigned "
                     "(repeatable)."),
    ] = None,
) -> None:
    """Check a receipt offline: the entry is in the tree the log signed."""
    from kansa.ledger.files import MAX_RECEIPT_BYTES, read_bounded
    from kansa.ledger.note import Verifier
    from kansa.ledger.receipt import verify_receipt

    with _errors():
        try:
            data = read_bounded(file, MAX_RECEIPT_BYTES)
        except OSError as e:
            raise _fail(f"cannot read {file}: {e.strerror}") from None
        witnesses = [Verifier.parse(w) for w in (witness or [])]
        r = verify_receipt(data, Verifier.parse(key), None, witnesses=witnesses,
                           min_witnesses=len(witnesses))
        # the origin and the entry come from the receipt file: printed verbatim
        out.print(Text.assemble(("✓", "green"), f" entry {r.index} is in the log "
                                f"{r.checkpoint.origin} at size {r.checkpoint.size}"))
        if r.extra:
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(r.extra), ensure_ascii=False, indent=2)
                sys.stdout.write(text + "\n")
                sys.stdout.flush()


# -- erasure -----------------------------------------------------------------------------


@app.command()
def erase(
    subject: Annotated[str, typer.Option("--subject", help="The data subject to erase.")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the log).")] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Erase a data subject (APPI / GDPR): destroy their key, salts and content.

    The log's entries and every proof stay valid; the subject's content becomes
    unrecoverable and their pseudonym unlinkable to them. The erasure is itself a record.
    """
    with _errors():
        ledger = _open(home, store)
        try:
            e = ledger.erase(subject, reason=reason)
        finally:
            ledger.close()
        if e.completed:
            out.print(f"no live key for the subject; an earlier erase of pseudonym(s) "
                      f"{', '.join(e.completed)} had stopped before recording itself: "
                      f"its record is now appended (last: entry {e.record.index})")
        if e.pseudonym is not None or e.contents_destroyed or not e.completed:
            who = (f"erased subject (pseudonym {e.pseudonym})" if e.pseudonym is not None
                   else "no live key for the subject; swept content that arrived late")
            out.print(
                f"{who}: {e.contents_destroyed} content record(s) destroyed; erasure "
                f"recorded as entry {e.record.index} ({e.record.id})"
            )
        if not e.scrubbed:
            out.print("[yellow]warning:[/] a transaction older than the erasure was still "
                      "open, so an old copy of the subject's key root may remain in the "
                      "store's files (SQLite WAL, PostgreSQL dead tuple); run the same erase "
                      "again once it has finished")


# -- witnessing ---------------------------------------------------------------------------


@witness_app.command("keygen")
def witness_keygen(
    name: Annotated[str, typer.Option(help="Witness name, e.g. witness.example.org/w1.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the secret key.")],
) -> None:
    """Create a witness key (C2SP cosignature/v1, Ed25519); prints its verifier key."""
    import os

    from kansa.ledger.note import ALG_COSIGNATURE_V1, Signer

    with _errors():
        signer = Signer.generate(name, ALG_COSIGNATURE_V1)
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise _fail(f"{output} exists; not overwriting a key") from None
        with os.fdopen(fd, "w") as f:
            f.write(signer.skey + "\n")
        out.print(f"witness key written to {output}; its verifier key:")
        out.print(signer.verifier.vkey)


@witness_app.command("serve")
def witness_serve(
    key_file: Annotated[Path, typer.Option("--key", help="Witness secret key file (keygen).")],
    log: Annotated[
        list[str], typer.Option("--log", help="Verifier key of a log to witness (repeatable).")
    ],
    state: Annotated[Path, typer.Option(help="SQLite file for the witness's state.")] = Path(
        "witness.db"
    ),
    host: str = "127.0.0.1",
    port: int = 7380,
) -> None:
    """Serve C2SP tlog-witness: POST /add-checkpoint checks the log's signature and a
    consistency proof from the last checkpoint it cosigned, and only then cosigns."""
    import uvicorn

    from kansa.ledger.note import Signer, Verifier
    from kansa.witness_http import create_witness_app

    with _errors():
        signer = Signer.parse(key_file.read_text())
        logs = {v.name: v for v in (Verifier.parse(k) for k in log)}
        web = create_witness_app(signer, state, logs)
        console.print(f"witness {escape(signer.name)} on http://{host}:{port} for "
                      f"{escape(', '.join(logs))}")
        console.print(f"its verifier key: {signer.verifier.vkey}")
    uvicorn.run(web, host=host, port=port, log_level="warning")


@witness_app.command("add")
def witness_add(
    url: Annotated[str, typer.Argument(help="Witness base URL, e.g. http://127.0.0.1:7380.")],
    vkey: Annotated[str, typer.Argument(help="The witness's verifier key.")],
    home: HomeOpt = None,
) -> None:
    """Configure this log to ask a witness for cosignatures ('kansa witness collect')."""
    from kansa.home import Home
    from kansa.ledger.note import Verifier

    with _errors():
        v = Verifier.parse(vkey)
        h = Home.load(home)
        ws = [w for w in h.witnesses if w.get("vkey") != v.vkey]
        ws.append({"url": url, "vkey": v.vkey})
        h.config["witnesses"] = ws
        h.save_config()
        out.print(f"log will ask {escape(v.name)} at {escape(url)} ({len(ws)} witness(es) "
                  "configured)")


@witness_app.command("collect")
def witness_collect(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Ask every configured witness to cosign the latest checkpoint."""
    from kansa.ledger.note import Verifier
    from kansa.witness_http import collect_cosignatures

    with _errors():
        ledger = _open(home, store)
        try:
            assert ledger.home is not None
            ws = [(w["url"], Verifier.parse(w["vkey"])) for w in ledger.home.witnesses]
            if not ws:
                raise _fail("no witnesses configured: add one with 'kansa witness add URL VKEY'")
            ledger.checkpoint()
            result = collect_cosignatures(ledger.log, ws)
        finally:
            ledger.close()
        for o in result.outcomes:
            if o.cosignature is not None:
                out.print(f"[green]✓[/] {escape(o.witness.name)} ({escape(o.url)}) cosigned size "
                          f"{result.size}")
            else:
                out.print(f"[red]✗[/] {escape(o.witness.name)} ({escape(o.url)}): "
                          f"{escape(str(o.error))}")
        if result.failures:
            raise typer.Exit(1)


# -- demo -------------------------------------------------------------------------------


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
    from kansa.demo import SCENARIO_NOW, run_demo

    with _errors():
        # the story wraps at words to fit the terminal; commands and keys print whole
        run_demo(home, records, Console(highlight=False),
                 now=_demo_clock(now) if now else SCENARIO_NOW)


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


def main() -> None:
    app()
