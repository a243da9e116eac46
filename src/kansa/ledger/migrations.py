"""One numbered-migrations registry for every table in a ledger's store.

Each component owns its tables and lists their schema changes as numbered
:class:`Migration` steps (1, 2, ...). The table ``kansa_migrations`` (component, number,
name, applied_at) records which steps a store has applied, as llm's ``_migrations`` does;
:func:`ensure` applies the missing ones, in one transaction that holds a lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL an advisory lock of its own), so processes starting
at once apply each step exactly once. A store that has applied a step this kansa does not
know is refused: upgrade kansa.

The ledger's own tables are component ``ledger`` (storage.py), applied when a store is
opened; the step numbers are the schema versions ``PRAGMA user_version`` (SQLite) and
``kansa_schema`` (PostgreSQL) held before the registry existed, and still hold, so a
release from before refuses a store newer than it knows. Stores from before the
registry upgrade in place: the ledger's applied steps are read from that version, and
step 1 of every other component creates its tables with ``IF NOT EXISTS``, adopting the
tables the earlier unversioned code created (later steps must not rely on that).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kansa.errors import StorageError

if TYPE_CHECKING:
    from kansa.ledger.storage import Store

TABLE = "kansa_migrations"
_BOOTSTRAP = (f"CREATE TABLE IF NOT EXISTS {TABLE} (component TEXT NOT NULL,"
              " number INTEGER NOT NULL, name TEXT NOT NULL,"
              " applied_at BIGINT,"  # microseconds since the epoch; NULL: before the registry
              " PRIMARY KEY (component, number))")
_PG_LOCK_KEY = 0x6B616E7362  # the ledger's append lock is ...61: components never block appends


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...] | None = None  # None: the same statements as SQLite

    def statements(self, dialect: str) -> tuple[str, ...]:
        if dialect == "postgresql" and self.postgresql is not None:
            return self.postgresql
        return self.sqlite


REGISTRY: dict[str, tuple[Migration, ...]] = {}
_ready: weakref.WeakKeyDictionary[Store, set[str]] = weakref.WeakKeyDictionary()
_ready_lock = threading.Lock()


def register(component: str, steps: Sequence[Migration]) -> tuple[Migration, ...]:
    """Declare ``component``'s migrations (numbered 1, 2, ... in order)."""
    if [m.number for m in steps] != list(range(1, len(steps) + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..{len(steps)}")
    REGISTRY[component] = tuple(steps)
    return REGISTRY[component]


Exec = Callable[[str, Sequence[Any]], Any]  # runs one qmark statement, returns a cursor


def apply(ex: Exec, dialect: str, component: str, *, baseline: int = 0,
          now: int | None = None) -> int:
    """Apply ``component``'s missing steps inside the caller's locked transaction; return
    how many were applied. Steps up to ``baseline`` count as applied already (a schema
    version kept from before the registry); they are recorded with applied_at NULL."""
    steps = REGISTRY[component]
    ex(_BOOTSTRAP, ())
    rows = ex(f"SELECT number FROM {TABLE} WHERE component = ?", (component,)).fetchall()
    done = {int(r[0]) for r in rows}
    newest = max([*done, baseline], default=0)
    if newest > len(steps):
        raise StorageError(f"the store has {component} migration {newest}; this kansa knows "
                           f"up to {len(steps)}: upgrade kansa")
    n = 0
    for m in steps:
        if m.number in done:
            continue
        if m.number <= baseline:
            ex(f"INSERT INTO {TABLE} (component, number, name, applied_at) VALUES (?, ?, ?, NULL)",
               (component, m.number, m.name))
            continue
        for stmt in m.statements(dialect):
            ex(stmt, ())
        ex(f"INSERT INTO {TABLE} (component, number, name, applied_at) VALUES (?, ?, ?, ?)",
           (component, m.number, m.name, now))
        n += 1
    return n


def ensure(store: Store, component: str) -> None:
    """Bring ``component``'s tables in ``store`` up to date (cheap once done: remembered
    per store object)."""
    with _ready_lock:
        if component in _ready.get(store, ()):
            return
    if _current(store, component):  # the common case: no write lock, no transaction
        with _ready_lock:
            _ready.setdefault(store, set()).add(component)
        return
    pg = store.dialect == "postgresql"
    store.execute("BEGIN" if pg else "BEGIN IMMEDIATE")
    try:
        if pg:
            store.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
        apply(_Cursorish(store), store.dialect, component, now=now_us())
    except BaseException:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")
    with _ready_lock:
        _ready.setdefault(store, set()).add(component)


def _current(store: Store, component: str) -> bool:
    """Whether the store recorded exactly this kansa's steps of ``component`` (a newer
    store, or a missing step, takes the locked path, which refuses or applies)."""
    try:
        rows = store.query(f"SELECT number FROM {TABLE} WHERE component = ?", (component,))
    except Exception:  # no such table (a store not opened by this kansa): the locked path
        return False
    return sorted(int(r[0]) for r in rows) == [m.number for m in REGISTRY[component]]


def forget(store: Store) -> None:
    """Make the next :func:`ensure` check the store again (after tables were dropped)."""
    with _ready_lock:
        _ready.pop(store, None)


class _Cursorish:
    """``Store.query``/``execute`` as an :data:`Exec`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, sql: str, params: Sequence[Any]) -> _Rows:
        if sql.lstrip().upper().startswith("SELECT"):
            return _Rows(self.store.query(sql, params))
        self.store.execute(sql, params)
        return _Rows([])


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


def applied(store: Store) -> list[tuple[str, int, str, int | None]]:
    """(component, number, name, applied_at) of every step the store has applied."""
    rows = store.query(f"SELECT component, number, name, applied_at FROM {TABLE}"
                       " ORDER BY component, number")
    return [(str(c), int(n), str(m), None if a is None else int(a)) for c, n, m, a in rows]


def now_us() -> int:
    """When a step was applied (microseconds since the epoch, as the store's times)."""
    return time.time_ns() // 1000
