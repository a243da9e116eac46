"""Record model calls made through the official SDKs, and agent steps and tool calls.

    import kansa, openai
    client = kansa.wrap(openai.OpenAI())            # or anthropic.Anthropic(), Async...
    with kansa.context(subject="user-7", conversation_id="c-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

    @kansa.tool("search")                           # kind "tool.call", arguments committed
    def search(query: str) -> list[str]: ...

    with kansa.step("plan", agent="support-agent"):  # kind "agent.step"
        ...

How a client is wrapped: ``wrap`` returns a copy of the client (``client.copy()``, same
class, same HTTP connection pool) on which four methods of the SDKs' shared base client
are overridden for that instance only: ``request`` (one call, retries included, so one
record per call), ``_build_request`` (the JSON body as finally sent),
``_process_response_data`` (the wire JSON of a response and of every streamed event,
before the SDK turns it into objects) and ``copy``/``with_options`` (so derived clients
stay wrapped). Nothing is patched globally; the SDKs are never imported by kansa, only
recognised by their base classes' names. Results, streams and exceptions are the SDK's
own objects, unchanged: a stream keeps its class and still iterates lazily, chunk by
chunk (its iterator and ``close`` pass through kansa to see how it ends).

Records are built by :func:`kansa.capture.shapes.to_record` from the request body as
sent and the response JSON as received, which is what the gateway sees on the wire,
so the SDK and the gateway write the same records for the same exchange.

Policy: ``wrap(client, policy="policy.yaml")`` (a file, a
:class:`kansa.policy.inline.PolicyHandle` or a snapshot) enforces rule packs as the
gateway does. Before a call, obligations in ``block`` / ``require_approval`` mode are
judged on the entry the call would make; a failure records the call (outcome
``blocked``) and raises :class:`kansa.PolicyBlocked` instead of calling the model (for
``require_approval`` it carries an approval id: once ``kansa approvals approve ID`` has
run, repeat the same call with ``extra_headers={"x-kansa-approval": ID}``; it passes
once). Every record carries the decision (``kansa.policy.decision``, ``.snapshot``,
``.findings``). A call reads the handle's current snapshot once, at its start; call
``handle.reload()`` to swap in a changed file.

Durability: with ``durable=True`` (the default) a call returns only once its record is
durable in the ledger (concurrent calls share one group commit); if the record cannot be
written the call raises the ledger's error instead of returning an unrecorded response.
With ``durable=False`` the calling thread only takes a snapshot of the call; a
background thread builds, seals and queues the record, and it becomes durable shortly
after (call :func:`flush` to wait for every such record, e.g. before closing the
ledger; the process also flushes at exit). Failures are then logged on the
``kansa.sdk`` logger, never raised.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import functools
import inspect
import json
import logging
import math
import os
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from kansa.capture.pipeline import Call, Pipeline, Refusal, Verdict, subject_pseudonym
from kansa.capture.shapes import OPERATIONS, CallInfo, StreamAssembler, to_record
from kansa.errors import RecordError
from kansa.records.model import UsageRecord, canonical, new_record_id

if TYPE_CHECKING:  # kansa.policy (CEL, YAML) is imported only when a policy is given
    from kansa.api import Ledger
    from kansa.policy.inline import PolicyBlocked, PolicyHandle, PolicySnapshot

__all__ = [
    "context",
    "flush",
    "last_record_id",
    "set_default_ledger",
    "step",
    "tool",
    "wrap",
]

_logger = logging.getLogger("kansa.sdk")

C = TypeVar("C")
P = ParamSpec("P")
R = TypeVar("R")

SubjectArg = str | Callable[[], str | None] | None

# -- metadata in scope (kansa.context, enclosing steps) ----------------------------------


@dataclass(frozen=True, slots=True)
class _Meta:
    subject: str | None = None
    conversation_id: str | None = None
    actor: str | None = None
    app: str | None = None
    system: str | None = None
    agent: str | None = None
    parent_id: str | None = None  # record id of the enclosing step
    attributes: Mapping[str, Any] | None = None
    approval: str | None = None  # an approval id for the tool calls inside (single use)


_NO_META = _Meta()
_META: ContextVar[_Meta] = ContextVar("kansa_meta", default=_NO_META)
_LAST: ContextVar[Any] = ContextVar("kansa_last_record", default=None)  # id or _Call


def last_record_id() -> str | None:
    """The id of the last record this context (thread or task) produced: a model call
    through a wrapped client, a step or a tool call. ``ledger.prove(id)`` gives its
    receipt (with durable=False, once :func:`flush` has returned)."""
    last = _LAST.get()
    return last if last is None or isinstance(last, str) else str(last.id)


def _merged_attributes(outer: Mapping[str, Any] | None,
                       inner: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not inner:
        return outer
    if not outer:
        return dict(inner)
    return {**outer, **inner}


class context:  # noqa: N801 - used like a function: `with kansa.context(...)`
    """Metadata for every record made inside it (model calls, steps, tools), in this
    thread or task: ``with kansa.context(subject="user-7", conversation_id="c-1"):``.

    ``approval``: an approved approval id (``kansa approvals approve ID``) that lets a
    tool call a pipeline stage asked approval for through (single use; model calls take
    theirs in the ``x-kansa-approval`` header).

    Nested contexts inherit what they do not set. Also ``async with``. Metadata no
    ledger entry can hold (a lone surrogate, attributes past the 64 KiB entry bound)
    raises RecordError here, before anything inside runs."""

    __slots__ = ("_fields", "_tokens")

    def __init__(
        self,
        *,
        subject: str | None = None,
        conversation_id: str | None = None,
        actor: str | None = None,
        app: str | None = None,
        system: str | None = None,
        agent: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        approval: str | None = None,
    ) -> None:
        self._fields: dict[str, Any] = {k: v for k, v in (
            ("subject", subject), ("conversation_id", conversation_id), ("actor", actor),
            ("app", app), ("system", system), ("agent", agent), ("approval", approval),
        ) if v is not None}
        if attributes:
            self._fields["attributes"] = dict(attributes)
        # refuse now what no record could hold (a lone surrogate, an entry over 64 KiB),
        # rather than after the model call, step or tool inside has run
        UsageRecord(system=system or "-", subject=subject, conversation_id=conversation_id,
                    actor=actor, app=app, agent_name=agent,
                    attributes=dict(attributes) if attributes else {},
                    id=_PROBE_ID).check_encodable()
        self._tokens: list[Token[_Meta]] = []  # one per enter: a context may be re-entered

    def __enter__(self) -> context:
        outer = _META.get()
        fields = dict(self._fields)
        if "attributes" in fields:
            fields["attributes"] = _merged_attributes(outer.attributes, fields["attributes"])
        self._tokens.append(_META.set(replace(outer, **fields)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tokens:
            _META.reset(self._tokens.pop())

    async def __aenter__(self) -> context:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


def _default_system() -> str:
    return os.environ.get("KANSA_SYSTEM") or "default"


# -- where records go ------------------------------------------------------------------

_default_ledger: Ledger | None = None
_default_opened = False  # we opened it (so we close it at exit)
_default_lock = threading.RLock()


def set_default_ledger(ledger: Ledger | None) -> None:
    """The ledger used by wrappers, steps and tools given none. Unset, it is opened
    lazily with ``kansa.Ledger.open()`` ($KANSA_HOME) on the first record."""
    global _default_ledger, _default_opened
    with _default_lock:
        old, opened = _default_ledger, _default_opened
        _default_ledger, _default_opened = ledger, False
    if opened and old is not None and old is not ledger:
        flush()
        old.close()  # the one we opened ourselves


def _get_default_ledger() -> Ledger:
    global _default_ledger, _default_opened
    ledger = _default_ledger
    if ledger is None:
        with _default_lock:
            if _default_ledger is None:
                from kansa.api import Ledger

                _default_ledger, _default_opened = Ledger.open(), True
                _register_exit()
            ledger = _default_ledger
    return ledger


def _jsonable(v: Any, depth: int = 0) -> Any:
    """A JSON value for anything a caller may hand us (tool arguments and results)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: keep the text, escaped
            return v.encode("utf-8", "backslashreplace").decode("utf-8")
        return v
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if depth > 64:
        return repr(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x, depth + 1) for x in v]
    if isinstance(v, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(v)).decode()}
    dump = getattr(v, "model_dump", None)  # pydantic models (SDK objects included)
    if callable(dump):
        try:
            return _jsonable(dump(mode="json"), depth + 1)
        except Exception:
            pass
    if hasattr(v, "__dataclass_fields__") and not isinstance(v, type):
        import dataclasses

        return _jsonable(dataclasses.asdict(v), depth + 1)
    return repr(v)


