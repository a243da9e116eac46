"""One capture pipeline: the stages every captured call runs through, on every surface.

The gateway, the SDK wrappers (``kansa.wrap``), tool calls (``kansa.tool``) and the OTLP
intake all run a :class:`Pipeline`: an ordered list of :class:`Stage` objects with two moments.

* **before** a call leaves (gateway, SDK and tools): a stage sees the :class:`Call` (its
  request entry, lazily built) and answers ``None`` (go ahead) or a :class:`Verdict`:
  ``allow`` / ``flag`` with attributes to record, ``block``, or ``approval_required``. A
  ``block`` refuses at once; any ``approval_required`` is settled once, for every stage
  that asked, by :func:`kansa.policy.approvals.consume_or_request` (one approval flow).
* **events**: a streamed answer's events as they pass (``on_event``).
* **after** the answer (all three surfaces): a stage sees the :class:`Call` and the
  :class:`~kansa.records.model.UsageRecord` about to be appended and may add attributes,
  labels or findings to ``record.attributes``. It may answer a ``block`` verdict to
  *hold* a non-streamed answer where the surface can still withhold it
  (``call.holdable``: the gateway, durable SDK wrappers): the record is appended with
  outcome ``blocked``, ``error.type`` ``answer_held`` and ``kansa.pipeline.held``, the
  answer itself is kept in the record's content, and the caller gets a refusal.

**Rewriting.** A before verdict may carry ``request``: a replacement of the request body
(redaction, pseudonymisation) that the next stage sees as ``call.request``, that leaves
in place of the original, and that the record holds (personal data a stage removed never
reaches the ledger). An after verdict may carry ``response``: a replacement of a
non-streamed answer, delivered to the caller where ``call.rewritable`` (the gateway, durable
SDK wrappers, decorated tools); the record keeps the answer as it came and names the
delivered one by ``kansa.pipeline.delivered_sha256``. ``kansa.pipeline.rewritten`` lists
what was replaced, ``kansa.pipeline.rewrite_not_applied`` what could not be (a stream).
A replacement that is not a JSON object fails closed (see :class:`Verdict`).

A stage declares what it reads (``reads``: entry keys, informational), is timed per
moment (:meth:`Pipeline.stats`: calls, errors, total microseconds; the gateway shows them
in ``/healthz``) and fails closed: a stage that raises *before* refuses the call
(``kansa.pipeline.error`` names the stage and the error in the record); one that raises
*after* leaves that same attribute in the record, which is still appended.

Inline policy (:class:`kansa.policy.inline.PolicySnapshot`) is the first stage,
:class:`PolicyStage`; on an event loop it judges with ``acheck_request`` /
``ajudge_record`` (a memo hit on the loop, a miss on the policy threads).

Third-party stages come from the ``kansa.stages`` entry-point group: each entry point
names a callable taking no arguments (a class, usually) that returns a stage. They run
after the policy stage, ordered by entry-point name; one that cannot be loaded stops the
surface from starting (fail closed). A stage may add async ``abefore`` / ``aafter`` to
its sync ``before`` / ``after``, awaited instead on an event loop (the gateway, async
SDK clients); otherwise the sync method runs there directly (keep it cheap).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kansa.capture.shapes import CallInfo, to_record
from kansa.errors import KansaError, RecordError
from kansa.records.attributes import (
    KANSA_PIPELINE_DELIVERED_SHA256,
    KANSA_PIPELINE_ERROR,
    KANSA_PIPELINE_HELD,
    KANSA_PIPELINE_REWRITE_NOT_APPLIED,
    KANSA_PIPELINE_REWRITTEN,
    KANSA_POLICY_APPROVAL,
    KANSA_POLICY_DECISION,
)
from kansa.records.model import UsageRecord, canonical

if TYPE_CHECKING:  # the policy package (CEL, YAML) loads only when a policy is given
    from kansa.policy.approvals import Approvals
    from kansa.policy.inline import PolicyHandle, PolicySnapshot

__all__ = ["ATTR_PIPELINE_DELIVERED_SHA256", "ATTR_PIPELINE_ERROR", "ATTR_PIPELINE_HELD",
           "ATTR_PIPELINE_NOT_REWRITTEN", "ATTR_PIPELINE_REWRITTEN", "ENTRY_POINT_GROUP",
           "BadReplacement", "Call", "Obligation", "Pipeline", "PolicyStage", "Refusal", "Stage",
           "Verdict", "entry_point_stages", "subject_pseudonym"]

_logger = logging.getLogger("kansa.pipeline")

ENTRY_POINT_GROUP = "kansa.stages"
ATTR_PIPELINE_ERROR = KANSA_PIPELINE_ERROR
ATTR_PIPELINE_HELD = KANSA_PIPELINE_HELD
# call.state key: (tool name, arguments) of a tool call a stage holds for approval
HELD_TOOL_CALL = "approval.tool_call"
# call.state key: whose call it is where no CallInfo says (kansa.tool): {"system", "app",
# "conversation", "parent", "approval"} (the conversation id, the enclosing step's record
# id, the approval id the call carries)
CALL_SCOPE = "scope"
# what the stages replaced: ["<stage>:request", "<stage>:response"]
ATTR_PIPELINE_REWRITTEN = KANSA_PIPELINE_REWRITTEN
# answer replacements a stage asked for where the answer could not be rewritten (streamed,
# already delivered, recorded after the fact): ["<stage>:response"]
ATTR_PIPELINE_NOT_REWRITTEN = KANSA_PIPELINE_REWRITE_NOT_APPLIED
# sha256 (hex) of the RFC 8785 canonical JSON of a rewritten answer as delivered
ATTR_PIPELINE_DELIVERED_SHA256 = KANSA_PIPELINE_DELIVERED_SHA256

ALLOW, FLAG, BLOCK, APPROVAL_REQUIRED = "allow", "flag", "block", "approval_required"
_REFUSING = (BLOCK, APPROVAL_REQUIRED)
# kansa.policy.* attribute names (kept here so the pipeline loads without kansa.policy)
_ATTR_DECISION = KANSA_POLICY_DECISION
_ATTR_APPROVAL = KANSA_POLICY_APPROVAL


@dataclass(frozen=True)
class Obligation:
    """What a refusing verdict names: ``pack@version#obligation`` (or any label), a
    citation and the mode that made it refuse."""

    label: str
    citation: str = ""
    mode: str = BLOCK


@dataclass(frozen=True)
class Verdict:
    """A stage's answer. ``decision``: ``allow`` or ``flag`` (the call goes ahead;
    ``attributes`` are recorded), ``block`` or ``approval_required`` (refused before the
    call unless an approval lets it through; after it, held where ``call.holdable``).
    ``attributes`` go into the call's record.

    ``request`` (before only): a replacement of the outgoing request body (redaction,
    pseudonymisation). The next stage sees it as ``call.request``; the gateway forwards it
    re-serialised, the SDK wrappers call the SDK with it, a tool runs with its
    ``arguments``; the record holds it (what left). It is applied whatever the decision.

    ``response`` (after only): a replacement of the non-streamed answer the caller
    receives, applied only when ``call.rewritable`` (else the record lists it under
    ``kansa.pipeline.rewrite_not_applied``). The record keeps the answer as it came
    (from the provider or the tool) and ``kansa.pipeline.delivered_sha256``.

    A replacement that is not a JSON object (a mapping that RFC 8785 can encode) fails
    closed: before, the call is refused; after, a rewritable answer is withheld."""

    decision: str
    message: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    obligations: tuple[Obligation, ...] = ()
    snapshot: str = ""  # the policy snapshot that judged it, if any
    approval_ttl_hours: float = 24.0
    approval: str | None = None  # the approval the call carries (held or passed)
    stage: str = ""  # set by the pipeline
    request: Mapping[str, Any] | None = None  # before: the request body to send instead
    response: Mapping[str, Any] | None = None  # after: the answer to deliver instead

    def record_attributes(self) -> dict[str, Any]:
        a = dict(self.attributes)
        if self.approval:
            a[_ATTR_APPROVAL] = self.approval
        return a


@dataclass(frozen=True)
class Refusal:
    """Why the pipeline refused a call before it left. ``kind``: ``blocked`` (a stage
    blocked), ``approval_required`` (an approval was requested: ``verdict.approval``),
    ``approval_pending`` / ``approval_invalid`` (the approval given cannot let it through
    yet / at all: ``why``) or ``stage_failed`` (a stage raised: fail closed)."""

    kind: str
    verdict: Verdict
    why: str = ""


_UNSET: Any = object()


class BadReplacement(ValueError):
    """A stage's ``request`` / ``response`` replacement that cannot be sent or recorded."""


