"""``kansa replay`` and ``kansa impact``: judge stored history under rule-pack versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from kansa.cli._common import (
    Column,
    HomeOpt,
    StoreOpt,
    commands,
    console,
    fail,
    home_dir,
    out,
    print_table,
    system_facts,
)
from kansa.errors import KansaError

app = commands()

SystemsOpt = Annotated[
    Path | None,
    typer.Option("--systems", help="YAML or JSON file mapping each system name to its facts "
                 "(e.g. placed_on_market: 2026-03-01, roles: [deployer])."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _resolve(refs: list[str], home: Path | None) -> list[Any]:
    """Pack refs (id@version, id for the newest) or files, via bundled and installed
    packs."""
    from kansa.policy.feed import find_pack

    try:
        return [find_pack(r, home_dir(home)) for r in refs]
    except KansaError as e:
        raise fail(str(e)) from None


def _default_packs(lg: Any, home: Path | None) -> tuple[list[Any], str]:
    """The active packs if any were activated, else every bundled pack (drafts included:
    beside their adopted versions they never govern)."""
    from kansa.policy.bundled import bundled_packs
    from kansa.policy.feed import active_packs

    active = active_packs(home_dir(home), lg)
    if active:
        return active, f"the {len(active)} active pack version(s)"
    return bundled_packs(), "every bundled pack version (none is activated)"


PackRefsOpt = Annotated[list[str] | None, typer.Option(
    "--pack", help="A pack version: id@version, id (its newest), or a YAML file. Repeatable. "
    "Default: the packs activated with 'kansa packs activate', else every bundled pack.")]


@app.command("replay")
def replay_command(
    pack: PackRefsOpt = None,
    since: Annotated[str | None, typer.Option(help="Only records at or after (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="Only records before (RFC 3339).")] = None,
    systems: SystemsOpt = None,
    pin: Annotated[bool, typer.Option(
        "--pin", help="Judge every record under every pack, whatever the packs' dates.")] = False,
    save: Annotated[bool, typer.Option(help="Store the findings beside the ledger.")] = True,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Re-judge stored history under pack versions (each record under the version in force
    at its time). Deterministic: the digest is the same for the same history and packs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kansa.api import Ledger
    from kansa.policy.replay import replay

    facts = system_facts(systems)
    try:
        with Ledger.open(store, home=home) as lg:
            if pack:
                packs = _resolve(pack, home)
            else:
                packs, which = _default_packs(lg, home)
                console.print(f"judging under {which}")
            with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                          console=console, transient=True,
                          disable=as_json or not console.is_terminal) as prog:
                task = prog.add_task("replay", total=lg.log.size())
                res = replay(lg, packs, since=since, until=until, systems=facts, pin=pin,
                             save=save, progress=lambda k: prog.advance(task, k))
    except KansaError as e:
        raise fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps({"run_id": res.run_id if save else None,
                                   "packs": res.packs, "records": res.records,
                                   "findings": res.findings, "verdicts": dict(res.verdicts),
                                   "stored": res.stored, "digest": res.digest,
                                   "seconds": round(res.seconds, 3)}))
        return
    # wrapped at words: a pack's hash goes under its ref rather than split by the terminal
    for p in res.packs:
        out.print(f"pack {escape(p)}", soft_wrap=False)
    rate = res.records / res.seconds if res.seconds else 0.0
    out.print(f"{res.records} records, {res.findings} findings in {res.seconds:.2f} s "
              f"({rate:,.0f} records/s)", soft_wrap=False)
    for v, n in sorted(res.verdicts.items()):
        out.print(f"  {v}: {n}")
    out.print(f"digest sha256:{res.digest}", soft_wrap=False)
    if save:
        out.print(f"run {res.run_id}: {res.stored} failing findings stored, tallies per "
                  "obligation and day", soft_wrap=False)


@app.command("impact")
def impact_command(
    from_: Annotated[str, typer.Option(
        "--from", help="The pack version in force now (id@version or a YAML file).")],
    to: Annotated[str, typer.Option(
        "--to", help="The pack version to compare with, e.g. a draft (id@version or file).")],
    since: Annotated[str | None, typer.Option(help="Only records at or after (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option(help="Only records before (RFC 3339).")] = None,
    systems: SystemsOpt = None,
    limit: Annotated[int, typer.Option(help="Records listed per obligation.")] = 20,
    as_json: JsonOpt = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """List the records whose verdicts change if --to governed instead of --from."""
    from kansa.api import Ledger
    from kansa.policy.impact import impact

    a, b = _resolve([from_, to], home)
    try:
        with Ledger.open(store, home=home) as lg:
            rep = impact(lg, a, b, since=since, until=until, systems=system_facts(systems))
    except KansaError as e:
        raise fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps({
            "from": rep.from_pack, "from_hash": rep.from_hash, "to": rep.to_pack,
            "to_hash": rep.to_hash, "records": rep.records,
            "records_changed": len(rep.records_changed),
            "obligations_added": rep.obligations_added,
            "obligations_removed": rep.obligations_removed,
            "obligations_changed": rep.obligations_changed,
            "changes": [c.__dict__ for c in rep.changes]}))
        return
    # prose wraps at words; each obligation's records are a table that fits the terminal
    out.print(f"{escape(rep.from_pack)} → {escape(rep.to_pack)}: {rep.records} records, "
              f"{len(rep.records_changed)} change verdict", soft_wrap=False)
    for label, ids in (("added", rep.obligations_added), ("removed", rep.obligations_removed),
                       ("changed", rep.obligations_changed)):
        if ids:
            out.print(f"obligations {label}: {escape(', '.join(ids))}", soft_wrap=False)
    columns = [Column("entry", whole=True, justify="right"), Column("record id", whole=True),
               Column("verdict change", min_width=14), Column("why", min_width=16)]
    for oid, changes in rep.by_obligation.items():
        cite = changes[0].citation_after or changes[0].citation_before
        out.print(f"\n[bold]{escape(oid)}[/] ({escape(str(cite))}): {len(changes)} record(s)",
                  soft_wrap=False)
        for (before, after), n in sorted(rep.summary()[oid].items()):
            out.print(f"  {before} → {after}: {n}")
        print_table(out, columns, [
            [str(c.index), escape(c.record_id), f"{c.before} → {c.after}",
             escape(c.reason_after)] for c in changes[:limit]])
        if len(changes) > limit:
            out.print(f"  … and {len(changes) - limit} more (--limit, or --json for all)")
