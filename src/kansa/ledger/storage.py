"""Ledger storage: SQLite (WAL, the zero-set-up default) and PostgreSQL (psycopg 3).

One store holds one log: its entries, its tiles, the checkpoints it signed, witness
cosignatures, and two opaque facilities the layers above use without the ledger knowing
what they mean: *attachments* (a blob beside an entry, grouped for erasure) and *sealed
keys* (small secrets by reference, destroyable). Schema changes are numbered migrations.

Appends go through :meth:`Store.writer`, which holds the log's exclusive lock for the
whole transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``), so
any number of processes may append to one log without gaps or duplicates.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kansa.errors import StorageError
from kansa.ledger.migrations import Migration, apply, register


@dataclass(frozen=True)
class EntryRow:
    index: int
    ts: int  # microseconds since the Unix epoch, as given by the appender
    group: str | None
    data: bytes
    ext_id: str | None = None  # the appender's unique id for the entry (lookups only)


@dataclass(frozen=True)
class SealedKey:
    ref: str
    group: str
    data: bytes
    gen: int | None  # generation of the key root it is sealed under; None: the master key


# (prefix, old root (gen, data) or None, new generation, the prefix's other sealed keys)
#   -> (new root data, [(ref, data re-sealed under the new root)])
Rotate = Callable[
    [str, tuple[int, bytes] | None, int, list[SealedKey]], tuple[bytes, list[tuple[str, bytes]]]
]

_ERASURES = "vault.erasures"  # meta key: the erasure generation


def _sealed(row: Sequence[Any]) -> SealedKey:
    return SealedKey(str(row[0]), str(row[1]), _blob(row[2], "sealed key"),
                     None if row[3] is None else int(row[3]))


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    created: int  # microseconds since the epoch
    note: str
    # 1 for the first checkpoint the log signed, 2 for the next, ...: a deleted row leaves
    # a gap, or disagrees with the number kept outside the store ($KANSA_HOME)
    seq: int | None = None


_SQLITE_MIGRATIONS: list[list[str]] = [
    [  # 1: the log
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE log_state (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL)",
        "INSERT INTO log_state (id, size) VALUES (1, 0)",
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, grp TEXT,"
        " ext_id TEXT, data BLOB NOT NULL)",
        "CREATE INDEX entries_ext_id ON entries (ext_id) WHERE ext_id IS NOT NULL",
        "CREATE INDEX entries_ts ON entries (ts)",
        "CREATE INDEX entries_grp ON entries (grp) WHERE grp IS NOT NULL",
        "CREATE TABLE tiles (level INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (level, idx)) WITHOUT ROWID",
        "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, created INTEGER NOT NULL,"
        " note TEXT NOT NULL)",
        "CREATE TABLE cosignatures (size INTEGER NOT NULL, witness TEXT NOT NULL,"
        " line TEXT NOT NULL, PRIMARY KEY (size, witness))",
    ],
    [  # 2: attachments and sealed keys (payload vault, erasure)
        "CREATE TABLE attachments (idx INTEGER PRIMARY KEY, grp TEXT NOT NULL, data BLOB NOT NULL)",
        "CREATE INDEX attachments_grp ON attachments (grp)",
        "CREATE TABLE sealed_keys (ref TEXT PRIMARY KEY, grp TEXT NOT NULL UNIQUE,"
        " data BLOB NOT NULL, created INTEGER NOT NULL)",
        "CREATE TABLE erased_groups (grp TEXT PRIMARY KEY, erased INTEGER NOT NULL)",
    ],
    [  # 3: record ids are unique (a store from before keeps the first of each duplicate
       # id for lookups; verification accepts a later entry without one only if an
       # earlier entry holds its id), and checkpoints are numbered in signing order
        "UPDATE entries SET ext_id = NULL WHERE ext_id IS NOT NULL AND idx >"
        " (SELECT MIN(e2.idx) FROM entries e2 WHERE e2.ext_id = entries.ext_id)",
        "DROP INDEX entries_ext_id",
        "CREATE UNIQUE INDEX entries_ext_id ON entries (ext_id) WHERE ext_id IS NOT NULL",
        "ALTER TABLE checkpoints ADD COLUMN seq INTEGER",
        "UPDATE checkpoints SET seq ="
        " (SELECT COUNT(*) FROM checkpoints c2 WHERE c2.size <= checkpoints.size)",
    ],
    [  # 4: erasure that survives old page images (see Store.erase_group)
        # one wrapping root per ref prefix; a sealed key under prefix p is wrapped under
        # root p at generation gen (NULL: a schema-2 key, wrapped under the master key)
        "CREATE TABLE key_roots (prefix TEXT PRIMARY KEY, gen INTEGER NOT NULL,"
        " data BLOB NOT NULL)",
        "ALTER TABLE sealed_keys ADD COLUMN gen INTEGER",
        # content for an erased group is never stored, whoever still holds its key: a
        # process that cached the key before the erasure cannot write under it afterwards
        "CREATE TRIGGER attachments_not_erased BEFORE INSERT ON attachments"
        " WHEN EXISTS (SELECT 1 FROM erased_groups WHERE grp = NEW.grp)"
        " BEGIN SELECT RAISE(IGNORE); END",
    ],
]

_PG_MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE log_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL)",
        "INSERT INTO log_state (id, size) VALUES (1, 0)",
        "CREATE TABLE entries (idx BIGINT PRIMARY KEY, ts BIGINT NOT NULL, grp TEXT,"
        " ext_id TEXT, data BYTEA NOT NULL)",
        "CREATE INDEX entries_ext_id ON entries (ext_id) WHERE ext_id IS NOT NULL",
        "CREATE INDEX entries_ts ON entries (ts)",
        "CREATE INDEX entries_grp ON entries (grp) WHERE grp IS NOT NULL",
        "CREATE TABLE tiles (level INTEGER NOT NULL, idx BIGINT NOT NULL, data BYTEA NOT NULL,"
        " PRIMARY KEY (level, idx))",
        "CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, created BIGINT NOT NULL,"
        " note TEXT NOT NULL)",
        "CREATE TABLE cosignatures (size BIGINT NOT NULL, witness TEXT NOT NULL,"
        " line TEXT NOT NULL, PRIMARY KEY (size, witness))",
    ],
    [
        "CREATE TABLE attachments (idx BIGINT PRIMARY KEY, grp TEXT NOT NULL, data BYTEA NOT NULL)",
        "CREATE INDEX attachments_grp ON attachments (grp)",
        "CREATE TABLE sealed_keys (ref TEXT PRIMARY KEY, grp TEXT NOT NULL UNIQUE,"
        " data BYTEA NOT NULL, created BIGINT NOT NULL)",
        "CREATE TABLE erased_groups (grp TEXT PRIMARY KEY, erased BIGINT NOT NULL)",
    ],
    [  # 3: record ids are unique (a store from before keeps the first of each duplicate
       # id for lookups; verification accepts a later entry without one only if an
       # earlier entry holds its id), and checkpoints are numbered in signing order
        "UPDATE entries SET ext_id = NULL WHERE ext_id IS NOT NULL AND idx >"
        " (SELECT MIN(e2.idx) FROM entries e2 WHERE e2.ext_id = entries.ext_id)",
        "DROP INDEX entries_ext_id",
        "CREATE UNIQUE INDEX entries_ext_id ON entries (ext_id) WHERE ext_id IS NOT NULL",
        "ALTER TABLE checkpoints ADD COLUMN seq BIGINT",
        "UPDATE checkpoints SET seq ="
        " (SELECT COUNT(*) FROM checkpoints c2 WHERE c2.size <= checkpoints.size)",
    ],
    [  # 4: erasure that survives old page images
        "CREATE TABLE key_roots (prefix TEXT PRIMARY KEY, gen BIGINT NOT NULL,"
        " data BYTEA NOT NULL)",
        "ALTER TABLE sealed_keys ADD COLUMN gen BIGINT",
        # erased_groups is resolved through the session's search_path, like every table
        "CREATE OR REPLACE FUNCTION kansa_attachment_not_erased() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN"
        " IF EXISTS (SELECT 1 FROM erased_groups WHERE grp = NEW.grp) THEN RETURN NULL;"
        " END IF; RETURN NEW; END $$",
        "CREATE TRIGGER attachments_not_erased BEFORE INSERT ON attachments"
        " FOR EACH ROW EXECUTE FUNCTION kansa_attachment_not_erased()",
    ],
]

SCHEMA_VERSION = len(_SQLITE_MIGRATIONS)

# the ledger's steps in the registry of every table's migrations (migrations.py): the
# numbers are the schema versions user_version / kansa_schema keep
LEDGER_MIGRATIONS = register("ledger", [
    Migration(n + 1, name, tuple(lite), tuple(pg)) for n, (name, lite, pg) in enumerate(zip(
        ("the log", "attachments and sealed keys",
         "unique record ids, numbered checkpoints", "erasure key roots"),
        _SQLITE_MIGRATIONS, _PG_MIGRATIONS, strict=True))])


def _blob(value: object, what: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise StorageError(f"{what} holds {type(value).__name__}, not bytes: the store is damaged")


_CP_COLS = "size, created, note, seq"


def _cp_row(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), int(row[1]), row[2],
                            None if row[3] is None else int(row[3]))


def now_us() -> int:
    return time.time_ns() // 1000


class WriteTxn(ABC):
    """What the sequencer may do while it holds the log's exclusive lock."""

    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def read_tile(self, level: int, index: int) -> bytes | None: ...

    @abstractmethod
    def insert_entries(
        self, first: int, rows: Sequence[tuple[int, str | None, str | None, bytes]]
    ) -> None:
        """rows are (ts, group, ext_id, data), indexed first, first + 1, ..."""

    @abstractmethod
    def insert_attachments(self, rows: Sequence[tuple[int, str, bytes]]) -> None: ...

    @abstractmethod
    def put_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None: ...

    @abstractmethod
    def set_size(self, size: int) -> None: ...

    @abstractmethod
    def last_checkpoint(self) -> StoredCheckpoint | None: ...

    @abstractmethod
    def insert_checkpoint(self, cp: StoredCheckpoint) -> int:
        """Store a newly signed checkpoint; returns its number in signing order (seq)."""

    @abstractmethod
    def existing_ext_ids(self, ext_ids: Sequence[str]) -> set[str]:
        """Which of ``ext_ids`` some entry already holds (under the log's lock)."""


