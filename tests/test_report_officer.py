"""The evidence report as a compliance officer reads it (issue 14): an executive summary
first, reasons in sentences, raw CEL and receipts only in appendices, one verification
status per pack, a Japanese report in Japanese, and the activated packs reported."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest

import kansa
from kansa.ledger.note import Signer
from kansa.ledger.receipt import verify_receipt
from kansa.policy.bundled import bundled_packs
from kansa.policy.pack import Pack, Text, Transition, load_pack
from kansa.policy.replay import replay
from kansa.report.doc import Block, Code, Document, KeyValue, Para, Section, Table
from kansa.report.evidence import (
    build_evidence_report,
    collect_evidence,
    evidence_document,
    has_japanese,
)
from kansa.report.reasons import obligation_reason, obligation_title, record_reason
from kansa.report.render_html import render_html
from kansa.report.render_pdf import render_pdf

EXAMPLES = Path(__file__).parent.parent / "src/kansa/policy/packs/example"
V1, V2 = load_pack(EXAMPLES / "ai-logging-v1.yaml"), load_pack(EXAMPLES / "ai-logging-v2.yaml")
SYSTEMS = {"legacy": {"placed_on_market": date(2026, 3, 1)},
           "newbot": {"placed_on_market": date(2026, 8, 1)}}
NOW = datetime(2026, 9, 15, tzinfo=UTC)


def _records(n: int) -> list[dict[str, Any]]:
    days = ["2026-06-20", "2026-07-02", "2026-08-15", "2026-09-01"]
    out = []
    for i in range(n):
        r: dict[str, Any] = {"ts": f"{days[i % 4]}T{i % 24:02d}:00:00Z",
                             "system": ("legacy", "newbot")[i % 2], "kind": "gen_ai.call",
                             "outcome": "ok"}
        if i % 3:
            r["gen_ai.request.model"] = "gpt-x"
        if i % 5:
            r.update({"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 10,
                      "gen_ai.usage.output_tokens": 5})
        out.append(r)
    return out


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(sqlite_url, signer=Signer.generate("test.kansa/officer"),
                           master_key=b"o" * 32)
    try:
        lg.append_many(_records(80))
        yield lg
    finally:
        lg.close()


@pytest.fixture
def any_ledger(store_url: str) -> Iterator[kansa.Ledger]:
    """The same records on SQLite and on PostgreSQL."""
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/officer"),
                           master_key=b"o" * 32)
    try:
        lg.append_many(_records(80))
        yield lg
    finally:
        lg.close()


def _walk(sections: list[Section]) -> Iterator[tuple[Section, Block]]:
    for s in sections:
        for b in s.blocks:
            yield s, b
        yield from _walk(s.subsections)


def _texts(block: Block) -> list[str]:
    if isinstance(block, Para):
        return [block.text]
    if isinstance(block, Table):
        return [*block.headers, *(c for r in block.rows for c in r), block.caption or ""]
    if isinstance(block, KeyValue):
        return [x for kv in block.pairs for x in kv]
    if isinstance(block, Code):
        return [block.text, block.caption or ""]
    return []


def _body_and_appendices(doc: Document) -> tuple[list[Section], list[Section]]:
    n = next(i for i, s in enumerate(doc.sections) if s.anchor == "appendix-packs")
    return doc.sections[:n], doc.sections[n:]


# -- reasons ---------------------------------------------------------------------------------


@dataclass
class _Obl:
    """An obligation as the law branch may shape it: a reason template per language."""

    id: str = "o1"
    title: str = "Calls are marked"
    citation: str = "Art. 50(2)"
    effective_from: date = date(2026, 12, 2)
    effective_until: date | None = None
    transitions: tuple[Transition, ...] = ()
    text: dict[str, Text] = field(default_factory=dict)
    reason: dict[str, str] | None = None


def test_reason_sentences_never_say_check_does_not_hold() -> None:
    o = _Obl()
    got = obligation_reason(o, "en", 34, [("support-bot", 34)], stored="check does not hold")
    assert got == ("34 records from support-bot failed: Calls are marked (Art. 50(2), "
                   "applies since 2026-12-02)")
    assert obligation_reason(o, "en", 1, []) == (
        "1 record failed: Calls are marked (Art. 50(2), applies since 2026-12-02)")
    assert record_reason(o, "en", system="bot", stored="check does not hold") == \
        "bot: does not meet Calls are marked (Art. 50(2))"
    ja = obligation_reason(_Obl(text={"ja": Text("summary", "出力に機械可読な印を付ける。詳細。")}),
                           "ja", 34, [("support-bot", 34)])
    assert ja == ("support-bot の記録 34 件が不適合：出力に機械可読な印を付ける"
                  "（Art. 50(2)、2026年12月2日から適用）")
    # more than three systems: named, then counted
    many = [(f"s{i}", 10 - i) for i in range(5)]
    assert "from s0, s1, s2 and 2 more systems failed" in obligation_reason(o, "en", 40, many)


def test_a_transition_named_by_the_stored_reason_gives_the_date() -> None:
    o = _Obl(transitions=(Transition("true", date(2027, 8, 2), None),))
    assert obligation_reason(o, "en", 2, [], stored="check does not hold (transition 1)") \
        .endswith("applies since 2027-08-02)")


def test_a_pack_reason_template_is_preferred_in_the_report_language() -> None:
    o = _Obl(reason={"en": "{system} did not mark {model}'s output ({citation}, since {since})",
                     "ja": "{system} は {model} の出力に印を付けていません（{citation}）"})
    assert record_reason(o, "en", system="bot", model="m1") == \
        "bot did not mark m1's output (Art. 50(2), since 2026-12-02)"
    assert record_reason(o, "ja", system="bot", model="m1") == \
        "bot は m1 の出力に印を付けていません（Art. 50(2)）"
    assert obligation_reason(o, "ja", 3, [("bot", 3)]).startswith("3 件：bot は 不明 の出力")
    # a language the pack has no template in: kansa's sentence; unknown fields stay visible
    only_en = _Obl(reason={"en": "{system} failed {nonsense}"})
    assert record_reason(only_en, "en", system="a") == "a failed {nonsense}"
    assert "を満たしていません" in record_reason(only_en, "ja", system="a")
    # an obligation object with no reason attribute at all (the packs today)
    assert obligation_title(V2.obligations[0], "en") == V2.obligations[0].title


# -- the report ------------------------------------------------------------------------------


def test_executive_summary_first_with_status_why_and_changes(any_ledger: kansa.Ledger) -> None:
    ledger = any_ledger
    replay(ledger, [V1], systems=SYSTEMS)  # the "previous report"
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1, V2], systems=SYSTEMS, now=NOW)
    doc = evidence_document(data, "en")
    first = doc.sections[0]
    assert first.heading == "Executive summary"
    text = "\n".join(x for _, b in _walk([first]) for x in _texts(b))
    assert "Status per instrument" in text and "fails" in text
    assert "Top failing obligations" in text and "records from" in text
    assert "check does not hold" not in text
    # per system: the failing records of each system, from the stored findings, as an
    # independent judgement counts them
    want: dict[tuple[str, str], dict[str, int]] = {}
    for f in replay(ledger, [V1, V2], systems=SYSTEMS, save=False, collect=True).collected:
        if f.verdict == "fail":
            assert f.index is not None
            name = str(ledger.get(f.index).entry["system"])
            got = want.setdefault((f.pack_hash, f.obligation), {})
            got[name] = got.get(name, 0) + 1
    assert want and {k: dict(v) for k, v in data.by_system.items()} == want
    # what changed: compared with the replay before, which judged V1 only
    assert data.previous is not None and data.previous.packs == [V1.ref]
    assert "What changed since the previous stored replay" in text
    assert data.previous.run.run_id in text
    # the whole report never shows the engine's generic reason
    page = render_html(doc)
    assert "check does not hold" not in page


def test_cel_and_receipts_only_in_appendices(ledger: kansa.Ledger, tmp_path: Path) -> None:
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1, V2], now=NOW)
    assert any(r.examples for r in data.results)
    for lang in ("en", "ja"):
        doc = evidence_document(data, lang)
        body, appendices = _body_and_appendices(doc)
        body_text = "\n".join(x for _, b in _walk(body) for x in _texts(b))
        app_text = "\n".join(x for _, b in _walk(appendices) for x in _texts(b))
        for r in data.results:
            if r.obligation.check is not None:
                assert r.obligation.check.expr not in body_text
                assert r.obligation.check.expr in app_text  # Appendix B
            for x in r.examples:  # cited by record id in the body, held in Appendix C
                assert x.record_id in body_text
                assert x.receipt.decode() in app_text
        assert "c2sp.org/tlog-proof@v1\n" not in body_text
        assert not any(isinstance(b, Code) for _, b in _walk(body))
    # HTML: every receipt is a details element with its text and a download that verifies
    page = render_html(evidence_document(data, "en"))
    links = re.findall(r'href="data:text/plain;charset=utf-8;base64,([A-Za-z0-9+/=]+)" '
                       r'download="entry-(\d+)\.tlog-proof"', page)
    assert len(links) == len({x.index for r in data.results for x in r.examples})
    for b64, index in links:
        rc = base64.b64decode(b64)
        assert html.escape(rc.decode()) in page
        assert verify_receipt(rc, ledger.verifier, None).index == int(index)
    assert page.index('id="executive-summary"') < page.index('id="appendix-packs"') < \
        page.index("<details")


def test_verification_banner_states_one_status_with_counts(ledger: kansa.Ledger) -> None:
    def warnings(doc: Any) -> list[str]:
        return [b.text for _, b in _walk(doc.sections)
                if isinstance(b, Para) and b.style == "warning" and "Verification" in b.text]

    # every citation of the amended Act checked against the consolidated text: no warning
    amended = next(p for p in bundled_packs() if p.ref == "eu/ai-act@2026-omnibus")
    assert all(o.verification and o.verification.status == "verified"
               for o in amended.obligations)
    replay(ledger, [amended], systems=SYSTEMS)
    assert warnings(build_evidence_report(ledger, [amended], now=NOW)) == []
    # the Act as adopted: partly verified, said once, with counts
    eu = next(p for p in bundled_packs() if p.ref == "eu/ai-act@2024-1689")
    replay(ledger, [eu], systems=SYSTEMS)
    banners = warnings(build_evidence_report(ledger, [eu], now=NOW))
    assert len(banners) == 1
    (banner,) = banners
    statuses = re.findall(r"citations (?:partly verified|verified|unverified)", banner)
    assert statuses[0] == "citations partly verified"
    counts = [int(n) for n in re.findall(r"(\d+) (?:of \d+ obligations' citations verified|"
                                         r"partly|not)\b", banner)]
    assert sum(counts) == len(eu.obligations)
    assert "NOT FULLY VERIFIED" not in banner and "Notes: Appendix A" in banner


def test_newer_active_packs_are_named(ledger: kansa.Ledger) -> None:
    replay(ledger, [V1], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1], now=NOW, active=[V2.ref])
    doc = evidence_document(data, "en")
    warn = [b.text for _, b in _walk(doc.sections[:1]) if isinstance(b, Para)
            and b.style == "warning"]
    assert any("Newer rule packs are active" in w and V2.ref in w for w in warn)


# -- the Japanese report is Japanese ---------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]{2,}")


def _exempt(packs: list[Pack], data_strings: list[str]) -> str:
    """Everything a Japanese report may quote in another language, whitespace removed:
    the packs' own words (titles, texts, citations, ids, refs, sources, publishers,
    evidence descriptions, verification notes; shown as the pack gives them and marked
    so) and values from the records and the log (system, model, record ids, the log's
    origin, run ids, hashes), and names that are not words of a language (UTC, SHA-256,
    CEL, c2sp.org/tlog-proof@v1, kansa's commands and options, --system)."""
    parts = ["UTC", "SHA-256", "CEL", "c2sp.org/tlog-proof@v1", "kansa verify-receipt FILE "
             "--key VKEY", "kansa.ledger.receipt.verify_receipt", "kansa replay",
             "kansa report evidence", "--run", "--system", "kansa evidence add --pack",
             "--obligation", "kansa", *data_strings]
    for p in packs:
        parts += [p.ref, p.id, p.version, p.title, p.publisher, p.jurisdiction, p.timezone,
                  p.hash, *p.sources]
        if p.verification:
            parts += [p.verification.note or "", p.verification.against or ""]
        for o in p.obligations:
            parts += [o.id, o.title or "", str(o.citation), o.source_url or "",
                      *(tx.text for tx in o.text.values())]
            if o.evidence:
                parts += [o.evidence.kind, o.evidence.description]
    return re.sub(r"\s+", "", "\n".join(parts))


def non_japanese_lines(pdf: Path, exempt: str) -> list[str]:
    """Lines of the PDF's text (pypdf), before the first appendix page, that have no
    Japanese character and carry a Latin word (two letters or more) outside the exempt
    text. A line's tokens are checked one by one, so a table row mixing an exempt id with
    kansa's own English is still caught."""
    out = []
    for page in pypdf.PdfReader(pdf).pages:
        text = page.extract_text() or ""
        if "付録A" in text.replace(" ", "") and "ルールパックと確認状況の注記" in text:
            break  # the appendices: pack notes, CEL, receipts (quoted verbatim)
        for line in text.splitlines():
            if has_japanese(line) or not _WORD.search(line):
                continue
            bad = [tok for tok in (w.strip("():;,.") for w in line.split())
                   if _WORD.search(tok) and tok not in exempt]
            if bad:
                out.append(line)
    return out


def test_japanese_pdf_has_no_english_lines_of_its_own(ledger: kansa.Ledger,
                                                      tmp_path: Path) -> None:
    packs = [p for p in bundled_packs() if p.ref in (
        "eu/ai-act@2026-omnibus", "jp.meti-mic/ai-guidelines-for-business@1.2")]
    replay(ledger, [V1], systems=SYSTEMS)
    replay(ledger, packs, systems=SYSTEMS)
    data = collect_evidence(ledger, packs, systems=SYSTEMS, now=NOW, active=[V1.ref])
    assert any(r.counts["fail"] for r in data.results)
    strings = [data.checkpoint.checkpoint.origin, *(x for r in data.results for ex in r.examples
                                                    for x in (ex.record_id, ex.model,
                                                              ex.system))]
    if data.run is not None:
        strings.append(data.run.run_id)
    if data.previous is not None:
        strings += [data.previous.run.run_id, *data.previous.packs]
    strings += [V1.ref, "legacy", "newbot"]
    exempt = _exempt([*packs, V1], strings)
    path = render_pdf(evidence_document(data, "ja"), tmp_path / "ja.pdf")
    bad = non_japanese_lines(path, exempt)
    assert bad == [], bad
    # the English report is the control: the same check finds its lines
    en = render_pdf(evidence_document(data, "en"), tmp_path / "en.pdf")
    assert len(non_japanese_lines(en, exempt)) > 20


# -- the CLI reports on the activated packs ----------------------------------------------------


def test_cli_reports_the_activated_packs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kansa.cli import app
    from kansa.policy.findings_store import FindingStore

    runner = CliRunner()
    home = tmp_path / "home"

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, list(args), env={"KANSA_HOME": str(home), "COLUMNS": "300"})
        return r.exit_code, r.output

    assert run("init", "--origin", "example.com/officer")[0] == 0
    with kansa.Ledger.open(home=home) as lg:
        lg.append_many(_records(40))
    guidelines = "jp.meti-mic/ai-guidelines-for-business@1.2"
    code, out = run("packs", "activate", guidelines)
    assert code == 0, out
    out_dir = tmp_path / "out"
    code, out = run("report", "evidence", "--lang", "ja", "--format", "html", "--out",
                    str(out_dir))
    assert code == 0, out
    assert f"reporting on the active packs: {guidelines}" in out
    assert "replaying all" in out  # nothing judged them yet: replayed first, and said so
    assert "counts from stored replay" in out
    # an older replay, asked for by id: the report and the command say newer packs are active
    code, out = run("replay", "--pack", str(EXAMPLES / "ai-logging-v1.yaml"))
    assert code == 0, out
    with kansa.Ledger.open(home=home) as lg:
        old = FindingStore(lg.log.store).runs()[0].run_id
    code, out = run("report", "evidence", "--run", old, "--format", "html", "--out",
                    str(out_dir))
    assert code == 0, out
    assert f"counts from stored replay {old}" in out
    assert f"newer packs are active than this report judged under: {guidelines}" in out
    page = (out_dir / "evidence-report-en.html").read_text("utf-8")
    assert "Newer rule packs are active" in page and guidelines in page
