"""Serious-incident report drafts with their legal deadlines.

A record documents an incident when its attribute ``kansa.incident`` names a category
(``serious``, ``death``, ``critical_infrastructure``, ``widespread_infringement``; see
docs/VOCABULARY.md). For each such record and each rule-pack obligation with an
``incident`` block that applies to it (judged by the policy engine under the pack version
in force at the record's time, with the system's facts), the document holds one draft:
to whom to report, the deadline, the time left (or OVERDUE) at ``now``, the record's
ledger index with a C2SP tlog-proof receipt, and the fields a regulator asks for that no
record can fill, marked to be completed.

Deadlines. The clock starts at the record's time, taken as the moment the organisation
became aware of the incident (the documents say so: if awareness came later, the
organisation recomputes). An obligation's first deadline is its general case; a later
one applies when its case names the incident's category (a death, critical
infrastructure, a widespread infringement); the shortest applicable deadline binds.
Other cases (say, an imminent danger) depend on facts a record does not hold: they are
listed with their own deadline for a person to judge, never silently applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from kansa._time import from_us
from kansa.ledger.follower import Follower
from kansa.records.attributes import (
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    KANSA_INCIDENT,
)
from kansa.report.doc import Code, Document, KeyValue, Para, Section, Table
from kansa.report.drafting import JST, TBC, ReportDraftError, fmt_time, to_us
from kansa.report.i18n import Strings, check_lang
from kansa.report.reasons import engine_reason
from kansa.report.usage_scan import MarkedRecord

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.ledger.storage import Store
    from kansa.policy.pack import Deadline, Obligation, Pack

CATEGORIES = ("serious", "death", "critical_infrastructure", "widespread_infringement")
# words a deadline's case must contain to be the one for a category
_CASE_WORDS: dict[str, tuple[str, ...]] = {
    "death": ("death of a person",),
    "critical_infrastructure": ("critical infrastructure",),
    "widespread_infringement": ("widespread infringement",),
}
_BATCH = 8192
_MARK = f'"{KANSA_INCIDENT}"'.encode()  # the key, as it is in an entry's bytes


# -- finding incidents --------------------------------------------------------------------------


def find_incidents(store: Store, *, since: datetime | str | None = None,
                   until: datetime | str | None = None) -> list[MarkedRecord]:
    """Every record carrying ``kansa.incident``, in log order (a follower: only entries
    whose bytes mention the attribute leave the store and are parsed)."""
    follower = Follower(store, match=_MARK, since_us=to_us(since), until_us=to_us(until),
                        batch=_BATCH * 8)
    out = []
    for idx, ts, raw in follower.read():
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ReportDraftError(f"entry {idx} is not a JSON record") from None
        attrs = entry.get("attributes") if isinstance(entry, dict) else None
        if isinstance(attrs, dict) and isinstance(attrs.get(KANSA_INCIDENT), str):
            out.append(MarkedRecord(int(idx), int(ts), entry))
    return out


# -- deadlines ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseDeadline:
    case: str
    within_hours: int
    due_us: int
    applies: str  # "general" | "category" | "conditional"


@dataclass(frozen=True)
class Clock:
    """The deadline that binds for one incident under one obligation."""

    aware_us: int
    binding: CaseDeadline
    cases: tuple[CaseDeadline, ...]

    def remaining(self, now_us: int) -> timedelta:
        return timedelta(microseconds=self.binding.due_us - now_us)

    def overdue(self, now_us: int) -> bool:
        # at the deadline instant itself the report is still on time
        return now_us > self.binding.due_us


def _matches(case: str, category: str) -> bool:
    text = case.lower()
    return any(w in text for w in _CASE_WORDS.get(category, ()))


def clock(deadlines: Sequence[Deadline], category: str, aware_us: int) -> Clock:
    """Which deadline binds an incident of ``category`` of which kansa became aware at
    ``aware_us``: the shortest of the general case (the first) and the cases naming the
    category."""
    if not deadlines:
        raise ReportDraftError("an incident block without deadlines cannot be drafted")
    cases = []
    for i, d in enumerate(deadlines):
        kind = "general" if i == 0 else "category" if _matches(d.case, category) \
            else "conditional"
        cases.append(CaseDeadline(d.case, d.within_hours,
                                  aware_us + d.within_hours * 3_600_000_000, kind))
    binding = min((c for c in cases if c.applies != "conditional"),
                  key=lambda c: (c.within_hours, cases.index(c)))
    return Clock(aware_us, binding, tuple(cases))


def _duration(lang: str, td: timedelta) -> str:
    secs = int(abs(td).total_seconds())
    d, rem = divmod(secs, 86_400)
    h, rem = divmod(rem, 3_600)
    m = rem // 60
    if lang == "ja":
        return (f"{d}日" if d else "") + f"{h}時間{m}分"
    return (f"{d} d " if d else "") + f"{h} h {m} min"


# -- applicability ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    incident: MarkedRecord
    pack: Pack
    obligation: Obligation
    clock: Clock


@dataclass(frozen=True)
class Skipped:
    incident: MarkedRecord
    ref: str  # pack@version#obligation
    reason: str


def plan_drafts(incidents: Sequence[MarkedRecord], packs: Sequence[Pack],
                systems: Mapping[str, Mapping[str, Any]] | None = None
                ) -> tuple[list[Draft], list[Skipped]]:
    """One draft per incident per applicable obligation with an incident block; and the
    obligations that did not apply, with the engine's reason."""
    from kansa.policy.judging import NOT_APPLICABLE, judge

    reporting = [p for p in packs if any(o.incident for o in p.obligations)]
    by_hash = {p.hash: p for p in reporting}
    drafts, skipped = [], []
    for inc in incidents:
        category = str(inc.entry["attributes"][KANSA_INCIDENT])
        for f in judge(inc.entry, reporting, index=inc.index, systems=systems):
            pack = by_hash[f.pack_hash]
            o = pack.obligation(f.obligation)
            if o.incident is None:
                continue
            if f.verdict == NOT_APPLICABLE:
                skipped.append(Skipped(inc, f"{pack.ref}#{o.id}", f.reason))
                continue
            drafts.append(Draft(inc, pack, o, clock(o.incident.deadlines, category,
                                                     inc.ts_us)))
    return drafts, skipped


