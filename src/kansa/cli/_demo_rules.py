"""The rolling-rules part of ``kansa demo``: findings, a signed pack update, its impact
and the evidence report, on the demo's own ledger.

The story is the one the EU's 2026 Digital Omnibus tells. Under the AI Act as adopted,
generated images must carry a machine-readable mark from 2 Aug 2026; Regulation (EU)
2026/1744, in force since 27 Jul 2026, gives systems already on the market until
2 Dec 2026. The demo's operator still runs the pack of the Regulation as adopted: kansa
judges its calls under that pack pinned ("had this version governed"), and says that
it no longer governs. The signed update brings the amended pack; the impact report shows
which records the amendment changes (inside the grace period, on the scenario clock)
and why, and the replay under the amended pack is the one that holds by date.
"""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kansa.api import Ledger
from kansa.cli._common import Column, fit_table
from kansa.ledger.note import Signer
from kansa.policy import feed, signing
from kansa.policy.bundled import PACKS_DIR
from kansa.policy.findings_store import FindingStore
from kansa.policy.impact import impact
from kansa.policy.judging import FAIL
from kansa.policy.pack import Pack
from kansa.policy.replay import replay
from kansa.report.evidence import build_evidence_report
from kansa.report.render_html import render_html
from kansa.report.render_pdf import render_pdf

EU_ADOPTED = "eu/ai-act@2024-1689"
EU_OMNIBUS = "eu/ai-act@2026-omnibus"
JP_GUIDELINES = "jp.meti-mic/ai-guidelines-for-business@1.2"
# End of the Omnibus's Art. 50(2) grace period for systems already on the market (CET).
GRACE_END = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)

# What the operator declares about its systems (normally a systems.yaml passed with
# --systems): a Japanese company that also offers its services in the EU.
SYSTEMS: dict[str, dict[str, Any]] = {
    name: {"roles": ["provider", "deployer"], "jurisdictions": ["JP", "EU"],
           "placed_on_market": date(2026, 3, 1), "generative": True,
           "log_retention_days": 365, "providers": ["openai", "anthropic"]}
    for name in ("support-bot", "hr-screening", "code-assistant", "search-rag",
                 "marketing-images", "kansa-gateway")
}


def _facts() -> dict[str, dict[str, Any]]:
    return {name: dict(facts) for name, facts in SYSTEMS.items()}


def _step(console: Console, n: int, title: str) -> None:
    console.print()
    console.rule(f"[bold cyan]{n}. {title}")


def _failures_table(console: Console, title: str, result_packs: list[Pack], ledger: Ledger,
                    run_id: str) -> Table:
    """Obligations with failing records, under a row per pack (so that neither the pack
    ref nor an obligation id ever wraps)."""
    fs = FindingStore(ledger.log.store)
    tally: Counter[tuple[str, str, str]] = Counter()
    for row in fs.tally(run=run_id):
        tally[(row.pack_hash, row.obligation, row.verdict)] += row.n
    columns = [Column("pack / obligation", whole=True), Column("citation", min_width=14),
               Column("pass", whole=True, justify="right"),
               Column("fail", whole=True, justify="right"),
               Column("legal force", priority=1)]
    rows: list[list[str]] = []
    for p in result_packs:
        failing = [o for o in p.obligations if tally[(p.hash, o.id, FAIL)]]
        if failing:
            rows.append([f"[bold]{escape(p.ref)}[/]", "", "", "", ""])
        for o in failing:
            rows.append([f"  {escape(o.id)}", escape(str(o.citation)),
                         str(tally[(p.hash, o.id, "pass")]),
                         f"[red]{tally[(p.hash, o.id, FAIL)]}[/]", o.legal_force])
    return fit_table(console, columns, rows, title=title).table


