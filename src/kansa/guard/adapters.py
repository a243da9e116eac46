"""Agent frameworks' human-approval hooks, fed by the agent guard and kansa's approvals.

kansa imports neither framework: each adapter is shaped like the hook it fills, and the
framework's own objects are passed in by the caller.

**LangGraph** (``langgraph.types.interrupt`` / ``Command(resume=...)``)::

    interrupt(value: Any) -> Any
    # pauses the graph (raises GraphInterrupt) with ``value`` (JSON) surfaced under
    # ``__interrupt__``; when the graph is resumed with ``Command(resume=X)`` the node
    # re-runs from its start and this call returns X.

:func:`langgraph_gate` gives a node ``gate(name, arguments, call_id)``: it returns the
arguments to call the tool with (the edited ones after an edit), raises
:class:`~kansa.errors.PolicyBlocked` for a blocked call and
:class:`~kansa.policy.approvals.ApprovalError` for a rejected or expired one. A held call
opens one kansa approval (``open_once``: the re-run on resume finds the same one) and
interrupts with :func:`interrupt_payload`. Resume with ``{"approval_id": ID}`` once a
person decided through ``kansa approvals`` or the HTTP endpoint, or with
``{"decision": "approve" | "reject" | "edit", "by", "reason", "arguments"}`` to decide
in the graph's own UI: the decision is then made in kansa (a ledger record) first.

**OpenAI Agents SDK** (``agents.function_tool(..., needs_approval=...)``)::

    needs_approval: bool | Callable[[RunContextWrapper[Any], dict[str, Any], str],
                                    Awaitable[bool]]
    # (run context, the tool's parsed arguments, the call id) -> whether the run must
    # stop for approval; the run then returns ``result.interruptions`` and the app
    # resumes it after ``state.approve(item)`` / ``state.reject(item)``.

:func:`openai_needs_approval` builds that callable for one tool: False for a call the
guard allows; True for a held one, after opening its kansa approval; a *blocked* call is
True too, with its approval rejected at once by the guard (recorded), so the app's
:func:`openai_resolution` answers ``reject``. ``openai_resolution`` tells the app what to
do with an interruption: ``approve``, ``reject`` or ``pending``. The SDK's approve runs
the call with the arguments the model gave, so an *edited* kansa approval cannot be
applied there: it resolves to ``reject`` (the reason says so); use LangGraph's path or
``kansa.tool(..., approval=ID)`` for edits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kansa.errors import PolicyBlocked
from kansa.guard.agent import (
    ALLOW,
    APPROVAL_REQUIRED,
    BLOCK,
    FLAG,
    AgentGuardStage,
    Decision,
)
from kansa.policy.approvals import (
    APPROVED,
    EDITED,
    PENDING,
    REJECTED,
    Approval,
    ApprovalError,
    ApprovalPending,
    Approvals,
    tool_call_digest,
)

__all__ = ["GUARD_APPROVER", "interrupt_payload", "langgraph_gate", "openai_needs_approval",
           "openai_resolution"]

GUARD_APPROVER = "kansa:agent-guard"  # who rejects a blocked call's approval
_PASS = (ALLOW, FLAG)


def _key(conversation: str, name: str, call_id: str | None) -> str:
    """What an adapter's approval names as the held call (``record_id``): the
    conversation and the call id (or the tool name when the framework gives no id)."""
    return f"{conversation}/{call_id or name}"[:1024]


def _open(stage: AgentGuardStage, approvals: Approvals, d: Decision, *, key: str,
          system: str) -> Approval:
    return approvals.open_once(
        digest=tool_call_digest(d.call.name, d.call.arguments), record_id=key,
        snapshot=f"agent:{stage.config.hash}", system=system, app=None, model=None,
        obligations=[f"agent#{r}" for r, x in d.rules.items() if x in (APPROVAL_REQUIRED,
                                                                       BLOCK)],
        ttl_hours=stage.config.approval_ttl_hours, tool=d.call.name,
        arguments=d.call.arguments)


def _blocked(d: Decision, key: str) -> PolicyBlocked:
    return PolicyBlocked(f"kansa agent guard blocked {d.call.name}: {d.reason}",
                         decision=BLOCK, failed=[(f"agent#{r}", "") for r, x in d.rules.items()
                                                 if x == BLOCK],
                         snapshot="", record_id=key)


def interrupt_payload(a: Approval, d: Decision) -> dict[str, Any]:
    """What a held call shows the person deciding (JSON): the approval id, the tool and
    its arguments, the decision, the rules that fired, the taint and the reason."""
    return {"kansa": "approval_required", "approval_id": a.id, "tool": d.call.name,
            "arguments": d.call.arguments, "call_id": d.call.call_id,
            "decision": d.decision, "rules": dict(d.rules),
            "taint_sources": list(d.taint.sources), "egress_denied": list(d.egress_denied),
            "technique_ids": list(d.technique_ids), "reason": d.reason,
            "expires_us": a.expires}


def _settle_answer(approvals: Approvals, a: Approval, answer: Any, key: str) -> Any:
    """Apply a LangGraph resume value to approval ``a``; return the arguments to use."""
    if not isinstance(answer, Mapping):
        raise ApprovalError("resume the graph with {'approval_id': ID} or "
                            "{'decision': 'approve' | 'reject' | 'edit', ...}, not "
                            f"{type(answer).__name__}")
    given = answer.get("approval_id")
    if given is not None and given != a.id:
        raise ApprovalError(f"resumed with approval {given!r}, but this call is held as {a.id}")
    decision = answer.get("decision")
    by, reason = answer.get("by"), answer.get("reason")
    if decision is not None:
        if decision == "approve":
            approvals.approve(a.id, by=by, reason=reason)
        elif decision == "reject":
            approvals.reject(a.id, by=by, reason=reason)
        elif decision == "edit":
            if "arguments" not in answer:
                raise ApprovalError("an edit needs the new 'arguments'")
            approvals.edit(a.id, answer["arguments"], by=by, reason=reason)
        else:
            raise ApprovalError(f"unknown decision {decision!r} (approve, reject, edit)")
    got = approvals.resume(a.id)  # raises for pending, rejected, expired, used
    args = got.call_arguments()
    approvals.consume(a.id, tool_call_digest(got.tool or "", args), key)
    return args


def langgraph_gate(stage: AgentGuardStage, approvals: Approvals, *,
                   interrupt: Callable[[Any], Any], conversation: str,
                   system: str = "agent") -> Callable[..., Any]:
    """``gate(name, arguments, call_id=None) -> arguments to use`` for a LangGraph node
    (see the module's notes). ``interrupt``: ``langgraph.types.interrupt``."""

    def gate(name: str, arguments: Any, call_id: str | None = None) -> Any:
        d = stage.check(name, arguments, conversation=conversation)
        key = _key(conversation, name, call_id)
        if d.decision in _PASS:
            return arguments
        if d.decision == BLOCK:
            raise _blocked(d, key)
        a = _open(stage, approvals, d, key=key, system=system)
        if a.status == REJECTED:  # decided before this (re-)run: nothing to ask
            raise ApprovalError(Approvals._why_not(a.id, a, 0))
        answer = interrupt(interrupt_payload(a, d))  # LangGraph raises here until resumed
        return _settle_answer(approvals, a, answer, key)

    return gate


def openai_needs_approval(stage: AgentGuardStage, approvals: Approvals, tool_name: str, *,
                          conversation: str | Callable[[Any], str], system: str = "agent",
                          ) -> Callable[[Any, dict[str, Any], str], Awaitable[bool]]:
    """The ``needs_approval`` callable of one OpenAI Agents SDK tool (see the module's
    notes). ``conversation``: a fixed id, or a function of the run context."""

    async def needs_approval(ctx: Any, params: dict[str, Any], call_id: str) -> bool:
        conv = conversation(ctx) if callable(conversation) else conversation
        d = stage.check(tool_name, params, conversation=conv)
        if d.decision in _PASS:
            return False
        key = _key(conv, tool_name, call_id)

        def hold() -> None:
            a = _open(stage, approvals, d, key=key, system=system)
            if d.decision == BLOCK and a.status == PENDING:
                approvals.reject(a.id, by=GUARD_APPROVER, reason=f"blocked: {d.reason}"[:1024])

        await asyncio.to_thread(hold)
        return True

    return needs_approval


def openai_resolution(approvals: Approvals, tool_name: str, params: Any, call_id: str, *,
                      conversation: str) -> tuple[str, str]:
    """What to do with an Agents SDK interruption for this call: (``approve`` |
    ``reject`` | ``pending``, why). ``approve`` consumes the kansa approval (single
    use): call ``state.approve(item)`` right after."""
    key = _key(conversation, tool_name, call_id)
    digest = tool_call_digest(tool_name, params)
    rows = approvals.find(digest=digest, record_id=key)
    if not rows:
        return "reject", f"no kansa approval was opened for {tool_name} call {call_id}"
    a = rows[-1]
    state = a.state(approvals.now_us())
    if state == PENDING:
        return "pending", f"approval {a.id} is waiting for a decision"
    if state == APPROVED:
        try:
            approvals.consume(a.id, digest, key)
        except ApprovalPending:
            return "pending", f"approval {a.id} is waiting for a decision"
        except ApprovalError as e:
            return "reject", str(e)
        return "approve", f"approval {a.id} approved by {a.decided_by or '?'}"
    if state == EDITED:
        return "reject", (f"approval {a.id} was edited; the Agents SDK runs the model's "
                          "arguments, so resume it through kansa.tool or LangGraph instead")
    # rejected, used, expired: the store says why in its words
    return "reject", Approvals._why_not(a.id, a, approvals.now_us())
