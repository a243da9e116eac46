"""Approvals for held calls: a ``require_approval`` obligation, or an agent's tool call the
agent guard (:mod:`kansa.guard.agent`) holds.

A held call gets an approval request in the ``policy_approvals`` table beside the ledger
(same store, SQLite or PostgreSQL). Its life::

    pending --approve--> approved --consume--> used
            --edit-----> edited   --consume--> used     (the call must use the edit)
            --reject---> rejected
    pending / approved / edited past ``expires`` read as expired

A person decides it (``kansa approvals approve|reject|edit ID``, or the HTTP endpoint of
:mod:`kansa.capture.approvals_http`); every decision made through a ledger
(:meth:`Approvals.for_ledger`) is itself a record in the ledger (who, when, why, the
digest and the edited arguments' hash), and the approval row names that record. The
caller then resumes the *same* call with the approval id (``x-kansa-approval: ID`` at the
gateway, the same header through ``kansa.wrap``, ``approval=`` for a tool call), and it
passes once: consuming an approval is one conditional UPDATE, so two retries racing,
even in different processes, cannot both pass.

An approval is bound to a digest of the call it was asked for: for a model call the
route, system, app and exact body (:func:`request_digest`); for a tool call the canonical
tool name and arguments (:func:`tool_call_digest`, RFC 8785 JSON). An *edited* approval
carries the arguments the approver wrote, and only a call with exactly those arguments
can consume it. Expiry is read on a clock the caller passes in (``now`` / ``clock``), so
a scenario or a test decides what time it is.

Stores from before the lifecycle upgrade in place (migration step 2): ``denied`` rows
become ``rejected``, which is what ``denied`` meant.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import rfc8785

from kansa._time import from_us, to_us
from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.ledger.storage import Store, now_us
from kansa.policy.pack import PolicyError
from kansa.records import attributes as A
from kansa.records.model import UsageRecord, new_record_id

if TYPE_CHECKING:
    from kansa.api import Ledger

PENDING, APPROVED, REJECTED, EDITED, EXPIRED, USED = (
    "pending", "approved", "rejected", "edited", "expired", "used")
DENIED = "denied"  # the spelling of REJECTED before the lifecycle; read as rejected
STATUSES = (PENDING, APPROVED, REJECTED, EDITED, EXPIRED, USED)
DECISIONS = (APPROVED, REJECTED, EDITED)  # what a person can decide
ID_PREFIX = "apr_"
# a decision's record: kind kansa.event, operation approval.<decision>
EVENT_PREFIX = "approval."
ATTR_EVENT = A.KANSA_EVENT
ATTR_ID = A.KANSA_APPROVAL_ID
ATTR_DECISION = A.KANSA_APPROVAL_DECISION
ATTR_BY = A.KANSA_APPROVAL_BY
ATTR_REASON = A.KANSA_APPROVAL_REASON
ATTR_DIGEST = A.KANSA_APPROVAL_DIGEST
ATTR_ARGS_SHA = A.KANSA_APPROVAL_ARGUMENTS_SHA256  # of the edited arguments (edit only)
ATTR_HELD = A.KANSA_APPROVAL_HELD_RECORD
ATTR_TOOL = A.GEN_AI_TOOL_NAME

Clock = Callable[[], datetime]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS policy_approvals ("
    " id TEXT PRIMARY KEY,"
    " created BIGINT NOT NULL,"
    " expires BIGINT NOT NULL,"
    " status TEXT NOT NULL,"
    " digest TEXT NOT NULL,"
    " record_id TEXT NOT NULL,"
    " snapshot TEXT NOT NULL,"
    " system TEXT NOT NULL,"
    " app TEXT,"
    " model TEXT,"
    " obligations TEXT NOT NULL,"
    " decided BIGINT,"
    " decided_by TEXT,"
    " note TEXT,"
    " used BIGINT,"
    " used_by TEXT)"
)
# step 2: the lifecycle. A tool call's name and arguments (shown to the approver), the
# edited arguments and their digest, and the ledger record of the decision
_LIFECYCLE = (
    "ALTER TABLE policy_approvals ADD COLUMN tool TEXT",
    "ALTER TABLE policy_approvals ADD COLUMN arguments TEXT",
    "ALTER TABLE policy_approvals ADD COLUMN edited TEXT",
    "ALTER TABLE policy_approvals ADD COLUMN edited_digest TEXT",
    "ALTER TABLE policy_approvals ADD COLUMN decision_record TEXT",
    f"UPDATE policy_approvals SET status = '{REJECTED}' WHERE status = '{DENIED}'",
)
_COLS = ("id", "created", "expires", "status", "digest", "record_id", "snapshot", "system",
         "app", "model", "obligations", "decided", "decided_by", "note", "used", "used_by",
         "tool", "arguments", "edited", "edited_digest", "decision_record")
COMPONENT = "approvals"
# step 1 is the table as created before the registry (IF NOT EXISTS: it adopts it)
migrations.register(COMPONENT, [Migration(1, "approval requests", (_TABLE,)),
                                Migration(2, "approval lifecycle", _LIFECYCLE)])


class ApprovalError(PolicyError):
    """An approval id that cannot let a call through (unknown, pending, rejected, used,
    expired, or asked for another call), or a decision that cannot be made; the message
    says which."""


class ApprovalPending(ApprovalError):
    """The approval exists but nobody has decided it yet: retry later with the same id."""


def canonical_json(value: Any, what: str = "tool arguments") -> bytes:
    """RFC 8785 bytes of ``value``, or an :class:`ApprovalError` saying why it is not
    JSON (a set, bytes, NaN, a non-string key ...)."""
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as e:  # rfc8785 raises its own error types, and TypeError
        raise ApprovalError(f"{what} are not JSON: {type(e).__name__}: {e}") from None


def arguments_sha256(arguments: Any) -> str:
    """Hex SHA-256 of the RFC 8785 form of a tool call's arguments (what records carry:
    never the arguments themselves)."""
    return hashlib.sha256(canonical_json(arguments)).hexdigest()


def tool_call_digest(name: str, arguments: Any) -> str:
    """What a tool call's approval is bound to: the tool's name and its arguments, as one
    RFC 8785 object (so key order and spacing do not matter, every value does)."""
    if not isinstance(name, str) or not name:
        raise ApprovalError("a tool call needs a non-empty tool name")
    body = canonical_json({"name": name, "arguments": arguments})
    return "sha256:" + hashlib.sha256(b"kansa.tool_call\n" + body).hexdigest()


def request_digest(route: str, system: str, app: str | None, body: bytes) -> str:
    """What a model call's approval is bound to: the route, system, app and the exact
    request body."""
    h = hashlib.sha256()
    for part in (route.encode(), system.encode(), (app or "").encode()):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    h.update(body)
    return "sha256:" + h.hexdigest()


_UNSET: Any = object()


@dataclass(frozen=True)
class Approval:
    id: str
    created: int  # microseconds since the epoch
    expires: int
    status: str  # pending | approved | rejected | edited | used (expired is read, see state)
    digest: str  # of the call it was asked for
    record_id: str  # the held call's record
    snapshot: str  # the policy snapshot (or guard configuration) that held it
    system: str
    app: str | None
    model: str | None
    obligations: tuple[str, ...]  # pack@version#obligation (or guard rule) that required it
    decided: int | None = None
    decided_by: str | None = None
    note: str | None = None  # the decider's reason
    used: int | None = None
    used_by: str | None = None  # the record of the call it let through
    tool: str | None = None  # a tool call's name (None: a model call)
    arguments: Any = None  # the held tool call's arguments, for the approver to read
    edited: Any = _UNSET  # the arguments an edit decided (only if status is edited/used)
    edited_digest: str | None = None
    decision_record: str | None = None  # the ledger record of the decision

    @property
    def was_edited(self) -> bool:
        return self.edited is not _UNSET

    def state(self, now: int) -> str:
        """The status as of ``now`` (microseconds): undecided or unused approvals past
        their expiry read as expired."""
        if self.status in (PENDING, APPROVED, EDITED) and self.expires <= now:
            return EXPIRED
        return self.status

    def call_arguments(self) -> Any:
        """The arguments the resumed tool call must use: the edit, if there was one."""
        return self.edited if self.was_edited else self.arguments

    def as_dict(self, now: int | None = None) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in _COLS}
        d["obligations"] = list(self.obligations)
        if not self.was_edited:
            d["edited"] = None
        if now is not None:
            d["state"] = self.state(now)
        return d


def _row(r: tuple[Any, ...]) -> Approval:
    status = str(r[3])
    return Approval(str(r[0]), int(r[1]), int(r[2]), REJECTED if status == DENIED else status,
                    str(r[4]), str(r[5]), str(r[6]), str(r[7]), r[8], r[9],
                    tuple(json.loads(r[10])), None if r[11] is None else int(r[11]), r[12],
                    r[13], None if r[14] is None else int(r[14]), r[15], r[16],
                    None if r[17] is None else json.loads(r[17]),
                    _UNSET if r[18] is None else json.loads(r[18]), r[19], r[20])


class Approvals:
    """The ``policy_approvals`` table of one store. ``clock``: what time it is when a
    method is not given ``now`` (default: the system clock). ``ledger``: where decisions
    are recorded (see :meth:`for_ledger`); without one, decisions are only in the table."""

    def __init__(self, store: Store, *, clock: Clock | None = None,
                 ledger: Ledger | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ledger = ledger

    @classmethod
    def for_ledger(cls, ledger: Ledger, *, clock: Clock | None = None) -> Approvals:
        """The approvals of ``ledger``'s store; each decision is appended to it."""
        return cls(ledger.log.store, clock=clock, ledger=ledger)

    def _now(self, now: datetime | int | None) -> int:
        if isinstance(now, int):
            return now
        if now is not None:
            return to_us(now)
        return to_us(self.clock()) if self.clock is not None else now_us()

    def ensure_table(self) -> None:
        """Bring the table up to date (the migrations registry; idempotent, and safe for
        several processes starting at once)."""
        migrations.ensure(self.store, COMPONENT)

    def request(self, *, digest: str, record_id: str, snapshot: str, system: str,
                app: str | None, model: str | None, obligations: list[str],
                ttl_hours: float, tool: str | None = None, arguments: Any = None,
                now: datetime | int | None = None) -> Approval:
        """Open an approval request for a held call (a tool call: ``tool`` and its
        ``arguments``, which the approver is shown)."""
        if not ttl_hours > 0:
            raise ApprovalError(f"an approval's time to live must be positive, not {ttl_hours}")
        self.ensure_table()
        at = self._now(now)
        args_json = None if tool is None else canonical_json(arguments).decode()
        a = Approval(ID_PREFIX + secrets.token_hex(10), at, at + int(ttl_hours * 3.6e9),
                     PENDING, digest, record_id, snapshot, system, app, model,
                     tuple(obligations), tool=tool,
                     arguments=None if tool is None else arguments)
        cols = (*_COLS[:11], "tool", "arguments")
        self.store.execute(
            f"INSERT INTO policy_approvals ({', '.join(cols)}) VALUES ({', '.join('?' * 13)})",
            (a.id, a.created, a.expires, a.status, a.digest, a.record_id, a.snapshot,
             a.system, a.app, a.model, json.dumps(list(a.obligations)), tool, args_json))
        return a

    def now_us(self) -> int:
        """What time it is for these approvals (microseconds): the clock given, else the
        system's."""
        return self._now(None)

    def find(self, *, digest: str, record_id: str) -> list[Approval]:
        """Every approval asked for this call (``digest``) as ``record_id``, oldest first."""
        self.ensure_table()
        rows = self.store.query(
            f"SELECT {', '.join(_COLS)} FROM policy_approvals WHERE digest = ? AND"
            " record_id = ? ORDER BY created, id", (digest, record_id))
        return [_row(r) for r in rows]

    def open_once(self, *, digest: str, record_id: str, snapshot: str, system: str,
                  app: str | None, model: str | None, obligations: list[str],
                  ttl_hours: float, tool: str | None = None, arguments: Any = None,
                  now: datetime | int | None = None) -> Approval:
        """:meth:`request`, unless the same call (``digest``) as the same ``record_id``
        already has one that is still open (pending, approved or edited, unexpired) or
        was rejected: then that one. For frameworks that re-run a step on resume
        (LangGraph re-runs the node), so a re-run neither opens a second request nor
        escapes a rejection; a used or expired one is history, and a new one is opened.
        (Two processes racing may still open two; each is a complete request.)"""
        at = self._now(now)
        for a in reversed(self.find(digest=digest, record_id=record_id)):
            if a.state(at) in (PENDING, APPROVED, EDITED, REJECTED):
                return a
        return self.request(digest=digest, record_id=record_id, snapshot=snapshot,
                            system=system, app=app, model=model, obligations=obligations,
                            ttl_hours=ttl_hours, tool=tool, arguments=arguments, now=at)

    def get(self, approval_id: str) -> Approval | None:
        self.ensure_table()
        rows = self.store.query(
            f"SELECT {', '.join(_COLS)} FROM policy_approvals WHERE id = ?", (approval_id,))
        return _row(rows[0]) if rows else None

    def resume(self, approval_id: str, *, now: datetime | int | None = None) -> Approval:
        """The approval a held call resumes with, once decided: raises
        :class:`ApprovalPending` while nobody has decided it, :class:`ApprovalError` if it
        is unknown, rejected, expired or used. ``call_arguments()`` are what to call with."""
        at = self._now(now)
        a = self.get(approval_id)
        if a is None or a.state(at) not in (APPROVED, EDITED):
            why = self._why_not(approval_id, a, at)
            if a is not None and a.state(at) == PENDING:
                raise ApprovalPending(why)
            raise ApprovalError(why)
        return a

    def list(self, status: str | None = None, *,
             now: datetime | int | None = None) -> list[Approval]:
        """Approvals in ``status`` as of ``now`` (pending ones exclude expired ones;
        ``expired`` lists undecided or unused ones past their time); None: every one."""
        self.ensure_table()
        if status is not None and status not in (*STATUSES, DENIED):
            raise ApprovalError(f"unknown approval status {status!r} "
                                f"(one of: {', '.join(STATUSES)})")
        sql = f"SELECT {', '.join(_COLS)} FROM policy_approvals"
        params: tuple[Any, ...] = ()
        if status is not None:
            at = self._now(now)
            if status == EXPIRED:
                sql += " WHERE status IN (?, ?, ?) AND expires <= ?"
                params = (PENDING, APPROVED, EDITED, at)
            elif status in (PENDING, APPROVED, EDITED):
                sql += " WHERE status = ? AND expires > ?"
                params = (status, at)
            else:
                sql += " WHERE status = ?"
                params = (REJECTED if status == DENIED else status,)
        return [_row(r) for r in self.store.query(sql + " ORDER BY created, id", params)]

    # -- decisions --------------------------------------------------------------------------

    def decide(self, approval_id: str, *, approve: bool, by: str | None = None,
               note: str | None = None, now: datetime | int | None = None) -> Approval:
        """Approve or reject a pending, unexpired request (see :meth:`approve`)."""
        return self._decide(approval_id, APPROVED if approve else REJECTED, by=by,
                            reason=note, now=now)

    def approve(self, approval_id: str, *, by: str | None = None, reason: str | None = None,
                now: datetime | int | None = None) -> Approval:
        """Let the held call through once, as it was asked for."""
        return self._decide(approval_id, APPROVED, by=by, reason=reason, now=now)

    def reject(self, approval_id: str, *, by: str | None = None, reason: str | None = None,
               now: datetime | int | None = None) -> Approval:
        """Refuse the held call: resuming with this approval is refused."""
        return self._decide(approval_id, REJECTED, by=by, reason=reason, now=now)

    def edit(self, approval_id: str, arguments: Any, *, by: str | None = None,
             reason: str | None = None, now: datetime | int | None = None) -> Approval:
        """Let a held *tool call* through once with ``arguments`` instead (e.g. the
        recipient corrected): only a call with exactly these arguments can consume it."""
        return self._decide(approval_id, EDITED, by=by, reason=reason, now=now,
                            arguments=arguments)

    def _decide(self, approval_id: str, decision: str, *, by: str | None,
                reason: str | None, now: datetime | int | None,
                arguments: Any = _UNSET) -> Approval:
        if decision not in DECISIONS:
            raise ApprovalError(f"unknown decision {decision!r} (one of: {', '.join(DECISIONS)})")
        self.ensure_table()
        at = self._now(now)
        edited = edited_digest = None
        if decision == EDITED:
            a = self.get(approval_id)
            if a is not None and a.tool is None:
                raise ApprovalError(f"approval {a.id} holds a model call, not a tool call: "
                                    "only a tool call's arguments can be edited")
            if a is not None and arguments is not _UNSET:
                edited = canonical_json(arguments, "edited arguments").decode()
                edited_digest = tool_call_digest(a.tool or "", arguments)
        # the decision's record id is fixed first and kept in the row, so a decision whose
        # record did not reach the ledger is visible (the row names a missing record)
        rid = new_record_id(from_us(at)) if self.ledger is not None else None
        n = self.store.execute(
            "UPDATE policy_approvals SET status = ?, decided = ?, decided_by = ?, note = ?,"
            " edited = ?, edited_digest = ?, decision_record = ?"
            " WHERE id = ? AND status = ? AND expires > ?",
            (decision, at, by, reason, edited, edited_digest, rid, approval_id, PENDING, at))
        got = self.get(approval_id)
        if n != 1 or got is None:
            raise ApprovalError(self._why_not(approval_id, got, at, deciding=True))
        if self.ledger is not None and rid is not None:
            self.ledger.append(decision_record(got, rid))
        return got

    def consume(self, approval_id: str, digest: str, used_by: str, *,
                now: datetime | int | None = None) -> Approval:
        """Let one call through on an approval: atomically marks it used, or raises. An
        approved one needs the digest it was asked for; an edited one the edit's."""
        self.ensure_table()
        at = self._now(now)
        n = self.store.execute(
            "UPDATE policy_approvals SET status = ?, used = ?, used_by = ?"
            " WHERE id = ? AND expires > ?"
            " AND ((status = ? AND digest = ?) OR (status = ? AND edited_digest = ?))",
            (USED, at, used_by, approval_id, at, APPROVED, digest, EDITED, digest))
        got = self.get(approval_id)
        if n != 1 or got is None:
            why = self._why_not(approval_id, got, at, digest=digest)
            if got is not None and got.state(at) == PENDING:
                raise ApprovalPending(why)
            raise ApprovalError(why)
        return got

    @staticmethod
    def _why_not(approval_id: str, a: Approval | None, now: int, *, deciding: bool = False,
                 digest: str | None = None) -> str:
        if a is None:
            return f"no approval {approval_id!r}"
        if a.status == USED:
            return f"approval {a.id} was already used (by record {a.used_by})"
        if a.status == REJECTED:
            by = f" by {a.decided_by}" if a.decided_by else ""
            return f"approval {a.id} was rejected{by}" + (f": {a.note}" if a.note else "")
        if a.expires <= now:
            return f"approval {a.id} has expired"
        if deciding:
            return f"approval {a.id} is {a.status}, not pending"
        if a.status == PENDING:
            return f"approval {a.id} is still pending: nobody has decided it yet"
        if a.status == EDITED and digest is not None and digest == a.digest:
            return (f"approval {a.id} was edited: the call must use the edited arguments "
                    "(see 'kansa approvals show')")
        if digest is not None and a.tool is not None:
            return (f"approval {a.id} was given for a different call (another tool or other "
                    "arguments)")
        if digest is not None:
            return f"approval {a.id} was given for a different request"
        return f"approval {a.id} cannot be used"


