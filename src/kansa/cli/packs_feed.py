"""Signed packs, feeds and activation: commands that join ``kansa packs``.

    kansa packs keygen NAME                  publisher key pair (NAME.key, NAME.vkey)
    kansa packs sign PACK.yaml --key K       writes PACK.yaml.sig
    kansa packs verify PACK.yaml             checks PACK.yaml.sig against the trust store
    kansa packs trust add|list|remove        trusted publisher keys in $KANSA_HOME
    kansa packs publish DIR                  writes DIR/index.json (a feed)
    kansa packs add --from DIR|URL [ID[@V]]  verifies and installs packs from a feed
    kansa packs update --from DIR|URL        installs newer versions of installed packs
    kansa packs list                         bundled and installed packs, which are active
    kansa packs activate|deactivate ID@V     a ledger record; prints where its receipt is
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from kansa.cli._common import (
    Column,
    HomeOpt,
    StoreOpt,
    command_group,
    commands,
    fail,
    home_dir,
    out,
    print_table,
)
from kansa.errors import KansaError

app = commands()
trust_app = command_group("trust", "Trusted publisher keys (verify signed packs).")
app.add_typer(trust_app)  # kansa packs trust add|list|remove
FromOpt = Annotated[str, typer.Option("--from", help="A feed: a directory or an http(s) URL "
                                      "holding index.json.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for a feed URL.")]


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except KansaError as e:
        raise fail(str(e)) from None


@app.command("keygen")
def keygen(
    name: Annotated[str, typer.Argument(help="Publisher key name, e.g. example.org/packs.")],
    directory: Annotated[Path, typer.Option("-o", "--out", help="Where to write the keys.")]
    = Path("."),
) -> None:
    """Create a publisher key: NAME.key (secret, mode 0600) and NAME.vkey (share it)."""
    from kansa.ledger.note import Signer

    with _errors():
        signer = Signer.generate(name)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    key_file, vkey_file = directory / f"{stem}.key", directory / f"{stem}.vkey"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise fail(f"{key_file} exists; not overwriting a key") from None
    with os.fdopen(fd, "w") as f:
        f.write(signer.skey + "\n")
    vkey_file.write_text(signer.verifier.vkey + "\n")
    out.print(f"secret key: {key_file} (keep it secret); verifier key: {vkey_file}")
    out.print(signer.verifier.vkey)


@app.command("sign")
def sign(
    file: Annotated[Path, typer.Argument(help="The pack file to sign.")],
    key: Annotated[Path, typer.Option("--key", help="The publisher's secret key file.")],
) -> None:
    """Sign a pack: writes FILE.sig, a C2SP signed note over its pack and file hashes."""
    from kansa.ledger.note import Signer
    from kansa.policy.feed import sig_path
    from kansa.policy.signing import sign_pack, write_atomic

    with _errors():
        try:
            signer = Signer.parse(key.read_text("utf-8"))
            raw = file.read_bytes()
        except OSError as e:
            raise fail(f"cannot read {e.filename}: {e.strerror}") from None
        note = sign_pack(raw, signer, name=str(file))
        write_atomic(sig_path(file), note)
    out.print(f"signed by {escape(signer.verifier.vkey)}; wrote {sig_path(file)}")


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="A pack file with FILE.sig beside it.")],
    home: HomeOpt = None,
) -> None:
    """Check a pack's signature against the trusted publisher keys."""
    from kansa.policy.feed import load_signed
    from kansa.policy.signing import trusted_publishers

    with _errors():
        r = load_signed(file, trusted_publishers(home_dir(home)), "file")
    out.print(f"[green]✓[/] {escape(r.pack.ref)} {r.pack.hash} signed by "
                 f"{escape(r.signer_ref)}")


