"""NIST OSCAL: ``kansa packs export-oscal|import-oscal|crosswalk-oscal``, commands that
join ``kansa packs`` (``kansa findings oscal`` is in ``findings``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kansa.cli._common import HomeOpt, commands, console, errors, fail

OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write to this file instead of standard output."),
]

app = commands()


def write_or_print(data: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as e:
        raise fail(f"{out}: cannot write: {e.strerror or e}") from None


@app.command("export-oscal")
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
    write_or_print(data, out)
    console.print(f"{escape(p.ref)} {p.hash}: {len(p.obligations)} controls"
                  + (f" → {escape(str(out))}" if out else ""))


@app.command("import-oscal")
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
    write_or_print(text.encode(), out)
    console.print(f"{escape(pack.ref)} {pack.hash}: {len(pack.obligations)} obligations"
                  + (f" → {escape(str(out))}" if out else ""))


@app.command("crosswalk-oscal")
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
    write_or_print(data, out)
    console.print(f"{escape(cw.id)}@{escape(cw.version)}: {len(cw.mappings)} mappings"
                  + (f" → {escape(str(out))}" if out else ""))