def decision_record(a: Approval, record_id: str = "") -> UsageRecord:
    """The ledger record of a decision on ``a``: kind ``kansa.event``, operation
    ``approval.<decision>``, at the decision's time, the decider as actor; attributes
    name the approval, the decision, who, why, the digest it binds and (for an edit) the
    SHA-256 of the edited arguments; never the arguments themselves."""
    assert a.decided is not None
    attrs: dict[str, Any] = {ATTR_EVENT: EVENT_PREFIX + a.status, ATTR_ID: a.id,
                             ATTR_DECISION: a.status, ATTR_DIGEST: a.digest,
                             ATTR_HELD: a.record_id}
    if a.decided_by:
        attrs[ATTR_BY] = a.decided_by[:1024]
    if a.note:
        attrs[ATTR_REASON] = a.note[:1024]
    if a.was_edited:
        attrs[ATTR_ARGS_SHA] = arguments_sha256(a.edited)
        attrs[A.KANSA_APPROVAL_EDITED_DIGEST] = a.edited_digest or ""
    if a.obligations:
        attrs[A.KANSA_APPROVAL_OBLIGATIONS] = [o[:1024] for o in a.obligations]
    rec = UsageRecord(system=a.system, kind="kansa.event", operation=EVENT_PREFIX + a.status,
                      ts=from_us(a.decided), actor=(a.decided_by or None), app=a.app,
                      tool_name=a.tool, attributes=attrs, id=record_id)
    return rec


