"""Labelling coverage and detection-tool availability, for the evidence report.

Read from the log (one filtered :class:`~kansa.ledger.follower.Follower` pass over
``gen_ai.call`` entries): per system and jurisdiction, how many successful outputs there
were, how many carried a visible label, and how many carried each machine-readable mark
(the carriers: ``gb45438-metadata``, ``c2pa``, ``text-wrapper``, ``watermark``), and how
many recorded ``kansa.output.label.error``. The jurisdiction is the one the label was
placed for (``kansa.output.label.jurisdiction``), else the system's facts, else "-".
Detection: how many outputs the fingerprint index holds against how many have content.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kansa.errors import StorageError
from kansa.ledger.follower import Follower
from kansa.ledger.storage import Store
from kansa.records.attributes import (
    KANSA_OUTPUT_LABEL_ERROR,
    KANSA_OUTPUT_LABEL_JURISDICTION,
    KANSA_OUTPUT_LABEL_MACHINE_READABLE,
    KANSA_OUTPUT_LABEL_VISIBLE,
)


@dataclass
class CoverageRow:
    system: str
    jurisdiction: str
    outputs: int = 0
    visible: int = 0
    errors: int = 0
    labelled: int = 0  # with at least one label, visible or machine-readable
    carriers: Counter[str] = field(default_factory=Counter)


@dataclass
class Coverage:
    rows: list[CoverageRow]
    outputs_with_content: int
    indexed: int | None  # None: no fingerprint index in this store

    @property
    def any_labels(self) -> bool:
        return any(r.visible or r.carriers or r.errors for r in self.rows)


def _jurisdiction(attrs: Mapping[str, Any], system: str,
                  systems: Mapping[str, Mapping[str, Any]] | None) -> str:
    j = attrs.get(KANSA_OUTPUT_LABEL_JURISDICTION)
    if isinstance(j, str) and j:
        return j
    facts = (systems or {}).get(system) or {}
    js = facts.get("jurisdictions")
    if isinstance(js, list) and js:
        return ",".join(str(x) for x in js)
    return "-"


def labelling_coverage(store: Store, *, since_us: int | None = None,
                       until_us: int | None = None,
                       systems: Mapping[str, Mapping[str, Any]] | None = None,
                       system: str | None = None) -> Coverage:
    rows: dict[tuple[str, str], CoverageRow] = {}
    with_content = 0
    f = Follower(store, match=b'"gen_ai.call"', since_us=since_us, until_us=until_us)
    for _index, _ts, data in f.read():
        try:
            e = json.loads(data)
        except ValueError:
            continue
        if e.get("kind") != "gen_ai.call" or e.get("outcome") != "ok":
            continue
        sysname = str(e.get("system", ""))
        if system is not None and sysname != system:
            continue
        attrs = e.get("attributes") or {}
        key = (sysname, _jurisdiction(attrs, sysname, systems))
        row = rows.get(key)
        if row is None:
            row = rows[key] = CoverageRow(*key)
        row.outputs += 1
        with_content += bool(e.get("content"))
        vis = attrs.get(KANSA_OUTPUT_LABEL_VISIBLE) is True
        marks = attrs.get(KANSA_OUTPUT_LABEL_MACHINE_READABLE)
        marks = [m for m in marks if isinstance(m, str)] if isinstance(marks, list) else []
        row.visible += vis
        row.carriers.update(marks)
        row.errors += KANSA_OUTPUT_LABEL_ERROR in attrs
        row.labelled += bool(vis or marks)
    return Coverage(sorted(rows.values(), key=lambda r: (r.system, r.jurisdiction)),
                    with_content, _indexed(store))


def _indexed(store: Store) -> int | None:
    try:
        return int(store.query("SELECT COUNT(*) FROM provenance_outputs")[0][0])
    except StorageError:
        return None
    except Exception:  # PostgreSQL: undefined table (psycopg's own error class)
        return None
