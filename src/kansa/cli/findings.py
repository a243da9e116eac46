"""``kansa findings oscal``: a stored replay's findings as OSCAL assessment-results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from kansa.cli._common import HomeOpt, StoreOpt, command_group, console, errors
from kansa.cli.packs_oscal import OutOpt, write_or_print

app = command_group("findings", "Findings of rule-pack replays, for auditors and GRC tools.")


@app.command("oscal")
def findings_oscal(
    run: Annotated[list[str] | None, typer.Option(
        "--run", help="A stored replay to report, by run id (repeatable: one OSCAL result "
                      "per run); default: the latest.")] = None,
    out: OutOpt = None,
    evidence: Annotated[int, typer.Option(
        "--evidence", min=0, help="Failing ledger entries cited per obligation.")] = 20,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write a stored replay's findings as OSCAL assessment-results (JSON).

    One result per run; in each, per pack version and obligation that applied, a finding
    (satisfied, or not-satisfied when entries failed or evidence is owed) targeting the
    obligation's statement in the pack's OSCAL catalog, and an observation that counts the
    verdicts and cites failing entries: record id, entry index, leaf hash, and the signed
    checkpoint (in back-matter) whose tree holds them, so each can be proven with
    `kansa prove`. Run `kansa replay --pack ...` first.

    Example: kansa replay --pack pack.yaml && kansa findings oscal --out results.json
    """
    from kansa.api import Ledger
    from kansa.policy.oscal import (
        assessment_results_from_ledger,
        assessment_results_json,
        stored_run,
    )

    with errors(), Ledger.open(store, home=home) as lg:
        wanted: list[str | None] = list(dict.fromkeys(run)) if run else [None]
        runs = [stored_run(lg, r, evidence_limit=evidence) for r in wanted]
        # the one clock reading: last-modified is never later than now
        doc = assessment_results_from_ledger(lg, runs, evidence_limit=evidence,
                                             now=datetime.now(UTC))
    write_or_print(assessment_results_json(doc), out)
    for r, result in zip(runs, doc["assessment-results"]["results"], strict=True):
        console.print(f"run {escape(r.run_id or '')}: {len(result.get('findings', []))} "
                      "findings" + (f" → {escape(str(out))}" if out else ""))
