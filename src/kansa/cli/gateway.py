"""``kansa gateway``: run the recording proxy, and manage its keys.

    kansa gateway --upstream http://127.0.0.1:18080/v1 --port 8787
    kansa gateway --config gateway.toml --store postgresql://... --workers 2
    kansa gateway keys create --app support-bot --team cx
    kansa gateway keys list
    kansa gateway keys revoke kid_0123456789ab
    kansa gateway --upstream URL --policy policy.yaml --policy-watch --admin-token-env TOK

Heavy imports (aiohttp, uvicorn) happen only when the gateway starts.
"""

from __future__ import annotations

import json
import logging
import os
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
    out,
    print_table,
)
from kansa.errors import KansaError

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.capture.gateway import GatewayApp, GatewayConfig
    from kansa.ledger.storage import Store


_SPEC_ENV = "KANSA_GATEWAY_SPEC"  # how `--workers N` hands its settings to each worker

app = command_group(
    "gateway",
    (
        "Run an OpenAI-compatible proxy (plus Anthropic Messages) that records every request "
        "in the ledger, and manage the keys applications use with it.\n\n"
        "Zero-config start: 'kansa gateway --upstream http://127.0.0.1:18080/v1' (creates "
        "the ledger in $KANSA_HOME if there is none). Real deployments: '--config FILE' "
        "(TOML, [[upstream]] tables mapping model patterns to base_url and api_key_env)."
    ),
    no_args_is_help=False,  # 'kansa gateway' alone runs the gateway
    invoke_without_command=True,
)
keys_app = command_group(
    "keys",
    "Gateway keys (ksk_...): applications authenticate with them; the store keeps only "
    "their SHA-256. Once any key exists, the gateway requires one.",
)
app.add_typer(keys_app)  # kansa gateway keys create|list|revoke


def _store(home: Path | None, store: str | None) -> Store:
    from kansa.home import Home
    from kansa.ledger.storage import open_store

    return open_store(store or Home.load(home).store_url)


def _open_ledger(home: Path | None, store: str | None, *, create: bool) -> Ledger:
    """The ledger to record into; with ``create``, a new home if there is none."""
    from kansa.api import Ledger
    from kansa.home import default_home

    h = home if home is not None else default_home()
    if create and not (h / "log.key").exists():
        ledger = Ledger.init(h, url=store)
        console.print(f"kansa gateway: created a new ledger in {h} "
                      f"(verifier key: 'kansa key --home {h}')")
        return ledger
    return Ledger.open(store, home=h)


