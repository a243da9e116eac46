"""Every fixed string of kansa's reports, in English and Japanese, and dates per language.

Builders look strings up by key (``t(lang, "key", name=...)``) so a report is written in
one language from start to end; a key missing in one language is a bug the tests catch
(both tables have the same keys). Japanese terms follow the usage of Japanese audit and
AI-governance documents: 適合/不適合 (conformity, as in ISO audits) rather than 合格/不合格
(an examination's pass/fail), AI提供者/AI利用者/AI開発者 as in the METI/MIC AI Guidelines
for Business.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from kansa.errors import ReportLanguageError as ReportLanguageError  # re-exported

LANGS = ("en", "ja")


_EN: dict[str, str] = {
    # verdicts
    "verdict.pass": "pass",
    "verdict.fail": "fail",
    "verdict.not_applicable": "not applicable",
    "verdict.evidence_needed": "evidence needed",
    # per-obligation status
    "status.failing": "failing",
    "status.passing": "passing",
    "status.evidence_needed": "evidence needed",
    "status.evidence_supplied": "evidence supplied",
    "status.not_applicable": "not applicable",
    "status.no_records": "no records",
    # legal force
    "force.binding": "binding",
    "force.effort_duty": "duty of effort",
    "force.soft_law": "soft law",
    "force.voluntary": "voluntary",
    # pack / obligation status
    "pstatus.draft": "draft",
    "pstatus.adopted": "adopted",
    "pstatus.in_force": "in force",
    "pstatus.repealed": "repealed",
    # text kinds
    "kind.official": "official text",
    "kind.translation": "translation (not official)",
    "kind.summary": "summary (not the official text)",
    # verification
    "verif.verified": "citations verified",
    "verif.partly_verified": "citations partly verified",
    "verif.unverified": "citations unverified",
    "verif.none": "no verification recorded",
    # roles
    "role.provider": "provider",
    "role.deployer": "deployer",
    "role.developer": "developer",
    # document
    "title": "AI usage compliance evidence report",
    "subtitle": "Obligations, verdicts and ledger evidence",
    "meta.generated": "Generated",
    "meta.period": "Period",
    "meta.systems": "Systems",
    "meta.all_systems": "all systems in the ledger",
    "meta.log": "Log",
    "meta.replay": "Replay",
    "meta.replay_value": "{run} ({when}; {records} records judged)",
    "period.open_start": "the beginning of the log",
    "period.open_end": "now",
    "period.range": "{since} to {until} (end exclusive)",
    "sec.cover": "Scope and rule packs",
    "sec.cover.intro": (
        "This report shows how the AI usage recorded in the ledger measures against the "
        "rule packs below. Every count comes from a replay of the recorded history; every "
        "example is proven to be in the log by a receipt that verifies against the signed "
        "checkpoint printed at the end."
    ),
    "sec.summary": "Obligations at a glance",
    "sec.summary.days": (
        "Counts are kept per UTC day: the period's first and last days are counted whole."
    ),
    "sec.obligations": "Obligations",
    "sec.charts": "Verdicts over time",
    "sec.evidence": "Evidence to be supplied by people",
    "sec.checkpoint": "Signed checkpoint",
    "sec.checkpoint.intro": (
        "Every receipt in this report is proven against this checkpoint, signed by the log "
        "(the note below, verbatim, including its signature lines). Verify a receipt with "
        "'kansa verify-receipt FILE --key VKEY' or kansa.ledger.receipt.verify_receipt "
        "and the log's verifier key."
    ),
    "pack.heading": "{title}",
    "pack.ref": "Pack",
    "pack.hash": "Pack hash",
    "pack.status": "Status",
    "pack.jurisdiction": "Jurisdiction",
    "pack.publisher": "Publisher",
    "pack.in_force": "In force",
    "pack.sources": "Sources",
    "pack.verification": "Verification",
    "pack.obligations": "Obligations",
    "pack.draft_note": (
        "DRAFT: this pack version is a draft, not adopted law. Its verdicts show what the "
        "draft would mean; they are not findings under law in force."
    ),
    "pack.unverified_note": (
        "NOT FULLY VERIFIED: the pack's dates or citations could not all be checked "
        "against an official source ({status}). {note}"
    ),
    "pack.repealed_note": "REPEALED: this pack version is no longer in force.",
    "col.obligation": "Obligation",
    "col.citation": "Citation",
    "col.force": "Legal force",
    "col.pass": "Pass",
    "col.fail": "Fail",
    "col.na": "N/A",
    "col.evidence": "Evidence needed",
    "col.status": "Status",
    "col.pack": "Pack",
    "col.index": "Entry",
    "col.record": "Record id",
    "col.time": "Time",
    "col.reason": "Reason",
    "col.system": "System",
    "col.model": "Model",
    "col.title": "Title",
    "col.sha256": "SHA-256",
    "col.supplied": "Supplied",
    "obl.text": "Text ({kind}, {language})",
    "obl.text_missing": "The pack carries no text in this language; shown in {language}.",
    "obl.no_text": "The pack carries no text for this obligation.",
    "obl.role": "Role",
    "obl.check": "Check",
    "obl.evidence_kind": "Evidence",
    "obl.source": "Source",
    "obl.verification": "Verification",
    "obl.counts": "Verdicts",
    "obl.counts_value": "{pass_} pass, {fail} fail, {na} not applicable, {ev} evidence needed",
    "obl.examples": "Failing examples (first {n} of {total})",
    "obl.receipt": "Receipt for entry {index} (c2sp.org/tlog-proof@v1)",
    "obl.no_examples_stored": (
        "{total} failing verdicts were counted but none of them is stored in the findings "
        "table for this period; run 'kansa replay' again to store them."
    ),
    "ev.intro": (
        "These obligations cannot be checked from records: a person must supply evidence. "
        "Add it with 'kansa evidence add --pack PACK --obligation ID FILE'; the file's "
        "SHA-256 is recorded in the ledger and listed here with its receipt."
    ),
    "ev.needed": "What must be supplied",
    "ev.none_supplied": "No evidence supplied yet.",
    "ev.supplied": "Evidence supplied",
    "chart.title": "{ref} {obligation}: verdicts per day",
    "chart.all": "All obligations: verdicts per day",
    "chart.none": "No verdicts in the period.",
    "none": "none",
    "open": "open-ended",
}

_JA: dict[str, str] = {
    "verdict.pass": "適合",
    "verdict.fail": "不適合",
    "verdict.not_applicable": "対象外",
    "verdict.evidence_needed": "要証拠",
    "status.failing": "不適合あり",
    "status.passing": "適合",
    "status.evidence_needed": "要証拠",
    "status.evidence_supplied": "証拠提出済み",
    "status.not_applicable": "対象外",
    "status.no_records": "記録なし",
    "force.binding": "法的拘束力あり",
    "force.effort_duty": "努力義務",
    "force.soft_law": "ソフトロー",
    "force.voluntary": "任意",
    "pstatus.draft": "案",
    "pstatus.adopted": "成立済み",
    "pstatus.in_force": "施行中",
    "pstatus.repealed": "廃止",
    "kind.official": "公式の条文",
    "kind.translation": "翻訳（公式ではありません）",
    "kind.summary": "要約（公式の条文ではありません）",
    "verif.verified": "出典確認済み",
    "verif.partly_verified": "出典一部確認済み",
    "verif.unverified": "出典未確認",
    "verif.none": "確認記録なし",
    "role.provider": "AI提供者",
    "role.deployer": "AI利用者",
    "role.developer": "AI開発者",
    "title": "AI利用 コンプライアンス証跡報告書",
    "subtitle": "義務・判定・台帳上の証跡",
    "meta.generated": "作成日時",
    "meta.period": "対象期間",
    "meta.systems": "対象システム",
    "meta.all_systems": "台帳上のすべてのシステム",
    "meta.log": "ログ",
    "meta.replay": "再判定",
    "meta.replay_value": "{run}（{when}、判定した記録 {records} 件）",
    "period.open_start": "ログの開始時点",
    "period.open_end": "現在",
    "period.range": "{since} から {until} まで（終端を含まない）",
    "sec.cover": "対象範囲とルールパック",
    "sec.cover.intro": (
        "本報告書は、台帳に記録されたAIの利用状況を下記のルールパックに照らして示すもの"
        "です。件数はすべて記録履歴の再判定に基づきます。各事例は、末尾に掲げる署名付き"
        "チェックポイントに対して検証できるレシートにより、ログに含まれることが証明されて"
        "います。"
    ),
    "sec.summary": "義務の一覧",
    "sec.summary.days": (
        "件数はUTCの日単位で集計しているため、"
        "期間の初日と最終日は一日分を数えています。"
    ),
    "sec.obligations": "義務ごとの詳細",
    "sec.charts": "判定の推移",
    "sec.evidence": "人が提出すべき証拠",
    "sec.checkpoint": "署名付きチェックポイント",
    "sec.checkpoint.intro": (
        "本報告書のすべてのレシートは、ログが署名した次のチェックポイントに対して証明され"
        "ています（署名行を含め、原文のまま掲載）。レシートは "
        "'kansa verify-receipt FILE --key VKEY' または kansa.ledger.receipt.verify_receipt "
        "とログの検証鍵で検証できます。"
    ),
    "pack.heading": "{title}",
    "pack.ref": "パック",
    "pack.hash": "パックのハッシュ",
    "pack.status": "状態",
    "pack.jurisdiction": "法域",
    "pack.publisher": "発行者",
    "pack.in_force": "適用期間",
    "pack.sources": "出典",
    "pack.verification": "確認状況",
    "pack.obligations": "義務の数",
    "pack.draft_note": (
        "案：このパックの版は案であり、成立した法令ではありません。判定は案が適用された"
        "場合の結果を示すもので、施行中の法令に基づく指摘ではありません。"
    ),
    "pack.unverified_note": (
        "未確認事項あり：このパックの日付または条項の一部を公式の出典で確認できていません"
        "（{status}）。{note}"
    ),
    "pack.repealed_note": "廃止：このパックの版は現在効力を有しません。",
    "col.obligation": "義務",
    "col.citation": "条項",
    "col.force": "法的効力",
    "col.pass": "適合",
    "col.fail": "不適合",
    "col.na": "対象外",
    "col.evidence": "要証拠",
    "col.status": "状況",
    "col.pack": "パック",
    "col.index": "エントリ",
    "col.record": "記録ID",
    "col.time": "日時",
    "col.reason": "理由",
    "col.system": "システム",
    "col.model": "モデル",
    "col.title": "表題",
    "col.sha256": "SHA-256",
    "col.supplied": "提出日時",
    "obl.text": "本文（{kind}、{language}）",
    "obl.text_missing": "このパックには日本語の本文がないため、{language}で示します。",
    "obl.no_text": "このパックにはこの義務の本文がありません。",
    "obl.role": "対象の役割",
    "obl.check": "検査式",
    "obl.evidence_kind": "証拠",
    "obl.source": "出典",
    "obl.verification": "確認状況",
    "obl.counts": "判定件数",
    "obl.counts_value": "適合 {pass_} 件、不適合 {fail} 件、対象外 {na} 件、要証拠 {ev} 件",
    "obl.examples": "不適合の事例（全 {total} 件のうち最初の {n} 件）",
    "obl.receipt": "エントリ {index} のレシート（c2sp.org/tlog-proof@v1）",
    "obl.no_examples_stored": (
        "不適合の判定が {total} 件ありますが、この期間の指摘は保存されていません。"
        "'kansa replay' を再実行すると保存されます。"
    ),
    "ev.intro": (
        "次の義務は記録から自動的に確認できないため、人が証拠を提出する必要があります。"
        "'kansa evidence add --pack パック --obligation 義務ID ファイル' で提出すると、"
        "ファイルのSHA-256が台帳に記録され、レシートとともにここに掲載されます。"
    ),
    "ev.needed": "提出すべきもの",
    "ev.none_supplied": "証拠はまだ提出されていません。",
    "ev.supplied": "提出済みの証拠",
    "chart.title": "{ref} {obligation}：日ごとの判定",
    "chart.all": "すべての義務：日ごとの判定",
    "chart.none": "期間内の判定はありません。",
    "none": "なし",
    "open": "期限なし",
}

_TABLES = {"en": _EN, "ja": _JA}
_LANG_NAMES = {"en": {"en": "English", "ja": "Japanese"}, "ja": {"en": "英語", "ja": "日本語"}}


def check_lang(lang: str) -> str:
    if lang not in _TABLES:
        raise ReportLanguageError(
            f"reports are written in {' or '.join(LANGS)}, not {lang!r}")
    return lang


def t(lang: str, key: str, **values: object) -> str:
    """The string ``key`` in ``lang``, with ``{name}`` fields filled from ``values``."""
    text = _TABLES[check_lang(lang)][key]
    return text.format(**values) if values else text


def verdict_name(lang: str, verdict: str) -> str:
    return t(lang, f"verdict.{verdict}")


def lang_name(lang: str, of: str) -> str:
    """The name of language ``of`` written in ``lang`` (a code if kansa has no name)."""
    return _LANG_NAMES[check_lang(lang)].get(of, of)


def format_date(lang: str, d: date) -> str:
    if check_lang(lang) == "ja":
        return f"{d.year}年{d.month}月{d.day}日"
    return d.isoformat()


def format_datetime(lang: str, dt: datetime) -> str:
    """An instant in UTC, written as the language writes dates (always marked UTC:
    records are kept in UTC and a report may be read anywhere)."""
    u = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    return f"{format_date(lang, u.date())} {u:%H:%M:%S} UTC"


def format_count(lang: str, n: int) -> str:
    check_lang(lang)
    return f"{n:,}"


def keys(lang: str) -> frozenset[str]:
    return frozenset(_TABLES[check_lang(lang)])
