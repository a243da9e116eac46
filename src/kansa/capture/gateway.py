"""``kansa gateway``: an OpenAI-compatible HTTP proxy that records every request.

    app = create_gateway_app(ledger, GatewayConfig.from_upstream("http://127.0.0.1:18080/v1"))
    uvicorn.run(app, loop="uvloop", http="httptools")

Routes: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/responses``, ``/v1/messages`` (Anthropic), ``GET /v1/models[/{id}]``; plus the
gateway's own ``GET /openapi.json`` and ``GET /healthz`` (not recorded), and, for the
holder of the admin token, ``GET /-/kansa/policy`` and ``POST /-/kansa/policy/reload``.

Policy (``policy`` in the config, ``kansa.policy.inline``). Before a request goes
upstream, obligations in ``block`` / ``require_approval`` mode are judged on the entry it
would make (attributes come from ``x-kansa-ai-disclosure: true|false`` and
``x-kansa-attr-<name>: <value>`` headers, which are recorded with or without a policy): a
failure answers 403 ``policy_blocked``, or 428 ``approval_required`` with an approval id
(retry with ``x-kansa-approval: ID`` once ``kansa approvals approve ID`` was run; single
use). Refused requests are recorded too (outcome ``blocked``). Every record is judged
before it is appended and carries ``kansa.policy.decision``, ``kansa.policy.snapshot``
and its failures. A request reads the current snapshot once, so it is judged under one
whole snapshot; SIGHUP, the admin reload endpoint or ``policy_watch_seconds`` (polling
the file) swap in a new one without a restart, and a file that does not load leaves the
old one in force. With ``--workers N`` each worker reloads on its own: use the watch.

Every request to an API route becomes one record (``kansa.capture.shapes.to_record``,
the mapping the SDK wrappers share): success, upstream error, timeout, reset, client
disconnect, malformed or oversized body, rejected key, unknown route. Each response names
its record in ``x-kansa-record`` (ids are assigned before the call, so a stream can send
it with its headers).

Durability. By default a response completes only once its record is durable: a JSON
response is sent after the append is acknowledged (the ledger's sequencer group-commits
concurrent appends, so this costs one commit per batch, not per request); a stream is
forwarded chunk by chunk as it arrives, and only the chunk holding the terminal event
(``data: [DONE]``, ``message_stop``, ``response.completed``) and the end of the body wait
for the record. With ``async_records`` the record is appended after the response, which
says so in ``x-kansa-durability: async``; records that fail then are logged and counted
(``/healthz``), not retried.

Nothing reaches the upstream that cannot be recorded: a lone UTF-16 surrogate in any string
of the body (or an ``x-kansa-attr-*`` list) is answered 400 ``invalid_unicode`` and
recorded with it escaped. Upstream answers are bounded by ``max_response_bytes`` (after
decompression): past it, a recorded 502 ``upstream_response_too_large``, or a stream cut.

Store failures fail closed: a response whose record cannot be made durable is withheld
(503 ``ledger_unavailable``; a stream is cut before its terminal event, after an SSE
error event), and for ``store_retry_seconds`` afterwards requests are refused with 503 at
once instead of being sent upstream. Nothing is acknowledged without its record.

Credentials. Callers authenticate with gateway keys (``kansa.capture.gateway_keys``).
Upstream keys are read from the environment variables the config names. Neither the
caller's nor the upstream's credentials are ever part of a record: request headers are
not recorded, except kansa's own ``x-kansa-*`` metadata (actor, app, subject, attributes);
the parsed request and response bodies are (as encrypted content).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import json
import logging
import os
import re
import signal
import time
import tomllib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kansa.api import Ledger
from kansa.capture.gateway_keys import KEY_PREFIX, GatewayKeys, KeyInfo, hash_key
from kansa.capture.gateway_openapi import openapi_document
from kansa.capture.pipeline import Call, Pipeline, Refusal, Verdict, subject_pseudonym
from kansa.capture.shapes import OPERATIONS, CallInfo, StreamAssembler, to_record
from kansa.capture.upstream import Origin, UpstreamPool, UpstreamResponse, UpstreamTooLarge
from kansa.errors import EntryTooLargeError, KansaError, RecordError, StorageError
from kansa.policy.approvals import Approvals, request_digest
from kansa.policy.inline import PolicyHandle
from kansa.records.model import MAX_STR, UsageRecord, new_record_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_logger = logging.getLogger("kansa.gateway")


# -- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """One upstream API. ``models`` are fnmatch patterns; the first upstream whose patterns
    match a request's model serves it."""

    base_url: str  # e.g. https://api.openai.com/v1 (the gateway appends /chat/completions...)
    name: str = ""
    models: tuple[str, ...] = ("*",)
    api_key_env: str | None = None  # environment variable holding this upstream's key
    auth: str = "auto"  # how to send that key: auto, bearer, x-api-key
    provider: str | None = None  # gen_ai.provider.name to record (default: by route)
    ca_file: str | None = None  # CA bundle for an https upstream (default: the system's)
    tls_verify: bool = True


