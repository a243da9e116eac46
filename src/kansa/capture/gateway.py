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
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.api import Ledger
from kansa.capture.gateway_admin import PolicyControl, admin_token
from kansa.capture.gateway_auth import KeyCache
from kansa.capture.gateway_config import GatewayConfig as GatewayConfig
from kansa.capture.gateway_config import Upstream as Upstream
from kansa.capture.gateway_keys import GatewayKeys
from kansa.capture.gateway_openapi import openapi_document
from kansa.capture.gateway_records import Recorder
from kansa.capture.gateway_request import (
    _DOT_SEGMENT,
    _ROUTES,
    _UNKNOWN,
    _Call,
    _Incoming,
    _parse_body,
    _read_headers,
    _Reject,
    _Route,
    _subject_of,
)
from kansa.capture.gateway_stream import relay_stream
from kansa.capture.gateway_upstreams import Upstreams, _Outgoing, _outgoing, _Up
from kansa.capture.gateway_wire import (
    _ClientGone,
    _drain,
    _error_body,
    _parse_response,
    _read_body,
    _resp_headers,
    _send_bytes,
    _State,
    _TooLarge,
    _uncancel,
    _watch,
)
from kansa.capture.pipeline import Call, Pipeline, Refusal, Verdict, subject_pseudonym
from kansa.capture.shapes import OPERATIONS, CallInfo
from kansa.capture.upstream import UpstreamPool, UpstreamResponse, UpstreamTooLarge
from kansa.errors import StorageError
from kansa.policy.approvals import Approvals, request_digest
from kansa.policy.inline import PolicyHandle
from kansa.records.attributes import (
    KANSA_CONTENT_ESCAPED,
    KANSA_GATEWAY_KEY,
    KANSA_GATEWAY_TEAM,
    KANSA_GATEWAY_UPSTREAM,
    KANSA_UPSTREAM_STATUS,
)
from kansa.records.model import MAX_STR, new_record_id

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_wire import Receive, Scope, Send


