"""The evidence report: how recorded AI usage measures against rule packs, with proof.

:func:`build_evidence_report` returns a :class:`~kansa.report.doc.Document` (render it
with ``render_html`` / ``render_pdf``) holding, in the report's language:

- a cover: period, systems, the log, the replay the counts come from, and each pack
  version with its hash, status, jurisdiction and verification, with a clear warning
  when a pack is a draft, repealed, or its citations are not all verified;
- a table of every obligation (citation, legal force, pass / fail / not applicable /
  evidence-needed counts, status) and a chart of verdicts per day;
- per obligation: its text as the pack gives it in the report's language, labelled
  official text, translation or summary exactly as the pack marks it (a summary is never
  shown as official), a chart, and a few failing examples with their entry index,
  record id, time and a C2SP tlog-proof receipt;
- evidence-needed obligations: what a person must supply and what was supplied
  (``kansa evidence add``), each with a receipt;
- the signed checkpoint every receipt is proven against, verbatim.

Cost: counts come from the replay's per-day tallies (``FindingStore.tally``) and examples
from a few indexed rows of ``policy_findings``, so the report's work does not grow with
the number of records. Narrowing to one ``system`` is the exception: tallies are not
kept per system, so those records are judged again (one pass over the period).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kansa._time import from_us
from kansa._time import to_us as _us
from kansa.errors import ReportError as ReportError  # re-exported: its old home
from kansa.ledger.export import cosigned_note
from kansa.ledger.note import SignedCheckpoint
from kansa.ledger.receipt import make_receipt
from kansa.policy.findings_store import FindingStore, RunInfo
from kansa.policy.judging import (
    EVIDENCE_NEEDED,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    VERDICTS,
    Judge,
    compile_pack,
)
from kansa.policy.pack import Obligation, Pack, parse_pack
from kansa.provenance.coverage import Coverage, labelling_coverage
from kansa.records.attributes import GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, KANSA_INCIDENT
from kansa.records.model import parse_ts
from kansa.report.doc import Block, Chart, Code, Document, KeyValue, Para, Section, Table
from kansa.report.evidence_supply import SuppliedEvidence, supplied_evidence
from kansa.report.i18n import (
    check_lang,
    format_count,
    format_date,
    format_datetime,
    lang_name,
    publisher_name,
    t,
    verdict_name,
)
from kansa.report.reasons import obligation_reason, obligation_title, record_reason

if TYPE_CHECKING:
    from kansa.api import Ledger

VERDICT_COLORS = {PASS: "#2e7d32", FAIL: "#c62828", NOT_APPLICABLE: "#b0b7bf",
                  EVIDENCE_NEEDED: "#f9a825"}
_MAX_BARS = 120  # more days than this are charted by week
_EXEC_ROWS = 5  # rows per table of the executive summary (it fits one page)


class NoReplayError(ReportError):
    """No stored replay judged the packs over the period (run one first)."""


@dataclass(frozen=True)
class Example:
    """One failing finding, with the receipt that proves its record is in the log."""

    index: int
    record_id: str
    ts: datetime
    system: str
    model: str
    reason: str
    receipt: bytes


@dataclass
class ObligationResult:
    pack: Pack
    obligation: Obligation
    counts: Counter[str] = field(default_factory=Counter)
    per_day: dict[str, Counter[str]] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    supplied: list[tuple[SuppliedEvidence, bytes]] = field(default_factory=list)

    @property
    def status(self) -> str:
        c = self.counts
        if self.obligation.evidence is not None and self.supplied:
            return "evidence_supplied"
        if c[FAIL]:
            return "failing"
        if c[EVIDENCE_NEEDED]:
            return "evidence_needed"
        if c[PASS]:
            return "passing"
        if c[NOT_APPLICABLE]:
            return "not_applicable"
        return "no_records"


@dataclass
class EvidenceData:
    """Everything the report shows, gathered once (language-independent)."""

    packs: list[Pack]
    results: list[ObligationResult]
    checkpoint: SignedCheckpoint
    checkpoint_text: str  # the signed note with cosignatures, verbatim
    since: datetime | None
    until: datetime | None
    system: str | None
    run: RunInfo | None  # the replay the counts come from (None when judged here)
    records_judged: int
    generated_at: datetime
    # failing records per (pack hash, obligation) and system, most first
    by_system: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)
    previous: Comparison | None = None  # what changed since the replay before ``run``
    active: list[str] | None = None  # pack refs active now (None: not looked up)
    deadlines: list[Deadline] = field(default_factory=list)
    labelling: Coverage | None = None  # labelling coverage and detection (provenance)


@dataclass(frozen=True)
class Comparison:
    """The stored replay before the reported one (same instruments), and the failing
    findings per (pack id, obligation) in each, over the report's period."""

    run: RunInfo
    packs: list[str]  # its pack refs
    before: dict[tuple[str, str], int]
    after: dict[tuple[str, str], int]


@dataclass(frozen=True)
class Deadline:
    """A date that runs: an obligation (or one of its transitions) starting or ending, or
    an incident report falling due."""

    when: datetime
    kind: str  # "starts" | "ends" | "incident"
    pack: str  # ref
    obligation: str
    citation: str
    detail: str = ""  # a transition's note; an incident's category and system


# -- gathering -----------------------------------------------------------------------------


