"""The evidence report over a real ledger (SQLite and PostgreSQL): counts, receipts,
supplied evidence, languages, and the CLI."""

from __future__ import annotations

import html
import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
from typer.testing import CliRunner

import kansa
from kansa.cli import app
from kansa.ledger.note import Signer
from kansa.ledger.receipt import parse_receipt, verify_receipt
from kansa.policy.pack import load_pack
from kansa.policy.replay import replay
from kansa.report.evidence import (
    NoReplayError,
    ReportError,
    build_evidence_report,
    collect_evidence,
    evidence_document,
)
from kansa.report.evidence_supply import EvidenceError, supplied_evidence, supply_evidence
from kansa.report.render_html import render_html
from kansa.report.render_pdf import render_pdf

EXAMPLES = Path(__file__).parent.parent / "src/kansa/policy/packs/example"
V1_PATH, V2_PATH = EXAMPLES / "ai-logging-v1.yaml", EXAMPLES / "ai-logging-v2.yaml"
V1, V2 = load_pack(V1_PATH), load_pack(V2_PATH)
EVIL_MODEL = '<script>alert("pwned")</script>'
SYSTEMS = {"legacy": {"placed_on_market": date(2026, 3, 1)},
           "newbot": {"placed_on_market": date(2026, 8, 1)}}
RECEIPT_RE = re.compile(r"<pre>(c2sp\.org/tlog-proof@v1\n.*?)</pre>", re.S)


def _records(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    days = ["2026-06-20", "2026-06-30", "2026-07-01", "2026-07-02", "2026-08-15",
            "2026-09-01"]
    out = []
    for i in range(n):
        r: dict[str, Any] = {
            "ts": f"{rnd.choice(days)}T{rnd.randrange(24):02d}:{i % 60:02d}:00Z",
            "system": rnd.choice(["legacy", "newbot"]),
            "kind": "gen_ai.call",
            "outcome": rnd.choice(["ok", "ok", "error"]),
        }
        if rnd.random() < 0.75:
            r["gen_ai.request.model"] = rnd.choice(["gpt-x", EVIL_MODEL])
        if rnd.random() < 0.7:
            r.update({"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 10,
                      "gen_ai.usage.output_tokens": 5})
        out.append(r)
    return out


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/report"),
                           master_key=b"r" * 32)
    try:
        lg.append_many(_records(120))
        yield lg
    finally:
        lg.close()


def _expected(lg: kansa.Ledger, *, since: str | None = None, system: str | None = None
              ) -> dict[tuple[str, str], Counter[str]]:
    """Verdict counts per (pack hash, obligation), judged independently of the report."""
    res = replay(lg, [V1, V2], since=since, systems=SYSTEMS, save=False, collect=True)
    out: dict[tuple[str, str], Counter[str]] = {}
    for f in res.collected:
        assert f.index is not None
        if system is not None and lg.get(f.index).entry.get("system") != system:
            continue
        out.setdefault((f.pack_hash, f.obligation), Counter())[f.verdict] += 1
    return out


def _receipts(page: str) -> list[bytes]:
    return [html.unescape(m).encode() for m in RECEIPT_RE.findall(page)]


def _pdf_text(path: Path) -> str:
    return re.sub(r"\s+", "", "".join(p.extract_text() or ""
                                      for p in pypdf.PdfReader(path).pages))


def test_report_counts_receipts_and_evidence(ledger: kansa.Ledger, tmp_path: Path) -> None:
    policy = tmp_path / "retention.txt"
    policy.write_text("Logs are kept for 400 days.")
    supplied = supply_evidence(ledger, pack=V2.id, obligation="retention-policy", file=policy,
                               title="ログ保存方針 <v1>")
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1, V2], examples=2)

    want = _expected(ledger)
    got = {(r.pack.hash, r.obligation.id): r.counts for r in data.results}
    assert {k: +v for k, v in got.items() if v} == want
    assert any(c["fail"] for c in want.values())

    page = render_html(evidence_document(data, "en"))
    receipts = _receipts(page)
    failing = [x for r in data.results for x in r.examples]
    # + the supplied evidence, once under each version of the pack with that obligation
    assert sum(len(r.supplied) for r in data.results) == 2
    assert failing and len(receipts) == len(failing) + 2
    checkpoint = data.checkpoint_text
    assert html.escape(checkpoint) in page  # printed verbatim, signature line included
    assert "\n— test.kansa/report " in checkpoint
    for rc in receipts:
        r = verify_receipt(rc, ledger.verifier, None)
        assert r.note.to_text() == checkpoint  # proven against the printed checkpoint
        assert r.extra == ledger.get(r.index).entry_bytes
    fails = {(f.index, f.pack_hash, f.obligation) for f in replay(
        ledger, [V1, V2], systems=SYSTEMS, save=False, collect=True).collected
        if f.verdict == "fail"}
    for r in data.results:
        for x in r.examples:
            assert ledger.get(x.index).id == x.record_id
            assert (x.index, r.pack.hash, r.obligation.id) in fails

    # the supplied evidence: listed with its hash, title (escaped) and a receipt of it
    assert supplied.sha256 in page and "ログ保存方針 &lt;v1&gt;" in page
    ev_receipt = [rc for rc in receipts if parse_receipt(rc).index == supplied.index]
    assert len(ev_receipt) == 2
    v2_retention = next(r for r in data.results
                        if r.pack.hash == V2.hash and r.obligation.id == "retention-policy")
    assert v2_retention.status == "evidence_supplied"

    # a record's hostile model name is text, never markup
    assert EVIL_MODEL not in page and html.escape(EVIL_MODEL) in page
    # the example packs are summaries and drafts: said so, never called official
    assert "summary (not the official text)" in page and ">official text<" not in page
    assert "DRAFT: this pack version is a draft" in page