def run_rules_steps(ledger: Ledger, home: Path, base: Path, console: Console,
                    first_step: int, *, now: datetime) -> int:
    """Steps ``first_step`` .. ``first_step + 2``; returns the next step number. ``now`` is
    the scenario's clock: activations are recorded at it and the report generated at it."""
    facts = _facts()
    n = first_step
    import yaml

    (base / "systems.yaml").write_text(yaml.safe_dump(SYSTEMS, sort_keys=True), "utf-8")

    _step(console, n, "Check every call against the rules the operator runs")
    adopted = feed.resolve_pack(EU_ADOPTED, home)
    guidelines = feed.resolve_pack(JP_GUIDELINES, home)
    for r in (adopted, guidelines):
        done = feed.activate(ledger, r, at=now)
        console.print(f"activated [bold]{r.pack.ref}[/] ({r.pack.title[:60]}…): ledger "
                      f"entry {done.index}, so which rules were in force is provable")
    until = adopted.pack.effective_until
    if until is not None and now.date() >= until:
        console.print(f"[yellow]{EU_ADOPTED} stopped governing on {until}[/] (Regulation "
                      "(EU) 2026/1744 entered into force): judged by date it gives these "
                      "calls no verdict, so kansa judges them under it pinned - what the "
                      "Regulation as adopted would require.")
    packs = [adopted.pack, guidelines.pack]
    res = replay(ledger, packs, systems=facts, pin=True, now=now)
    console.print(f"Replayed {res.records} records under the active packs in "
                  f"{res.seconds:.2f} s: " + ", ".join(
                      f"{v} {k}" for k, v in sorted(res.verdicts.items()))
                  + f". Failing findings are stored beside the ledger (run {res.run_id}).")
    console.print(_failures_table(console, "obligations with failing records", packs,
                                  ledger, res.run_id))
    fs = FindingStore(ledger.log.store)
    example = fs.findings(pack_hash=adopted.pack.hash, verdict=FAIL,
                          obligation="art50-2-machine-readable-marking", limit=1)
    if example:
        f = example[0]
        entry = ledger.get(f.record_id).entry
        console.print(f"For example entry {f.index} ({entry.get('ts')}) fails {f.pack_ref} "
                      f"{f.citation}: {f.reason}.")

    n += 1
    _step(console, n, "A law changes: a signed pack update and its impact")
    omnibus_file = PACKS_DIR / "eu" / "ai-act-omnibus-2026.yaml"
    feed_dir = base / "publisher-feed"
    feed_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(omnibus_file, feed_dir / omnibus_file.name)
    publisher = Signer.generate("demo-publisher.example")
    (feed_dir / (omnibus_file.name + ".sig")).write_bytes(
        signing.sign_pack((feed_dir / omnibus_file.name).read_bytes(), publisher))
    feed.publish(feed_dir)
    signing.trust_add(home, publisher.verifier.vkey)
    console.print(f"A publisher signs the amended AI Act pack ({EU_OMNIBUS}) and publishes a "
                  f"feed in {feed_dir}; this home trusts the publisher's key.")
    tampered = base / "tampered-feed"
    shutil.copytree(feed_dir, tampered)
    pack_copy = tampered / omnibus_file.name
    pack_copy.write_bytes(pack_copy.read_bytes().replace(b"2026-12-02", b"2027-12-02", 1))
    try:
        feed.add_from(home, tampered)
        console.print("[bold red]a tampered pack was accepted[/]")
    except signing.PackSignatureError as e:
        console.print(f"  a copy with one date changed: [green]rejected[/] ({e})")
    installed = feed.add_from(home, feed_dir)
    console.print(f"  the genuine feed: signature [green]verified[/]; "
                  f"{len(installed.installed)} installed, "
                  f"{', '.join(installed.unchanged) or 'none'} already bundled with the same "
                  "hash.")
    omnibus = feed.resolve_pack(EU_OMNIBUS, home)
    rep = impact(ledger, adopted.pack, omnibus.pack, systems=facts)
    rows = []
    for oid, counts in sorted(rep.summary().items()):
        cit = next((c.citation_after or c.citation_before for c in rep.by_obligation[oid]), "")
        for (before, after), k in sorted(counts.items()):
            rows.append([escape(oid), escape(cit or ""), f"{before} → {after}", str(k)])
    table = fit_table(console, [Column("obligation", whole=True), Column("citation"),
                                Column("verdict change", min_width=14),
                                Column("records", whole=True, justify="right")],
                      rows, title=f"kansa impact --from {EU_ADOPTED} --to {EU_OMNIBUS}").table
    console.print(table)
    changed = rep.by_obligation.get("art50-2-machine-readable-marking", [])
    if changed:
        console.print(f"{len(rep.records_changed)} of {rep.records} records change verdict. "
                      f"Why: {changed[0].reason_after}. Drafts can be tried the same way "
                      "before they take effect.")
    else:
        # Only with --now after the grace period: the amendment no longer changes anything
        # for these records, which is itself the answer an impact report should give.
        why = (" they were made after the Omnibus's Art. 50(2) grace period ended "
               "(2 Dec 2026), so both versions judge them alike." if now >= GRACE_END
               else "")
        console.print(f"No verdict changes for these {rep.records} records.{why} Run the "
                      "demo without --now to see the update change verdicts.")
    later = now + timedelta(minutes=5)
    feed.deactivate(ledger, EU_ADOPTED, at=later)
    act = feed.activate(ledger, omnibus, at=later)
    console.print(f"Activated {EU_OMNIBUS} (ledger entry {act.index}); {EU_ADOPTED} "
                  "deactivated.")
    packs = [omnibus.pack, guidelines.pack]
    res2 = replay(ledger, packs, systems=facts, now=now + timedelta(minutes=10))
    console.print("Replayed under the updated rules, by date: " + ", ".join(
        f"{v} {k}" for k, v in sorted(res2.verdicts.items())) + ".")

    n += 1
    _step(console, n, "Write the evidence report (日本語 and English)")
    out = base / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for lang in ("ja", "en"):
        doc = build_evidence_report(ledger, packs, lang=lang, systems=facts,
                                    now=now + timedelta(minutes=15))
        html = out / f"evidence-{lang}.html"
        html.write_text(render_html(doc), encoding="utf-8")
        pdf = render_pdf(doc, out / f"evidence-{lang}.pdf")
        written += [html, pdf]
    console.print("An executive summary first (status per instrument and system, the top "
                  "failures and why, deadlines, what changed since the previous replay); then "
                  "per obligation its text (marked summary where it is not official), counts "
                  "and failing records; the checks, pack notes, tlog-proof receipts and the "
                  "signed checkpoint in appendices:")
    for p in written:
        console.print(f"  {p}  ({p.stat().st_size:,} bytes)")
    return n + 1
