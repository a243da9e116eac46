#!/usr/bin/env python
"""Red team: can erased content be recovered from the store's files with master.key?

The attack of issue 8: while a second process (a gateway stand-in, a fresh interpreter)
holds the store open and keeps appending, the owner erases N data subjects. The attacker
then copies the database files (SQLite: ledger.db, -wal, -shm; PostgreSQL: every heap,
TOAST and index file of the store's schema, after CHECKPOINT, dead tuples included) and,
holding master.key, tries to get each erased plaintext back:

- by searching the raw bytes for the plaintext, the subject key, every sealed copy of it
  and every root generation it was ever sealed under, and for ciphertext fragments;
- by decrypting: every key root and sealed key it can find (rows it can read in the
  copies, plus any historical blob whose exact bytes survive anywhere in the files) is
  unsealed with master.key, and every erased ciphertext of which any fragment survives
  (the attacker is handed the whole ciphertext then) is tried under every key obtained.

Prints ``erasure plaintexts recoverable from the files: X/N`` per backend (target 0).
tests/test_erasure.py runs the same scenario and asserts on it.

    python bench/redteam_erasure.py                       # SQLite (N=100), PostgreSQL (N=30)
    python bench/redteam_erasure.py --backends sqlite --victims 20
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import kansa  # noqa: E402

PG_BASE = os.environ.get("KANSA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# the live second process: appends what it is told, one JSON command per stdin line
PEER = r"""
import json, sys
import kansa
ledger = kansa.Ledger.open(sys.argv[1], home=sys.argv[2])
ledger.vault.erasure_poll = float(sys.argv[3])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "quit":
        break
    r = ledger.append({"system": "peer", "subject": cmd["subject"],
                       "input": cmd["text"], "output": "ok " + cmd["text"][:8]})
    print(json.dumps({"index": r.index, "id": r.id,
                      "group": ledger.log.store.entry(r.index).group}), flush=True)
