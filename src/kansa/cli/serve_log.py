"""``kansa serve-log``: the log's public read API alone (C2SP tlog-tiles and receipts).

    kansa serve-log --port 8301
    curl http://127.0.0.1:8301/checkpoint
"""

from __future__ import annotations

from typing import Annotated

import typer

from kansa.cli._common import HomeOpt, StoreOpt, commands, console, errors, home_dir

app = commands()


@app.command("serve-log")
def serve_log(
    home: HomeOpt = None,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8301,
) -> None:
    """Serve the log's public read API: /checkpoint, /tile/... and /tile/entries/... (C2SP
    tlog-tiles, signed state only, full tiles immutable) and /receipt/ID (tlog-proof)."""
    import uvicorn

    from kansa.api import Ledger
    from kansa.web.app import create_log_app

    with errors():
        ledger = Ledger.open(store, home=home_dir(home))
    console.print(f"kansa serve-log: http://{host}:{port}/checkpoint")
    try:
        uvicorn.run(create_log_app(ledger), host=host, port=port, log_level="warning",
                    lifespan="off")
    finally:
        ledger.close()
