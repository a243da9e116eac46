"""Approvals for calls held by a ``require_approval`` obligation.

A held call gets an approval request in the ``policy_approvals`` table beside the ledger
(same store, SQLite or PostgreSQL). A person approves or denies it (``kansa approvals
approve|deny ID``); the caller then retries the *same* request with the approval id
(``x-kansa-approval: ID`` at the gateway, the same header through ``kansa.wrap``), and it
passes once: consuming an approval is one conditional UPDATE, so two retries racing,
even in different processes, cannot both pass.

An approval is bound to a digest of the request it was asked for (route, system, app and
the exact body), so it cannot carry another request through; it expires after the
policy's ``approval_ttl_hours``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.ledger.storage import Store, now_us
from kansa.policy.pack import PolicyError

PENDING, APPROVED, DENIED, USED = "pending", "approved", "denied", "used"
STATUSES = (PENDING, APPROVED, DENIED, USED)
ID_PREFIX = "apr_"

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
_COLS = ("id", "created", "expires", "status", "digest", "record_id", "snapshot", "system",
         "app", "model", "obligations", "decided", "decided_by", "note", "used", "used_by")
COMPONENT = "approvals"
# step 1 is the table as created before the registry (IF NOT EXISTS: it adopts it)
migrations.register(COMPONENT, [Migration(1, "approval requests", (_TABLE,))])


class ApprovalError(PolicyError):
    """An approval id that cannot let a call through (unknown, pending, denied, used,
    expired, or asked for another request); the message says which."""


class ApprovalPending(ApprovalError):
    """The approval exists but nobody has decided it yet: retry later with the same id."""


@dataclass(frozen=True)
class Approval:
    id: str
    created: int  # microseconds since the epoch
    expires: int
    status: str  # pending | approved | denied | used
    digest: str  # of the request it was asked for
    record_id: str  # the held call's record
    snapshot: str  # the policy snapshot that held it
    system: str
    app: str | None
    model: str | None
    obligations: tuple[str, ...]  # pack@version#obligation that required it
    decided: int | None = None
    decided_by: str | None = None
    note: str | None = None
    used: int | None = None
    used_by: str | None = None  # the record of the call it let through

    def as_dict(self) -> dict[str, Any]:
        d = {c: getattr(self, c) for c in _COLS}
        d["obligations"] = list(self.obligations)
        return d


def request_digest(route: str, system: str, app: str | None, body: bytes) -> str:
    """What an approval is bound to: the route, system, app and the exact request body."""
    h = hashlib.sha256()
    for part in (route.encode(), system.encode(), (app or "").encode()):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    h.update(body)
    return "sha256:" + h.hexdigest()


def _row(r: tuple[Any, ...]) -> Approval:
    return Approval(str(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]),
                    str(r[6]), str(r[7]), r[8], r[9], tuple(json.loads(r[10])),
                    None if r[11] is None else int(r[11]), r[12], r[13],
                    None if r[14] is None else int(r[14]), r[15])


class Approvals:
    """The ``policy_approvals`` table of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def ensure_table(self) -> None:
        """Bring the table up to date (the migrations registry; idempotent, and safe for
        several processes starting at once)."""
        migrations.ensure(self.store, COMPONENT)

    def request(self, *, digest: str, record_id: str, snapshot: str, system: str,
                app: str | None, model: str | None, obligations: list[str],
                ttl_hours: float) -> Approval:
        """Open an approval request for a held call."""
        self.ensure_table()
        now = now_us()
        a = Approval(ID_PREFIX + secrets.token_hex(10), now, now + int(ttl_hours * 3.6e9),
                     PENDING, digest, record_id, snapshot, system, app, model,
                     tuple(obligations))
        self.store.execute(
            f"INSERT INTO policy_approvals ({', '.join(_COLS[:11])})"
            f" VALUES ({', '.join('?' * 11)})",
            (a.id, a.created, a.expires, a.status, a.digest, a.record_id, a.snapshot,
             a.system, a.app, a.model, json.dumps(list(a.obligations))))
        return a

    def get(self, approval_id: str) -> Approval | None:
        self.ensure_table()
        rows = self.store.query(
            f"SELECT {', '.join(_COLS)} FROM policy_approvals WHERE id = ?", (approval_id,))
        return _row(rows[0]) if rows else None

    def list(self, status: str | None = None) -> list[Approval]:
        self.ensure_table()
        sql = f"SELECT {', '.join(_COLS)} FROM policy_approvals"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [_row(r) for r in self.store.query(sql + " ORDER BY created, id", params)]

    def decide(self, approval_id: str, *, approve: bool, by: str | None = None,
               note: str | None = None) -> Approval:
        """Approve or deny a pending, unexpired request."""
        self.ensure_table()
        now = now_us()
        n = self.store.execute(
            "UPDATE policy_approvals SET status = ?, decided = ?, decided_by = ?, note = ?"
            " WHERE id = ? AND status = ? AND expires > ?",
            (APPROVED if approve else DENIED, now, by, note, approval_id, PENDING, now))
        got = self.get(approval_id)
        if n != 1 or got is None:
            raise ApprovalError(self._why_not(approval_id, got, now, deciding=True))
        return got

    def consume(self, approval_id: str, digest: str, used_by: str) -> Approval:
        """Let one call through on an approval: atomically marks it used, or raises."""
        self.ensure_table()
        now = now_us()
        n = self.store.execute(
            "UPDATE policy_approvals SET status = ?, used = ?, used_by = ?"
            " WHERE id = ? AND status = ? AND digest = ? AND expires > ?",
            (USED, now, used_by, approval_id, APPROVED, digest, now))
        got = self.get(approval_id)
        if n != 1 or got is None:
            why = self._why_not(approval_id, got, now, digest=digest)
            if got is not None and got.status == PENDING and got.expires > now:
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
        if a.status == DENIED:
            return f"approval {a.id} was denied"
        if a.expires <= now:
            return f"approval {a.id} has expired"
        if deciding:
            return f"approval {a.id} is {a.status}, not pending"
        if a.status == PENDING:
            return f"approval {a.id} is still pending: nobody has approved it yet"
        if digest is not None and digest != a.digest:
            return f"approval {a.id} was given for a different request"
        return f"approval {a.id} cannot be used"


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
                       ttl_hours: float) -> Settled:
    """The one approval flow of every capture surface: a held call that carries an
    approval id consumes it (single use), else an approval request is opened. A store
    failure raises :class:`~kansa.errors.StorageError`."""
    if approval_id:
        try:
            return Settled("passed", approvals.consume(approval_id, digest, record_id).id)
        except ApprovalPending as e:
            return Settled("approval_pending", approval_id, str(e))
        except ApprovalError as e:
            return Settled("approval_invalid", None, str(e))
    a = approvals.request(digest=digest, record_id=record_id, snapshot=snapshot,
                          system=system, app=app, model=model, obligations=obligations,
                          ttl_hours=ttl_hours)
    return Settled("approval_required", a.id)