class Store(ABC):
    """A log's durable state. Safe to share between threads; each thread gets a connection."""

    url: str
    scrub_timeout: float = 60.0  # seconds an erasure's scrub waits for older readers

    @abstractmethod
    def writer(self) -> contextlib.AbstractContextManager[WriteTxn]: ...

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- SQL for layers above that keep their own tables beside the log -----------------
    # (qmark placeholders on both backends; tables they create must not start with "log")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._execute(sql, params)

    @property
    def dialect(self) -> str:
        return "postgresql" if isinstance(self, PostgresStore) else "sqlite"

    # -- reads ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def claim_meta(self, key: str, value: str) -> str:
        """Set ``key`` unless it is set; return the value that won (race-free)."""
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, value),
        )
        got = self.get_meta(key)
        if got is None:
            raise StorageError(f"meta {key!r} vanished right after it was set")
        return got

    def size(self) -> int:
        return int(self._query("SELECT size FROM log_state WHERE id = 1")[0][0])

    def read_tile(self, level: int, index: int) -> bytes | None:
        rows = self._query("SELECT data FROM tiles WHERE level = ? AND idx = ?", (level, index))
        return _blob(rows[0][0], f"tile ({level}, {index})") if rows else None

    def entries(self, start: int, end: int) -> list[EntryRow]:
        rows = self._query(
            "SELECT idx, ts, grp, data, ext_id FROM entries WHERE idx >= ? AND idx < ?"
            " ORDER BY idx",
            (start, end),
        )
        return [EntryRow(int(i), int(t), g, _blob(d, f"entry {i}"), x) for i, t, g, d, x in rows]

    def index_of(self, ext_id: str) -> int | None:
        rows = self._query(
            "SELECT idx FROM entries WHERE ext_id = ? ORDER BY idx LIMIT 1", (ext_id,)
        )
        return int(rows[0][0]) if rows else None

    def existing_ext_ids(self, ext_ids: Sequence[str]) -> set[str]:
        """Which of ``ext_ids`` some entry already holds."""
        found: set[str] = set()
        ids = list(dict.fromkeys(ext_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(f"SELECT ext_id FROM entries WHERE ext_id IN ({marks})", chunk)
            found.update(str(r[0]) for r in rows)
        return found

    def attachments_between(self, start: int, end: int) -> dict[int, tuple[str, bytes]]:
        """{index: (group, data)} of the attachments of entries ``start`` .. ``end - 1``."""
        rows = self._query(
            "SELECT idx, grp, data FROM attachments WHERE idx >= ? AND idx < ?", (start, end)
        )
        return {int(i): (str(g), _blob(d, f"attachment {i}")) for i, g, d in rows}

    def missing_attachments(self, indices: Sequence[int]) -> set[int]:
        """Which of the entries ``indices`` have no attachment row (content deleted or
        erased: the caller tells the two apart, e.g. by the erased groups)."""
        have: set[int] = set()
        idx = sorted(set(indices))
        for i in range(0, len(idx), 500):
            chunk = idx[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(f"SELECT idx FROM attachments WHERE idx IN ({marks})", chunk)
            have.update(int(r[0]) for r in rows)
        return set(idx) - have

    def entry(self, index: int) -> EntryRow | None:
        rows = self.entries(index, index + 1)
        return rows[0] if rows else None

    def iter_entries(
        self, start: int = 0, end: int | None = None, *, batch: int = 4096
    ) -> Iterator[EntryRow]:
        stop = self.size() if end is None else end
        pos = start
        while pos < stop:
            rows = self.entries(pos, min(stop, pos + batch))
            for row in rows:
                if row.index != pos:
                    break
                yield row
                pos += 1
            else:
                if rows:
                    continue
            raise StorageError(f"entry {pos} is missing from the store (the log is damaged)")

    def find_entries(
        self,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        group: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[EntryRow]:
        where: list[str] = []
        params: list[object] = []
        if since_us is not None:
            where.append("ts >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("ts < ?")
            params.append(until_us)
        if group is not None:
            where.append("grp = ?")
            params.append(group)
        sql = "SELECT idx, ts, grp, data, ext_id FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY idx"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [
            EntryRow(int(i), int(t), g, bytes(d), x) for i, t, g, d, x in self._query(sql, params)
        ]

    def index_range(self, since_us: int, until_us: int) -> tuple[int, int] | None:
        """The lowest and highest entry index with ``since_us <= ts < until_us`` (None:
        no entry): read from the time index alone, so it costs the window's size, not
        the log's, and is exact whatever order times were appended in."""
        rows = self._query("SELECT MIN(idx), MAX(idx) FROM entries WHERE ts >= ? AND ts < ?",
                           (since_us, until_us))
        if not rows or rows[0][0] is None:
            return None
        return int(rows[0][0]), int(rows[0][1])

    def entries_before(
        self,
        before: int,
        limit: int,
        *,
        floor: int = 0,
        since_us: int | None = None,
        until_us: int | None = None,
        group: str | None = None,
        match: Sequence[Sequence[bytes]] = (),
    ) -> list[EntryRow]:
        """Up to ``limit`` entries with ``floor <= index < before``, newest first: one page
        of a keyset-paginated listing (the primary key bounds the read; no OFFSET, no
        COUNT). ``match``: groups of byte strings; an entry must contain one string of
        every group (a pre-filter the store applies, as the follower's ``match``)."""
        where = ["idx < ?", "idx >= ?"]
        params: list[object] = [before, floor]
        if since_us is not None:
            where.append("ts >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("ts < ?")
            params.append(until_us)
        if group is not None:
            where.append("grp = ?")
            params.append(group)
        one = "position(? in data) > 0" if self.dialect == "postgresql" else "instr(data, ?) > 0"
        for alternatives in match:
            where.append("(" + " OR ".join([one] * len(alternatives)) + ")")
            params += list(alternatives)
        sql = ("SELECT idx, ts, grp, data, ext_id FROM entries WHERE " + " AND ".join(where)
               + f" ORDER BY idx DESC LIMIT {int(limit)}")
        return [EntryRow(int(i), int(t), g, _blob(d, f"entry {i}"), x)
                for i, t, g, d, x in self._query(sql, params)]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        rows = self._query(f"SELECT {_CP_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1")
        return _cp_row(rows[0]) if rows else None

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        rows = self._query(f"SELECT {_CP_COLS} FROM checkpoints WHERE size = ?", (size,))
        return _cp_row(rows[0]) if rows else None

    def checkpoint_covering(self, index: int) -> StoredCheckpoint | None:
        """The first signed checkpoint whose tree includes entry ``index``."""
        rows = self._query(
            f"SELECT {_CP_COLS} FROM checkpoints WHERE size > ? ORDER BY size LIMIT 1",
            (index,),
        )
        return _cp_row(rows[0]) if rows else None

    def count_checkpoints(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM checkpoints")[0][0])

    def all_checkpoints(self) -> list[StoredCheckpoint]:
        rows = self._query(f"SELECT {_CP_COLS} FROM checkpoints ORDER BY size")
        return [_cp_row(r) for r in rows]

    def cosigned_sizes(self) -> list[int]:
        """Every tree size some stored witness cosignature is for, ascending."""
        rows = self._query("SELECT DISTINCT size FROM cosignatures ORDER BY size")
        return [int(r[0]) for r in rows]

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        self._execute(
            "INSERT INTO cosignatures (size, witness, line) VALUES (?, ?, ?) "
            "ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line",
            (size, witness, line),
        )

    def cosignatures(self, size: int) -> list[str]:
        rows = self._query(
            "SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (size,)
        )
        return [r[0] for r in rows]

    # -- attachments and sealed keys --------------------------------------------------

    def attachment(self, index: int) -> tuple[str, bytes] | None:
        rows = self._query("SELECT grp, data FROM attachments WHERE idx = ?", (index,))
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def sealed_key(self, ref: str) -> SealedKey | None:
        """The sealed key stored under ``ref``."""
        rows = self._query("SELECT ref, grp, data, gen FROM sealed_keys WHERE ref = ?", (ref,))
        return _sealed(rows[0]) if rows else None

    def sealed_key_of_group(self, group: str) -> SealedKey | None:
        """The sealed key belonging to erasure group ``group``."""
        rows = self._query("SELECT ref, grp, data, gen FROM sealed_keys WHERE grp = ?", (group,))
        return _sealed(rows[0]) if rows else None

    def key_root(self, prefix: str) -> tuple[int, bytes] | None:
        """(generation, data) of the wrapping root of sealed keys whose ref starts with
        ``prefix``."""
        rows = self._query("SELECT gen, data FROM key_roots WHERE prefix = ?", (prefix,))
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def put_key_root_if_absent(self, prefix: str, data: bytes) -> tuple[int, bytes]:
        """Create root ``prefix`` at generation 1 unless it exists; return the winner's."""
        self._execute(
            "INSERT INTO key_roots (prefix, gen, data) VALUES (?, 1, ?) "
            "ON CONFLICT (prefix) DO NOTHING",
            (prefix, data),
        )
        got = self.key_root(prefix)
        if got is None:
            raise StorageError(f"key root {prefix} vanished right after it was stored")
        return got

    _PUT_SEALED = (
        "INSERT INTO sealed_keys (ref, grp, data, created, gen) SELECT ?, ?, ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM key_roots WHERE prefix = ? AND gen = ?{lock}) "
        "ON CONFLICT (ref) DO NOTHING"
    )

    def put_sealed_key_if_absent(
        self, ref: str, group: str, data: bytes, root: tuple[str, int]
    ) -> SealedKey | None:
        """Store a key sealed under root ``root`` = (prefix, generation) unless another
        writer stored one under ``ref`` first; return the stored key. None: that root
        generation is gone (an erasure rotated it), nothing was stored; seal again under
        the current one. The check and the insert are one statement (PostgreSQL: the
        root row is share-locked, so it waits for a rotation in progress), so no key is
        ever stored under a root that an erasure has already destroyed."""
        lock = " FOR SHARE" if self.dialect == "postgresql" else ""
        self._execute(self._PUT_SEALED.format(lock=lock),
                      (ref, group, data, now_us(), root[1], root[0], root[1]))
        return self.sealed_key(ref)

    @abstractmethod
    def erase_group(self, ref: str | None, group: str | None, prefix: str | None,
                    rotate: Rotate) -> tuple[int, bool]:
        """Erase, in one transaction that excludes appends: delete sealed key ``ref``,
        rotate the root of its prefix (``rotate`` re-seals the prefix's other keys under
        a new root generation: the old root, under which every old copy of the erased key
        was sealed, is gone), delete every attachment of ``group`` and of any group erased
        before (content that arrived late), and mark ``group`` erased. ``ref``/``group``
        None: only the late-content sweep. Then :meth:`scrub`. Returns the number of
        attachments destroyed and whether the scrub completed."""

    @abstractmethod
    def scrub(self) -> bool:
        """Make old page images of deleted rows unreadable from the store's files; False
        if that could not be completed now (SQLite: a reader held the WAL)."""

    def erasure_generation(self) -> int:
        """How many erasures this store has seen: processes that cache keys compare it."""
        got = self.get_meta(_ERASURES)
        return int(got) if got else 0

    def count_erased_groups(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM erased_groups")[0][0])

    def group_erased_at(self, group: str) -> int | None:
        rows = self._query("SELECT erased FROM erased_groups WHERE grp = ?", (group,))
        return int(rows[0][0]) if rows else None


def _rewrite_table(ex: Callable[[str, Sequence[Any]], Any], table: str, cols: str) -> None:
    rows = ex(f"SELECT {cols} FROM {table}", ()).fetchall()
    ex(f"DELETE FROM {table}", ())
    width = cols.count(",") + 1
    step = _ROWS_PER_INSERT
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        ex(_values_sql(f"INSERT INTO {table} ({cols}) VALUES ", width, len(chunk)),
           [v for r in chunk for v in r])


def _erase_txn(
    ex: Callable[[str, Sequence[Any]], Any],
    ref: str | None,
    group: str | None,
    prefix: str | None,
    rotate: Rotate,
    *,
    lock: str,
    rewrite: bool,
) -> int:
    """The body of :meth:`Store.erase_group`, inside the caller's transaction; ``ex`` runs
    one qmark statement. ``lock`` is appended to reads that must lock their rows."""
    n = 0
    if ref is not None and prefix is not None:
        row = ex("SELECT gen, data FROM key_roots WHERE prefix = ?" + lock, (prefix,)).fetchone()
        old = (int(row[0]), _blob(row[1], "key root")) if row else None
        ex("DELETE FROM sealed_keys WHERE ref = ?", (ref,))
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        keys = [_sealed(r) for r in ex(
            "SELECT ref, grp, data, gen FROM sealed_keys WHERE ref >= ? AND ref < ?",
            (prefix, hi)).fetchall() if str(r[0]).startswith(prefix)]
        gen = old[0] + 1 if old else 1
        root, resealed = rotate(prefix, old, gen, keys)
        for r, d in resealed:
            ex("UPDATE sealed_keys SET data = ?, gen = ? WHERE ref = ?", (d, gen, r))
        ex("INSERT INTO key_roots (prefix, gen, data) VALUES (?, ?, ?) ON CONFLICT (prefix)"
           " DO UPDATE SET gen = excluded.gen, data = excluded.data", (prefix, gen, root))
        if rewrite:
            # SQLite: page splits (by any connection) leave stale copies of moved rows in
            # the unused space of the page they left, which no DELETE reaches. With
            # secure_delete on, deleting every row zeroes the pages, and the rows are
            # written afresh: no old root, nor any sealed copy of the erased key, is left
            # in the database file (the WAL goes at the scrub). Cost: one rewrite of the
            # key tables under the write lock: an erase took ~0.3 s with 10,000 subjects.
            _rewrite_table(ex, "key_roots", "prefix, gen, data")
            _rewrite_table(ex, "sealed_keys", "ref, grp, data, created, gen")
    if group is not None:
        n += int(ex("DELETE FROM attachments WHERE grp = ?", (group,)).rowcount)
        ex("INSERT INTO erased_groups (grp, erased) VALUES (?, ?) ON CONFLICT DO NOTHING",
           (group, now_us()))
    # content of any erased group that arrived after its erasure (a store written before
    # the attachments_not_erased trigger existed): nothing of an erased group may stay
    n += int(ex("DELETE FROM attachments WHERE grp IN (SELECT grp FROM erased_groups)",
                ()).rowcount)
    ex("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE"
       " SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)", (_ERASURES,))
    return n


# ------------------------------------------------------------------------------------
# SQLite


class _SqlTxn(WriteTxn):
    """The statements both backends share; ``_sql`` adapts the placeholders."""

    c: Any

    def _sql(self, sql: str) -> str:
        return sql

    def size(self) -> int:
        return int(self.c.execute("SELECT size FROM log_state WHERE id = 1").fetchone()[0])

    def read_tile(self, level: int, index: int) -> bytes | None:
        row = self.c.execute(
            self._sql("SELECT data FROM tiles WHERE level = ? AND idx = ?"), (level, index)
        ).fetchone()
        return _blob(row[0], f"tile ({level}, {index})") if row else None

    def set_size(self, size: int) -> None:
        self.c.execute(self._sql("UPDATE log_state SET size = ? WHERE id = 1"), (size,))

    def last_checkpoint(self) -> StoredCheckpoint | None:
        row = self.c.execute(
            f"SELECT {_CP_COLS} FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return _cp_row(row) if row else None

    def existing_ext_ids(self, ext_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(ext_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self.c.execute(
                self._sql(f"SELECT ext_id FROM entries WHERE ext_id IN ({marks})"), chunk
            ).fetchall()
            found.update(str(r[0]) for r in rows)
        return found

    def insert_checkpoint(self, cp: StoredCheckpoint) -> int:
        row = self.c.execute("SELECT COALESCE(MAX(seq), 0) FROM checkpoints").fetchone()
        seq = int(row[0]) + 1
        self.c.execute(
            self._sql("INSERT INTO checkpoints (size, created, note, seq) VALUES (?, ?, ?, ?)"),
            (cp.size, cp.created, cp.note, seq),
        )
        return seq


_ROWS_PER_INSERT = 190  # x 5 columns stays under SQLite's oldest 999-variable limit


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, width: int, n: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([row] * n)


def _insert_rows(c: sqlite3.Connection, head: str, width: int, flat: list[Any]) -> None:
    """Multi-row INSERTs, not executemany: executemany steps the statement once per row and
    re-takes the GIL for each, which let an asyncio gateway fall 20,000+ records behind;
    one statement per chunk measured backlog 20,979 -> 0 (bench/gateway.py --async-records)."""
    step = _ROWS_PER_INSERT * width
    for i in range(0, len(flat), step):
        chunk = flat[i : i + step]
        c.execute(_values_sql(head, width, len(chunk) // width), chunk)


class _SQLiteTxn(_SqlTxn):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn

    def insert_entries(
        self, first: int, rows: Sequence[tuple[int, str | None, str | None, bytes]]
    ) -> None:
        flat: list[Any] = []
        for i, (ts, g, x, d) in enumerate(rows):
            flat += (first + i, ts, g, x, d)
        _insert_rows(self.c, "INSERT INTO entries (idx, ts, grp, ext_id, data) VALUES ", 5, flat)

    def insert_attachments(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        flat: list[Any] = []
        for row in rows:
            flat += row
        _insert_rows(self.c, "INSERT INTO attachments (idx, grp, data) VALUES ", 3, flat)

    def put_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None:
        self.c.executemany(
            "INSERT OR REPLACE INTO tiles (level, idx, data) VALUES (?, ?, ?)",
            [(lv, ix, d) for (lv, ix), d in tiles.items()],
        )


class SQLiteStore(Store):
    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.url = f"sqlite:///{os.path.abspath(path)}" if path != ":memory:" else "sqlite://"
        self._sync = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StorageError(f"directory {parent} does not exist (run 'kansa init' first?)")
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        c: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if c is None:
            try:
                c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                c.execute("PRAGMA busy_timeout = 60000")
                c.execute("PRAGMA journal_mode = WAL")
                # FULL: the WAL is fsynced at every commit, so an acknowledged append
                # survives power loss, not only a process crash (NORMAL would not).
                c.execute(f"PRAGMA synchronous = {self._sync}")
            except sqlite3.DatabaseError as e:
                raise StorageError(f"cannot open SQLite store {self.path}: {e}") from None
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def _migrate(self) -> None:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                version = int(c.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise StorageError(
                        f"{self.path} has schema version {version}; this kansa knows up to "
                        f"{SCHEMA_VERSION}: upgrade kansa"
                    )
                apply(c.execute, "sqlite", "ledger", baseline=version, now=now_us())
                if version < SCHEMA_VERSION:
                    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise StorageError(f"{self.path} is not a usable kansa SQLite store: {e}") from None

    @contextlib.contextmanager
    def writer(self) -> Iterator[WriteTxn]:
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")  # takes SQLite's write lock: one sequencer at a time
        except sqlite3.Error as e:
            raise StorageError(f"SQLite store {self.path}: cannot start a write: {e}") from None
        try:
            yield _SQLiteTxn(c)
            c.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StorageError(f"SQLite store {self.path}: write failed: {e}") from None
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise StorageError(f"SQLite store {self.path}: {e}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._conn().execute(sql, params).rowcount
        except sqlite3.DatabaseError as e:
            raise StorageError(f"SQLite store {self.path}: {e}") from None

    def erase_group(self, ref: str | None, group: str | None, prefix: str | None,
                    rotate: Rotate) -> tuple[int, bool]:
        c = self._conn()
        # secure_delete on this connection only: deleted rows, and pages they free, are
        # zeroed before they are written. Appends leave it off: every append frees the
        # overflow pages of the tile it regrows, and zeroing them would cost extra writes
        c.execute("PRAGMA secure_delete = ON")
        try:
            c.execute("BEGIN IMMEDIATE")  # the write lock: no append interleaves
            try:
                n = _erase_txn(lambda q, p: c.execute(q, p), ref, group, prefix, rotate,
                               lock="", rewrite=True)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise StorageError(f"SQLite store {self.path}: erasure failed: {e}") from None
        finally:
            c.execute("PRAGMA secure_delete = OFF")
        return int(n), self.scrub()

    def scrub(self) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes.

        Zeroed pages reach the database file only through a checkpoint, and older images
        of those pages stay in WAL frames until the WAL is reset. TRUNCATE waits
        (``scrub_timeout``) for every reader to leave the WAL and blocks new writers meanwhile; an
        idle connection, such as a gateway's between requests, does not hold it. A read
        transaction open for longer than the timeout does: then this returns False and
        the old frames stay until the next successful scrub (the next erase retries)."""
        c = self._conn()
        try:
            c.execute(f"PRAGMA busy_timeout = {int(self.scrub_timeout * 1000)}")
            try:
                busy, _log, _done = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                c.execute("PRAGMA busy_timeout = 60000")
        except sqlite3.DatabaseError as e:
            raise StorageError(f"SQLite store {self.path}: checkpoint failed: {e}") from None
        return int(busy) == 0

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                with contextlib.suppress(Exception):
                    c.close()
            self._all.clear()
        self._local = threading.local()


# ------------------------------------------------------------------------------------
# PostgreSQL


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgTxn(_SqlTxn):
    def __init__(self, conn: Any) -> None:
        self.c = conn

    def size(self) -> int:
        # FOR UPDATE: hold the log_state row lock, which the one-statement append path
        # (PostgresStore.append_batch) takes too, so the two paths exclude each other
        row = self.c.execute("SELECT size FROM log_state WHERE id = 1 FOR UPDATE").fetchone()
        return int(row[0])

    def _sql(self, sql: str) -> str:
        return _pg(sql)

    def insert_entries(
        self, first: int, rows: Sequence[tuple[int, str | None, str | None, bytes]]
    ) -> None:
        with self.c.cursor() as cur, cur.copy(
            "COPY entries (idx, ts, grp, ext_id, data) FROM STDIN"
        ) as copy:
            for i, (ts, g, x, d) in enumerate(rows):
                copy.write_row((first + i, ts, g, x, d))

    def insert_attachments(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        if rows:
            with self.c.cursor() as cur, cur.copy(
                "COPY attachments (idx, grp, data) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row(r)

    def put_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None:
        with self.c.cursor() as cur:
            cur.executemany(
                "INSERT INTO tiles (level, idx, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data",
                [(lv, ix, d) for (lv, ix), d in tiles.items()],
            )


_PG_APPEND = """
WITH u AS (UPDATE log_state SET size = %(new)s WHERE id = 1 AND size = %(old)s RETURNING size),
e AS (INSERT INTO entries (idx, ts, grp, ext_id, data)
      SELECT * FROM unnest(%(idx)b::bigint[], %(ts)b::bigint[], %(grp)s::text[],
                           %(ext)s::text[], %(data)b::bytea[])
      WHERE EXISTS (SELECT 1 FROM u) RETURNING 1),
a AS (INSERT INTO attachments (idx, grp, data)
      SELECT * FROM unnest(%(ai)b::bigint[], %(ag)s::text[], %(ad)b::bytea[])
      WHERE EXISTS (SELECT 1 FROM u) RETURNING 1),
t AS (INSERT INTO tiles (level, idx, data)
      SELECT * FROM unnest(%(tl)b::int[], %(ti)b::bigint[], %(td)b::bytea[])
      WHERE EXISTS (SELECT 1 FROM u)
      ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data RETURNING 1)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM e), (SELECT count(*) FROM a),
       (SELECT count(*) FROM t)
"""

_PG_LOCK_KEY = 0x6B616E7361  # "kansa": the advisory lock that makes one sequencer at a time


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._migrate()

    def _conn(self) -> Any:
        c = getattr(self._local, "conn", None)
        if c is None or c.closed or c.broken:
            try:
                c = self._psycopg.connect(self.url, autocommit=True)
            except self._psycopg.OperationalError as e:
                raise StorageError(f"cannot connect to PostgreSQL at {self.url}: {e}") from None
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def _migrate(self) -> None:
        c = self._conn()
        with c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
            c.execute("CREATE TABLE IF NOT EXISTS kansa_schema (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM kansa_schema").fetchone()
            version = int(row[0]) if row else 0
            if row is None:
                c.execute("INSERT INTO kansa_schema (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"database has kansa schema {version}; this kansa knows up to "
                    f"{SCHEMA_VERSION}: upgrade kansa"
                )
            apply(lambda q, p: c.execute(_pg(q), p), "postgresql", "ledger",
                  baseline=version, now=now_us())
            if version < SCHEMA_VERSION:
                c.execute("UPDATE kansa_schema SET version = %s", (SCHEMA_VERSION,))

    def append_batch(
        self,
        expected: int,
        rows: Sequence[tuple[int, str | None, str | None, bytes]],
        attachments: Sequence[tuple[int, str, bytes]],
        tiles: dict[tuple[int, int], bytes],
        new_size: int,
    ) -> bool:
        """One statement = one round trip and its own transaction: append ``rows`` (and
        their attachments) at ``expected`` and write ``tiles``, only if the log still has
        ``expected`` entries. False means another writer got there first: nothing was
        written, and the caller takes the locked path. The conditional UPDATE row-locks
        log_state, which the locked path's SELECT ... FOR UPDATE also takes, so the two
        paths exclude each other."""
        n = len(rows)
        params = {
            "new": new_size, "old": expected,
            "idx": list(range(expected, expected + n)),
            "ts": [r[0] for r in rows], "grp": [r[1] for r in rows],
            "ext": [r[2] for r in rows], "data": [r[3] for r in rows],
            "tl": [k[0] for k in tiles], "ti": [k[1] for k in tiles],
            "td": list(tiles.values()),
            "ai": [a[0] for a in attachments], "ag": [a[1] for a in attachments],
            "ad": [a[2] for a in attachments],
        }
        try:
            row = self._conn().execute(_PG_APPEND, params).fetchone()
        except self._psycopg.Error as e:
            raise StorageError(f"PostgreSQL write failed: {e}") from None
        return bool(row and row[0] == 1)

    @contextlib.contextmanager
    def writer(self) -> Iterator[WriteTxn]:
        c = self._conn()
        try:
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
                yield _PgTxn(c)
        except self._psycopg.Error as e:
            raise StorageError(f"PostgreSQL write failed: {e}") from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._conn().execute(_pg(sql), params).fetchall())
        except self._psycopg.OperationalError as e:
            raise StorageError(f"PostgreSQL: {e}") from None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return int(self._conn().execute(_pg(sql), params).rowcount)
        except self._psycopg.OperationalError as e:
            raise StorageError(f"PostgreSQL: {e}") from None

    def erase_group(self, ref: str | None, group: str | None, prefix: str | None,
                    rotate: Rotate) -> tuple[int, bool]:
        c = self._conn()
        try:
            with c.transaction():
                # the log_state row lock is what both append paths take (append_batch's
                # UPDATE, the locked path's FOR UPDATE): no append commits in between, and
                # an append that waited re-reads erased_groups in the attachments trigger
                c.execute("SELECT size FROM log_state WHERE id = 1 FOR UPDATE")
                n = _erase_txn(lambda q, p: c.execute(_pg(q), p), ref, group, prefix, rotate,
                               lock=" FOR UPDATE", rewrite=False)
                xid = int(c.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        except self._psycopg.Error as e:
            raise StorageError(f"PostgreSQL erasure failed: {e}") from None
        return int(n), self.scrub(after_xid=xid)

    # sessions and slots whose snapshot may still see the erasure's dead tuples (seeing
    # other roles' backend_xmin needs superuser or pg_read_all_stats)
    _OLDER_SNAPSHOTS = """
        SELECT (SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND backend_type <> 'autovacuum worker' AND backend_xmin IS NOT NULL
                  AND age(backend_xmin) >= age(%(x)s::text::xid))
             + (SELECT count(*) FROM pg_replication_slots
                WHERE xmin IS NOT NULL AND age(xmin) >= age(%(x)s::text::xid))"""

    def scrub(self, *, after_xid: int | None = None) -> bool:
        """VACUUM FULL the key tables: each is rewritten into a new file and the old file,
        with the dead tuples of destroyed keys and roots, is truncated at commit (plain
        VACUUM prunes dead tuples but leaves their bytes in the page: measured 14 of 20
        still readable). Both tables are small (one row per subject and per root); the
        rewrite locks only them, never entries or attachments. Attachments are not
        rewritten: their dead tuples hold ciphertext under keys no surviving copy of
        which can be unsealed.

        VACUUM FULL copies a dead tuple that some snapshot may still see (a transaction
        of any session in this database, a replication slot), and one did keep an old
        root in a test run. So first wait, up to ``scrub_timeout`` seconds, until no
        snapshot older than the erasure (transaction ``after_xid``) remains, as SQLite's
        checkpoint waits for readers. False if one outlived the wait: the dead tuple may
        survive until a later scrub (the next erase)."""
        c = self._conn()
        clear = True
        try:
            if after_xid is not None:
                x = str(after_xid % 2**32)  # the 32-bit xid, as backend_xmin shows it
                deadline = time.monotonic() + self.scrub_timeout
                while int(c.execute(self._OLDER_SNAPSHOTS, {"x": x}).fetchone()[0]) > 0:
                    if time.monotonic() >= deadline:
                        clear = False
                        break
                    time.sleep(0.05)
            # VACUUM FULL queues for an exclusive lock, and every lookup of a key queues
            # behind it: a transaction that read the key tables and stays open must not
            # stall appends for long. Give up after a second and say so instead.
            c.execute("SET lock_timeout = '1s'")
            try:
                c.execute("VACUUM FULL key_roots")
                c.execute("VACUUM FULL sealed_keys")
            except self._psycopg.errors.LockNotAvailable:
                clear = False
            finally:
                c.execute("RESET lock_timeout")
        except self._psycopg.Error as e:
            raise StorageError(f"PostgreSQL: scrubbing the key tables failed: {e}") from None
        return clear

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                with contextlib.suppress(Exception):
                    c.close()
            self._all.clear()
        self._local = threading.local()


def open_store(url: str) -> Store:
    """``sqlite:///path/to/ledger.db``, a bare path, ``postgresql://...`` or a libpq
    ``key=value`` connection string."""
    if url.startswith(("postgresql://", "postgres://")) or re.match(r"^\s*\w+\s*=", url):
        # a URL, or a libpq key=value string ("host=... dbname=...")
        return PostgresStore(url)
    if url.startswith("sqlite:"):
        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path
        path = url.removeprefix("sqlite:").removeprefix("///").removeprefix("//")
        return SQLiteStore(path or ":memory:")
    if "://" in url:
        raise StorageError(f"unknown store URL {url!r}: use sqlite:///PATH or postgresql://...")
    return SQLiteStore(url)