def _prepare(ledger: Ledger, rec: UsageRecord) -> Any:
    """Seal a record: the ledger's Append item (entry, commitment, ciphertext)."""
    try:
        return ledger._prepare(rec)
    except RecordError:
        # content the canonical JSON encoder refuses (an SDK object left in a request,
        # a NaN): record a JSON rendering of it rather than lose the record
        rec.content = _jsonable(rec.content)
        return ledger._prepare(rec)


def _as_record(obj: _Call | UsageRecord) -> UsageRecord:
    if isinstance(obj, UsageRecord):
        return obj
    rec = to_record(obj.info())
    pipeline = obj.cfg.pipeline
    if pipeline is not None:
        pipeline.after(obj.pc, rec)  # the capture pipeline's after moment
    obj.release()
    return rec


async def _aas_record(obj: _Call | UsageRecord) -> UsageRecord:
    """:func:`_as_record` on an event loop: the pipeline's stages run their async side
    (policy judging off the loop)."""
    if isinstance(obj, UsageRecord):
        return obj
    rec = to_record(obj.info())
    pipeline = obj.cfg.pipeline
    if pipeline is not None:
        await pipeline.aafter(obj.pc, rec)
    obj.release()
    return rec


def _submit(ledger: Ledger, rec: UsageRecord) -> Future[int]:
    """Seal and queue a record to the ledger's sequencer without waiting."""
    return ledger.log.submit(_prepare(ledger, rec))


def _report(fut: Future[int]) -> None:
    exc = fut.exception()
    if exc is not None:
        _logger.warning("kansa: a background record failed to commit: %s", exc)