# -- the document -------------------------------------------------------------------------------

_S: dict[str, dict[str, str]] = {
    "en": {
        "title": "Serious incident report drafts",
        "subtitle": "One draft per recorded incident and applicable reporting duty",
        "m.generated": "Generated (\"now\" for the clocks)", "m.log": "Ledger",
        "m.incidents": "Incidents recorded", "m.drafts": "Drafts",
        "about": "About these drafts",
        "draft": "DRAFTS, NOT REPORTS. kansa prefilled them from the ledger; nothing here "
                 "has been sent to any authority. Fields marked \"TO BE COMPLETED BY THE "
                 "ORGANISATION\" must be written by a person before a report is filed on the "
                 "authority's own form.",
        "assume": "Deadlines are counted from the time of the record that documents the "
                  "incident, taken as the moment the organisation became aware of it. If "
                  "the organisation became aware later (or earlier), the deadline moves with "
                  "it. The first deadline of each duty is its general case; a later one "
                  "applies when its case names the incident's category, and the shortest "
                  "applicable one binds. Cases that depend on facts no record holds are "
                  "listed for a person to judge.",
        "s.summary": "Deadlines at a glance",
        "h.index": "Ledger index", "h.category": "Category", "h.duty": "Duty",
        "h.deadline": "Deadline", "h.status": "Status", "h.case": "Case",
        "h.within": "Within", "h.applies": "Applies",
        "overdue": "OVERDUE by {d}", "left": "{d} left", "due.now": "due now",
        "none": "No record marks an incident: nothing to report.",
        "nodraft": "No draft: no reporting duty in the packs applies to the recorded "
                   "incidents (see below).",
        "s.draft": "Incident at ledger index {index}: {pack}, {citation}",
        "k.report_to": "Report to", "k.law": "Duty", "k.force": "Legal force, status",
        "k.category": "Incident category (kansa.incident)", "k.record": "Record id",
        "k.index": "Ledger index", "k.system": "AI system", "k.aware": "Aware since "
                   "(time of the record; assumption)",
        "k.case": "Binding case", "k.deadline": "Deadline", "k.status": "At {now}",
        "applies.general": "yes (general case)", "applies.category": "yes (names the "
                           "category)",
        "applies.conditional": "only if this case applies: to be judged by the "
                               "organisation",
        "hours": "{h} h",
        "cap.cases": "Every deadline of this duty",
        "cap.record": "What the record shows",
        "h.field": "Field", "h.value": "Value",
        "s.fields": "Fields the authority asks for that no record can fill",
        "f.1": "Description of the incident and of the harm (what happened, to whom)",
        "f.2": "Where it occurred (Member State / state, site)",
        "f.3": "When it occurred, and when the organisation actually became aware",
        "f.4": "Causal link between the AI system and the incident (established or likely)",
        "f.5": "Persons affected and their number",
        "f.6": "Corrective and mitigating measures taken or planned",
        "f.7": "Identification of the AI system (name, version, registration number)",
        "f.8": "Reporting organisation, contact person and role (provider, deployer, "
               "developer)",
        "receipt": "Receipt: C2SP tlog-proof for ledger index {index}; verify with "
                   "'kansa verify-receipt' and the log's verifier key. It proves the entry "
                   "above was in the log when the checkpoint was signed.",
        "s.skipped": "Reporting duties that did not apply",
        "skipped.note": "Judged with the system facts given; supply facts (e.g. high_risk, "
                        "roles, jurisdictions) if a duty should apply.",
        "h.reason": "Why not",
    },
    "ja": {
        "title": "重大インシデント報告書案",
        "subtitle": "記録されたインシデントと適用される報告義務ごとの案",
        "m.generated": "作成日時（期限計算の基準時刻）", "m.log": "台帳",
        "m.incidents": "記録されたインシデント", "m.drafts": "報告書案",
        "about": "この案について",
        "draft": "これは報告書案であり、報告ではありません。kansa が台帳から記入したもので、"
                 "どの当局にも送信されていません。「組織による記入が必要」と記した項目は、"
                 "当局所定の様式で報告する前に担当者が記入してください。",
        "assume": "期限は、インシデントを記録した記録の時刻を組織が認識した時点とみなして"
                  "起算しています。実際の認識がそれより後（又は前）であれば期限もそれに応じて"
                  "移動します。各義務の最初の期限が一般の場合であり、後の期限はその場合の"
                  "記述がインシデントの区分に当たるときに適用され、適用される期限のうち最も"
                  "短いものが拘束力を持ちます。記録からは分からない事実に依存する場合は、"
                  "担当者が判断できるよう一覧に示します。",
        "s.summary": "期限の一覧",
        "h.index": "台帳番号", "h.category": "区分", "h.duty": "義務",
        "h.deadline": "期限", "h.status": "状態", "h.case": "場合",
        "h.within": "期間", "h.applies": "適用",
        "overdue": "期限超過（{d}）", "left": "残り {d}", "due.now": "まさに期限",
        "none": "インシデントを示す記録はありません。報告対象はありません。",
        "nodraft": "報告書案なし：記録されたインシデントに適用される報告義務がパックに"
                   "ありません（下記参照）。",
        "s.draft": "台帳番号 {index} のインシデント：{pack} {citation}",
        "k.report_to": "報告先", "k.law": "義務", "k.force": "法的効力・状態",
        "k.category": "インシデント区分（kansa.incident）", "k.record": "記録ID",
        "k.index": "台帳番号", "k.system": "AIシステム",
        "k.aware": "認識時点（記録の時刻とみなす）",
        "k.case": "適用される場合", "k.deadline": "期限", "k.status": "{now} 時点",
        "applies.general": "適用（一般の場合）", "applies.category": "適用（区分に該当）",
        "applies.conditional": "この場合に当たるときのみ：組織が判断",
        "hours": "{h} 時間",
        "cap.cases": "この義務のすべての期限",
        "cap.record": "記録に含まれる内容",
        "h.field": "項目", "h.value": "値",
        "s.fields": "当局が求めるが記録からは記入できない項目",
        "f.1": "インシデントと被害の内容（何が、誰に起きたか）",
        "f.2": "発生場所（加盟国・州、拠点）",
        "f.3": "発生日時と、組織が実際に認識した日時",
        "f.4": "AIシステムとインシデントの因果関係（確認済み又は可能性）",
        "f.5": "影響を受けた者とその人数",
        "f.6": "講じた又は予定する是正・軽減措置",
        "f.7": "AIシステムの識別情報（名称、版、登録番号）",
        "f.8": "報告する組織、担当者と役割（提供者、導入者、開発者）",
        "receipt": "受領証：台帳番号 {index} の C2SP tlog-proof。'kansa verify-receipt' と"
                   "ログの検証鍵で検証できます。チェックポイント署名時に上記エントリがログに"
                   "含まれていたことを証明します。",
        "s.skipped": "適用されなかった報告義務",
        "skipped.note": "与えられたシステム情報で判定しました。適用されるべき義務があれば"
                        "情報（high_risk、roles、jurisdictions など）を与えてください。",
        "h.reason": "理由",
    },
}


