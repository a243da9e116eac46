"""CLI for NIST OSCAL: ``kansa packs export-oscal|import-oscal`` and ``kansa findings oscal``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kansa._cli_common import HomeOpt, StoreOpt, console, errors, fail

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write to this file instead of standard output."),
]

findings_app = typer.Typer(
    rich_markup_mode="markdown", help="Findings of rule-pack replays, for auditors and GRC tools.",
    no_args_is_help=True,
)


def _write(data: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as e:
        raise fail(f"{out}: cannot write: {e.strerror or e}") from None


def export_oscal(
    pack: Annotated[str, typer.Argument(
        help="A pack file (pack.yaml) or a pack reference: id@version, or id for the newest "
             "bundled or installed version.")],
    out: OutOpt = None,
    published: Annotated[str | None, typer.Option(
        help="When the catalog is made available (RFC 3339), written as metadata "
             "published; left out by default so the bytes depend on the pack alone.")] = None,
    home: HomeOpt = None,
) -> None:
    """Write a rule pack version as an OSCAL catalog (JSON).

    One control per obligation; the texts are statement parts, one per language; the CEL
    check or the evidence a person must supply is the control's assessment-method part;
    dates, roles, legal force, transitions, verification and incident deadlines are
    properties and parts in the https://kansa.dev/ns/oscal namespace; the pack's sources are
    back-matter resources. The same pack always gives the same bytes (uuids derive from the
    pack hash), and `kansa packs import-oscal` turns the catalog back into the same pack.

    Example: kansa packs export-oscal kansa.example/ai-logging@2 --out logging-v2.json
    """
    from kansa.home import default_home
    from kansa.policy.feed import find_pack
    from kansa.policy.oscal import catalog_json, pack_to_catalog
    from kansa.records.model import parse_ts

    with errors():
        when = parse_ts(published, field_name="--published") if published else None
        p = find_pack(pack, home or default_home())
        data = catalog_json(pack_to_catalog(p, published=when))
    _write(data, out)
    console.print(f"{escape(p.ref)} {p.hash}: {len(p.obligations)} controls"
                  + (f" → {escape(str(out))}" if out else ""))


def import_oscal(
    catalog: Annotated[Path, typer.Argument(help="An OSCAL catalog (JSON) written by "
                                                  "`kansa packs export-oscal`.")],
    out: OutOpt = None,
    accept_changes: Annotated[bool, typer.Option(
        "--accept-changes",
        help="Accept a catalog edited after export (its content no longer hashes to the "
             "pack-hash it carries); the result is a new pack, with a new hash.")] = False,
) -> None:
    """Turn an OSCAL catalog exported by kansa back into a rule pack (YAML).

    The pack is rebuilt exactly: exporting a pack and importing the catalog gives a pack
    with the same hash. By default a catalog whose content was changed after export is
    refused (see --accept-changes). Errors name the JSON path at fault, e.g.
    `catalog.controls[3].props[5]: unknown kansa property 'rol'`. Properties and parts in
    other namespaces than kansa's are ignored, so other tools may annotate the catalog.

    Example: kansa packs import-oscal logging-v2.json --out logging-v2.yaml
    """
    from kansa.policy.oscal import catalog_to_pack_yaml

    try:
        doc = json.loads(catalog.read_bytes())
    except OSError as e:
        raise fail(f"{catalog}: cannot read: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fail(f"{catalog}: not JSON: {e}") from None
    with errors():
        pack, text = catalog_to_pack_yaml(doc, check_hash=not accept_changes)
    _write(text.encode(), out)
    console.print(f"{escape(pack.ref)} {pack.hash}: {len(pack.obligations)} obligations"
                  + (f" → {escape(str(out))}" if out else ""))


@findings_app.command("oscal")
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
    _write(assessment_results_json(doc), out)
    for r, result in zip(runs, doc["assessment-results"]["results"], strict=True):
        console.print(f"run {escape(r.run_id or '')}: {len(result.get('findings', []))} "
                      "findings" + (f" → {escape(str(out))}" if out else ""))


def crosswalk_oscal(
    crosswalk: Annotated[str, typer.Argument(
        help="A bundled crosswalk id (e.g. kansa/logging) or a crosswalk file (.yaml).")],
    out: OutOpt = None,
) -> None:
    """Write a crosswalk as an OSCAL mapping-collection (JSON, OSCAL 1.2).

    Each crosswalk target becomes a map from the anchor obligation's control to the
    target's, with the crosswalk's relationship (equivalent-to, subset-of, intersects-with,
    ...), its confidence, and the shared evidence and gap as remarks. References are bound
    to the latest bundled version of each pack that has the obligation; the catalogs are
    named in back-matter by pack hash and catalog uuid (see `kansa packs export-oscal`).

    Example: kansa packs crosswalk-oscal kansa/logging --out logging-mapping.json
    """
    from kansa.policy.bundled import bundled_packs
    from kansa.policy.crosswalk import (
        bundled_crosswalks,
        check_refs,
        load_crosswalk,
        obligation_index,
    )
    from kansa.policy.oscal import catalog_json, crosswalk_to_mapping_collection

    with errors():
        packs = bundled_packs()
        if crosswalk.endswith((".yaml", ".yml")) or Path(crosswalk).is_file():
            cw = load_crosswalk(crosswalk)
            check_refs(cw, obligation_index(packs))
        else:
            found = [c for c in bundled_crosswalks() if c.id == crosswalk]
            if not found:
                known = ", ".join(c.id for c in bundled_crosswalks())
                raise fail(f"no bundled crosswalk {crosswalk!r} (bundled: {known})")
            cw = found[0]
        data = catalog_json(crosswalk_to_mapping_collection(cw, packs))
    _write(data, out)
    console.print(f"{escape(cw.id)}@{escape(cw.version)}: {len(cw.mappings)} mappings"
                  + (f" → {escape(str(out))}" if out else ""))


def register(packs_app: typer.Typer) -> None:
    """Add export-oscal, import-oscal and crosswalk-oscal to the ``kansa packs`` app."""
    packs_app.command("export-oscal")(export_oscal)
    packs_app.command("import-oscal")(import_oscal)
    packs_app.command("crosswalk-oscal")(crosswalk_oscal)
