"""The policy tables beside the ledger: packs judged under, failing findings, replay runs
and their verdict tallies (:class:`FindingStore`, component ``policy`` of the migrations
registry in ledger/migrations.py).

Per (record x obligation) rows would be 10^6 x ~80 for a modest history, so only failing
findings are kept one per row, keyed by (entry, pack hash, obligation) so that a replay
is idempotent; every verdict is counted per obligation and UTC day (``policy_tally``),
per replay (``policy_runs``). Reports chart the tallies and cite the rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.policy.judging import FAIL, Finding
from kansa.policy.pack import Pack

if TYPE_CHECKING:
    from kansa.ledger.storage import Store


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
# the columns of policy_findings, in the order rows are written (Finding.db_row)
COLUMNS = ("idx", "pack_hash", "obligation", "record_id", "pack", "version", "verdict",
           "citation", "legal_force", "reason")
_ROWS_PER_INSERT = 2000  # 20,000 parameters: under SQLite's 32,766 and PostgreSQL's 65,535
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order


@lru_cache(maxsize=16)
def _insert_sql(table: str, cols: tuple[str, ...], n: int, conflict: str) -> str:
    row = "(" + ", ".join("?" * len(cols)) + ")"
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([row] * n)}"
            f" {conflict}")


_FINDING_UPSERT = ("ON CONFLICT (idx, pack_hash, obligation) DO UPDATE SET "
                   + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[3:]))


_PG_UPSERT = (
    f"INSERT INTO policy_findings ({', '.join(COLUMNS)}) SELECT * FROM unnest(?::bigint[], "
    + ", ".join(["?::text[]"] * (len(COLUMNS) - 1)) + f") {_FINDING_UPSERT}")


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
        return self.write_rows([v for f in findings if f.verdict == FAIL
                                 and f.index is not None for v in f.db_row()], [], ())

    def write_rows(self, flat: list[Any], clear: Sequence[tuple[int, int]],
                    pack_hashes: Sequence[str]) -> int:
        """In one transaction: make the findings of ``pack_hashes`` on entries in the
        index ranges ``clear`` (inclusive; what a replay re-judged) exactly the rows in
        ``flat`` (their values one after another, each row in COLUMNS order). Returns the
        number of rows given."""
        width = len(COLUMNS)
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
                self.store.execute(_insert_sql("policy_findings", COLUMNS, len(chunk) // width,
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
        width = len(COLUMNS)
        rows = [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]
        keep = {(*r[:3], r[9]) for r in rows}
        stale = [r[:3] for r in stored if r not in keep]
        for i in range(0, len(stale), _ROWS_PER_INSERT):
            chunk = stale[i : i + _ROWS_PER_INSERT]
            self.store.execute(
                "DELETE FROM policy_findings WHERE (idx, pack_hash, obligation) IN (VALUES "
                + ", ".join(["(?, ?, ?)"] * len(chunk)) + ")", [v for k in chunk for v in k])
        return [v for r in rows if (*r[:3], r[9]) not in stored for v in r]

    def save_run(self, run: RunInfo, tally: Sequence[TallyRow]) -> None:
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
            per = _ROWS_PER_INSERT * len(COLUMNS) // len(cols)
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
        sql = f"SELECT {', '.join(COLUMNS)} FROM policy_findings"
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

    def failing_by_system(self, hashes: Sequence[str], *, since_us: int | None = None,
                          until_us: int | None = None,
                          ) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """Failing records per (pack hash, obligation) and system, from the stored failing
        findings of records whose time is in [since_us, until_us); each list is sorted by
        count, then system. Two passes: the store reads the ``system`` of every entry with
        a failing finding once (JSON is parsed per entry, not per finding), then the
        findings are counted here. The cost grows with failing findings, not records."""
        if not hashes:
            return {}
        store = self.store
        system = ("convert_from(e.data, 'UTF8')::json ->> 'system'"
                  if store.dialect == "postgresql"
                  else "json_extract(CAST(e.data AS TEXT), '$.system')")
        marks = ", ".join("?" * len(hashes))
        failing = f"verdict = ? AND pack_hash IN ({marks})"
        sql = (f"SELECT e.idx, {system} FROM entries e WHERE e.idx IN"
               f" (SELECT idx FROM policy_findings WHERE {failing})")
        params: list[Any] = [FAIL, *hashes]
        if since_us is not None:
            sql += " AND e.ts >= ?"
            params.append(since_us)
        if until_us is not None:
            sql += " AND e.ts < ?"
            params.append(until_us)
        system_of = {int(i): str(name or "") for i, name in store.query(sql, params)}
        counts: Counter[tuple[str, str, str]] = Counter()
        for i, h, oid in store.query(f"SELECT idx, pack_hash, obligation FROM policy_findings"
                                     f" WHERE {failing}", [FAIL, *hashes]):
            name = system_of.get(int(i))
            if name is not None:  # None: outside the period
                counts[(str(h), str(oid), name)] += 1
        out: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for (h, oid, name), n in counts.items():
            out.setdefault((h, oid), []).append((name, n))
        for v in out.values():
            v.sort(key=lambda x: (-x[1], x[0]))
        return out

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