@dataclass
class GatewayConfig:
    upstreams: list[Upstream] = field(default_factory=list)
    default_upstream: str | None = None  # name; default: the first with a "*" pattern
    system: str = "kansa-gateway"  # the records' "system"
    require_key: bool = False  # else keys are required once any key exists in the store
    async_records: bool = False  # append after responding (x-kansa-durability: async)
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # seconds without a byte from the upstream
    max_body_bytes: int = 16 * 1024 * 1024
    # the most an upstream answer may hold once decompressed (JSON or a whole stream);
    # past it the call is cut and recorded as upstream_response_too_large
    max_response_bytes: int = 32 * 1024 * 1024
    inject_stream_usage: bool = True  # ask OpenAI streams for usage, strip it if unasked
    key_refresh_seconds: float = 2.0
    store_retry_seconds: float = 1.0  # after a store failure, refuse at once this long
    max_upstream_connections: int = 1024  # per upstream
    policy: str | None = None  # policy file (kansa.policy.inline): packs and modes enforced
    policy_watch_seconds: float = 0.0  # > 0: reload the policy when its file changes
    admin_token_env: str | None = None  # env variable holding the admin endpoints' token

    @classmethod
    def from_upstream(cls, base_url: str, *, api_key_env: str | None = None,
                      **kw: Any) -> GatewayConfig:
        """One upstream for every model (the zero-config start)."""
        return cls(upstreams=[Upstream(base_url, name="default", api_key_env=api_key_env)], **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatewayConfig:
        d = dict(d)
        raw = d.pop("upstream", None) or d.pop("upstreams", None) or []
        if not isinstance(raw, list):
            raise KansaError("'upstream' must be a list of tables ([[upstream]] in TOML)")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise KansaError(f"unknown gateway setting(s): {', '.join(sorted(unknown))}")
        ups = []
        for i, u in enumerate(raw):
            if not isinstance(u, dict) or not isinstance(u.get("base_url"), str):
                raise KansaError(f"upstream #{i + 1} needs a base_url")
            u = dict(u)
            bad = set(u) - set(Upstream.__dataclass_fields__)
            if bad:
                raise KansaError(f"upstream #{i + 1}: unknown key(s) {', '.join(sorted(bad))}")
            models = u.pop("models", ["*"])
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise KansaError(f"upstream #{i + 1}: models is a list of patterns")
            u.setdefault("name", u.get("name") or f"upstream{i + 1}")
            ups.append(Upstream(models=tuple(models), **u))
        cfg = cls(upstreams=ups, **d)
        cfg.validate()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> GatewayConfig:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise KansaError(f"cannot read gateway config {path}: {e}") from None
        data.pop("gateway", None)  # tolerate a [gateway] table holding the settings
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["upstream"] = [dict(u, models=list(u["models"])) for u in d.pop("upstreams")]
        return d

    def validate(self) -> None:
        if not self.upstreams:
            raise KansaError("the gateway needs at least one upstream (--upstream URL or a "
                             "config file with [[upstream]] tables)")
        names = [u.name for u in self.upstreams]
        if len(set(names)) != len(names):
            raise KansaError("upstream names must be unique")
        for u in self.upstreams:
            if not u.base_url.startswith(("http://", "https://")):
                raise KansaError(f"upstream {u.name!r}: base_url must be http(s)://...")
            if u.auth not in ("auto", "bearer", "x-api-key"):
                raise KansaError(f"upstream {u.name!r}: auth is auto, bearer or x-api-key")
        if self.default_upstream is not None and self.default_upstream not in names:
            raise KansaError(f"default_upstream {self.default_upstream!r} is not an upstream")
        if self.max_body_bytes <= 0 or self.read_timeout <= 0 or self.connect_timeout <= 0:
            raise KansaError("timeouts and max_body_bytes must be positive")
        if not isinstance(self.max_response_bytes, int) or self.max_response_bytes <= 0:
            raise KansaError("max_response_bytes must be a positive number of bytes")
        if self.policy_watch_seconds < 0:
            raise KansaError("policy_watch_seconds must not be negative")


# -- routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    suffix: str  # path below /v1, appended to the upstream's base URL
    operation: str
    shape: str  # openai, anthropic
    method: str


_ROUTES = {
    "/v1/chat/completions": _Route("/chat/completions", OPERATIONS["chat/completions"],
                                   "openai", "POST"),
    "/v1/completions": _Route("/completions", OPERATIONS["completions"], "openai", "POST"),
    "/v1/embeddings": _Route("/embeddings", OPERATIONS["embeddings"], "openai", "POST"),
    "/v1/responses": _Route("/responses", OPERATIONS["responses"], "openai", "POST"),
    "/v1/models": _Route("/models", OPERATIONS["models"], "openai", "GET"),
    "/v1/messages": _Route("/messages", OPERATIONS["messages"], "anthropic", "POST"),
}
_UNKNOWN = _Route("", "unknown", "openai", "")

_DROP_REQ = frozenset({
    b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te",
    b"upgrade", b"proxy-authorization", b"proxy-connection", b"accept-encoding", b"expect",
    b"authorization", b"x-api-key", b"api-key", b"trailer",
})
_DROP_RESP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding",
    b"date", b"server", b"proxy-authenticate", b"upgrade", b"trailer", b"te",
})
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")  # no climbing out of the upstream's base path
_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_DRAIN_SECONDS = 30.0  # how long a refused body is read (and dropped) so the client sees 413


@dataclass
class _Call(CallInfo):
    """A call and its run through the capture pipeline (which pins the policy snapshot
    it is judged under, read once, at its start)."""

    pc: Call | None = None


class _TooLarge(Exception):
    def __init__(self, whole: bool) -> None:
        super().__init__()
        self.whole = whole  # the body was read to its end (nothing left to drain)


