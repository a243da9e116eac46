"""``kansa witness``: run a C2SP tlog-witness, or collect cosignatures for this log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kansa.cli._common import (
    HomeOpt,
    StoreOpt,
    command_group,
    console,
    errors,
    fail,
    open_ledger,
    out,
)

app = command_group(
    "witness", "Run a C2SP tlog-witness, or collect witness cosignatures for this log.")


@app.command("keygen")
def witness_keygen(
    name: Annotated[str, typer.Option(help="Witness name, e.g. witness.example.org/w1.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the secret key.")],
) -> None:
    """Create a witness key (C2SP cosignature/v1, Ed25519); prints its verifier key."""
    import os

    from kansa.ledger.note import ALG_COSIGNATURE_V1, Signer

    with errors():
        signer = Signer.generate(name, ALG_COSIGNATURE_V1)
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise fail(f"{output} exists; not overwriting a key") from None
        with os.fdopen(fd, "w") as f:
            f.write(signer.skey + "\n")
        out.print(f"witness key written to {output}; its verifier key:")
        out.print(signer.verifier.vkey)


@app.command("serve")
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

    with errors():
        signer = Signer.parse(key_file.read_text())
        logs = {v.name: v for v in (Verifier.parse(k) for k in log)}
        web = create_witness_app(signer, state, logs)
        console.print(f"witness {escape(signer.name)} on http://{host}:{port} for "
                      f"{escape(', '.join(logs))}")
        console.print(f"its verifier key: {signer.verifier.vkey}")
    uvicorn.run(web, host=host, port=port, log_level="warning")


@app.command("add")
def witness_add(
    url: Annotated[str, typer.Argument(help="Witness base URL, e.g. http://127.0.0.1:7380.")],
    vkey: Annotated[str, typer.Argument(help="The witness's verifier key.")],
    home: HomeOpt = None,
) -> None:
    """Configure this log to ask a witness for cosignatures ('kansa witness collect')."""
    from kansa.home import Home
    from kansa.ledger.note import Verifier

    with errors():
        v = Verifier.parse(vkey)
        h = Home.load(home)
        ws = [w for w in h.witnesses if w.get("vkey") != v.vkey]
        ws.append({"url": url, "vkey": v.vkey})
        h.config["witnesses"] = ws
        h.save_config()
        out.print(f"log will ask {escape(v.name)} at {escape(url)} ({len(ws)} witness(es) "
                  "configured)")


@app.command("collect")
def witness_collect(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """Ask every configured witness to cosign the latest checkpoint."""
    from kansa.ledger.note import Verifier
    from kansa.witness_http import collect_cosignatures

    with errors():
        ledger = open_ledger(home, store)
        try:
            assert ledger.home is not None
            ws = [(w["url"], Verifier.parse(w["vkey"])) for w in ledger.home.witnesses]
            if not ws:
                raise fail("no witnesses configured: add one with 'kansa witness add URL VKEY'")
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