class _Background:
    """Builds, seals and queues records off the caller's thread (durable=False, and
    streams dropped without being closed). ``put`` is safe to call from finalizers."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._inflight: list[Future[int]] = []

    def put(self, sink: _Sink, obj: _Call | UsageRecord) -> None:
        if self._thread is None:
            self._start()
        self._q.put((sink, obj))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                _register_exit()
                t = threading.Thread(target=self._run, name="kansa-sdk", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        while True:
            # take everything queued, seal it all, then submit it all at once: the
            # sequencer then commits it as one group instead of one commit per record
            batch = [self._q.get()]
            while len(batch) < 1024:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            ready: list[tuple[Ledger, Any]] = []
            for item in batch:
                if isinstance(item, threading.Event):
                    self._submit_all(ready)
                    ready = []
                    wait_futures(self._inflight)
                    self._inflight = []
                    item.set()
                    continue
                sink, obj = item
                try:
                    rec = _as_record(obj)
                    ledger = sink.ledger()
                    ready.append((ledger, _prepare(ledger, rec)))
                except Exception as e:
                    _logger.warning("kansa: a background record was lost: %s", e)
            self._submit_all(ready)
            if len(self._inflight) >= 1024:
                self._inflight = [f for f in self._inflight if not f.done()]

    def _submit_all(self, ready: list[tuple[Ledger, Any]]) -> None:
        for ledger, item in ready:
            try:
                fut = ledger.log.submit(item)
            except Exception as e:
                _logger.warning("kansa: a background record was lost: %s", e)
                continue
            fut.add_done_callback(_report)
            self._inflight.append(fut)

    def flush(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)


_BACKGROUND = _Background()
_exit_registered = False


def flush(timeout: float | None = None) -> bool:
    """Wait until every record handed to the background (``durable=False`` wrappers,
    steps and tools, abandoned streams) is durable. False if ``timeout`` ran out."""
    return _BACKGROUND.flush(timeout)


def _register_exit() -> None:
    global _exit_registered
    with _default_lock:
        if not _exit_registered:
            atexit.register(_at_exit)
            _exit_registered = True


def _at_exit() -> None:
    global _default_ledger
    try:
        flush(timeout=30)
    finally:
        with _default_lock:
            if _default_opened and _default_ledger is not None:
                _default_ledger.close()
                _default_ledger = None


class _Sink:
    """A ledger (or the default one) and a durability mode."""

    __slots__ = ("_ledger", "durable")

    def __init__(self, ledger: Ledger | None, durable: bool) -> None:
        self._ledger = ledger
        self.durable = durable

    def ledger(self) -> Ledger:
        return self._ledger if self._ledger is not None else _get_default_ledger()

    def commit(self, obj: _Call | UsageRecord) -> None:
        """Record; with durable=True return once durable (raising if it cannot be)."""
        if not self.durable:
            _BACKGROUND.put(self, obj)
            return
        _submit(self.ledger(), _as_record(obj)).result()

    async def acommit(self, obj: _Call | UsageRecord) -> None:
        if not self.durable:
            _BACKGROUND.put(self, obj)
            return
        rec = await _aas_record(obj)
        await asyncio.wrap_future(_submit(self.ledger(), rec))

    def later(self, obj: _Call | UsageRecord) -> None:
        """Record without ever blocking (from finalizers and failure paths)."""
        _BACKGROUND.put(self, obj)


def _commit_quietly(sink: _Sink, obj: _Call | UsageRecord) -> None:
    try:
        sink.commit(obj)
    except Exception as e:
        _logger.warning("kansa: recording a failed call failed too: %s", e)


async def _acommit_quietly(sink: _Sink, obj: _Call | UsageRecord) -> None:
    try:
        await sink.acommit(obj)
    except Exception as e:
        _logger.warning("kansa: recording a failed call failed too: %s", e)


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


# -- one call in flight -------------------------------------------------------------------


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
            attrs["kansa.parent_id"] = meta.parent_id
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


# -- the wrapped client -------------------------------------------------------------------

_CURRENT: ContextVar[_Call | None] = ContextVar("kansa_call", default=None)

_OP_CACHE: dict[tuple[str, str], str | None] = {}


def _operation(options: Any) -> str | None:
    """gen_ai.operation.name for a request the gateway would record, else None."""
    try:
        key = (options.method, options.url)
    except AttributeError:
        return None
    try:
        return _OP_CACHE[key]
    except KeyError:
        pass
    method, url = str(key[0]).lower(), str(key[1])
    path = url.split("?", 1)[0].strip("/")
    if "://" in path:
        path = path.split("://", 1)[1].partition("/")[2]
    if path.startswith("v1/"):
        path = path[3:]
    op = OPERATIONS.get(path)
    if op is not None and method != ("get" if path == "models" else "post"):
        op = None
    if len(_OP_CACHE) < 4096:
        _OP_CACHE[key] = op
    return op


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


class _Config:
    __slots__ = ("provider", "is_async", "sink", "system", "app", "actor", "subject",
                 "pipeline", "checked")

    def __init__(self, provider: str, is_async: bool, sink: _Sink, system: str | None,
                 app: str | None, actor: str | None, subject: SubjectArg,
                 pipeline: Pipeline | None = None) -> None:
        # None without stages: nothing of the pipeline runs per call
        self.pipeline = pipeline if pipeline else None
        self.provider = provider
        self.is_async = is_async
        self.sink = sink
        self.system = system or _default_system()
        self.app = app
        self.actor = actor
        self.subject = subject
        # the (context metadata, subject, operation) last found recordable: calls in the
        # same context skip the check (~50 us)
        self.checked: tuple[_Meta, str | None, str] | None = None

    def subject_now(self) -> str | None:
        s = self.subject
        if s is None or isinstance(s, str):
            return s
        v = s()
        return v if isinstance(v, str) and v else None

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
        """The call about to be made, or None for an endpoint not recorded. Raises
        RecordError, before anything is sent, if the call's record could not be written
        (metadata no ledger entry can hold: a lone surrogate, an entry over 64 KiB):
        never call the model when its record would be lost."""
        options = args[1] if len(args) > 1 else kwargs.get("options")
        op = _operation(options)
        if op is None:
            return None
        call = _Call(self, op)
        _check_metadata(call)
        if self.pipeline is not None:
            call.pc = self.pipeline.open(
                "sdk", info=functools.partial(_info_before, call, options),
                subject=lambda: subject_pseudonym(self.sink.ledger(), call.subject),
                record_id=lambda: call.id)
        _LAST.set(call)
        return call


def _check_metadata(call: _Call) -> None:
    """Raise RecordError if the metadata a call's record takes from its wrapper and
    context cannot be written (content is checked when the record is made, and
    rendered recordable there if it must be: see _prepare)."""
    cfg, meta = call.cfg, call.meta
    key = (meta, call.subject, call.operation)
    last = cfg.checked
    if last is not None and last[0] is meta and last[1] == key[1] and last[2] == key[2]:
        return
    attrs: dict[str, Any] = dict(meta.attributes) if meta.attributes else {}
    if meta.parent_id is not None:
        attrs["kansa.parent_id"] = meta.parent_id
    UsageRecord(system=meta.system or cfg.system, provider=cfg.provider,
                operation=call.operation, app=meta.app or cfg.app,
                actor=meta.actor or cfg.actor, subject=call.subject,
                conversation_id=meta.conversation_id, attributes=attrs,
                id=_PROBE_ID).check_encodable()
    cfg.checked = key


_PROBE_ID = "00000000-0000-7000-8000-000000000000"  # as long as a real record id


def _client_kind(client: object) -> tuple[str, bool] | None:
    """("openai" | "anthropic", is_async) for a client of either SDK, without importing it."""
    for cls in type(client).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("openai", "anthropic") and cls.__name__ in ("SyncAPIClient",
                                                                 "AsyncAPIClient"):
            return root, cls.__name__ == "AsyncAPIClient"
    return None


def wrap(
    client: C,
    *,
    ledger: Ledger | None = None,
    system: str | None = None,
    app: str | None = None,
    actor: str | None = None,
    subject: SubjectArg = None,
    durable: bool = True,
    policy: PolicyHandle | PolicySnapshot | str | os.PathLike[str] | None = None,
) -> C:
    """A copy of an ``openai.OpenAI``/``AsyncOpenAI`` or ``anthropic.Anthropic``/
    ``AsyncAnthropic`` client (same class, same connection pool) whose model calls are
    recorded in ``ledger`` (default: :func:`set_default_ledger`, else
    ``kansa.Ledger.open()``, opened on first use).

    Recorded: chat.completions, completions, embeddings, responses and models.list
    (OpenAI), messages and models.list (Anthropic), streamed or not, one record per call
    (retries included) whether it succeeds, fails, times out or its stream is abandoned.
    Other endpoints pass through unrecorded. ``system`` defaults to $KANSA_SYSTEM, else
    "default"; ``subject`` is a string or a function called at each call. Metadata set
    with :class:`context` takes precedence. See the module docstring for ``durable`` and
    ``policy`` (a policy file, handle or snapshot to enforce inline)."""
    kind = _client_kind(client)
    if kind is None:
        raise TypeError(
            f"kansa.wrap() takes an openai or anthropic client (OpenAI, AsyncOpenAI, "
            f"Anthropic, AsyncAnthropic), not {type(client).__qualname__}"
        )
    handle = None
    if policy is not None:
        from kansa.policy.inline import PolicyHandle, PolicySnapshot

        handle = PolicyHandle.of(policy if isinstance(policy, PolicyHandle | PolicySnapshot | str)
                                 else str(policy))
    cfg = _Config(kind[0], kind[1], _Sink(ledger, durable), system, app, actor, subject,
                  Pipeline.default(handle))
    copy = type(client).copy(client)  # type: ignore[attr-defined]
    _install(copy, cfg)
    return copy  # type: ignore[no-any-return]


def _install(client: Any, cfg: _Config) -> None:
    orig_request = client.request
    orig_data = client._process_response_data
    orig_build = client._build_request
    base_copy = type(client).copy
    sink = cfg.sink

    def process_response_data(*args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is None:  # an event of a stream being iterated?
            call = getattr(kwargs.get("response"), "_kansa_call", None)
        if call is not None:
            data = kwargs.get("data")
            events = call.events
            if events is not None:
                if not call.done:  # a stream iterated after close: already recorded
                    events.append(data)
                    pipeline = cfg.pipeline
                    if pipeline is not None and pipeline.has_events and call.pc is not None:
                        pipeline.event(call.pc, data)
            else:
                call.response = data
                status = getattr(kwargs.get("response"), "status_code", None)
                if isinstance(status, int):
                    call.status = status
        return orig_data(*args, **kwargs)

    def build_request(options: Any, *args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is not None:  # once per attempt: the body as finally sent
            call.body = getattr(options, "json_data", None)
            call.extra = getattr(options, "extra_json", None)
            if cfg.provider == "openai" and call.operation in ("chat", "text_completion"):
                _stream_usage(call, options)
        return orig_build(options, *args, **kwargs)

    def finish_result(call: _Call, result: Any, stream: bool) -> tuple[Any, _Call | None]:
        """Wrap a stream (recorded when it ends), or end the call."""
        if stream:
            response = getattr(result, "response", None)
            if hasattr(result, "_iterator") and response is not None:
                call.status = getattr(response, "status_code", None)
                _wrap_stream(result, call, cfg.is_async)
                return result, None
        raw = getattr(result, "http_response", None)
        if raw is not None and not hasattr(raw, "_content") \
                and not getattr(raw, "is_stream_consumed", True):
            # with_streaming_response: the body is still on the wire and the caller reads
            # it (or not) after we return; record what they read, when it is closed
            call.status = getattr(raw, "status_code", None)
            _watch_body(raw, call, cfg.is_async)
            return result, None
        if call.response is None and raw is not None:
            # with_raw_response: the SDK has not parsed it for us
            call.status = getattr(raw, "status_code", None)
            call.response = _read_json(raw)
        return result, call.ok()

    if cfg.is_async:

        async def arequest(*args: Any, **kwargs: Any) -> Any:
            call = cfg.begin(args, kwargs)
            if call is None:
                return await orig_request(*args, **kwargs)
            pc, pipeline = call.pc, cfg.pipeline
            if pc is not None and pipeline is not None and pipeline.has_before:
                r = await pipeline.abefore(pc, **_approval_args(call, args, kwargs))
                if r is not None:
                    refusal = _refused(call, r)
                    await sink.acommit(call)
                    raise refusal
                if pc.request_replaced:
                    _send_instead(pc, args, kwargs)
            token = _CURRENT.set(call)
            try:
                result = await orig_request(*args, **kwargs)
            except BaseException as e:
                await _afailed(sink, call, e)
                raise
            finally:
                _CURRENT.reset(token)
            result, info = finish_result(call, result, bool(kwargs.get("stream")))
            if info is not None:
                held = _holdable(call, result)
                await sink.acommit(info)
                if held and call.pc is not None:
                    result = _delivered(call, call.pc, result)
            return result

        client.request = arequest
    else:

        def request(*args: Any, **kwargs: Any) -> Any:
            call = cfg.begin(args, kwargs)
            if call is None:
                return orig_request(*args, **kwargs)
            pc, pipeline = call.pc, cfg.pipeline
            if pc is not None and pipeline is not None and pipeline.has_before:
                r = pipeline.before(pc, **_approval_args(call, args, kwargs))
                if r is not None:
                    refusal = _refused(call, r)
                    sink.commit(call)
                    raise refusal
                if pc.request_replaced:
                    _send_instead(pc, args, kwargs)
            token = _CURRENT.set(call)
            try:
                result = orig_request(*args, **kwargs)
            except BaseException as e:
                _failed(sink, call, e)
                raise
            finally:
                _CURRENT.reset(token)
            result, info = finish_result(call, result, bool(kwargs.get("stream")))
            if info is not None:
                held = _holdable(call, result)
                sink.commit(info)
                if held and call.pc is not None:
                    result = _delivered(call, call.pc, result)
            return result

        client.request = request

    def copy(*args: Any, **kwargs: Any) -> Any:
        new = base_copy(client, *args, **kwargs)
        _install(new, cfg)
        return new

    client._process_response_data = process_response_data
    client._build_request = build_request
    client.copy = copy
    client.with_options = copy
    client._kansa_wrapped = True


# -- policy -------------------------------------------------------------------------------


def _options(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("options")


def _info_before(call: _Call, options: Any) -> CallInfo:
    """The call as it is about to be made, for the pipeline's before moment."""
    call.body = getattr(options, "json_data", None)  # _build_request sets them again
    call.extra = getattr(options, "extra_json", None)
    return call.info()