def test_hostile_pack_text_is_escaped(ledger: kansa.Ledger, tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    text = V2_PATH.read_text("utf-8").replace("title: Record which model was called",
                                              f"title: '{evil}'")
    assert evil in text
    path = tmp_path / "evil.yaml"
    path.write_text(text, "utf-8")
    pack = load_pack(path)
    replay(ledger, [pack], systems=SYSTEMS)
    doc = build_evidence_report(ledger, [pack], lang="ja")
    page = render_html(doc)
    assert evil not in page and html.escape(evil) in page
    pdf = _pdf_text(render_pdf(doc, tmp_path / "evil.pdf"))
    assert re.sub(r"\s+", "", evil) in pdf  # shown as the text it is


def test_a_tampered_receipt_does_not_verify(ledger: kansa.Ledger) -> None:
    replay(ledger, [V2], systems=SYSTEMS)
    page = render_html(build_evidence_report(ledger, [V2], lang="en"))
    rc = _receipts(page)[0]
    r = parse_receipt(rc)
    assert r.extra is not None
    forged = rc.replace(b"index " + str(r.index).encode(), b"index " + str(r.index + 1).encode())
    with pytest.raises(kansa.errors.KansaError):
        verify_receipt(forged, ledger.verifier, None)


def test_japanese_report_in_html_and_pdf(ledger: kansa.Ledger, tmp_path: Path) -> None:
    replay(ledger, [V1, V2], systems=SYSTEMS)
    doc = build_evidence_report(ledger, [V1, V2], lang="ja")
    page = render_html(doc)
    assert '<html lang="ja">' in page
    pdf = _pdf_text(render_pdf(doc, tmp_path / "ja.pdf"))
    for expected in ("AI利用コンプライアンス証跡報告書", "適合", "不適合", "要証拠", "対象外",
                     "各モデル呼び出しについて、要求したモデルを記録する。",
                     "すべてのモデル呼び出しについて、提供者とトークン数を記録する。",
                     "要約（公式の条文ではありません）", "署名付きチェックポイント",
                     "案：このパックの版は案であり", "c2sp.org/tlog-proof@v1"):
        assert expected in pdf and expected in re.sub(r"\s+", "", html.unescape(page)), expected
    # an obligation with no Japanese text is shown in English, and says so
    assert "このパックに日本語の本文がない義務は、英語で示します。" in pdf
    assert "Thedeployerkeepsawrittenpolicy" in pdf


def test_english_report_pdf(ledger: kansa.Ledger, tmp_path: Path) -> None:
    replay(ledger, [V2], systems=SYSTEMS)
    doc = build_evidence_report(ledger, [V2], lang="en")
    pdf = _pdf_text(render_pdf(doc, tmp_path / "en.pdf"))
    for expected in ("AIusagecomplianceevidencereport", "Obligationsataglance",
                     "Everymodelcallisloggedwithitsproviderandtokencounts.",
                     "Failingexamples", "Signedcheckpoint", "evidenceneeded"):
        assert expected in pdf, expected
    assert "適合" not in pdf


def test_period_narrows_counts_by_day(ledger: kansa.Ledger) -> None:
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1, V2], since="2026-07-01T00:00:00Z")
    want = _expected(ledger, since="2026-07-01T00:00:00Z")
    got = {(r.pack.hash, r.obligation.id): +r.counts for r in data.results}
    assert {k: v for k, v in got.items() if v} == want
    for r in data.results:
        assert all(day >= "2026-07-01" for day in r.per_day)
        for x in r.examples:
            assert x.ts >= datetime(2026, 7, 1, tzinfo=UTC)


def test_one_system_is_judged_again(ledger: kansa.Ledger) -> None:
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger, [V1, V2], system="newbot", systems=SYSTEMS)
    want = _expected(ledger, system="newbot")
    got = {(r.pack.hash, r.obligation.id): +r.counts for r in data.results}
    assert {k: v for k, v in got.items() if v} == want
    assert all(x.system == "newbot" for r in data.results for x in r.examples)
    doc = evidence_document(data, "en")
    assert ("Systems", "newbot") in doc.meta