def _checked(what: str, got: Any) -> tuple[dict[str, Any], bytes]:
    """A replacement as a dict and its canonical JSON, or :class:`BadReplacement`."""
    if not isinstance(got, Mapping):
        raise BadReplacement(f"the {what} replacement is a {type(got).__name__}, not a JSON "
                             "object (a mapping)")
    d = dict(got)
    try:
        return d, canonical(d)
    except (RecordError, TypeError, ValueError, RecursionError) as e:
        raise BadReplacement(f"the {what} replacement is not JSON: {e}") from None


class Call:
    """One call as the stages see it: the surface (``gateway``, ``sdk``, ``otel``,
    ``tool``), the instant it is judged at (None: now), the call itself (``info``, built
    on first use), attributes the stages add, per-stage ``state`` and the approval it
    passed on. ``request``, ``response`` and ``subject`` are built only when a stage
    reads them (no cost otherwise); treat them as read-only and return a replacement in
    a :class:`Verdict` instead (an edit in place is neither sent nor recorded reliably)."""

    __slots__ = ("surface", "at", "attributes", "state", "approval", "holdable", "held",
                 "rewritable", "rewritten", "delivered", "delivered_object",
                 "request_replaced", "_info", "_make_info", "_entry", "_request",
                 "_make_request", "_response", "_make_response", "_convert", "_subject",
                 "_record_id")

    def __init__(self, surface: str, *, at: datetime | None = None,
                 info: CallInfo | Callable[[], CallInfo] | None = None,
                 request: Callable[[], Any] | None = None,
                 subject: str | Callable[[], str | None] | None = None,
                 record_id: str | Callable[[], str] | None = None) -> None:
        self.surface = surface
        self.at = at
        self.attributes: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.approval: str | None = None
        # the surface can still withhold the answer (set just before the after moment)
        self.holdable = False
        self.held: Verdict | None = None  # the after verdict that withheld the answer
        # the surface can still deliver another answer (set by answered())
        self.rewritable = False
        self.rewritten: list[str] = []  # "<stage>:request" / "<stage>:response"
        self.request_replaced = False
        self.delivered: bytes | None = None  # a rewritten answer, canonical JSON
        self.delivered_object: Any = None  # ... converted back by the surface's convert
        self._info = info if isinstance(info, CallInfo) else None
        self._make_info = None if isinstance(info, CallInfo) else info
        self._entry: dict[str, Any] | None = None
        self._request: Any = _UNSET
        self._make_request = request
        self._response: Any = _UNSET
        self._make_response: Callable[[], Any] | None = None
        self._convert: Callable[[dict[str, Any]], Any] | None = None
        self._subject = subject
        self._record_id = record_id

    @property
    def info(self) -> CallInfo | None:
        if self._info is None and self._make_info is not None:
            self._info = self._make_info()
        return self._info

    def release(self) -> None:
        """Drop the call's request (kept by ``info`` and ``entry``) once recorded."""
        self._info = self._make_info = self._entry = None
        self._request = self._response = _UNSET
        self._make_request = self._make_response = self._convert = None

    @property
    def entry(self) -> dict[str, Any]:
        """The ledger entry the call would make if it succeeds (no response keys), as a
        check sees it; raises :class:`~kansa.errors.RecordError` if it cannot be one."""
        if self._entry is None:
            from kansa.policy.inline import entry_of

            info = self.info
            if info is None:
                raise RecordError("no call to judge")
            self._entry = entry_of(to_record(info), outcome="ok")
        return self._entry

    @property
    def request(self) -> dict[str, Any] | None:
        """The JSON request body as it will leave, after earlier stages' replacements
        (gateway: the parsed body; SDK: the create() arguments as JSON-like data, extra_body
        merged; ``tool``: ``{"name": str, "arguments": ...}``); None if there is none."""
        if self._request is _UNSET:
            if self._make_request is not None:
                got = self._make_request()
            else:
                info = self.info
                got = info.request if info is not None else None
            self._request = got if isinstance(got, dict) else None
        r: dict[str, Any] | None = self._request
        return r

    @property
    def response(self) -> dict[str, Any] | None:
        """In the after moment, the non-streamed answer's JSON body (gateway: the parsed
        body; SDK: the response JSON as received, which the SDK's object was built from;
        ``tool``: ``{"name", "arguments", "result"}``), after earlier stages' replacements.
        None before, for a streamed answer (stages see those through ``on_event``; a stream
        cannot be rewritten) and for an answer that is not a JSON object."""
        if self._response is _UNSET:
            got = self._make_response() if self._make_response is not None else None
            self._response = got if isinstance(got, dict) else None
        r: dict[str, Any] | None = self._response
        return r

    @property
    def subject(self) -> str | None:
        """The pseudonymous subject (as the ledger entry will name it) when known: a
        subject never recorded before has no pseudonym yet, and gives None."""
        s = self._subject
        if callable(s):
            s = self._subject = s()
        return s

    @property
    def record_id(self) -> str:
        """The id the call's record will get (the gateway returns it as x-kansa-record)."""
        r = self._record_id
        if callable(r):
            r = self._record_id = r()
        if r is None:
            info = self.info
            r = self._record_id = info.record_id if info is not None else ""
        return r

    def answered(self, response: Callable[[], Any] | None, *, rewritable: bool,
                 convert: Callable[[dict[str, Any]], Any] | None = None) -> None:
        """Called by a surface before the after moment: how to get the answer's JSON body
        (None: streamed, or none), whether another answer can still be delivered, and how
        to turn a replacement into what the caller gets (the SDK's own type; a failure
        fails closed: the answer is withheld)."""
        self._make_response = response
        self._response = _UNSET
        self.rewritable = rewritable and response is not None
        self._convert = convert

    def replace_request(self, stage: str, got: Any) -> None:
        """A before stage's request replacement (validated; BadReplacement if not JSON)."""
        d, _ = _checked("request", got)
        self._request = d
        self.request_replaced = True
        self._entry = None  # the next stage judges what will leave
        info = self.info
        if info is not None:
            info.request = d  # the record holds what left
        self.rewritten.append(f"{stage}:request")
        self.attributes[ATTR_PIPELINE_REWRITTEN] = list(self.rewritten)

    def replace_response(self, stage: str, got: Any, rec: UsageRecord) -> None:
        """An after stage's answer replacement: applied where the answer can still be
        rewritten (else listed as not applied); BadReplacement if it cannot be."""
        d, body = _checked("response", got)
        if not self.rewritable:
            prior = rec.attributes.get(ATTR_PIPELINE_NOT_REWRITTEN)
            rec.attributes[ATTR_PIPELINE_NOT_REWRITTEN] = [
                *(prior if isinstance(prior, list) else ()), f"{stage}:response"]
            return
        if self._convert is not None:
            try:
                obj = self._convert(d)
            except Exception as e:
                raise BadReplacement(f"the response replacement does not fit the answer's "
                                     f"type: {type(e).__name__}: {e}") from None
            self.delivered_object = obj
        self._response = d
        self.delivered = body
        self.rewritten.append(f"{stage}:response")
        rec.attributes[ATTR_PIPELINE_REWRITTEN] = list(self.rewritten)
        rec.attributes[ATTR_PIPELINE_DELIVERED_SHA256] = hashlib.sha256(body).hexdigest()