ledger.close()
"""


class Peer:
    """A second live process holding the store open, as a running gateway does."""

    def __init__(self, url: str, home: Path, erasure_poll: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, url, str(home), str(erasure_poll)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer exited ({self.proc.wait()})")
        return line

    def append(self, subject: str, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": "append", "subject": subject,
                                          "text": text}) + "\n")
        self.proc.stdin.flush()
        got: dict[str, Any] = json.loads(self._line())
        return got

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


@dataclass
class Victim:
    name: str
    text: str
    record_id: str = ""
    key: bytes = b""
    sealed: bytes = b""
    ciphertext: bytes = b""


@dataclass
class Result:
    backend: str
    victims: int
    recovered: int  # erased plaintexts the attacker got back
    found: dict[str, int] = field(default_factory=dict)  # needles found in raw bytes
    late_under_destroyed_key: int = 0  # content stored after the erasure under the old key
    rekeyed_late: int = 0  # late records of erased subjects stored under a fresh key
    survivors_readable: int = 0
    survivors: int = 0
    scrubbed: bool = True
    file_bytes: int = 0
    seconds: float = 0.0


# -- the store's files -------------------------------------------------------------------


def _sqlite_files(db: Path) -> dict[str, bytes]:
    out = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db) + suffix)
        if p.exists():
            out[p.name] = p.read_bytes()
    return out


def _pg_paths(c: Any) -> list[str]:
    rows = c.execute(
        """SELECT pg_relation_filepath(c.oid) FROM pg_class c
           WHERE c.relnamespace = current_schema()::regnamespace
             AND c.relkind IN ('r', 'i', 't', 'm')
           UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c
           WHERE c.relnamespace = current_schema()::regnamespace AND c.reltoastrelid <> 0
           UNION SELECT pg_relation_filepath(i.indexrelid) FROM pg_index i
           JOIN pg_class c ON c.reltoastrelid = i.indrelid
           WHERE c.relnamespace = current_schema()::regnamespace""").fetchall()
    return [r[0] for r in rows if r[0]]


def _pg_files(url: str, extra_paths: list[str]) -> dict[str, bytes]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")  # every dirty page, dead tuples included, onto disk
        data_dir = Path(c.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        paths = set(_pg_paths(c)) | set(extra_paths)
    out = {}
    for rel in sorted(paths):
        for seg in [data_dir / rel, *sorted(data_dir.glob(rel + ".[0-9]*"))]:
            if seg.exists():
                out[rel + seg.name[len(Path(rel).name):]] = seg.read_bytes()
    return out


# -- the attacker ------------------------------------------------------------------------


def _chunks(ct: bytes, size: int = 48) -> Iterator[bytes]:
    # page and TOAST boundaries split large values: look for pieces, not the whole
    for i in range(0, max(len(ct) - size, 0) + 1, 512):
        yield ct[i:i + size]


class Attacker:
    def __init__(self, master: bytes, blob: bytes) -> None:
        self.wrap = AESGCM(hmac.new(master, b"kansa/wrap/v1", "sha256").digest())
        self.blob = blob
        self.keys: set[bytes] = set()

    def present(self, needle: bytes) -> bool:
        return needle in self.blob

    def unseal_root(self, prefix: str, gen: int, data: bytes) -> bytes | None:
        with contextlib.suppress(InvalidTag, ValueError):
            return self.wrap.decrypt(data[:12], data[12:],
                                     f"kansa/root/v1\x00{prefix}\x00{gen}".encode())
        return None

    def unseal_keys(self, roots: list[bytes], sealed: list[tuple[str, bytes]]) -> None:
        for ref, data in sealed:
            for k in [*(AESGCM(r) for r in roots), self.wrap]:  # schema 2: under master
                with contextlib.suppress(InvalidTag, ValueError):
                    self.keys.add(k.decrypt(data[:12], data[12:], ref.encode()))

    def decrypt(self, ct: bytes, record_id: str) -> bytes | None:
        for key in self.keys:
            with contextlib.suppress(InvalidTag, ValueError):
                return AESGCM(key).decrypt(ct[1:13], ct[13:], record_id.encode())
        return None


def _live_rows(url: str, copy_dir: Path, files: dict[str, bytes]) -> tuple[
        list[tuple[str, int, bytes]], list[tuple[str, bytes]]]:
    """Roots and sealed keys the attacker reads as rows from the copies (SQLite: opened
    with its WAL, as the issue's attack did; PostgreSQL: the live tables)."""
    if url.startswith("sqlite:"):
        for name, data in files.items():
            (copy_dir / name).write_bytes(data)
        c = sqlite3.connect(copy_dir / "ledger.db")
        try:
            roots = [(str(p), int(g), bytes(d)) for p, g, d in
                     c.execute("SELECT prefix, gen, data FROM key_roots")]
            sealed = [(str(r), bytes(d)) for r, d in
                      c.execute("SELECT ref, data FROM sealed_keys")]
        finally:
            c.close()
        return roots, sealed
    import psycopg

    with psycopg.connect(url, autocommit=True) as pc:
        roots = [(str(p), int(g), bytes(d)) for p, g, d in
                 pc.execute("SELECT prefix, gen, data FROM key_roots").fetchall()]
        sealed = [(str(r), bytes(d)) for r, d in
                  pc.execute("SELECT ref, data FROM sealed_keys").fetchall()]
    return roots, sealed


# -- the scenario --------------------------------------------------------------------------


def run(url: str, work: Path, *, victims: int, survivors: int = 5, erasure_poll: float = 0.0,
        big_every: int = 7) -> Result:
    """Erase ``victims`` subjects under a live appending peer, then attack the files.
    ``erasure_poll`` is the peer's: 0 makes it learn of each erasure before its next
    append (it re-keys); a large value keeps its stale keys (the store must refuse)."""
    t0 = time.perf_counter()
    home = work / "home"
    owner = kansa.Ledger.init(home, origin="example.com/redteam", url=url)
    master = owner.vault._master
    peer = Peer(url, home, erasure_poll)
    try:
        vs = []
        for i in range(victims):
            pad = os.urandom(2600).hex() if i % big_every == 0 else ""  # some overflow/TOAST
            v = Victim(f"victim-{i}", f"SECRET-{i}-{os.urandom(8).hex()}-{pad}")
            v.record_id = str(peer.append(v.name, v.text)["id"])
            vs.append(v)
        keep = [(f"survivor-{i}", f"KEEP-{i}-{os.urandom(8).hex()}") for i in range(survivors)]
        kept = [(peer.append(s, t)["id"], t) for s, t in keep]

        store = owner.log.store
        history_roots = [(str(p), int(g), bytes(d)) for p, g, d in
                         store.query("SELECT prefix, gen, data FROM key_roots")]
        pre_paths: list[str] = []
        if store.dialect == "postgresql":
            import psycopg

            with psycopg.connect(url, autocommit=True) as c:
                pre_paths = _pg_paths(c)
        for v in vs:
            sk = owner.vault.subject_key(v.name, create=False)
            assert sk is not None
            v.key = sk.key
            sealed = store.sealed_key(sk.ref)
            assert sealed is not None
            v.sealed = sealed.data
            idx = owner.resolve(v.record_id)
            att = store.attachment(idx)
            assert att is not None
            v.ciphertext = att[1]

        scrubbed = True
        for v in vs:
            # erase one by one, each while the peer is alive, and let it append between
            scrubbed &= owner.erase(v.name, reason="red team").scrubbed
            history_roots += [(str(p), int(g), bytes(d)) for p, g, d in
                              store.query("SELECT prefix, gen, data FROM key_roots")]
            peer.append("survivor-0", f"between {v.name}")
        late = [(v, peer.append(v.name, "LATE " + v.text[:40])) for v in vs]
        erased = {g for (g,) in store.query("SELECT grp FROM erased_groups")}
        late_destroyed = int(store.query(
            "SELECT count(*) FROM attachments WHERE grp IN (SELECT grp FROM erased_groups)"
        )[0][0])
        rekeyed = sum(1 for _v, r in late if r["group"] not in erased
                      and owner.get(r["id"]).content_state == "present")
        survivors_ok = sum(1 for rid, t in kept
                           if (owner.get(rid).content or {}).get("input") == t)

        # the attack, while the peer still holds the store open
        files = (_sqlite_files(Path(url.removeprefix("sqlite:///")))
                 if url.startswith("sqlite:") else _pg_files(url, pre_paths))
        blob = b"\x00".join(files.values())
        atk = Attacker(master, blob)
        copy_dir = work / "copy"
        copy_dir.mkdir()
        live_roots, live_sealed = _live_rows(url, copy_dir, files)
        current = {(p, g) for p, g, _d in live_roots}
        old_roots = {(p, g, d) for p, g, d in history_roots if (p, g) not in current}
        found = {
            "plaintexts": sum(atk.present(v.text.encode()) for v in vs),
            "subject keys": sum(atk.present(v.key) for v in vs),
            "sealed subject keys": sum(atk.present(v.sealed) for v in vs),
            "rotated-out roots": sum(atk.present(d) for _p, _g, d in old_roots),
            "ciphertexts (any fragment)": sum(
                any(atk.present(c) for c in _chunks(v.ciphertext)) for v in vs),
        }
        roots = [r for p, g, d in [*live_roots, *(x for x in old_roots if atk.present(x[2]))]
                 if (r := atk.unseal_root(p, g, d)) is not None]
        refs = {v.name: owner.vault.ref(v.name) for v in vs}
        sealed_seen = live_sealed + [(refs[v.name], v.sealed) for v in vs
                                     if atk.present(v.sealed)]
        atk.unseal_keys(roots, sealed_seen)
        atk.keys |= {v.key for v in vs if atk.present(v.key)}
        recovered = 0
        for v in vs:
            if atk.present(v.text.encode()):
                recovered += 1
            elif any(atk.present(c) for c in _chunks(v.ciphertext)):
                got = atk.decrypt(v.ciphertext, v.record_id)
                recovered += got is not None and v.text.encode() in got
        return Result(store.dialect, victims, recovered, found, late_destroyed, rekeyed,
                      survivors_ok, survivors, scrubbed, len(blob),
                      time.perf_counter() - t0)
    finally:
        peer.close()
        owner.close()


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str]:
    import psycopg

    schema = "rt_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_BASE, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_BASE else "?"
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def report(r: Result) -> str:
    found = ", ".join(f"{k} {n}" for k, n in r.found.items())
    return (f"[{r.backend}] erasure plaintexts recoverable from the files: "
            f"{r.recovered}/{r.victims}\n"
            f"  found in {r.file_bytes:,} bytes of files: {found}\n"
            f"  late content under a destroyed key: {r.late_under_destroyed_key}; "
            f"late records re-keyed: {r.rekeyed_late}; survivors readable: "
            f"{r.survivors_readable}/{r.survivors}; scrub completed: {r.scrubbed}; "
            f"{r.seconds:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--victims", type=int, default=None,
                    help="erased subjects (default: 100 SQLite, 30 PostgreSQL, as in the issue)")
    ap.add_argument("--erasure-poll", type=float, default=0.0,
                    help="the peer's erasure poll interval (large: it keeps stale keys)")
    a = ap.parse_args()
    for backend in a.backends.split(","):
        work = Path(tempfile.mkdtemp(prefix="kansa-redteam-"))
        try:
            if backend == "sqlite":
                r = run(f"sqlite:///{work / 'ledger.db'}", work,
                        victims=a.victims or 100, erasure_poll=a.erasure_poll)
            else:
                with pg_schema_url() as url:
                    r = run(url, work, victims=a.victims or 30, erasure_poll=a.erasure_poll)
            print(report(r), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
