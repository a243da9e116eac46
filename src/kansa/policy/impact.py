"""Impact of a new pack version: :func:`impact` judges history under two pack versions
(both pinned) and lists every record whose verdict changes, by obligation, with
citations (an :class:`ImpactReport`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kansa.policy.judging import NOT_APPLICABLE, compile_packs, fill_record
from kansa.policy.memo import Combo, Outcome, Replayer
from kansa.policy.pack import Pack
from kansa.policy.replay import read_entries
from kansa.records.model import canonical

if TYPE_CHECKING:
    from kansa.api import Ledger


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
    a = Replayer(compile_packs([from_pack]), systems, True)
    b = Replayer(compile_packs([to_pack]), systems, True)
    rep = ImpactReport(from_pack.ref, from_pack.hash, to_pack.ref, to_pack.hash)
    da, db = _obligation_data(from_pack), _obligation_data(to_pack)
    rep.obligations_added = [k for k in db if k not in da]
    rep.obligations_removed = [k for k in da if k not in db]
    rep.obligations_changed = [k for k in db if k in da and da[k] != db[k]]
    diffs: dict[tuple[Combo, Combo], list[tuple[Any, ...]]] = {}
    for index, entry in read_entries(ledger, since, until):
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


def _diff(before: Outcome | None, after: Outcome | None) -> list[tuple[Any, ...]]:
    """(obligation, before, after, citation before, citation after, reason after) for
    each obligation whose verdict differs; an obligation a pack lacks is not_applicable."""
    def table(o: Outcome | None) -> dict[str, tuple[str, str, str]]:
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
