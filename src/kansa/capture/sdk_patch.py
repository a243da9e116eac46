"""``kansa.wrap``: a copy of an OpenAI or Anthropic client whose model calls are recorded.

Four methods of the SDKs' shared base client are overridden on that copy only
(``request``, ``_build_request``, ``_process_response_data``, ``copy``/``with_options``);
the capture pipeline runs before the call (refuse, redact) and after it (hold, rewrite).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kansa.capture.pipeline import Call, Pipeline, Refusal, Stage, Verdict, subject_pseudonym
from kansa.capture.sdk_call import _CURRENT, _afailed, _Call, _failed, _read_json, _request_body
from kansa.capture.sdk_refusal import _body_bytes, _held_error, _refusal
from kansa.capture.sdk_scopes import _LAST, _PROBE_ID, _default_system
from kansa.capture.sdk_streams import _stream_usage, _watch_body, _wrap_stream
from kansa.capture.sdk_writer import _Sink
from kansa.capture.shapes import OPERATIONS, CallInfo
from kansa.records.attributes import KANSA_PARENT_ID
from kansa.records.model import UsageRecord

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.api import Ledger
    from kansa.capture.sdk_scopes import _Meta
    from kansa.policy.inline import PolicyBlocked, PolicyHandle, PolicySnapshot


C = TypeVar("C")


SubjectArg = str | Callable[[], str | None] | None


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
        attrs[KANSA_PARENT_ID] = meta.parent_id
    UsageRecord(system=meta.system or cfg.system, provider=cfg.provider,
                operation=call.operation, app=meta.app or cfg.app,
                actor=meta.actor or cfg.actor, subject=call.subject,
                conversation_id=meta.conversation_id, attributes=attrs,
                id=_PROBE_ID).check_encodable()
    cfg.checked = key


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
    stages: Sequence[Stage] = (),
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
    ``policy`` (a policy file, handle or snapshot to enforce inline).

    ``stages``: capture-pipeline stages to run after the policy stage and before those
    installed under the ``kansa.stages`` entry point, e.g. the guard's
    ``DataGuardStage.for_ledger(ledger)`` or provenance's ``LabelStage`` (see
    docs/design/capture-pipeline.md). The same stages run in the gateway."""
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
                  Pipeline.default(handle, extra=stages))
    copy = type(client).copy(client)  # type: ignore[attr-defined]
    _install(copy, cfg)
    return copy  # type: ignore[no-any-return]


def _install(client: Any, cfg: _Config) -> None:
    """Override the client's four methods on this instance (see the module docstring)."""
    orig_request = client.request
    orig_data = client._process_response_data
    orig_build = client._build_request
    base_copy = type(client).copy
    sink = cfg.sink

    def process_response_data(*args: Any, **kwargs: Any) -> Any:
        _seen_data(cfg, kwargs)
        return orig_data(*args, **kwargs)

    def build_request(options: Any, *args: Any, **kwargs: Any) -> Any:
        call = _CURRENT.get()
        if call is not None:  # once per attempt: the body as finally sent
            _seen_body(cfg, call, options)
        return orig_build(options, *args, **kwargs)

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
            result, info = _finish(cfg, call, result, bool(kwargs.get("stream")))
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
            result, info = _finish(cfg, call, result, bool(kwargs.get("stream")))
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


def _seen_data(cfg: _Config, kwargs: dict[str, Any]) -> None:
    """The wire JSON of a response, or of one streamed event, before the SDK parses it."""
    call = _CURRENT.get()
    if call is None:  # an event of a stream being iterated?
        call = getattr(kwargs.get("response"), "_kansa_call", None)
    if call is None:
        return
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


def _seen_body(cfg: _Config, call: _Call, options: Any) -> None:
    """The JSON body of one attempt, as the SDK is about to send it."""
    call.body = getattr(options, "json_data", None)
    call.extra = getattr(options, "extra_json", None)
    if cfg.provider == "openai" and call.operation in ("chat", "text_completion"):
        _stream_usage(call, options)


def _finish(cfg: _Config, call: _Call, result: Any, stream: bool) -> tuple[Any, _Call | None]:
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
        # the body as the caller gave it (a stage's redaction is applied after this, so
        # the approval binds what was asked for, as the gateway's does)
        body = _request_body(getattr(options, "json_data", None),
                             getattr(options, "extra_json", None))
        return request_digest(str(getattr(options, "url", "")), info.system, info.app,
                              _body_bytes(body))

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


def _refused(call: _Call, r: Refusal) -> PolicyBlocked:
    """End a call the pipeline refused (its record carries the refusal's attributes) and
    the exception the caller gets."""
    exc, error_type = _refusal(r, call.id, "extra_headers={{'x-kansa-approval': '{}'}}")
    call.end("blocked", error_type)
    return exc