_logger = logging.getLogger("kansa.gateway")


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
        self.upstreams = Upstreams(config)
        self.keys = GatewayKeys(ledger.log.store)
        self._keys = KeyCache(self.keys, config.key_refresh_seconds)
        self._pool: UpstreamPool | None = None
        self._key_task: asyncio.Task[None] | None = None
        self._openapi = json.dumps(openapi_document()).encode()
        if policy is None and config.policy:
            policy = PolicyHandle.load(config.policy, home=_home_of(ledger))
        self.policy = policy
        # the capture pipeline: the policy stage first, then kansa.stages entry points
        self.pipeline = pipeline if pipeline is not None else Pipeline.default(policy)
        self._pipeline_on = bool(self.pipeline)  # without stages, no per-call pipeline work
        self.approvals = Approvals(ledger.log.store) if self.pipeline.has_before else None
        self.recorder = Recorder(ledger, config, self.pipeline)
        self.stats = self.recorder.stats
        self._control = PolicyControl(policy, watch_seconds=config.policy_watch_seconds,
                                      token=admin_token(config.admin_token_env))

    @property
    def policy_stats(self) -> dict[str, int]:
        """Decisions counted: refusals before the upstream, flags and approvals after."""
        return self.pipeline.decisions

    @property
    def keys_required(self) -> bool:
        return self.config.require_key or self._keys.exist

    def _upstream_for(self, model: str | None) -> _Up | None:
        return self.upstreams.for_model(model)

    async def reload_policy(self, why: str) -> dict[str, Any]:
        """Reload the policy file off the event loop (requests go on meanwhile), swap it."""
        return await self._control.reload(why)

    # -- lifecycle --------------------------------------------------------------------------

    def _ensure_pool(self) -> UpstreamPool:
        if self._pool is None:
            cfg = self.config
            self._pool = UpstreamPool(connect_timeout=cfg.connect_timeout,
                                      read_timeout=cfg.read_timeout,
                                      limit_per_origin=cfg.max_upstream_connections,
                                      max_response_bytes=cfg.max_response_bytes)
        if self._key_task is None:
            self._key_task = asyncio.ensure_future(self._keys.loop())
        return self._pool

    async def startup(self) -> None:
        self._ensure_pool()
        await self._control.start()

    async def shutdown(self) -> None:
        await self._control.stop()
        if self._key_task is not None:
            self._key_task.cancel()
            with contextlib.suppress(BaseException):
                await self._key_task
            self._key_task = None
        await self.recorder.drain()  # async-mode records still being appended
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
                    await self._control.admin(scope, send)
                    return
                else:
                    route = _UNKNOWN
            await self._proxy(scope, receive, send, route)
        elif typ == "lifespan":
            await self._lifespan(receive, send)

    async def _health(self, send: Send) -> None:
        down = self.recorder.store_down()
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

    # -- one proxied request ----------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, route: _Route) -> None:
        """One request to an API route: read and check it, run the pipeline before it, send
        it upstream, relay and record the answer. Every path records the call."""
        self.stats["requests"] += 1
        t0 = time.perf_counter()
        call = self._open_call(route)
        inc = _read_headers(scope["headers"], call)
        try:
            await self._admit(scope, call, route, inc)
            got = await self._read_request(scope, receive, call, route, inc)
            if got is None:  # the client left while sending: recorded
                await self._record(call, t0)
                return
            req, body, model = got
            up = self._choose_upstream(call, model)
        except _Reject as r:
            if r.drain:
                await _drain(receive, r.drain)
            await self._reject(send, call, route, r.status, r.code, r.message, t0,
                               outcome=r.outcome, close=r.close, extra=r.extra)
            return
        if not self.config.async_records and self.recorder.store_down():
            self.stats["refused_store_down"] += 1
            await self._unavailable(send, route)
            return
        pc = call.pc
        if pc is not None and self.pipeline.has_before:
            if await self._before(send, call, pc, route, body, inc.approval, t0):
                return
            if pc.request_replaced:  # a stage redacted it: that is what leaves
                req = pc.request
                body = json.dumps(req).encode()
        out = _outgoing(scope, route, up, inc, req, body,
                        inject_usage=self.config.inject_stream_usage,
                        caller_auth=not self.keys_required)
        await self._relay(send, receive, call, route, up, out, t0)

    def _open_call(self, route: _Route) -> _Call:
        call = _Call(system=self.config.system,
                     provider="anthropic" if route.shape == "anthropic" else "openai",
                     operation=route.operation, record_id=new_record_id(), shape=route.shape,
                     started=self._clock())
        if self._pipeline_on:
            call.pc = self.pipeline.open(
                "gateway", at=call.started, info=call, record_id=call.record_id,
                subject=lambda: subject_pseudonym(self.ledger, call.subject))
        return call

    async def _admit(self, scope: Scope, call: _Call, route: _Route, inc: _Incoming) -> None:
        """Who is calling (a gateway key, when keys are required) and whether the route and
        method exist; raises :class:`_Reject` if not."""
        big = inc.content_length is not None and inc.content_length > 65536
        if self.keys_required:
            info = await self._keys.authenticate(inc.token)
            if info is None:
                # a large body is read (and dropped) first, or the client, still sending, sees a
                # reset instead of the 401
                raise _Reject(401, "missing_gateway_key" if inc.token is None
                              else "invalid_gateway_key",
                              "kansa gateway: a gateway key is required (Authorization: Bearer "
                              "ksk_... or x-api-key)" if inc.token is None else
                              "kansa gateway: invalid or revoked gateway key",
                              close=big, drain=self.config.max_body_bytes if big else 0)
            call.app = info.app
            call.attributes[KANSA_GATEWAY_KEY] = info.key_id
            if info.team:
                call.attributes[KANSA_GATEWAY_TEAM] = info.team
        elif inc.app:
            call.app = inc.app
        method = scope["method"]
        if route is _UNKNOWN:
            call.attributes["url.path"] = scope["path"][:MAX_STR]
            raise _Reject(404, "not_found",
                          f"kansa gateway: no route {method} {scope['path'][:200]}")
        if method != route.method:
            call.attributes["http.request.method"] = method[:16]
            raise _Reject(405, "method_not_allowed",
                          f"kansa gateway: use {route.method} for this route",
                          extra=[(b"allow", route.method.encode())])

    async def _read_request(self, scope: Scope, receive: Receive, call: _Call, route: _Route,
                            inc: _Incoming) -> tuple[Any, bytes, str | None] | None:
        """(parsed body, body bytes, model) of an admitted request; None if the client left
        while sending it; raises :class:`_Reject` for a body the gateway refuses."""
        if route.method != "POST":
            if inc.subject:
                call.subject = inc.subject
            model = route.suffix[8:] if route.suffix.startswith("/models/") else None
            self._refuse_unicode(call, inc.bad_unicode)
            return None, b"", model
        limit = self.config.max_body_bytes
        if inc.content_length is not None and inc.content_length > limit:
            call.attributes["http.request.body.size"] = inc.content_length
            # read and drop the body before answering: a client still sending when the
            # connection closes gets a reset and never sees the 413
            raise _Reject(413, "request_too_large",
                          f"kansa gateway: the request body is {inc.content_length} bytes; "
                          f"the limit is {limit}", close=True, drain=4 * limit)
        try:
            body = await _read_body(receive, limit)
        except _TooLarge as e:
            raise _Reject(413, "request_too_large", f"kansa gateway: the request body "
                          f"exceeds the limit of {limit} bytes", close=True,
                          drain=0 if e.whole else 4 * limit) from None
        except _ClientGone:
            call.outcome, call.error_type = "aborted", "client_disconnected"
            return None
        req, where = _parse_body(call, body)
        m = req.get("model")
        call.subject = _subject_of(req, inc.subject, route)
        self._refuse_unicode(call, inc.bad_unicode or where)
        return req, body, m if isinstance(m, str) else None

    @staticmethod
    def _refuse_unicode(call: _Call, where: str | None) -> None:
        if where is not None:
            call.attributes[KANSA_CONTENT_ESCAPED] = True  # the record holds "\udXXX"
            raise _Reject(400, "invalid_unicode",
                          f"kansa gateway: {where} holds a lone UTF-16 surrogate (\\ud800-"
                          "\\udfff not in a pair): that is not Unicode text and cannot be "
                          "recorded as canonical JSON (RFC 8785), so the request is refused "
                          "and was not sent upstream")

    def _choose_upstream(self, call: _Call, model: str | None) -> _Up:
        up = self.upstreams.for_model(model)
        if up is None:
            raise _Reject(404, "model_not_found",
                          f"kansa gateway: no upstream serves model {model!r}")
        call.attributes[KANSA_GATEWAY_UPSTREAM] = up.cfg.name
        if up.provider:
            call.provider = up.provider
        return up

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
            self.recorder.store_failed(e)
            await self._unavailable(send, route)
            return True
        if r is None:
            return False
        status, code, message = _refusal_answer(r)
        await self._refuse(send, call, route, r, t0, status, code, message)
        return True

    async def _refuse(self, send: Send, call: _Call, route: _Route, r: Refusal, t0: float,
                      status: int, code: str, message: str) -> None:
        v = r.verdict
        body = json.loads(_error_body(route, status, code, message))
        body["kansa"] = {"decision": v.decision, "snapshot": v.snapshot,
                         "approval_id": v.approval, "stage": v.stage, "obligations": [
                             {"obligation": o.label, "citation": o.citation,
                              "mode": o.mode} for o in v.obligations]}
        extra = [(b"x-kansa-approval-id", v.approval.encode())] if v.approval else None
        await self._reject(send, call, route, status, code, message, t0, outcome="blocked",
                           extra=extra, body=json.dumps(body).encode())

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

    # -- upstream -------------------------------------------------------------------------

    async def _relay(self, send: Send, receive: Receive, call: _Call, route: _Route, up: _Up,
                     out: _Outgoing, t0: float) -> None:
        """Send the request upstream while watching for the client leaving (which cancels
        the wait: the call is recorded as aborted)."""
        pool = self._ensure_pool()
        state = _State(asyncio.current_task())
        watcher = asyncio.ensure_future(_watch(receive, state))
        try:
            await self._forward(send, call, route, state, pool, up, out, t0)
        finally:
            state.finishing = True
            if not watcher.done():
                watcher.cancel()

    async def _forward(self, send: Send, call: CallInfo, route: _Route, state: _State,
                       pool: UpstreamPool, up: _Up, out: _Outgoing, t0: float) -> None:
        resp: UpstreamResponse | None = None
        streaming = False
        try:
            try:
                resp = await pool.request(up.origin, out.method, out.target, out.headers,
                                          out.body)
                if resp.content_type == "text/event-stream":
                    streaming = True
                    await relay_stream(send, call, route, state, resp, out.strip_usage, t0,
                                       recorder=self.recorder)
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
            except Exception as e:
                if streaming and not isinstance(e, UpstreamTooLarge | TimeoutError | OSError):
                    raise  # the stream's answer has begun: it was recorded and cut
                state.finishing = True
                await self._upstream_failed(send, call, route, state, resp, e, t0)
                return
            state.finishing = True
            await self._answer(send, call, route, state, resp, data, t0)
        finally:
            if resp is not None:
                resp.release()

    async def _upstream_failed(self, send: Send, call: CallInfo, route: _Route, state: _State,
                               resp: UpstreamResponse | None, e: Exception, t0: float) -> None:
        """The upstream could not be reached, timed out or answered too much: a recorded
        502/504; anything else is a bug of ours (:meth:`_internal_error`)."""
        if isinstance(e, UpstreamTooLarge):
            if resp is not None:
                call.attributes[KANSA_UPSTREAM_STATUS] = resp.status
            await self._reject(send, call, route, 502, "upstream_response_too_large",
                               f"kansa gateway: the upstream's answer exceeds the gateway's "
                               f"limit of {e.limit} bytes (max_response_bytes); it was "
                               "dropped", t0)
        elif isinstance(e, TimeoutError):
            await self._reject(send, call, route, 504, "upstream_timeout",
                               "kansa gateway: the upstream did not answer in time", t0,
                               outcome="timeout")
        elif isinstance(e, OSError):
            await self._reject(send, call, route, 502, "upstream_unreachable",
                               f"kansa gateway: upstream error: {type(e).__name__}", t0)
        else:
            await self._internal_error(send, call, route, state, e, t0)

    async def _answer(self, send: Send, call: CallInfo, route: _Route, state: _State,
                      resp: UpstreamResponse, data: bytes, t0: float) -> None:
        """Record a whole (not streamed) upstream answer, then deliver it: as it came, as a
        pipeline stage rewrote it, or held (403)."""
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

    # -- records and the gateway's own answers ------------------------------------------------

    async def _record(self, call: CallInfo, t0: float) -> bool:
        """Append the call's record (:meth:`Recorder.record`); False if not durable."""
        return await self.recorder.record(call, t0)

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


def _refusal_answer(r: Refusal) -> tuple[int, str, str]:
    """The status, error code and message the gateway answers a pipeline refusal with."""
    message = r.verdict.message
    if r.kind == "approval_required":
        a = r.verdict.approval
        return 428, "approval_required", (f"{message}; approval {a} was requested: retry "
                                          f"with the header x-kansa-approval: {a} once it "
                                          "is approved")
    if r.kind == "approval_pending":
        return 428, "approval_pending", f"{message}; {r.why}"
    if r.kind == "approval_invalid":
        return 403, "approval_invalid", f"{message}; {r.why}"
    if r.kind == "stage_failed":
        return 403, "pipeline_error", message
    return 403, "policy_blocked", message


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


def _home_of(ledger: Ledger) -> Path | None:
    home = ledger.home
    return home.path if home is not None else None
