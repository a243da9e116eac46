"""Top-level commands on the ledger itself: ``kansa init``, ``key``, ``checkpoint``,
``export``, ``verify``, ``prove``, ``verify-receipt`` and ``erase``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from kansa.cli._common import (
    HomeOpt,
    StoreOpt,
    commands,
    console,
    errors,
    fail,
    open_ledger,
    out,
    progress,
)

app = commands()


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

    with errors():
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

    with errors():
        h = Home.load(home)
        v = h.verifier()
        out.print(f"log:    {escape(v.name)}")
        out.print(f"key id: {v.key_id.hex()}")
        out.print(v.vkey)


# -- checkpoints, export, verification, receipts -----------------------------------------


@app.command()
def checkpoint(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Sign a checkpoint for the current tree (if it grew) and print the signed note."""
    with errors():
        ledger = open_ledger(home, store)
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
    with errors():
        ledger = open_ledger(home, store)
        try:
            with progress() as prog:
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

    with errors():
        known: list[bytes] = []
        for f in checkpoint_file or []:
            try:
                raw = read_bounded(f, MAX_CHECKPOINT_BYTES)
            except OSError as e:
                raise fail(f"cannot read {f}: {e.strerror}") from None
            known.append(_kept_note(raw))
        witnesses = [Verifier.parse(w) for w in witness or []]
        with progress() as prog:
            task = prog.add_task("verifying", total=None)

            def tick(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)

            if directory is not None:
                if key is None:
                    raise fail("verifying a directory needs --key (the log's verifier key)")
                from kansa.ledger.verify import verify_directory

                report = verify_directory(directory, Verifier.parse(key), progress=tick,
                                          known_checkpoints=known, witnesses=witnesses)
            else:
                ledger = open_ledger(home, store)
                try:
                    if key is not None and Verifier.parse(key) != ledger.verifier:
                        raise fail("--key is not this log's verifier key")
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
    with errors():
        target = ref if ref is not None else index
        if target is None or (ref is not None and index is not None):
            raise fail("give a record id, or --index N for an entry index (not both)")
        ledger = open_ledger(home, store)
        try:
            receipt = ledger.prove(target)
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

    with errors():
        try:
            data = read_bounded(file, MAX_RECEIPT_BYTES)
        except OSError as e:
            raise fail(f"cannot read {file}: {e.strerror}") from None
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
    with errors():
        ledger = open_ledger(home, store)
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