@runtime_checkable
class Stage(Protocol):
    """A pipeline stage. Only ``name`` is required; define the moments it takes part in:

    * ``reads``: the entry keys it reads (a frozenset; informational)
    * ``start(call)``: when the call begins (e.g. pin what it will judge with)
    * ``before(call) -> Verdict | None`` (optional async twin ``abefore``)
    * ``on_event(call, event) -> None``: each streamed event as it passes (gateway: raw
      chunk bytes; SDK: the parsed event)
    * ``after(call, record) -> Verdict | None`` (optional async twin ``aafter``): add to
      ``record.attributes``; a ``block`` verdict holds a non-streamed answer
    """

    name: str


@dataclass
class _Timing:
    calls: int = 0
    errors: int = 0
    ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "us": self.ns // 1000,
                "mean_us": round(self.ns / self.calls / 1000, 3) if self.calls else 0.0}


def _failure(stage: Stage, e: BaseException) -> str:
    return f"{stage.name}: {type(e).__name__}: {e}"[:1024]


class Pipeline:
    """Ordered stages, run before and after each call on every capture surface."""

    def __init__(self, stages: Sequence[Stage] = ()) -> None:
        self.stages: tuple[Stage, ...] = tuple(stages)
        for s in self.stages:
            if not isinstance(s, Stage) or not isinstance(getattr(s, "name", None), str):
                raise TypeError(f"{type(s).__qualname__} is not a pipeline stage: a stage "
                                "has a str name and before / on_event / after methods")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"two pipeline stages share a name: {names}")
        self._start = tuple(s for s in self.stages if hasattr(s, "start"))
        self._before = tuple(s for s in self.stages if hasattr(s, "before"))
        self._after = tuple(s for s in self.stages if hasattr(s, "after"))
        self._events = tuple(s for s in self.stages if hasattr(s, "on_event"))
        self._timing = {(s.name, m): _Timing() for s in self.stages
                        for m in ("before", "event", "after")}
        # decisions counted as the gateway reports them (refusals before, others after)
        self.decisions: dict[str, int] = {"block": 0, "approval_required": 0, "flag": 0,
                                          "approved": 0}
        self.policy = next((s for s in self.stages if isinstance(s, PolicyStage)), None)

    @classmethod
    def default(cls, policy: PolicyHandle | None = None, *,
                extra: Sequence[Stage] = ()) -> Pipeline:
        """The policy stage (if a policy is given), then ``extra``, then every stage
        installed under the ``kansa.stages`` entry-point group."""
        stages: list[Stage] = [PolicyStage(policy)] if policy is not None else []
        stages += extra
        stages += [f() for f in entry_point_stages()]
        return cls(stages)

    def __bool__(self) -> bool:
        return bool(self.stages)

    @property
    def has_before(self) -> bool:
        return bool(self._before)

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def open(self, surface: str, *, at: datetime | None = None,
             info: CallInfo | Callable[[], CallInfo] | None = None,
             request: Callable[[], Any] | None = None,
             subject: str | Callable[[], str | None] | None = None,
             record_id: str | Callable[[], str] | None = None) -> Call:
        """A :class:`Call` for one captured call (run each stage's ``start``)."""
        call = Call(surface, at=at, info=info, request=request, subject=subject,
                    record_id=record_id)
        for s in self._start:
            s.start(call)
        return call

    def stats(self) -> dict[str, Any]:
        """Per stage and moment: calls, errors, total and mean microseconds."""
        out: dict[str, Any] = {}
        for (name, moment), t in self._timing.items():
            if t.calls:
                out.setdefault(name, {})[moment] = t.as_dict()
        return out

    # -- before ---------------------------------------------------------------------------

    def _begin_before(self, call: Call, stage: Stage, got: Any, t: _Timing, t0: int,
                      verdicts: list[Verdict]) -> Refusal | None:
        t.calls += 1
        t.ns += time.perf_counter_ns() - t0
        if got is None:
            return None
        if not isinstance(got, Verdict):
            raise TypeError(f"before() returned {type(got).__name__}, not a Verdict or None")
        v = replace(got, stage=stage.name)
        if v.request is not None:  # applied whatever the decision: the record holds it
            call.replace_request(stage.name, v.request)
        if v.decision == BLOCK:
            return Refusal("blocked", v)
        if v.decision == APPROVAL_REQUIRED:
            verdicts.append(v)
        else:
            call.attributes.update(v.attributes)
        return None

    def _stage_failed(self, call: Call, stage: Stage, e: Exception, t: _Timing,
                      t0: int) -> Refusal:
        t.calls += 1
        t.errors += 1
        t.ns += time.perf_counter_ns() - t0
        why = _failure(stage, e)
        _logger.error("kansa pipeline: stage %s failed before a call: %s", stage.name, why)
        v = Verdict(BLOCK, f"kansa: refused: the pipeline stage {why}",
                    {ATTR_PIPELINE_ERROR: why}, stage=stage.name)
        return Refusal("stage_failed", v)

    def _refused(self, call: Call, r: Refusal) -> Refusal:
        call.attributes.update(r.verdict.record_attributes())
        # whichever stage refused, the record says the call was refused, and how
        call.attributes.setdefault(_ATTR_DECISION, r.verdict.decision)
        self.decisions[r.verdict.decision] = self.decisions.get(r.verdict.decision, 0) + 1
        return r

    def before(self, call: Call, *, approvals: Callable[[], Approvals] | None = None,
               approval_id: str | None = None, digest: Callable[[], str] | None = None,
               ) -> Refusal | None:
        """Run the stages before a call leaves (blocking: may touch the approvals store);
        None to go ahead, else why the call is refused (its attributes are already in
        ``call.attributes``)."""
        verdicts: list[Verdict] = []
        for s in self._before:
            t = self._timing[(s.name, "before")]
            t0 = time.perf_counter_ns()
            try:
                got = s.before(call)
                r = self._begin_before(call, s, got, t, t0, verdicts)
            except Exception as e:
                r = self._stage_failed(call, s, e, t, t0)
            if r is not None:
                return self._refused(call, r)
        if not verdicts:
            return None
        r = _settle(call, verdicts, approvals, approval_id, digest)
        return None if r is None else self._refused(call, r)

    async def abefore(self, call: Call, *, approvals: Callable[[], Approvals] | None = None,
                      approval_id: str | None = None, digest: Callable[[], str] | None = None,
                      ) -> Refusal | None:
        """:meth:`before` for an event loop (a stage's ``abefore`` is awaited; the
        approvals store is used from a thread)."""
        verdicts: list[Verdict] = []
        for s in self._before:
            t = self._timing[(s.name, "before")]
            t0 = time.perf_counter_ns()
            try:
                afn = getattr(s, "abefore", None)
                got = await afn(call) if afn is not None else s.before(call)
                r = self._begin_before(call, s, got, t, t0, verdicts)
            except Exception as e:
                r = self._stage_failed(call, s, e, t, t0)
            if r is not None:
                return self._refused(call, r)
        if not verdicts:
            return None
        r = await asyncio.to_thread(_settle, call, verdicts, approvals, approval_id, digest)
        return None if r is None else self._refused(call, r)

    # -- streamed events ------------------------------------------------------------------

    def event(self, call: Call, event: Any) -> None:
        """One streamed event, as it passes (the gateway: the raw bytes of a chunk; the SDK
        wrappers: the event as the SDK parsed it). A stage that raises leaves
        ``kansa.pipeline.error`` in the record (the stream is not cut)."""
        for s in self._events:
            t = self._timing[(s.name, "event")]
            t0 = time.perf_counter_ns()
            try:
                s.on_event(call, event)
            except Exception as e:
                t.errors += 1
                why = _failure(s, e)
                if ATTR_PIPELINE_ERROR not in call.attributes:
                    _logger.error("kansa pipeline: stage %s failed on a streamed event: %s",
                                  s.name, why)
                    call.attributes[ATTR_PIPELINE_ERROR] = why
            t.calls += 1
            t.ns += time.perf_counter_ns() - t0

    # -- after ----------------------------------------------------------------------------

    def _merge(self, call: Call | None, rec: UsageRecord) -> bool:
        if call is not None and call.attributes:
            rec.attributes.update(call.attributes)
        return _ATTR_DECISION in rec.attributes

    def _count(self, had: bool, rec: UsageRecord) -> None:
        if not had:
            d = rec.attributes.get(_ATTR_DECISION)
            if d is not None and d != ALLOW:
                self.decisions[d] = self.decisions.get(d, 0) + 1

    def _after_verdict(self, call: Call, s: Stage, got: Any, rec: UsageRecord) -> None:
        if got is None:
            return
        if not isinstance(got, Verdict):
            raise TypeError(f"after() returned {type(got).__name__}, not a Verdict or None")
        rec.attributes.update(got.attributes)
        if got.response is not None:
            call.replace_response(s.name, got.response, rec)
        if got.decision in _REFUSING and call.holdable and call.held is None:
            call.held = replace(got, stage=s.name)
            rec.attributes[ATTR_PIPELINE_HELD] = f"{s.name}: {got.message}"[:1024]
            rec.outcome, rec.error_type = "blocked", "answer_held"
            self.decisions[BLOCK] = self.decisions.get(BLOCK, 0) + 1

    def _after_failed(self, call: Call, s: Stage, rec: UsageRecord, e: Exception,
                      t: _Timing) -> None:
        t.errors += 1
        why = _failure(s, e)
        _logger.error("kansa pipeline: stage %s failed after a call: %s", s.name, why)
        prior = rec.attributes.get(ATTR_PIPELINE_ERROR)
        rec.attributes[ATTR_PIPELINE_ERROR] = f"{prior}; {why}"[:1024] if prior else why
        if isinstance(e, BadReplacement) and call.rewritable and call.held is None:
            # the stage meant the caller to get another answer, and it cannot be made:
            # withhold the answer rather than deliver the one the stage replaced
            call.held = Verdict(BLOCK, f"its answer replacement failed: {e}", stage=s.name)
            rec.attributes[ATTR_PIPELINE_HELD] = f"{s.name}: {e}"[:1024]
            rec.outcome, rec.error_type = "blocked", "pipeline_error"
            self.decisions[BLOCK] = self.decisions.get(BLOCK, 0) + 1

    def after(self, call: Call | None, rec: UsageRecord) -> UsageRecord:
        """Run the stages on the record about to be appended (the attributes added before
        the call go in first); returns ``rec``."""
        had = self._merge(call, rec)
        call = call if call is not None else Call("unknown")
        for s in self._after:
            t = self._timing[(s.name, "after")]
            t0 = time.perf_counter_ns()
            try:
                self._after_verdict(call, s, s.after(call, rec), rec)
            except Exception as e:
                self._after_failed(call, s, rec, e, t)
            t.calls += 1
            t.ns += time.perf_counter_ns() - t0
        self._count(had, rec)
        return rec

    async def aafter(self, call: Call | None, rec: UsageRecord) -> UsageRecord:
        """:meth:`after` for an event loop."""
        had = self._merge(call, rec)
        call = call if call is not None else Call("unknown")
        for s in self._after:
            t = self._timing[(s.name, "after")]
            t0 = time.perf_counter_ns()
            try:
                afn = getattr(s, "aafter", None)
                got = await afn(call, rec) if afn is not None else s.after(call, rec)
                self._after_verdict(call, s, got, rec)
            except Exception as e:
                self._after_failed(call, s, rec, e, t)
            t.calls += 1
            t.ns += time.perf_counter_ns() - t0
        self._count(had, rec)
        return rec