@trust_app.command("add")
def trust_add(
    vkey_file: Annotated[Path, typer.Argument(help="A publisher's verifier key file.")],
    home: HomeOpt = None,
) -> None:
    """Trust a publisher key: packs it signed can be added and activated."""
    from kansa.policy.signing import publisher_ref
    from kansa.policy.signing import trust_add as add

    with _errors():
        try:
            text = vkey_file.read_text("utf-8")
        except OSError as e:
            raise fail(f"cannot read {vkey_file}: {e.strerror}") from None
        v, new = add(home_dir(home), text)
    out.print(f"{'now trusted' if new else 'already trusted'}: {escape(publisher_ref(v))}")


@trust_app.command("list")
def trust_list(home: HomeOpt = None) -> None:
    """List trusted publisher keys."""
    from kansa.policy.signing import key_hash, trusted_publishers

    with _errors():
        keys = trusted_publishers(home_dir(home))
    if not keys:
        out.print("no trusted publisher keys (add one with 'kansa packs trust add VKEY_FILE')")
    for v in keys:
        out.print(f"{escape(v.vkey)}  {key_hash(v)}")


@trust_app.command("remove")
def trust_remove(
    name: Annotated[str, typer.Argument(help="Key name, or name+keyid.")],
    home: HomeOpt = None,
) -> None:
    """Stop trusting a publisher key (its installed packs stop verifying)."""
    from kansa.policy.signing import publisher_ref
    from kansa.policy.signing import trust_remove as remove

    with _errors():
        gone = remove(home_dir(home), name)
    for v in gone:
        out.print(f"no longer trusted: {escape(publisher_ref(v))}")


@app.command("publish")
def publish(directory: Annotated[Path, typer.Argument(help="Directory of signed packs.")]) -> None:
    """Write DIRECTORY/index.json listing every signed pack in it (a feed)."""
    from kansa.policy.feed import INDEX
    from kansa.policy.feed import publish as pub

    with _errors():
        entries = pub(directory)
    for e in entries:
        out.print(f"{escape(e.ref)}  {escape(e.path)}")
    out.print(f"wrote {directory / INDEX} ({len(entries)} packs)")


def _report(res: Any) -> None:
    for r in res.installed:
        out.print(f"[green]installed[/] {escape(r.pack.ref)} {r.pack.hash} signed by "
                  f"{escape(r.signer_ref)} → {r.path}")
    for ref in res.unchanged:
        out.print(f"unchanged {escape(ref)} (already installed, same hash)")
    if not res.installed and not res.unchanged:
        out.print("nothing to install")


@app.command("add")
def add(
    from_: FromOpt,
    ref: Annotated[str | None, typer.Argument(help="ID or ID@VERSION; default: all.")] = None,
    allow_older: Annotated[bool, typer.Option(
        "--allow-older", help="Install a version older than the newest installed.")] = False,
    timeout: TimeoutOpt = 10.0,
    home: HomeOpt = None,
) -> None:
    """Install packs from a feed; each must be signed by a trusted publisher."""
    from kansa.policy.feed import add_from

    with _errors():
        _report(add_from(home_dir(home), from_, ref, allow_older=allow_older, timeout=timeout))


@app.command("update")
def update(from_: FromOpt, timeout: TimeoutOpt = 10.0, home: HomeOpt = None) -> None:
    """Install the feed's newer versions of installed packs (never a downgrade)."""
    from kansa.policy.feed import update_from

    with _errors():
        _report(update_from(home_dir(home), from_, timeout=timeout))


def _current(home: Path, store: str | None) -> dict[tuple[str, str], Any] | None:
    """Active packs by (id, version), or None when there is no ledger to ask."""
    from kansa.api import Ledger
    from kansa.policy.feed import activations

    if store is None and not (home / "log.key").exists():
        return None
    with Ledger.open(store, home=home) as lg:
        return {(a.pack_id, a.version): a for a in activations(lg) if a.until is None}