class _ClientGone(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _hstr(v: bytes, limit: int | None = MAX_STR) -> str:
    """A metadata header's text: UTF-8 when the bytes are UTF-8 (curl, Node and browsers
    send non-ASCII text so, and `kansa erase --subject` must find the name as typed),
    else Latin-1 (HTTP's historical charset: every byte string decodes, and never to a
    lone surrogate)."""
    try:
        text = v.decode("utf-8")
    except UnicodeDecodeError:
        text = v.decode("latin-1")
    return text if limit is None else text[:limit]


class _State:
    """Per request: whether the client left, and whether cancellation is still allowed."""

    __slots__ = ("client_gone", "finishing", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.client_gone = False
        self.finishing = False
        self.task = task


async def _watch(receive: Receive, state: _State) -> None:
    """Cancel the request's handler if the client disconnects while it waits upstream."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not state.finishing and state.task is not None:
                state.client_gone = True
                state.task.cancel()
            return


# -- the app --------------------------------------------------------------------------


class _Up:
    __slots__ = ("cfg", "origin", "key", "provider")

    def __init__(self, cfg: Upstream) -> None:
        self.cfg = cfg
        try:
            self.origin = Origin(cfg.base_url, ca_file=cfg.ca_file, tls_verify=cfg.tls_verify)
        except (ValueError, OSError) as e:
            raise KansaError(f"upstream {cfg.name!r}: {e}") from None
        self.provider = cfg.provider
        self.key: bytes | None = None
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "").strip()
            if not key:
                raise KansaError(
                    f"upstream {cfg.name!r}: environment variable {cfg.api_key_env} is not set"
                )
            if not key.isprintable() or not key.isascii():
                raise KansaError(f"upstream {cfg.name!r}: the key in {cfg.api_key_env} holds "
                                 "characters an HTTP header cannot carry")
            self.key = key.encode()


class GatewayApp:
    """The ASGI application. Use :func:`create_gateway_app`."""

    def __init__(self, ledger: Ledger, config: GatewayConfig, *, owns_ledger: bool = False,
                 policy: PolicyHandle | None = None,
                 clock: Callable[[], datetime] | None = None,
                 pipeline: Pipeline | None = None):
        config.validate()
        # when a call happened (its record's ts, the instant policy judges it at); passed in
        # by a scenario such as 'kansa demo', the real clock otherwise
        self._clock = clock or _utc_now
        self.ledger = ledger
        self.config = config
        self.owns_ledger = owns_ledger
        self._ups = [_Up(u) for u in config.upstreams]
        default = config.default_upstream
        self._default: _Up | None = None
        for up in self._ups:
            if (default is not None and up.cfg.name == default) or (
                default is None and "*" in up.cfg.models
            ):
                self._default = up
                break
        self._model_cache: dict[str, _Up | None] = {}
        self.keys = GatewayKeys(ledger.log.store)
        self._active_keys: dict[str, KeyInfo] = {}
        self._keys_exist = False
        self._key_refresh: asyncio.Future[None] | None = None
        self._key_refresh_started = 0.0
        self._load_keys_now()
        self._pool: UpstreamPool | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._key_task: asyncio.Task[None] | None = None
        self._store_down_until = 0.0
        self.stats = {"requests": 0, "records": 0, "records_failed": 0, "store_errors": 0,
                      "refused_store_down": 0}
        self._openapi = json.dumps(openapi_document()).encode()
        self._durability = b"async" if config.async_records else b"sync"
        if policy is None and config.policy:
            policy = PolicyHandle.load(config.policy, home=_home_of(ledger))
        self.policy = policy
        # the capture pipeline: the policy stage first, then kansa.stages entry points
        self.pipeline = pipeline if pipeline is not None else Pipeline.default(policy)
        self._pipeline_on = bool(self.pipeline)  # without stages, no per-call pipeline work
        self.approvals = Approvals(ledger.log.store) if self.pipeline.has_before else None
        self._admin_token: bytes | None = None
        if config.admin_token_env:
            tok = os.environ.get(config.admin_token_env, "").strip()
            if len(tok) < 16:
                raise KansaError(f"the admin token in ${config.admin_token_env} is missing or "
                                 "shorter than 16 characters")
            self._admin_token = tok.encode()
        self._watch_task: asyncio.Task[None] | None = None
        self._sighup = False

    @property
    def policy_stats(self) -> dict[str, int]:
        """Decisions counted: refusals before the upstream, flags and approvals after."""
        return self.pipeline.decisions

    # -- keys -----------------------------------------------------------------------------

    def _load_keys_now(self) -> None:
        self._active_keys, self._keys_exist = self.keys.snapshot()

    @property
    def keys_required(self) -> bool:
        return self.config.require_key or self._keys_exist

    async def _refresh_keys(self, newer_than: float) -> None:
        """Reload the keys, by a query that starts after ``newer_than`` (monotonic time).
        Concurrent callers share one query; queries are at least 20 ms apart."""
        while True:
            fut = self._key_refresh
            if fut is not None and not fut.done():
                started = self._key_refresh_started
                await asyncio.shield(fut)
                if started >= newer_than:
                    return
                continue
            if self._key_refresh_started >= newer_than and fut is not None:
                return
            gap = self._key_refresh_started + 0.02 - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
                continue
            self._key_refresh_started = time.monotonic()
            self._key_refresh = asyncio.ensure_future(self._do_refresh())

    async def _do_refresh(self) -> None:
        try:
            active, exist = await asyncio.to_thread(self.keys.snapshot)
        except KansaError as e:
            _logger.warning("cannot refresh gateway keys (keeping the ones loaded): %s", e)
            return
        self._active_keys, self._keys_exist = active, exist

    async def _key_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.key_refresh_seconds)
            with contextlib.suppress(Exception):
                await self._refresh_keys(newer_than=time.monotonic())

    async def _authenticate(self, token: str | None) -> KeyInfo | None:
        if token is None or not token.startswith(KEY_PREFIX):
            return None
        h = hash_key(token)
        info = self._active_keys.get(h)
        if info is None:  # perhaps a key created moments ago (by another process)
            await self._refresh_keys(newer_than=time.monotonic())
            info = self._active_keys.get(h)
        return info

    # -- lifecycle --------------------------------------------------------------------------

    def _ensure_pool(self) -> UpstreamPool:
        if self._pool is None:
            cfg = self.config
            self._pool = UpstreamPool(connect_timeout=cfg.connect_timeout,
                                      read_timeout=cfg.read_timeout,
                                      limit_per_origin=cfg.max_upstream_connections,
                                      max_response_bytes=cfg.max_response_bytes)
        if self._key_task is None:
            self._key_task = asyncio.ensure_future(self._key_loop())
        return self._pool

    async def startup(self) -> None:
        self._ensure_pool()
        if self.policy is not None and self.policy.path is not None:
            loop = asyncio.get_running_loop()
            try:  # only the main thread may handle signals (tests serve from a thread)
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
                self._sighup = True
            except (ValueError, RuntimeError, NotImplementedError):
                _logger.info("SIGHUP cannot reload the policy here (not the main thread)")
            if self.config.policy_watch_seconds > 0:
                self._watch_task = asyncio.ensure_future(self._policy_watch())

    def _on_sighup(self) -> None:
        t = asyncio.ensure_future(self.reload_policy("SIGHUP"))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def reload_policy(self, why: str) -> dict[str, Any]:
        """Build the new snapshot off the event loop (requests go on meanwhile), swap it."""
        assert self.policy is not None
        res = await asyncio.to_thread(self.policy.reload)
        _logger.warning("kansa gateway: policy reload (%s): %s", why,
                        f"snapshot {res.snapshot}" if res.ok else f"failed: {res.error}")
        return res.as_dict()

    async def _policy_watch(self) -> None:
        assert self.policy is not None
        while True:
            await asyncio.sleep(self.config.policy_watch_seconds)
            with contextlib.suppress(Exception):
                if self.policy.changed_on_disk():
                    await self.reload_policy("file changed")

    async def shutdown(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self._watch_task
            self._watch_task = None
        if self._key_task is not None:
            self._key_task.cancel()
            with contextlib.suppress(BaseException):
                await self._key_task
            self._key_task = None
        if self._tasks:  # async-mode records still being appended
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self.owns_ledger:
            await asyncio.to_thread(self.ledger.close)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ == "http":
            path = scope["path"]
            route = _ROUTES.get(path)
            if route is None:
                if path.startswith("/v1/models/") and not _DOT_SEGMENT.search(path):
                    route = _Route(path[3:], OPERATIONS["models"], "openai", "GET")
                elif path == "/openapi.json" and scope["method"] == "GET":
                    await _send_bytes(send, 200, self._openapi, b"application/json")
                    return
                elif path == "/healthz" and scope["method"] == "GET":
                    await self._health(send)
                    return
                elif path.startswith("/-/kansa/"):
                    await self._admin(scope, receive, send)
                    return
                else:
                    route = _UNKNOWN
            await self._proxy(scope, receive, send, route)
        elif typ == "lifespan":
            await self._lifespan(receive, send)

    async def _health(self, send: Send) -> None:
        down = time.monotonic() < self._store_down_until
        body: dict[str, Any] = {
            "status": "degraded" if down or self.stats["records_failed"] else "ok",
            "ledger": "unavailable" if down else "ok",
            "durability": "async" if self.config.async_records else "sync",
            "keys": "required" if self.keys_required else "open",
            **self.stats,
        }
        if self.policy is not None:
            body["policy_snapshot"] = self.policy.current.hash
            body["policy"] = dict(self.policy_stats)
        if self.pipeline:
            body["pipeline"] = self.pipeline.stats()
        await _send_bytes(send, 503 if down else 200, json.dumps(body).encode(),
                          b"application/json")

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin endpoints (not recorded: they touch no model)."""
        path, method = scope["path"], scope["method"]
        given = b""
        for k, v in scope["headers"]:
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                given = v[7:].strip()
        if self._admin_token is None:
            return await _send_json(send, 403, {"error": "admin endpoints are disabled: start "
                                                "the gateway with an admin token "
                                                "(--admin-token-env VAR)"})
        if not hmac.compare_digest(given, self._admin_token):
            return await _send_json(send, 401, {"error": "a valid admin token is required "
                                                "(Authorization: Bearer ...)"})
        if self.policy is None:
            return await _send_json(send, 404, {"error": "this gateway enforces no policy"})
        if path == "/-/kansa/policy/reload" and method == "POST":
            res = await self.reload_policy("admin endpoint")
            return await _send_json(send, 200 if res["ok"] else 422, res)
        if path == "/-/kansa/policy" and method == "GET":
            h = self.policy
            snap = h.current
            return await _send_json(send, 200, {
                "snapshot": snap.hash, "file": str(h.path) if h.path else None,
                "packs": [f"{p.ref} {p.hash}" for p in snap.packs],
                "mode": snap.default_mode, "modes": snap.modes, "reloads": h.reloads,
                "last_error": h.last_error})
        await _send_json(send, 404, {"error": f"no admin route {method} {path[:200]}"})

    # -- one proxied request ----------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: _Route) -> None:
        self.stats["requests"] += 1
        t0 = time.perf_counter()
        cfg = self.config
        call = _Call(system=cfg.system,
                     provider="anthropic" if route.shape == "anthropic" else "openai",
                     operation=route.operation, record_id=new_record_id(), shape=route.shape,
                     started=self._clock())
        if self._pipeline_on:
            call.pc = self.pipeline.open(
                "gateway", at=call.started, info=call, record_id=call.record_id,
                subject=lambda: subject_pseudonym(self.ledger, call.subject))
        attrs = call.attributes
        approval_hdr: str | None = None
        token: str | None = None
        caller_auth: list[tuple[bytes, bytes]] = []
        content_length: int | None = None
        fwd: list[tuple[bytes, bytes]] = []
        has_ct = False
        subject_hdr = app_hdr = None
        bad_unicode: str | None = None  # where a lone surrogate was found, if anywhere
        for k, v in scope["headers"]:
            if k in _DROP_REQ:
                if k == b"authorization":
                    s = v.decode("latin-1")
                    token = s[7:].strip() if s[:7].lower() == "bearer " else s
                    caller_auth.append((k, v))
                elif k == b"x-api-key" or k == b"api-key":
                    token = token or v.decode("latin-1").strip()
                    caller_auth.append((k, v))
                elif k == b"content-length":
                    with contextlib.suppress(ValueError):
                        content_length = int(v)
                continue
            if k.startswith(b"x-kansa-"):
                if k == b"x-kansa-subject":
                    # whole: it is never in the entry (only its keyed pseudonym), and a cut
                    # name is one `kansa erase --subject` would not find
                    subject_hdr = _hstr(v, None)
                elif k == b"x-kansa-actor":
                    call.actor = _hstr(v)
                elif k == b"x-kansa-app":
                    app_hdr = _hstr(v)
                elif k == b"x-kansa-conversation-id":
                    call.conversation_id = _hstr(v)
                elif k == b"x-kansa-approval":
                    approval_hdr = _hstr(v).strip()
                elif k == b"x-kansa-ai-disclosure" or k.startswith(b"x-kansa-attr-"):
                    bad_hdr = _header_attribute(attrs, k, v)
                    if bad_hdr and bad_unicode is None:
                        bad_unicode = f"the header {_hstr(k)[:64]}"
                continue
            if k == b"content-type":
                has_ct = True
            fwd.append((k, v))

        # who is calling
        if self.keys_required:
            info = await self._authenticate(token)
            if info is None:
                code = "missing_gateway_key" if token is None else "invalid_gateway_key"
                msg = ("kansa gateway: a gateway key is required (Authorization: Bearer ksk_... "
                       "or x-api-key)" if token is None else
                       "kansa gateway: invalid or revoked gateway key")
                if content_length is not None and content_length > 65536:
                    # read (and drop) the body first, or the client, still sending, sees a
                    # reset instead of the 401
                    await _drain(receive, cfg.max_body_bytes)
                await self._reject(send, call, route, 401, code, msg, t0,
                                   close=content_length is not None and content_length > 65536)
                return
            call.app = info.app
            attrs["kansa.gateway.key"] = info.key_id
            if info.team:
                attrs["kansa.gateway.team"] = info.team
        elif app_hdr:
            call.app = app_hdr

        method = scope["method"]
        if route is _UNKNOWN:
            attrs["url.path"] = scope["path"][:MAX_STR]
            await self._reject(send, call, route, 404, "not_found",
                               f"kansa gateway: no route {method} {scope['path'][:200]}", t0)
            return
        if method != route.method:
            attrs["http.request.method"] = method[:16]
            await self._reject(send, call, route, 405, "method_not_allowed",
                               f"kansa gateway: use {route.method} for this route", t0,
                               extra=[(b"allow", route.method.encode())])
            return

        # the body
        req: Any = None
        body = b""
        model: str | None = None
        if route.method == "POST":
            if content_length is not None and content_length > cfg.max_body_bytes:
                attrs["http.request.body.size"] = content_length
                # read and drop the body before answering: a client still sending when the
                # connection closes gets a reset and never sees the 413
                await _drain(receive, 4 * cfg.max_body_bytes)
                await self._reject(send, call, route, 413, "request_too_large",
                                   f"kansa gateway: the request body is {content_length} bytes; "
                                   f"the limit is {cfg.max_body_bytes}", t0, close=True)
                return
            try:
                body = await _read_body(receive, cfg.max_body_bytes)
            except _TooLarge as e:
                if not e.whole:
                    await _drain(receive, 4 * cfg.max_body_bytes)
                await self._reject(send, call, route, 413, "request_too_large",
                                   f"kansa gateway: the request body exceeds the limit of "
                                   f"{cfg.max_body_bytes} bytes", t0, close=True)
                return
            except _ClientGone:
                call.outcome, call.error_type = "aborted", "client_disconnected"
                await self._record(call, t0)
                return
            # A lone surrogate can come from the bytes ED A0..BF (json.loads decodes bytes
            # with "surrogatepass") or from a \uD8xx-\uDFxx escape. The strict decode (which
            # json.loads would do anyway) rules out the first; two substring searches the
            # second, so ordinary bodies pay nothing (a regex over a 100 KB body cost ms).
            maybe_lone = b"\\ud" in body or b"\\uD" in body
            try:
                try:
                    text = body.decode("utf-8-sig")  # what json.loads does, minus surrogates
                except UnicodeDecodeError:  # other encodings json.loads detects, or ED A0..
                    req = json.loads(body, parse_constant=_reject_constant)
                    maybe_lone = True
                else:
                    req = json.loads(text, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as e:
                call.request = body.decode("utf-8", "backslashreplace")
                await self._reject(send, call, route, 400, "invalid_json",
                                   f"kansa gateway: the request body is not valid JSON ({e})",
                                   t0)
                return
            if maybe_lone and _holds_lone_surrogate(req):
                # a lone surrogate is not text: the record (RFC 8785) cannot hold it, so the
                # request is refused below; the record keeps it as the text "\udXXX"
                try:
                    where = _surrogate_path(req)
                    if where is not None:
                        req = _escape_surrogates(req)
                except RecursionError:
                    where = "the body"
                    req = body.decode("utf-8", "backslashreplace")
                if where is not None and bad_unicode is None:
                    bad_unicode = where if where == "the body" else f"the body at {where}"
            call.request = req
            if not isinstance(req, dict):
                await self._reject(send, call, route, 400, "invalid_body",
                                   "kansa gateway: the request body must be a JSON object", t0)
                return
            m = req.get("model")
            model = m if isinstance(m, str) else None
            subject = subject_hdr or req.get("user")
            if not isinstance(subject, str) and route.shape == "anthropic":
                md = req.get("metadata")
                subject = md.get("user_id") if isinstance(md, dict) else None
            if isinstance(subject, str) and subject:
                call.subject = subject
        else:
            if subject_hdr:
                call.subject = subject_hdr
            if route.suffix.startswith("/models/"):
                model = route.suffix[8:]

        if bad_unicode is not None:
            attrs["kansa.content.escaped"] = True  # the record holds it as "\udXXX" text
            await self._reject(send, call, route, 400, "invalid_unicode",
                               f"kansa gateway: {bad_unicode} holds a lone UTF-16 surrogate "
                               "(\\ud800-\\udfff not in a pair): that is not Unicode text and "
                               "cannot be recorded as canonical JSON (RFC 8785), so the request "
                               "is refused and was not sent upstream", t0)
            return

        up = self._upstream_for(model)
        if up is None:
            await self._reject(send, call, route, 404, "model_not_found",
                               f"kansa gateway: no upstream serves model {model!r}", t0)
            return
        attrs["kansa.gateway.upstream"] = up.cfg.name
        if up.provider:
            call.provider = up.provider

        if not cfg.async_records and time.monotonic() < self._store_down_until:
            self.stats["refused_store_down"] += 1
            await self._unavailable(send, route)
            return

        if call.pc is not None and self.pipeline.has_before:
            if await self._before(send, call, call.pc, route, body, approval_hdr, t0):
                return
            if call.pc.request_replaced:  # a stage redacted it: that is what leaves
                req = call.pc.request
                body = json.dumps(req).encode()

        # what goes upstream
        stream_req = isinstance(req, dict) and req.get("stream") is True
        strip_usage = False
        if (stream_req and cfg.inject_stream_usage and route.shape == "openai"
                and route.operation in ("chat", "text_completion")
                and route.suffix != "/responses"):
            so = req.get("stream_options")
            if so is None or (isinstance(so, dict) and "include_usage" not in so):
                req2 = dict(req)
                req2["stream_options"] = dict(so or {}, include_usage=True)
                body = json.dumps(req2).encode()
                strip_usage = True
        if route.method == "POST" and not has_ct:
            fwd.append((b"content-type", b"application/json"))
        if up.key is not None:
            how = up.cfg.auth
            if how == "auto":
                how = "x-api-key" if route.shape == "anthropic" else "bearer"
            fwd.append((b"x-api-key", up.key) if how == "x-api-key"
                       else (b"authorization", b"Bearer " + up.key))
        elif not self.keys_required:
            fwd.extend(caller_auth)  # open gateway, no upstream key: the caller's own key
        if route.suffix.startswith("/models/"):  # the id as the client encoded it
            raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            target = raw[3:]
        else:
            target = route.suffix.encode()
        qs = scope.get("query_string")
        if qs:
            target += b"?" + qs

        pool = self._ensure_pool()
        state = _State(asyncio.current_task())
        watcher = asyncio.ensure_future(_watch(receive, state))
        try:
            await self._forward(send, call, route, state, pool, up, method.encode(), target,
                                fwd, body, strip_usage, t0)
        finally:
            state.finishing = True
            if not watcher.done():
                watcher.cancel()

    async def _before(self, send: Send, call: _Call, pc: Call, route: _Route, body: bytes,
                      approval_id: str | None, t0: float) -> bool:
        """Run the pipeline before the request goes upstream; True if it was refused (and
        answered and recorded)."""
        def digest() -> str:
            return request_digest(route.suffix, call.system, call.app, body)

        approvals = self.approvals
        try:
            r = await self.pipeline.abefore(
                pc, approvals=(lambda: approvals) if approvals is not None else None,
                approval_id=approval_id, digest=digest)
        except StorageError as e:
            self._store_failed(e)
            await self._unavailable(send, route)
            return True
        if r is None:
            return False
        message = r.verdict.message
        if r.kind == "approval_required":
            a = r.verdict.approval
            return await self._refuse(send, call, route, r, t0, 428, "approval_required",
                                      f"{message}; approval {a} was requested: retry with "
                                      f"the header x-kansa-approval: {a} once it is approved")
        if r.kind == "approval_pending":
            return await self._refuse(send, call, route, r, t0, 428, "approval_pending",
                                      f"{message}; {r.why}")
        if r.kind == "approval_invalid":
            return await self._refuse(send, call, route, r, t0, 403, "approval_invalid",
                                      f"{message}; {r.why}")
        if r.kind == "stage_failed":
            return await self._refuse(send, call, route, r, t0, 403, "pipeline_error",
                                      message)
        return await self._refuse(send, call, route, r, t0, 403, "policy_blocked", message)

    async def _refuse(self, send: Send, call: _Call, route: _Route, r: Refusal, t0: float,
                      status: int, code: str, message: str) -> bool:
        v = r.verdict
        body = json.loads(_error_body(route, status, code, message))
        body["kansa"] = {"decision": v.decision, "snapshot": v.snapshot,
                         "approval_id": v.approval, "stage": v.stage, "obligations": [
                             {"obligation": o.label, "citation": o.citation,
                              "mode": o.mode} for o in v.obligations]}
        extra = [(b"x-kansa-approval-id", v.approval.encode())] if v.approval else None
        await self._reject(send, call, route, status, code, message, t0, outcome="blocked",
                           extra=extra, body=json.dumps(body).encode())
        return True

    async def _send_held(self, send: Send, call: CallInfo, route: _Route, v: Verdict) -> None:
        """A stage held the upstream's answer after the call (recorded with it): answer 403
        ``answer_held`` instead."""
        message = f"kansa: the answer was held by the pipeline stage {v.stage}: {v.message}"
        body = json.loads(_error_body(route, 403, "answer_held", message))
        body["kansa"] = {"decision": v.decision, "stage": v.stage, "obligations": [
            {"obligation": o.label, "citation": o.citation, "mode": o.mode}
            for o in v.obligations]}
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(data)).encode()),
                   (b"x-kansa-record", call.record_id.encode())]
        if self.config.async_records:
            headers.append((b"x-kansa-durability", b"async"))
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def _upstream_for(self, model: str | None) -> _Up | None:
        if model is None:
            return self._default
        try:
            return self._model_cache[model]
        except KeyError:
            pass
        found = self._default
        for up in self._ups:
            if any(fnmatch.fnmatchcase(model, p) for p in up.cfg.models):
                found = up
                break
        if len(self._model_cache) > 4096:
            self._model_cache.clear()
        self._model_cache[model] = found
        return found

    async def _forward(self, send: Send, call: CallInfo, route: _Route, state: _State,
                       pool: UpstreamPool, up: _Up, method: bytes, target: bytes,
                       headers: list[tuple[bytes, bytes]], body: bytes, strip_usage: bool,
                       t0: float) -> None:
        resp: UpstreamResponse | None = None
        streaming = False
        try:
            try:
                resp = await pool.request(up.origin, method, target, headers, body)
                if resp.content_type == "text/event-stream":
                    streaming = True
                    await self._stream(send, call, route, state, resp, strip_usage, t0)
                    return
                data = await resp.read()
            except asyncio.CancelledError:
                if not state.client_gone:
                    raise
                _uncancel()
                call.outcome, call.error_type = "aborted", "client_disconnected"
                call.status = resp.status if resp is not None else None
                state.finishing = True
                await self._record(call, t0)
                return
            except UpstreamTooLarge as e:
                state.finishing = True
                if resp is not None:
                    call.attributes["kansa.upstream.status"] = resp.status
                await self._reject(send, call, route, 502, "upstream_response_too_large",
                                   f"kansa gateway: the upstream's answer exceeds the gateway's "
                                   f"limit of {e.limit} bytes (max_response_bytes); it was "
                                   "dropped", t0)
                return
            except TimeoutError:
                state.finishing = True
                await self._reject(send, call, route, 504, "upstream_timeout",
                                   "kansa gateway: the upstream did not answer in time", t0,
                                   outcome="timeout")
                return
            except OSError as e:
                state.finishing = True
                await self._reject(send, call, route, 502, "upstream_unreachable",
                                   f"kansa gateway: upstream error: {type(e).__name__}", t0)
                return
            except Exception as e:
                if streaming:  # the stream's answer has begun: _stream recorded and cut it
                    raise
                await self._internal_error(send, call, route, state, e, t0)
                return
            state.finishing = True
            status = resp.status
            call.status = status
            if status >= 400:
                call.error_type = str(status)
            try:
                call.response = _parse_response(data, resp.content_type)
                headers_out = _resp_headers(resp.headers)
            except Exception as e:
                await self._internal_error(send, call, route, state, e, t0)
                return
            call.latency_ms = (time.perf_counter() - t0) * 1000
            pc = call.pc if isinstance(call, _Call) else None
            if pc is not None:
                pc.holdable = True  # a pipeline stage may still hold or rewrite this answer
                parsed = call.response
                pc.answered(lambda: parsed, rewritable=isinstance(parsed, dict))
            if not await self._record(call, t0):
                await self._unavailable(send, route)
                return
            if pc is not None:
                if pc.held is not None:
                    await self._send_held(send, call, route, pc.held)
                    return
                if pc.delivered is not None:
                    data = pc.delivered  # a stage rewrote the answer (the record says so)
            headers_out.append((b"x-kansa-record", call.record_id.encode()))
            if self.config.async_records:
                headers_out.append((b"x-kansa-durability", b"async"))
            headers_out.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers_out})
            await send({"type": "http.response.body", "body": data})
        finally:
            if resp is not None:
                resp.release()

    async def _stream(self, send: Send, call: CallInfo, route: _Route, state: _State,
                      resp: UpstreamResponse, strip_usage: bool, t0: float) -> None:
        call.streamed = True
        call.status = resp.status
        headers_out = _resp_headers(resp.headers)
        headers_out.append((b"x-kansa-record", call.record_id.encode()))
        durable = not self.config.async_records
        if not durable:
            headers_out.append((b"x-kansa-durability", b"async"))
        asm = StreamAssembler(route.shape)
        pc = call.pc if isinstance(call, _Call) and self.pipeline.has_events else None
        stripper = _UsageStripper() if strip_usage else None
        held: list[bytes] = []
        first = True
        failure: tuple[str, str] | None = None
        try:
            await send({"type": "http.response.start", "status": resp.status,
                        "headers": headers_out})
            async for chunk in resp.chunks():
                if first:
                    call.attributes["kansa.ttfb_ms"] = round((time.perf_counter() - t0) * 1000, 3)
                    first = False
                asm.feed(chunk)
                if pc is not None:
                    self.pipeline.event(pc, chunk)
                out = stripper.push(chunk) if stripper is not None else chunk
                if durable and (held or asm.done):
                    held.append(out)  # the terminal event waits for the record
                elif out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        except asyncio.CancelledError:
            if not state.client_gone:
                raise
            _uncancel()
            failure = ("aborted", "client_disconnected")
        except UpstreamTooLarge:
            failure = ("error", "upstream_response_too_large")
        except TimeoutError:
            failure = ("timeout", "upstream_timeout")
        except OSError:
            failure = ("error", "upstream_disconnected")
        except Exception:  # a bug of ours (the assembler...): record the call, cut the stream
            _logger.exception("stream %s: unexpected error", call.record_id)
            failure = ("error", "gateway_error")
        state.finishing = True
        if failure is not None:
            resp.close()
        if stripper is not None:
            held.append(stripper.flush())
        try:
            call.response = asm.result()
        except Exception:  # a bug of ours: the call is still recorded (without the answer)
            _logger.exception("stream %s: cannot assemble the answer", call.record_id)
            failure = failure or ("error", "gateway_error")
        call.latency_ms = (time.perf_counter() - t0) * 1000
        if failure is not None:
            call.outcome, call.error_type = failure
        elif resp.status < 400 and (ended := asm.outcome()) is not None:
            call.outcome, call.error_type = ended  # as the SDK wrappers record it
        recorded = await self._record(call, t0)
        if failure is not None or not recorded:
            if failure is None or failure[0] != "aborted":
                # tell an SSE client why, then cut the connection: no terminal event, no end
                code = failure[1] if failure is not None else None
                why = {
                    None: "the ledger store is unavailable: the stream could not be recorded",
                    "upstream_response_too_large":
                        "the upstream's stream exceeds the gateway's limit of "
                        f"{self.config.max_response_bytes} bytes (max_response_bytes); "
                        "it was cut",
                    "gateway_error": "internal error; the stream was recorded and cut",
                }.get(code) or f"upstream stream failed ({code})"
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body",
                                "body": _sse_error(route, "kansa gateway: " + why),
                                "more_body": True})
            _logger.warning("stream %s cut: %s", call.record_id,
                            failure[1] if failure else "ledger unavailable")
            return  # the server closes the connection: the response never completes
        await send({"type": "http.response.body", "body": b"".join(held)})

    async def _internal_error(self, send: Send, call: CallInfo, route: _Route, state: _State,
                              e: Exception, t0: float) -> None:
        """An unexpected error of the gateway's own after the upstream was called: the call
        is recorded (gateway_error) and answered 502, never left unrecorded."""
        _logger.exception("request %s: unexpected error", call.record_id, exc_info=e)
        state.finishing = True
        call.response = None
        await self._reject(send, call, route, 502, "gateway_error",
                           f"kansa gateway: internal error ({type(e).__name__}); the call was "
                           "recorded", t0)

    # -- records ----------------------------------------------------------------------------

    async def _build(self, call: CallInfo, t0: float) -> UsageRecord:
        if call.latency_ms is None:
            call.latency_ms = (time.perf_counter() - t0) * 1000
        rec = to_record(call)
        if rec.input_tokens is None and rec.output_tokens is None and rec.outcome == "ok" \
                and rec.operation in ("chat", "text_completion", "embeddings"):
            _estimate_usage(rec)
        if isinstance(call, _Call) and call.pc is not None:
            await self.pipeline.aafter(call.pc, rec)
        return rec

    async def _record(self, call: CallInfo, t0: float) -> bool:
        """Append the call's record; False if it could not be made durable. Never raises
        (but for cancellation): every caller answers False by failing closed, so an
        unexpected error here withholds the answer instead of serving it unrecorded."""
        try:
            rec = await self._build(call, t0)
        except Exception as e:  # should not happen: to_record sanitises; record what we can
            _logger.warning("record %s: %r; recording without content", call.record_id, e)
            call.request = call.response = None
            call.attributes["kansa.content.dropped"] = True
            try:
                rec = await self._build(call, t0)
            except Exception as e2:
                self.stats["records_failed"] += 1
                _logger.error("record %s could not be built: %r", call.record_id, e2)
                return False
        if self.config.async_records:
            t = asyncio.ensure_future(self._append_async(rec))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            return True
        try:
            await self._append(rec)
        except StorageError as e:
            self._store_failed(e)
            return False
        except Exception as e:  # not the store's fault: no breaker, but no answer either
            self.stats["records_failed"] += 1
            _logger.error("record %s could not be appended: %r", rec.id, e)
            return False
        return True

    async def _append(self, rec: UsageRecord) -> None:
        try:
            await self.ledger.aappend(rec)
        except _UNRECORDABLE as e:
            # content that JSON cannot canonicalise (lone surrogates, huge numbers...), a
            # subject the vault cannot key (a lone surrogate: UnicodeEncodeError) or an
            # oversized entry: keep everything, escaped or trimmed, rather than lose the
            # record (these fail in Ledger's preparation, before anything is queued, so a
            # retry cannot duplicate)
            _logger.warning("record %s: %r; recording it escaped", rec.id, e)
            _escape_record(rec)
            try:
                await self.ledger.aappend(rec)
            except _UNRECORDABLE:
                rec.content = {}
                rec.attributes = {"kansa.content.dropped": True}
                await self.ledger.aappend(rec)
        self.stats["records"] += 1

    async def _append_async(self, rec: UsageRecord) -> None:
        try:
            await self._append(rec)
        except Exception as e:
            self.stats["records_failed"] += 1
            if isinstance(e, StorageError):
                self._store_failed(e)
            else:
                _logger.error("record %s could not be appended: %s", rec.id, e)

    def _store_failed(self, e: Exception) -> None:
        self.stats["store_errors"] += 1
        self._store_down_until = time.monotonic() + self.config.store_retry_seconds
        _logger.error("kansa gateway: cannot record to the ledger (%s); %s", e,
                      "record lost (async mode)" if self.config.async_records else
                      "failing closed: responses are withheld until the store is back")

    # -- error responses ------------------------------------------------------------------------

    async def _reject(self, send: Send, call: CallInfo, route: _Route, status: int, code: str,
                      message: str, t0: float, *, outcome: str | None = None, close: bool = False,
                      extra: list[tuple[bytes, bytes]] | None = None,
                      body: bytes | None = None) -> None:
        """Answer with the gateway's own error, recorded like any other response."""
        if body is None:
            body = _error_body(route, status, code, message)
        call.status = status
        call.error_type = code
        if outcome:
            call.outcome = outcome
        call.response = json.loads(body)
        if not await self._record(call, t0):
            await self._unavailable(send, route)
            return
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-kansa-record", call.record_id.encode())]
        if self.config.async_records:
            headers.append((b"x-kansa-durability", b"async"))
        if close:
            headers.append((b"connection", b"close"))
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _unavailable(self, send: Send, route: _Route) -> None:
        body = _error_body(route, 503, "ledger_unavailable",
                           "kansa gateway: the ledger store is unavailable, so this request "
                           "cannot be recorded and is refused (the gateway fails closed); "
                           "retry shortly")
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})


