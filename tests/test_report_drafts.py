"""Security design document, OECD HAIP report draft and serious-incident drafts.

Ledgers are real (SQLite and PostgreSQL through ``store_url``); packs are the bundled
ones or small packs written here; documents are rendered with the real renderers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kansa.api import Ledger
from kansa.errors import ReportLanguageError
from kansa.ledger.receipt import verify_receipt
from kansa.policy.pack import Deadline, Pack, parse_pack
from kansa.report import design_strings, drafting, haip, incidents, setup_facts, usage_scan
from kansa.report.design import build_design_document
from kansa.report.doc import Code, Document, KeyValue, Para, Section, Table
from kansa.report.drafting import TBC
from kansa.report.haip import build_haip_draft
from kansa.report.incidents import build_incident_drafts, clock
from kansa.report.render_html import render_html
from kansa.report.render_pdf import render_pdf
from kansa.report.usage_scan import scan_usage

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ledger(store_url: str, home: Path) -> Iterator[Ledger]:
    lg = Ledger.init(home, url=store_url)
    try:
        yield lg
    finally:
        lg.close()


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _call(minutes: float, provider: str, model: str, *, system: str = "support-bot",
          outcome: str = "ok", answered: str | None = None, tin: int = 10, tout: int = 5,
          attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"ts": _at(minutes), "system": system, "outcome": outcome,
                           "gen_ai.provider.name": provider, "gen_ai.request.model": model,
                           "gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout,
                           "subject": "user-7", "input": "question", "output": "answer"}
    if answered:
        rec["gen_ai.response.model"] = answered
    if attributes:
        rec["attributes"] = attributes
    return rec


# -- walking documents ------------------------------------------------------------------------


def _sections(doc: Document) -> Iterator[Section]:
    def walk(s: Section) -> Iterator[Section]:
        yield s
        for sub in s.subsections:
            yield from walk(sub)
    for s in doc.sections:
        yield from walk(s)


def _blocks(doc: Document) -> Iterator[Any]:
    for s in _sections(doc):
        yield from s.blocks


def _table(doc: Document, caption: str) -> Table:
    found = [b for b in _blocks(doc) if isinstance(b, Table) and b.caption == caption]
    assert len(found) == 1, f"expected one table {caption!r}, found {len(found)}"
    return found[0]


def _text(doc: Document) -> str:
    parts = [doc.title, doc.subtitle or ""] + [f"{k} {v}" for k, v in doc.meta]
    for s in _sections(doc):
        parts.append(s.heading)
        for b in s.blocks:
            if isinstance(b, Para):
                parts.append(b.text)
            elif isinstance(b, Table):
                parts += list(b.headers) + [c for r in b.rows for c in r] + [b.caption or ""]
            elif isinstance(b, KeyValue):
                parts += [c for kv in b.pairs for c in kv]
            elif isinstance(b, Code):
                parts.append(b.text)
    return "\n".join(parts)


def _html_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&amp;", "&")


# -- the security design document ------------------------------------------------------------


def test_design_document_lists_exactly_the_models_and_providers_recorded(
        ledger: Ledger) -> None:
    ledger.append_many([
        _call(0, "openai", "gpt-4o", answered="gpt-4o-2024-08-06", tin=100, tout=20),
        _call(1, "openai", "gpt-4o", answered="gpt-4o-2024-08-06", tin=50, tout=10),
        _call(2, "openai", "gpt-4o", answered="gpt-4o-2024-08-06", outcome="error", tin=0,
              tout=0),
        _call(3, "anthropic", "claude-sonnet-4", system="search", tin=7, tout=3),
        _call(4, "anthropic", "claude-sonnet-4", system="search", outcome="timeout", tin=1,
              tout=0),
        {"ts": _at(5), "system": "support-bot", "kind": "tool.call",
         "gen_ai.tool.name": "lookup"},  # names no model: not a model call
        _call(60 * 24 * 40, "mistral", "mistral-large"),  # outside the window below
    ])
    doc = build_design_document(ledger, lang="en", since=T0, until=T0 + timedelta(days=1),
                                now=T0)
    models = _table(doc, "Models")
    assert {r[:5] for r in models.rows} == {
        ("openai", "gpt-4o", "gpt-4o-2024-08-06", "support-bot", "3"),
        ("anthropic", "claude-sonnet-4", "(none)", "search", "2"),
    }
    by_provider = {r[0]: r for r in _table(doc, "Providers").rows}
    assert set(by_provider) == {"openai", "anthropic"}
    # calls, ok, not ok, models, input tokens, output tokens
    assert by_provider["openai"][1:7] == ("3", "2", "1", "1", "150", "30")
    assert by_provider["anthropic"][1:7] == ("2", "1", "1", "1", "8", "3")
    assert by_provider["openai"][7] == "2026-11-02 09:00:00 UTC"  # first seen
    assert by_provider["openai"][8] == "2026-11-02 09:02:00 UTC"  # last seen
    assert ("Records in period", "6") in doc.meta
    assert "mistral" not in _text(doc)


def test_scan_usage_counts_intake_labels_incidents_and_decisions(ledger: Ledger) -> None:
    ledger.append_many([
        _call(0, "openai", "gpt-4o", attributes={
            "kansa.gateway.upstream": "openai-eu", "kansa.ai_disclosure": True,
            "kansa.output.label.machine_readable": ["c2pa", "watermark"],
            "kansa.policy.decision": "allow"}),
        _call(1, "openai", "gpt-4o", attributes={
            "kansa.otel.trace_id": "ab" * 16, "kansa.output.label.machine_readable": ["c2pa"],
            "kansa.output.label.visible": True, "kansa.policy.decision": "flag"}),
        _call(2, "openai", "gpt-4o", attributes={"kansa.incident": "death"}),
        _call(3, "openai", "gpt-4o", outcome="error",  # not an output: labels don't count
              attributes={"kansa.output.label.machine_readable": ["c2pa"]}),
    ])
    ledger.erase("user-7")
    u = scan_usage(ledger.log.store)
    assert u.records == 5 and u.erasures == 1
    assert dict(u.intake) == {"gateway": 1, "otel": 1, "other": 3}
    assert dict(u.upstreams) == {"openai-eu": 1}
    assert (u.outputs, u.labelled, u.visibly_labelled) == (3, 2, 1)
    assert dict(u.marks) == {"c2pa": 2, "watermark": 1}
    assert u.disclosed == 1
    assert dict(u.decisions) == {"allow": 1, "flag": 1}
    assert [r.index for r in u.incidents] == [2]
    assert dict(u.incident_counts) == {"death": 1}
    assert u.with_content == 4 and u.with_subject == 4


def test_design_document_states_controls_from_configuration(ledger: Ledger, home: Path,
                                                            tmp_path: Path) -> None:
    from kansa.capture.gateway_keys import GatewayKeys
    from kansa.ledger.note import Signer
    from kansa.policy.bundled import example_pack_files
    from kansa.policy.feed import activate, resolve_pack

    assert ledger.home is not None
    witness = Signer.generate("witness.example/w1")
    ledger.home.config["witnesses"] = [{"url": "http://127.0.0.1:7380",
                                        "vkey": witness.verifier.vkey}]
    ledger.home.save_config()
    keys = GatewayKeys(ledger.log.store)
    keys.create("support-app")
    _, second = keys.create("other-app")
    keys.revoke(second.key_id)
    activate(ledger, resolve_pack("intl.oecd/haip-reporting@1.0", home), at=T0)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"packs: [{example_pack_files()[0]}]\nmode: observe\n"
                      "systems:\n  support-bot: {log_retention_days: 200}\n")
    ledger.append(_call(1, "openai", "gpt-4o"))
    ledger.checkpoint()

    doc = build_design_document(ledger, lang="en", policy=policy,
                                systems={"search": {"roles": ["deployer"],
                                                    "models": ["gpt-4o"]}})
    controls = {r[0]: r for s in _sections(doc) if s.anchor == "controls"
                for b in s.blocks if isinstance(b, Table) and b.caption is None for r in b.rows}
    assert "1 configured: witness.example/w1 (http://127.0.0.1:7380)" in \
        controls["Witnesses (C2SP tlog-witness cosignatures)"][1]
    assert controls["Gateway keys"][1] == "1 active, 1 revoked; keys required for every request"
    assert "active now: intl.oecd/haip-reporting@1.0" in controls["Rule packs"][1]
    assert "200 days (support-bot)" in controls["Retention"][1]
    inline = controls["Inline enforcement"][1]
    assert "kansa.example/ai-logging@1" in inline and "default mode observe" in inline
    assert ledger.verifier.key_id.hex() in controls["Verifier key"][1]
    assert controls["Tamper-evident log (RFC 9162 Merkle tree, C2SP tlog-tiles)"][1] == \
        "2 entries"
    act = _table(doc, "Rule-pack activations recorded in the ledger (#: ledger index)")
    assert act.rows[0][0] == "intl.oecd/haip-reporting@1.0" and "(#0)" in act.rows[0][3]
    # a window after the activation still knows which packs are active
    later = build_design_document(ledger, lang="en", since=T0 + timedelta(seconds=30))
    assert "active now: intl.oecd/haip-reporting@1.0" in _text(later)
    # "search" is configured but has no records; its configured model was never used by it
    systems = {r[0]: r for s in _sections(doc) if s.anchor == "systems"
               for b in s.blocks if isinstance(b, Table) for r in b.rows}
    assert systems["search"][1] == "0" and systems["search"][6] == "configuration"
    assert systems["support-bot"][6] == "records and configuration"
    assert "Configured for search but not seen in its records: gpt-4o." in _text(doc)


def test_design_document_in_japanese(ledger: Ledger) -> None:
    ledger.append(_call(0, "openai", "gpt-4o"))
    doc = build_design_document(ledger, lang="ja", now=T0)
    text = _text(doc)
    assert doc.title == "セキュリティ設計書" and doc.lang == "ja"
    for phrase in ("利用したモデルと提供者", "データの流れ", "実施中の管理策",
                   "組織による記入が必要", "2026-11-02 18:00 JST"):
        assert phrase in text
    assert "Controls in force" not in text
    with pytest.raises(ReportLanguageError, match="'fr'"):
        build_design_document(ledger, lang="fr")


def test_every_string_exists_in_both_languages() -> None:
    for table in (design_strings.TABLES, haip._S, incidents._S):
        assert set(table["en"]) == set(table["ja"])
    assert len(haip._FALLBACK["en"]) == len(haip._FALLBACK["ja"]) == 7


# -- the HAIP draft ---------------------------------------------------------------------------


def _haip_ledger(ledger: Ledger) -> None:
    ledger.append_many([
        _call(0, "openai", "gpt-4o", attributes={"kansa.output.label.machine_readable": ["c2pa"]}),
        _call(1, "openai", "gpt-4o", attributes={"kansa.output.label.machine_readable": ["c2pa"]}),
        _call(2, "anthropic", "claude-sonnet-4"),
        _call(3, "anthropic", "claude-sonnet-4", attributes={"kansa.incident": "serious"}),
    ])


def test_haip_draft_has_seven_sections_titled_from_the_pack(ledger: Ledger) -> None:
    _haip_ledger(ledger)
    pack = haip.haip_pack()
    assert pack is not None, "the bundled pack intl.oecd/haip-reporting is missing"
    doc = build_haip_draft(ledger, lang="en", organisation="Example KK", now=T0)
    numbered = [s for s in doc.sections if (s.anchor or "").startswith("section-")]
    assert [s.anchor for s in numbered] == [f"section-{n}" for n in range(1, 8)]
    for n, s in enumerate(numbered, 1):
        assert s.heading == f"Section {n}: {pack.obligation(f'section-{n}').title}"
        # every section asks the organisation for its answers, explicitly
        assert KeyValue(((haip._S["en"]["answers"], TBC["en"]),)) in s.blocks
    assert ("Organisation", "Example KK") in doc.meta
    assert any(pack.hash in v for _, v in doc.meta)
    text = _text(doc)
    assert "DRAFT, NOT A SUBMISSION" in text
    by = {s.anchor: _text(Document("", "en", sections=[s])) for s in numbered}
    assert "2 of 4 (50.0%)" in by["section-5"]  # the incident call is an output too
    assert "serious" in by["section-4"]
    assert "Tamper-evident log" in by["section-2"]
    assert "claude-sonnet-4" in by["section-3"] and "gpt-4o" in by["section-3"]
    for n in (6, 7):
        assert haip._S["en"]["nothing"] in by[f"section-{n}"]


def test_haip_draft_falls_back_to_its_own_titles_and_marks_the_organisation(
        ledger: Ledger) -> None:
    _haip_ledger(ledger)
    doc = build_haip_draft(ledger, lang="ja", packs=[], now=T0)
    numbered = [s for s in doc.sections if (s.anchor or "").startswith("section-")]
    assert [s.heading for s in numbered] == [
        f"セクション {n}：{t}" for n, t in enumerate(haip._FALLBACK["ja"], 1)]
    assert ("組織", "組織による記入が必要") in doc.meta
    text = _text(doc)
    assert "これは報告書案であり、提出物ではありません" in text
    assert "kansa 内蔵の表" in text
    assert text.count("組織による記入が必要") >= 8  # the organisation and seven sections


def test_haip_section_1_reports_stored_replays(ledger: Ledger) -> None:
    from kansa.policy.bundled import example_pack_files
    from kansa.policy.pack import load_pack
    from kansa.policy.replay import replay

    v1 = load_pack(example_pack_files()[0])
    ledger.append_many([
        _call(0, "openai", "gpt-4o"),
        {"ts": _at(1), "system": "support-bot", "gen_ai.provider.name": "openai"},  # no model
        {"ts": _at(2), "system": "support-bot", "gen_ai.provider.name": "openai",
         "gen_ai.request.model": "gpt-4o"},  # ok, but no token counts
    ])
    replay(ledger, [v1])
    doc = build_haip_draft(ledger, lang="en", now=T0)
    s1 = next(s for s in doc.sections if s.anchor == "section-1")
    table = next(b for sub in s1.subsections for b in sub.blocks if isinstance(b, Table))
    assert table.rows == (("kansa.example/ai-logging@1", "3"),)


def test_haip_japanese_titles_come_from_the_pack(ledger: Ledger) -> None:
    pack = haip.haip_pack()
    assert pack is not None
    infos = haip.section_infos("ja", pack)
    for info in infos:
        ja = pack.obligation(f"section-{info.number}").text["ja"].text
        assert ja.startswith(info.title) and re.search(r"[ぁ-んァ-ン一-龯]", info.title)
        assert info.scope == ja and info.scope_kind == "summary"


# -- incident deadlines -----------------------------------------------------------------------

_EU_LIKE = (Deadline("serious incident", 360), Deadline("death of a person", 240),
            Deadline("widespread infringement", 48),
            Deadline("serious and irreversible disruption of critical infrastructure", 48),
            Deadline("imminent danger to life", 24))
H = 3_600_000_000


@pytest.mark.parametrize(("category", "hours"), [
    ("serious", 360), ("death", 240), ("widespread_infringement", 48),
    ("critical_infrastructure", 48), ("something_else", 360)])
def test_the_shortest_applicable_deadline_binds(category: str, hours: int) -> None:
    c = clock(_EU_LIKE, category, 1_000)
    assert c.binding.within_hours == hours and c.binding.due_us == 1_000 + hours * H
    # a case that depends on facts no record holds never binds by itself
    assert c.cases[-1].applies == "conditional"


def test_deadline_edges() -> None:
    c = clock(_EU_LIKE[:2], "death", 0)
    due = 240 * H
    assert not c.overdue(due) and c.remaining(due) == timedelta(0)
    assert c.overdue(due + 1)
    assert not c.overdue(due - 1) and c.remaining(due - 1) == timedelta(microseconds=1)
    assert incidents._status("en", c, due) == "due now"
    assert incidents._status("en", c, due + 90 * 60 * 1_000_000) == "OVERDUE by 1 h 30 min"
    assert incidents._status("en", c, due - 26 * H) == "1 d 2 h 0 min left"
    assert incidents._status("ja", c, due + 25 * H) == "期限超過（1日1時間0分）"


_TEST_PACK = """
pack: test.example/incidents
version: "1"
title: "TEST ONLY: incident reporting"
title_ja: "テスト用：インシデント報告"
publisher: tests
sources: [https://example.org/test]
jurisdiction: example
status: in_force
effective_from: 2026-01-01
obligations:
  - id: report
    title: Report serious incidents
    citation: {article: "9", paragraph: "1"}
    role: provider
    legal_force: binding
    text: {en: {kind: summary, text: "Report incidents."}}
    evidence:
      kind: record
      description: The report sent.
      applies: 'has(record.attributes) && "kansa.incident" in record.attributes'
    incident:
      report_to: The Test Authority
      deadlines:
        - {case: "serious incident", within_hours: 360}
        - {case: "death of a person", within_hours: 240}
        - {case: "imminent danger", within_hours: 24}
  - id: later
    citation: {article: "10"}
    role: provider
    legal_force: binding
    effective_from: 2030-01-01
    text: {en: {kind: summary, text: "Report later."}}
    evidence: {kind: record, description: x}
    incident:
      report_to: Nobody yet
      deadlines: [{case: "any", within_hours: 1}]
"""


def _test_pack() -> Pack:
    return parse_pack(_TEST_PACK, "test-incidents.yaml")


def test_incident_drafts_with_deadlines_and_receipts(ledger: Ledger) -> None:
    ledger.append_many([
        _call(0, "openai", "gpt-4o"),
        _call(10, "openai", "gpt-4o", attributes={"kansa.incident": "death"}),
        _call(20, "openai", "gpt-4o", attributes={"kansa.incident": "serious"}),
    ])
    now = T0 + timedelta(minutes=10, hours=240)  # exactly the death case's deadline
    doc = build_incident_drafts(ledger, lang="en", packs=[_test_pack()], now=now)
    drafts = [s for s in doc.sections if (s.anchor or "").startswith("incident-")]
    assert [s.heading for s in drafts] == [
        "Incident at ledger index 1: TEST ONLY: incident reporting, Art. 9(1)",
        "Incident at ledger index 2: TEST ONLY: incident reporting, Art. 9(1)"]
    kv = [dict(next(b for b in s.blocks if isinstance(b, KeyValue)).pairs) for s in drafts]
    assert kv[0]["Report to"] == "The Test Authority"
    assert kv[0]["Binding case"] == "death of a person (240 h)"
    assert kv[0]["Deadline"] == "2026-11-12 09:10:00 UTC"
    assert kv[0]["At 2026-11-12 09:10:00 UTC"] == "due now"
    assert kv[1]["Binding case"] == "serious incident (360 h)"
    assert kv[1]["Deadline"] == "2026-11-17 09:20:00 UTC"
    assert kv[1]["At 2026-11-12 09:10:00 UTC"] == "5 d 0 h 10 min left"
    summary = next(s for s in doc.sections if s.anchor == "summary")
    assert [r[0] for r in summary.blocks[0].rows] == ["1", "2"]  # type: ignore[union-attr]
    # the obligation not yet in force is listed, not drafted
    skipped = next(s for s in doc.sections if s.anchor == "skipped")
    rows = next(b for b in skipped.blocks if isinstance(b, Table)).rows
    assert {(r[0], r[1]) for r in rows} == {("1", "test.example/incidents@1#later"),
                                            ("2", "test.example/incidents@1#later")}
    assert all("not in force until 2030-01-01" in r[2] for r in rows)
    # each draft carries a receipt that proves the incident record
    for s, index in zip(drafts, (1, 2), strict=True):
        code = next(b for b in s.blocks if isinstance(b, Code))
        r = verify_receipt(code.text.encode(), ledger.verifier, None)
        assert r.index == index
        assert r.extra == ledger.get(index).entry_bytes
        fields = next(sub for sub in s.subsections)
        assert all(v == TBC["en"] for _, v in fields.blocks[0].pairs)  # type: ignore[union-attr]
    later = build_incident_drafts(ledger, lang="en", packs=[_test_pack()],
                                  now=now + timedelta(microseconds=1), receipts=False)
    kv0 = dict(next(b for b in later.sections[2].blocks if isinstance(b, KeyValue)).pairs)
    assert next(v for k, v in kv0.items() if k.startswith("At ")) == "OVERDUE by 0 h 0 min"
    assert not any(isinstance(b, Code) for b in _blocks(later))


def test_incident_drafts_in_japanese_show_jst(ledger: Ledger) -> None:
    ledger.append(_call(0, "openai", "gpt-4o", attributes={"kansa.incident": "death"}))
    doc = build_incident_drafts(ledger, lang="ja", packs=[_test_pack()], now=T0,
                                receipts=False)
    text = _text(doc)
    assert "台帳番号 0 のインシデント：テスト用：インシデント報告 Art. 9(1)" in text
    assert "2026-11-12 09:00:00 UTC / 2026-11-12 18:00:00 JST" in text
    assert "残り 10日0時間0分" in text
    assert "組織による記入が必要" in text and "認識時点" in text


def test_bundled_eu_ai_act_art73_applies_to_high_risk_systems(ledger: Ledger) -> None:
    from kansa.policy.bundled import bundled_packs

    eu = [p for p in bundled_packs() if p.id == "eu/ai-act"]
    assert eu, "the bundled EU AI Act packs are missing"
    ts = datetime(2028, 3, 1, 12, 0, tzinfo=UTC)
    rec = _call(0, "openai", "gpt-4o", attributes={"kansa.incident": "death"})
    rec["ts"] = ts.isoformat().replace("+00:00", "Z")
    ledger.append(rec)
    facts = {"support-bot": {"high_risk": True, "roles": ["provider"], "jurisdictions": ["EU"]}}
    drafts, _ = incidents.plan_drafts(incidents.find_incidents(ledger.log.store), eu, facts)
    art73 = [d for d in drafts if d.obligation.citation.article == "73"]
    assert len(art73) == 1
    assert art73[0].clock.binding.within_hours == 240  # ten days for a death
    assert art73[0].clock.binding.due_us == drafting.to_us(ts + timedelta(days=10))
    # without the high-risk fact Art. 73 does not apply, and the draft document says so
    none, skipped = incidents.plan_drafts(incidents.find_incidents(ledger.log.store), eu, {})
    assert not [d for d in none if d.obligation.citation.article == "73"]
    assert any("art73" in s.ref for s in skipped)


def test_no_incidents_says_so(ledger: Ledger) -> None:
    ledger.append(_call(0, "openai", "gpt-4o"))
    doc = build_incident_drafts(ledger, lang="en", packs=[_test_pack()], now=T0)
    assert "No record marks an incident: nothing to report." in _text(doc)


# -- rendering and the command line ----------------------------------------------------------


def test_rendered_html_and_pdf_carry_the_text(ledger: Ledger, tmp_path: Path) -> None:
    _haip_ledger(ledger)
    docs = {
        "design": build_design_document(ledger, lang="ja", now=T0),
        "haip": build_haip_draft(ledger, lang="ja", now=T0),
        "incidents": build_incident_drafts(ledger, lang="ja", packs=[_test_pack()], now=T0),
    }
    expected = {"design": "セキュリティ設計書", "haip": "報告書案",
                "incidents": "重大インシデント報告書案"}
    for name, doc in docs.items():
        html = _html_text(render_html(doc))
        assert expected[name] in html and "組織による記入が必要" in html
        pdf = render_pdf(doc, tmp_path / f"{name}.pdf")
        text = "".join(p.extract_text() or "" for p in pypdf.PdfReader(pdf).pages)
        squashed = re.sub(r"\s+", "", text)
        assert expected[name] in squashed and "組織による記入が必要" in squashed
    en = _html_text(render_html(build_haip_draft(ledger, lang="en", now=T0)))
    assert "TO BE COMPLETED BY THE ORGANISATION" in en and "Section 7:" in en


def test_cli_writes_the_three_documents(ledger: Ledger, home: Path, store_url: str,
                                        tmp_path: Path) -> None:
    from kansa.cli import app

    ledger.append(_call(0, "openai", "gpt-4o", attributes={"kansa.incident": "death"}))
    ledger.checkpoint()
    pack_file = tmp_path / "test-incidents.yaml"
    pack_file.write_text(_TEST_PACK)
    runner = CliRunner()
    out = tmp_path / "out"
    common = ["--home", str(home), "--store", store_url, "--out", str(out)]
    r = runner.invoke(app, ["report", "design", "--lang", "en", "--format", "html", *common])
    assert r.exit_code == 0, r.output
    assert "Security design document" in (out / "security-design-en.html").read_text()
    r = runner.invoke(app, ["report", "haip", "--lang", "ja", "--format", "html",
                            "--organisation", "株式会社テスト", *common])
    assert r.exit_code == 0, r.output
    assert "株式会社テスト" in (out / "haip-draft-ja.html").read_text()
    r = runner.invoke(app, ["report", "incidents", "--format", "html", "--now",
                            "2026-11-02T09:00:00Z", "--pack", str(pack_file), *common])
    assert r.exit_code == 0, r.output
    html = _html_text((out / "incident-drafts-en.html").read_text())
    assert "Serious incident report drafts" in html
    assert "2026-11-12 09:00:00 UTC" in html and "10 d 0 h 0 min left" in html
    r = runner.invoke(app, ["report", "design", "--lang", "fr", *common])
    assert r.exit_code == 1 and "reports are written in en or ja, not 'fr'" in r.output
    r = runner.invoke(app, ["report", "haip", "--format", "docx", *common])
    assert r.exit_code == 1 and "--format takes html, pdf" in r.output


# -- properties -------------------------------------------------------------------------------

_values = st.sampled_from(["a", "b", ""]) | st.none()
_attr_values = st.dictionaries(
    st.sampled_from(usage_scan._ATTRS + ("kansa.incident", "other")),
    st.none() | st.booleans() | st.sampled_from(["x", "y"])
    | st.lists(st.sampled_from(["c2pa", "watermark"]), max_size=3), max_size=4)


@st.composite
def _entries(draw: st.DrawFn) -> dict[str, Any]:
    e: dict[str, Any] = {}
    for k in ("system", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model"):
        v = draw(_values)
        if v is not None:
            e[k] = v
    e["kind"] = draw(st.sampled_from(["gen_ai.call", "tool.call", "kansa.event",
                                      "kansa.erasure"]))
    e["outcome"] = draw(st.sampled_from(["ok", "error"]))
    for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        if draw(st.booleans()):
            e[k] = draw(st.integers(0, 1000) | st.booleans())
    if draw(st.booleans()):
        e["content"] = {"alg": "x", "commitment": "y"}
    attrs = draw(_attr_values)
    if attrs:
        e["attributes"] = attrs
    return e


def _naive(entries: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per-record counting, the obvious way: what grouping must reproduce."""
    models: dict[tuple[str, str, str], list[int]] = {}
    out: dict[str, Any] = {"records": 0, "ok": 0, "labelled": 0, "outputs": 0, "otel": 0,
                           "gateway": 0, "decisions": {}, "tokens": 0}
    for ts, e in entries:
        a = e.get("attributes") or {}
        s = {k: (v if isinstance(v, str) else "") for k, v in e.items()}
        out["records"] += 1
        ok = e["outcome"] == "ok"
        tin = e.get("gen_ai.usage.input_tokens")
        tokens = tin if type(tin) is int else 0
        out["tokens"] += tokens
        key = (s.get("gen_ai.provider.name", ""), s.get("gen_ai.request.model", ""),
               s.get("gen_ai.response.model", ""))
        if any(key):
            m = models.setdefault(key, [0, 0, ts, ts, 0])
            m[0] += 1
            m[1] += ok
            m[2], m[3] = min(m[2], ts), max(m[3], ts)
            m[4] += tokens
        if e["kind"] == "gen_ai.call" and ok:
            out["outputs"] += 1
            marks = a.get("kansa.output.label.machine_readable")
            out["labelled"] += isinstance(marks, list) and bool(marks)
        if a.get("kansa.otel.trace_id") is not None:
            out["otel"] += 1
        elif a.get("kansa.gateway.upstream") is not None or \
                a.get("kansa.gateway.key") is not None:
            out["gateway"] += 1
        d = a.get("kansa.policy.decision")
        if isinstance(d, str):
            out["decisions"][d] = out["decisions"].get(d, 0) + 1
    out["models"] = models
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), _entries()), max_size=40))
def test_grouped_counting_equals_per_record_counting(
        entries: list[tuple[int, dict[str, Any]]]) -> None:
    groups: dict[tuple[Any, ...], usage_scan._Group] = {}
    for ts, e in entries:
        key = usage_scan._hashable(usage_scan._key(e))
        tin = e.get("gen_ai.usage.input_tokens")
        g = groups.setdefault(key, usage_scan._Group(0, 0, ts, ts, 0, 0))
        g.count += 1
        g.ok += e["outcome"] == "ok"
        g.first_us, g.last_us = min(g.first_us, ts), max(g.last_us, ts)
        g.input_tokens += usage_scan._int(tin)
    u = usage_scan.Usage()
    for key, g in groups.items():
        usage_scan._fold(u, key, g)
    want = _naive(entries)
    assert u.records == want["records"]
    assert (u.outputs, u.labelled) == (want["outputs"], want["labelled"])
    assert (u.intake["otel"], u.intake["gateway"]) == (want["otel"], want["gateway"])
    assert dict(u.decisions) == want["decisions"]
    assert sum(s.input_tokens for s in u.systems.values()) == want["tokens"]
    assert {k: [s.count, s.ok, s.first_us, s.last_us, s.input_tokens]
            for k, s in u.models.items()} == want["models"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.integers(1, 10_000)), min_size=1,
                max_size=6),
       st.sampled_from(incidents.CATEGORIES + ("other",)), st.integers(0, 2**50))