_t = Strings(_S, "report.incidents")


def _status(lang: str, c: Clock, now_us: int) -> str:
    if c.overdue(now_us):
        return _t(lang, "overdue", d=_duration(lang, c.remaining(now_us)))
    if c.binding.due_us == now_us:
        return _t(lang, "due.now")
    return _t(lang, "left", d=_duration(lang, c.remaining(now_us)))


def _deadline(lang: str, due_us: int) -> str:
    s = from_us(due_us).strftime("%Y-%m-%d %H:%M:%S UTC")
    if lang == "ja":
        s += " / " + from_us(due_us).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")
    return s


_RECORD_FIELDS = ("kind", "ts", "system", "app", "outcome", GEN_AI_PROVIDER_NAME,
                  GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, GEN_AI_OPERATION_NAME,
                  ERROR_TYPE, "subject")


def _record_table(lang: str, entry: Mapping[str, Any]) -> Table:
    rows = [(k, str(entry[k])) for k in _RECORD_FIELDS if k in entry]
    attrs = entry.get("attributes")
    if isinstance(attrs, dict):
        rows += [(f"attributes.{k}", str(v)) for k, v in sorted(attrs.items())]
    return Table((_t(lang, "h.field"), _t(lang, "h.value")), tuple(rows),
                 caption=_t(lang, "cap.record"))