def _settle(call: Call, verdicts: list[Verdict], approvals: Callable[[], Approvals] | None,
            approval_id: str | None, digest: Callable[[], str] | None) -> Refusal | None:
    """One approval for every stage that asked: consume the one given, or request one."""
    from kansa.policy.approvals import consume_or_request

    first = verdicts[0]
    obligations = tuple(o for v in verdicts for o in v.obligations)
    message = "; ".join(v.message for v in verdicts if v.message)
    merged: dict[str, Any] = {}
    for v in verdicts:
        merged.update(v.attributes)
    v = replace(first, message=message, obligations=obligations, attributes=merged,
                approval_ttl_hours=min(x.approval_ttl_hours for x in verdicts))
    if approvals is None or digest is None:
        return Refusal("approval_invalid", v, "no approvals store to hold this call in")
    info = call.info
    model = None
    if info is not None and isinstance(info.request, dict):
        m = info.request.get("model")
        model = m if isinstance(m, str) else None
    held_tool = call.state.get(HELD_TOOL_CALL)
    scope = call.state.get(CALL_SCOPE) or {}
    got = consume_or_request(
        approvals(), approval_id=approval_id, digest=digest(),
        record_id=info.record_id if info is not None and info.record_id else call.record_id,
        snapshot=v.snapshot,
        system=info.system if info is not None else str(scope.get("system") or ""),
        app=info.app if info is not None else scope.get("app"), model=model,
        obligations=[o.label for o in obligations], ttl_hours=v.approval_ttl_hours,
        # a held tool call (set by the agent guard): the approver is shown what it does
        tool=held_tool[0] if held_tool else None,
        arguments=held_tool[1] if held_tool else None, now=call.at)
    if got.kind == "passed":
        call.approval = got.approval_id
        return None
    return Refusal(got.kind, replace(v, approval=got.approval_id), got.why)


