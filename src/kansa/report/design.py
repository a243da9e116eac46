"""The security design document: systems, models, providers, data flows and controls in
force, drawn from the ledger's records and the home's configuration.

Everything a table shows is counted from stored entries or read from configuration; the
fixed prose about data flows describes what the code does (see docs/ARCHITECTURE.md and
``vault.py``), and whatever neither can tell is marked as to be completed by the
organisation. :func:`scan_usage` is the one pass over the log that this document, the
OECD HAIP draft and the incident drafts share.

Why a Python pass and not SQL aggregation: on this machine a single streaming pass that
decodes each entry with orjson (about 5 s per 10^6 entries on SQLite) beat SQLite's
``json_extract`` + ``GROUP BY`` (about 9 s: SQLite sorts to group) and matched
PostgreSQL's parallel ``json_to_record`` aggregation (7-9 s), and it is one code path with
the same JSON semantics on both stores.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from kansa._time import EPOCH as _EPOCH
from kansa.errors import KansaError, ReportError
from kansa.ledger.follower import Follower
from kansa.report.doc import Document, KeyValue, Para, Section, Table
from kansa.report.i18n import Strings
from kansa.report.i18n import check_lang as check_lang  # one language check for every report

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.home import Home
    from kansa.ledger.storage import Store
    from kansa.policy.feed import Activation
    from kansa.policy.inline import PolicySnapshot

LANGS = ("en", "ja")
JST = timezone(timedelta(hours=9), "JST")
_BATCH = 8192

# the two labels every draft uses for what only a person can answer
TBC = {"en": "TO BE COMPLETED BY THE ORGANISATION", "ja": "組織による記入が必要"}


class ReportDraftError(ReportError):
    """A design document or draft cannot be built (bad language, unreadable store...)."""


def to_us(value: datetime | str | None) -> int | None:
    """Microseconds since the epoch of an aware datetime or an RFC 3339 / ISO date string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ReportDraftError(f"{value!r} is not an RFC 3339 time or YYYY-MM-DD date") \
                from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def fmt_time(us: int | None, lang: str = "en") -> str:
    """A UTC instant to the second; Japanese documents add Japan time."""
    if us is None:
        return "—"
    t = from_us(us)
    s = t.strftime("%Y-%m-%d %H:%M:%S UTC")
    if lang == "ja":
        s += " (" + t.astimezone(JST).strftime("%Y-%m-%d %H:%M JST") + ")"
    return s


def _n(value: int) -> str:
    return f"{value:,}"


# -- the one pass over the log ---------------------------------------------------------------


@dataclass
class Stats:
    """Counts of a group of records."""

    count: int = 0
    ok: int = 0
    first_us: int | None = None
    last_us: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    systems: set[str] = field(default_factory=set)

    def merge(self, g: _Group, system: str) -> None:
        self.count += g.count
        self.ok += g.ok
        if self.first_us is None or g.first_us < self.first_us:
            self.first_us = g.first_us
        if self.last_us is None or g.last_us > self.last_us:
            self.last_us = g.last_us
        self.input_tokens += g.input_tokens
        self.output_tokens += g.output_tokens
        self.systems.add(system)


@dataclass
class _Group:
    """Records sharing every value the document reports on (see :func:`_key`)."""

    count: int
    ok: int
    first_us: int
    last_us: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class MarkedRecord:
    """A record singled out by the scan (an incident, a pack activation)."""

    index: int
    ts_us: int
    entry: dict[str, Any]


ModelKey = tuple[str, str, str]  # provider, model requested, model answered ("" when absent)


