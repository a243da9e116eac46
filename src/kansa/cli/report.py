"""``kansa report evidence`` (HTML/PDF evidence reports); the other reports are in
``report_drafts``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kansa.cli import report_drafts
from kansa.cli._common import (
    HomeOpt,
    StoreOpt,
    command_group,
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

app = command_group(
    "report",
    (
        "Write reports from the ledger: 'kansa report evidence' shows, per obligation of "
        "each rule pack, the verdicts on recorded usage, failing examples with receipts "
        "and the signed checkpoint they are proven against, as HTML and PDF, in English "
        "or Japanese."
    ),
)
# the security design document, the OECD HAIP draft and incident drafts
app.add_typer(report_drafts.app)


def _progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


def home_path(ledger: Ledger, home: Path | None) -> Path:
    if ledger.home is not None:
        return ledger.home.path
    return home or Path(".kansa")


def _packs(refs: list[str], home: Path) -> list[Pack]:
    from kansa.policy.feed import find_pack

    return [find_pack(ref, home) for ref in refs]


def _replay_first(ledger: Ledger, packs: list[Pack], systems: dict[str, Any]) -> None:
    from kansa.policy.replay import replay

    total = ledger.log.size()
    console.print(f"no stored replay covers {', '.join(p.ref for p in packs)} over the "
                  f"period: replaying all {total:,} records first")
    with _progress() as prog:
        task = prog.add_task("replaying", total=total)
        res = replay(ledger, packs, systems=systems,
                     progress=lambda n: prog.advance(task, n))
    console.print(f"replayed {res.records:,} records in {res.seconds:.1f} s "
                  f"(run {res.run_id})")


@app.command("evidence")
def evidence_report(
    lang: Annotated[str, typer.Option(
        "--lang", help="Language of the report: en (English) or ja (Japanese).")] = "en",
    formats: Annotated[str, typer.Option(
        "--format", help="html, pdf or html,pdf (comma-separated).")] = "html,pdf",
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Directory to write into (created if missing).")] = Path("."),
    pack: Annotated[list[str] | None, typer.Option(
        "--pack", help="A pack to report on: ID@VERSION, ID (newest version) or a YAML "
        "file (repeatable). Default: the activated packs ('kansa packs activate'), else "
        "the packs of the newest stored replay, or every bundled pack if nothing was "
        "replayed yet.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only records at or after this instant (RFC 3339, e.g. 2026-07-01T00:00:00Z).")
    ] = None,
    until: Annotated[str | None, typer.Option(
        help="Only records before this instant (RFC 3339).")] = None,
    system: Annotated[str | None, typer.Option(
        help="Only the records of this AI system (judges its records again: tallies are "
        "not kept per system).")] = None,
    systems: Annotated[Path | None, typer.Option(
        "--systems", help="YAML/JSON file of system facts (as for 'kansa replay'), used "
        "when this command has to judge records.")] = None,
    examples: Annotated[int, typer.Option(
        help="Failing examples shown per obligation, each with a receipt.", min=0, max=100)
    ] = 3,
    run: Annotated[str | None, typer.Option(
        help="Report this stored replay (its run id) instead of the newest one.")] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write the evidence report: per obligation its status and verdict counts, failing
    examples with ledger receipts, the signed checkpoint they are proven against, charts
    of verdicts per day, and evidence people supplied.

    The packs are those given with --pack, else the activated packs
    ('kansa packs activate'), else those of the newest stored replay.
    Counts come from the newest stored replay ('kansa replay') that
    judged the packs over the period; if there is none, this command
    replays the whole log first (under every bundled pack when no
    pack is known) and says so. It prints which replay it used, and
    the report says when newer packs are active than it judged under. Files are named
    evidence-report-LANG.html and evidence-report-LANG.pdf.

    Examples:

      kansa report evidence --lang ja --out reports/

      kansa report evidence --pack ID@VERSION --since 2026-07-01T00:00:00Z
    """
    from kansa.api import Ledger
    from kansa.report.evidence import NoReplayError, collect_evidence, evidence_document
    from kansa.report.i18n import check_lang
    from kansa.report.render_html import render_html
    from kansa.report.render_pdf import render_pdf

    fmts = report_formats(formats)
    facts = system_facts(systems)
    with errors():
        check_lang(lang)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise fail(f"cannot create {out_dir}: {e.strerror or e}") from None
        with Ledger.open(store, home=home) as lg:
            from kansa.policy.feed import activations

            hp = home_path(lg, home)
            active = [a.ref for a in activations(lg) if a.until is None]
            packs = _packs(pack or [], hp) or None
            if packs is None and run is None and active:
                # what the organisation activated is what it answers to
                packs = _packs(active, hp)
                console.print("reporting on the active packs: " + ", ".join(active))
            try:
                with _progress() as prog:
                    # only judging one system's records reports progress (the rest is
                    # a few queries)
                    task = prog.add_task(f"judging {system}'s records", total=lg.log.size(),
                                         visible=system is not None)
                    data = collect_evidence(lg, packs, since=since, until=until,
                                            system=system, systems=facts, examples=examples,
                                            run=run, progress=lambda n: prog.advance(task, n),
                                            active=active)
            except NoReplayError:
                if run is not None or system is not None:
                    raise
                if not packs:  # nothing was ever replayed: judge under what kansa ships
                    from kansa.policy.bundled import bundled_packs

                    packs = bundled_packs()
                _replay_first(lg, packs, facts)
                data = collect_evidence(lg, packs, since=since, until=until,
                                        examples=examples, systems=facts, active=active)
        doc = evidence_document(data, lang)
        written = []
        for f in fmts:
            target = out_dir / f"evidence-report-{lang}.{f}"
            with console.status(f"writing {target}"):
                if f == "html":
                    target.write_text(render_html(doc), encoding="utf-8")
                else:
                    render_pdf(doc, target)
            written.append(target)
    if data.run is not None:
        out.print(f"counts from stored replay {data.run.run_id} "
                  f"({data.run.started_at:%Y-%m-%d %H:%M} UTC) under "
                  + ", ".join(p.ref for p in data.packs))
    newer = [a for a in active if a not in {p.ref for p in data.packs}]
    if newer:
        out.print("note: newer packs are active than this report judged under: "
                  + ", ".join(newer) + " (the report says so too)")
    failing = sum(1 for r in data.results if r.status == "failing")
    needed = sum(1 for r in data.results if r.status == "evidence_needed")
    out.print(f"{len(data.results)} obligations in {len(data.packs)} pack(s): {failing} "
              f"failing, {needed} awaiting evidence; proven against checkpoint of size "
              f"{data.checkpoint.checkpoint.size}")
    for w in written:
        out.print(f"wrote {escape(str(w))}")
