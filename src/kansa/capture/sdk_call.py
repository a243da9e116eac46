"""One model call in flight through a wrapped SDK client (``_Call``): cheap to take on
the caller's thread, turned into a :class:`~kansa.capture.shapes.CallInfo` when it is
recorded, and how its failures are classified (in the gateway's vocabulary).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kansa.capture.pipeline import Call
from kansa.capture.sdk_scopes import _META
from kansa.capture.sdk_writer import _acommit_quietly, _commit_quietly
from kansa.capture.shapes import CallInfo, StreamAssembler
from kansa.records.attributes import KANSA_PARENT_ID
from kansa.records.model import new_record_id

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.sdk_patch import _Config
    from kansa.capture.sdk_writer import _Sink


_INTERRUPTS = (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError)


def _failed(sink: _Sink, call: _Call, e: BaseException) -> None:
    """Record a call that raised; the exception itself is the caller's to re-raise.
    An interrupted or cancelled caller is never made to wait for the ledger."""
    call.error_end(e)
    if isinstance(e, _INTERRUPTS):
        sink.later(call)
    else:
        _commit_quietly(sink, call)


async def _afailed(sink: _Sink, call: _Call, e: BaseException) -> None:
    call.error_end(e)
    if isinstance(e, _INTERRUPTS):
        sink.later(call)
    else:
        await _acommit_quietly(sink, call)


_ID_LOCK = threading.Lock()


class _Call:
    """One model call in flight. The calling thread only takes references and clock
    readings; ids, datetimes, the body merge, the assembled stream and the CallInfo are
    made by :meth:`info`, which runs on the background thread when durable=False."""

    __slots__ = ("cfg", "operation", "wall", "t0", "meta", "subject", "body", "extra",
                 "response", "status", "events", "ended_by", "done", "latency_ms", "outcome",
                 "error_type", "pc", "raw", "raw_sse",
                 "raw_complete", "strip_usage", "_id")

    def __init__(self, cfg: _Config, operation: str) -> None:
        self.cfg = cfg
        # the call's run through the capture pipeline (set by _Config.begin; it pins the
        # policy snapshot this call is judged under, before and after)
        self.pc: Call | None = None
        self.operation = operation
        meta = self.meta = _META.get()
        subject = meta.subject
        if subject is None:
            given = cfg.subject
            subject = given if given is None or isinstance(given, str) else cfg.subject_now()
        self.subject: str | None = subject
        self.body: Any = None
        self.extra: Any = None
        self.response: Any = None
        self.status: int | None = None
        self.events: list[Any] | None = None  # a stream's events, as the SDK parsed them
        self.ended_by: str | None = None  # a stream's end: "exhausted" or "closed"
        # with_streaming_response: the body bytes the caller read, whether they read all
        # of it, and whether it is an SSE stream (see _RawBody)
        self.raw: list[bytes] | None = None
        self.raw_sse = False
        self.raw_complete = False
        # kansa asked an OpenAI stream for usage the caller did not ask for (see
        # _stream_usage): the usage-only chunk is kept from the caller
        self.strip_usage = False
        self.done = False
        self.latency_ms = 0.0
        self.outcome: str | None = None
        self.error_type: str | None = None
        self._id: str | None = None
        self.wall = time.time()
        self.t0 = time.perf_counter()

    @property
    def id(self) -> str:
        rid = self._id
        if rid is None:
            with _ID_LOCK:
                if self._id is None:
                    self._id = new_record_id(datetime.fromtimestamp(self.wall, UTC))
                rid = self._id
        return rid

    def info(self) -> CallInfo:
        cfg, meta = self.cfg, self.meta
        attrs: dict[str, Any] = dict(meta.attributes) if meta.attributes else {}
        if meta.parent_id is not None:
            attrs[KANSA_PARENT_ID] = meta.parent_id
        outcome, error_type, response = self.outcome, self.error_type, self.response
        events = self.events
        streamed = events is not None
        if self.raw is not None:  # with_streaming_response: what the caller read
            response, streamed, outcome, error_type = self._raw_result()
        elif events is not None:  # reassemble the stream now, off the caller's path
            asm = _Assembler(cfg.provider)
            for ev in events:
                asm.event(ev)
            response = asm.result()
            if self.ended_by is not None:
                if asm.done or (cfg.provider == "openai" and asm._finish):
                    outcome = "ok" if self.status is None else None
                elif self.ended_by == "closed":
                    outcome, error_type = "aborted", "client_disconnected"
                else:  # the upstream stopped short of its final event
                    outcome, error_type = "error", "incomplete_stream"
        return CallInfo(
            system=meta.system or cfg.system,
            provider=cfg.provider,
            operation=self.operation,
            started=datetime.fromtimestamp(self.wall, UTC),
            request=_request_body(self.body, self.extra),
            response=response,
            status=self.status,
            outcome=outcome,
            error_type=error_type,
            latency_ms=self.latency_ms,
            app=meta.app or cfg.app,
            actor=meta.actor or cfg.actor,
            subject=self.subject,
            conversation_id=meta.conversation_id,
            streamed=streamed,
            record_id=self.id,
            attributes=attrs,
        )

    def _raw_result(self) -> tuple[Any, bool, str | None, str | None]:
        """(response, streamed, outcome, error_type) from the body bytes the caller read
        through a ``with_streaming_response`` response: an SSE stream is assembled as the
        gateway assembles it; a JSON body is parsed if it was read whole. A body left
        (partly) unread when the response was closed is an aborted call, as a stream
        closed early is: the caller did not take the answer."""
        data = b"".join(self.raw or ())
        ok = "ok" if self.status is None else None
        if self.raw_sse:
            asm = StreamAssembler(self.cfg.provider)
            asm.feed(data)
            asm.feed(b"\n\n")  # a last event the upstream did not terminate
            ended = asm.outcome()
            if ended is None:
                return asm.result(), True, ok, None
            if not self.raw_complete and asm.error_type is None:
                return asm.result(), True, "aborted", "client_disconnected"
            return asm.result(), True, ended[0], ended[1]
        if not self.raw_complete:
            return None, False, "aborted", "client_disconnected"
        try:
            response = json.loads(data) if data else None
        except ValueError:
            response = None  # not JSON: the record keeps status and request only
        return response, False, ok, None

    def release(self) -> None:
        """Drop the exchange once recorded (last_record_id() may keep this object)."""
        self.body = self.extra = self.response = self.events = self.raw = None
        if self.pc is not None:
            self.pc.release()

    # -- how it ended (cheap: runs in the calling thread) ---------------------------------

    def end(self, outcome: str | None = None, error_type: str | None = None) -> _Call:
        self.latency_ms = (time.perf_counter() - self.t0) * 1000
        self.done = True
        self.outcome = outcome
        self.error_type = error_type
        return self

    def ok(self) -> _Call:
        # a success whose status we did not see is still a success
        return self.end("ok" if self.status is None else None)

    def stream_end(self, *, closed: bool) -> _Call:
        """The stream ran out (closed=False) or the caller closed or dropped it. Whether
        it had finished (ok) or not (aborted, incomplete) is decided by :meth:`info`."""
        self.ended_by = "closed" if closed else "exhausted"
        return self.end()

    def error_end(self, e: BaseException) -> _Call:
        """Classify a failure in the gateway's vocabulary, so both paths agree: an HTTP
        error is its status; a timeout, an unreachable or a dropped upstream are
        upstream_timeout, upstream_unreachable, upstream_disconnected."""
        if isinstance(e, _INTERRUPTS):
            return self.end("aborted", type(e).__name__)
        names = {c.__name__ for c in type(e).__mro__}
        status = getattr(e, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool):
            self.status = status
            if self.events is None:  # the upstream answered with an error status
                body = _read_json(getattr(e, "response", None))
                if body is not None:
                    self.response = body
                return self.end(None, str(status))  # outcome from the status
            # an error event inside a stream (Anthropic's "event: error")
            return self.end("error", _error_type(getattr(e, "body", None)) or "stream_error")
        if any("Timeout" in n for n in names):
            return self.end("timeout", "upstream_timeout")
        if isinstance(e, OSError) or names & _CONNECTION_ERRORS:
            return self.end("error", "upstream_disconnected" if self.events is not None
                            else "upstream_unreachable")
        return self.end("error", type(e).__name__)


_CONNECTION_ERRORS = frozenset({"APIConnectionError", "TransportError", "NetworkError",
                                "ProtocolError"})


def _read_json(response: Any) -> Any:
    """The JSON body of an httpx response the SDK has already read, else None."""
    if response is None:
        return None
    try:
        raw = response.content  # raises if the body was never read (a raw stream)
        return json.loads(raw) if raw else None
    except Exception:
        return None


def _error_type(body: Any) -> str | None:
    """The provider's error code: OpenAI {"error": {"code", "type"}}, Anthropic
    {"type": "error", "error": {"type"}}; the SDKs sometimes hand over the inner object."""
    if not isinstance(body, dict):
        return None
    err: Any = body.get("error") if isinstance(body.get("error"), dict) else body
    for key in ("code", "type"):
        v = err.get(key)
        if isinstance(v, str) and v and v != "error":
            return v[:128]
    return None


class _Assembler(StreamAssembler):
    """StreamAssembler fed with events the SDK has already parsed from the SSE stream."""

    def event(self, obj: Any) -> None:
        if type(obj) is dict:
            if len(obj) == 2 and "data" in obj and "event" in obj:  # SDK-synthesised shape
                obj = obj["data"]
                if type(obj) is not dict:
                    return
            if self.provider == "anthropic":
                self._anthropic(obj)
            else:
                self._openai(obj)


_CURRENT: ContextVar[_Call | None] = ContextVar("kansa_call", default=None)


_SENTINELS = frozenset({"NotGiven", "Omit"})


def _request_body(body: Any, extra: Any) -> Any:
    """The JSON body the SDK sent: its prepared ``json_data`` with ``extra_body`` merged
    in, as the SDKs' ``_build_request`` does, without not-given markers."""
    if isinstance(extra, Mapping) and extra:
        body = {**body, **extra} if isinstance(body, Mapping) else dict(extra)
    if isinstance(body, dict):
        for v in body.values():
            if type(v).__name__ in _SENTINELS:  # markers the SDK's encoder drops
                return {k: v for k, v in body.items() if type(v).__name__ not in _SENTINELS}
    return body