@dataclass
class Usage:
    """What one pass over the log (or a time window of it) found."""

    records: int = 0
    systems: dict[str, Stats] = field(default_factory=dict)
    models: dict[ModelKey, Stats] = field(default_factory=dict)
    providers: dict[str, Stats] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    intake: Counter[str] = field(default_factory=Counter)  # gateway | otel | other
    upstreams: Counter[str] = field(default_factory=Counter)
    with_content: int = 0
    with_subject: int = 0
    erasures: int = 0
    outputs: int = 0  # successful model calls: the outputs labelling duties are about
    labelled: int = 0  # ... of which carry a machine-readable mark
    visibly_labelled: int = 0
    marks: Counter[str] = field(default_factory=Counter)
    disclosed: int = 0  # records saying the person was told they deal with AI
    decisions: Counter[str] = field(default_factory=Counter)  # kansa.policy.decision
    events: Counter[str] = field(default_factory=Counter)  # kansa.event names
    snapshots: Counter[str] = field(default_factory=Counter)  # kansa.policy.snapshot
    incidents: list[MarkedRecord] = field(default_factory=list)

    @property
    def incident_counts(self) -> Counter[str]:
        return Counter(str(r.entry["attributes"]["kansa.incident"]) for r in self.incidents)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


_ATTRS = ("kansa.otel.trace_id", "kansa.gateway.upstream", "kansa.gateway.key",
          "kansa.output.label.machine_readable", "kansa.output.label.visible",
          "kansa.ai_disclosure", "kansa.policy.decision", "kansa.policy.snapshot",
          "kansa.event")


def _hashable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def _key(e: dict[str, Any]) -> tuple[Any, ...]:
    """Every value of an entry the documents count by. Records share a key far more often
    than not, so the pass does one dict lookup per record and the interpretation of
    values happens once per group (:func:`_fold`)."""
    a = e.get("attributes")
    ak = None
    if a:
        vals = [a.get(k) for k in _ATTRS]
        vals[0] = vals[0] is not None  # a trace id is unique per span: only its presence
        if vals[3].__class__ is list:
            vals[3] = tuple(vals[3])
        ak = tuple(vals)
    return (e.get("kind"), e.get("system"), e.get("outcome"), e.get("gen_ai.provider.name"),
            e.get("gen_ai.request.model"), e.get("gen_ai.response.model"), "content" in e,
            "subject" in e, ak)


def _fold(u: Usage, key: tuple[Any, ...], g: _Group) -> None:
    """Add one group of records to the totals."""
    kind, system, outcome = _str(key[0]), _str(key[1]), _str(key[2])
    provider, req, resp = _str(key[3]), _str(key[4]), _str(key[5])
    attrs = dict(zip(_ATTRS, key[8], strict=True)) if key[8] is not None else {}
    n = g.count
    u.records += n
    u.kinds[kind] += n
    u.outcomes[outcome] += n
    u.systems.setdefault(system, Stats()).merge(g, system)
    if provider or req or resp:
        u.models.setdefault((provider, req, resp), Stats()).merge(g, system)
        u.providers.setdefault(provider, Stats()).merge(g, system)
    u.with_content += n if key[6] else 0
    u.with_subject += n if key[7] else 0
    if kind == "kansa.erasure":
        u.erasures += n
    if attrs.get("kansa.otel.trace_id"):
        # the OTLP intake stamps the span's trace id; the gateway its upstream (or the
        # caller's key id). SDK, Python API and JSON Lines records carry no marker, so
        # they cannot be told apart and count as "other".
        u.intake["otel"] += n
    elif attrs.get("kansa.gateway.upstream") is not None or \
            attrs.get("kansa.gateway.key") is not None:
        u.intake["gateway"] += n
    else:
        u.intake["other"] += n
    if kind == "gen_ai.call" and outcome == "ok":
        u.outputs += n
        marks = attrs.get("kansa.output.label.machine_readable")
        if isinstance(marks, tuple) and marks:
            u.labelled += n
            for m in set(marks):
                u.marks[str(m)] += n
        if attrs.get("kansa.output.label.visible") is True:
            u.visibly_labelled += n
    if attrs.get("kansa.ai_disclosure") is True:
        u.disclosed += n
    for name, counter in (("kansa.gateway.upstream", u.upstreams),
                          ("kansa.policy.decision", u.decisions),
                          ("kansa.policy.snapshot", u.snapshots)):
        value = attrs.get(name)
        if isinstance(value, str):
            counter[value] += n
    event = attrs.get("kansa.event")
    if kind == "kansa.event" and isinstance(event, str):
        u.events[event] += n