def subject_pseudonym(ledger: Any, subject: str | None) -> str | None:
    """``subject``'s pseudonym as its ledger entries name it, if it has one yet (a vault
    lookup, made only when a stage reads ``call.subject``; a subject never recorded has
    none, and no key is made for it here)."""
    if subject is None:
        return None
    key = ledger.vault.subject_key(subject, create=False)
    return None if key is None else str(key.pseudonym)


# -- the policy stage -----------------------------------------------------------------------


class PolicyStage:
    """Inline policy (:mod:`kansa.policy.inline`) as the pipeline's first stage. The
    snapshot is read once, when the call starts, and judges both moments."""

    name = "policy"

    def __init__(self, handle: PolicyHandle) -> None:
        self.handle = handle

    @property
    def reads(self) -> frozenset[str]:
        return self.handle.current.reads.keys

    def start(self, call: Call) -> None:
        call.state["policy"] = self.handle.current

    def _snap(self, call: Call) -> PolicySnapshot:
        snap: PolicySnapshot | None = call.state.get("policy")
        if snap is None:
            snap = call.state["policy"] = self.handle.current
        return snap

    @staticmethod
    def _verdict(snap: PolicySnapshot, d: Any) -> Verdict | None:
        if d is None:
            return None
        return Verdict(d.decision, d.message(), d.attributes(),
                       tuple(Obligation(f"{f.ref}#{f.obligation}", f.citation, f.mode)
                             for f in d.enforced),
                       snap.hash, snap.spec.approval_ttl_hours, d.approval)

    def before(self, call: Call) -> Verdict | None:
        snap = self._snap(call)
        if not snap.enforces:
            return None
        try:
            entry = call.entry
        except RecordError:
            return None  # not a record: the response side records it as it can
        return self._verdict(snap, snap.check_request(entry, call.at))

    async def abefore(self, call: Call) -> Verdict | None:
        snap = self._snap(call)
        if not snap.enforces:
            return None
        try:
            entry = call.entry
        except RecordError:
            return None
        return self._verdict(snap, await snap.acheck_request(entry, call.at))

    def after(self, call: Call, rec: UsageRecord) -> None:
        if _ATTR_DECISION in rec.attributes:
            return  # refused before the call: its decision is recorded already
        from kansa.policy.inline import entry_of

        snap = self._snap(call)
        rec.attributes.update(snap.judge_record(entry_of(rec), call.at,
                                                approval=call.approval).attributes())

    async def aafter(self, call: Call, rec: UsageRecord) -> None:
        if _ATTR_DECISION in rec.attributes:
            return
        from kansa.policy.inline import entry_of

        snap = self._snap(call)
        d = await snap.ajudge_record(entry_of(rec), call.at, approval=call.approval)
        rec.attributes.update(d.attributes())


# -- entry points ---------------------------------------------------------------------------


@functools.cache
def entry_point_stages() -> tuple[Callable[[], Stage], ...]:
    """The stage factories installed under the ``kansa.stages`` entry-point group, by
    name (loaded once per process; ``entry_point_stages.cache_clear()`` to look again).
    One that cannot be loaded raises :class:`~kansa.errors.KansaError` (fail closed)."""
    out: list[Callable[[], Stage]] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            out.append(ep.load())
        except Exception as e:
            raise KansaError(f"cannot load the pipeline stage {ep.name} ({ep.value}): "
                             f"{type(e).__name__}: {e}") from None
    return tuple(out)
