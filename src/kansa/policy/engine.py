"""Judging records under rule packs, storing findings, replaying history, impact reports.

- :func:`judge` judges one ledger entry. For each instrument it picks the pack version in
  force at the record's time (pack ``effective_from``/``effective_until``, days in the
  pack's time zone), then each obligation's own dates, after transitions (the first whose
  ``applies_if`` holds replaces them). ``pin=True`` judges under every given pack instead,
  whatever its dates (a counterfactual: "had this version governed").
- :func:`replay` re-judges stored history, deterministically: same entries, same packs,
  same system facts give the same findings in the same order (``ReplayResult.digest``).
  Stored beside the log (:class:`FindingStore`): failing findings in ``policy_findings``,
  keyed by (entry, pack hash, obligation), so a replay is idempotent; every run in
  ``policy_runs``; and, per run, every verdict counted per obligation and UTC day in
  ``policy_tally``. System facts ``jurisdictions`` and ``roles`` make obligations of
  other jurisdictions and roles not applicable.
- Replay and impact go through :class:`Replayer`, which memoizes each pack's verdicts on
  what its checks read of the record (:func:`record_reads`), the system and the date
  bucket, so the CEL context is built only for records unlike any seen before; the
  digest is defined over :func:`digest_line` per entry.
- :func:`impact` judges history under two pack versions (pinned) and lists every record
  whose verdict changes, by obligation, with citations.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from kansa._time import EPOCH as _EPOCH
from kansa._time import ONE_US as _ONE_US
from kansa._time import to_us as _us
from kansa.ledger import migrations
from kansa.ledger.follower import Follower
from kansa.ledger.migrations import Migration
from kansa.policy.cel import _TOKEN_RE, Expr, compile_check, context, system_facts
from kansa.policy.pack import Obligation, Pack, PolicyError
from kansa.records.model import canonical

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.ledger.storage import Store

PASS, FAIL, NOT_APPLICABLE, EVIDENCE_NEEDED = "pass", "fail", "not_applicable", "evidence_needed"
VERDICTS = (PASS, FAIL, NOT_APPLICABLE, EVIDENCE_NEEDED)



@dataclass(frozen=True)
class Finding:
    """One obligation's verdict on one record under one pack version."""

    index: int | None  # the entry's index in the log (None when judged outside a log)
    record_id: str
    obligation: str
    pack: str
    version: str
    pack_hash: str
    verdict: str  # pass | fail | not_applicable | evidence_needed
    citation: str
    legal_force: str
    reason: str

    @property
    def pack_ref(self) -> str:
        return f"{self.pack}@{self.version}"

    def row(self) -> list[Any]:
        return [self.index, self.record_id, self.obligation, self.pack, self.version,
                self.pack_hash, self.verdict, self.citation, self.legal_force, self.reason]

    def db_row(self) -> list[Any]:
        """The values of a policy_findings row, in _COLS order."""
        return [self.index, self.pack_hash, self.obligation, self.record_id, self.pack,
                self.version, self.verdict, self.citation, self.legal_force, self.reason]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(_FIELDS, self.row(), strict=True))


_FIELDS = ("index", "record_id", "obligation", "pack", "version", "pack_hash", "verdict",
           "citation", "legal_force", "reason")


# -- compiled packs ------------------------------------------------------------------------


@dataclass(frozen=True)
class _CObl:
    o: Obligation
    applies: Expr | None
    expr: Expr | None
    transitions: tuple[tuple[Expr, int | None, int | None], ...]  # (test, from_us, until_us)
    from_us: int
    until_us: int | None
    citation: str


@dataclass(frozen=True)
class CompiledPack:
    pack: Pack
    obligations: tuple[_CObl, ...]
    from_us: int
    until_us: int | None


_compiled: dict[str, CompiledPack] = {}


def compile_pack(pack: Pack) -> CompiledPack:
    """Compile every CEL expression of ``pack`` once (cached by pack hash)."""
    got = _compiled.get(pack.hash)
    if got is not None and got.pack == pack:
        return got
    obls = []
    for o in pack.obligations:
        check = o.check
        ev = o.evidence
        applies_src = check.applies if check else ev.applies if ev else None
        trs = tuple(
            (compile_check(t.applies_if, o.id),
             _us(pack.day_start(t.effective_from)) if t.effective_from else None,
             _us(pack.day_start(t.effective_until)) if t.effective_until else None)
            for t in o.transitions
        )
        obls.append(_CObl(
            o,
            compile_check(applies_src, o.id) if applies_src else None,
            compile_check(check.expr, o.id) if check else None,
            trs,
            _us(pack.day_start(o.effective_from)),
            _us(pack.day_start(o.effective_until)) if o.effective_until else None,
            str(o.citation),
        ))
    cp = CompiledPack(pack, tuple(obls), _us(pack.day_start(pack.effective_from)),
                      _us(pack.day_start(pack.effective_until)) if pack.effective_until
                      else None)
    if len(_compiled) > 256:
        _compiled.clear()
    _compiled[pack.hash] = cp
    return cp


def _dedupe(packs: Iterable[Pack | CompiledPack]) -> list[CompiledPack]:
    out: dict[str, CompiledPack] = {}
    for p in packs:
        cp = p if isinstance(p, CompiledPack) else compile_pack(p)
        out.setdefault(cp.pack.hash, cp)
    by_start: dict[tuple[str, int], CompiledPack] = {}
    for cp in out.values():
        key = (cp.pack.id, cp.from_us)
        other = by_start.get(key)
        if other is not None:
            raise PolicyError(
                f"{cp.pack.ref} and {other.pack.ref} both take effect on "
                f"{cp.pack.effective_from}: which governs is ambiguous")
        by_start[key] = cp
    return sorted(out.values(), key=lambda c: (c.pack.id, c.from_us))


def in_force(packs: Sequence[CompiledPack], at_us: int) -> list[CompiledPack]:
    """For each instrument, the version in force at ``at_us`` (the latest one begun).

    A draft never governs by its dates alone: it is not law. Give it alone for its
    instrument (or pin it) to try it; beside adopted versions of the same instrument, the
    adopted ones govern."""
    chosen: dict[str, CompiledPack] = {}
    drafts: dict[str, CompiledPack] = {}
    for cp in packs:  # sorted by (id, start): a later start wins
        if cp.from_us <= at_us and (cp.until_us is None or at_us < cp.until_us):
            (drafts if cp.pack.status == "draft" else chosen)[cp.pack.id] = cp
    non_draft = {cp.pack.id for cp in packs if cp.pack.status != "draft"}
    for pid, cp in drafts.items():
        if pid not in non_draft:
            chosen[pid] = cp
    return sorted(chosen.values(), key=lambda c: c.pack.id)  # (pack id, obligation) order