@dataclass(frozen=True)
class Settled:
    """What :func:`consume_or_request` did: ``passed`` (the approval given was consumed:
    the call goes ahead), ``approval_required`` (a new request was opened), or
    ``approval_pending`` / ``approval_invalid`` (the approval given cannot let the call
    through yet / at all: ``why``). ``approval_id``: the approval the call carries (None
    for an invalid one)."""

    kind: str
    approval_id: str | None
    why: str = ""


def consume_or_request(approvals: Approvals, *, approval_id: str | None, digest: str,
                       record_id: str, snapshot: str, system: str, app: str | None,
                       model: str | None, obligations: list[str],
                       ttl_hours: float, tool: str | None = None, arguments: Any = None,
                       now: datetime | None = None) -> Settled:
    """The one approval flow of every capture surface: a held call that carries an
    approval id consumes it (single use), else an approval request is opened (a tool
    call's: with its ``tool`` name and ``arguments``). ``now``: the instant the call is
    judged at (None: the approvals' clock). A store failure raises
    :class:`~kansa.errors.StorageError`."""
    if approval_id:
        try:
            return Settled("passed", approvals.consume(approval_id, digest, record_id,
                                                       now=now).id)
        except ApprovalPending as e:
            return Settled("approval_pending", approval_id, str(e))
        except ApprovalError as e:
            return Settled("approval_invalid", None, str(e))
    a = approvals.request(digest=digest, record_id=record_id, snapshot=snapshot,
                          system=system, app=app, model=model, obligations=obligations,
                          ttl_hours=ttl_hours, tool=tool, arguments=arguments, now=now)
    return Settled("approval_required", a.id)