def _header(options: Any, name: str) -> str | None:
    headers = getattr(options, "headers", None)
    if not isinstance(headers, Mapping):
        return None
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == name and isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _body_bytes(body: Any) -> bytes:
    try:
        return canonical(body)
    except Exception:  # objects JSON cannot hold: bind to a stable rendering instead
        return json.dumps(_jsonable(body), sort_keys=True).encode()


def _approval_args(call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any],
                   ) -> dict[str, Any]:
    """What the pipeline's approval flow needs of this call: the store, the approval id
    the caller gave (``x-kansa-approval``) and the digest of the request."""
    options = _options(args, kwargs)

    def approvals() -> Any:
        from kansa.policy.approvals import Approvals

        return Approvals(call.cfg.sink.ledger().log.store)

    def digest() -> str:
        from kansa.policy.approvals import request_digest

        info = call.pc.info if call.pc is not None else None
        assert info is not None
        return request_digest(str(getattr(options, "url", "")), info.system, info.app,
                              _body_bytes(info.request))

    return {"approvals": approvals, "approval_id": _header(options, "x-kansa-approval"),
            "digest": digest}


def _holdable(call: _Call, result: Any) -> bool:
    """Whether a pipeline stage may still hold or rewrite this call's answer: a durable
    wrapper records it before returning it (a background record comes too late). A
    rewritten answer is turned back into the SDK's own type (``model_validate`` of the
    result's class); a result without one (``with_raw_response``) cannot be rewritten."""
    pc = call.pc
    if pc is None:
        return False
    durable = call.cfg.sink.durable
    pc.holdable = durable
    validate = getattr(type(result), "model_validate", None)
    pc.answered(lambda: call.response, rewritable=durable and callable(validate),
                convert=validate)
    return durable


def _delivered(call: _Call, pc: Call, result: Any) -> Any:
    """What the caller gets once the pipeline's after moment has run: the result, a
    stage's rewrite of it, or PolicyBlocked if a stage held it."""
    if pc.held is not None:
        raise _held(call, pc.held)
    if pc.delivered is None:
        return result
    out, pc.delivered_object = pc.delivered_object, None
    return out