def scan_usage(store: Store, *, since: datetime | str | None = None,
               until: datetime | str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Usage:
    """Aggregate every entry whose time is in [since, until) in one streaming pass.

    Entries are read by a follower in index ranges (primary-key scans on both stores),
    so the cost is one read of the log whatever the window."""
    follower = Follower(store, since_us=to_us(since), until_us=to_us(until), batch=_BATCH)
    size = store.size()
    groups: dict[tuple[Any, ...], _Group] = {}
    incidents: list[MarkedRecord] = []
    loads = orjson.loads
    for start in range(0, size, _BATCH):
        end = min(size, start + _BATCH)
        for idx, ts, data in follower.read(end):
            try:
                e = loads(data)
            except orjson.JSONDecodeError:
                raise ReportDraftError(f"entry {idx} is not a JSON record (was this log written "
                                       "by kansa.Ledger?)") from None
            if not isinstance(e, dict):
                continue
            key = _key(e)
            tin, tout = e.get("gen_ai.usage.input_tokens"), e.get("gen_ai.usage.output_tokens")
            try:
                g = groups.get(key)
            except TypeError:  # a list or map where kansa writes a scalar
                key = _hashable(key)
                g = groups.get(key)
            if g is None:
                groups[key] = _Group(1, e.get("outcome") == "ok", ts, ts, _int(tin), _int(tout))
            else:
                g.count += 1
                g.ok += e.get("outcome") == "ok"
                if ts < g.first_us:
                    g.first_us = ts
                elif ts > g.last_us:
                    g.last_us = ts
                g.input_tokens += _int(tin)
                g.output_tokens += _int(tout)
            if key[8] is not None:
                inc = e["attributes"].get("kansa.incident")
                if isinstance(inc, str):
                    incidents.append(MarkedRecord(int(idx), int(ts), e))
        if progress is not None:
            progress(end, size)
    u = Usage(incidents=incidents)
    for key, g in groups.items():
        _fold(u, key, g)
    return u


# -- configuration -----------------------------------------------------------------------------


def merge_facts(*sources: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """System facts by name; a later source wins per fact over an earlier one."""
    out: dict[str, dict[str, Any]] = {}
    for source in sources:
        if isinstance(source, Mapping):
            for name, facts in source.items():
                if isinstance(facts, Mapping):
                    out[str(name)] = {**out.get(str(name), {}), **facts}
    return out


def _list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def describe_store(url: str) -> str:
    """The store's kind and location without credentials."""
    if url.startswith("sqlite:///"):
        return f"SQLite {url[len('sqlite:///'):]}"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {host}{port}{parts.path}"


@dataclass(frozen=True)
class LedgerFacts:
    origin: str
    key_id: str
    store: str
    size: int
    checkpoints: int
    latest_size: int | None
    latest_us: int | None
    latest_cosignatures: int
    checkpoint_interval: float
    witnesses: tuple[tuple[str, str], ...]  # (name, url)
    erased_subjects: int


def ledger_facts(ledger: Ledger, home: Home | None) -> LedgerFacts:
    from kansa.ledger.note import Verifier

    store = ledger.log.store
    latest = store.latest_checkpoint()
    count = store.count_checkpoints()
    witnesses: list[tuple[str, str]] = []
    for w in home.witnesses if home is not None else []:
        try:
            name = Verifier.parse(str(w.get("vkey", ""))).name
        except KansaError:
            name = str(w.get("vkey", "?"))
        witnesses.append((name, str(w.get("url", ""))))
    url = home.store_url if home is not None else ""
    return LedgerFacts(
        origin=str(ledger.log.origin), key_id=ledger.verifier.key_id.hex(),
        store=describe_store(url) if url else store.dialect, size=store.size(),
        checkpoints=count, latest_size=latest.size if latest else None,
        latest_us=latest.created if latest else None,
        latest_cosignatures=len(store.cosignatures(latest.size)) if latest else 0,
        checkpoint_interval=ledger.log.checkpoint_interval, witnesses=tuple(witnesses),
        erased_subjects=store.count_erased_groups(),
    )


@dataclass(frozen=True)
class KeyFacts:
    active: int
    revoked: int

    @property
    def required(self) -> bool:
        # gateway_keys.py: keys are required once any key was ever created in the store
        return self.active + self.revoked > 0


def gateway_key_facts(store: Store) -> KeyFacts | None:
    """None when no gateway key was ever created in the store."""
    from kansa.capture.gateway_keys import GatewayKeys

    active, revoked = GatewayKeys(store).counts()
    return KeyFacts(active, revoked) if active + revoked else None


def judged_packs(store: Store) -> list[tuple[str, str, str]]:
    """(pack, version, hash) of every pack version history was judged under (replay)."""
    from kansa.policy.findings_store import FindingStore

    return FindingStore(store).judged_packs()


def load_enforcement(policy: str | Path | None, home: Home | None) -> PolicySnapshot | None:
    """The inline enforcement policy file the gateway runs with (``--policy``), loaded as
    the gateway loads it, so its hash can be compared with the records' snapshots."""
    if policy is None:
        return None
    from kansa.policy.inline import load_policy

    return load_policy(policy, home=home.path if home is not None else None)


# -- the document ------------------------------------------------------------------------------

_S: dict[str, dict[str, str]] = {
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


_t = Strings(_S, "report.design")


def _period(lang: str, since: datetime | str | None, until: datetime | str | None) -> str:
    if since is None and until is None:
        return _t(lang, "all")
    a = fmt_time(to_us(since), lang) if since is not None else "…"
    b = fmt_time(to_us(until), lang) if until is not None else "…"
    return f"{a} {_t(lang, 'to')} {b}"


def _known(lang: str, kind: str, value: str) -> str:
    """A value kansa knows a name for in the report's language (a role, an outcome, the
    bundled signer), else the value as recorded."""
    from kansa.report.i18n import keys, t

    key = f"{kind}.{value}"
    return t(lang, key) if key in keys(lang) else value


def _systems_section(lang: str, u: Usage, facts: Mapping[str, Mapping[str, Any]]) -> Section:
    rows = []
    for name in sorted(set(u.systems) | set(facts)):
        st, f = u.systems.get(name), facts.get(name, {})
        source = "src.both" if st and f else "src.records" if st else "src.config"
        rows.append((name or "—", _n(st.count) if st else "0",
                     fmt_time(st.first_us, lang) if st else _t(lang, "never"),
                     fmt_time(st.last_us, lang) if st else "—",
                     ("、" if lang == "ja" else ", ").join(
                         _known(lang, "role", r) for r in _list(f.get("roles")))
                     or "—",
                     ", ".join(_list(f.get("jurisdictions"))) or "—", _t(lang, source)))
    headers = tuple(_t(lang, k) for k in ("h.system", "h.records", "h.first", "h.last",
                                          "h.roles", "h.juris", "h.source"))
    return Section(_t(lang, "s.systems"), [Para(_t(lang, "systems.note")),
                                           Table(headers, tuple(rows),
                                                 align=("l", "r", "l", "l", "l", "l", "l"))],
                   anchor="systems")


def _config_remarks(lang: str, u: Usage,
                    facts: Mapping[str, Mapping[str, Any]]) -> list[Para]:
    """Differences between the models/providers a system is configured to use and those
    its records show."""
    out: list[Para] = []
    for name in sorted(facts):
        f = facts[name]
        used_models = {m for (_, req, resp), st in u.models.items() if name in st.systems
                       for m in (req, resp) if m}
        used_providers = {p for p, st in u.providers.items() if name in st.systems and p}
        for what, used in (("models", used_models), ("providers", used_providers)):
            if what not in f:  # not configured: nothing to compare with
                continue
            configured = set(_list(f[what]))
            if configured - used:
                out.append(Para(_t(lang, "cfg.unused", system=name,
                                   items=", ".join(sorted(configured - used))), "note"))
            if used - configured:
                out.append(Para(_t(lang, "cfg.undeclared", system=name, what=what,
                                   items=", ".join(sorted(used - configured))), "warning"))
    return out


def _models_section(lang: str, u: Usage, facts: Mapping[str, Mapping[str, Any]]) -> Section:
    sec = Section(_t(lang, "s.models"), [Para(_t(lang, "models.note"))], anchor="models")
    none = _t(lang, "none")
    if not u.models:
        sec.blocks.append(Para(_t(lang, "no.models"), "note"))
    else:
        prov_rows = tuple(
            (p or none, _n(st.count), _n(st.ok), _n(st.count - st.ok),
             _n(sum(1 for k in u.models if k[0] == p)), _n(st.input_tokens),
             _n(st.output_tokens), fmt_time(st.first_us, lang), fmt_time(st.last_us, lang))
            for p, st in sorted(u.providers.items()))
        sec.blocks.append(Table(
            tuple(_t(lang, k) for k in ("h.provider", "h.calls", "h.ok", "h.notok", "h.models",
                                        "h.in", "h.out", "h.first", "h.last")),
            prov_rows, caption=_t(lang, "cap.providers"),
            align=("l", "r", "r", "r", "r", "r", "r", "l", "l")))
        model_rows = tuple(
            (p or none, req or none, resp or none, ", ".join(sorted(st.systems)),
             _n(st.count), _n(st.ok), _n(st.count - st.ok), _n(st.input_tokens),
             _n(st.output_tokens), fmt_time(st.first_us, lang), fmt_time(st.last_us, lang))
            for (p, req, resp), st in sorted(u.models.items()))
        sec.blocks.append(Table(
            tuple(_t(lang, k) for k in ("h.provider", "h.req", "h.resp", "h.systems",
                                        "h.calls", "h.ok", "h.notok", "h.in", "h.out",
                                        "h.first", "h.last")),
            model_rows, caption=_t(lang, "cap.models"),
            align=("l", "l", "l", "l", "r", "r", "r", "r", "r", "l", "l")))
    sec.blocks.extend(_config_remarks(lang, u, facts))
    outcomes = Table((_t(lang, "h.outcome"), _t(lang, "h.count")),
                     tuple((_known(lang, "outcome", k) if k else "—", _n(v))
                           for k, v in sorted(u.outcomes.items())),
                     align=("l", "r"))
    kinds = Table((_t(lang, "h.kind"), _t(lang, "h.count")),
                  tuple((k or "—", _n(v)) for k, v in sorted(u.kinds.items())), align=("l", "r"))
    sec.subsections.append(Section(_t(lang, "s.outcomes"), [outcomes, kinds]))
    return sec


def _flows_section(lang: str, u: Usage, lf: LedgerFacts) -> Section:
    blocks: list[Any] = [Para(_t(lang, k)) for k in ("flow.intake", "flow.gateway", "flow.sdk",
                                                     "flow.otel")]
    blocks.append(Table((_t(lang, "h.intake"), _t(lang, "h.records")),
                        tuple((_t(lang, f"intake.{k}"), _n(u.intake.get(k, 0)))
                              for k in ("gateway", "otel", "other")),
                        caption=_t(lang, "cap.intake"), align=("l", "r")))
    if u.upstreams:
        blocks.append(Table((_t(lang, "h.upstream"), _t(lang, "h.records")),
                            tuple((k, _n(v)) for k, v in sorted(u.upstreams.items())),
                            caption=_t(lang, "cap.upstreams"), align=("l", "r")))
    blocks.append(Table(
        (_t(lang, "h.data"), _t(lang, "h.where"), _t(lang, "h.protection")),
        tuple((_t(lang, f"d.{k}"), _t(lang, f"w.{k}"), _t(lang, f"p.{k}"))
              for k in ("meta", "content", "keys", "subject", "sign", "gwkeys", "findings")),
        caption=_t(lang, "cap.stored")))
    blocks.append(Para(_t(lang, "flow.erasure")))
    blocks.append(Para(_t(lang, "flow.counts", content=_n(u.with_content),
                          subject=_n(u.with_subject), erasures=_n(u.erasures),
                          erased=_n(lf.erased_subjects))))
    return Section(_t(lang, "s.flows"), blocks, anchor="flows")


def _retention(lang: str, facts: Mapping[str, Mapping[str, Any]]) -> str:
    days = [_t(lang, "ret.days", days=f["log_retention_days"], system=name)
            for name, f in sorted(facts.items()) if "log_retention_days" in f]
    return "; ".join(days) if days else TBC[lang]


@dataclass(frozen=True)
class Setup:
    """What configuration and the store say about the installation (not per record)."""

    ledger: LedgerFacts
    facts: dict[str, dict[str, Any]]
    keys: KeyFacts | None
    judged: list[tuple[str, str, str]]
    activations: list[Activation]
    policy: PolicySnapshot | None
    policy_path: str | None


def gather_setup(ledger: Ledger, home: Home | None, *, systems: Mapping[str, Any] | None = None,
                 policy: str | Path | None = None, usage: Usage | None = None,
                 whole_log: bool = False) -> Setup:
    """Read configuration, the store's side tables and the pack activation history.

    System facts come from the home's config, then the policy file's ``systems``, then
    ``systems`` (each wins over the one before). When ``usage`` was scanned over the
    whole log and saw no pack event, the history is empty and is not read again (that
    read is a second pass over the log)."""
    from kansa.policy.feed import activations

    snap = load_enforcement(policy, home)
    merged = merge_facts(home.config.get("systems") if home is not None else None,
                         snap.systems if snap is not None else None, systems)
    store = ledger.log.store
    no_events = whole_log and usage is not None and not any(
        e.startswith("pack.") for e in usage.events)
    return Setup(ledger_facts(ledger, home), merged, gateway_key_facts(store),
                 judged_packs(store), [] if no_events else activations(ledger), snap,
                 str(policy) if policy is not None else None)


def _inline_state(lang: str, u: Usage, setup: Setup) -> str:
    parts = []
    snap = setup.policy
    if snap is not None:
        modes = ", ".join(f"{k}: {v}" for k, v in sorted(snap.modes.items()))
        parts.append(_t(lang, "st.inline.file", name=setup.policy_path or "",
                        packs=", ".join(p.ref for p in snap.packs),
                        mode=snap.default_mode, modes=modes or "—", hash=snap.hash))
        n = u.snapshots.get(snap.hash, 0)
        parts.append(_t(lang, "st.inline.match", n=_n(n), total=_n(sum(u.snapshots.values()))))
    if u.decisions:
        parts.append(_t(lang, "st.inline.dec", decisions=", ".join(
            f"{k} {_n(v)}" for k, v in sorted(u.decisions.items()))))
    return "; ".join(parts) or _t(lang, "st.inline.none")


def control_rows(lang: str, u: Usage, setup: Setup) -> list[tuple[str, str, str]]:
    """(control, state, evidence) rows: shared with the HAIP draft's section 2."""
    lf = setup.ledger
    rows = [(_t(lang, "c.tree"), _t(lang, "st.tree", size=_n(lf.size)), _t(lang, "ev.tree"))]
    cp = (_t(lang, "st.cp", n=_n(lf.checkpoints), size=_n(lf.latest_size or 0),
             when=fmt_time(lf.latest_us, lang), interval=lf.checkpoint_interval)
          if lf.latest_size is not None else _t(lang, "st.cp.none"))
    rows.append((_t(lang, "c.cp"), cp, _t(lang, "ev.cp")))
    rows.append((_t(lang, "c.key"), _t(lang, "st.key", origin=lf.origin, kid=lf.key_id),
                 _t(lang, "ev.key")))
    wit = (_t(lang, "st.wit", n=len(lf.witnesses),
              names=", ".join(f"{n} ({url})" for n, url in lf.witnesses),
              cos=lf.latest_cosignatures)
           if lf.witnesses else _t(lang, "st.wit.none"))
    rows.append((_t(lang, "c.wit"), wit, _t(lang, "ev.wit")))
    rows.append((_t(lang, "c.ret"), _t(lang, "st.ret", days=_retention(lang, setup.facts)),
                 _t(lang, "ev.ret")))
    rows.append((_t(lang, "c.enc"), _t(lang, "st.enc", erased=_n(lf.erased_subjects)),
                 _t(lang, "ev.enc")))
    keys = setup.keys
    gwk = (_t(lang, "st.gwk", active=keys.active, revoked=keys.revoked,
              req=_t(lang, "gwk.req" if keys.required else "gwk.notreq"))
           if keys is not None else _t(lang, "st.gwk.none"))
    rows.append((_t(lang, "c.gwk"), gwk, _t(lang, "ev.gwk")))
    rows.append((_t(lang, "c.fail"), _t(lang, "st.fail"), _t(lang, "ev.fail")))
    states = []
    active = [a.ref for a in setup.activations if a.until is None]
    if setup.activations:
        states.append(_t(lang, "st.packs.act", n=len(setup.activations),
                         active=", ".join(active) or "—"))
    if setup.judged:
        states.append(_t(lang, "st.packs.judged",
                         packs=", ".join(f"{p}@{v}" for p, v, _ in setup.judged)))
    rows.append((_t(lang, "c.packs"), "; ".join(states) or _t(lang, "st.packs.none"),
                 _t(lang, "ev.packs")))
    rows.append((_t(lang, "c.inline"), _inline_state(lang, u, setup), _t(lang, "ev.inline")))
    return rows


def activation_table(lang: str, setup: Setup) -> Table:
    rows = []
    for a in setup.activations:
        until = (f"{fmt_time(to_us(a.until), lang)} (#{a.until_index})"
                 if a.until is not None else _t(lang, "still.active"))
        rows.append((a.ref, a.hash, _known(lang, "signer", a.signer),
                     f"{fmt_time(to_us(a.since), lang)} (#{a.index})",
                     until))
    return Table(tuple(_t(lang, k) for k in ("h.pack", "h.hash", "h.signer", "h.since",
                                             "h.until")),
                 tuple(rows), caption=_t(lang, "cap.act"))


def build_design_document(
    ledger: Ledger,
    *,
    home: Home | None = None,
    lang: str = "en",
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    systems: Mapping[str, Any] | None = None,
    policy: str | Path | None = None,
    now: datetime | None = None,
    usage: Usage | None = None,
) -> Document:
    """The security design document for records in [since, until).

    ``home`` defaults to the ledger's; ``systems`` adds system facts (as ``--systems``);
    ``policy`` is the inline enforcement policy file the gateway runs with; ``usage``
    lets a caller that already scanned the same window pass the result in."""
    check_lang(lang)
    home = home if home is not None else ledger.home
    u = usage if usage is not None else scan_usage(ledger.log.store, since=since, until=until)
    setup = gather_setup(ledger, home, systems=systems, policy=policy, usage=u,
                         whole_log=since is None and until is None)
    facts, lf = setup.facts, setup.ledger
    generated = to_us(now or datetime.now(UTC))
    doc = Document(title=_t(lang, "title"), lang=lang, subtitle=_t(lang, "subtitle"),
                   meta=[(_t(lang, "m.generated"), fmt_time(generated, lang)),
                         (_t(lang, "m.log"), lf.origin), (_t(lang, "m.key"), lf.key_id),
                         (_t(lang, "m.store"), lf.store),
                         (_t(lang, "m.period"), _period(lang, since, until)),
                         (_t(lang, "m.records"), _n(u.records))])
    systems_sec = _systems_section(lang, u, facts)
    systems_sec.blocks.insert(0, Para(_t(lang, "draft"), "note"))
    doc.sections.append(systems_sec)
    doc.sections.append(_models_section(lang, u, facts))
    doc.sections.append(_flows_section(lang, u, lf))
    controls = Section(_t(lang, "s.controls"), [
        Para(_t(lang, "controls.note")),
        Table((_t(lang, "h.control"), _t(lang, "h.state"), _t(lang, "h.evidence")),
              tuple(control_rows(lang, u, setup)))], anchor="controls")
    if setup.activations:
        controls.blocks.append(activation_table(lang, setup))
    doc.sections.append(controls)
    todo = Section(_t(lang, "s.todo"), [Para(_t(lang, "todo.intro"))], anchor="todo")
    todo.blocks.append(KeyValue(tuple((_t(lang, f"todo.{i}"), TBC[lang]) for i in range(1, 6))))
    doc.sections.append(todo)
    return doc