def _draft_section(lang: str, d: Draft, now_us: int, receipt: str | None) -> Section:
    o, c, e = d.obligation, d.clock, d.incident.entry
    assert o.incident is not None
    title = d.pack.title_ja if lang == "ja" and d.pack.title_ja else d.pack.title
    sec = Section(_t(lang, "s.draft", index=d.incident.index, pack=title,
                     citation=str(o.citation)),
                  anchor=f"incident-{d.incident.index}-{d.pack.id}-{o.id}".replace("/", "-"))
    sec.blocks.append(KeyValue((
        (_t(lang, "k.report_to"), o.incident.report_to),
        (_t(lang, "k.law"), f"{d.pack.ref}#{o.id} ({o.citation})"
                            + (f": {o.title}" if o.title else "")),
        (_t(lang, "k.force"), f"{o.legal_force}, {o.status}"),
        (_t(lang, "k.category"), str(e["attributes"][KANSA_INCIDENT])),
        (_t(lang, "k.record"), str(e.get("id", ""))),
        (_t(lang, "k.index"), str(d.incident.index)),
        (_t(lang, "k.system"), str(e.get("system", ""))),
        (_t(lang, "k.aware"), fmt_time(c.aware_us, lang)),
        (_t(lang, "k.case"), f"{c.binding.case} ({_t(lang, 'hours', h=c.binding.within_hours)})"),
        (_t(lang, "k.deadline"), _deadline(lang, c.binding.due_us)),
        (_t(lang, "k.status", now=fmt_time(now_us, lang)), _status(lang, c, now_us)),
    )))
    sec.blocks.append(Table(
        (_t(lang, "h.case"), _t(lang, "h.within"), _t(lang, "h.deadline"),
         _t(lang, "h.applies")),
        tuple((cd.case, _t(lang, "hours", h=cd.within_hours), _deadline(lang, cd.due_us),
               _t(lang, f"applies.{cd.applies}")) for cd in c.cases),
        caption=_t(lang, "cap.cases"), align=("l", "r", "l", "l")))
    sec.blocks.append(_record_table(lang, e))
    sec.subsections.append(Section(_t(lang, "s.fields"), [KeyValue(
        tuple((_t(lang, f"f.{i}"), TBC[lang]) for i in range(1, 9)))]))
    if receipt is not None:
        sec.blocks.append(Code(receipt, caption=_t(lang, "receipt", index=d.incident.index)))
    return sec