# -- serving ---------------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def gateway(
    ctx: typer.Context,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", envvar="KANSA_GATEWAY_UPSTREAM",
                     help="Base URL of one OpenAI-compatible upstream serving every model, "
                          "e.g. https://api.openai.com/v1."),
    ] = None,
    upstream_key_env: Annotated[
        str | None,
        typer.Option("--upstream-key-env",
                     help="Environment variable holding the --upstream's API key. Without "
                          "it, an open gateway passes the caller's own key through."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Gateway config (TOML): [[upstream]] tables with "
                     "models, base_url, api_key_env; and settings such as max_body_bytes "
                     "and max_response_bytes."),
    ] = None,
    max_response_bytes: Annotated[
        int | None,
        typer.Option("--max-response-bytes", min=1,
                     help="Most bytes an upstream answer may hold once decompressed (a JSON "
                          "body or a whole stream); past it the call is cut, answered 502 "
                          "(a stream gets an error event) and recorded as "
                          "upstream_response_too_large. Default 33554432 (32 MiB); overrides "
                          "the config file's max_response_bytes."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
    store: StoreOpt = None,
    home: HomeOpt = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes; each opens its own ledger "
                                      "(they share the store safely).")
    ] = 1,
    async_records: Annotated[
        bool, typer.Option("--async-records",
                           help="Respond before the record is durable (lower latency; "
                                "responses say x-kansa-durability: async).")
    ] = False,
    require_key: Annotated[
        bool, typer.Option("--require-key", help="Require a gateway key even if none exists.")
    ] = False,
    system: Annotated[
        str | None, typer.Option(help="The records' 'system' (default: kansa-gateway).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Server log level.")] = "warning",
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Policy file (YAML): rule packs to enforce inline and a "
                     "mode per obligation (observe, flag, block, require_approval). Reload "
                     "it with SIGHUP, POST /-/kansa/policy/reload or --policy-watch; a file "
                     "that does not load keeps the policy in force. With --workers, use "
                     "--policy-watch: SIGHUP makes uvicorn replace the workers, which then "
                     "cannot start on a broken file."),
    ] = None,
    policy_watch: Annotated[
        bool, typer.Option("--policy-watch",
                           help="Reload the policy whenever its file changes (polls every "
                                "second; the way to reload every --workers process).")
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Labels file (YAML): per system and jurisdiction, the "
                     "visible AI disclosure and machine-readable marks to put on answers "
                     "(docs/design/provenance.md). Needs 'kansa provenance keygen'. "
                     "Streamed answers are recorded as not labelled."),
    ] = None,
    admin_token_env: Annotated[
        str | None,
        typer.Option("--admin-token-env",
                     help="Environment variable holding the token (16+ characters) that "
                          "the admin endpoints (/-/kansa/...) require as a Bearer token."),
    ] = None,
    guard: Annotated[
        Path | None,
        typer.Option("--guard", help="Guard config (YAML): scan prompts, tool results, "
                     "documents and answers for prompt injection, and observe, flag, block "
                     "or require approval per channel (see 'kansa guard scan --help')."),
    ] = None,
    guard_data: Annotated[
        Path | None,
        typer.Option("--guard-data", help="Secrets and personal data config (YAML: "
                     "outgoing/incoming kind -> observe, flag, block, redact, pseudonymise): "
                     "pseudonymised values are restored in the answer; see "
                     "docs/design/guard.md."),
    ] = None,
    agent: Annotated[
        Path | None,
        typer.Option("--agent", help="Agent guard config (YAML: tool classes, egress "
                     "allowlists, a decision per rule): an answer asking for a tool call "
                     "whose arguments come from a tool result, or for a risky tool, is held "
                     "and an approval opened per tool call ('kansa approvals list')."),
    ] = None,
) -> None:
    """Run the gateway (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    with errors():
        cfg = _build_config(upstream, upstream_key_env, config, async_records, require_key,
                            system)
        if policy is not None:
            cfg.policy = str(policy.resolve())
        if policy_watch and cfg.policy_watch_seconds <= 0:
            cfg.policy_watch_seconds = 1.0
        if admin_token_env:
            cfg.admin_token_env = admin_token_env
        if max_response_bytes is not None:
            cfg.max_response_bytes = max_response_bytes
        ledger = _open_ledger(home, store, create=True)
        if workers > 1 and ledger.log.store.dialect == "sqlite":
            # measured (bench/gateway.py, 2 workers on SQLite): p99 340-570 ms, once 3.6 s,
            # as SQLite's busy handler backs off between processes; 1 worker: ~2.5 ms
            console.print(f"[yellow]warning:[/] --workers {workers} on SQLite: the workers "
                          "take turns at SQLite's one write lock and tail latency grows to "
                          "hundreds of milliseconds. One worker is faster on SQLite; use "
                          "PostgreSQL (--store postgresql://...) to run several.")
        try:
            from kansa.capture.gateway import create_gateway_app

            app = create_gateway_app(ledger, cfg, **_guarded(
                cfg, ledger, guard, guard_data=guard_data, agent=agent, labels=labels))
            _banner(app, ledger, host, port, workers)
        except BaseException:
            ledger.close()
            raise
    _quiet_cut_streams()
    import uvicorn

    if workers == 1:
        try:
            uvicorn.run(app, host=host, port=port, loop="auto", http="auto", lifespan="on",
                        access_log=False, log_level=log_level)
        finally:
            ledger.close()
        return
    # each worker process opens its own ledger from this spec (keys come from the home and
    # the environment, never from the spec)
    assert ledger.home is not None
    spec = {"config": cfg.to_dict(), "store": store,
            "home": str(ledger.home.path.resolve()),
            "guard": str(guard.resolve()) if guard else None,
            "guard_data": str(guard_data.resolve()) if guard_data else None,
            "agent": str(agent.resolve()) if agent else None,
            "labels": str(labels.resolve()) if labels else None}
    ledger.close()
    os.environ[_SPEC_ENV] = json.dumps(spec)
    uvicorn.run("kansa.cli.gateway:worker_app", factory=True, workers=workers,
                host=host, port=port, loop="auto", http="auto", lifespan="on",
                access_log=False, log_level=log_level)


def worker_app() -> GatewayApp:
    """The app of one ``--workers`` process (uvicorn calls this factory in each worker)."""
    from kansa.api import Ledger
    from kansa.capture.gateway import GatewayConfig, create_gateway_app

    _quiet_cut_streams()
    spec = json.loads(os.environ[_SPEC_ENV])
    cfg = GatewayConfig.from_dict(spec["config"])
    ledger = Ledger.open(spec["store"], home=spec["home"])
    guard, data, agent = spec.get("guard"), spec.get("guard_data"), spec.get("agent")
    labels = spec.get("labels")
    return create_gateway_app(ledger, cfg, owns_ledger=True,
                              **_guarded(cfg, ledger, Path(guard) if guard else None,
                                         guard_data=Path(data) if data else None,
                                         agent=Path(agent) if agent else None,
                                         labels=Path(labels) if labels else None))


def _guarded(cfg: GatewayConfig, ledger: Ledger, guard: Path | None,
             *, guard_data: Path | None = None, agent: Path | None = None,
             labels: Path | None = None) -> dict[str, Any]:
    """With --guard / --guard-data / --agent / --labels: the policy (if any) and a
    pipeline with the guard stages after it (injection first, on the text as the caller
    sent it; then secrets and personal data, which may rewrite the request; then the agent
    guard on tool calls), and the provenance stage last (it labels the answer the caller
    will get)."""
    if guard is None and guard_data is None and agent is None and labels is None:
        return {}
    from kansa.capture.pipeline import Pipeline, Stage
    from kansa.policy.inline import PolicyHandle

    home = ledger.home.path if ledger.home is not None else None
    policy = PolicyHandle.load(cfg.policy, home=home) if cfg.policy else None
    stages: list[Stage] = []
    if guard is not None:
        from kansa.guard.stage import GuardConfig, GuardStage

        stages.append(GuardStage(GuardConfig.load(guard)))
    if guard_data is not None:
        from kansa.guard.data_stage import DataGuardStage, DataPolicy

        stages.append(DataGuardStage.for_ledger(ledger, policy=DataPolicy.load(guard_data)))
    if agent is not None:
        from kansa.guard.agent import AgentConfig, AgentGuardStage
        from kansa.policy.approvals import Approvals

        approvals = Approvals(ledger.log.store)
        stages.append(AgentGuardStage(AgentConfig.load(agent), approvals=lambda: approvals))
    if labels is not None:
        from kansa.provenance.keys import ProvenanceKeys
        from kansa.provenance.stage import LabelConfig, LabelStage

        if home is None:
            raise KansaError("--labels needs a ledger home (its provenance keys)")
        stages.append(LabelStage(LabelConfig.load(labels), ProvenanceKeys.load(home)))
    return {"policy": policy, "pipeline": Pipeline.default(policy, extra=stages)}


def _build_config(upstream: str | None, key_env: str | None, path: Path | None,
                  async_records: bool, require_key: bool, system: str | None) -> GatewayConfig:
    from kansa.capture.gateway import GatewayConfig

    if path is not None and upstream is not None:
        raise KansaError("give --upstream or --config, not both (put the upstream in the "
                         "config's [[upstream]] tables)")
    if path is not None:
        cfg = GatewayConfig.from_toml(path)
    elif upstream is not None:
        cfg = GatewayConfig.from_upstream(upstream, api_key_env=key_env)
    else:
        raise KansaError("no upstream: use --upstream URL or --config FILE "
                         "(see 'kansa gateway --help')")
    if async_records:
        cfg.async_records = True
    if require_key:
        cfg.require_key = True
    if system:
        cfg.system = system
    cfg.validate()
    return cfg


def _banner(app: GatewayApp, ledger: Ledger, host: str, port: int, workers: int) -> None:
    cfg = app.config
    console.print(f"kansa gateway on http://{host}:{port}/v1  "
                  f"({workers} worker{'s' if workers > 1 else ''})")
    for up in cfg.upstreams:
        key = f", key from ${up.api_key_env}" if up.api_key_env else ""
        console.print(f"  upstream {escape(up.name)}: {escape(up.base_url)} "
                      f"models {', '.join(up.models)}{escape(key)}")
    console.print(f"  ledger: {escape(ledger.log.store.url)}  (log {ledger.log.origin})")
    if cfg.async_records:
        console.print("  records: [yellow]async[/] — responses do not wait for their record "
                      "(x-kansa-durability: async); a store failure loses records")
    else:
        console.print("  records: durable — every response completes only once its record "
                      "is committed")
    if app.policy is not None:
        snap = app.policy.current
        console.print(f"  policy: {escape(str(app.policy.path))} snapshot {snap.hash[:19]}... "
                      f"({len(snap.packs)} pack versions, default mode {snap.default_mode}"
                      f"{', enforcing' if snap.enforces else ''})")
    if app.keys_required:
        console.print("  keys: required (gateway keys: 'kansa gateway keys list')")
    else:
        console.print("  keys: [yellow]none exist — the gateway is OPEN[/]: anyone who can "
                      "reach it may use it ('kansa gateway keys create --app NAME' to lock it)")


class _CutStreamFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # the gateway cuts a stream on purpose (logged by kansa.gateway with the reason)
        return "returned without completing response" not in record.getMessage()


def _quiet_cut_streams() -> None:
    logging.getLogger("uvicorn.error").addFilter(_CutStreamFilter())


# -- keys ----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    app_name: Annotated[str, typer.Option("--app", help="The application this key is for.")],
    team: Annotated[str | None, typer.Option("--team", help="Its team, if any.")] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create a key for an application. The key is printed once; only its hash is stored."""
    from kansa.capture.gateway_keys import GatewayKeys

    with errors():
        s = _store(home, store)
        try:
            key, info = GatewayKeys(s).create(app_name, team)
        finally:
            s.close()
    console.print(f"Created gateway key {info.key_id} for app {escape(app_name)}"
                  + (f", team {escape(team)}" if team else "")
                  + ". It is shown only now: store it in your secret manager.")
    out.print(key)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, store: StoreOpt = None) -> None:
    """List gateway keys (ids, apps, teams; never the keys)."""
    from kansa.capture.gateway_keys import GatewayKeys

    with errors():
        s = _store(home, store)
        try:
            keys = GatewayKeys(s).list()
        finally:
            s.close()
    if not keys:
        console.print("no gateway keys: the gateway runs open unless started with --require-key")
        return
    # the key id is what 'keys revoke' takes: whole; dates break between day and time
    print_table(out, [Column("key id", whole=True), Column("app"), Column("status"),
                      Column("created", priority=1), Column("team", priority=2)], [
        [escape(k.key_id), escape(k.app),
         "active" if k.revoked is None else f"revoked {_when(k.revoked)}",
         _when(k.created), escape(k.team or "")] for k in keys])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (kid_...) or the key itself.")],
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Revoke a key. Running gateways stop accepting it within their refresh interval (2 s)."""
    from kansa.capture.gateway_keys import GatewayKeys

    with errors():
        s = _store(home, store)
        try:
            n = GatewayKeys(s).revoke(key_id)
        finally:
            s.close()
        if n == 0:
            raise KansaError(f"no active key {key_id!r}")
    console.print("revoked " + (escape(key_id) if key_id.startswith("kid_") else "that key"))


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