def test_no_replay_no_report(ledger: kansa.Ledger) -> None:
    with pytest.raises(NoReplayError, match="kansa replay"):
        collect_evidence(ledger, [V2])
    replay(ledger, [V1], systems=SYSTEMS)
    with pytest.raises(NoReplayError):  # that replay did not judge v2
        collect_evidence(ledger, [V2])
    replay(ledger, [V2], systems=SYSTEMS, since="2026-08-01T00:00:00Z")
    with pytest.raises(NoReplayError):  # that replay judged only part of the period
        collect_evidence(ledger, [V2])
    assert collect_evidence(ledger, [V2], since="2026-08-01T00:00:00Z").results
    with pytest.raises(ReportError, match="the period is empty"):
        collect_evidence(ledger, [V2], since="2026-08-01T00:00:00Z",
                         until="2026-07-01T00:00:00Z")
    with pytest.raises(ReportError, match="no stored replay 'nope'"):
        collect_evidence(ledger, [V2], run="nope")


def test_packs_come_from_the_newest_replay(ledger: kansa.Ledger) -> None:
    replay(ledger, [V1, V2], systems=SYSTEMS)
    data = collect_evidence(ledger)
    assert sorted(p.hash for p in data.packs) == sorted([V1.hash, V2.hash])
    assert data.run is not None and data.records_judged == 120


def test_supplied_evidence_is_refused_without_a_file(ledger: kansa.Ledger,
                                                     tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="does not exist"):
        supply_evidence(ledger, pack=V2.id, obligation="retention-policy",
                        file=tmp_path / "missing.pdf")
    assert supplied_evidence(ledger) == []


# -- CLI -------------------------------------------------------------------------------------

runner = CliRunner()


def _run(*args: str, home: Path) -> tuple[int, str]:
    r = runner.invoke(app, list(args), env={"KANSA_HOME": str(home), "COLUMNS": "200"})
    return r.exit_code, r.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    code, out = _run("init", "--origin", "example.com/report-log", home=h)
    assert code == 0, out
    with kansa.Ledger.open(home=h) as lg:
        lg.append_many(_records(60, seed=5))
    return h


def test_cli_evidence_add_and_report(home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "policy.pdf"
    doc.write_bytes(b"%PDF-1.4 retention policy")
    code, out = _run("evidence", "add", "--pack", str(V2_PATH), "--obligation",
                     "retention-policy", str(doc), "--title", "保存方針", home=home)
    assert code == 0, out
    assert "recorded evidence for kansa.example/ai-logging retention-policy" in out

    code, out = _run("evidence", "add", "--pack", str(V2_PATH), "--obligation", "nope",
                     str(doc), home=home)
    assert code == 1 and "has no obligation 'nope'" in out

    target = tmp_path / "out"
    code, out = _run("report", "evidence", "--lang", "ja", "--out", str(target),
                     "--pack", str(V1_PATH), "--pack", str(V2_PATH), home=home)
    assert code == 0, out
    assert "replaying all 61 records first" in out  # no replay was stored: it ran one
    page = (target / "evidence-report-ja.html").read_text("utf-8")
    assert "保存方針" in page and "証拠提出済み" in page
    pdf = _pdf_text(target / "evidence-report-ja.pdf")
    assert "保存方針" in pdf and "不適合" in pdf

    code, out = _run("report", "evidence", "--format", "pdf", "--out", str(target),
                     home=home)
    assert code == 0, out
    assert "replaying" not in out  # the stored replay is used
    assert (target / "evidence-report-en.pdf").exists()
    assert not (target / "evidence-report-en.html").exists()


def test_cli_report_without_packs_replays_the_bundled_packs(home: Path,
                                                            tmp_path: Path) -> None:
    from kansa.policy.bundled import bundled_packs

    code, out = _run("report", "evidence", "--format", "html", "--out", str(tmp_path),
                     home=home)
    assert code == 0, out
    assert "replaying all 60 records first" in out
    page = (tmp_path / "evidence-report-en.html").read_text("utf-8")
    for p in bundled_packs():
        assert p.hash in page


def test_cli_report_errors(home: Path, tmp_path: Path) -> None:
    code, out = _run("report", "evidence", "--lang", "fr", "--out", str(tmp_path), home=home)
    assert code == 1 and "not 'fr'" in out
    code, out = _run("report", "evidence", "--format", "docx", "--out", str(tmp_path),
                     home=home)
    assert code == 1 and "--format takes html, pdf" in out
    code, out = _run("report", "evidence", "--run", "nope", "--out", str(tmp_path),
                     home=home)
    assert code == 1 and "no stored replay 'nope'" in out
    code, out = _run("report", "evidence", "--pack", "no.such/pack@9", "--out",
                     str(tmp_path), home=home)
    assert code == 1 and "no.such/pack@9" in out
    code, out = _run("report", "evidence", "--help", home=home)
    assert code == 0 and "--lang" in out and "Examples" in out
