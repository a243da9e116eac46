"""A prefilled draft of the OECD Hiroshima AI Process (HAIP) reporting framework report.

The framework's questionnaire has seven sections. Their titles and scopes come from the
bundled pack ``intl.oecd/haip-reporting`` (obligations ``section-1`` ... ``section-7``);
a table of our own stands in when the pack is absent. kansa fills in only what its
records and configuration show (controls of the ledger, models and providers used and
their volumes, incidents recorded, the share of outputs carrying provenance marks) and
marks every answer a person must write as to be completed by the organisation. The
document is a draft to prepare a submission, never the submission itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kansa.records.attributes import KANSA_INCIDENT
from kansa.report.design import control_rows
from kansa.report.doc import Block, Document, KeyValue, Para, Section, Table
from kansa.report.drafting import TBC, fmt_time, to_us
from kansa.report.i18n import Strings, check_lang
from kansa.report.setup_facts import Setup, gather_setup
from kansa.report.usage_scan import Usage, scan_usage

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.home import Home
    from kansa.ledger.storage import Store
    from kansa.policy.pack import Pack

HAIP_PACK = "intl.oecd/haip-reporting"
SECTIONS = 7


@dataclass(frozen=True)
class SectionInfo:
    number: int
    title: str
    scope: str | None  # the pack's summary of what the section asks, if known
    scope_kind: str | None  # official | translation | summary


# Used when the pack is not installed. Titles as the OECD lists the seven thematic areas;
# the Japanese ones are kansa's translations.
_FALLBACK: dict[str, tuple[str, ...]] = {
    "en": ("Risk identification and evaluation",
           "Risk management and information security",
           "Transparency reporting on advanced AI systems",
           "Organizational governance, incident management and transparency",
           "Content authentication and provenance mechanisms",
           "Research and investment to advance AI safety and mitigate societal risks",
           "Advancement of human and global interests"),
    "ja": ("リスクの特定と評価",
           "リスク管理と情報セキュリティ",
           "高度なAIシステムに関する透明性の報告",
           "組織のガバナンス、インシデント管理と透明性",
           "コンテンツ認証と来歴の仕組み",
           "AIの安全性向上と社会的リスク低減のための研究・投資",
           "人類とグローバルな利益の推進"),
}

_S: dict[str, dict[str, str]] = {
    "en": {
        "title": "OECD HAIP reporting framework: report draft",
        "subtitle": "Hiroshima AI Process International Code of Conduct for Organizations "
                    "Developing Advanced AI Systems",
        "m.org": "Organisation", "m.generated": "Generated", "m.log": "Ledger",
        "m.period": "Records from", "m.source": "Section titles from",
        "src.pack": "rule pack {ref} ({hash})",
        "src.fallback": "kansa's built-in table (the pack {pack} is not available)",
        "all": "the whole log", "to": "to", "about": "About this draft",
        "draft": "DRAFT, NOT A SUBMISSION. kansa prefilled this draft from its ledger and "
                 "configuration; it invents nothing. Every answer marked \"TO BE COMPLETED "
                 "BY THE ORGANISATION\" must be written by the organisation, and every "
                 "prefilled figure should be checked, before anything is submitted through "
                 "the OECD's reporting platform.",
        "s.n": "Section {n}: {title}",
        "scope": "What the section covers ({kind}):",
        "kind.summary": "kansa's summary", "kind.translation": "translation",
        "kind.official": "official text",
        "answers": "The organisation's answers to this section's questions",
        "prefilled": "Prefilled from the ledger (check before use)",
        "nothing": "Nothing in the ledger or configuration answers this section.",
        "s1.runs": "Recorded usage was checked against these rule pack versions (kansa "
                   "replay); failing findings stored per pack:",
        "s1.none": "No rule-pack replay is stored in this ledger.",
        "h.pack": "Pack", "h.failing": "Failing findings",
        "h.control": "Control", "h.state": "State", "h.evidence": "Evidence / how to check",
        "s2.intro": "Controls over the record of AI use, as configured and recorded:",
        "s3.intro": "AI systems, providers and models used, with call volumes:",
        "h.system": "System", "h.records": "Records", "h.first": "First seen",
        "h.last": "Last seen", "h.provider": "Provider", "h.model": "Model",
        "h.calls": "Calls", "none": "(none)",
        "s3.disclosure": "Records stating the person was told they were dealing with AI "
                         "(kansa.ai_disclosure): {n} of {total} model calls.",
        "s4.incidents": "Incidents recorded (records with kansa.incident), by category:",
        "s4.none": "No record in the period is marked as an incident.",
        "h.category": "Category", "h.count": "Records", "h.indices": "Ledger indices",
        "s4.gov": "Rule-pack activation history in the ledger: {n} interval(s); active "
                  "now: {active}.",
        "s5.share": "Successful model calls whose output carries a machine-readable mark "
                    "(kansa.output.label.machine_readable): {n} of {total} ({pct}).",
        "s5.visible": "... with a visible AI label (kansa.output.label.visible): {n}.",
        "h.mark": "Mark", "s5.none": "No successful model call is recorded in the period.",
        "more": "and {n} more",
    },
    "ja": {
        "title": "OECD HAIP 報告枠組み：報告書案",
        "subtitle": "高度なAIシステムを開発する組織向けの広島プロセス国際行動規範",
        "m.org": "組織", "m.generated": "作成日時", "m.log": "台帳",
        "m.period": "対象期間", "m.source": "セクション名の出典",
        "src.pack": "ルールパック {ref}（{hash}）",
        "src.fallback": "kansa 内蔵の表（パック {pack} が利用できないため）",
        "all": "ログ全体", "to": "〜", "about": "この案について",
        "draft": "これは報告書案であり、提出物ではありません。kansa が台帳と設定から"
                 "記入したもので、事実を創作してはいません。「組織による記入が必要」と"
                 "記した回答はすべて組織が記入し、記入済みの数値も確認したうえで、OECD の"
                 "報告プラットフォームから提出してください。",
        "s.n": "セクション {n}：{title}",
        "scope": "このセクションの対象（{kind}）：",
        "kind.summary": "kansa による要約", "kind.translation": "翻訳",
        "kind.official": "公式文",
        "answers": "このセクションの質問に対する組織の回答",
        "prefilled": "台帳から記入した内容（利用前に確認のこと）",
        "nothing": "台帳と設定には、このセクションに答える情報がありません。",
        "s1.runs": "記録された利用を次のルールパック版で検査済み（kansa replay）。パックごとの"
                   "不適合の判定数：",
        "s1.none": "この台帳には保存されたルールパックの再判定がありません。",
        "h.pack": "パック", "h.failing": "不適合の判定",
        "h.control": "管理策", "h.state": "状態", "h.evidence": "証拠・確認方法",
        "s2.intro": "AI 利用の記録に関する管理策（設定と記録による）：",
        "s3.intro": "利用した AI システム・提供者・モデルと呼び出し数：",
        "h.system": "システム", "h.records": "記録数", "h.first": "初回",
        "h.last": "最終", "h.provider": "提供者", "h.model": "モデル",
        "h.calls": "呼び出し数", "none": "（なし）",
        "s3.disclosure": "AI と対話していることを本人に伝えたと記録されたもの"
                         "（kansa.ai_disclosure）：モデル呼び出し {total} 件中 {n} 件。",
        "s4.incidents": "記録されたインシデント（kansa.incident を持つ記録）の区分別件数：",
        "s4.none": "期間内にインシデントとされた記録はありません。",
        "h.category": "区分", "h.count": "記録数", "h.indices": "台帳番号",
        "s4.gov": "台帳上のルールパック有効化履歴：{n} 期間。現在有効：{active}。",
        "s5.share": "出力に機械可読な表示（kansa.output.label.machine_readable）がある成功した"
                    "モデル呼び出し：{total} 件中 {n} 件（{pct}）。",
        "s5.visible": "うち目に見える AI 表示（kansa.output.label.visible）があるもの：{n} 件。",
        "h.mark": "表示の種類", "s5.none": "期間内に成功したモデル呼び出しの記録はありません。",
        "more": "ほか {n} 件",
    },
}


_t = Strings(_S, "report.haip")


def _first_sentence(text: str) -> str | None:
    """A pack's Japanese summary opens with the section's title, ending at "。"."""
    head = text.split("。", 1)[0].strip()
    return head if 0 < len(head) <= 40 else None


def haip_pack(packs: list[Pack] | None = None) -> Pack | None:
    """The newest ``intl.oecd/haip-reporting`` among ``packs`` (default: the bundled ones)."""
    if packs is None:
        from kansa.policy.bundled import bundled_packs

        packs = bundled_packs()
    found = [p for p in packs if p.id == HAIP_PACK]
    return max(found, key=lambda p: p.effective_from) if found else None


def section_infos(lang: str, pack: Pack | None) -> list[SectionInfo]:
    """The seven sections, titled from the pack where it has them, else our table."""
    out = []
    for n in range(1, SECTIONS + 1):
        title, scope, kind = _FALLBACK[lang][n - 1], None, None
        if pack is not None:
            try:
                o = pack.obligation(f"section-{n}")
            except KeyError:
                o = None
            if o is not None:
                text = o.text.get(lang) or o.text.get("en")
                if text is not None:
                    scope, kind = text.text, text.kind
                if lang == "en" and o.title:
                    title = o.title
                elif lang == "ja" and "ja" in o.text:
                    title = _first_sentence(o.text["ja"].text) or title
        out.append(SectionInfo(n, title, scope, kind))
    return out


def failing_by_pack(store: Store) -> list[tuple[str, int]]:
    """Failing findings stored per pack version (replays keep one row per failure)."""
    from kansa.policy.findings_store import FindingStore

    return [(f"{p}@{v}", n) for p, v, n in FindingStore(store).failing_by_pack()]


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "—"


def _indices(lang: str, idx: list[int], most: int = 20) -> str:
    s = ", ".join(str(i) for i in idx[:most])
    return s + (f" ({_t(lang, 'more', n=len(idx) - most)})" if len(idx) > most else "")


def _prefill(lang: str, n: int, u: Usage, setup: Setup, store: Store) -> list[Block]:
    """What records and configuration answer in section ``n`` (empty: nothing)."""
    none = _t(lang, "none")
    if n == 1:
        judged = [f"{p}@{v}" for p, v, _ in setup.judged]
        if not judged:
            return [Para(_t(lang, "s1.none"))]
        failing = dict(failing_by_pack(store))
        return [Para(_t(lang, "s1.runs")),
                Table((_t(lang, "h.pack"), _t(lang, "h.failing")),
                      tuple((ref, f"{failing.get(ref, 0):,}") for ref in judged),
                      align=("l", "r"))]
    if n == 2:
        return [Para(_t(lang, "s2.intro")),
                Table((_t(lang, "h.control"), _t(lang, "h.state"), _t(lang, "h.evidence")),
                      tuple(control_rows(lang, u, setup)))]
    if n == 3:
        systems = Table(
            (_t(lang, "h.system"), _t(lang, "h.records"), _t(lang, "h.first"),
             _t(lang, "h.last")),
            tuple((name or "—", f"{st.count:,}", fmt_time(st.first_us, lang),
                   fmt_time(st.last_us, lang)) for name, st in sorted(u.systems.items())),
            align=("l", "r", "l", "l"))
        models = Table(
            (_t(lang, "h.provider"), _t(lang, "h.model"), _t(lang, "h.calls")),
            tuple((p or none, resp or req or none, f"{st.count:,}")
                  for (p, req, resp), st in sorted(u.models.items())),
            align=("l", "l", "r"))
        calls = u.kinds.get("gen_ai.call", 0)
        return [Para(_t(lang, "s3.intro")), systems, models,
                Para(_t(lang, "s3.disclosure", n=f"{u.disclosed:,}", total=f"{calls:,}"))]
    if n == 4:
        out: list[Block] = []
        if u.incidents:
            by: dict[str, list[int]] = {}
            for r in u.incidents:
                by.setdefault(str(r.entry["attributes"][KANSA_INCIDENT]), []).append(r.index)
            out += [Para(_t(lang, "s4.incidents")),
                    Table((_t(lang, "h.category"), _t(lang, "h.count"), _t(lang, "h.indices")),
                          tuple((c, f"{len(ix):,}", _indices(lang, ix))
                                for c, ix in sorted(by.items())), align=("l", "r", "l"))]
        else:
            out.append(Para(_t(lang, "s4.none")))
        active = [a.ref for a in setup.activations if a.until is None]
        out.append(Para(_t(lang, "s4.gov", n=len(setup.activations),
                           active=", ".join(active) or "—")))
        return out
    if n == 5:
        if not u.outputs:
            return [Para(_t(lang, "s5.none"))]
        out = [Para(_t(lang, "s5.share", n=f"{u.labelled:,}", total=f"{u.outputs:,}",
                       pct=_pct(u.labelled, u.outputs))),
               Para(_t(lang, "s5.visible", n=f"{u.visibly_labelled:,}"))]
        if u.marks:
            out.append(Table((_t(lang, "h.mark"), _t(lang, "h.count")),
                             tuple((m, f"{c:,}") for m, c in sorted(u.marks.items())),
                             align=("l", "r")))
        return out
    return []


def _section(lang: str, info: SectionInfo, prefill: list[Block]) -> Section:
    sec = Section(_t(lang, "s.n", n=info.number, title=info.title), [],
                  anchor=f"section-{info.number}")
    if info.scope:
        sec.blocks.append(Para(_t(lang, "scope", kind=_t(lang, f"kind.{info.scope_kind}"))
                               + " " + info.scope, "small"))
    sec.blocks.append(KeyValue(((_t(lang, "answers"), TBC[lang]),)))
    sec.subsections.append(Section(_t(lang, "prefilled"),
                                   prefill or [Para(_t(lang, "nothing"), "note")]))
    return sec


def build_haip_draft(
    ledger: Ledger,
    *,
    home: Home | None = None,
    lang: str = "en",
    organisation: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    systems: Mapping[str, Any] | None = None,
    policy: str | Path | None = None,
    packs: list[Pack] | None = None,
    now: datetime | None = None,
    usage: Usage | None = None,
) -> Document:
    """The HAIP report draft. ``packs`` are searched for the HAIP pack (default: the
    bundled packs); ``systems``/``policy`` as for the security design document."""
    check_lang(lang)
    home = home if home is not None else ledger.home
    store = ledger.log.store
    u = usage if usage is not None else scan_usage(store, since=since, until=until)
    setup = gather_setup(ledger, home, systems=systems, policy=policy, usage=u,
                         whole_log=since is None and until is None)
    pack = haip_pack(packs)
    source = (_t(lang, "src.pack", ref=pack.ref, hash=pack.hash) if pack is not None
              else _t(lang, "src.fallback", pack=HAIP_PACK))
    if since is None and until is None:
        period = _t(lang, "all")
    else:
        a = fmt_time(to_us(since), lang) if since is not None else "…"
        b = fmt_time(to_us(until), lang) if until is not None else "…"
        period = f"{a} {_t(lang, 'to')} {b}"
    doc = Document(
        title=_t(lang, "title"), lang=lang, subtitle=_t(lang, "subtitle"),
        meta=[(_t(lang, "m.org"), organisation or TBC[lang]),
              (_t(lang, "m.generated"), fmt_time(to_us(now or datetime.now(UTC)), lang)),
              (_t(lang, "m.log"), setup.ledger.origin), (_t(lang, "m.period"), period),
              (_t(lang, "m.source"), source)])
    doc.sections.append(Section(_t(lang, "about"), [Para(_t(lang, "draft"), "warning")],
                                anchor="about"))
    for info in section_infos(lang, pack):
        doc.sections.append(_section(lang, info, _prefill(lang, info.number, u, setup, store)))
    return doc