def _send_instead(pc: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A stage replaced the request body (redaction): the SDK sends that instead (its
    extra_body merged in already: ``call.request`` is the body as it leaves)."""
    options = _options(args, kwargs)
    options.json_data = pc.request
    options.extra_json = None


def _held(call: _Call, v: Verdict) -> PolicyBlocked:
    """The exception for an answer a pipeline stage held after the call."""
    return _held_error(call.id, v)


def _held_error(record_id: str, v: Verdict) -> PolicyBlocked:
    from kansa.errors import PolicyBlocked

    return PolicyBlocked(f"kansa: the answer was held by the pipeline stage {v.stage}: "
                         f"{v.message}", decision=v.decision, snapshot=v.snapshot,
                         failed=[(o.label, o.citation) for o in v.obligations],
                         record_id=record_id)


def _refusal(r: Refusal, record_id: str, retry: str) -> tuple[PolicyBlocked, str]:
    """The exception a caller gets for a call the pipeline refused, and the record's
    error type. ``retry``: how to pass the approval id on a repeated call."""
    from kansa.errors import PolicyBlocked

    v = r.verdict
    message = v.message
    if r.kind == "approval_required":
        message += (f"; approval {v.approval} was requested: repeat the call with "
                    f"{retry.format(v.approval)} once it is approved")
    elif r.why:
        message += f"; {r.why}"
    error_type = ("pipeline_error" if r.kind == "stage_failed"
                  else "approval_required" if v.decision == "approval_required"
                  else "policy_blocked")
    return PolicyBlocked(message, decision=v.decision, snapshot=v.snapshot,
                         failed=[(o.label, o.citation) for o in v.obligations],
                         record_id=record_id, approval_id=v.approval), error_type


def _refused(call: _Call, r: Refusal) -> PolicyBlocked:
    """End a call the pipeline refused (its record carries the refusal's attributes) and
    the exception the caller gets."""
    exc, error_type = _refusal(r, call.id, "extra_headers={{'x-kansa-approval': '{}'}}")
    call.end("blocked", error_type)
    return exc


# -- streams ------------------------------------------------------------------------------

_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"  # the SDKs' with_raw/streaming marker


def _stream_usage(call: _Call, options: Any) -> None:
    """Ask an OpenAI chat or completions stream for its usage, as the gateway does
    (``GatewayConfig.inject_stream_usage``): without ``stream_options.include_usage`` a
    stream carries no token counts, and the ``chat.completions.stream`` helper never sets
    it. The caller asked for no usage chunk, so ``_iterate`` keeps it from them; the
    record's request stays the body the caller sent. Not done for the Responses API
    (its streams carry usage) nor when the caller reads the raw bytes
    (``with_raw_response``/``with_streaming_response``), whose bytes kansa does not edit."""
    body = getattr(options, "json_data", None)
    if not isinstance(body, dict) or body.get("stream") is not True:
        return
    url = str(getattr(options, "url", ""))
    if url.rstrip("/").endswith("responses"):
        return
    extra = getattr(options, "extra_json", None)
    if isinstance(extra, Mapping) and "stream_options" in extra:
        return
    headers = getattr(options, "headers", None)
    if isinstance(headers, Mapping) and any(
            isinstance(k, str) and k.lower() == _RAW_RESPONSE_HEADER.lower() for k in headers):
        return
    so = body.get("stream_options")
    if so is None or type(so).__name__ in _SENTINELS:
        so = {}
    if not isinstance(so, Mapping) or "include_usage" in so:
        return
    # a new dict: the caller's own arguments are left as they were
    options.json_data = {**body, "stream_options": {**so, "include_usage": True}}
    call.strip_usage = True


def _is_usage_only(item: Any) -> bool:
    """The extra chunk include_usage adds: no choices, only usage."""
    return getattr(item, "choices", None) == [] and getattr(item, "usage", None) is not None


class _RawBody:
    """Watches the httpx response of a ``with_streaming_response`` call: its
    ``iter_bytes``/``aiter_bytes`` (which ``read``, ``text``, ``json``, ``iter_lines`` and
    the SDK's ``parse()`` all go through) keep the decoded bytes the caller reads, and its
    ``close``/``aclose`` (the context manager's exit, or httpx itself once the body is
    read) records the call, once. httpx closes the response from inside the read, before
    the decoder's last bytes are handed over: a close made while a read is under way is
    held until that read returns. A read abandoned mid-body (``break``) closes the
    response without recording: the caller's own close (the context manager's exit)
    records it, durably; a response never closed is recorded in the background when it
    is collected (``_abandoned``), never blocking a finalizer."""

    __slots__ = ("call", "resp", "active", "pending", "__weakref__")

    def __init__(self, call: _Call, resp: Any) -> None:
        self.call = call
        self.resp = resp
        self.active = False  # inside httpx's iterator (not suspended at our yield)
        self.pending = False  # closed during that: record when the read returns

    def _keep(self) -> bool:
        # a body already read is replayed from memory: it was kept the first time
        return not hasattr(self.resp, "_content") and self.call.raw is not None

    def iter_bytes(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        call, keep = self.call, self._keep()
        it = type(self.resp).iter_bytes(self.resp, *args, **kwargs)
        while True:
            self.active = True
            try:
                chunk = next(it)
            except StopIteration:
                break
            except BaseException as e:
                if self.pending and not call.done:
                    self.pending = False
                    _failed(call.cfg.sink, call, e)
                raise
            finally:
                self.active = False
            if keep:
                call.raw.append(chunk)  # type: ignore[union-attr]
            try:
                yield chunk
            except GeneratorExit:
                self.active = True  # httpx closes the response now: not yet the record
                try:
                    it.close()
                finally:
                    self.active = self.pending = False
                raise
        if keep:
            call.raw_complete = True
        if self.pending:
            self._record()

    async def aiter_bytes(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        call, keep = self.call, self._keep()
        it = type(self.resp).aiter_bytes(self.resp, *args, **kwargs)
        while True:
            self.active = True
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                break
            except BaseException as e:
                if self.pending and not call.done:
                    self.pending = False
                    await _afailed(call.cfg.sink, call, e)
                raise
            finally:
                self.active = False
            if keep:
                call.raw.append(chunk)  # type: ignore[union-attr]
            try:
                yield chunk
            except GeneratorExit:
                self.active = True
                try:
                    await it.aclose()
                finally:
                    self.active = self.pending = False
                raise
        if keep:
            call.raw_complete = True
        if self.pending:
            await self._arecord()

    def _record(self) -> None:
        self.pending = False
        if not self.call.done:
            self.call.cfg.sink.commit(self.call.end())

    async def _arecord(self) -> None:
        self.pending = False
        if not self.call.done:
            await self.call.cfg.sink.acommit(self.call.end())

    def close(self) -> None:
        type(self.resp).close(self.resp)
        if self.active:
            self.pending = True
        else:
            self._record()

    async def aclose(self) -> None:
        await type(self.resp).aclose(self.resp)
        if self.active:
            self.pending = True
        else:
            await self._arecord()


def _abandoned(call: _Call) -> None:
    """A with_streaming_response response collected without being closed."""
    if not call.done:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            call.cfg.sink.later(call.end())


def _watch_body(resp: Any, call: _Call, is_async: bool) -> None:
    call.raw = []
    ctype = str(getattr(resp, "headers", {}).get("content-type", ""))
    call.raw_sse = ctype.split(";")[0].strip().lower() == "text/event-stream"
    watch = _RawBody(call, resp)
    weakref.finalize(watch, _abandoned, call)
    # instance attributes: httpx's read()/iter_raw() call self.iter_bytes()/self.close()
    if is_async:
        resp.aiter_bytes = watch.aiter_bytes
        resp.aclose = watch.aclose
    else:
        resp.iter_bytes = watch.iter_bytes
        resp.close = watch.close


def _wrap_stream(stream: Any, call: _Call, is_async: bool) -> None:
    """Keep the SDK's stream object; route its iterator through us and hook its close.

    Each event reaches ``_process_response_data`` with the stream's HTTP response, which
    names its call (``_kansa_call``): no per-chunk context switching."""
    call.events = []
    inner = stream._iterator  # the SDK's generator (anthropic: a cached property)
    try:
        stream.response._kansa_call = call
    except AttributeError:  # a response that takes no attributes: route by context
        inner = _ctx_aiterate(call, inner) if is_async else _ctx_iterate(call, inner)
    if is_async:
        stream._iterator = _aiterate(call, inner)
        stream.close = _AsyncCloser(call, weakref.ref(stream))
    else:
        stream._iterator = _iterate(call, inner)
        stream.close = _Closer(call, weakref.ref(stream))


def _iterate(call: _Call, inner: Iterator[Any]) -> Iterator[Any]:
    sink = call.cfg.sink
    try:
        for item in inner:
            if call.strip_usage and _is_usage_only(item):
                continue  # kansa asked for it (see _stream_usage), not the caller
            try:
                yield item
            except GeneratorExit:  # dropped mid-stream: never block a finalizer
                if not call.done:
                    sink.later(call.stream_end(closed=True))
                raise
    except GeneratorExit:
        raise
    except BaseException as e:
        if not call.done:
            _failed(sink, call, e)
        raise
    if not call.done:
        sink.commit(call.stream_end(closed=False))


async def _aiterate(call: _Call, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    sink = call.cfg.sink
    try:
        async for item in inner:
            if call.strip_usage and _is_usage_only(item):
                continue  # kansa asked for it (see _stream_usage), not the caller
            try:
                yield item
            except GeneratorExit:
                if not call.done:
                    sink.later(call.stream_end(closed=True))
                raise
    except GeneratorExit:
        raise
    except BaseException as e:
        if not call.done:
            await _afailed(sink, call, e)
        raise
    if not call.done:
        await sink.acommit(call.stream_end(closed=False))


def _ctx_iterate(call: _Call, inner: Iterator[Any]) -> Iterator[Any]:
    while True:
        token = _CURRENT.set(call)
        try:
            item = next(inner)
        except StopIteration:
            return
        finally:
            _CURRENT.reset(token)
        yield item


async def _ctx_aiterate(call: _Call, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    while True:
        token = _CURRENT.set(call)
        try:
            item = await inner.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _CURRENT.reset(token)
        yield item


class _Closer:
    """The stream's ``close``: records the call (aborted unless it had finished), then
    closes as the SDK does. Holds the stream weakly, so a dropped stream is collected;
    if it is dropped unclosed, the record is made when it is."""

    __slots__ = ("call", "ref")

    def __init__(self, call: _Call, ref: weakref.ref[Any]) -> None:
        self.call = call
        self.ref = ref

    def __call__(self) -> None:
        stream = self.ref()
        try:
            if not self.call.done:
                self.call.cfg.sink.commit(self.call.stream_end(closed=True))
        finally:
            if stream is not None:
                type(stream).close(stream)

    def __del__(self) -> None:
        call = self.call
        if not call.done:
            with contextlib.suppress(Exception):  # at interpreter shutdown
                call.cfg.sink.later(call.stream_end(closed=True))


class _AsyncCloser(_Closer):
    __slots__ = ()

    async def __call__(self) -> None:  # type: ignore[override]
        stream = self.ref()
        try:
            if not self.call.done:
                await self.call.cfg.sink.acommit(self.call.stream_end(closed=True))
        finally:
            if stream is not None:
                await type(stream).close(stream)


# -- agent steps and tool calls -----------------------------------------------------------


def _outcome_of(e: BaseException | None) -> tuple[str, str | None]:
    if e is None:
        return "ok", None
    if isinstance(e, _INTERRUPTS):
        return "aborted", type(e).__name__
    if isinstance(e, TimeoutError):
        return "timeout", type(e).__name__
    return "error", type(e).__name__


class _Span:
    """What step and tool share: a context manager (sync and async) and a decorator."""

    kind = ""
    operation = ""

    def __init__(self, name: str | None, *, ledger: Ledger | None, system: str | None,
                 durable: bool, attributes: Mapping[str, Any] | None) -> None:
        self.name = name
        self._ledger = ledger
        self._system = system
        self._durable = durable
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.id = ""
        self.outcome: str | None = None  # set to override ("blocked", ...)
        self.error_type: str | None = None  # ditto
        self._pc: Call | None = None  # the call's run through the pipeline (tools)
        self._token: Token[_Meta] | None = None
        self._meta = _NO_META
        self._t0 = 0.0
        self._started = datetime.now(UTC)

    def _pipeline(self) -> Pipeline:
        raise NotImplementedError  # only spans that set _pc (tools) run the pipeline

    # subclasses: a fresh instance per decorated call, the record's own fields
    def _fresh(self) -> _Span:
        raise NotImplementedError

    def _fill(self, rec: UsageRecord, e: BaseException | None) -> None:
        raise NotImplementedError

    def _child_meta(self, meta: _Meta) -> _Meta:
        return replace(meta, parent_id=self.id)

    def _start(self) -> None:
        if self._token is not None:
            raise RuntimeError(f"kansa.{type(self).__name__}({self.name!r}) is already open")
        self._meta = _META.get()
        self._started = datetime.now(UTC)
        self.id = new_record_id(self._started)
        self._token = _META.set(self._child_meta(self._meta))
        self._t0 = time.perf_counter()

    def _end(self, e: BaseException | None) -> tuple[_Sink, UsageRecord]:
        latency = (time.perf_counter() - self._t0) * 1000
        if self._token is not None:
            _META.reset(self._token)
            self._token = None
        meta = self._meta
        outcome, error_type = _outcome_of(e)
        attrs: dict[str, Any] = dict(meta.attributes) if meta.attributes else {}
        if meta.parent_id is not None:
            attrs["kansa.parent_id"] = meta.parent_id
        attrs.update(self.attributes)
        rec = UsageRecord(
            system=self._system or meta.system or _default_system(),
            ts=self._started,
            kind=self.kind,
            operation=self.operation,
            agent_name=meta.agent,
            actor=meta.actor,
            app=meta.app,
            subject=meta.subject,
            conversation_id=meta.conversation_id,
            outcome=self.outcome or outcome,
            error_type=self.error_type or error_type,
            latency_ms=latency,
            attributes=attrs,
            id=self.id,
        )
        self._fill(rec, e)
        _LAST.set(self.id)
        return _Sink(self._ledger, self._durable), rec

    def __enter__(self) -> Any:
        self._start()
        return self

    def _answered(self, pc: Call, e: BaseException | None) -> None:
        """Before the pipeline's after moment (tools): what the stages see as the answer."""

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        sink, rec = self._end(e)
        pc = self._pc
        if pc is not None:
            self._answered(pc, e)
            self._pipeline().after(pc, rec)
        if e is None:
            sink.commit(rec)
            if pc is not None and pc.held is not None:
                raise _held_error(self.id, pc.held)
        elif isinstance(e, _INTERRUPTS):
            sink.later(rec)
        else:  # the body's exception propagates unchanged
            _commit_quietly(sink, rec)

    async def __aenter__(self) -> Any:
        self._start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        sink, rec = self._end(e)
        pc = self._pc
        if pc is not None:
            self._answered(pc, e)
            await self._pipeline().aafter(pc, rec)
        if e is None:
            await sink.acommit(rec)
            if pc is not None and pc.held is not None:
                raise _held_error(self.id, pc.held)
        elif isinstance(e, _INTERRUPTS):
            sink.later(rec)
        else:
            await _acommit_quietly(sink, rec)

    def _decorate(self, fn: Callable[P, R],
                  before: Callable[[_Span, tuple[Any, ...], dict[str, Any]], None],
                  after: Callable[[_Span, Any], None]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                span = self._fresh()
                before(span, args, kwargs)
                async with span:
                    result = await fn(*args, **kwargs)
                    after(span, result)
                    return result

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = self._fresh()
            before(span, args, kwargs)
            with span:
                result = fn(*args, **kwargs)
                after(span, result)
                return result

        return wrapper


def _nothing(*_: Any) -> None:
    return None


class step(_Span):  # noqa: N801
    """An agent step: ``with kansa.step("plan") as s:``, ``async with``, or
    ``@kansa.step("plan")`` on a function or coroutine function. Records kind
    "agent.step" (operation "invoke_agent") with the outcome (error if the body raises;
    the exception propagates unchanged), the latency, ``kansa.step.name`` and, inside
    another step, ``kansa.parent_id``. Model calls and tools inside it name it as their
    parent. ``s.input``/``s.output`` (optional) are committed as content; ``s.id`` is
    the record's id. (A decorated generator function would end its step when called:
    use the context manager inside it instead.)"""

    kind = "agent.step"
    operation = "invoke_agent"

    def __init__(self, name: str, *, ledger: Ledger | None = None, system: str | None = None,
                 agent: str | None = None, durable: bool = True,
                 attributes: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, ledger=ledger, system=system, durable=durable,
                         attributes=attributes)
        self.agent = agent
        self.input: Any = None
        self.output: Any = None

    def _fresh(self) -> step:
        return step(self.name or "", ledger=self._ledger, system=self._system,
                    agent=self.agent, durable=self._durable, attributes=self.attributes)

    def _child_meta(self, meta: _Meta) -> _Meta:
        if self.agent is not None:
            return replace(meta, parent_id=self.id, agent=self.agent)
        return replace(meta, parent_id=self.id)

    def _fill(self, rec: UsageRecord, e: BaseException | None) -> None:
        rec.attributes["kansa.step.name"] = self.name or ""
        if self.agent is not None:
            rec.agent_name = self.agent
        if self.input is not None:
            rec.content["input"] = _jsonable(self.input)
        if self.output is not None:
            rec.content["output"] = _jsonable(self.output)

    def __enter__(self) -> step:
        self._start()
        return self

    async def __aenter__(self) -> step:
        self._start()
        return self

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        return self._decorate(fn, _nothing, _nothing)


class tool(_Span):  # noqa: N801
    """A tool call: ``@kansa.tool("search")`` (or ``@kansa.tool()``: the function's
    name) on a function or coroutine function, or ``with kansa.tool("search",
    arguments={...}) as t: t.result = ...``. Records kind "tool.call" (operation
    "execute_tool") with ``gen_ai.tool.name``; the arguments (bound to the function's
    parameters, defaults applied) and the result are committed as content
    (``gen_ai.tool.call.arguments``/``gen_ai.tool.call.result``), never in the entry.

    Tool calls run the capture pipeline (surface ``tool``; ``pipeline``, default: the
    ``kansa.stages`` entry points). Before the tool runs, a stage sees
    ``call.request == {"name", "arguments"}`` and may block it or require approval
    (:class:`kansa.PolicyBlocked` is raised, the body does not run; pass an approved id
    with ``kansa.context(approval=ID)``) or replace the arguments (the function is called
    with them, as JSON values; in the ``with`` form read ``t.arguments``). After it, a
    stage sees ``call.response == {"name", "arguments", "result"}``; in the decorator form
    it may hold the result (PolicyBlocked) or rewrite it (the caller gets the replacement's
    ``result``)."""

    kind = "tool.call"
    operation = "execute_tool"

    def __init__(self, name: str | None = None, *, arguments: Any = None,
                 call_id: str | None = None, ledger: Ledger | None = None,
                 system: str | None = None, durable: bool = True,
                 attributes: Mapping[str, Any] | None = None,
                 pipeline: Pipeline | None = None) -> None:
        super().__init__(name, ledger=ledger, system=system, durable=durable,
                         attributes=attributes)
        self.arguments: Any = arguments
        self.result: Any = None
        self.call_id = call_id
        self._given_pipeline = pipeline
        self._decorated = False  # the decorator form: its result can still be rewritten

    def _fresh(self) -> tool:
        return tool(self.name, call_id=self.call_id, ledger=self._ledger, system=self._system,
                    durable=self._durable, attributes=self.attributes,
                    pipeline=self._given_pipeline)

    def _pipeline(self) -> Pipeline:
        p = self._given_pipeline
        return p if p is not None else _default_tool_pipeline()

    def _fill(self, rec: UsageRecord, e: BaseException | None) -> None:
        rec.tool_name = self.name or "tool"
        if self.call_id is not None:
            rec.attributes["gen_ai.tool.call.id"] = self.call_id
        if self.arguments is not None:
            rec.content["gen_ai.tool.call.arguments"] = _jsonable(self.arguments)
        if e is None and self.result is not None:
            rec.content["gen_ai.tool.call.result"] = _jsonable(self.result)

    # -- the pipeline ---------------------------------------------------------------------

    def _request_json(self) -> dict[str, Any]:
        return {"name": self.name or "tool", "arguments": _jsonable(self.arguments)}

    def _open(self) -> Call | None:
        """Open the call's run through the pipeline (None without stages: no cost)."""
        pipe = self._pipeline()
        if not pipe:
            return None
        meta = self._meta
        ledger = self._ledger
        self._pc = pc = pipe.open(
            "tool", at=self._started, request=self._request_json, record_id=self.id,
            subject=lambda: subject_pseudonym(
                ledger if ledger is not None else _get_default_ledger(), meta.subject))
        return pc if pipe.has_before else None

    def _approval_args(self) -> dict[str, Any]:
        meta, ledger = self._meta, self._ledger
        system = self._system or meta.system or _default_system()
        body = _body_bytes(self._request_json())  # as the caller asked: what is approved

        def approvals() -> Any:
            from kansa.policy.approvals import Approvals

            return Approvals((ledger if ledger is not None else _get_default_ledger())
                             .log.store)

        def digest() -> str:
            from kansa.policy.approvals import request_digest

            return request_digest(f"tool:{self.name or 'tool'}", system, meta.app, body)

        return {"approvals": approvals, "approval_id": meta.approval, "digest": digest}

    def _went_ahead(self, pc: Call) -> None:
        if pc.request_replaced:  # a stage replaced the arguments: those are what run
            req = pc.request or {}
            self.arguments = req.get("arguments")

    def _refuse(self, pc: Call, r: Refusal) -> PolicyBlocked:
        """Record a tool call the pipeline refused before it ran; the exception to raise."""
        exc, self.error_type = _refusal(r, self.id, "kansa.context(approval='{}')")
        self.outcome = "blocked"
        self._answered(pc, None)
        return exc

    def _start_checked(self) -> None:
        self._start()
        pc = self._open()
        if pc is None:
            return
        try:
            r = self._pipeline().before(pc, **self._approval_args())
        except BaseException as e:
            self.__exit__(type(e), e, None)
            raise
        if r is None:
            return self._went_ahead(pc)
        exc = self._refuse(pc, r)
        sink, rec = self._end(None)
        self._pipeline().after(pc, rec)
        sink.commit(rec)
        raise exc

    async def _astart_checked(self) -> None:
        self._start()
        pc = self._open()
        if pc is None:
            return
        try:
            r = await self._pipeline().abefore(pc, **self._approval_args())
        except BaseException as e:
            await self.__aexit__(type(e), e, None)
            raise
        if r is None:
            return self._went_ahead(pc)
        exc = self._refuse(pc, r)
        sink, rec = self._end(None)
        await self._pipeline().aafter(pc, rec)
        await sink.acommit(rec)
        raise exc

    def _answered(self, pc: Call, e: BaseException | None) -> None:
        ok = e is None and self.outcome is None

        def response() -> dict[str, Any]:
            return {**self._request_json(), "result": _jsonable(self.result)}

        pc.holdable = self._decorated and ok
        pc.answered(response if ok else None, rewritable=self._decorated and ok,
                    convert=_tool_result)

    def delivered(self, result: Any) -> Any:
        """The result the caller gets: ``result``, or a stage's rewrite of it."""
        pc = self._pc
        if pc is None or pc.delivered is None:
            return result
        return pc.delivered_object

    def __enter__(self) -> tool:
        self._start_checked()
        return self

    async def __aenter__(self) -> tool:
        await self._astart_checked()
        return self

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if self.name is None:
            self.name = getattr(fn, "__name__", None) or "tool"
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        skip = None
        if sig is not None:
            first = next(iter(sig.parameters), None)
            if first in ("self", "cls"):
                skip = first

        def fresh(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tool:
            span = self._fresh()
            span._decorated = True
            span.arguments = _bind(sig, skip, args, kwargs)
            return span

        def call_args(span: tool, args: tuple[Any, ...], kwargs: dict[str, Any],
                      ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if span._pc is None or not span._pc.request_replaced:
                return args, kwargs
            return _unbind(sig, skip, args, span.arguments)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                span = fresh(args, kwargs)
                async with span:
                    a, kw = call_args(span, args, kwargs)
                    span.result = await fn(*a, **kw)
                return span.delivered(span.result)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span = fresh(args, kwargs)
            with span:
                a, kw = call_args(span, args, kwargs)
                span.result = fn(*a, **kw)
            return span.delivered(span.result)

        return wrapper


def _tool_result(d: dict[str, Any]) -> Any:
    """A tool's rewritten answer: the ``result`` of the replacement."""
    if "result" not in d:
        raise ValueError("a tool's answer replacement needs a 'result'")
    return d["result"]


_TOOL_PIPELINE: tuple[Any, Pipeline] | None = None


def _default_tool_pipeline() -> Pipeline:
    """The tools' pipeline when none is given: the ``kansa.stages`` entry points (built
    again only when the entry points are looked up again)."""
    global _TOOL_PIPELINE
    from kansa.capture.pipeline import entry_point_stages

    factories = entry_point_stages()
    got = _TOOL_PIPELINE
    if got is None or got[0] is not factories:
        got = _TOOL_PIPELINE = (factories, Pipeline([f() for f in factories]))
    return got[1]


def _unbind(sig: inspect.Signature | None, skip: str | None, args: tuple[Any, ...],
            arguments: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for the function from a stage's replacement of
    its bound arguments (the inverse of :func:`_bind`)."""
    from kansa.capture.pipeline import BadReplacement

    if not isinstance(arguments, dict):
        raise BadReplacement("a tool's request replacement needs 'arguments' as an object")
    if sig is None:
        return tuple(arguments.get("args") or ()), dict(arguments.get("kwargs") or {})
    pos: list[Any] = [args[0]] if skip is not None and args else []
    kw: dict[str, Any] = {}
    positional = True  # still filling positional slots in order
    for name, p in sig.parameters.items():
        if name == skip:
            continue
        if name not in arguments:
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional = False
            continue
        v = arguments[name]
        if p.kind is p.VAR_POSITIONAL:
            if positional:
                pos.extend(v)
        elif p.kind is p.VAR_KEYWORD:
            kw.update(v)
        elif positional and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            pos.append(v)
        else:
            kw[name] = v
    return tuple(pos), kw


def _bind(sig: inspect.Signature | None, skip: str | None, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> dict[str, Any]:
    if sig is not None:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            pass  # the call itself will fail the same way; record what was passed
        else:
            bound.apply_defaults()
            out = dict(bound.arguments)
            if skip is not None:
                out.pop(skip, None)
            return out
    return {"args": list(args), "kwargs": dict(kwargs)}
