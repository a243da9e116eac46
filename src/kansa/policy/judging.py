"""Judging one record under rule packs: which pack versions and obligations are in force
at the record's time, and each obligation's verdict (a :class:`Finding`).

:func:`judge` judges one ledger entry. For each instrument it picks the pack version in
force at the record's time (pack ``effective_from``/``effective_until``, days in the
pack's time zone), then each obligation's own dates, after transitions (the first whose
``applies_if`` holds replaces them). ``pin=True`` judges under every given pack instead,
whatever its dates (a counterfactual: "had this version governed"). System facts
``jurisdictions`` and ``roles`` make obligations of other jurisdictions and roles not
applicable. Replay (policy/replay.py), impact (policy/impact.py) and inline enforcement
(policy/inline.py) all judge through :class:`Judge` and :func:`judge_obligation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kansa._time import from_us
from kansa._time import to_us as _us
from kansa.policy.cel import Expr, compile_check, context, system_facts
from kansa.policy.pack import Obligation, Pack, PolicyError
from kansa.records.attributes import (
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
)

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
        """The values of a policy_findings row, in ``findings_store.COLUMNS`` order."""
        return [self.index, self.pack_hash, self.obligation, self.record_id, self.pack,
                self.version, self.verdict, self.citation, self.legal_force, self.reason]

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(_FIELDS, self.row(), strict=True))


_FIELDS = ("index", "record_id", "obligation", "pack", "version", "pack_hash", "verdict",
           "citation", "legal_force", "reason")


# -- compiled packs ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledObligation:
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
    obligations: tuple[CompiledObligation, ...]
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
        obls.append(CompiledObligation(
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


def compile_packs(packs: Iterable[Pack | CompiledPack]) -> list[CompiledPack]:
    """``packs`` compiled, each once (by hash), in (pack id, start) order; two versions
    of one instrument taking effect on the same day are refused (which governs?)."""
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


def record_time(entry: Mapping[str, Any]) -> datetime:
    """The entry's ``ts`` as an aware UTC datetime (a record without one cannot be judged)."""
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


def _local_day(us: int, pack: Pack) -> str:
    """The day an instant begins in the pack's own time zone: an Omnibus date of
    2 Dec 2026 in Brussels is 1 Dec 23:00 UTC, and must read as 2026-12-02."""
    return from_us(us).astimezone(pack.tz).date().isoformat()


def judge_obligation(cp: CompiledPack, c: CompiledObligation, ctx: Any, at_us: int,
                     index: int | None, record_id: str, roles: Any, jurisdictions: Any,
                     rec: Mapping[str, Any] | None = None, lang: str = "en") -> Finding:
    """One obligation's verdict on one record (``ctx``: its CEL context) at ``at_us``."""
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
_RECORD_FIELDS = {"system": ("system",), "model": (GEN_AI_RESPONSE_MODEL,
                                                   GEN_AI_REQUEST_MODEL),
                  "provider": (GEN_AI_PROVIDER_NAME,)}
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


def needs_record(reason: str) -> bool:
    """Whether ``reason`` still holds a placeholder of the record's values."""
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
    judge = Judge(compile_packs([pack]), systems, True, lang=lang)
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
    return Judge(compile_packs(packs), systems, pin, lang).judge(record_entry, at, index)


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
        when = at.astimezone(UTC) if at is not None else record_time(entry)
        at_us = _us(when)
        chosen = self.packs if self.pin else in_force(self.packs, at_us)
        if not chosen:
            return []
        facts = self.systems.get(str(entry.get("system")), {})
        ctx = context(entry, facts, when)
        rid = str(entry.get("id", ""))
        roles, juris = facts.get("roles"), facts.get("jurisdictions")
        return [judge_obligation(cp, c, ctx, at_us, index, rid, roles, juris, entry, self.lang)
                for cp in chosen for c in cp.obligations]
