"""``kansa web``: serve the dashboard; manage its login tokens.

    kansa web                                   # $KANSA_HOME's store, tokens from the home
    kansa web --store postgresql://... --port 8080
    kansa web --token-file tokens.txt           # lines: ROLE NAME TOKEN
    kansa web --trusted-header X-Forwarded-User --role-map 'alice=officer,*=viewer'
    kansa web token add --role auditor --name ext-audit

``kansa serve-log`` is in ``kansa.cli.serve_log``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kansa.cli._common import HomeOpt, StoreOpt, command_group, console, home_dir
from kansa.cli._common import errors as _errors
from kansa.cli._common import fail as _fail

# run bare, 'kansa web' serves (it is a command and a group: 'kansa web token add')
app = command_group("web", "The dashboard: overview, records, approvals, exports (ja/en).",
                    invoke_without_command=True, no_args_is_help=False)
token_app = command_group("token", "Login tokens for 'kansa web' (kept as SHA-256 digests).")
app.add_typer(token_app)

TOKENS_FILE = "web_tokens.json"
_home_path = home_dir


@app.callback(invoke_without_command=True)
def web(
    ctx: typer.Context,
    home: HomeOpt = None,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8300,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="Login tokens: 'ROLE NAME TOKEN' per line.")] = None,
    trusted_header: Annotated[str | None, typer.Option(
        "--trusted-header", help="A header a reverse proxy sets to the signed-in user "
        "(SSO, e.g. X-Forwarded-User). Only behind a proxy that strips it from clients.")] = None,
    role_map: Annotated[str, typer.Option(
        "--role-map", help="With --trusted-header: USER=ROLE,... ('*' for anyone else).")] = "",
    public_log: Annotated[bool, typer.Option(
        "--public-log", help="Also serve the log's read API to anyone: /checkpoint, "
        "/tile/... (C2SP tlog-tiles), /receipt/ID.")] = False,
) -> None:
    """Serve the dashboard (roles: viewer, auditor, officer, admin)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from kansa.api import Ledger
    from kansa.web.app import create_app
    from kansa.web.auth import Access, load_token_digests, load_token_file, parse_role_map

    with _errors():
        h = _home_path(home)
        tokens: dict[str, tuple[str, str]] = {}
        if (h / TOKENS_FILE).exists():
            tokens.update(load_token_digests(h / TOKENS_FILE))
        if token_file is not None:
            tokens.update(load_token_file(token_file))
        roles = parse_role_map(role_map) if role_map else {}
        if trusted_header and not roles:
            raise _fail("--trusted-header needs --role-map (who gets which role)")
        if not tokens and not trusted_header:
            raise _fail("nobody could log in: create a token with 'kansa web token add "
                        "--role viewer --name NAME', or pass --token-file or --trusted-header")
        ledger = Ledger.open(store, home=h)
    access = Access(tokens=tokens, trusted_header=trusted_header, role_map=roles)
    app = create_app(ledger, access, public_log=public_log, warm=True)
    console.print(f"kansa web: http://{host}:{port}/ ({len(tokens)} token(s)"
                  f"{', header ' + trusted_header if trusted_header else ''})")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
    finally:
        ledger.close()


@token_app.command("add")
def token_add(
    role: Annotated[str, typer.Option(help="viewer, auditor, officer or admin.")],
    name: Annotated[str, typer.Option(help="Who the token is for (recorded as the actor).")],
    home: HomeOpt = None,
) -> None:
    """Create a login token; it is printed once (only its digest is kept)."""
    from kansa.web.auth import add_token

    with _errors():
        h = _home_path(home)
        if not h.is_dir():
            raise _fail(f"no kansa home at {h}: run 'kansa init' first")
        token = add_token(h / TOKENS_FILE, role=role, name=name)
    console.print(f"token for {name} ({role}); shown once, keep it safe:")
    typer.echo(token)

