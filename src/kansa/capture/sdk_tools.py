"""Agent steps (``kansa.step``) and tool calls (``kansa.tool``): context managers and
decorators that record one record each; tool calls run the capture pipeline (surface
``tool``).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from kansa.capture.pipeline import CALL_SCOPE, Call, Pipeline, Refusal, subject_pseudonym
from kansa.capture.sdk_call import _INTERRUPTS
from kansa.capture.sdk_refusal import _body_bytes, _held_error, _refusal
from kansa.capture.sdk_scopes import _LAST, _META, _NO_META, _default_system
from kansa.capture.sdk_writer import (
    _acommit_quietly,
    _commit_quietly,
    _get_default_ledger,
    _jsonable,
    _Sink,
)
from kansa.records.attributes import (
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_ID,
    GEN_AI_TOOL_CALL_RESULT,
    KANSA_PARENT_ID,
    KANSA_STEP_NAME,
)
from kansa.records.model import UsageRecord, new_record_id

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.api import Ledger
    from kansa.capture.sdk_scopes import _Meta
    from kansa.policy.inline import PolicyBlocked


P = ParamSpec("P")


R = TypeVar("R")


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
            attrs[KANSA_PARENT_ID] = meta.parent_id
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
        rec.attributes[KANSA_STEP_NAME] = self.name or ""
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
            rec.attributes[GEN_AI_TOOL_CALL_ID] = self.call_id
        if self.arguments is not None:
            rec.content[GEN_AI_TOOL_CALL_ARGUMENTS] = _jsonable(self.arguments)
        if e is None and self.result is not None:
            rec.content[GEN_AI_TOOL_CALL_RESULT] = _jsonable(self.result)

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
        # whose call it is (no CallInfo for a tool): for the approval it may open, and
        # for stages that follow a conversation across calls (the agent guard)
        pc.state[CALL_SCOPE] = {"system": self._system or meta.system or _default_system(),
                                "app": meta.app, "conversation": meta.conversation_id,
                                "parent": meta.parent_id, "approval": meta.approval}
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
            # bound to the tool and its exact arguments (RFC 8785), which is also what an
            # approver's edit binds: the resumed call must carry the edited arguments
            from kansa.policy.approvals import ApprovalError, request_digest, tool_call_digest

            try:
                return tool_call_digest(self.name or "tool", _jsonable(self.arguments))
            except ApprovalError:  # not JSON-exact (an integer past 2**53): the bytes
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