# -- judging -------------------------------------------------------------------------------


def _record_time(entry: Mapping[str, Any]) -> datetime:
    ts = entry.get("ts")
    if not isinstance(ts, str):
        raise PolicyError(f"record {entry.get('id')!r} has no timestamp")
    try:
        dt = datetime.fromisoformat(ts.replace("z", "Z"))
    except ValueError:
        raise PolicyError(f"record {entry.get('id')!r}: bad timestamp {ts!r}") from None
    if dt.tzinfo is None:
        raise PolicyError(f"record {entry.get('id')!r}: timestamp {ts!r} has no time zone")
    return dt.astimezone(UTC)


def _day(us: int) -> str:
    return (_EPOCH + us * _ONE_US).date().isoformat()


def _local_day(us: int, pack: Pack) -> str:
    """The day an instant begins in the pack's own time zone: an Omnibus date of
    2 Dec 2026 in Brussels is 1 Dec 23:00 UTC, and must read as 2026-12-02."""
    return (_EPOCH + us * _ONE_US).astimezone(pack.tz).date().isoformat()


def _judge_one(cp: CompiledPack, c: _CObl, ctx: Any, at_us: int, index: int | None,
               record_id: str, roles: Any, jurisdictions: Any,
               rec: Mapping[str, Any] | None = None, lang: str = "en") -> Finding:
    o = c.o
    start, end, why = c.from_us, c.until_us, ""
    for n, (test, t_from, t_until) in enumerate(c.transitions, 1):
        if test.test(ctx, index=index, what=f"transitions[{n}].applies_if"):
            start = t_from if t_from is not None else start
            end = t_until if t_until is not None else end
            why = f" (transition {n})"
            break

    def finding(verdict: str, reason: str) -> Finding:
        return Finding(index, record_id, o.id, cp.pack.id, cp.pack.version, cp.pack.hash,
                       verdict, c.citation, o.legal_force, reason)

    if at_us < start:
        return finding(NOT_APPLICABLE,
                       f"not in force until {_local_day(start, cp.pack)}{why}")
    if end is not None and at_us >= end:
        return finding(NOT_APPLICABLE, f"not in force since {_local_day(end, cp.pack)}{why}")
    if isinstance(jurisdictions, list) and o.jurisdiction not in jurisdictions:
        return finding(NOT_APPLICABLE, f"applies in {o.jurisdiction}; the system is offered "
                       f"in {', '.join(map(str, jurisdictions)) or 'no jurisdiction'}")
    if isinstance(roles, list) and not any(r in roles for r in o.roles):
        return finding(NOT_APPLICABLE, f"applies to the {' or '.join(o.roles)}; the system is "
                       f"{', '.join(map(str, roles)) or 'in no role'}")
    if c.applies is not None and not c.applies.test(ctx, index=index, what="applies"):
        return finding(NOT_APPLICABLE, "does not apply to this record")
    if c.expr is None:
        assert o.evidence is not None
        return finding(EVIDENCE_NEEDED, f"{o.evidence.kind}: {o.evidence.description}")
    if c.expr.test(ctx, index=index, what="expr"):
        return finding(PASS, "check holds" + why)
    if o.reason is not None:
        return finding(FAIL, fill_reason(o, cp.pack, rec, start, end, lang))
    return finding(FAIL, "check does not hold" + why)


_UNKNOWN = {"ja": "不明"}


# what a reason template may take from the record, and where
_RECORD_FIELDS = {"system": ("system",), "model": ("gen_ai.response.model",
                                                   "gen_ai.request.model"),
                  "provider": ("gen_ai.provider.name",)}
_RECORD_MARKS = tuple("{" + k + "}" for k in _RECORD_FIELDS)


def fill_reason(o: Obligation, pack: Pack, rec: Mapping[str, Any] | None, start_us: int,
                end_us: int | None, lang: str = "en") -> str:
    """An obligation's reason template (``reason:`` in the pack) in ``lang`` (en when the
    pack has none in that language), filled with the dates that applied and, given
    ``rec``, the record's values. Without ``rec`` the record's placeholders ({system},
    {model}, {provider}) stay for :func:`fill_record`: replay judges once per memo miss,
    and fills those per failing row."""
    assert o.reason is not None
    tpl = o.reason.get(lang) or o.reason["en"]
    unknown = _UNKNOWN.get(lang if lang in o.reason else "en", "unknown")
    text = tpl.format_map({
        **{k: "{" + k + "}" for k in _RECORD_FIELDS},
        "citation": str(o.citation),
        "since": _local_day(start_us, pack),
        "until": _local_day(end_us, pack) if end_us is not None else unknown,
        "pack": pack.ref,
    })
    return text if rec is None else fill_record(text, rec, unknown)


def fill_record(reason: str, rec: Mapping[str, Any], unknown: str = "unknown") -> str:
    """``reason`` with the record's placeholders ({system}, {model}, {provider}) filled."""
    if "{" not in reason:
        return reason
    for name, keys in _RECORD_FIELDS.items():
        mark = "{" + name + "}"
        if mark in reason:
            value = next((str(v) for v in map(rec.get, keys) if v is not None and v != ""),
                         unknown)
            reason = reason.replace(mark, value)
    return reason


def _needs_record(reason: str) -> bool:
    return "{" in reason and any(m in reason for m in _RECORD_MARKS)


