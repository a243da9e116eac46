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

from kansa.errors import KansaError
from kansa.ledger.export import cosigned_note
from kansa.ledger.note import SignedCheckpoint
from kansa.ledger.receipt import make_receipt
from kansa.policy.engine import (
    EVIDENCE_NEEDED,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    VERDICTS,
    FindingStore,
    Judge,
    RunInfo,
    compile_pack,
)
from kansa.policy.pack import Obligation, Pack, parse_pack
from kansa.records.model import parse_ts
from kansa.report.doc import Block, Chart, Code, Document, KeyValue, Para, Section, Table
from kansa.report.evidence_supply import SuppliedEvidence, supplied_evidence
from kansa.report.i18n import (
    check_lang,
    format_count,
    format_date,
    format_datetime,
    lang_name,
    t,
    verdict_name,
)

if TYPE_CHECKING:
    from kansa.api import Ledger

VERDICT_COLORS = {PASS: "#2e7d32", FAIL: "#c62828", NOT_APPLICABLE: "#b0b7bf",
                  EVIDENCE_NEEDED: "#f9a825"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_BARS = 120  # more days than this are charted by week


class ReportError(KansaError):
    """An evidence report cannot be built (unknown pack or run, empty period)."""


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


# -- gathering -----------------------------------------------------------------------------


def _as_utc(value: datetime | str | None, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_ts(value, field_name=what)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


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
    model = e.get("gen_ai.request.model") or e.get("gen_ai.response.model") or ""
    receipt = make_receipt(ledger.log, index, extra=row.data, checkpoint=signed)
    return Example(index, record_id, _EPOCH + timedelta(microseconds=row.ts),
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
            day = (_EPOCH + timedelta(microseconds=row.ts)).date().isoformat()
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
) -> EvidenceData:
    """Gather the report's facts. Counts come from the newest stored replay that judged
    every pack in ``packs`` (or replay ``run``); without ``packs``, from the newest
    replay and all its packs. Raises :class:`ReportError` when there is no such replay
    (run ``kansa replay`` or let ``kansa report evidence`` run one). ``now`` is the
    report's generation time (default: the clock)."""
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
    return EvidenceData(chosen, list(results.values()), signed, note.to_text(), lo, hi, system,
                        info if system is None else None, judged, now or datetime.now(UTC))


# -- the document ----------------------------------------------------------------------------


def _pack_title(p: Pack, lang: str) -> str:
    return p.title_ja if lang == "ja" and p.title_ja else p.title


def _period(lang: str, since: datetime | None, until: datetime | None) -> str:
    a = format_datetime(lang, since) if since else t(lang, "period.open_start")
    b = format_datetime(lang, until) if until else t(lang, "period.open_end")
    return t(lang, "period.range", since=a, until=b)


def _pack_warnings(lang: str, p: Pack) -> list[Block]:
    out: list[Block] = []
    if p.status == "draft":
        out.append(Para(t(lang, "pack.draft_note"), "warning"))
    if p.status == "repealed":
        out.append(Para(t(lang, "pack.repealed_note"), "warning"))
    v = p.verification
    unverified = [o for o in p.obligations
                  if o.verification is None or o.verification.status != "verified"]
    if v is None or v.status != "verified" or unverified:
        status = t(lang, f"verif.{v.status}") if v else t(lang, "verif.none")
        note = (v.note or "") if v else ""
        if unverified:
            note = (note + " " if note else "") + ", ".join(o.id for o in unverified[:12]) + (
                " …" if len(unverified) > 12 else "")
        out.append(Para(t(lang, "pack.unverified_note", status=status, note=note).strip(),
                        "warning"))
    return out


def _verification(lang: str, v: Any) -> str:
    if v is None:
        return t(lang, "verif.none")
    parts = [t(lang, f"verif.{v.status}")]
    if v.checked:
        parts.append(format_date(lang, v.checked))
    if v.against:
        parts.append(str(v.against))
    if v.note:
        parts.append(str(v.note))
    return " · ".join(parts)


def _cover(lang: str, d: EvidenceData) -> Section:
    sec = Section(t(lang, "sec.cover"), [Para(t(lang, "sec.cover.intro"))], anchor="scope")
    for p in d.packs:
        until = format_date(lang, p.effective_until) if p.effective_until else t(lang, "open")
        kv = KeyValue((
            (t(lang, "pack.ref"), p.ref),
            (t(lang, "pack.hash"), p.hash),
            (t(lang, "pack.status"), t(lang, f"pstatus.{p.status}")),
            (t(lang, "pack.jurisdiction"), p.jurisdiction),
            (t(lang, "pack.publisher"), p.publisher),
            (t(lang, "pack.in_force"),
             f"{format_date(lang, p.effective_from)} – {until} ({p.timezone})"),
            (t(lang, "pack.sources"), "\n".join(p.sources)),
            (t(lang, "pack.verification"), _verification(lang, p.verification)),
            (t(lang, "pack.obligations"), str(len(p.obligations))),
        ))
        sec.subsections.append(Section(_pack_title(p, lang), [*_pack_warnings(lang, p), kv]))
    return sec


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


def _summary(lang: str, d: EvidenceData) -> Section:
    rows = []
    total: dict[str, Counter[str]] = {}
    for r in d.results:
        c = r.counts
        rows.append((r.pack.ref, f"{r.obligation.id}: {r.obligation.title or ''}".rstrip(": "),
                     str(r.obligation.citation), t(lang, f"force.{r.obligation.legal_force}"),
                     format_count(lang, c[PASS]), format_count(lang, c[FAIL]),
                     format_count(lang, c[NOT_APPLICABLE]), format_count(lang, c[EVIDENCE_NEEDED]),
                     t(lang, f"status.{r.status}")))
        for day, cnt in r.per_day.items():
            total.setdefault(day, Counter()).update(cnt)
    table = Table(
        (t(lang, "col.pack"), t(lang, "col.obligation"), t(lang, "col.citation"),
         t(lang, "col.force"), t(lang, "col.pass"), t(lang, "col.fail"), t(lang, "col.na"),
         t(lang, "col.evidence"), t(lang, "col.status")),
        tuple(rows), align=("l", "l", "l", "l", "r", "r", "r", "r", "l"))
    blocks: list[Block] = [table]
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
    return Code(receipt.decode("utf-8", "replace"), t(lang, "obl.receipt", index=index))


def _obligation(lang: str, r: ObligationResult) -> Section:
    o = r.obligation
    c = r.counts
    pairs = [
        (t(lang, "col.pack"), r.pack.ref),
        (t(lang, "col.citation"), str(o.citation)),
        (t(lang, "col.force"), t(lang, f"force.{o.legal_force}")),
        (t(lang, "obl.role"), t(lang, f"role.{o.role}")),
        (t(lang, "pack.status"), t(lang, f"pstatus.{o.status}")),
        (t(lang, "obl.counts"), t(lang, "obl.counts_value", pass_=format_count(lang, c[PASS]),
                                  fail=format_count(lang, c[FAIL]),
                                  na=format_count(lang, c[NOT_APPLICABLE]),
                                  ev=format_count(lang, c[EVIDENCE_NEEDED]))),
        (t(lang, "col.status"), t(lang, f"status.{r.status}")),
    ]
    if o.source_url:
        pairs.append((t(lang, "obl.source"), o.source_url))
    pairs.append((t(lang, "obl.verification"), _verification(lang, o.verification)))
    if o.check is not None:
        pairs.append((t(lang, "obl.check"), o.check.expr))
    if o.evidence is not None:
        pairs.append((t(lang, "obl.evidence_kind"), f"{o.evidence.kind}: {o.evidence.description}"))
    blocks: list[Block] = [*_text_blocks(lang, o), KeyValue(tuple(pairs))]
    chart = _chart(lang, t(lang, "chart.title", ref=r.pack.ref, obligation=o.id), r.per_day)
    if chart is not None:
        blocks.append(chart)
    if c[FAIL]:
        if r.examples:
            blocks.append(Table(
                (t(lang, "col.index"), t(lang, "col.record"), t(lang, "col.time"),
                 t(lang, "col.system"), t(lang, "col.model"), t(lang, "col.reason")),
                tuple((str(x.index), x.record_id, format_datetime(lang, x.ts), x.system,
                       x.model, x.reason) for x in r.examples),
                caption=t(lang, "obl.examples", n=len(r.examples),
                          total=format_count(lang, c[FAIL])),
                align=("r", "l", "l", "l", "l", "l")))
            blocks.extend(_receipt_code(lang, x.index, x.receipt) for x in r.examples)
        else:
            blocks.append(Para(t(lang, "obl.no_examples_stored",
                                 total=format_count(lang, c[FAIL])), "note"))
    heading = f"{o.id} — {o.title}" if o.title else o.id
    return Section(heading, blocks, anchor=f"obl-{r.pack.id}-{o.id}")


def _evidence(lang: str, d: EvidenceData) -> Section | None:
    wanted = [r for r in d.results if r.obligation.evidence is not None]
    if not wanted:
        return None
    sec = Section(t(lang, "sec.evidence"), [Para(t(lang, "ev.intro"))], anchor="evidence")
    for r in wanted:
        o = r.obligation
        assert o.evidence is not None
        blocks: list[Block] = [KeyValue((
            (t(lang, "col.pack"), r.pack.ref),
            (t(lang, "col.citation"), str(o.citation)),
            (t(lang, "ev.needed"), f"{o.evidence.kind}: {o.evidence.description}"),
            (t(lang, "col.status"), t(lang, f"status.{r.status}")),
        ))]
        if not r.supplied:
            blocks.append(Para(t(lang, "ev.none_supplied"), "warning"))
        else:
            blocks.append(Table(
                (t(lang, "col.title"), t(lang, "col.sha256"), t(lang, "col.supplied"),
                 t(lang, "col.index"), t(lang, "col.record")),
                tuple((ev.title, ev.sha256, format_datetime(lang, ev.ts), str(ev.index),
                       ev.record_id) for ev, _ in r.supplied),
                caption=t(lang, "ev.supplied"), align=("l", "l", "l", "r", "l")))
            blocks.extend(_receipt_code(lang, ev.index, rc) for ev, rc in r.supplied)
        sec.subsections.append(Section(f"{r.pack.ref} {o.id}", blocks))
    return sec


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
    if d.run is not None:
        meta.append((t(lang, "meta.replay"), t(
            lang, "meta.replay_value", run=d.run.run_id,
            when=format_datetime(lang, d.run.started_at),
            records=format_count(lang, d.records_judged))))
    sections = [_cover(lang, d), _summary(lang, d),
                Section(t(lang, "sec.obligations"), [],
                        [_obligation(lang, r) for r in d.results], anchor="obligations")]
    ev = _evidence(lang, d)
    if ev is not None:
        sections.append(ev)
    sections.append(Section(t(lang, "sec.checkpoint"), [
        Para(t(lang, "sec.checkpoint.intro")),
        Code(d.checkpoint_text, f"{cp.origin} · {cp.size}"),
    ], anchor="checkpoint"))
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
) -> Document:
    """The evidence report as a Document (see the module docstring)."""
    check_lang(lang)
    data = collect_evidence(ledger, packs, since=since, until=until, system=system,
                            systems=systems, examples=examples, run=run, now=now)
    return evidence_document(data, lang)
