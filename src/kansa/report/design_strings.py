"""The security design document's text, in every report language (report/design.py looks
it up; the mechanism is :class:`kansa.report.i18n.Strings`)."""

from __future__ import annotations

from kansa.report.drafting import TBC
from kansa.report.i18n import Strings

TABLES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Security design document",
        "subtitle": "AI systems, models, providers, data flows and controls in force",
        "m.generated": "Generated", "m.log": "Log", "m.key": "Verifier key id",
        "m.store": "Store", "m.period": "Records from", "m.records": "Records in period",
        "all": "the whole log", "to": "to",
        "draft": "This document is generated from the ledger's records and kansa's "
                 "configuration. Counts and dates are measured; statements about data flows "
                 "describe what kansa's code does. Anything kansa cannot know is marked "
                 "\"TO BE COMPLETED BY THE ORGANISATION\". Review it before relying on it.",
        "s.systems": "1. AI systems",
        "systems.note": "Systems are named by the records' \"system\" field and by the "
                        "system facts in configuration.",
        "h.system": "System", "h.records": "Records", "h.first": "First seen",
        "h.last": "Last seen", "h.source": "Known from", "h.roles": "Roles",
        "h.juris": "Jurisdictions", "src.records": "records", "src.config": "configuration",
        "src.both": "records and configuration", "never": "no records in period",
        "s.models": "2. Models and providers used",
        "models.note": "Every record naming a provider or a model, grouped by provider, model "
                       "requested and model that answered.",
        "h.provider": "Provider", "h.req": "Model requested", "h.resp": "Model answered",
        "h.calls": "Calls", "h.ok": "OK", "h.notok": "Not OK", "h.in": "Input tokens",
        "h.out": "Output tokens", "h.systems": "Systems", "h.models": "Models",
        "none": "(none)", "no.models": "No record in the period names a provider or model.",
        "cap.providers": "Providers", "cap.models": "Models",
        "s.outcomes": "Outcomes and record kinds", "h.outcome": "Outcome", "h.kind": "Kind",
        "h.count": "Records",
        "cfg.unused": "Configured for {system} but not seen in its records: {items}.",
        "cfg.undeclared": "Seen in records of {system} but not in its configured {what}: "
                          "{items}.",
        "s.flows": "3. Data flows",
        "flow.intake": "How calls reach the ledger: the kansa gateway (an OpenAI- and "
                       "Anthropic-compatible proxy between clients and providers), the SDK "
                       "wrappers (kansa.wrap, in the calling process), the OpenTelemetry "
                       "intake (OTLP/HTTP /v1/traces) and the Python API or JSON Lines "
                       "import. Each call becomes one record.",
        "flow.gateway": "Gateway: client → kansa gateway → provider. The gateway forwards the "
                        "request to the upstream serving the model, records the call, and "
                        "answers the client only once the record is durable (unless run with "
                        "--async-records). Request headers are not recorded (kansa's own "
                        "x-kansa-* headers only set fields such as app and subject), so "
                        "callers' and providers' API keys never reach storage.",
        "flow.sdk": "SDK: the application calls the provider directly through its official "
                    "client; kansa.wrap records the call in the same process.",
        "flow.otel": "OpenTelemetry: the application's tracer exports GenAI spans to kansa's "
                     "OTLP intake, which maps each span to a record; it answers the exporter "
                     "only after the records are appended.",
        "cap.intake": "Records by intake path in the period",
        "h.intake": "Intake", "intake.gateway": "kansa gateway",
        "intake.otel": "OpenTelemetry intake",
        "intake.other": "SDK, Python API or JSON Lines (records do not say which)",
        "cap.upstreams": "Gateway upstreams used", "h.upstream": "Upstream",
        "cap.stored": "What is stored where",
        "h.data": "Data", "h.where": "Where", "h.protection": "Protection",
        "d.meta": "Call metadata (system, provider, model, tokens, outcome, times, "
                  "attributes)",
        "w.meta": "Ledger entries (entries table), canonical JSON (RFC 8785)",
        "p.meta": "Leaves of an RFC 9162 Merkle tree; signed checkpoints make any change, "
                  "removal or reordering detectable",
        "d.content": "Content: prompts, responses, tool arguments and results",
        "w.content": "attachments table, beside the log (never in an entry)",
        "p.content": "AES-256-GCM under the data subject's own key (record id as associated "
                     "data; records without a subject share one erasable key); the entry "
                     "holds only a salted SHA-256 commitment",
        "d.keys": "Per-subject keys", "w.keys": "sealed_keys table",
        "p.keys": "Wrapped with AES-256-GCM under a key derived from the master key "
                  "($KANSA_HOME/master.key, mode 0600)",
        "d.subject": "Data subject", "w.subject": "Entries, as a pseudonym only",
        "p.subject": "HMAC-SHA256 of the subject's key: unlinkable to the person once the "
                     "key is erased",
        "d.sign": "Log signing key", "w.sign": "$KANSA_HOME/log.key (mode 0600)",
        "p.sign": "Ed25519; only the verifier key ($KANSA_HOME/log.vkey) is published",
        "d.gwkeys": "Gateway API keys", "w.gwkeys": "gateway_keys table",
        "p.gwkeys": "Only the SHA-256 of each key is stored; a key is shown once",
        "d.findings": "Rule-pack findings", "w.findings": "policy_* tables beside the log",
        "p.findings": "Each names the record's index and the pack version's hash; "
                      "re-derivable with kansa replay",
        "flow.erasure": "Erasure (crypto-shredding): kansa erase deletes the subject's "
                        "wrapped key and every ciphertext of that subject in one transaction "
                        "and appends a kansa.erasure record. Entries and proofs are unchanged; "
                        "the content and the pseudonym's link to the person are gone.",
        "flow.counts": "In the period: {content} record(s) with sealed content, {subject} "
                       "naming a data subject (by pseudonym), {erasures} erasure record(s); "
                       "{erased} subject key(s) erased in the store so far.",
        "s.controls": "4. Controls in force",
        "controls.note": "Each control names the evidence that backs it and how to check it.",
        "h.control": "Control", "h.state": "State", "h.evidence": "Evidence / how to check",
        "c.tree": "Tamper-evident log (RFC 9162 Merkle tree, C2SP tlog-tiles)",
        "st.tree": "{size} entries",
        "ev.tree": "kansa verify (recomputes every leaf and tile and checks every checkpoint); "
                   "kansa export + offline verification with the verifier key",
        "c.cp": "Signed checkpoints (Ed25519, C2SP signed-note)",
        "st.cp": "{n} signed; latest covers {size} entries, signed {when}. kansa's commands "
                 "sign within {interval} s of an append (the default of Ledger.open; an "
                 "application using the Python API may set another interval)",
        "st.cp.none": "none signed yet",
        "ev.cp": "kansa checkpoint; kansa verify checks each checkpoint's signature and "
                 "consistency with the next",
        "c.key": "Verifier key", "st.key": "{origin}, key id {kid}",
        "ev.key": "kansa key prints it; auditors need only this key",
        "c.wit": "Witnesses (C2SP tlog-witness cosignatures)",
        "st.wit": "{n} configured: {names}; latest checkpoint cosigned by {cos}",
        "st.wit.none": "none configured",
        "ev.wit": "kansa witness collect; receipts (kansa prove) carry the cosignatures, "
                  "kansa verify-receipt checks them",
        "c.ret": "Retention",
        "st.ret": "kansa never deletes or rewrites entries; content is deleted only by "
                  "erasure. Configured log retention: {days}",
        "ret.days": "{days} days ({system})",
        "ev.ret": "kansa verify shows the log is complete from entry 0",
        "c.enc": "Content sealing and erasure",
        "st.enc": "per-subject AES-256-GCM keys; {erased} subject(s) erased",
        "ev.enc": "kansa log show (content opens only with the key); kansa erase",
        "c.gwk": "Gateway keys", "st.gwk": "{active} active, {revoked} revoked; keys {req}",
        "gwk.req": "required for every request", "gwk.notreq": "not required (none created)",
        "st.gwk.none": "no gateway key was ever created in this store (the gateway was "
                       "not used with keys, or not at all)",
        "ev.gwk": "kansa gateway keys list; records of authenticated calls carry "
                  "kansa.gateway.key",
        "c.fail": "Gateway fails closed",
        "st.fail": "by design: a response is withheld (503 ledger_unavailable) when its "
                   "record cannot be committed; no local spool. Not so for a gateway run "
                   "with --async-records, which answers first (records do not show the "
                   "mode): " + TBC["en"] + " which mode runs",
        "ev.fail": "the gateway's /healthz shows \"durability\": \"sync\" or \"async\" "
                   "and store outages; code: capture/gateway.py",
        "c.packs": "Rule packs",
        "st.packs.act": "{n} activation interval(s) in the ledger; active now: {active}",
        "st.packs.judged": "history judged under: {packs}",
        "st.packs.none": "no activation records and no replay stored",
        "ev.packs": "activation records are ledger entries (kansa prove INDEX); findings: "
                    "kansa replay",
        "cap.act": "Rule-pack activations recorded in the ledger (#: ledger index)",
        "h.pack": "Pack", "h.hash": "Pack hash", "h.signer": "Signed by",
        "h.since": "Active from", "h.until": "Until", "still.active": "still active",
        "c.inline": "Inline enforcement",
        "st.inline.file": "policy file {name}: packs {packs}; default mode {mode}; modes "
                          "{modes}; snapshot {hash}",
        "st.inline.match": "{n} of the {total} records with a policy snapshot were decided "
                           "under this file's snapshot",
        "st.inline.dec": "decisions recorded: {decisions}",
        "st.inline.none": "no enforcement policy file given and no decision recorded",
        "ev.inline": "each decision is part of its record (kansa.policy.decision)",
        "s.todo": "5. To be completed by the organisation",
        "todo.intro": "kansa cannot see these; the organisation must describe them:",
        "todo.1": "Network exposure of the gateway and intake (TLS termination, firewalls).",
        "todo.2": "Who can read $KANSA_HOME (master key, log signing key) and the store; key "
                  "backup and rotation.",
        "todo.3": "Contracts and data-processing terms with each provider listed above.",
        "todo.4": "AI systems that do not send their calls through kansa.",
        "todo.5": "Log retention policy and the legal basis for it.",
    },
    "ja": {
        "title": "セキュリティ設計書",
        "subtitle": "AIシステム・モデル・提供者・データの流れ・実施中の管理策",
        "m.generated": "作成日時", "m.log": "ログ", "m.key": "検証鍵ID",
        "m.store": "ストア", "m.period": "対象期間", "m.records": "期間内の記録数",
        "all": "ログ全体", "to": "〜",
        "draft": "本書は台帳の記録と kansa の設定から自動生成したものです。件数と日時は"
                 "実測値、データの流れの記述は kansa のコードが行う処理の説明です。kansa が"
                 "知り得ない事項は「組織による記入が必要」と記しています。利用前に内容を"
                 "確認してください。",
        "s.systems": "1. AIシステム",
        "systems.note": "システム名は記録の「system」欄と設定のシステム情報によります。",
        "h.system": "システム", "h.records": "記録数", "h.first": "初回",
        "h.last": "最終", "h.source": "情報源", "h.roles": "役割",
        "h.juris": "法域", "src.records": "記録", "src.config": "設定",
        "src.both": "記録と設定", "never": "期間内の記録なし",
        "s.models": "2. 利用したモデルと提供者",
        "models.note": "提供者またはモデルを記載したすべての記録を、提供者・要求モデル・"
                       "応答モデルごとに集計しています。",
        "h.provider": "提供者", "h.req": "要求モデル", "h.resp": "応答モデル",
        "h.calls": "呼び出し数", "h.ok": "成功", "h.notok": "成功以外",
        "h.in": "入力トークン", "h.out": "出力トークン", "h.systems": "システム",
        "h.models": "モデル数", "none": "（なし）",
        "no.models": "期間内に提供者やモデルを記載した記録はありません。",
        "cap.providers": "提供者", "cap.models": "モデル",
        "s.outcomes": "結果と記録の種類", "h.outcome": "結果", "h.kind": "種類",
        "h.count": "記録数",
        "cfg.unused": "{system} に設定されているが記録に現れないもの：{items}。",
        "cfg.undeclared": "{system} の記録に現れるが設定の {what} にないもの：{items}。",
        "s.flows": "3. データの流れ",
        "flow.intake": "呼び出しが台帳に届く経路：kansa ゲートウェイ（クライアントと提供者の"
                       "間に置く OpenAI・Anthropic 互換プロキシ）、SDK ラッパー（kansa.wrap、"
                       "呼び出し元プロセス内）、OpenTelemetry 受信口（OTLP/HTTP /v1/traces）、"
                       "Python API または JSON Lines の取り込み。1回の呼び出しが1件の記録に"
                       "なります。",
        "flow.gateway": "ゲートウェイ：クライアント → kansa ゲートウェイ → 提供者。"
                        "ゲートウェイはモデルを扱う上流へ要求を転送して呼び出しを記録し、"
                        "記録が永続化されてからクライアントに応答します（--async-records で"
                        "動かす場合を除く）。要求ヘッダは記録せず（kansa 独自の x-kansa-* "
                        "ヘッダは app や subject などの欄を設定するだけ）、呼び出し元と提供者の "
                        "API キーが保存されることはありません。",
        "flow.sdk": "SDK：アプリケーションは公式クライアントで提供者を直接呼び出し、"
                    "kansa.wrap が同じプロセス内でその呼び出しを記録します。",
        "flow.otel": "OpenTelemetry：アプリケーションのトレーサーが GenAI スパンを kansa の "
                     "OTLP 受信口へ送り、各スパンが記録になります。記録の追記後に送信元へ"
                     "応答します。",
        "cap.intake": "期間内の受信経路別の記録数",
        "h.intake": "経路", "intake.gateway": "kansa ゲートウェイ",
        "intake.otel": "OpenTelemetry 受信口",
        "intake.other": "SDK・Python API・JSON Lines（記録からは区別できない）",
        "cap.upstreams": "利用されたゲートウェイ上流", "h.upstream": "上流",
        "cap.stored": "何をどこに保存するか",
        "h.data": "データ", "h.where": "保存場所", "h.protection": "保護",
        "d.meta": "呼び出しのメタデータ（システム、提供者、モデル、トークン数、結果、時刻、"
                  "属性）",
        "w.meta": "台帳エントリ（entries テーブル）、正規化 JSON（RFC 8785）",
        "p.meta": "RFC 9162 マークル木の葉。署名付きチェックポイントにより変更・削除・"
                  "順序の入れ替えを検出可能",
        "d.content": "内容：プロンプト、応答、ツールの引数と結果",
        "w.content": "台帳の横の attachments テーブル（エントリには入らない）",
        "p.content": "データ主体ごとの鍵による AES-256-GCM（記録IDを関連データに使用。主体の"
                     "ない記録は消去可能な共通の鍵を1つ共有）。エントリにはソルト付き "
                     "SHA-256 コミットメントのみ",
        "d.keys": "データ主体ごとの鍵", "w.keys": "sealed_keys テーブル",
        "p.keys": "マスター鍵（$KANSA_HOME/master.key、モード 0600）から導出した鍵で "
                  "AES-256-GCM により包んで保存",
        "d.subject": "データ主体", "w.subject": "エントリに仮名としてのみ記載",
        "p.subject": "主体の鍵による HMAC-SHA256。鍵の消去後は本人と結び付けられない",
        "d.sign": "ログ署名鍵", "w.sign": "$KANSA_HOME/log.key（モード 0600）",
        "p.sign": "Ed25519。公開するのは検証鍵（$KANSA_HOME/log.vkey）のみ",
        "d.gwkeys": "ゲートウェイ API キー", "w.gwkeys": "gateway_keys テーブル",
        "p.gwkeys": "各キーの SHA-256 のみを保存。キーは作成時に一度だけ表示",
        "d.findings": "ルールパックの判定結果", "w.findings": "台帳の横の policy_* テーブル",
        "p.findings": "記録の番号とパック版のハッシュを記載。kansa replay で再導出可能",
        "flow.erasure": "消去（暗号学的消去）：kansa erase はデータ主体の包まれた鍵とその"
                        "主体の暗号文をすべて1つのトランザクションで削除し、kansa.erasure "
                        "記録を追記します。エントリと証明は変わらず、内容と仮名・本人の"
                        "対応は失われます。",
        "flow.counts": "期間内：封印された内容を持つ記録 {content} 件、データ主体（仮名）を"
                       "記載した記録 {subject} 件、消去記録 {erasures} 件。ストアでこれまでに"
                       "消去された主体の鍵 {erased} 件。",
        "s.controls": "4. 実施中の管理策",
        "controls.note": "各管理策について、裏付ける証拠と確認方法を示します。",
        "h.control": "管理策", "h.state": "状態", "h.evidence": "証拠・確認方法",
        "c.tree": "改ざん検知可能なログ（RFC 9162 マークル木、C2SP tlog-tiles）",
        "st.tree": "エントリ {size} 件",
        "ev.tree": "kansa verify（全ての葉とタイルを再計算し全チェックポイントを検査）。"
                   "kansa export と検証鍵によるオフライン検証",
        "c.cp": "署名付きチェックポイント（Ed25519、C2SP signed-note）",
        "st.cp": "署名済み {n} 件。最新は {size} 件を対象とし {when} に署名。kansa の"
                 "コマンドは追記から {interval} 秒以内に署名（Ledger.open の既定値。Python "
                 "API を使うアプリケーションは別の間隔を設定できる）",
        "st.cp.none": "まだ署名されていない",
        "ev.cp": "kansa checkpoint。kansa verify が各チェックポイントの署名と次との整合性を"
                 "検査",
        "c.key": "検証鍵", "st.key": "{origin}、鍵ID {kid}",
        "ev.key": "kansa key で表示。監査人に必要なのはこの鍵のみ",
        "c.wit": "ウィットネス（C2SP tlog-witness 連署）",
        "st.wit": "{n} 件設定：{names}。最新チェックポイントの連署 {cos} 件",
        "st.wit.none": "設定なし",
        "ev.wit": "kansa witness collect。受領証（kansa prove）が連署を含み、"
                  "kansa verify-receipt で検査",
        "c.ret": "保存期間",
        "st.ret": "kansa はエントリを削除・書き換えしない。内容は消去によってのみ削除。"
                  "設定されたログ保存期間：{days}",
        "ret.days": "{days} 日（{system}）",
        "ev.ret": "kansa verify によりエントリ 0 からログが欠けていないことを確認",
        "c.enc": "内容の封印と消去",
        "st.enc": "データ主体ごとの AES-256-GCM 鍵。消去済みの主体 {erased} 件",
        "ev.enc": "kansa log show（内容は鍵がある場合のみ復号）。kansa erase",
        "c.gwk": "ゲートウェイキー", "st.gwk": "有効 {active} 件、失効 {revoked} 件。キーは{req}",
        "gwk.req": "全ての要求で必須", "gwk.notreq": "不要（未作成）",
        "st.gwk.none": "このストアでゲートウェイキーが作成されたことはない（キーなしで利用、"
                       "または未使用）",
        "ev.gwk": "kansa gateway keys list。認証された呼び出しの記録は kansa.gateway.key を"
                  "持つ",
        "c.fail": "ゲートウェイのフェイルクローズ",
        "st.fail": "設計上、記録を確定できない応答は返さない（503 ledger_unavailable）。"
                   "ローカルへの一時保存なし。ただし --async-records で動かすゲートウェイは"
                   "先に応答する（記録からはモードが分からない）：どちらのモードか"
                   + TBC["ja"],
        "ev.fail": "ゲートウェイの /healthz が \"durability\": \"sync\" / \"async\" とストア"
                   "障害を表示。コード：capture/gateway.py",
        "c.packs": "ルールパック",
        "st.packs.act": "台帳に有効化期間 {n} 件。現在有効：{active}",
        "st.packs.judged": "履歴の判定に用いたパック：{packs}",
        "st.packs.none": "有効化記録も保存された再判定もない",
        "ev.packs": "有効化記録は台帳のエントリ（kansa prove 番号）。判定結果：kansa replay",
        "cap.act": "台帳に記録されたルールパックの有効化（#：台帳番号）",
        "h.pack": "パック", "h.hash": "パックのハッシュ", "h.signer": "署名者",
        "h.since": "有効化", "h.until": "終了", "still.active": "現在も有効",
        "c.inline": "インライン執行",
        "st.inline.file": "ポリシーファイル {name}：パック {packs}、既定モード {mode}、"
                          "モード {modes}、スナップショット {hash}",
        "st.inline.match": "ポリシースナップショットを持つ記録 {total} 件のうち {n} 件が"
                           "このファイルのスナップショットで判断された",
        "st.inline.dec": "記録された判断：{decisions}",
        "st.inline.none": "執行ポリシーファイルの指定も記録された判断もない",
        "ev.inline": "各判断はその記録の一部（kansa.policy.decision）",
        "s.todo": "5. 組織による記入が必要な事項",
        "todo.intro": "kansa からは見えないため、組織が記述する必要があります：",
        "todo.1": "ゲートウェイと受信口のネットワーク上の公開範囲（TLS 終端、ファイア"
                  "ウォール）。",
        "todo.2": "$KANSA_HOME（マスター鍵、ログ署名鍵）とストアを読める者。鍵のバック"
                  "アップとローテーション。",
        "todo.3": "上記の各提供者との契約とデータ処理の条件。",
        "todo.4": "kansa を経由せずに呼び出しを行う AI システム。",
        "todo.5": "ログ保存方針とその法的根拠。",
    },
}


STRINGS = Strings(TABLES, "report.design")
