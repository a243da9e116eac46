"""Memoized judging of a stream of entries (:class:`Replayer`), for replay and impact.

Two memo levels: per pack, keyed on (date bucket, system name, what the pack reads of
the record, policy/reads.py); and, when every pack is memoizable, per record for all
packs at once. Between two date boundaries of the packs every date comparison comes out
the same way, so the bucket stands for the instant. An :class:`Outcome` is one pack's
verdicts on the records alike for it; a :class:`Combo` the outcomes of every pack in
force, all a warm replay computes per record.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from kansa._time import to_us as _us
from kansa.policy.cel import context
from kansa.policy.judging import (
    FAIL,
    CompiledPack,
    Finding,
    Judge,
    fill_record,
    in_force,
    judge_obligation,
    needs_record,
    record_time,
)
from kansa.policy.reads import Read, pack_reads, projector


class Outcome:
    """One pack's verdicts on every record that agrees on what the pack reads."""

    __slots__ = ("cp", "verdicts", "fails", "digest", "profile")

    def __init__(self, cp: CompiledPack, found: list[Finding]) -> None:
        self.cp = cp
        self.verdicts = tuple((f.verdict, f.reason) for f in found)
        # (pack_hash, obligation) and the rest of a policy_findings row, for each failure
        # ... and whether its reason still names the record's values (filled per row)
        self.fails = tuple(((f.pack_hash, f.obligation),
                            (f.pack, f.version, f.verdict, f.citation, f.legal_force, f.reason),
                            needs_record(f.reason))
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


class Combo:
    """The outcomes of the packs in force on records that agree on everything any of them
    reads: all a warm replay computes per record is which combo applies."""

    __slots__ = ("outcomes", "tail", "fails")

    def __init__(self, outcomes: list[Outcome]) -> None:
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
        self.cache: dict[Any, Outcome] = {}


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
        self.combos: dict[Any, Combo] = {}
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

    def combo(self, entry: Mapping[str, Any], index: int) -> tuple[int, Combo]:
        """The record's time (µs since the epoch) and the outcomes of the packs in force."""
        when = record_time(entry)
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
            o = Outcome(m.cp, [
                judge_obligation(m.cp, c, ctx, at_us, index, "", facts.get("roles"),
                                 facts.get("jurisdictions")) for c in m.cp.obligations])
            if mkey is not None:
                if len(m.cache) >= _MEMO_LIMIT:
                    m.cache.clear()
                m.cache[mkey] = o
            out.append(o)
        combo = Combo(out)
        if key is not None:
            if len(self.combos) >= _MEMO_LIMIT:
                self.combos.clear()
            self.combos[key] = combo
        return at_us, combo
