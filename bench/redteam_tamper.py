"""Red team: tamper with an exported log and with a live store in every way we can think
of, and count what kansa's verification catches.

    .venv/bin/python bench/redteam_tamper.py                     # SQLite and PostgreSQL
    .venv/bin/python bench/redteam_tamper.py --backends sqlite
    .venv/bin/python bench/redteam_tamper.py --records 300 --pg-url postgresql://...

A log of ``--records`` records (with encrypted content, several subjects, one recorded
erasure, a witness cosignature) is built once per backend, with signed checkpoints at
several sizes, SQLite backups taken on the way, and an export. Then each tampering is
applied to a fresh copy and verified:

* export: ``verify_directory`` with the log's key (and, where it says so, the auditor's
  earlier checkpoint and the witness key), must raise VerificationError;
* store: ``Ledger.verify`` (the kept checkpoint in $KANSA_HOME is used, as ``kansa
  verify`` does) must raise VerificationError; for a rollback, appending must also be
  refused (RollbackError), and for a swapped id, ``prove`` must refuse.

Anything else escaping (not a KansaError) is a crash and counts as not caught. Prints
"class | tried | caught" and a total; misses are listed. Not a test: it never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kansa.api import Ledger  # noqa: E402
from kansa.errors import KansaError, RollbackError, VerificationError  # noqa: E402
from kansa.ledger.note import ALG_COSIGNATURE_V1, Signer, cosign  # noqa: E402
from kansa.ledger.verify import verify_directory  # noqa: E402

ORIGIN = "redteam.example/log"
TABLES = ["meta", "log_state", "entries", "tiles", "checkpoints", "cosignatures",
          "attachments", "sealed_keys", "erased_groups"]
CHECKPOINT_SIZES = (50, 120, 200)  # and the final size
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class NoOp(Exception):
    """The tampering would change nothing here: not counted."""


@dataclass
class Tally:
    tried: dict[str, int] = field(default_factory=dict)
    caught: dict[str, int] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # the database itself refused

    def add(self, cls: str, name: str, ok: bool, why: str = "") -> None:
        self.tried[cls] = self.tried.get(cls, 0) + 1
        if ok:
            self.caught[cls] = self.caught.get(cls, 0) + 1
        else:
            self.misses.append(f"{cls}: {name}{': ' + why if why else ''}")


def record(i: int) -> dict[str, Any]:
    r: dict[str, Any] = {
        "ts": f"2026-11-22T{9 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "id": f"rec-{i:04d}", "system": "support-bot",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": i,
        "outcome": "ok", "input": f"question {i}", "output": f"answer {i}",
    }
    if i % 5:
        r["subject"] = f"user-{i % 7}"
    return r


# --- building the golden log ----------------------------------------------------------


@dataclass
class Golden:
    backend: str
    root: Path
    home: Path  # pristine home (keys, config, kept checkpoint; ledger.db for SQLite)
    export: Path
    old_export: Path  # an earlier, genuine export (size 120)
    verifier_vkey: str
    witness: Signer
    size: int
    backups: dict[int, Path]  # SQLite copies of ledger.db at checkpoint sizes
    pg_url: str | None = None
    golden_schema: str | None = None


def build(backend: str, root: Path, records: int, pg_base: str) -> Golden:
    home = root / "golden-home"
    pg_url = schema = None
    if backend == "postgresql":
        import psycopg

        schema = "rt_" + uuid.uuid4().hex[:10]
        with psycopg.connect(pg_base, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg_base else "?"
        pg_url = f"{pg_base}{sep}options=-csearch_path%3D{schema}"
    lg = Ledger.init(home, origin=ORIGIN, url=pg_url)
    witness = Signer.generate("witness.example/w1", alg=ALG_COSIGNATURE_V1)
    backups: dict[int, Path] = {}
    have = 0
    for size in (*CHECKPOINT_SIZES, records):
        lg.append_many([record(i) for i in range(have, size)])
        have = size
        cp = lg.checkpoint()
        if size == CHECKPOINT_SIZES[1]:
            line = cosign(cp.checkpoint.body(), witness, 1_700_000_000).line()
            lg.log.store.add_cosignature(size, witness.name, line)
            lg.export(root / "old-export")
        if backend == "sqlite" and size != records:
            backups[size] = root / f"backup-{size}.db"
            dst = sqlite3.connect(backups[size])
            with sqlite3.connect(home / "ledger.db") as src:
                src.backup(dst)
            dst.close()
    assert lg.home is not None  # the witness is configured, as 'kansa witness add' does
    lg.home.config["witnesses"] = [{"url": "http://127.0.0.1:1", "vkey": witness.verifier.vkey}]
    lg.home.save_config()
    lg.erase("user-3")  # a genuine, recorded erasure
    lg.checkpoint()
    size = lg.log.store.size()
    lg.export(root / "export")
    vkey = lg.verifier.vkey
    lg.close()
    g = Golden(backend, root, home, root / "export", root / "old-export", vkey, witness,
               size, backups, pg_url, None)
    if backend == "postgresql":
        g.golden_schema = schema + "_gold"  # type: ignore[operator]
        _pg(g, [f"CREATE SCHEMA {g.golden_schema}"] + [
            f"CREATE TABLE {g.golden_schema}.{t} AS SELECT * FROM {schema}.{t}" for t in TABLES
        ])
        g.golden_schema_live = schema  # type: ignore[attr-defined]
    return g


def _pg(g: Golden, stmts: list[str], params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    assert g.pg_url is not None
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(g.pg_url, autocommit=True) as c:
        for s in stmts:
            cur = c.execute(s.replace("?", "%s"), params)  # type: ignore[arg-type]
            if cur.description is not None:
                rows = list(cur.fetchall())
    return rows


# --- a fresh copy of the store per trial ------------------------------------------------


class Trial:
    """A fresh copy of the golden ledger: its home, and the store (a copy of ledger.db,
    or the PostgreSQL tables restored from the golden schema)."""

    def __init__(self, g: Golden) -> None:
        self.g = g
        self.home = g.root / "trial-home"
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.copytree(g.home, self.home)
        if g.backend == "postgresql":
            live = g.golden_schema_live  # type: ignore[attr-defined]
            _pg(g, [f"TRUNCATE {live}.{t}" for t in TABLES] + [
                f"INSERT INTO {live}.{t} SELECT * FROM {g.golden_schema}.{t}" for t in TABLES
            ])

    def sql(self, stmt: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.g.backend == "postgresql":
            return _pg(self.g, [stmt], params)
        conn = sqlite3.connect(self.home / "ledger.db")
        try:
            rows = conn.execute(stmt, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def edit_blob(self, table: str, where: str, key: tuple[Any, ...], col: str,
                  fn: Callable[[bytes], bytes]) -> None:
        rows = self.sql(f"SELECT {col} FROM {table} WHERE {where}", key)
        if not rows:
            raise RuntimeError(f"no row in {table} where {where} {key}")
        self.sql(f"UPDATE {table} SET {col} = ? WHERE {where}", (fn(bytes(rows[0][0])), *key))

    def restore_backup(self, size: int) -> None:
        db = self.home / "ledger.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copy(self.g.backups[size], db)

    def verify(self) -> tuple[bool, str]:
        try:
            lg = Ledger.open(home=self.home)
        except KansaError as e:
            return True, f"refused to open: {e}"
        try:
            lg.verify()
            return False, "verify passed"
        except VerificationError as e:
            return True, e.problems[0]
        except KansaError as e:
            return True, f"{type(e).__name__}: {e}"
        except Exception as e:  # a crash is not a catch
            return False, f"CRASH {type(e).__name__}: {e}"
        finally:
            lg.close()

    def append_refused(self) -> bool:
        lg = Ledger.open(home=self.home)
        try:
            lg.append(record(10_000))
            return False
        except RollbackError:
            return True
        finally:
            lg.close()

    def prove_refused(self, rid: str) -> bool:
        lg = Ledger.open(home=self.home)
        try:
            lg.prove(rid)
            return False
        except KansaError:
            return True
        finally:
            lg.close()


def flip(pos: int, mask: int = 0x01) -> Callable[[bytes], bytes]:
    def f(b: bytes) -> bytes:
        i = pos % len(b)
        return b[:i] + bytes([b[i] ^ mask]) + b[i + 1 :]
    return f


def store_tamperings(g: Golden) -> Iterator[tuple[str, str, Callable[[Trial], None], str]]:
    """(class, name, tamper, extra check: "" | "append" | "prove:<id>")."""
    n = g.size
    sample = [0, 1, 49, 50, 127, 128, 255, 256, n - 2, n - 1]
    for i in sample:
        for pos, mask in ((0, 1), (17, 0x20), (-1, 0x80), (40, 0x04)):
            yield ("entries.data edit", f"entry {i} byte {pos}^{mask:#x}",
                   lambda t, i=i, p=pos, m=mask: t.edit_blob("entries", "idx = ?", (i,), "data",
                                                            flip(p, m)), "")
        yield ("entries.ts edit", f"entry {i} ts +1us",
               lambda t, i=i: t.sql("UPDATE entries SET ts = ts + 1 WHERE idx = ?", (i,)), "")
        yield ("entries.ts edit", f"entry {i} ts -1 day", lambda t, i=i: t.sql(
            "UPDATE entries SET ts = ts - 86400000000 WHERE idx = ?", (i,)), "")
        yield ("entries.ext_id edit", f"entry {i} ext_id changed", lambda t, i=i: t.sql(
            "UPDATE entries SET ext_id = 'forged-id' WHERE idx = ?", (i,)), "")
        yield ("entries.ext_id edit", f"entry {i} ext_id NULL", lambda t, i=i: t.sql(
            "UPDATE entries SET ext_id = NULL WHERE idx = ?", (i,)), "")
        yield ("entries.grp edit", f"entry {i} grp changed", lambda t, i=i: t.sql(
            "UPDATE entries SET grp = 'ffffffffffffffffffffffffffffffff' WHERE idx = ?", (i,)),
            "")
        yield ("entries.grp edit", f"entry {i} grp NULL", lambda t, i=i: t.sql(
            "UPDATE entries SET grp = NULL WHERE idx = ?", (i,)), "")
        yield ("entries row deleted", f"entry {i}", lambda t, i=i: t.sql(
            "DELETE FROM entries WHERE idx = ?", (i,)), "")
    for a, b in ((3, 4), (0, n - 1), (100, 200), (1, 2)):
        def swap_ids(t: Trial, a: int = a, b: int = b) -> None:
            t.sql("UPDATE entries SET ext_id = 'tmp-swap' WHERE idx = ?", (a,))
            t.sql("UPDATE entries SET ext_id = ? WHERE idx = ?", (f"rec-{a:04d}", b))
            t.sql("UPDATE entries SET ext_id = ? WHERE idx = ?", (f"rec-{b:04d}", a))
        yield ("entries.ext_id swapped", f"ids of {a} and {b}", swap_ids, f"prove:rec-{a:04d}")

        def swap_col(t: Trial, col: str, a: int = a, b: int = b) -> None:
            ra = t.sql(f"SELECT {col} FROM entries WHERE idx = ?", (a,))[0][0]
            rb = t.sql(f"SELECT {col} FROM entries WHERE idx = ?", (b,))[0][0]
            if ra == rb:
                raise NoOp  # both rows hold the same value: nothing would change
            t.sql(f"UPDATE entries SET {col} = ? WHERE idx = ?", (rb, a))
            t.sql(f"UPDATE entries SET {col} = ? WHERE idx = ?", (ra, b))
        for col, cls in (("data", "entries rows swapped"), ("ts", "entries.ts edit"),
                         ("grp", "entries.grp edit")):
            yield (cls, f"{col} of {a} and {b} swapped",
                   lambda t, c=col, f=swap_col: f(t, c), "")  # type: ignore[misc]
    yield ("entries row inserted", "a row past the log size", lambda t: t.sql(
        "INSERT INTO entries (idx, ts, grp, ext_id, data) VALUES (?, 0, NULL, 'x', ?)",
        (n, b'{"id":"x"}')), "")
    yield ("entries row deleted", "entries 10-19", lambda t: t.sql(
        "DELETE FROM entries WHERE idx >= 10 AND idx < 20"), "")
    # tiles
    tiles = [(0, 0), (0, 1), (1, 0)]
    for lv, ix in tiles:
        for pos in (0, 31, 32, 200, -1):
            yield ("tiles edit", f"tile {lv}/{ix} byte {pos}", lambda t, lv=lv, ix=ix, p=pos:
                   t.edit_blob("tiles", "level = ? AND idx = ?", (lv, ix), "data", flip(p)), "")
        yield ("tiles deleted", f"tile {lv}/{ix}", lambda t, lv=lv, ix=ix: t.sql(
            "DELETE FROM tiles WHERE level = ? AND idx = ?", (lv, ix)), "")
        yield ("tiles edit", f"tile {lv}/{ix} truncated by a hash", lambda t, lv=lv, ix=ix:
               t.edit_blob("tiles", "level = ? AND idx = ?", (lv, ix), "data",
                           lambda b: b[:-32]), "")
    # checkpoints
    for s in (*CHECKPOINT_SIZES, n):
        yield ("checkpoint rows deleted", f"size {s}", lambda t, s=s: t.sql(
            "DELETE FROM checkpoints WHERE size = ?", (s,)), "")

        def delete_renumber(t: Trial, s: int = s) -> None:
            t.sql("DELETE FROM checkpoints WHERE size = ?", (s,))
            t.sql("UPDATE checkpoints SET seq = seq - 1 WHERE size > ?", (s,))
        yield ("checkpoint rows deleted", f"size {s}, later rows renumbered", delete_renumber,
               "")
        yield ("checkpoint edited", f"size {s} note byte flipped", lambda t, s=s: t.sql(
            "UPDATE checkpoints SET note = ? WHERE size = ?",
            (_flip_text(t.sql("SELECT note FROM checkpoints WHERE size = ?", (s,))[0][0]), s)),
            "")
        yield ("checkpoint edited", f"size {s} seq changed", lambda t, s=s: t.sql(
            "UPDATE checkpoints SET seq = seq + 7 WHERE size = ?", (s,)), "")
    yield ("checkpoint rows deleted", "all rows", lambda t: t.sql("DELETE FROM checkpoints"), "")
    yield ("checkpoint rows deleted", "all but the first, renumbered", lambda t: t.sql(
        "DELETE FROM checkpoints WHERE size > 50"), "")
    yield ("checkpoint edited", "note of 120 stored under 200", lambda t: t.sql(
        "UPDATE checkpoints SET note = (SELECT note FROM checkpoints WHERE size = 120) "
        "WHERE size = 200"), "")

    def cosigned_gone(t: Trial) -> None:
        t.sql("DELETE FROM checkpoints WHERE size = 120")
        t.sql("UPDATE checkpoints SET seq = seq - 1 WHERE size > 120")
    yield ("checkpoint rows deleted", "the cosigned one, renumbered", cosigned_gone, "")
    yield ("cosignatures edited", "line byte flipped", lambda t: t.sql(
        "UPDATE cosignatures SET line = ?", (_flip_text(t.sql(
            "SELECT line FROM cosignatures")[0][0], -5),)), "")
    # attachments and keys
    with_content = [2, 7, 64, 130, n - 3]
    for i in with_content:
        yield ("attachments deleted", f"entry {i}", lambda t, i=i: t.sql(
            "DELETE FROM attachments WHERE idx = ?", (i,)), "")
        yield ("attachments edited", f"entry {i} byte", lambda t, i=i: t.edit_blob(
            "attachments", "idx = ?", (i,), "data", flip(20)), "")
        yield ("attachments edited", f"entry {i} group", lambda t, i=i: t.sql(
            "UPDATE attachments SET grp = 'other' WHERE idx = ?", (i,)), "")

    def swap_att(t: Trial) -> None:
        a = t.sql("SELECT data FROM attachments WHERE idx = 2")[0][0]
        b = t.sql("SELECT data FROM attachments WHERE idx = 9")[0][0]
        t.sql("UPDATE attachments SET data = ? WHERE idx = 2", (b,))
        t.sql("UPDATE attachments SET data = ? WHERE idx = 9", (a,))
    yield ("attachments swapped", "entries 2 and 9", swap_att, "")
    yield ("sealed keys deleted", "one subject's key, no erasure", lambda t: t.sql(
        "DELETE FROM sealed_keys WHERE grp = (SELECT grp FROM entries WHERE idx = 1)"), "")

    def fake_erasure(t: Trial) -> None:
        t.sql("DELETE FROM attachments WHERE grp = (SELECT grp FROM entries WHERE idx = 1)")
        t.sql("INSERT INTO erased_groups (grp, erased) SELECT grp, 0 FROM entries WHERE idx = 1")
    yield ("fake erasure", "content deleted, group marked erased", fake_erasure, "")
    yield ("fake erasure", "group marked erased only", lambda t: t.sql(
        "INSERT INTO erased_groups (grp, erased) SELECT grp, 0 FROM entries WHERE idx = 1"),
        "")
    # log state and meta
    for delta in (-1, 1, -n):
        yield ("log_state edited", f"size {delta:+d}", lambda t, d=delta: t.sql(
            "UPDATE log_state SET size = size + ?", (d,)), "")
    yield ("meta edited", "origin", lambda t: t.sql(
        "UPDATE meta SET value = 'other.example/log' WHERE key = 'origin'"), "")
    # rollback
    for size in (0, 50, 120, 200, n - 1):
        def rollback(t: Trial, s: int = size, keep_cps: bool = False) -> None:
            for stmt in ("DELETE FROM entries WHERE idx >= ?",
                         "DELETE FROM attachments WHERE idx >= ?",
                         "UPDATE log_state SET size = ? WHERE id = 1"):
                t.sql(stmt, (s,))
            if not keep_cps:
                t.sql("DELETE FROM checkpoints WHERE size > ?", (s,))
                t.sql("DELETE FROM cosignatures WHERE size > ?", (s,))
        yield ("rollback (rows above N deleted)", f"to {size}", rollback, "append")
        yield ("rollback, checkpoints left", f"to {size}",
               lambda t, s=size, f=rollback: f(t, s, True), "append")  # type: ignore[misc]
    for size in g.backups:
        yield ("rollback (backup restored)", f"ledger.db from size {size}",
               lambda t, s=size: t.restore_backup(s), "append")


def _flip_text(text: str, pos: int = 10) -> str:
    i = pos % len(text)
    c = text[i]
    return text[:i] + ("A" if c != "A" else "B") + text[i + 1 :]


# --- exports ---------------------------------------------------------------------------


def export_files(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                  if p.is_file() and p.name != "kansa-export.json")


def export_tamperings(g: Golden) -> Iterator[tuple[str, str, Callable[[Path], None], str]]:
    """(class, name, tamper, mode): mode "" (the key only), "auditor" (with the auditor's
    newer checkpoint), "witness" (with the witness key)."""
    files = export_files(g.export)
    for rel in files:
        size = (g.export / rel).stat().st_size
        cls = _kind(rel)
        step = max(1, size // 24)
        positions = sorted({0, 1, size // 3, size // 2, size - 1, *range(0, size, step)})
        for pos in positions:
            for mask in (0x01, 0x80):
                yield (f"{cls} byte edit", f"{rel}@{pos}^{mask:#x}",
                       lambda d, r=rel, p=pos, m=mask: _edit(d / r, flip(p, m)), "")
        for cut in sorted({0, 1, size // 2, size - 1}):
            yield (f"{cls} truncated", f"{rel} to {cut}",
                   lambda d, r=rel, c=cut: _edit(d / r, lambda b: b[:c]), "")
        for extra in (b"\x00", b"\x00" * 32, b"more"):
            yield (f"{cls} extended", f"{rel} +{len(extra)}",
                   lambda d, r=rel, x=extra: _edit(d / r, lambda b: b + x), "")
        yield ("file deleted", rel, lambda d, r=rel: (d / r).unlink(), "")
        yield ("file replaced", f"{rel} -> symlink to /dev/zero",
               lambda d, r=rel: _replace(d / r, lambda p: os.symlink("/dev/zero", p)), "")
        yield ("file replaced", f"{rel} -> FIFO",
               lambda d, r=rel: _replace(d / r, os.mkfifo), "")
        yield ("file replaced", f"{rel} -> sparse 2 GiB",
               lambda d, r=rel: _replace(d / r, _sparse), "")
        yield ("file replaced", f"{rel} -> directory",
               lambda d, r=rel: _replace(d / r, lambda p: p.mkdir()), "")
        yield ("file replaced", f"{rel} -> symlink outside (same bytes)",
               lambda d, r=rel: _outside(d, r), "")
    same_kind = [(a, b) for a in files for b in files
                 if a < b and _kind(a) == _kind(b) and _kind(a) != "checkpoint"]
    for a, b in same_kind:
        yield ("files swapped", f"{a} <-> {b}", lambda d, a=a, b=b: _swap(d / a, d / b), "")
    for rel in files:
        if ".p/" in rel:
            head, w = rel.rsplit("/", 1)
            for other in (int(w) - 1, int(w) + 1):
                yield ("file renamed", f"{rel} -> {head}/{other}",
                       lambda d, r=rel, h=head, o=other: (d / r).rename(d / h / str(o)), "")
    yield ("extra file", "tile/0/002", lambda d: (d / "tile/0/002").write_bytes(b"\0" * 8192), "")
    yield ("extra file", "tile/entries/x001/000", lambda d: _mk(d / "tile/entries/x001/000"), "")
    # the checkpoint
    yield ("checkpoint replaced", "an older genuine checkpoint", lambda d: shutil.copy(
        g.old_export / "checkpoint", d / "checkpoint"), "")
    yield ("checkpoint malleated", "signature pad bits", lambda d: _pad_bits(d / "checkpoint"),
           "")
    yield ("checkpoint malleated", "root pad bits", lambda d: _root_pad(d / "checkpoint"), "")
    yield ("checkpoint cosignature forged", "a line over another body (witness key given)",
           lambda d: _forge_cosig(d / "checkpoint", g.witness), "witness")
    yield ("rolled-back export", "the whole genuine size-120 export, auditor holds the latest",
           lambda d: _whole(d, g.old_export), "auditor")


def _kind(rel: str) -> str:
    if rel == "checkpoint":
        return "checkpoint"
    if rel.startswith("tile/entries/"):
        return "entry bundle"
    return f"tile level {rel.split('/')[1]}"


def _edit(p: Path, fn: Callable[[bytes], bytes]) -> None:
    p.write_bytes(fn(p.read_bytes()))


def _replace(p: Path, make: Callable[[Path], Any]) -> None:
    p.unlink()
    make(p)


def _sparse(p: Path) -> None:
    with open(p, "wb") as f:
        f.truncate(2 << 30)


def _outside(d: Path, rel: str) -> None:
    target = d.parent / ("outside-" + rel.replace("/", "_"))
    shutil.copy(d / rel, target)
    (d / rel).unlink()
    os.symlink(target, d / rel)


def _swap(a: Path, b: Path) -> None:
    x, y = a.read_bytes(), b.read_bytes()
    a.write_bytes(y)
    b.write_bytes(x)


def _mk(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"\x00\x01x")


def _pad_bits(p: Path) -> None:
    text = p.read_text()
    blob = text.rstrip("\n").rsplit(" ", 1)[1]
    twin = blob[:-2] + B64[B64.index(blob[-2]) ^ 1] + "="
    p.write_text(text.replace(blob, twin))


def _root_pad(p: Path) -> None:
    lines = p.read_text().split("\n")
    root = lines[2]  # 32 bytes: 43 characters and one "=", 2 pad bits
    lines[2] = root[:-2] + B64[B64.index(root[-2]) ^ 1] + "="
    p.write_text("\n".join(lines))


def _forge_cosig(p: Path, witness: Signer) -> None:
    p.write_text(p.read_text() + cosign("another\nbody\n", witness, 5).line())


def _whole(d: Path, src: Path) -> None:
    shutil.rmtree(d)
    shutil.copytree(src, d)


# --- running ---------------------------------------------------------------------------


def run_export(g: Golden, tally: Tally) -> None:
    from kansa.ledger.note import Verifier

    key = Verifier.parse(g.verifier_vkey)
    latest = (g.export / "checkpoint").read_bytes()
    for cls, name, tamper, mode in export_tamperings(g):
        with tempfile.TemporaryDirectory(dir=g.root) as tmp:
            d = Path(tmp) / "e"
            shutil.copytree(g.export, d)
            tamper(d)
            kw: dict[str, Any] = {}
            if mode == "auditor":
                kw["known_checkpoints"] = [latest]
            if mode == "witness":
                kw["witnesses"] = [g.witness.verifier]
            try:
                verify_directory(d, key, **kw)
                tally.add(f"export: {cls}", name, False, "verify passed")
            except VerificationError:
                tally.add(f"export: {cls}", name, True)
            except Exception as e:
                tally.add(f"export: {cls}", name, False, f"CRASH {type(e).__name__}: {e}")


def run_store(g: Golden, tally: Tally) -> None:
    prefix = f"{g.backend}: "
    # the pristine copy must verify (else every "catch" would be meaningless)
    ok, why = Trial(g).verify()
    tally.add(prefix + "pristine copy verifies (control)", "untouched", not ok, why)
    for cls, name, tamper, extra in store_tamperings(g):
        if g.backend != "sqlite" and "backup" in cls:
            continue
        t = Trial(g)
        try:
            tamper(t)
        except NoOp:
            continue
        except Exception as e:
            tally.add(prefix + cls, name, True)
            tally.refused.append(f"{prefix}{cls}: {name} ({type(e).__name__})")
            continue
        caught, why = t.verify()
        if caught and extra == "append":
            caught = t.append_refused()
            why = why if caught else "verify failed, but appending was not refused"
        elif caught and extra.startswith("prove:"):
            caught = t.prove_refused(extra.removeprefix("prove:"))
            why = why if caught else "verify failed, but prove returned a receipt"
        tally.add(prefix + cls, name, caught, why)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get(
        "KANSA_REDTEAM_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    started = time.perf_counter()
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="kansa-redteam-") as tmp:
        for n, backend in enumerate(args.backends.split(",")):
            root = Path(tmp) / backend
            root.mkdir()
            try:
                g = build(backend, root, args.records, args.pg_url)
            except Exception as e:
                print(f"warning: cannot build on {backend}: {e}", file=sys.stderr)
                continue
            try:
                if n == 0:
                    run_export(g, tally)
                run_store(g, tally)
            finally:
                if g.golden_schema is not None:
                    with contextlib.suppress(Exception):
                        live = g.golden_schema_live  # type: ignore[attr-defined]
                        _pg(g, [f"DROP SCHEMA {g.golden_schema} CASCADE",
                                f"DROP SCHEMA {live} CASCADE"])
    width = max(len(c) for c in tally.tried)
    print(f"{'tampering class':<{width}} | tried | caught")
    print("-" * width + "-+-------+-------")
    for cls in tally.tried:
        print(f"{cls:<{width}} | {tally.tried[cls]:5d} | {tally.caught.get(cls, 0):6d}")
    total, caught = sum(tally.tried.values()), sum(tally.caught.values())
    print("-" * width + "-+-------+-------")
    print(f"{'TOTAL':<{width}} | {total:5d} | {caught:6d}")
    for m in tally.misses:
        print(f"MISSED {m}")
    for m in tally.refused:
        print(f"(counted as caught: the database refused the tampering {m})")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