def _as_utc(value: datetime | str | None, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_ts(value, field_name=what)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def packs_of_run(fs: FindingStore, run: RunInfo) -> list[Pack]:
    """The pack versions a stored replay judged under, rebuilt from the stored JSON
    (the hash is checked, so what is shown is exactly what was judged)."""
    out = []
    for p in run.packs:
        data = fs.pack_json(p["hash"])
        if data is None:
            raise ReportError(f"replay {run.run_id}: pack {p['id']}@{p['version']} "
                              f"({p['hash']}) is not stored")
        pack = parse_pack(json.dumps(data, ensure_ascii=False), f"{p['id']}@{p['version']}")
        if pack.hash != p["hash"]:
            raise ReportError(f"stored pack {p['id']}@{p['version']} hashes to {pack.hash}, "
                              f"not {p['hash']}: the policy tables are damaged")
        out.append(pack)
    return out


def covering_run(fs: FindingStore, packs: Sequence[Pack] | None, run_id: str | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> RunInfo | None:
    """The stored replay to report: ``run_id``, else the newest one that judged every
    pack of ``packs`` (any, if ``packs`` is None) over a window holding [since, until);
    None when there is none."""
    runs = fs.runs()
    if run_id is not None:
        for r in runs:
            if r.run_id == run_id:
                return r
        raise ReportError(f"no stored replay {run_id!r} (see 'kansa replay')")
    want = {p.hash for p in packs or ()}
    for r in runs:  # newest first
        if not want <= {p["hash"] for p in r.packs}:
            continue
        lo, hi = _as_utc(r.since, "since"), _as_utc(r.until, "until")
        if (lo is not None and (since is None or since < lo)) or \
                (hi is not None and (until is None or until > hi)):
            continue  # that replay judged only part of the period
        return r
    return None


def _day_in(day: str, since: datetime | None, until: datetime | None) -> bool:
    """Tallies are per UTC day: a day counts if it overlaps [since, until)."""
    d = date.fromisoformat(day)
    if since is not None and d < since.date():
        return False
    return not (until is not None and datetime(d.year, d.month, d.day, tzinfo=UTC) >= until)


def _stored_failures(ledger: Ledger, pack_hash: str, obligation: str,
                     since: datetime | None, until: datetime | None,
                     limit: int) -> list[tuple[int, str, str]]:
    """A few failing findings (index, record id, reason) in the period (the policy
    tables' owner, FindingStore, reads them)."""
    return FindingStore(ledger.log.store).failures(
        pack_hash, obligation, since_us=_us(since) if since is not None else None,
        until_us=_us(until) if until is not None else None, limit=limit)


def _example(ledger: Ledger, signed: SignedCheckpoint, index: int, record_id: str,
             reason: str) -> Example | None:
    row = ledger.log.store.entry(index)
    if row is None or index >= signed.checkpoint.size:
        return None  # appended after the checkpoint this report proves against
    e = json.loads(row.data)
    model = e.get(GEN_AI_REQUEST_MODEL) or e.get(GEN_AI_RESPONSE_MODEL) or ""
    receipt = make_receipt(ledger.log, index, extra=row.data, checkpoint=signed)
    return Example(index, record_id, from_us(row.ts),
                   str(e.get("system", "")), str(model), reason, receipt)


def _judge_system(ledger: Ledger, packs: Sequence[Pack], system: str,
                  since: datetime | None, until: datetime | None,
                  systems: Mapping[str, Mapping[str, Any]] | None, examples: int,
                  results: dict[tuple[str, str], ObligationResult],
                  progress: Callable[[int], None] | None,
                  ) -> tuple[int, dict[tuple[str, str], list[tuple[int, str, str]]]]:
    """Judge the records of one system in the period (tallies are not kept per system):
    the number judged and, per (pack hash, obligation), the first failing findings."""
    judge = Judge([compile_pack(p) for p in packs], systems, False)
    seen: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    judged = 0
    offset = 0
    store = ledger.log.store
    while True:
        rows = store.find_entries(since_us=_us(since) if since else None,
                                  until_us=_us(until) if until else None,
                                  limit=4096, offset=offset)
        if not rows:
            break
        offset += len(rows)
        for row in rows:
            if f'"system":{json.dumps(system, ensure_ascii=False)}'.encode() not in row.data:
                continue  # cheap pre-filter on the canonical JSON; checked exactly below
            entry = json.loads(row.data)
            if entry.get("system") != system:
                continue
            judged += 1
            day = from_us(row.ts).date().isoformat()
            for f in judge.judge(entry, None, row.index):
                res = results.get((f.pack_hash, f.obligation))
                if res is None:
                    continue
                res.counts[f.verdict] += 1
                res.per_day.setdefault(day, Counter())[f.verdict] += 1
                if f.verdict == FAIL:
                    got = seen.setdefault((f.pack_hash, f.obligation), [])
                    if len(got) < examples:
                        got.append((row.index, f.record_id, f.reason))
        if progress is not None:
            progress(len(rows))
    return judged, seen


def _failing_by_system(ledger: Ledger, hashes: Sequence[str], since: datetime | None,
                       until: datetime | None) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """Failing records per (pack hash, obligation) and system in the period (the finding
    store's query: report/ reads no other component's tables)."""
    return FindingStore(ledger.log.store).failing_by_system(
        hashes, since_us=_us(since) if since is not None else None,
        until_us=_us(until) if until is not None else None)


def _comparison(fs: FindingStore, info: RunInfo, results: Sequence[ObligationResult],
                since: datetime | None, until: datetime | None) -> Comparison | None:
    """The stored replay before ``info`` that judged at least one of the same
    instruments (pack ids), with failing counts per (pack id, obligation) in both."""
    ids = {r.pack.id for r in results}
    runs = fs.runs()  # newest first
    older = [r for r in runs if r.started_at < info.started_at
             or (r.started_at == info.started_at and r.run_id < info.run_id)]
    prev = next((r for r in older if ids & {p["id"] for p in r.packs}), None)
    if prev is None:
        return None
    by_hash = {p["hash"]: p["id"] for p in prev.packs if p["id"] in ids}
    before: Counter[tuple[str, str]] = Counter()
    for row in fs.tally(run=prev.run_id):
        if row.verdict == FAIL and row.pack_hash in by_hash and _day_in(row.day, since, until):
            before[(by_hash[row.pack_hash], row.obligation)] += row.n
    after: Counter[tuple[str, str]] = Counter()
    for r in results:
        after[(r.pack.id, r.obligation.id)] += r.counts[FAIL]
    return Comparison(prev, [f"{p['id']}@{p['version']}" for p in prev.packs],
                      dict(before), dict(after))


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _deadlines(ledger: Ledger, packs: Sequence[Pack], now: datetime,
               since: datetime | None, until: datetime | None,
               systems: Mapping[str, Mapping[str, Any]] | None) -> list[Deadline]:
    """Dates still to come at ``now``: obligations and transitions that start or end,
    and the reporting deadline of every recorded incident under these packs."""
    out: list[Deadline] = []
    today = now.date()
    for p in packs:
        for o in p.obligations:
            dates = [("starts", o.effective_from, ""), ("ends", o.effective_until, "")]
            for tr in o.transitions:
                note = tr.note or ""
                dates += [("starts", tr.effective_from, note), ("ends", tr.effective_until, note)]
            for kind, d, note in dates:
                if d is not None and d > today:
                    out.append(Deadline(_midnight(d), kind, p.ref, o.id, str(o.citation), note))
    if any(o.incident for p in packs for o in p.obligations):
        from kansa.report.incidents import find_incidents, plan_drafts

        drafts, _ = plan_drafts(find_incidents(ledger.log.store, since=since, until=until),
                                packs, systems)
        for dr in drafts:
            due = from_us(dr.clock.binding.due_us)
            detail = (f"{dr.incident.entry['attributes'].get(KANSA_INCIDENT, '')} · "
                      f"{dr.incident.entry.get('system', '')} · {dr.incident.index}")
            out.append(Deadline(due, "incident", dr.pack.ref, dr.obligation.id,
                                str(dr.obligation.citation), detail))
    # one line per (kind, day, obligation) even when several pack versions carry it
    seen: dict[tuple[str, datetime, str, str], Deadline] = {}
    for x in out:
        seen.setdefault((x.kind, x.when, x.obligation, x.detail), x)
    return sorted(seen.values(), key=lambda x: (x.when, x.pack, x.obligation))


def collect_evidence(
    ledger: Ledger,
    packs: Sequence[Pack] | None = None,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    system: str | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    examples: int = 3,
    run: str | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    active: Sequence[str] | None = None,
) -> EvidenceData:
    """Gather the report's facts. Counts come from the newest stored replay that judged
    every pack in ``packs`` (or replay ``run``); without ``packs``, from the newest
    replay and all its packs. Raises :class:`ReportError` when there is no such replay
    (run ``kansa replay`` or let ``kansa report evidence`` run one). ``now`` is the
    report's generation time (default: the clock). ``active``: the pack refs active now
    (``policy.feed.activations``), to say when newer packs are active than judged."""
    lo, hi = _as_utc(since, "since"), _as_utc(until, "until")
    if lo is not None and hi is not None and hi <= lo:
        raise ReportError(f"the period is empty: until ({hi.isoformat()}) is not after "
                          f"since ({lo.isoformat()})")
    signed = ledger.checkpoint()
    store = ledger.log.store
    fs = FindingStore(store)
    info = covering_run(fs, packs, run, lo, hi)
    if info is None and system is None:
        wanted = ", ".join(p.ref for p in packs or ()) or "any pack"
        raise NoReplayError(f"no stored replay judged {wanted} over the period: run "
                            "'kansa replay' first")
    chosen = list(packs) if packs else packs_of_run(fs, info) if info else []
    if not chosen:
        raise ReportError("no rule packs to report on: give --pack")
    results = {(p.hash, o.id): ObligationResult(p, o) for p in chosen for o in p.obligations}
    judged = 0
    if system is None:
        assert info is not None
        judged = info.records
        for row in fs.tally(run=info.run_id):
            res = results.get((row.pack_hash, row.obligation))
            if res is None or not _day_in(row.day, lo, hi):
                continue
            res.counts[row.verdict] += row.n
            res.per_day.setdefault(row.day, Counter())[row.verdict] += row.n
        for (h, oid), res in results.items():
            found = _stored_failures(ledger, h, oid, lo, hi, examples) if res.counts[FAIL] \
                else []
            res.examples = [x for x in (_example(ledger, signed, *f) for f in found) if x]
    else:
        judged, seen = _judge_system(ledger, chosen, system, lo, hi, systems, examples,
                                     results, progress)
        for key, found in seen.items():
            results[key].examples = [x for x in (_example(ledger, signed, *f) for f in found)
                                     if x]
    for ev in supplied_evidence(ledger):
        if ev.index >= signed.checkpoint.size:
            continue
        for p in chosen:
            res = results.get((p.hash, ev.obligation))
            if p.id == ev.pack and res is not None:
                entry = store.entry(ev.index)
                assert entry is not None
                res.supplied.append((ev, make_receipt(ledger.log, ev.index, extra=entry.data,
                                                      checkpoint=signed)))
    note = cosigned_note(signed.note.to_text(), store.cosignatures(signed.checkpoint.size))
    when = now or datetime.now(UTC)
    failing = [h for (h, _), r in results.items() if r.counts[FAIL]]
    by_system = ({(h, oid): [(system, r.counts[FAIL])] for (h, oid), r in results.items()
                  if r.counts[FAIL]} if system is not None
                 else _failing_by_system(ledger, sorted(set(failing)), lo, hi))
    previous = (_comparison(fs, info, list(results.values()), lo, hi)
                if info is not None and system is None else None)
    coverage = labelling_coverage(store, since_us=_us(lo) if lo else None,
                                  until_us=_us(hi) if hi else None, systems=systems,
                                  system=system)
    return EvidenceData(chosen, list(results.values()), signed, note.to_text(), lo, hi, system,
                        info if system is None else None, judged, when, by_system, previous,
                        list(active) if active is not None else None,
                        _deadlines(ledger, chosen, when, lo, hi, systems),
                        coverage if coverage.any_labels or coverage.indexed is not None
                        else None)


# -- the document ----------------------------------------------------------------------------
#
# Order: title and meta; the executive summary (one page); obligations at a glance; per
# obligation what it asks, its counts and why records fail, citing receipts by entry; the
# evidence people must supply; then appendices: the packs with their verification notes
# (A), the checks as CEL (B), and every receipt with the signed checkpoint (C).


def _pack_title(p: Pack, lang: str) -> str:
    return p.title_ja if lang == "ja" and p.title_ja else p.title


def _period(lang: str, since: datetime | None, until: datetime | None) -> str:
    a = format_datetime(lang, since) if since else t(lang, "period.open_start")
    b = format_datetime(lang, until) if until else t(lang, "period.open_end")
    return t(lang, "period.range", since=a, until=b)


def _verif_counts(p: Pack) -> Counter[str]:
    return Counter(o.verification.status if o.verification else "none" for o in p.obligations)


def verification_status(p: Pack) -> str:
    """One status for a pack and its obligations: verified when all are, unverified (or
    none) when none is even partly, else partly_verified."""
    own = p.verification.status if p.verification else "none"
    seen = {own, *_verif_counts(p)}
    if seen == {"verified"}:
        return "verified"
    if seen <= {"unverified", "none"}:
        return "unverified" if "unverified" in seen else "none"
    return "partly_verified"


def _verification_line(lang: str, p: Pack) -> str:
    """One clear status with counts: "partly verified: 3 of 16 obligations' citations
    verified, 10 partly, 3 not; the pack's own dates: partly verified"."""
    c = _verif_counts(p)
    own = p.verification.status if p.verification else "none"
    return t(lang, "verif.line", status=t(lang, f"verif.{verification_status(p)}"),
             verified=format_count(lang, c["verified"]), total=format_count(lang, len(
                 p.obligations)), partly=format_count(lang, c["partly_verified"]),
             unverified=format_count(lang, c["unverified"] + c["none"]),
             own=t(lang, f"verif.{own}"))


def _pack_warnings(lang: str, p: Pack) -> list[Block]:
    out: list[Block] = []
    if p.status == "draft":
        out.append(Para(t(lang, "pack.draft_note"), "warning"))
    if p.status == "repealed":
        out.append(Para(t(lang, "pack.repealed_note"), "warning"))
    if verification_status(p) != "verified":
        out.append(Para(t(lang, "pack.unverified_note", line=_verification_line(lang, p)),
                        "warning"))
    return out


def _verification(lang: str, v: Any, *, notes: bool = True) -> str:
    if v is None:
        return t(lang, "verif.none")
    parts = [t(lang, f"verif.{v.status}")]
    if v.checked:
        parts.append(format_date(lang, v.checked))
    if notes and v.against:
        parts.append(str(v.against))
    if notes and v.note:
        parts.append(pack_text(lang, str(v.note)))
    return " · ".join(parts)


def pack_text(lang: str, text: str) -> str:
    """A pack's free text (notes, descriptions) as it is; in a Japanese report, text
    without Japanese is marked as the pack's English."""
    if lang == "ja" and text and not has_japanese(text):
        return t(lang, "pack.english", text=text)
    return text


def has_japanese(text: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff"
               or "\uff00" <= ch <= "\uffef" for ch in text)


def _publisher(lang: str, publisher: str) -> str:
    return publisher_name(lang, publisher) if lang == "ja" else publisher


def _days(per_day: Iterable[str]) -> list[str]:
    days = sorted(per_day)
    if not days:
        return []
    a, b = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _chart(lang: str, title: str, per_day: Mapping[str, Counter[str]]) -> Chart | None:
    """Verdicts per day (per week, labelled by its Monday, past _MAX_BARS days)."""
    days = _days(per_day)
    if not days:
        return None
    buckets: dict[str, Counter[str]] = {}
    weekly = len(days) > _MAX_BARS
    for day in days:
        d = date.fromisoformat(day)
        key = (d - timedelta(days=d.weekday())).isoformat() if weekly else day
        buckets.setdefault(key, Counter()).update(per_day.get(day, Counter()))
    labels = tuple(sorted(buckets))
    used = [v for v in VERDICTS if any(buckets[k][v] for k in labels)]
    series = tuple((verdict_name(lang, v), tuple(buckets[k][v] for k in labels)) for v in used)
    colors = tuple((verdict_name(lang, v), VERDICT_COLORS[v]) for v in used)
    return Chart(title, labels, series, colors)


def _instrument_status(results: Sequence[ObligationResult]) -> str:
    """meets | fails | evidence_needed | not_applicable, for a set of obligations."""
    st = {r.status for r in results}
    if "failing" in st:
        return "fails"
    if "evidence_needed" in st:
        return "evidence_needed"
    if st & {"passing", "evidence_supplied"}:
        return "meets"
    return "not_applicable"


def _by_pack(d: EvidenceData) -> list[tuple[Pack, list[ObligationResult]]]:
    out: dict[str, tuple[Pack, list[ObligationResult]]] = {}
    for r in d.results:
        out.setdefault(r.pack.hash, (r.pack, []))[1].append(r)
    return list(out.values())


def _oblig_label(lang: str, r: ObligationResult) -> str:
    return f"{obligation_title(r.obligation, lang)} ({r.obligation.citation})"


def _basis(lang: str, d: EvidenceData) -> list[Block]:
    """Which replay the counts come from and, if known, whether newer packs are active."""
    out: list[Block] = []
    refs = ", ".join(p.ref for p in d.packs)
    if d.run is not None:
        out.append(Para(t(lang, "exec.basis_run", run=d.run.run_id,
                          when=format_datetime(lang, d.run.started_at),
                          records=format_count(lang, d.records_judged), packs=refs), "small"))
    else:
        out.append(Para(t(lang, "exec.basis_judged", records=format_count(
            lang, d.records_judged), packs=refs), "small"))
    if d.active is not None:
        judged = {p.ref for p in d.packs}
        newer = [a for a in d.active if a not in judged]
        if newer:
            out.append(Para(t(lang, "exec.newer_active", active=", ".join(newer)), "warning"))
    return out


def _exec_summary(lang: str, d: EvidenceData) -> Section:
    blocks: list[Block] = [*_basis(lang, d)]
    # per instrument
    rows = []
    for p, rs in _by_pack(d):
        failing = [r for r in rs if r.status == "failing"]
        needed = [r for r in rs if r.status == "evidence_needed"]
        rows.append((_pack_title(p, lang),
                     t(lang, f"istatus.{_instrument_status(rs)}"),
                     format_count(lang, len(failing)), format_count(lang, len(needed)),
                     format_count(lang, sum(r.counts[FAIL] for r in rs)),
                     t(lang, f"verif.{verification_status(p)}")))
    blocks.append(Table((t(lang, "col.instrument"), t(lang, "col.status"),
                         t(lang, "col.obl_failing"), t(lang, "col.obl_evidence"),
                         t(lang, "col.fail_findings"), t(lang, "col.verification")),
                        tuple(rows), caption=t(lang, "exec.instruments"),
                        align=("l", "l", "r", "r", "r", "l"), small=True))
    # per system: failing findings are stored per record, so kansa knows which systems
    # failed which instrument; passes are not kept per system
    per: dict[str, dict[str, int]] = {}
    for p, rs in _by_pack(d):
        for r in rs:
            for name, n in d.by_system.get((p.hash, r.obligation.id), ()):
                got = per.setdefault(name or t(lang, "reason.unknown"), {})
                got[p.ref] = got.get(p.ref, 0) + n
    if per:
        order = sorted(per, key=lambda k: (-sum(per[k].values()), k))
        blocks.append(Table(
            (t(lang, "col.system"), t(lang, "col.status"), t(lang, "col.fail_findings")),
            tuple((name, t(lang, "istatus.fails"), "\n".join(
                f"{ref}: {format_count(lang, n)}" for ref, n in sorted(per[name].items())))
                for name in order[:_EXEC_ROWS]),
            caption=t(lang, "exec.systems"), align=("l", "l", "l"), small=True))
    # the top failing obligations, and why
    failing = sorted((r for r in d.results if r.counts[FAIL]),
                     key=lambda r: (-r.counts[FAIL], r.pack.ref, r.obligation.id))
    if failing:
        blocks.append(Table(
            (t(lang, "col.obligation"), t(lang, "col.fail"), t(lang, "col.why")),
            tuple((r.obligation.id, format_count(lang, r.counts[FAIL]),
                   obligation_reason(r.obligation, lang, r.counts[FAIL],
                                     d.by_system.get((r.pack.hash, r.obligation.id), ()),
                                     pack=r.pack.ref,
                                     stored=r.examples[0].reason if r.examples else None))
                  for r in failing[:_EXEC_ROWS - 2]),
            caption=t(lang, "exec.top", n=min(_EXEC_ROWS - 2, len(failing)),
                      total=format_count(lang, len(failing))),
            align=("l", "r", "l"), small=True))
    else:
        blocks.append(Para(t(lang, "exec.no_failures"), "note"))
    # deadlines that run, one row per day, kind and pack
    groups: dict[tuple[datetime, str, str, str], list[Deadline]] = {}
    for x in d.deadlines:
        detail = x.detail if x.kind != "incident" else ""
        groups.setdefault((x.when, x.kind, x.pack, detail), []).append(x)
    if groups:
        keys = sorted(groups)[:_EXEC_ROWS - 2]
        blocks.append(Table((t(lang, "col.date"), t(lang, "col.what"), t(lang, "col.obligation")),
                            tuple(_deadline_row(lang, groups[k], d.generated_at)
                                  for k in keys),
                            caption=t(lang, "exec.deadlines", n=len(keys),
                                      total=format_count(lang, len(groups))),
                            align=("l", "l", "l"), small=True))
    else:
        blocks.append(Para(t(lang, "exec.no_deadlines"), "small"))
    blocks.extend(_changes(lang, d))
    return Section(t(lang, "sec.exec"), blocks, anchor="executive-summary")


def _deadline_row(lang: str, xs: Sequence[Deadline], now: datetime) -> tuple[str, str, str]:
    x = xs[0]
    if x.kind == "incident":
        when = format_datetime(lang, x.when)
        what = t(lang, "deadline.incident", detail=", ".join(y.detail for y in xs))
        if x.when < now:
            what += t(lang, "deadline.overdue")
    else:
        when = format_date(lang, x.when.date())
        what = t(lang, f"deadline.{x.kind}") + (
            t(lang, "deadline.transition") if x.detail else "")
    obls = t(lang, "reason.join").join(f"{y.obligation} ({y.citation})" for y in xs[:3])
    if len(xs) > 3:
        obls += t(lang, "reason.join") + t(lang, "more", n=len(xs) - 3)
    return when, what, f"{obls}\n{x.pack}"


def _changes(lang: str, d: EvidenceData) -> list[Block]:
    """One paragraph: what the previous stored replay of the same instruments counted as
    failing over this period, and the obligations whose count moved most."""
    c = d.previous
    if c is None:
        return [Para(t(lang, "exec.no_previous"), "small")]
    before, after = sum(c.before.values()), sum(c.after.values())
    text = t(lang, "exec.previous", run=c.run.run_id,
             when=format_datetime(lang, c.run.started_at),
             records=format_count(lang, c.run.records), packs=", ".join(c.packs),
             before=format_count(lang, before), after=format_count(lang, after))
    rows = []
    for key in sorted(set(c.before) | set(c.after)):
        a, b = c.before.get(key, 0), c.after.get(key, 0)
        if a != b:
            rows.append((abs(b - a), key, a, b))
    rows.sort(key=lambda x: (-x[0], x[1]))
    if rows:
        shown = t(lang, "exec.change_join").join(
            t(lang, "exec.change", obligation=oid, pack=pid, before=format_count(lang, a),
              after=format_count(lang, b)) for _, (pid, oid), a, b in rows[:3])
        if len(rows) > 3:
            shown += t(lang, "exec.change_join") + t(lang, "more", n=len(rows) - 3)
        text += " " + t(lang, "exec.changed", changes=shown)
    else:
        text += " " + t(lang, "exec.unchanged")
    return [Para(text.replace("。 ", "。"), "small")]


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1].rstrip() + "…"


def _summary(lang: str, d: EvidenceData) -> Section:
    """One table per pack: every obligation with its counts and status."""
    blocks: list[Block] = []
    total: dict[str, Counter[str]] = {}
    most = 34 if lang == "ja" else 60
    for p, rs in _by_pack(d):
        rows = []
        for r in rs:
            c = r.counts
            title = _short(obligation_title(r.obligation, lang), most)
            rows.append((f"{r.obligation.id}\n{title}",
                         str(r.obligation.citation), t(lang, f"force.{r.obligation.legal_force}"),
                         format_count(lang, c[PASS]), format_count(lang, c[FAIL]),
                         format_count(lang, c[NOT_APPLICABLE]),
                         format_count(lang, c[EVIDENCE_NEEDED]), t(lang, f"status.{r.status}")))
            for day, cnt in r.per_day.items():
                total.setdefault(day, Counter()).update(cnt)
        blocks.append(Table(
            (t(lang, "col.obligation"), t(lang, "col.citation"), t(lang, "col.force"),
             t(lang, "col.pass"), t(lang, "col.fail"), t(lang, "col.na"),
             t(lang, "col.evidence"), t(lang, "col.status")),
            tuple(rows), caption=f"{_pack_title(p, lang)} ({p.ref})",
            align=("l", "l", "l", "r", "r", "r", "r", "l")))
    if d.system is None and any(b is not None and b != b.replace(hour=0, minute=0, second=0,
                                                                  microsecond=0)
                                for b in (d.since, d.until)):
        blocks.append(Para(t(lang, "sec.summary.days"), "note"))
    chart = _chart(lang, t(lang, "chart.all"), total)
    blocks.append(chart if chart else Para(t(lang, "chart.none"), "small"))
    return Section(t(lang, "sec.summary"), blocks, anchor="summary")


def _text_blocks(lang: str, o: Obligation) -> list[Block]:
    text = o.text.get(lang)
    shown_in = lang
    blocks: list[Block] = []
    if text is None:
        other = "en" if "en" in o.text else next(iter(o.text), None)
        if other is None:
            return [Para(t(lang, "obl.no_text"), "small")]
        text, shown_in = o.text[other], other
        blocks.append(Para(t(lang, "obl.text_missing", language=lang_name(lang, other)), "note"))
    # the label comes from the pack's own marking: a summary is never called official
    label = t(lang, "obl.text", kind=t(lang, f"kind.{text.kind}"),
              language=lang_name(lang, shown_in))
    blocks.append(Para(label, "small"))
    blocks.append(Para(text.text))
    return blocks


def _receipt_code(lang: str, index: int, receipt: bytes) -> Code:
    return Code(receipt.decode("utf-8", "replace"), t(lang, "obl.receipt", index=index),
                download=f"entry-{index}.tlog-proof")


def _obligation(lang: str, r: ObligationResult, d: EvidenceData) -> Section:
    o = r.obligation
    c = r.counts
    pairs = [
        (t(lang, "col.pack"), r.pack.ref),
        (t(lang, "col.citation"), str(o.citation)),
        (t(lang, "col.force"), t(lang, f"force.{o.legal_force}")),
        (t(lang, "obl.role"), t(lang, f"role.{o.role}")),
        (t(lang, "obl.counts"), t(lang, "obl.counts_value", pass_=format_count(lang, c[PASS]),
                                  fail=format_count(lang, c[FAIL]),
                                  na=format_count(lang, c[NOT_APPLICABLE]),
                                  ev=format_count(lang, c[EVIDENCE_NEEDED]))),
        (t(lang, "col.status"), t(lang, f"status.{r.status}")),
        (t(lang, "obl.verification"), t(lang, "obl.verification_value", status=_verification(
            lang, o.verification, notes=False))),
    ]
    if o.check is not None:
        pairs.append((t(lang, "obl.check"), t(lang, "obl.check_ref")))
    if o.evidence is not None:
        pairs.append((t(lang, "obl.evidence_kind"), pack_text(lang, o.evidence.description)))
    blocks: list[Block] = [*_text_blocks(lang, o), KeyValue(tuple(pairs))]
    if c[FAIL]:
        blocks.append(Para(obligation_reason(
            o, lang, c[FAIL], d.by_system.get((r.pack.hash, o.id), ()), pack=r.pack.ref,
            stored=r.examples[0].reason if r.examples else None), "warning"))
    chart = (_chart(lang, t(lang, "chart.title", ref=r.pack.ref, obligation=o.id), r.per_day)
             if sum(1 for v in VERDICTS if c[v]) > 1 else None)
    if chart is not None:
        blocks.append(chart)
    if c[FAIL]:
        if r.examples:
            blocks.append(Table(
                (t(lang, "col.index"), t(lang, "col.record"), t(lang, "col.time"),
                 t(lang, "col.system"), t(lang, "col.model"), t(lang, "col.reason")),
                tuple((str(x.index), x.record_id, format_datetime(lang, x.ts), x.system,
                       x.model, record_reason(o, lang, system=x.system, model=x.model,
                                              pack=r.pack.ref, stored=x.reason))
                      for x in r.examples),
                caption=t(lang, "obl.examples", n=len(r.examples),
                          total=format_count(lang, c[FAIL])),
                align=("r", "l", "l", "l", "l", "l")))
        else:
            blocks.append(Para(t(lang, "obl.no_examples_stored",
                                 total=format_count(lang, c[FAIL])), "note"))
    heading = f"{o.id} — {obligation_title(o, lang)}"
    return Section(heading, blocks, anchor=f"obl-{r.pack.id}-{o.id}")


def _text_cell(lang: str, o: Obligation) -> str:
    """The obligation's text for a table cell, labelled as the pack marks it; a text in
    another language than the report's says so."""
    text = o.text.get(lang)
    shown_in = lang
    if text is None:
        other = "en" if "en" in o.text else next(iter(o.text), None)
        if other is None:
            return t(lang, "obl.no_text")
        text, shown_in = o.text[other], other
    label = t(lang, "obl.text", kind=t(lang, f"kind.{text.kind}"),
              language=lang_name(lang, shown_in))
    return f"{label}\n{text.text}"


def _evidence(lang: str, d: EvidenceData) -> Section | None:
    wanted = [r for r in d.results if r.obligation.evidence is not None
              and r.status in ("evidence_needed", "evidence_supplied")]
    if not wanted:
        return None
    blocks: list[Block] = [Para(t(lang, "ev.intro"))]
    if any(lang not in r.obligation.text for r in wanted):
        blocks.append(Para(t(lang, "obl.text_missing", language=lang_name(lang, "en")), "note"))
    blocks.append(Table(
        (t(lang, "col.obligation"), t(lang, "col.asks"), t(lang, "ev.needed"),
         t(lang, "col.status")),
        tuple((f"{r.obligation.id}\n{r.obligation.citation}\n{r.pack.ref}",
               _text_cell(lang, r.obligation),
               pack_text(lang, r.obligation.evidence.description)
               if r.obligation.evidence else "",
               t(lang, f"status.{r.status}")) for r in wanted)))
    supplied = [(r, ev) for r in wanted for ev, _ in r.supplied]
    if supplied:
        blocks.append(Table(
            (t(lang, "col.obligation"), t(lang, "col.title"), t(lang, "col.sha256"),
             t(lang, "col.supplied"), t(lang, "col.index"), t(lang, "col.record")),
            tuple((f"{r.obligation.id}\n{r.pack.ref}", ev.title, ev.sha256,
                   format_datetime(lang, ev.ts), str(ev.index), ev.record_id)
                  for r, ev in supplied),
            caption=t(lang, "ev.supplied"), align=("l", "l", "l", "l", "r", "l")))
    else:
        blocks.append(Para(t(lang, "ev.none_supplied"), "warning"))
    return Section(t(lang, "sec.evidence"), blocks, anchor="evidence")


_CARRIERS = ("gb45438-metadata", "c2pa", "text-wrapper", "watermark")


def _share(lang: str, n: int, total: int) -> str:
    return f"{format_count(lang, n)} ({n / total:.0%})" if total else "0"


def _labelling(lang: str, d: EvidenceData) -> Section | None:
    """Labelling coverage per system and jurisdiction, by carrier; detection tool."""
    cov = d.labelling
    if cov is None or not cov.rows:
        return None
    blocks: list[Block] = [Para(t(lang, "lab.intro"))]
    carriers = [c for c in _CARRIERS if any(r.carriers[c] for r in cov.rows)]
    blocks.append(Table(
        (t(lang, "col.system"), t(lang, "lab.jurisdiction"), t(lang, "lab.outputs"),
         t(lang, "lab.labelled"), t(lang, "lab.visible"), *carriers, t(lang, "lab.errors")),
        tuple((r.system, r.jurisdiction, format_count(lang, r.outputs),
               _share(lang, r.labelled, r.outputs), _share(lang, r.visible, r.outputs),
               *(_share(lang, r.carriers[c], r.outputs) for c in carriers),
               format_count(lang, r.errors)) for r in cov.rows),
        align=("l", "l", "r", "r", "r", *("r" for _ in carriers), "r")))
    if cov.indexed is None:
        blocks.append(Para(t(lang, "lab.no_detection"), "warning"))
    else:
        blocks.append(Para(t(lang, "lab.detection", indexed=format_count(lang, cov.indexed),
                             outputs=format_count(lang, cov.outputs_with_content))))
    return Section(t(lang, "sec.labelling"), blocks, anchor="labelling")


def _appendix_packs(lang: str, d: EvidenceData) -> Section:
    sec = Section(t(lang, "app.packs"), [Para(t(lang, "app.packs.intro"), "small")],
                  anchor="appendix-packs", new_page=True)
    for p in d.packs:
        until = format_date(lang, p.effective_until) if p.effective_until else t(lang, "open")
        kv = KeyValue((
            (t(lang, "pack.ref"), p.ref),
            (t(lang, "pack.hash"), p.hash),
            (t(lang, "pack.status"), t(lang, f"pstatus.{p.status}")),
            (t(lang, "pack.jurisdiction"), p.jurisdiction),
            (t(lang, "pack.publisher"), _publisher(lang, p.publisher)),
            (t(lang, "pack.in_force"),
             f"{format_date(lang, p.effective_from)} – {until} ({p.timezone})"),
            (t(lang, "pack.sources"), "\n".join(p.sources)),
            (t(lang, "pack.verification"), _verification(lang, p.verification)),
            (t(lang, "pack.obligations"), str(len(p.obligations))),
        ))
        rows = tuple((f"{o.id}\n{o.title or ''}".strip(), _verification(lang, o.verification))
                     for o in p.obligations)
        sec.subsections.append(Section(_pack_title(p, lang), [
            Para(_verification_line(lang, p), "small"), kv,
            Table((t(lang, "col.obligation"), t(lang, "obl.verification")), rows,
                  caption=t(lang, "app.obl_verification"))]))
    return sec


def _appendix_checks(lang: str, d: EvidenceData) -> Section:
    rows = []
    for r in d.results:
        o = r.obligation
        if o.check is None:
            continue
        rows.append((f"{o.id}\n{r.pack.ref}", o.check.applies or "—", o.check.expr))
    return Section(t(lang, "app.checks"), [
        Para(t(lang, "app.checks.intro"), "small"),
        Table((t(lang, "col.obligation"), t(lang, "col.applies"), t(lang, "col.check")),
              tuple(rows))], anchor="appendix-checks", new_page=True)


def _appendix_receipts(lang: str, d: EvidenceData) -> Section:
    cp = d.checkpoint.checkpoint
    blocks: list[Block] = [Para(t(lang, "sec.checkpoint.intro")),
                           Code(d.checkpoint_text, f"{cp.origin} · {cp.size}",
                                download=f"checkpoint-{cp.size}.txt")]
    seen: set[int] = set()
    for r in d.results:
        for x in r.examples:
            if x.index not in seen:
                seen.add(x.index)
                blocks.append(_receipt_code(lang, x.index, x.receipt))
        for ev, rc in r.supplied:
            blocks.append(_receipt_code(lang, ev.index, rc))
    return Section(t(lang, "app.receipts"), blocks, anchor="checkpoint", new_page=True)


def evidence_document(d: EvidenceData, lang: str) -> Document:
    """Lay the gathered facts out as a Document in ``lang`` ("en" or "ja")."""
    check_lang(lang)
    cp = d.checkpoint.checkpoint
    meta = [
        (t(lang, "meta.generated"), format_datetime(lang, d.generated_at)),
        (t(lang, "meta.period"), _period(lang, d.since, d.until)),
        (t(lang, "meta.systems"), d.system or t(lang, "meta.all_systems")),
        (t(lang, "meta.log"), f"{cp.origin} · {format_count(lang, cp.size)}"),
    ]
    shown = [r for r in d.results if r.counts[PASS] or r.counts[FAIL]]
    quiet = len(d.results) - len(shown)
    obl_blocks: list[Block] = []
    if quiet:
        obl_blocks.append(Para(t(lang, "sec.obligations.quiet", n=format_count(lang, quiet)),
                               "small"))
    cover = Section(t(lang, "sec.cover"), [Para(t(lang, "sec.cover.intro"))], anchor="scope",
                    new_page=True)
    for p in d.packs:
        cover.subsections.append(Section(_pack_title(p, lang), [
            *_pack_warnings(lang, p),
            KeyValue(((t(lang, "pack.ref"), p.ref),
                      (t(lang, "pack.status"), t(lang, f"pstatus.{p.status}")),
                      (t(lang, "pack.publisher"), _publisher(lang, p.publisher)),
                      (t(lang, "pack.verification"), _verification_line(lang, p))))]))
    sections = [_exec_summary(lang, d), cover, _summary(lang, d),
                Section(t(lang, "sec.obligations"), obl_blocks,
                        [_obligation(lang, r, d) for r in shown], anchor="obligations")]
    ev = _evidence(lang, d)
    if ev is not None:
        sections.append(ev)
    lab = _labelling(lang, d)
    if lab is not None:
        sections.append(lab)
    sections += [_appendix_packs(lang, d), _appendix_checks(lang, d),
                 _appendix_receipts(lang, d)]
    return Document(t(lang, "title"), lang, t(lang, "subtitle"), meta, sections)


def build_evidence_report(
    ledger: Ledger,
    packs: Sequence[Pack] | None = None,
    *,
    lang: str = "en",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    system: str | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    examples: int = 3,
    run: str | None = None,
    now: datetime | None = None,
    active: Sequence[str] | None = None,
) -> Document:
    """The evidence report as a Document (see the module docstring)."""
    check_lang(lang)
    data = collect_evidence(ledger, packs, since=since, until=until, system=system,
                            systems=systems, examples=examples, run=run, now=now,
                            active=active)
    return evidence_document(data, lang)
