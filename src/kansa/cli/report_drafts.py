"""``kansa report design``, ``kansa report haip`` and ``kansa report incidents``: commands
that join ``kansa report`` (``cli/report.py`` includes this ``app``). Each writes HTML
and/or PDF, in English or Japanese, into ``--out``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from kansa.cli._common import (
    HomeOpt,
    StoreOpt,
    commands,
    console,
    errors,
    fail,
    out,
    report_formats,
    system_facts,
)

if TYPE_CHECKING:
    from kansa.api import Ledger
    from kansa.policy.pack import Pack
    from kansa.report.doc import Document

app = commands()


LangOpt = Annotated[str, typer.Option(
    "--lang", help="Language of the document: en (English) or ja (Japanese).")]
FormatOpt = Annotated[str, typer.Option(
    "--format", help="html, pdf or html,pdf (comma-separated).")]
OutOpt = Annotated[Path, typer.Option(
    "--out", help="Directory to write into (created if missing).")]
SinceOpt = Annotated[str | None, typer.Option(
    help="Only records at or after this instant (RFC 3339, e.g. 2026-07-01T00:00:00Z).")]
UntilOpt = Annotated[str | None, typer.Option(
    help="Only records before this instant (RFC 3339).")]
SystemsOpt = Annotated[Path | None, typer.Option(
    "--systems", help="YAML/JSON file mapping each system name to its facts (as for "
    "'kansa replay'): roles, jurisdictions, models, providers, log_retention_days...")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="The inline enforcement policy file the gateway runs with "
    "('kansa gateway --policy'): its packs, modes and snapshot hash are listed as a "
    "control, and compared with the snapshots recorded.")]


def _write(doc: Document, out_dir: Path, stem: str, lang: str, fmts: list[str]) -> None:
    from kansa.report.render_html import render_html
    from kansa.report.render_pdf import render_pdf

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fail(f"cannot create {out_dir}: {e.strerror or e}") from None
    for f in fmts:
        target = out_dir / f"{stem}-{lang}.{f}"
        with console.status(f"writing {target}"):
            if f == "html":
                target.write_text(render_html(doc), encoding="utf-8")
            else:
                render_pdf(doc, target)
        out.print(f"wrote {escape(str(target))}")


def _run(home: Path | None, store: str | None, lang: str, formats: str, out_dir: Path,
         stem: str, build: Callable[[Ledger], Document]) -> None:
    from kansa.api import Ledger
    from kansa.report.i18n import check_lang

    fmts = report_formats(formats)
    with errors():
        check_lang(lang)
        with Ledger.open(store, home=home) as lg:
            doc = build(lg)
        _write(doc, out_dir, stem, lang, fmts)


@app.command("design")
def design_command(
    lang: LangOpt = "en",
    formats: FormatOpt = "html,pdf",
    out_dir: OutOpt = Path("."),
    since: SinceOpt = None,
    until: UntilOpt = None,
    systems: SystemsOpt = None,
    policy: PolicyOpt = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write the security design document: AI systems, the models and providers their
    records show (calls, outcomes, tokens, first and last seen), data flows and what is
    stored where, and the controls in force with the evidence behind each.

    Counts come from one pass over the records in the period; configuration comes from
    $KANSA_HOME, --systems and --policy. What kansa cannot know is marked as to be
    completed by the organisation. Files: security-design-LANG.html / .pdf.

    Example: kansa report design --lang ja --systems systems.yaml --out reports/
    """
    from kansa.report.design import build_design_document

    facts = system_facts(systems)
    _run(home, store, lang, formats, out_dir, "security-design",
         lambda lg: build_design_document(lg, lang=lang, since=since, until=until,
                                          systems=facts, policy=policy))


@app.command("haip")
def haip_command(
    lang: LangOpt = "en",
    formats: FormatOpt = "html,pdf",
    out_dir: OutOpt = Path("."),
    organisation: Annotated[str | None, typer.Option(
        "--organisation", help="The reporting organisation's name (else left to be "
        "completed).")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    systems: SystemsOpt = None,
    policy: PolicyOpt = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write a prefilled DRAFT of the OECD Hiroshima AI Process (HAIP) reporting
    framework report: its seven sections, titled from the bundled pack
    intl.oecd/haip-reporting.

    kansa fills in what its records and configuration answer (the ledger's controls,
    models and providers used with volumes, incidents recorded, the share of outputs
    with provenance marks, rule-pack checks run); every other answer is marked TO BE
    COMPLETED BY THE ORGANISATION. It is a draft, not a submission.
    Files: haip-draft-LANG.html / .pdf.

    Example: kansa report haip --organisation "Example KK" --lang ja --out reports/
    """
    from kansa.report.haip import build_haip_draft

    facts = system_facts(systems)
    _run(home, store, lang, formats, out_dir, "haip-draft",
         lambda lg: build_haip_draft(lg, lang=lang, organisation=organisation, since=since,
                                     until=until, systems=facts, policy=policy))


def _packs(refs: list[str], home: Path | None, lg: Ledger) -> list[Pack] | None:
    if not refs:
        return None
    from kansa.policy.feed import find_pack

    base = lg.home.path if lg.home is not None else (home or Path(".kansa"))
    return [find_pack(ref, base) for ref in refs]


@app.command("incidents")
def incidents_command(
    lang: LangOpt = "en",
    formats: FormatOpt = "html,pdf",
    out_dir: OutOpt = Path("."),
    pack: Annotated[list[str] | None, typer.Option(
        "--pack", help="A pack whose reporting duties to draft for: ID@VERSION, ID "
        "(newest version) or a YAML file (repeatable). Default: every bundled pack.")] = None,
    now: Annotated[str | None, typer.Option(
        help="Read the deadline clocks at this instant (RFC 3339) instead of now.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    systems: SystemsOpt = None,
    no_receipts: Annotated[bool, typer.Option(
        "--no-receipts", help="Leave out the tlog-proof receipts.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write serious-incident report DRAFTS: for each record marked as an incident
    (attribute kansa.incident) and each reporting duty that applies to it (e.g. EU AI
    Act Art. 73, California SB 53), whom to report to, the legal deadline, the time
    left or OVERDUE, the record's ledger index with a tlog-proof receipt, and the
    fields the authority asks for that no record can fill.

    Deadlines count from the record's time, taken as the moment of awareness (the
    document says so). Applicability is judged with --systems facts (e.g. high_risk,
    roles, jurisdictions); duties that did not apply are listed with the reason.
    Files: incident-drafts-LANG.html / .pdf.

    Example: kansa report incidents --systems systems.yaml --lang ja --out reports/
    """
    from kansa._time import from_us
    from kansa.report.drafting import to_us
    from kansa.report.incidents import build_incident_drafts

    facts = system_facts(systems)
    with errors():
        at_us = to_us(now)
        at = from_us(at_us) if at_us is not None else None
        refs = pack or []
        _run(home, store, lang, formats, out_dir, "incident-drafts",
             lambda lg: build_incident_drafts(lg, lang=lang, packs=_packs(refs, home, lg),
                                              now=at, systems=facts, since=since,
                                              until=until, receipts=not no_receipts))