def test_binding_deadline_is_the_shortest_applicable(
        cases: list[tuple[str, int]], category: str, aware: int) -> None:
    c = clock([Deadline(t, h) for t, h in cases], category, aware)
    applicable = [h for i, (t, h) in enumerate(cases)
                  if i == 0 or incidents._matches(t, category)]
    assert c.binding.within_hours == min(applicable)
    assert c.binding.due_us == aware + c.binding.within_hours * H
    assert not c.overdue(c.binding.due_us) and c.overdue(c.binding.due_us + 1)
    assert all(cd.due_us == aware + cd.within_hours * H for cd in c.cases)


def test_store_description_never_shows_credentials() -> None:
    assert setup_facts.describe_store("sqlite:////var/lib/kansa/ledger.db") == \
        "SQLite /var/lib/kansa/ledger.db"
    d = setup_facts.describe_store("postgresql://kansa:s3cret@db.example:5433/ledger?sslmode=require")
    assert d == "PostgreSQL db.example:5433/ledger" and "s3cret" not in d


def test_japanese_drafts_say_skipped_reasons_roles_and_outcomes_in_japanese(
        ledger: Ledger) -> None:
    from kansa.report.reasons import engine_reason

    ledger.append_many([
        _call(0, "openai", "gpt-4o", attributes={"kansa.incident": "death"}),
        _call(1, "openai", "gpt-4o", outcome="timeout"),
    ])
    doc = build_incident_drafts(ledger, lang="ja", packs=[_test_pack()], now=T0,
                                receipts=False)
    skipped = next(s for s in doc.sections if s.anchor == "skipped")
    rows = next(b for b in skipped.blocks if isinstance(b, Table)).rows
    assert rows and all(r[2] == "2030年1月1日まで適用されません" for r in rows)
    design_ja = _text(build_design_document(
        ledger, lang="ja", now=T0, systems={"support-bot": {"roles": ["provider", "deployer"]}}))
    assert "AI提供者、AI利用者" in design_ja and "provider" not in design_ja.split()
    assert "タイムアウト（timeout）" in design_ja and "成功（ok）" in design_ja
    # every reason the engine gives, in Japanese; one kansa does not know is marked
    assert engine_reason("ja", "applies to the provider or deployer; the system is "
                         "developer") == "対象はAI提供者、AI利用者、このシステムはAI開発者"
    assert engine_reason("ja", "applies in EU; the system is offered in JP") == \
        "適用地域は EU、このシステムの提供地域は JP"
    assert engine_reason("ja", "not in force since 2027-08-02 (transition 2)") == \
        "2027年8月2日以降は適用されません（経過措置 2）"
    assert engine_reason("ja", "does not apply to this record") == "この記録には適用されません"
    assert engine_reason("ja", "something new") == "（判定理由、英語）something new"
    assert engine_reason("en", "something new") == "something new"