def build_incident_drafts(
    ledger: Ledger,
    *,
    lang: str = "en",
    packs: Sequence[Pack] | None = None,
    now: datetime | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    receipts: bool = True,
) -> Document:
    """The incident drafts document. ``packs`` default to the bundled packs; ``systems``
    are the facts the packs' applicability tests read; ``now`` is when the clocks are
    read (default: the current time)."""
    check_lang(lang)
    if packs is None:
        from kansa.policy.bundled import bundled_packs

        packs = bundled_packs()
    now_us = to_us(now or datetime.now(UTC))
    assert now_us is not None
    incidents = find_incidents(ledger.log.store, since=since, until=until)
    drafts, skipped = plan_drafts(incidents, packs, systems)
    drafts.sort(key=lambda d: (d.clock.binding.due_us, d.incident.index, d.pack.ref,
                               d.obligation.id))
    doc = Document(title=_t(lang, "title"), lang=lang, subtitle=_t(lang, "subtitle"),
                   meta=[(_t(lang, "m.generated"), fmt_time(now_us, lang)),
                         (_t(lang, "m.log"), str(ledger.log.origin)),
                         (_t(lang, "m.incidents"), str(len(incidents))),
                         (_t(lang, "m.drafts"), str(len(drafts)))])
    doc.sections.append(Section(_t(lang, "about"), [Para(_t(lang, "draft"), "warning"),
                                                    Para(_t(lang, "assume"), "note")],
                                anchor="about"))
    summary = Section(_t(lang, "s.summary"), anchor="summary")
    if not incidents:
        summary.blocks.append(Para(_t(lang, "none")))
    elif not drafts:
        summary.blocks.append(Para(_t(lang, "nodraft"), "warning"))
    else:
        summary.blocks.append(Table(
            tuple(_t(lang, k) for k in ("h.index", "h.category", "h.duty", "h.deadline",
                                        "h.status")),
            tuple((str(d.incident.index), str(d.incident.entry["attributes"][KANSA_INCIDENT]),
                   f"{d.pack.ref} {d.obligation.citation}",
                   _deadline(lang, d.clock.binding.due_us), _status(lang, d.clock, now_us))
                  for d in drafts), align=("r", "l", "l", "l", "l")))
    doc.sections.append(summary)
    proofs: dict[int, str] = {}
    for d in drafts:
        receipt = None
        if receipts:
            if d.incident.index not in proofs:
                proofs[d.incident.index] = ledger.prove(d.incident.index).decode()
            receipt = proofs[d.incident.index]
        doc.sections.append(_draft_section(lang, d, now_us, receipt))
    if skipped:
        doc.sections.append(Section(_t(lang, "s.skipped"), [
            Para(_t(lang, "skipped.note"), "note"),
            Table((_t(lang, "h.index"), _t(lang, "h.duty"), _t(lang, "h.reason")),
                  tuple((str(s.incident.index), s.ref, engine_reason(lang, s.reason))
                        for s in skipped),
                  align=("r", "l", "l"))], anchor="skipped"))
    return doc
