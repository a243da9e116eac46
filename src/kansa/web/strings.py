"""The dashboard's words, in Japanese and English (the same keys in both: checked at
import), and the choice of language: ``?lang=``, the ``kansa_lang`` cookie, then the
browser's Accept-Language."""

from __future__ import annotations

LANGS = ("ja", "en")

_EN: dict[str, str] = {
    "app": "kansa",
    "overview": "Overview",
    "records": "Records",
    "approvals": "Approvals",
    "logout": "Log out",
    "login": "Log in",
    "login_title": "Log in to kansa",
    "token": "Access token",
    "login_bad": "That token is not valid.",
    "signed_in_as": "{name} ({role})",
    "systems": "Systems",
    "models": "Models",
    "providers": "Providers",
    "outcomes": "Outcomes",
    "calls_per_day": "Calls per day (last {days} days, UTC)",
    "tokens": "Tokens",
    "input_tokens": "input",
    "output_tokens": "output",
    "failures": "Failures",
    "failures_text": "{n} calls did not end ok",
    "records_total": "Records in the log",
    "counting": "Still counting: {done} of {total} entries read; the figures below are partial.",
    "checkpoint": "Latest signed checkpoint",
    "no_checkpoint": "No checkpoint signed yet.",
    "cosignatures": "Witness cosignatures",
    "no_cosignatures": "No witness has cosigned this checkpoint.",
    "tree_size": "tree size",
    "signed_at": "signed at",
    "none": "none",
    "filter": "Filter",
    "since": "From",
    "until": "Until",
    "system": "System",
    "model": "Model",
    "subject": "Subject",
    "outcome": "Outcome",
    "any": "any",
    "apply": "Apply",
    "clear": "Clear",
    "index": "#",
    "time": "Time (UTC)",
    "kind": "Kind",
    "older": "Older records",
    "newer": "Newest",
    "no_records": "No records match on this page.",
    "scan_window": "Searched {n} entries down to #{floor}; older entries may match.",
    "export_jsonl": "Export JSONL",
    "export_csv": "Export CSV",
    "record": "Record",
    "fields": "Fields",
    "attributes": "Attributes",
    "findings": "Findings",
    "no_findings": "No stored failing findings for this record.",
    "steps": "Steps",
    "parent": "Parent step",
    "children": "Child steps",
    "no_steps": "No parent or child steps.",
    "receipt": "Receipt",
    "download_receipt": "Download the receipt (C2SP tlog-proof)",
    "content": "Content",
    "content_state": "Content: {state}",
    "state_present": "present",
    "state_erased": "erased",
    "state_none": "none recorded",
    "state_missing": "missing",
    "show_content": "Show content (this view is recorded in the ledger)",
    "content_denied": "Your role may not see content.",
    "content_recorded": "This view was recorded in the ledger as record {id}.",
    "pending_approvals": "Pending approvals",
    "no_pending": "Nothing waits for approval.",
    "approval": "Approval",
    "created": "Requested",
    "expires": "Expires",
    "obligations": "Obligations",
    "held_record": "Held call",
    "reason": "Reason",
    "approve": "Approve",
    "reject": "Reject",
    "decided": "Approval {id} {status}; the decision is record {rid}.",
    "forbidden": "Your role ({role}) may not do this.",
    "bad_request": "Bad request",
    "not_found": "Not found",
    "error": "Error",
    "language": "Language",
}

_JA: dict[str, str] = {
    "app": "kansa",
    "overview": "概要",
    "records": "記録",
    "approvals": "承認",
    "logout": "ログアウト",
    "login": "ログイン",
    "login_title": "kansa にログイン",
    "token": "アクセストークン",
    "login_bad": "このトークンは有効ではありません。",
    "signed_in_as": "{name}（{role}）",
    "systems": "システム",
    "models": "モデル",
    "providers": "提供者",
    "outcomes": "結果",
    "calls_per_day": "日別の呼び出し数（直近 {days} 日、UTC）",
    "tokens": "トークン数",
    "input_tokens": "入力",
    "output_tokens": "出力",
    "failures": "失敗",
    "failures_text": "正常に終わらなかった呼び出し {n} 件",
    "records_total": "ログの記録数",
    "counting": "集計中です（{total} 件中 {done} 件を読み込み済み）。以下の数値は途中経過です。",
    "checkpoint": "最新の署名付きチェックポイント",
    "no_checkpoint": "署名済みのチェックポイントはまだありません。",
    "cosignatures": "証人の連署",
    "no_cosignatures": "このチェックポイントに連署した証人はいません。",
    "tree_size": "木のサイズ",
    "signed_at": "署名日時",
    "none": "なし",
    "filter": "絞り込み",
    "since": "開始",
    "until": "終了",
    "system": "システム",
    "model": "モデル",
    "subject": "本人（データ主体）",
    "outcome": "結果",
    "any": "すべて",
    "apply": "適用",
    "clear": "解除",
    "index": "番号",
    "time": "日時（UTC）",
    "kind": "種類",
    "older": "さらに古い記録",
    "newer": "最新",
    "no_records": "このページに該当する記録はありません。",
    "scan_window": "{n} 件を #{floor} まで検索しました。さらに古い記録が該当する可能性があります。",
    "export_jsonl": "JSONL で書き出す",
    "export_csv": "CSV で書き出す",
    "record": "記録",
    "fields": "項目",
    "attributes": "属性",
    "findings": "指摘事項",
    "no_findings": "この記録に保存された不適合の指摘はありません。",
    "steps": "ステップ",
    "parent": "親ステップ",
    "children": "子ステップ",
    "no_steps": "親子のステップはありません。",
    "receipt": "受領証",
    "download_receipt": "受領証をダウンロード（C2SP tlog-proof）",
    "content": "内容",
    "content_state": "内容：{state}",
    "state_present": "あり",
    "state_erased": "消去済み",
    "state_none": "記録なし",
    "state_missing": "欠落",
    "show_content": "内容を表示（この閲覧は台帳に記録されます）",
    "content_denied": "このロールでは内容を閲覧できません。",
    "content_recorded": "この閲覧は台帳に記録 {id} として記録されました。",
    "pending_approvals": "承認待ち",
    "no_pending": "承認待ちはありません。",
    "approval": "承認",
    "created": "申請日時",
    "expires": "期限",
    "obligations": "義務",
    "held_record": "保留中の呼び出し",
    "reason": "理由",
    "approve": "承認する",
    "reject": "却下する",
    "decided": "承認 {id} は {status} になりました。決定は記録 {rid} です。",
    "forbidden": "このロール（{role}）では実行できません。",
    "bad_request": "不正なリクエスト",
    "not_found": "見つかりません",
    "error": "エラー",
    "language": "言語",
}

_TABLES = {"en": _EN, "ja": _JA}
assert all(set(t) == set(_EN) for t in _TABLES.values()), "ja and en keys differ"


def t(lang: str, key: str, **values: object) -> str:
    text = _TABLES[lang][key]
    return text.format(**values) if values else text


def pick_lang(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The page's language: an explicit choice first, then the browser's order."""
    for choice in (query, cookie):
        if choice in LANGS:
            return str(choice)
    best, best_q = "en", -1.0
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if base in LANGS and q > best_q:
            best, best_q = base, q
    return best