def test_evidence_report_summary_lists_incident_and_transition_deadlines(
        ledger: Ledger) -> None:
    from kansa.policy.replay import replay
    from kansa.report.evidence import collect_evidence, evidence_document

    ledger.append_many([
        _call(0, "openai", "gpt-4o"),
        _call(10, "openai", "gpt-4o", attributes={"kansa.incident": "death"}),
    ])
    pack = _test_pack()
    replay(ledger, [pack])
    data = collect_evidence(ledger, [pack], now=T0)
    got = [(d.kind, d.when, d.obligation) for d in data.deadlines]
    # the death case binds: 240 h after the record; the later duty starts on 2030-01-01
    assert got == [("incident", T0 + timedelta(minutes=10, hours=240), "report"),
                   ("starts", datetime(2030, 1, 1, tzinfo=UTC), "later")]
    summary = evidence_document(data, "ja").sections[0]
    table = next(b for b in summary.blocks if isinstance(b, Table)
                 and (b.caption or "").startswith("今後の期日"))
    assert table.rows[0][0] == "2026年11月12日 09:10:00 UTC"
    assert table.rows[0][1].startswith("インシデント報告の期限（death")
    assert table.rows[1][1] == "適用開始"
    assert "期限超過" not in table.rows[0][1]
    # later: the obligation's date has passed; the incident report stays, overdue
    later = collect_evidence(ledger, [pack], now=datetime(2031, 1, 1, tzinfo=UTC))
    assert [d.kind for d in later.deadlines] == ["incident"]
    text = render_html(evidence_document(later, "en"))
    assert "incident report due (death · support-bot · 1): OVERDUE" in text
