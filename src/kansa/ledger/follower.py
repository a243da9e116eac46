"""A follower: an incremental, resumable cursor over a ledger's entries.

Every reader of the log (policy replay and impact, the activation history, the design
scan, incident and evidence lookups, and later detectors and live counts) reads through
one :class:`Follower` instead of its own loop over the ``entries`` table, in the spirit
of tessera's follower that log readers share:

- it reads in index ranges (primary-key scans on both stores), as plain
  ``(index, ts, data)`` tuples, from :attr:`Follower.position` up to the log's size at
  the time of the read (or ``end``), and advances the position past each entry it hands
  out, so the next :meth:`Follower.read` continues where the last stopped;
- ``match``: byte strings an entry must contain one of (``b'"kansa.incident"'``), a cheap
  pre-filter before JSON decoding; the store applies it (``instr`` / ``position``), so
  other entries do not even travel; ``since_us`` / ``until_us`` filter on the entry's
  time the same way;
- a named follower keeps its position in the table ``follower_positions`` (component
  ``follower`` in the migrations registry): :meth:`Follower.save` stores it and a
  follower of the same name made later, in any process, resumes from there.

Unfiltered reads check that no index is missing (a damaged log raises
:class:`StorageError`); filtered reads skip entries by design and cannot.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from kansa.errors import StorageError
from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.ledger.storage import Store, _blob, now_us

COMPONENT = "follower"
migrations.register(COMPONENT, [
    Migration(1, "follower positions", (
        "CREATE TABLE IF NOT EXISTS follower_positions (name TEXT PRIMARY KEY,"
        " position BIGINT NOT NULL, updated BIGINT NOT NULL)",)),
])

Entry = tuple[int, int, bytes]  # (index, ts in µs since the epoch, data)


class Follower:
    """An incremental cursor over ``store``'s entries (see the module's description)."""

    def __init__(self, store: Store, name: str | None = None, *,
                 match: bytes | Sequence[bytes] = (), since_us: int | None = None,
                 until_us: int | None = None, start: int | None = None,
                 batch: int = 16_384) -> None:
        self.store = store
        self.name = name
        self.match = (match,) if isinstance(match, bytes) else tuple(match)
        self.since_us, self.until_us = since_us, until_us
        self.batch = batch
        if start is not None:
            self.position = start
        elif name is not None:
            self.position = self.saved(store, name) or 0
        else:
            self.position = 0
        self._sql, self._params = self._query()

    @staticmethod
    def saved(store: Store, name: str) -> int | None:
        """The position follower ``name`` last saved in ``store``."""
        migrations.ensure(store, COMPONENT)
        rows = store.query("SELECT position FROM follower_positions WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def save(self) -> None:
        """Store the position under the follower's name (after processing what was read)."""
        if self.name is None:
            raise StorageError("only a named follower can save its position")
        migrations.ensure(self.store, COMPONENT)
        self.store.execute(
            "INSERT INTO follower_positions (name, position, updated) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
            " updated = excluded.updated", (self.name, self.position, now_us()))

    def _query(self) -> tuple[str, list[Any]]:
        where = ["idx >= ?", "idx < ?"]
        params: list[Any] = []
        if self.since_us is not None:
            where.append("ts >= ?")
            params.append(self.since_us)
        if self.until_us is not None:
            where.append("ts < ?")
            params.append(self.until_us)
        if self.match:
            # a binary substring search: data is a BLOB (SQLite) or bytea (PostgreSQL)
            one = ("position(? in data) > 0" if self.store.dialect == "postgresql"
                   else "instr(data, ?) > 0")
            where.append("(" + " OR ".join([one] * len(self.match)) + ")")
            params += self.match
        return ("SELECT idx, ts, data FROM entries WHERE " + " AND ".join(where)
                + " ORDER BY idx", params)

    @property
    def filtered(self) -> bool:
        return bool(self.match) or self.since_us is not None or self.until_us is not None

    def read(self, end: int | None = None) -> Iterator[Entry]:
        """The entries from the position up to ``end`` (default: the log's size now) that
        pass the filters, in index order. The position moves past each entry as it is
        handed out, and to ``end`` once the read is done."""
        stop = self.store.size() if end is None else end
        if self.filtered:
            return self._filtered(stop)
        return self._all(stop)

    def _all(self, stop: int) -> Iterator[Entry]:
        pos = self.position
        query, sql, step = self.store.query, self._sql, self.batch
        try:
            while pos < stop:
                rows = query(sql, (pos, min(stop, pos + step)))
                for index, ts, data in rows:
                    if index != pos:
                        break
                    pos += 1
                    yield index, ts, data if data.__class__ is bytes else \
                        _blob(data, f"entry {index}")
                else:
                    if rows:
                        continue
                raise StorageError(f"entry {pos} is missing from the store (the log is damaged)")
        finally:
            self.position = max(self.position, pos)

    def _filtered(self, stop: int) -> Iterator[Entry]:
        pos = self.position
        query, sql, step, params, match = (self.store.query, self._sql, self.batch,
                                           self._params, self.match)
        try:
            while pos < stop:
                hi = min(stop, pos + step)
                for index, ts, data in query(sql, (pos, hi, *params)):
                    raw = data if data.__class__ is bytes else _blob(data, f"entry {index}")
                    pos = index + 1
                    if any(m in raw for m in match) or not match:
                        yield index, ts, raw
                pos = hi
        finally:
            self.position = max(self.position, pos)
