"""Every fixed string of kansa's reports, in English and Japanese, and dates per language.

Builders look strings up by key (``t(lang, "key", name=...)``) so a report is written in
one language from start to end; a key missing in one language is a bug the tests catch
(both tables have the same keys). Japanese terms follow the usage of Japanese audit and
AI-governance documents: 適合/不適合 (conformity, as in ISO audits) rather than 合格/不合格
(an examination's pass/fail), AI提供者/AI利用者/AI開発者 as in the METI/MIC AI Guidelines
for Business.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    "sec.labelling": "Labelling of AI-generated output and detection",
    "lab.intro": (
        "Successful outputs per system and jurisdiction, and the share that carried a "
        "label: visible (a disclosure people see) and per machine-readable carrier "
        "(gb45438-metadata: the GB 45438 AIGC label in front matter, HTML meta or image "
        "XMP; c2pa: a signed C2PA manifest; text-wrapper: kansa's invisible text wrapper, "
        "which anyone can strip). Errors: outputs whose label could not be applied "
        "(streamed answers, for instance)."),
    "lab.jurisdiction": "Jurisdiction",
    "lab.outputs": "Outputs",
    "lab.labelled": "Labelled",
    "lab.visible": "Visible",
    "lab.errors": "Not applied",
    "lab.detection": (
        "Detection tool: 'kansa provenance verify' and the endpoint 'kansa provenance "
        "serve' trace a text or image back to its record. The fingerprint index holds "
        "{indexed} of the {outputs} outputs whose content is stored."),
    "lab.no_detection": (
        "No detection tool is set up: this store has no fingerprint index (run 'kansa "
        "provenance index' or 'kansa provenance serve')."),
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
    "pack.unverified_note": "Verification: {line}. Notes: Appendix A.",
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
    "obl.text_missing": (
        "Where the pack carries no text in this language, it is shown in {language}."
    ),
    "obl.no_text": "The pack carries no text for this obligation.",
    "obl.role": "Role",
    "obl.check": "Check",
    "obl.evidence_kind": "Evidence",
    "obl.source": "Source",
    "obl.verification": "Verification",
    "obl.counts": "Verdicts",
    "obl.counts_value": "{pass_} pass, {fail} fail, {na} not applicable, {ev} evidence needed",
    "obl.examples": "Failing examples (first {n} of {total}; receipts in Appendix C)",
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
    # executive summary
    "sec.exec": "Executive summary",
    "exec.basis_run": (
        "Counts come from stored replay {run} ({when}; {records} records judged) under "
        "{packs}."
    ),
    "exec.basis_judged": "Counts come from judging {records} records now, under {packs}.",
    "exec.newer_active": (
        "Newer rule packs are active than the ones this report judged under: {active}. "
        "Run 'kansa replay' under them (or 'kansa report evidence' without --run) for "
        "current verdicts."
    ),
    "istatus.fails": "fails",
    "istatus.evidence_needed": "evidence needed",
    "istatus.meets": "meets",
    "istatus.not_applicable": "not applicable",
    "exec.instruments": "Status per instrument",
    "exec.systems": (
        "Systems with failing records, per instrument (failures are stored per record; "
        "passes only per instrument: --system gives one system's full counts)"
    ),
    "exec.top": "Top failing obligations ({n} of {total}), and why",
    "exec.no_failures": "No record failed a check in the period.",
    "exec.deadlines": "Deadlines that run ({n} of {total})",
    "exec.no_deadlines": "No obligation, transition or incident report falls due after today.",
    "deadline.starts": "starts to apply",
    "deadline.ends": "stops applying",
    "deadline.transition": " (transitional rule)",
    "deadline.overdue": ": OVERDUE",
    "deadline.incident": "incident report due ({detail})",
    "exec.no_previous": (
        "What changed: there is no earlier stored replay of these instruments to compare with."
    ),
    "exec.previous": (
        "What changed since the previous stored replay of these instruments ({run}, {when}, "
        "{records} records, {packs}): failing records in this period {before} → {after}."
    ),
    "exec.changed": "By obligation: {changes}.",
    "exec.change": "{obligation} ({pack}) {before} → {after}",
    "exec.change_join": "; ",
    "exec.unchanged": "No obligation's count changed.",
    "col.instrument": "Instrument",
    "col.obl_failing": "Obligations failing",
    "col.obl_evidence": "Evidence needed",
    "col.fail_findings": "Failing findings",
    "col.verification": "Citations",
    "col.why": "Why",
    "col.asks": "What the obligation asks",
    "col.date": "Date",
    "col.what": "What",
    "col.before": "Before",
    "col.now": "Now",
    "col.applies": "Applies when",
    "col.check": "Check (CEL)",
    # reasons
    "reason.unknown": "unknown",
    "reason.record": "{system}: does not meet {title} ({citation})",
    "reason.count_tpl": "{n} {records}: {text}",
    "reason.since": ", applies since {day}",
    "reason.obligation": "{n} {records} failed: {title} ({citation}{since})",
    "reason.obligation_from": "{n} {records} from {who} failed: {title} ({citation}{since})",
    "reason.records": "records",
    "reason.record_one": "record",
    "reason.join": ", ",
    "engine.until": "not in force until {day}",
    "engine.since": "not in force since {day}",
    "engine.transition": " (transition {n})",
    "engine.jurisdiction": "applies in {where}; the system is offered in {offered}",
    "engine.role": "applies to the {roles}; the system is {system}",
    "engine.not_applicable": "does not apply to this record",
    "engine.holds": "check holds",
    "engine.other": "{text}",
    "outcome.ok": "ok", "outcome.error": "error", "outcome.timeout": "timeout",
    "outcome.blocked": "blocked", "outcome.aborted": "aborted",
    "signer.bundled": "bundled with kansa",
    "reason.more": " and {n} more systems",
    "more": "{n} more",
    # verification
    "verif.line": (
        "{status}: {verified} of {total} obligations' citations verified, {partly} partly, "
        "{unverified} not; the pack's own dates: {own}"
    ),
    "pack.english": "{text}",
    # appendices
    "app.packs": "Appendix A. Rule packs and verification notes",
    "app.packs.intro": (
        "Each pack version as judged: its hash, publisher, sources and what was verified, "
        "with the pack's own notes."
    ),
    "app.obl_verification": "Verification per obligation",
    "app.checks": "Appendix B. Checks",
    "app.checks.intro": (
        "The conditions each check evaluates, in CEL, as the pack states them (a record "
        "passes when the check holds, and is not applicable when 'applies when' does not)."
    ),
    "app.receipts": "Appendix C. Signed checkpoint and receipts",
    "obl.verification_value": "{status} (notes: Appendix A)",
    "obl.check_ref": "checked automatically on every record (condition: Appendix B)",
    "sec.obligations.quiet": (
        "The {n} obligations no check judged in the period (not applicable to any record, "
        "or shown by evidence a person supplies) are in the tables above and, for "
        "evidence, in the next section."
    ),
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
    "sec.labelling": "AI生成物の表示(ラベル)と検出",
    "lab.intro": (
        "システムと法域ごとの成功した出力数と、表示が付された割合。可視表示(人が見る開示)と"
        "機械可読な表示の媒体ごと(gb45438-metadata:フロントマター・HTML meta・画像XMPの"
        "GB 45438 AIGC標識、c2pa:署名付きC2PAマニフェスト、text-wrapper:kansaの不可視"
        "テキストラッパー(誰でも除去できる))。未適用:表示を付けられなかった出力(ストリーミング"
        "応答など)。"),
    "lab.jurisdiction": "法域",
    "lab.outputs": "出力数",
    "lab.labelled": "表示あり",
    "lab.visible": "可視表示",
    "lab.errors": "未適用",
    "lab.detection": (
        "検出ツール:'kansa provenance verify' とエンドポイント 'kansa provenance serve' "
        "が、テキストや画像から元の記録を特定します。フィンガープリント索引には、内容が保存"
        "された出力 {outputs} 件のうち {indexed} 件が登録されています。"),
    "lab.no_detection": (
        "検出ツールが設定されていません:このストアにフィンガープリント索引がありません"
        "('kansa provenance index' または 'kansa provenance serve' を実行してください)。"),
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
    "pack.unverified_note": "確認状況：{line}。注記は付録Aにあります。",
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
    "obl.text_missing": "このパックに日本語の本文がない義務は、{language}で示します。",
    "obl.no_text": "このパックにはこの義務の本文がありません。",
    "obl.role": "対象の役割",
    "obl.check": "検査式",
    "obl.evidence_kind": "証拠",
    "obl.source": "出典",
    "obl.verification": "確認状況",
    "obl.counts": "判定件数",
    "obl.counts_value": "適合 {pass_} 件、不適合 {fail} 件、対象外 {na} 件、要証拠 {ev} 件",
    "obl.examples": "不適合の事例（全 {total} 件のうち最初の {n} 件。レシートは付録C）",
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
    # executive summary
    "sec.exec": "要旨",
    "exec.basis_run": (
        "件数は保存済みの再判定 {run}（{when}、判定した記録 {records} 件）によるもので、"
        "対象のルールパックは {packs} です。"
    ),
    "exec.basis_judged": (
        "件数は記録 {records} 件をこの場で判定したもので、対象のルールパックは {packs} です。"
    ),
    "exec.newer_active": (
        "本報告書が判定に用いたものより新しいルールパックが有効になっています：{active}。"
        "最新の判定には、それらで 'kansa replay' を実行してください"
        "（または --run を付けずに 'kansa report evidence' を実行）。"
    ),
    "istatus.fails": "不適合あり",
    "istatus.evidence_needed": "要証拠",
    "istatus.meets": "適合",
    "istatus.not_applicable": "対象外",
    "exec.instruments": "規範ごとの状況",
    "exec.systems": (
        "不適合の記録があるシステム（規範ごとの記録数。不適合は記録ごとに保存され、適合は"
        "規範ごとにのみ集計されるため、1つのシステムの全件数は --system で確認できます）"
    ),
    "exec.top": "不適合の多い義務（全 {total} 件のうち {n} 件）とその理由",
    "exec.no_failures": "期間内に検査で不適合となった記録はありません。",
    "exec.deadlines": "今後の期日（全 {total} 件のうち {n} 件）",
    "exec.no_deadlines": "今日以降に期日を迎える義務・経過措置・インシデント報告はありません。",
    "deadline.starts": "適用開始",
    "deadline.ends": "適用終了",
    "deadline.transition": "（経過措置）",
    "deadline.overdue": "：期限超過",
    "deadline.incident": "インシデント報告の期限（{detail}）",
    "exec.no_previous": "変更点：比較できる、同じ規範の以前の再判定は保存されていません。",
    "exec.previous": (
        "変更点：同じ規範の直前の保存済み再判定（{run}、{when}、記録 {records} 件、{packs}）"
        "と比べ、この期間の不適合の記録は {before} 件 → {after} 件。"
    ),
    "exec.changed": "義務ごと：{changes}。",
    "exec.change": "{obligation}（{pack}）{before} 件 → {after} 件",
    "exec.change_join": "、",
    "exec.unchanged": "不適合の件数が変わった義務はありません。",
    "col.instrument": "規範",
    "col.obl_failing": "不適合の義務",
    "col.obl_evidence": "要証拠の義務",
    "col.fail_findings": "不適合の指摘",
    "col.verification": "条項の確認",
    "col.why": "理由",
    "col.asks": "義務の内容",
    "col.date": "期日",
    "col.what": "内容",
    "col.before": "前回",
    "col.now": "今回",
    "col.applies": "適用条件",
    "col.check": "検査式（CEL）",
    # reasons
    "reason.unknown": "不明",
    "reason.record": "{system}：{title}（{citation}）を満たしていません",
    "reason.count_tpl": "{n} 件{records}：{text}",
    "reason.records": "",
    "reason.record_one": "",
    "reason.since": "、{day}から適用",
    "reason.obligation": "{n} 件の記録{records}が不適合：{title}（{citation}{since}）",
    "reason.obligation_from": "{who} の記録 {n} 件{records}が不適合：{title}（{citation}{since}）",
    "reason.join": "、",
    "engine.until": "{day}まで適用されません",
    "engine.since": "{day}以降は適用されません",
    "engine.transition": "（経過措置 {n}）",
    "engine.jurisdiction": "適用地域は {where}、このシステムの提供地域は {offered}",
    "engine.role": "対象は{roles}、このシステムは{system}",
    "engine.not_applicable": "この記録には適用されません",
    "engine.holds": "検査を満たしています",
    "engine.other": "（判定理由、英語）{text}",
    "outcome.ok": "成功（ok）", "outcome.error": "エラー（error）",
    "outcome.timeout": "タイムアウト（timeout）", "outcome.blocked": "遮断（blocked）",
    "outcome.aborted": "中断（aborted）",
    "signer.bundled": "kansa に同梱",
    "reason.more": " ほか {n} システム",
    "more": "ほか {n} 件",
    # verification
    "verif.line": (
        "{status}：全 {total} 義務のうち条項確認済み {verified}、一部確認済み {partly}、"
        "未確認 {unverified}。パック自体の日付：{own}"
    ),
    "pack.english": "（パックの記載、英語）{text}",
    # appendices
    "app.packs": "付録A　ルールパックと確認状況の注記",
    "app.packs.intro": (
        "判定に用いた各パックの版：ハッシュ、発行者、出典、確認状況とパック自身の注記"
        "（パックの記載は原文のまま）。"
    ),
    "app.obl_verification": "義務ごとの確認状況",
    "app.checks": "付録B　検査式",
    "app.checks.intro": (
        "各検査が評価する条件（CEL、パックの記載のまま）。検査式が成り立つ記録は適合、"
        "適用条件が成り立たない記録は対象外です。"
    ),
    "app.receipts": "付録C　署名付きチェックポイントとレシート",
    "obl.verification_value": "{status}（注記：付録A）",
    "obl.check_ref": "すべての記録で自動的に検査（条件：付録B）",
    "sec.obligations.quiet": (
        "期間内にどの記録でも検査されなかった {n} 件の義務（対象外、または人が提出する証拠で"
        "示すもの）は、上の表と、証拠については次の節に掲載しています。"
    ),
    "none": "なし",
    "open": "期限なし",
}

_TABLES = {"en": _EN, "ja": _JA}
_LANG_NAMES = {"en": {"en": "English", "ja": "Japanese"}, "ja": {"en": "英語", "ja": "日本語"}}


# publishers of the bundled packs, in Japanese (a pack's publisher line is its own text;
# one kansa does not know is shown as the pack gives it, marked as such)
_PUBLISHERS_JA = {
    "kansa project (summary and checks; not an official publication)":
        "kansa プロジェクト（要約と検査。公式の刊行物ではありません）",
    "kansa project (fictional example)": "kansa プロジェクト（架空の例）",
    "Ministry of Economy, Trade and Industry (METI) and Ministry of Internal Affairs and "
    "Communications (MIC), Japan": "経済産業省・総務省",
    "OECD (at the request of the G7)": "OECD（G7の要請による）",
    "G7 (Hiroshima AI Process, Japanese G7 Presidency 2023)":
        "G7（広島AIプロセス、2023年日本議長国）",
    "Government of Japan (AI Strategy Headquarters, Cabinet Office), as reported in the "
    "press": "日本政府（内閣府 AI戦略本部）。報道による",
    "Government of Japan (Cabinet Office, 内閣府); law text published on e-Gov":
        "日本政府（内閣府）。法令本文は e-Gov に掲載",
    "Government of Japan (Cabinet; drafted by the AI Strategy Headquarters, Cabinet "
    "Office)": "日本政府（内閣。内閣府 AI戦略本部が起草）",
}


def publisher_name(lang: str, publisher: str) -> str:
    """A pack's publisher in ``lang``: kansa's translation for the bundled packs'
    publishers, else the pack's own words (marked as the pack's English in Japanese)."""
    if check_lang(lang) != "ja":
        return publisher
    if publisher in _PUBLISHERS_JA:
        return _PUBLISHERS_JA[publisher]
    if any("\u3040" <= ch <= "\u9fff" for ch in publisher):
        return publisher
    return t(lang, "pack.english", text=publisher)


def check_lang(lang: str) -> str:
    if lang not in _TABLES:
        raise ReportLanguageError(
            f"reports are written in {' or '.join(LANGS)}, not {lang!r}")
    return lang


class Strings:
    """A string table in every report language, looked up as ``table(lang, key, **values)``
    with ``{name}`` fields filled from ``values``. The one mechanism for kansa's own
    report text: this module's table and each builder's own (design, HAIP, incidents).
    Every language must have the same keys, checked when the table is made, so a missing
    translation fails at import, not in the middle of a report."""

    def __init__(self, tables: Mapping[str, Mapping[str, str]], name: str) -> None:
        if set(tables) != set(LANGS):
            raise ValueError(f"{name}: string tables for {sorted(tables)}, not {LANGS}")
        keys = set(tables[LANGS[0]])
        for lang in LANGS[1:]:
            if set(tables[lang]) != keys:
                odd = sorted(keys ^ set(tables[lang]))
                raise ValueError(f"{name}: keys not in every language: {', '.join(odd)}")
        self._tables = tables

    def __call__(self, lang: str, key: str, **values: object) -> str:
        text = self._tables[check_lang(lang)][key]
        return text.format(**values) if values else text


def t(lang: str, key: str, **values: object) -> str:
    """The string ``key`` in ``lang``, with ``{name}`` fields filled from ``values``."""
    return _STRINGS(lang, key, **values)


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


_STRINGS = Strings(_TABLES, "report.i18n")
