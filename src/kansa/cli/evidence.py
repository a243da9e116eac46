"""``kansa evidence add``: record that a person supplied evidence for an obligation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kansa.cli._common import HomeOpt, StoreOpt, command_group, errors, out
from kansa.cli.report import home_path

app = command_group(
    "evidence",
    (
        "Evidence supplied by people, for obligations no record can show (a written "
        "policy, a test report, a contract). 'kansa evidence add' records a file's SHA-256 "
        "in the ledger; evidence reports list it with its receipt."
    ),
)


@app.command("add")
def evidence_add(
    file: Annotated[Path, typer.Argument(help="The evidence file (its SHA-256 is recorded; "
                                         "the file itself stays where it is).")],
    pack: Annotated[str, typer.Option("--pack", help="The pack id, e.g. jp.ai-guidelines.")],
    obligation: Annotated[str, typer.Option("--obligation", help="The obligation id.")],
    title: Annotated[str | None, typer.Option(
        help="A title for the evidence (default: the file name).")] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Record that FILE was supplied as evidence for an obligation that needs a
    person's evidence.

    The pack and obligation must exist (bundled, installed or a pack file).

    Example:

      kansa evidence add --pack ID --obligation OID policy.pdf
          --title "Log retention policy 2026"
    """
    from kansa.api import Ledger
    from kansa.policy.feed import find_pack
    from kansa.report.evidence_supply import check_obligation, supply_evidence

    with errors(), Ledger.open(store, home=home) as lg:
        found = find_pack(pack, home_path(lg, home))
        check_obligation([found], found.id, obligation)
        ev = supply_evidence(lg, pack=found.id, obligation=obligation, file=file, title=title)
    out.print(f"recorded evidence for {escape(found.id)} {escape(obligation)}: "
              f"entry {ev.index}, record {ev.record_id}")
    out.print(f"sha256 {ev.sha256} ({ev.size:,} bytes, {escape(ev.filename)})")
    out.print(f"prove it with: kansa prove {ev.record_id}")