@app.command("list")
def list_packs(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Bundled and installed packs: status, dates, hash, signer, and which are active."""
    from kansa.policy.feed import BUNDLED, bundled_resolved, scan_installed

    h = home_dir(home)
    rows: list[dict[str, Any]] = []
    with _errors():
        active = _current(h, store)
        found: list[tuple[Path | None, Any]] = [(r.path, r) for r in bundled_resolved()]
        found += list(scan_installed(h))
    for path, r in found:
        if isinstance(r, KansaError):
            rows.append({"pack": None, "origin": "installed", "path": str(path),
                         "problem": str(r)})
            continue
        p = r.pack
        a = active.get((p.id, p.version)) if active is not None else None
        state = ("?" if active is None else "no" if a is None
                 else "yes" if a.hash == p.hash else "HASH DIFFERS")
        rows.append({"pack": p.ref, "origin": r.origin, "status": p.status,
                     "effective_from": str(p.effective_from),
                     "effective_until": str(p.effective_until or ""), "hash": p.hash,
                     "signer": BUNDLED if r.origin == BUNDLED else r.signer_ref,
                     "active": state, "active_since": a.since.isoformat() if a else None,
                     "activation_index": a.index if a else None, "path": str(path)})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    columns = [
        # the pack ref is what people copy into --pack: never cut nor wrapped
        Column("pack", whole=True), Column("status", whole=True),
        Column("in force", min_width=12), Column("active", min_width=8),
        Column("active since", priority=2, whole=True), Column("origin", priority=3),
        Column("signer", priority=4), Column("hash", priority=5, whole=True),
    ]
    table = []
    for row in rows:
        if row["pack"] is None:
            continue
        active = row["active"] + (f" #{row['activation_index']}"
                                  if row["activation_index"] is not None else "")
        table.append([
            escape(row["pack"]), row["status"],
            f"{row['effective_from']} → {row['effective_until'] or ''}".rstrip(), active,
            row["active_since"][:19].replace("T", " ") if row["active_since"] else "",
            row["origin"], escape(row["signer"]), row["hash"][:19] + "…"])
    print_table(out, columns, table)
    for row in rows:
        if row["pack"] is None:
            out.print(f"[red]✗[/] unusable installed pack {escape(row['path'])}: "
                      f"{escape(row['problem'])}", soft_wrap=False)


def _receipt_path(home: Path, receipt: Path | None, index: int) -> Path:
    if receipt is not None:
        return receipt
    d = home / "receipts"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"entry-{index}.tlog-proof"


@app.command("activate")
def activate(
    ref: Annotated[str, typer.Argument(help="ID@VERSION (or ID: the newest).")],
    receipt: Annotated[Path | None, typer.Option(
        "--receipt", help="Where to write the receipt (default $KANSA_HOME/receipts/).")]
    = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Activate a pack version: a ledger record proves from when its rules were in force."""
    from kansa.api import Ledger
    from kansa.policy.feed import activate as act
    from kansa.policy.feed import resolve_pack

    h = home_dir(home)
    with _errors():
        r = resolve_pack(ref, h)
        with Ledger.open(store, home=h) as lg:
            appended = act(lg, r)
            proof = lg.prove(appended.index)
    path = _receipt_path(h, receipt, appended.index)
    path.write_bytes(proof)
    out.print(f"activated {escape(r.pack.ref)} {r.pack.hash} (signer "
                 f"{escape(r.signer_ref)}): ledger entry {appended.index} ({appended.id}); "
                 f"receipt {path}")


@app.command("deactivate")
def deactivate(
    ref: Annotated[str, typer.Argument(help="ID@VERSION, or ID for every active version.")],
    receipt: Annotated[Path | None, typer.Option(
        "--receipt", help="Where to write the receipt (one version only).")] = None,
    home: HomeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Deactivate a pack version: recorded in the ledger, as activation is."""
    from kansa.api import Ledger
    from kansa.policy.feed import deactivate as deact

    h = home_dir(home)
    with _errors(), Ledger.open(store, home=h) as lg:
        done = deact(lg, ref)
        proofs = [(a, lg.prove(a.index)) for a in done]
    for a, proof in proofs:
        path = _receipt_path(h, receipt if len(proofs) == 1 else None, a.index)
        path.write_bytes(proof)
        out.print(f"deactivated {escape(ref)}: ledger entry {a.index} ({a.id}); "
                     f"receipt {path}")