def create_gateway_app(ledger: Ledger, config: GatewayConfig, *, owns_ledger: bool = False,
                       policy: PolicyHandle | None = None,
                       clock: Callable[[], datetime] | None = None,
                       pipeline: Pipeline | None = None) -> GatewayApp:
    """The gateway as an ASGI app recording into ``ledger``. With ``owns_ledger`` the app
    closes the ledger at lifespan shutdown. ``policy`` (else ``config.policy``, a file)
    is enforced inline. ``clock`` says when each call happens (default: the real clock).
    ``pipeline``: the capture pipeline (default :meth:`Pipeline.default`: the policy
    stage, then the ``kansa.stages`` entry points)."""
    return GatewayApp(ledger, config, owns_ledger=owns_ledger, policy=policy, clock=clock,
                      pipeline=pipeline)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- helpers ----------------------------------------------------------------------------------


def _home_of(ledger: Ledger) -> Path | None:
    home = ledger.home
    return home.path if home is not None else None


_MAX_HEADER_ATTRS = 32  # the attributes dict holds only header attributes at that point
_RESERVED_ATTRS = ("kansa.policy.", "kansa.gateway.", "kansa.content.", "kansa.usage.",
                   "kansa.pipeline.")


def _header_attribute(attrs: dict[str, Any], k: bytes, v: bytes) -> bool:
    """An attribute the caller states in a header (HTTP lowercases the name): ``true`` /
    ``false`` are booleans, a JSON list of strings is a list, anything else a string.
    Names kansa itself sets cannot be given (a caller must not forge a policy decision).
    True if the list held a lone surrogate (kept then as the header's text, which has none:
    headers are read as UTF-8, else Latin-1)."""
    name = "kansa.ai_disclosure" if k == b"x-kansa-ai-disclosure" else \
        k[13:].decode("latin-1")
    if not name or len(name) > 128 or name.startswith(_RESERVED_ATTRS) or \
            len(attrs) >= _MAX_HEADER_ATTRS:
        return False
    s = _hstr(v).strip()
    low = s.lower()
    value: Any = s[:MAX_STR]
    bad = False
    if low in ("true", "false"):
        value = low == "true"
    elif s.startswith("["):
        with contextlib.suppress(ValueError):
            got = json.loads(s)
            if isinstance(got, list) and all(isinstance(x, str | bool) for x in got):
                if any(isinstance(x, str) and _has_surrogate(x) for x in got):
                    bad = True
                else:
                    value = got[:64]
    attrs[name] = value
    return bad


