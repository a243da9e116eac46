"""The overview's figures, kept up to date by a follower instead of a scan per page.

The first :meth:`Rollup.refresh` reads the whole log once; each later one reads only the
entries appended since (the follower's position), so the overview costs the same at
10^4 and 10^6 records. Held in memory per ``kansa web`` process.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import orjson

from kansa.ledger.follower import Follower
from kansa.ledger.storage import Store
from kansa.records import attributes as A


@dataclass
class Figures:
    records: int = 0
    systems: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    providers: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    per_day: Counter[int] = field(default_factory=Counter)  # UTC days since 1970-01-01
    input_tokens: int = 0
    output_tokens: int = 0
    failures: int = 0  # outcome other than ok
    last_failure: int | None = None  # its entry index

    def calls_on(self, day: date) -> int:
        return self.per_day.get((day - EPOCH_DAY).days, 0)


EPOCH_DAY = date(1970, 1, 1)
DAY_US = 86_400_000_000


class Rollup:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._follower = Follower(store)
        self._lock = threading.Lock()
        self.figures = Figures()
        self.warming = False  # a background thread is reading the log's backlog

    @property
    def position(self) -> int:
        """How many entries the figures include."""
        return self._follower.position

    def warm(self, step: int = 5_000) -> threading.Thread:
        """Read the backlog in a background thread, ``step`` entries under the lock at a
        time, so a page can show the figures counted so far (:meth:`snapshot`) instead
        of waiting for the whole log (a minute or more at 10^6 records)."""
        self.warming = True

        def run() -> None:
            try:
                while self.position < self.store.size():
                    self.refresh(self.position + step)
            finally:
                self.warming = False

        t = threading.Thread(target=run, name="kansa-web-rollup", daemon=True)
        t.start()
        return t

    def snapshot(self) -> Figures:
        """A copy of the figures counted so far (between two steps of the backlog)."""
        with self._lock:
            f = self.figures
            return Figures(f.records, f.systems.copy(), f.models.copy(), f.providers.copy(),
                           f.outcomes.copy(), f.kinds.copy(), f.per_day.copy(),
                           f.input_tokens, f.output_tokens, f.failures, f.last_failure)

    def refresh(self, end: int | None = None) -> Figures:
        """Count the entries appended since the last refresh (up to ``end``)."""
        with self._lock:
            f = self.figures
            stop = self.store.size() if end is None else min(end, self.store.size())
            for index, ts, data in self._follower.read(stop):
                try:
                    e = orjson.loads(data)  # the first refresh reads the whole log
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(e, dict):
                    continue
                f.records += 1
                kind = str(e.get("kind", ""))
                f.kinds[kind] += 1
                if kind in ("kansa.event", "kansa.erasure"):
                    continue  # kansa's own records are not AI usage
                f.systems[str(e.get("system", ""))] += 1
                model = e.get(A.GEN_AI_REQUEST_MODEL) or e.get(A.GEN_AI_RESPONSE_MODEL)
                if model:
                    f.models[str(model)] += 1
                if e.get(A.GEN_AI_PROVIDER_NAME):
                    f.providers[str(e[A.GEN_AI_PROVIDER_NAME])] += 1
                outcome = str(e.get("outcome", ""))
                f.outcomes[outcome] += 1
                if outcome != "ok":
                    f.failures += 1
                    f.last_failure = index
                for key, attr in ((A.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens"),
                                  (A.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens")):
                    v = e.get(key)
                    if isinstance(v, int):
                        setattr(f, attr, getattr(f, attr) + v)
                f.per_day[ts // DAY_US] += 1
            return f
