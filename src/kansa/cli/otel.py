"""``kansa otel``: receive OpenTelemetry spans (OTLP/HTTP) into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kansa.cli._common import command_group

app = command_group(
    "otel", "Receive OpenTelemetry GenAI spans over OTLP/HTTP and record them.")


@app.command("serve")
def otel_serve(
    port: Annotated[int, typer.Option(help="Port (4318 is OTLP/HTTP's default).")] = 4318,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="KANSA_HOME",
                     help="Ledger home (keys, config, SQLite store)."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", envvar="KANSA_STORE",
                     help="Store URL (sqlite:///PATH or postgresql://...); default: the "
                          "home's store."),
    ] = None,
    max_body_mib: Annotated[
        int, typer.Option(help="Largest request body accepted, after decompression (MiB).")
    ] = 20,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Policy file (as for `kansa gateway --policy`): each "
                     "record is judged and carries the decision (nothing can be refused: "
                     "the calls already happened)."),
    ] = None,
) -> None:
    """Serve OTLP/HTTP POST /v1/traces and /v1/logs: each GenAI span becomes a record,
    and each GenAI event log (message content) a record joined to its span's.

    Takes protobuf or JSON, optionally gzip. Reads the OTel GenAI conventions,
    OpenLLMetry's gen_ai.prompt.N.* and OpenInference's llm.*; other spans are skipped.
    A span or log delivered again (an exporter's retry) is not recorded twice.
    Point an exporter at it: OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT
    """
    import uvicorn
    from rich.console import Console
    from rich.markup import escape

    from kansa.api import Ledger
    from kansa.capture.otel import LOGS_PATH, TRACES_PATH, create_otlp_app
    from kansa.errors import KansaError

    console = Console(stderr=True, soft_wrap=True)
    if max_body_mib < 1:
        console.print("[bold red]error:[/] --max-body-mib must be at least 1")
        raise typer.Exit(2)
    try:
        ledger = Ledger.open(store, home=home)
    except KansaError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    try:
        handle = None
        if policy is not None:
            from kansa.policy.inline import PolicyHandle

            try:
                handle = PolicyHandle.load(policy, home=home)
            except KansaError as e:
                console.print(f"[bold red]error:[/] {escape(str(e))}")
                raise typer.Exit(1) from None
        web = create_otlp_app(ledger, max_body_size=max_body_mib * 1024 * 1024,
                              policy=handle)
        console.print(f"OTLP/HTTP intake on http://{host}:{port}{TRACES_PATH} and "
                      f"{LOGS_PATH} (log {escape(ledger.verifier.name)})")
        uvicorn.run(web, host=host, port=port, log_level="warning")
        stats = web.state.otlp_stats
        console.print(f"{stats.recorded} spans recorded, {stats.skipped} skipped "
                      f"(not GenAI), {stats.rejected} rejected (malformed); "
                      f"{stats.logs_recorded} log records recorded; {stats.duplicates} "
                      "already recorded (retries)")
    finally:
        ledger.close()