def reason_in(lang: str, finding: Finding, pack: Pack, entry: Mapping[str, Any],
              systems: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``finding``'s reason in another language (reports: ``reason_in("ja", ...)``).

    ``pack`` is the pack the finding names (``finding.pack_hash``), ``entry`` the ledger
    entry it judged, ``systems`` the facts it was judged with. Only failing checks with a
    reason template have a translated reason; other reasons come back as stored."""
    o = pack.obligation(finding.obligation)
    if finding.verdict != FAIL or o.reason is None or lang not in o.reason:
        return finding.reason
    judge = Judge(_dedupe([pack]), systems, True, lang=lang)
    for f in judge.judge(entry, None, finding.index):
        if f.obligation == finding.obligation and f.verdict == FAIL:
            return f.reason
    return finding.reason


def judge(
    record_entry: Mapping[str, Any],
    packs: Sequence[Pack | CompiledPack],
    at: datetime | None = None,
    *,
    index: int | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    pin: bool = False,
    lang: str = "en",
) -> list[Finding]:
    """Judge one ledger entry (the stored JSON object) under ``packs``.

    ``at`` is the instant judged at (default: the record's timestamp); it chooses the
    pack versions in force and is CEL's ``now``. ``systems`` maps a system name to its
    facts (CEL's ``system``; a ``roles`` list there limits obligations to those roles).
    ``lang`` picks the language of failing checks' reason templates (en by default).
    Findings come in (pack id, obligation order) order."""
    return Judge(_dedupe(packs), systems, pin, lang).judge(record_entry, at, index)


class Judge:
    """Judges entries under a fixed set of compiled packs (reuse it: compiling is done once)."""

    def __init__(self, packs: list[CompiledPack],
                 systems: Mapping[str, Mapping[str, Any]] | None, pin: bool,
                 lang: str = "en") -> None:
        self.packs = packs
        self.pin = pin
        self.lang = lang  # the language of reason templates (findings of failing checks)
        self.systems = {str(k): system_facts(v) for k, v in (systems or {}).items()}

    def judge(self, entry: Mapping[str, Any], at: datetime | None,
              index: int | None) -> list[Finding]:
        when = at.astimezone(UTC) if at is not None else _record_time(entry)
        at_us = _us(when)
        chosen = self.packs if self.pin else in_force(self.packs, at_us)
        if not chosen:
            return []
        facts = self.systems.get(str(entry.get("system")), {})
        ctx = context(entry, facts, when)
        rid = str(entry.get("id", ""))
        roles, juris = facts.get("roles"), facts.get("jurisdictions")
        return [_judge_one(cp, c, ctx, at_us, index, rid, roles, juris, entry, self.lang)
                for cp in chosen for c in cp.obligations]


# -- storage beside the ledger ---------------------------------------------------------
#
# Per (record x obligation) rows would be 10^6 x ~80 for a modest history, so only failing
# findings are kept one per row; every verdict is counted per obligation and UTC day
# (policy_tally), per replay (policy_runs). Reports chart the tallies and cite the rows.


@dataclass(frozen=True)
class RunInfo:
    """One stored replay (a row of ``policy_runs``)."""

    run_id: str
    started_at: datetime  # UTC
    packs: list[dict[str, str]]  # {"id", "version", "hash"} of every pack given, sorted
    since: str | None  # the window asked for, as given (RFC 3339); None when open
    until: str | None
    records: int  # entries judged
    digest: str  # ReplayResult.digest
    verdicts: dict[str, int]  # verdict -> number of findings
    seconds: float


@dataclass(frozen=True)
class TallyRow:
    """How many findings of one obligation had one verdict on one UTC day, in one run."""

    run_id: str
    pack_hash: str
    obligation: str
    day: str  # YYYY-MM-DD: the UTC day of the records' time
    verdict: str
    n: int


def _tables(without_rowid: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE IF NOT EXISTS policy_packs (hash TEXT PRIMARY KEY, pack TEXT NOT NULL,"
        " version TEXT NOT NULL, data TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS policy_findings (idx BIGINT NOT NULL, pack_hash TEXT NOT NULL,"
        " obligation TEXT NOT NULL, record_id TEXT NOT NULL, pack TEXT NOT NULL,"
        " version TEXT NOT NULL, verdict TEXT NOT NULL, citation TEXT NOT NULL,"
        " legal_force TEXT NOT NULL, reason TEXT NOT NULL,"
        f" PRIMARY KEY (idx, pack_hash, obligation)){without_rowid}",
        "CREATE INDEX IF NOT EXISTS policy_findings_verdict"
        " ON policy_findings (pack_hash, obligation, verdict)",
        "CREATE TABLE IF NOT EXISTS policy_runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL,"
        " packs TEXT NOT NULL, since TEXT, until TEXT, records BIGINT NOT NULL,"
        " digest TEXT NOT NULL, verdicts TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS policy_tally (run_id TEXT NOT NULL, pack_hash TEXT NOT NULL,"
        " obligation TEXT NOT NULL, day TEXT NOT NULL, verdict TEXT NOT NULL, n BIGINT NOT NULL,"
        " PRIMARY KEY (run_id, pack_hash, obligation, day, verdict))",
    )


# the policy tables' migrations (the registry in ledger/migrations.py). Step 1 is the
# schema the tables had before the registry, IF NOT EXISTS: it adopts those tables.
# SQLite: findings live in the primary key's B-tree (no separate rowid tree), a third
# smaller and cheaper to insert into
MIGRATIONS = migrations.register("policy", [
    Migration(1, "packs, findings, runs, tallies", _tables(" WITHOUT ROWID"), _tables("")),
])
_COLS = ("idx", "pack_hash", "obligation", "record_id", "pack", "version", "verdict",
         "citation", "legal_force", "reason")
_ROWS_PER_INSERT = 2000  # 20,000 parameters: under SQLite's 32,766 and PostgreSQL's 65,535
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order


@lru_cache(maxsize=16)
def _insert_sql(table: str, cols: tuple[str, ...], n: int, conflict: str) -> str:
    row = "(" + ", ".join("?" * len(cols)) + ")"
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([row] * n)}"
            f" {conflict}")


_FINDING_UPSERT = ("ON CONFLICT (idx, pack_hash, obligation) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in _COLS[3:]))


_PG_UPSERT = (
    f"INSERT INTO policy_findings ({', '.join(_COLS)}) SELECT * FROM unnest(?::bigint[], "
    + ", ".join(["?::text[]"] * (len(_COLS) - 1)) + f") {_FINDING_UPSERT}")


@contextmanager
def _transaction(store: Store) -> Iterator[None]:
    """One transaction on the calling thread's connection: a batch of rows costs one
    commit (one fsync on SQLite) instead of one per statement. Kept short, since on
    SQLite it holds the write lock appenders need.

    On SQLite the write lock is taken at BEGIN (IMMEDIATE): a deferred transaction that
    reads first and writes later fails at once with "database is locked" when another
    connection (the replay writer thread, the log's sequencer) committed in between, and
    SQLite's busy timeout does not help there."""
    store.execute("BEGIN IMMEDIATE" if store.dialect == "sqlite" else "BEGIN")
    try:
        yield
    except BaseException:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")


class FindingStore:
    """The policy tables in a ledger's store (component ``policy`` of the migrations
    registry, brought up to date on first use, on SQLite and PostgreSQL alike):
    ``policy_packs`` (every pack judged under, by hash), ``policy_findings`` (failing
    findings, one row each, keyed by entry index, pack hash and obligation),
    ``policy_runs`` (one row per stored replay) and ``policy_tally`` (per run: findings
    counted by pack hash, obligation, UTC day and verdict)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        migrations.ensure(store, "policy")

    def save_pack(self, pack: Pack) -> None:
        self.store.execute(
            "INSERT INTO policy_packs (hash, pack, version, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hash) DO NOTHING",
            (pack.hash, pack.id, pack.version, pack.canonical_json().decode()))

    def pack_json(self, pack_hash: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT data FROM policy_packs WHERE hash = ?", (pack_hash,))
        return json.loads(rows[0][0]) if rows else None

    def save(self, findings: Iterable[Finding]) -> int:
        """Upsert the failing findings among ``findings`` (those judged inside a log, i.e.
        with an index); the others are not stored one by one. Returns the rows written."""
        return self._write_rows([v for f in findings if f.verdict == FAIL
                                 and f.index is not None for v in f.db_row()], [], ())

    def _write_rows(self, flat: list[Any], clear: Sequence[tuple[int, int]],
                    pack_hashes: Sequence[str]) -> int:
        """In one transaction: make the findings of ``pack_hashes`` on entries in the
        index ranges ``clear`` (inclusive; what a replay re-judged) exactly the rows in
        ``flat`` (their values one after another, each row in _COLS order). Returns the
        number of rows given."""
        width = len(_COLS)
        given = len(flat) // width
        if not flat and not (clear and pack_hashes):
            return 0
        with _transaction(self.store):
            if pack_hashes and clear:
                flat = self._replace(flat, clear, pack_hashes)
            if self.store.dialect == "postgresql" and flat:
                # one statement of ten arrays instead of 20,000 parameters: PostgreSQL
                # plans and binds it far faster
                self.store.execute(_PG_UPSERT, [flat[k::width] for k in range(width)])
                return given
            step = _ROWS_PER_INSERT * width
            for i in range(0, len(flat), step):
                chunk = flat[i : i + step]
                self.store.execute(_insert_sql("policy_findings", _COLS, len(chunk) // width,
                                               _FINDING_UPSERT), chunk)
        return given

    def _replace(self, flat: list[Any], clear: Sequence[tuple[int, int]],
                 pack_hashes: Sequence[str]) -> list[Any]:
        """Delete the stored rows in ``clear`` that ``flat`` does not hold; return the
        rows of ``flat`` not stored yet. A re-run of the same replay then only reads (a
        range scan of the primary key) instead of deleting and inserting every row."""
        # the packs are filtered here, not in SQL: "pack_hash IN (...)" leads planners to
        # the (pack_hash, ...) index and a scan of each pack's rows, once per batch
        # A row's other columns follow from its key (the entry's id, the pack's names and
        # citations) or are "fail": key and reason tell whether it is the same row.
        hashes = set(pack_hashes)
        stored: set[tuple[Any, ...]] = set()
        for lo, hi in clear:
            stored.update(r for r in self.store.query(
                "SELECT idx, pack_hash, obligation, reason FROM policy_findings"
                " WHERE idx >= ? AND idx <= ?", [lo, hi]) if r[1] in hashes)
        if not stored:
            return flat
        width = len(_COLS)
        rows = [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]
        keep = {(*r[:3], r[9]) for r in rows}
        stale = [r[:3] for r in stored if r not in keep]
        for i in range(0, len(stale), _ROWS_PER_INSERT):
            chunk = stale[i : i + _ROWS_PER_INSERT]
            self.store.execute(
                "DELETE FROM policy_findings WHERE (idx, pack_hash, obligation) IN (VALUES "
                + ", ".join(["(?, ?, ?)"] * len(chunk)) + ")", [v for k in chunk for v in k])
        return [v for r in rows if (*r[:3], r[9]) not in stored for v in r]

    def _save_run(self, run: RunInfo, tally: Sequence[TallyRow]) -> None:
        with _transaction(self.store):
            self.store.execute(
                "INSERT INTO policy_runs (run_id, started_at, packs, since, until, records,"
                " digest, verdicts, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, run.started_at.strftime(_TS_FORMAT), json.dumps(run.packs),
                 run.since, run.until, run.records, run.digest,
                 json.dumps(run.verdicts, sort_keys=True), run.seconds))
            cols = ("run_id", "pack_hash", "obligation", "day", "verdict", "n")
            if self.store.dialect == "postgresql" and tally:
                self.store.execute(
                    f"INSERT INTO policy_tally ({', '.join(cols)}) SELECT * FROM unnest("
                    "?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[])",
                    [[t.run_id for t in tally], [t.pack_hash for t in tally],
                     [t.obligation for t in tally], [t.day for t in tally],
                     [t.verdict for t in tally], [t.n for t in tally]])
                return
            per = _ROWS_PER_INSERT * len(_COLS) // len(cols)
            for i in range(0, len(tally), per):
                chunk = tally[i : i + per]
                self.store.execute(_insert_sql("policy_tally", cols, len(chunk), ""),
                                   [v for t in chunk for v in (t.run_id, t.pack_hash,
                                                               t.obligation, t.day,
                                                               t.verdict, t.n)])

    def findings(self, *, pack_hash: str | None = None, index: int | None = None,
                 verdict: str | None = None, obligation: str | None = None,
                 limit: int | None = None) -> list[Finding]:
        """Stored (failing) findings, in (entry index, pack id, version, obligation) order."""
        where: list[str] = []
        params: list[Any] = []
        for col, value in (("pack_hash", pack_hash), ("idx", index), ("verdict", verdict),
                           ("obligation", obligation)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = f"SELECT {', '.join(_COLS)} FROM policy_findings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY idx, pack, version, obligation"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Finding(int(r[0]), r[3], r[2], r[4], r[5], r[1], r[6], r[7], r[8], r[9])
                for r in self.store.query(sql, params)]

    def judged_packs(self) -> list[tuple[str, str, str]]:
        """(pack, version, hash) of every pack version history was judged under."""
        rows = self.store.query("SELECT pack, version, hash FROM policy_packs"
                                " ORDER BY pack, version")
        return [(str(p), str(v), str(h)) for p, v, h in rows]

    def failing_by_pack(self) -> list[tuple[str, str, int]]:
        """(pack, version, failing findings stored) per pack version judged under."""
        rows = self.store.query(
            "SELECT pack, version, COUNT(*) FROM policy_findings WHERE verdict = ?"
            " GROUP BY pack, version ORDER BY pack, version", (FAIL,))
        return [(str(p), str(v), int(n)) for p, v, n in rows]

    def failures(self, pack_hash: str, obligation: str, *, since_us: int | None = None,
                 until_us: int | None = None, limit: int = 10) -> list[tuple[int, str, str]]:
        """Up to ``limit`` stored failures (index, record id, reason) of one obligation
        whose entries' time is in [since_us, until_us), by the (pack_hash, obligation,
        verdict) index; no ORDER BY, so the store stops at ``limit`` rather than sorting
        every failure (rows come in insertion order, i.e. log order). Sorted by index."""
        sql = ("SELECT f.idx, f.record_id, f.reason FROM policy_findings f"
               " JOIN entries e ON e.idx = f.idx"
               " WHERE f.pack_hash = ? AND f.obligation = ? AND f.verdict = ?")
        params: list[Any] = [pack_hash, obligation, FAIL]
        if since_us is not None:
            sql += " AND e.ts >= ?"
            params.append(since_us)
        if until_us is not None:
            sql += " AND e.ts < ?"
            params.append(until_us)
        sql += f" LIMIT {int(limit)}"
        return sorted((int(r[0]), str(r[1]), str(r[2])) for r in self.store.query(sql, params))

    def runs(self) -> list[RunInfo]:
        """Every stored replay, newest first."""
        rows = self.store.query(
            "SELECT run_id, started_at, packs, since, until, records, digest, verdicts,"
            " seconds FROM policy_runs ORDER BY started_at DESC, run_id DESC")
        return [RunInfo(r[0], datetime.strptime(r[1], _TS_FORMAT).replace(tzinfo=UTC),
                        json.loads(r[2]), r[3], r[4], int(r[5]), r[6], json.loads(r[7]),
                        float(r[8])) for r in rows]

    def tally(self, *, run: str | None = None,
              pack_hash: str | None = None) -> list[TallyRow]:
        """The verdict counts of run ``run`` (default: the latest run), optionally of one
        pack, in (pack hash, obligation, day, verdict) order; [] when there is no run."""
        if run is None:
            latest = self.store.query(
                "SELECT run_id FROM policy_runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
            if not latest:
                return []
            run = str(latest[0][0])
        sql = ("SELECT run_id, pack_hash, obligation, day, verdict, n FROM policy_tally"
               " WHERE run_id = ?")
        params: list[Any] = [run]
        if pack_hash is not None:
            sql += " AND pack_hash = ?"
            params.append(pack_hash)
        sql += " ORDER BY pack_hash, obligation, day, verdict"
        return [TallyRow(r[0], r[1], r[2], r[3], r[4], int(r[5]))
                for r in self.store.query(sql, params)]


# -- memoized judging ----------------------------------------------------------------------
#
# A check's verdict depends only on what its expressions read of the record, the system's
# facts (chosen by the record's system name) and which date boundaries the record's time
# has passed. When every expression of a pack reads the record in forms recognised below
# and never reads ``now``, one judgement serves every record that agrees on those inputs,
# and building the CEL context (the dominant cost) is skipped for all but the first.


# tokens after which `"key" in record...` is a whole operand (the operators that bind less
# tightly than `in`, and delimiters); anything else might make the string part of a larger
# left operand
_IN_OPENERS = {"", "(", ",", "&&", "||", "?", ":", "[", "{"}

Read = tuple[tuple[str, ...], bool]  # (a path of one or two keys, the whole value?)


def _tokens(source: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        if m is None:
            return None
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _key(token: tuple[str, str]) -> str | None:
    """The value of a plain string literal without escapes; None for anything else."""
    kind, text = token
    if kind != "str" or text[0] not in "\"'" or "\\" in text or text[:3] in ('"""', "'''"):
        return None
    return text[1:-1]


def record_reads(source: str) -> frozenset[Read] | None:
    """What a CEL expression reads of ``record``, conservatively: ``record.X``,
    ``record["X"]``, ``"X" in record``, ``has(record.X)`` (and the same one level down, e.g.
    ``"Y" in record.attributes``). None when the expression reads ``now`` or uses
    ``record`` any other way: its value may then depend on more than these reads."""
    toks = _tokens(source)
    if toks is None:
        return None
    text = [t for _, t in toks] + ["", "", ""]
    reads: set[Read] = set()
    for i, (kind, word) in enumerate(toks):
        if kind != "id" or (i and text[i - 1] == "."):
            continue  # a field name, not a variable
        if word == "now":
            return None
        if word != "record":
            continue
        path: list[str] = []
        j = i + 1
        while True:
            if text[j] == "." and toks[j + 1][0] == "id" and text[j + 2] != "(":
                path.append(text[j + 1])
                j += 2
            elif text[j] == "[" and j + 2 < len(toks) and _key(toks[j + 1]) is not None \
                    and text[j + 2] == "]":
                path.append(str(_key(toks[j + 1])))
                j += 3
            else:
                break
        ends = text[j] not in (".", "[", "(")
        literal = _key(toks[i - 2]) if i >= 2 else None
        if (ends and i >= 2 and text[i - 1] == "in" and literal is not None
                and (text[i - 3] if i >= 3 else "") in _IN_OPENERS and len(path) < 2):
            reads.add(((*path, literal), False))  # "X" in record / "Y" in record.X
        elif ends and i >= 2 and text[i - 1] == "(" and text[i - 2] == "has" \
                and (i < 3 or text[i - 3] != ".") and text[j] == ")" and 1 <= len(path) <= 2:
            reads.add((tuple(path), False))  # has(record.X) / has(record.X.Y)
        elif path:
            reads.add((tuple(path[:2]), True))
        else:
            return None  # record as a whole: size(record), record[k], ...
    return frozenset(reads)


def _normal(reads: Iterable[Read]) -> list[Read]:
    """Drop reads another read covers: a whole value covers its presence and its keys."""
    reads = list(reads)
    whole = {p for p, w in reads if w}
    keep = {(p, w) for p, w in reads
            if (w or p not in whole) and not (len(p) == 2 and (p[0],) in whole)}
    return sorted(keep)


_MISSING = ("<missing>",)  # a key absent from the record (no JSON value is a tuple)


def _freeze(v: Any) -> Any:
    """A hashable stand-in for a JSON value, equal only for values CEL cannot tell apart
    (1, 1.0 and true are equal in Python, not in CEL)."""
    cls = v.__class__
    if v is None or cls is str or v is _MISSING:
        return v
    if cls is list:
        types = tuple(map(type, v))
        if list not in types and dict not in types:  # the common case: a list of scalars
            return ("list", tuple(v), types)
    if isinstance(v, dict | list):
        return ("json", json.dumps(v, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False))
    return (cls, v)


def _values(m: Mapping[str, Any], keys: list[str], missing: list[Any]) -> tuple[Any, ...]:
    """The values of ``keys`` in ``m`` (``missing``: as many _MISSING) as a hashable key,
    paired with their types (1, 1.0 and true are equal in Python, not in CEL)."""
    vals = tuple(map(m.get, keys, missing))
    types = tuple(map(type, vals))
    if list in types or dict in types:
        vals = tuple([_freeze(v) if t is list or t is dict else v
                      for v, t in zip(vals, types, strict=True)])
    return (vals, types)


def projector(reads: Iterable[Read]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function giving, for a record, a hashable value equal for two records exactly
    when they agree on everything ``reads`` covers: whole values, presence, and entries
    of maps (a key read one level down whose value is not a map counts whole)."""
    whole: list[str] = []
    present: list[str] = []
    subs: dict[str, list[tuple[str, bool]]] = {}
    for path, w in _normal(reads):
        if len(path) == 2:
            subs.setdefault(path[0], []).append((path[1], w))
        elif w:
            whole.append(path[0])
        else:
            present.append(path[0])
    present = [k for k in present if k not in subs]  # a map's reader tells absence too
    groups = [_map_reader(k, v) for k, v in sorted(subs.items())]
    whole_missing = [_MISSING] * len(whole)

    def project(e: Mapping[str, Any]) -> tuple[Any, ...]:
        return (_values(e, whole, whole_missing), tuple(map(e.__contains__, present)),
                tuple([g(e) for g in groups]))

    return project


def _map_reader(key: str, subs: list[tuple[str, bool]]) -> Callable[[Mapping[str, Any]], Any]:
    values = [q for q, w in subs if w]
    present = [q for q, w in subs if not w]
    missing = [_MISSING] * len(values)

    def read(e: Mapping[str, Any]) -> Any:
        v = e.get(key, _MISSING)
        if v.__class__ is not dict:
            return _freeze(v)  # absent, or not a map: then its whole value decides
        return ("map", _values(v, values, missing), tuple(map(v.__contains__, present)))

    return read


class _Outcome:
    """One pack's verdicts on every record that agrees on what the pack reads."""

    __slots__ = ("cp", "verdicts", "fails", "digest", "profile")

    def __init__(self, cp: CompiledPack, found: list[Finding]) -> None:
        self.cp = cp
        self.verdicts = tuple((f.verdict, f.reason) for f in found)
        # (pack_hash, obligation) and the rest of a policy_findings row, for each failure
        # ... and whether its reason still names the record's values (filled per row)
        self.fails = tuple(((f.pack_hash, f.obligation),
                            (f.pack, f.version, f.verdict, f.citation, f.legal_force, f.reason),
                            _needs_record(f.reason))
                           for f in found if f.verdict == FAIL)
        self.digest = hashlib.sha256(json.dumps(
            [cp.pack.hash, [[f.obligation, f.verdict, f.reason] for f in found]],
            ensure_ascii=False, separators=(",", ":")).encode()).digest()
        # what the tallies count: outcomes differing only in reasons count alike
        self.profile = (cp.pack.hash, tuple(f.verdict for f in found))

    def findings(self, index: int, record_id: str,
                 entry: Mapping[str, Any] | None = None) -> list[Finding]:
        p = self.cp.pack
        return [Finding(index, record_id, c.o.id, p.id, p.version, p.hash, v, c.citation,
                        c.o.legal_force,
                        fill_record(r, entry) if entry is not None and v == FAIL else r)
                for c, (v, r) in zip(self.cp.obligations, self.verdicts, strict=True)]


class _Combo:
    """The outcomes of the packs in force on records that agree on everything any of them
    reads: all a warm replay computes per record is which combo applies."""

    __slots__ = ("outcomes", "tail", "fails")

    def __init__(self, outcomes: list[_Outcome]) -> None:
        self.outcomes = tuple(outcomes)
        self.tail = b"".join([b"\t%d\t" % len(outcomes), *[o.digest for o in outcomes],
                              b"\n"])
        self.fails = tuple(f for o in outcomes for f in o.fails)


_MEMO_LIMIT = 50_000  # entries kept per memo before it starts afresh (bounds memory)


class _Memo:
    __slots__ = ("cp", "project", "cache")

    def __init__(self, cp: CompiledPack, reads: list[Read] | None) -> None:
        self.cp = cp
        # exactly this pack's reads (None: not memoizable); computed only when the
        # whole-record memo misses, so they can be narrower than the record-level key
        self.project = None if reads is None else projector(reads)
        self.cache: dict[Any, _Outcome] = {}


def pack_reads(cp: CompiledPack) -> list[Read] | None:
    reads: set[Read] = set()
    for c in cp.obligations:
        for e in (c.applies, c.expr, *(t[0] for t in c.transitions)):
            if e is None:
                continue
            got = record_reads(e.source)
            if got is None:
                return None
            reads |= got
    return _normal(reads)


class Replayer:
    """Judges a stream of entries under fixed packs. Two memo levels: per pack, keyed on
    (date bucket, system name, what the pack reads of the record); and, when every pack
    is memoizable, per record for all packs at once. ``memo=False`` judges every record
    afresh (the reference the memo is tested against)."""

    def __init__(self, packs: list[CompiledPack], systems: Mapping[str, Mapping[str, Any]]
                 | None, pin: bool, *, memo: bool = True) -> None:
        self.judge = Judge(packs, systems, pin)
        per_pack = {cp.pack.hash: pack_reads(cp) if memo else None for cp in packs}
        self.project = projector(r for reads in per_pack.values() if reads for r in reads)
        memos = {cp.pack.hash: _Memo(cp, per_pack[cp.pack.hash]) for cp in packs}
        self.whole = memo and all(m.project is not None for m in memos.values())
        # when every pack is memoizable, checks see nothing of a record but these keys,
        # so a miss converts only them into the CEL context (the costly part of a miss)
        self.seen = sorted({p[0] for reads in per_pack.values() if reads for p, _ in reads}) \
            if self.whole else None
        self.combos: dict[Any, _Combo] = {}
        bounds: set[int] = set()
        for cp in packs:
            bounds.update(b for b in (cp.from_us, cp.until_us) if b is not None)
            for c in cp.obligations:
                bounds.update(b for b in (c.from_us, c.until_us) if b is not None)
                for _, t_from, t_until in c.transitions:
                    bounds.update(b for b in (t_from, t_until) if b is not None)
        # between two boundaries every date comparison comes out the same way
        self.bounds = sorted(bounds)
        reps = [self.bounds[0] - 1 if self.bounds else 0, *self.bounds]
        self.chosen = [[memos[cp.pack.hash] for cp in (packs if pin else in_force(packs, at))]
                       for at in reps]

    def combo(self, entry: Mapping[str, Any], index: int) -> tuple[int, _Combo]:
        """The record's time (µs since the epoch) and the outcomes of the packs in force."""
        when = _record_time(entry)
        at_us = _us(when)
        bucket = bisect_right(self.bounds, at_us)
        system = str(entry.get("system"))
        key = None
        if self.whole:
            key = (bucket, system, self.project(entry))
            got = self.combos.get(key)
            if got is not None:
                return at_us, got
        ctx = None
        out = []
        for m in self.chosen[bucket]:
            mkey = None
            if m.project is not None:
                mkey = (bucket, system, m.project(entry))
                hit = m.cache.get(mkey)
                if hit is not None:
                    out.append(hit)
                    continue
            facts = self.judge.systems.get(system, {})
            if ctx is None:
                seen = entry if self.seen is None else \
                    {k: entry[k] for k in self.seen if k in entry}
                ctx = context(seen, facts, when)
            o = _Outcome(m.cp, [
                _judge_one(m.cp, c, ctx, at_us, index, "", facts.get("roles"),
                           facts.get("jurisdictions")) for c in m.cp.obligations])
            if mkey is not None:
                if len(m.cache) >= _MEMO_LIMIT:
                    m.cache.clear()
                m.cache[mkey] = o
            out.append(o)
        combo = _Combo(out)
        if key is not None:
            if len(self.combos) >= _MEMO_LIMIT:
                self.combos.clear()
            self.combos[key] = combo
        return at_us, combo


# -- replay ------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    packs: list[str]  # "id@version sha256:..." of every pack given
    run_id: str = ""  # the policy_runs row (written when save=True)
    records: int = 0  # entries judged
    findings: int = 0  # verdicts given (records x obligations of the packs in force)
    verdicts: Counter[str] = field(default_factory=Counter)
    # SHA-256 over one line per judged entry, in index order (see replay()): equal
    # history, packs and system facts give equal digests
    digest: str = ""
    seconds: float = 0.0
    stored: int = 0  # failing findings written to policy_findings
    collected: list[Finding] = field(default_factory=list)  # when collect=True


def _bound(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        from kansa.records.model import parse_ts

        value = parse_ts(value, field_name="since/until")
    return _us(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))


def _entries(ledger: Ledger, since: datetime | str | None,
             until: datetime | str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    loads = orjson.loads
    follower = Follower(ledger.log.store, since_us=_bound(since), until_us=_bound(until),
                        batch=_READ_BATCH)
    for index, _ts, data in follower.read():
        yield index, loads(data)


_READ_BATCH = 16_384


def _window(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def digest_line(index: int, record_id: str, combo: _Combo) -> bytes:
    """One judged entry's contribution to ReplayResult.digest:
    ``index TAB len(id):id TAB k TAB`` (decimal; the record id as UTF-8 and its length in
    bytes), then for each of the k packs in force (by pack id) the 32-byte SHA-256 of the
    compact JSON ``[pack_hash, [[obligation, verdict, reason], ...]]`` (obligations in
    pack order), then LF. The lengths make it unambiguous; a pack's hash fixes the
    citations and legal force of its findings."""
    rid = record_id.encode()
    return b"%d\t%d:%b%b" % (index, len(rid), rid, combo.tail)


_DAY_US = 86_400_000_000
_FLUSH_VALUES = 20_000 * len(_COLS)


_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _writer_pool() -> ThreadPoolExecutor:
    """One thread, for the life of the process, that writes replay batches: SQLite and
    PostgreSQL release the GIL while they work, so judging goes on meanwhile. (One
    long-lived thread, because stores keep a connection per thread.)"""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kansa-replay-write")
        return _writer


class _Sink:
    """Failing rows and judged index ranges, written in batches by the writer thread, in
    order, at most two batches behind; tallies, kept in memory (outcomes x days) and
    expanded and written once at the end."""

    def __init__(self, fs: FindingStore | None, pack_hashes: list[str]) -> None:
        self.fs = fs
        self.hashes = pack_hashes
        self.rows: list[Any] = []  # failing rows' values, flat
        self.ranges: list[tuple[int, int]] = []
        self.counts: Counter[tuple[_Combo, int]] = Counter()
        self.profiles: Counter[tuple[Any, int]] = Counter()
        self.packs: dict[str, CompiledPack] = {}
        self.stored = 0
        self.pending: list[Future[int]] = []

    def flush(self) -> None:
        """Hand the batch to the writer (the lists are emptied in place: the replay loop
        holds them)."""
        if self.fs is not None and (self.rows or self.ranges):
            while len(self.pending) >= 2:
                self.stored += self.pending.pop(0).result()
            self.pending.append(_writer_pool().submit(
                self.fs._write_rows, self.rows[:], self.ranges[:], self.hashes))
        self.rows.clear()
        self.ranges.clear()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for every batch handed over; raise the first write error unless quiet."""
        pending, self.pending = self.pending, []
        errors = []
        for f in pending:
            try:
                self.stored += f.result()
            except Exception as e:  # noqa: PERF203 (every batch must be waited for)
                errors.append(e)
        if errors and not quiet:
            raise errors[0]

    def count_now(self, combo: _Combo, day: int) -> None:
        """Count a record's verdicts by verdict profile at once: for combos not memoized
        (one per record), so that memory does not grow with the records."""
        for o in combo.outcomes:
            self.profiles[(o.profile, day)] += 1
            self.packs[o.profile[0]] = o.cp

    def tally(self) -> Counter[tuple[str, str, int, str]]:
        """(pack hash, obligation, day number, verdict) -> findings."""
        profiles, packs = self.profiles, self.packs
        for (combo, day), n in self.counts.items():
            for o in combo.outcomes:
                profiles[(o.profile, day)] += n
                packs[o.profile[0]] = o.cp
        out: Counter[tuple[str, str, int, str]] = Counter()
        for ((h, verdicts), day), n in profiles.items():
            for c, v in zip(packs[h].obligations, verdicts, strict=True):
                out[(h, c.o.id, day, v)] += n
        return out


def _judge_into(rj: Replayer, entries: Iterable[tuple[int, dict[str, Any]]], sink: _Sink,
                h: Any, result: ReplayResult, collect: bool,
                progress: Callable[[int], None] | None) -> None:
    """The replay loop: per entry, its combo, its digest line, its failing rows."""
    rows, ranges, counts = sink.rows, sink.ranges, sink.counts
    shared = rj.whole  # combos are memoized, so few: count them, expand at the end
    done = 0
    for index, entry in entries:
        at_us, combo = rj.combo(entry, index)
        rid = str(entry.get("id", ""))
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
        if shared:
            counts[(combo, at_us // _DAY_US)] += 1
        else:
            sink.count_now(combo, at_us // _DAY_US)
        for head, tail, fill in combo.fails:
            if fill:  # the reason names the record's system, model or provider
                tail = (*tail[:-1], fill_record(tail[-1], entry))
            rows += (index, *head, rid, *tail)
        if collect:
            for o in combo.outcomes:
                result.collected.extend(o.findings(index, rid, entry))
        h.update(digest_line(index, rid, combo))
        result.records += 1
        if len(rows) >= _FLUSH_VALUES:
            sink.flush()
        done += 1
        if progress is not None and done == 1024:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)


def replay(
    ledger: Ledger,
    pack_versions: Sequence[Pack],
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    progress: Callable[[int], None] | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    pin: bool = False,
    save: bool = True,
    collect: bool = False,
    memo: bool = True,
    now: datetime | None = None,
) -> ReplayResult:
    """Re-judge the ledger's stored entries (``since`` <= ts < ``until``) under
    ``pack_versions``: each record under the version of each instrument in force at its
    time (or every pack, with ``pin``). Unless ``save=False``, failing findings replace
    those the packs had on the judged entries, and the run and its tallies are stored.

    The digest is SHA-256 over :func:`digest_line` of every judged entry, in index order.
    ``memo=False`` judges every record afresh (same results, slower; for testing).
    ``now`` is when the run is stored as made (default: the clock; a scenario passes its
    own)."""
    t0 = time.perf_counter()
    started = now or datetime.now(UTC)
    packs = _dedupe(pack_versions)
    rj = Replayer(packs, systems, pin, memo=memo)
    fs = FindingStore(ledger.log.store) if save else None
    if fs is not None:
        for cp in packs:
            fs.save_pack(cp.pack)
    result = ReplayResult([f"{cp.pack.ref} {cp.pack.hash}" for cp in packs],
                          run_id=uuid.uuid4().hex)
    sink = _Sink(fs, [cp.pack.hash for cp in packs])
    h = hashlib.sha256()
    try:
        _judge_into(rj, _entries(ledger, since, until), sink, h, result, collect, progress)
        sink.flush()
    except BaseException:
        sink.close(quiet=True)  # the judging error is the one to report
        raise
    sink.close()
    tally = sink.tally()
    for (_, _, _, v), n in tally.items():
        result.verdicts[v] += n
    result.findings = sum(result.verdicts.values())
    result.digest = h.hexdigest()
    result.stored = sink.stored
    result.seconds = time.perf_counter() - t0
    if fs is not None:
        fs._save_run(RunInfo(
            result.run_id, started,
            [{"id": cp.pack.id, "version": cp.pack.version, "hash": cp.pack.hash}
             for cp in packs],
            _window(since), _window(until), result.records, result.digest,
            dict(sorted(result.verdicts.items())), result.seconds),
            [TallyRow(result.run_id, ph, o, _day(d * _DAY_US), v, n)
             for (ph, o, d, v), n in sorted(tally.items())])
    return result


# -- impact --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    index: int
    record_id: str
    obligation: str
    before: str  # verdict under the old pack (not_applicable if it lacks the obligation)
    after: str
    citation_before: str | None
    citation_after: str | None
    reason_after: str


@dataclass
class ImpactReport:
    from_pack: str  # "id@version"
    from_hash: str
    to_pack: str
    to_hash: str
    records: int = 0  # records judged
    changes: list[Change] = field(default_factory=list)
    obligations_added: list[str] = field(default_factory=list)
    obligations_removed: list[str] = field(default_factory=list)
    obligations_changed: list[str] = field(default_factory=list)  # text, dates, check, ...

    @property
    def records_changed(self) -> list[int]:
        return sorted({c.index for c in self.changes})

    @property
    def by_obligation(self) -> dict[str, list[Change]]:
        out: dict[str, list[Change]] = {}
        for c in self.changes:
            out.setdefault(c.obligation, []).append(c)
        return out

    def summary(self) -> dict[str, Counter[tuple[str, str]]]:
        """obligation -> Counter of (before, after) transitions."""
        return {k: Counter((c.before, c.after) for c in v) for k, v in
                self.by_obligation.items()}


def _obligation_data(pack: Pack) -> dict[str, bytes]:
    return {str(o["id"]): canonical(o) for o in pack.data["obligations"]}


def impact(
    ledger: Ledger,
    from_pack: Pack,
    to_pack: Pack,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
) -> ImpactReport:
    """Which records' verdicts change if ``to_pack`` governs instead of ``from_pack``.

    Both are pinned (applied whatever their own version dates); obligation dates and
    transitions still count. An obligation one pack lacks counts as not_applicable."""
    a = Replayer(_dedupe([from_pack]), systems, True)
    b = Replayer(_dedupe([to_pack]), systems, True)
    rep = ImpactReport(from_pack.ref, from_pack.hash, to_pack.ref, to_pack.hash)
    da, db = _obligation_data(from_pack), _obligation_data(to_pack)
    rep.obligations_added = [k for k in db if k not in da]
    rep.obligations_removed = [k for k in da if k not in db]
    rep.obligations_changed = [k for k in db if k in da and da[k] != db[k]]
    diffs: dict[tuple[_Combo, _Combo], list[tuple[Any, ...]]] = {}
    for index, entry in _entries(ledger, since, until):
        rep.records += 1
        pair = (a.combo(entry, index)[1], b.combo(entry, index)[1])
        diff = diffs.get(pair)
        if diff is None:
            oa, ob = pair[0].outcomes, pair[1].outcomes
            diff = diffs[pair] = _diff(oa[0] if oa else None, ob[0] if ob else None)
        if diff:
            rid = str(entry.get("id", ""))
            rep.changes.extend(Change(index, rid, oid, before, after, cit_b, cit_a,
                                      fill_record(why, entry))
                               for oid, before, after, cit_b, cit_a, why in diff)
    return rep


def _diff(before: _Outcome | None, after: _Outcome | None) -> list[tuple[Any, ...]]:
    """(obligation, before, after, citation before, citation after, reason after) for
    each obligation whose verdict differs; an obligation a pack lacks is not_applicable."""
    def table(o: _Outcome | None) -> dict[str, tuple[str, str, str]]:
        if o is None:
            return {}
        return {c.o.id: (v, r, c.citation)
                for c, (v, r) in zip(o.cp.obligations, o.verdicts, strict=True)}

    tb, ta = table(before), table(after)
    out = []
    for oid in [*tb, *(k for k in ta if k not in tb)]:
        fb, fa = tb.get(oid), ta.get(oid)
        vb = fb[0] if fb else NOT_APPLICABLE
        va = fa[0] if fa else NOT_APPLICABLE
        if vb != va:
            out.append((oid, vb, va, fb[2] if fb else None, fa[2] if fa else None,
                        fa[1] if fa else "the new pack lacks this obligation"))
    return out