async def _send_json(send: Send, status: int, obj: Any) -> None:
    await _send_bytes(send, status, json.dumps(obj).encode(), b"application/json")


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a refused request body (at most ``limit`` bytes, for at
    most _DRAIN_SECONDS), so the client, which sends its whole body before it reads the
    answer, gets the error instead of a reset. Past either bound it is cut off anyway."""
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            while got <= limit:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                got += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    return


async def _read_body(receive: Receive, limit: int) -> bytes:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > limit:
            raise _TooLarge(whole=True)
        return body
    parts = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone
        b = msg.get("body", b"")
        size += len(b)
        if size > limit:
            raise _TooLarge(whole=not msg.get("more_body"))
        parts.append(b)
        if not msg.get("more_body"):
            return b"".join(parts)


def _resp_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in raw if k not in _DROP_RESP and not k.startswith(b"x-kansa-")]


def _parse_response(data: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            pass
    return data.decode("utf-8", "replace") if data else None


async def _send_bytes(send: Send, status: int, body: bytes, ctype: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 428: "invalid_request_error",
                    404: "not_found_error", 405: "invalid_request_error",
                    413: "request_too_large", 502: "api_error", 503: "overloaded_error",
                    504: "api_error"}


def _error_body(route: _Route, status: int, code: str, message: str) -> bytes:
    if route.shape == "anthropic":
        return json.dumps({"type": "error", "error": {
            "type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}).encode()
    typ = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": typ, "param": None,
                                 "code": code}}).encode()


def _sse_error(route: _Route, message: str) -> bytes:
    if route.shape == "anthropic":
        data = json.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + data.encode() + b"\n\n"
    data = json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": "stream_failed"}})
    return b"data: " + data.encode() + b"\n\n"


class _UsageStripper:
    """When the gateway asked an OpenAI stream for usage on the client's behalf, drop the
    usage-only chunk (``choices: []``) the client did not ask for. Works on whole events
    (an SSE client acts only on whole events anyway); other bytes pass at once."""

    def __init__(self) -> None:
        self._buf = b""

    def push(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        end = -1
        for m in _EVENT_END.finditer(buf):
            end = m.end()
        if end < 0:
            self._buf = buf
            return b""
        complete, self._buf = buf[:end], buf[end:]
        if not _USAGE_ONLY.search(complete):
            return complete
        out = []
        pos = 0
        for m in _EVENT_END.finditer(complete):
            event = complete[pos:m.end()]
            pos = m.end()
            if not (_USAGE_ONLY.search(event) and _is_usage_only(event)):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def _is_usage_only(event: bytes) -> bool:
    data = b"\n".join(line[5:].lstrip() for line in event.replace(b"\r", b"\n").split(b"\n")
                      if line.startswith(b"data:"))
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(
        obj.get("usage"), dict)


def _strings(v: Any, out: list[str], depth: int = 0) -> None:
    if isinstance(v, str):
        out.append(v)
    elif depth < 32 and isinstance(v, dict):
        for x in v.values():
            _strings(x, out, depth + 1)
    elif depth < 32 and isinstance(v, list):
        for x in v:
            _strings(x, out, depth + 1)


def _estimate_usage(rec: UsageRecord) -> None:
    """No usage from the upstream: count tokens roughly (4 characters a token)."""
    ins: list[str] = []
    outs: list[str] = []
    for k, v in rec.content.items():
        _strings(v, outs if k == "gen_ai.output.messages" or k == "output" else ins)
    if not ins and not outs:
        return
    rec.input_tokens = (sum(map(len, ins)) + 3) // 4
    if rec.operation != "embeddings":
        rec.output_tokens = (sum(map(len, outs)) + 3) // 4
    rec.attributes["kansa.usage.estimated"] = True


def _escape_record(rec: UsageRecord) -> None:
    """Make a record that failed to canonicalise recordable: content as ASCII JSON text,
    every other string with its lone surrogates as "\\udXXX" text."""
    rec.content = {_esc(k): json.dumps(v) for k, v in rec.content.items()}
    rec.finish_reasons = tuple(_esc(r[:64]) for r in rec.finish_reasons[:16])
    rec.attributes = {_esc(k): _esc(v) if isinstance(v, str) else v if isinstance(v, bool) or (
        isinstance(v, int | float) and abs(v) < 2**53) else _esc(str(v)[:64])
        for k, v in rec.attributes.items()}
    rec.attributes["kansa.content.escaped"] = True
    for f in fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, str):
            setattr(rec, f.name, _esc(v))


# what Ledger's preparation of a record can raise for the record's own sake (nothing queued)
_UNRECORDABLE = (RecordError, EntryTooLargeError, ValueError, TypeError)  # + UnicodeError


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds_lone_surrogate(v: Any) -> bool:
    """Whether any string or key in parsed JSON holds a lone surrogate (at C speed: the
    encoder and the UTF-8 codec; the walk below only locates it)."""
    try:
        json.dumps(v, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:  # deeper than the C encoder goes: walk it (iteratively)
        return _surrogate_path(v) is not None
    return False


def _esc(s: str) -> str:
    """Lone surrogates as the text "\\udXXX" (the JSON escape a caller sent): nothing lost,
    and the result is valid Unicode."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_path(v: Any) -> str | None:
    """Where in parsed JSON the first string (or key) with a lone surrogate is, as
    ``$.messages[0].content``; None if nowhere. Iterative: JSON may nest deeply."""
    stack: list[tuple[Any, str]] = [(v, "$")]
    while stack:
        x, path = stack.pop()
        if isinstance(x, str):
            if _has_surrogate(x):
                return path
        elif isinstance(x, dict):
            items = list(x.items())
            for k, y in reversed(items):
                if _has_surrogate(k):
                    return f"{path} (a key)"
                stack.append((y, f"{path}.{k}"))
        elif isinstance(x, list):
            stack.extend((y, f"{path}[{i}]") for i, y in reversed(list(enumerate(x))))
    return None


def _escape_surrogates(v: Any) -> Any:
    """A copy of parsed JSON with every string's lone surrogates as "\\udXXX" text."""
    if isinstance(v, str):
        return _esc(v)
    if isinstance(v, dict):
        return {_esc(k): _escape_surrogates(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_escape_surrogates(x) for x in v]
    return v
