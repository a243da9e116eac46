"""Export to a C2SP tlog-tiles directory and offline verification, with real SQLite and
PostgreSQL stores and no mocks. Every tamper test alters real bytes (files, or rows
through sqlite3 / psycopg directly) and checks that verification names what it found."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.errors import EntryTooLargeError, KansaError, StorageError, VerificationError
from kansa.ledger import merkle
from kansa.ledger.edge import TreeEdge
from kansa.ledger.export import export_log
from kansa.ledger.log import Append, Log
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Signer,
    cosign,
    parse_note,
    sign_checkpoint,
    verify_cosignature,
)
from kansa.ledger.storage import Store, open_store
from kansa.ledger.tiles import MAX_ENTRY_SIZE, decode_bundle, encode_bundle
from kansa.ledger.verify import (
    VerifyReport,
    _Problems,
    _TreeChecker,
    verify_directory,
    verify_store,
)

ORIGIN = "example.com/test-log"


def entry(i: int) -> bytes:
    """Entries of varied lengths (0 to 40 bytes of padding), unique per index."""
    return f"entry {i} ".encode() + b"x" * (i % 41)


def build_log(store: Store, signer: Signer, sizes: Sequence[int]) -> Log:
    """A log with a signed checkpoint at each of ``sizes`` (ascending), entries entry(i).
    The interval is long so that only explicit checkpoints are signed after the first."""
    log = Log(store, signer, checkpoint_interval=3600)
    have = 0
    for size in sizes:
        log.append_many([Append(entry(i)) for i in range(have, size)])
        have = size
        log.checkpoint()
    return log


def problems_of(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    return "\n".join(exc.value.problems)


def tamper_sql(url: str, sql: str, params: Sequence[Any] = ()) -> None:
    """Alter a store behind kansa's back: sqlite3 or psycopg, a connection of its own."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(sql.replace("?", "%s"), params)


def read_sql(url: str, sql: str) -> Any:
    """One value read from a store behind kansa's back (first column of the first row)."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute(sql).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


# --- round trips --------------------------------------------------------------------


def test_export_and_verify_round_trip(store_url: str, signer: Signer, tmp_path: Path) -> None:
    store = open_store(store_url)
    log = build_log(store, signer, [1, 256, 600])
    try:
        ticks: list[tuple[int, int]] = []
        summary = export_log(log, tmp_path / "out", progress=lambda d, t: ticks.append((d, t)))
        leaves = [merkle.leaf_hash(entry(i)) for i in range(600)]
        assert summary.size == 600 and summary.entries == 600
        assert summary.root == merkle.root_from_leaf_hashes(leaves)
        # 600 = 2 full bundles + 88; tiles: 0/000, 0/001, 0/002.p/88, 1/000.p/2
        assert (summary.bundles, summary.tiles) == (3, 4)
        assert ticks[-1] == (600, 600)
        files = sorted(p.relative_to(tmp_path / "out").as_posix()
                       for p in (tmp_path / "out").rglob("*") if p.is_file())
        assert files == [
            "checkpoint", "kansa-export.json",
            "tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2",
            "tile/entries/000", "tile/entries/001", "tile/entries/002.p/88",
        ]
        assert decode_bundle((tmp_path / "out/tile/entries/002.p/88").read_bytes()) == [
            entry(i) for i in range(512, 600)
        ]
        assert (tmp_path / "out/tile/1/000.p/2").read_bytes() == b"".join(
            merkle.root_from_leaf_hashes(leaves[i : i + 256]) for i in (0, 256)
        )
        meta = json.loads((tmp_path / "out/kansa-export.json").read_text())
        assert meta["verifier_key"] == signer.verifier.vkey and meta["size"] == 600

        vticks: list[tuple[int, int]] = []
        report = verify_directory(tmp_path / "out", signer.verifier,
                                  progress=lambda d, t: vticks.append((d, t)))
        assert isinstance(report, VerifyReport)
        assert (report.size, report.root, report.entries_checked) == (600, summary.root, 600)
        assert report.tiles_checked == 4 and report.checkpoints_checked == 1
        assert vticks[-1] == (600, 600)
        assert "600 entries" in str(report)

        stored = verify_store(store, signer.verifier)
        assert (stored.size, stored.root, stored.checkpoints_checked) == (600, summary.root, 3)
    finally:
        log.close()
        store.close()


def test_empty_log_exports_and_verifies(store_url: str, signer: Signer, tmp_path: Path) -> None:
    store = open_store(store_url)
    log = Log(store, signer)
    try:
        log.checkpoint()
        summary = export_log(log, tmp_path / "empty")
        assert summary.size == 0 and summary.root == hashlib.sha256(b"").digest()
        assert not (tmp_path / "empty" / "tile").exists()
        report = verify_directory(tmp_path / "empty", signer.verifier)
        assert report.size == 0 and report.root == hashlib.sha256(b"").digest()
        assert report.tiles_checked == 0
        assert verify_store(store, signer.verifier).root == hashlib.sha256(b"").digest()
    finally:
        log.close()
        store.close()


def test_largest_entry_round_trips(store_url: str, signer: Signer, tmp_path: Path) -> None:
    big = bytes(range(256)) * 255 + b"\xff" * 255
    assert len(big) == MAX_ENTRY_SIZE == 65_535
    store = open_store(store_url)
    log = Log(store, signer)
    try:
        log.append_many([Append(b"small"), Append(big), Append(b"")])
        with pytest.raises(EntryTooLargeError):
            log.append(big + b"!")
        log.checkpoint()
        export_log(log, tmp_path / "big")
        assert decode_bundle((tmp_path / "big/tile/entries/000.p/3").read_bytes()) == [
            b"small", big, b""
        ]
        report = verify_directory(tmp_path / "big", signer.verifier)
        leaves = [merkle.leaf_hash(e) for e in (b"small", big, b"")]
        assert report.root == merkle.root_from_leaf_hashes(leaves)
        assert verify_store(store, signer.verifier).entries_checked == 3
    finally:
        log.close()
        store.close()


def test_export_cuts_tiles_to_the_checkpoint_and_carries_cosignatures(
    sqlite_url: str, signer: Signer, tmp_path: Path
) -> None:
    witness = Signer.generate("witness.example/w1", alg=ALG_COSIGNATURE_V1)
    store = open_store(sqlite_url)
    log = build_log(store, signer, [300])
    try:
        cp = log.latest_checkpoint()
        line = cosign(cp.checkpoint.body(), witness, 1_700_000_000).line()
        store.add_cosignature(300, witness.name, line)
        log.append_many([Append(entry(i)) for i in range(300, 400)])  # not yet signed
        assert store.size() == 400 and store.latest_checkpoint().size == 300  # type: ignore[union-attr]
        summary = export_log(log, tmp_path / "out")
        assert summary.size == 300 and summary.cosignatures == 1
        assert (tmp_path / "out/tile/0/001.p/44").stat().st_size == 44 * 32
        text = (tmp_path / "out/checkpoint").read_text()
        assert text.endswith(line)
        assert verify_cosignature(parse_note(text), witness.verifier) == 1_700_000_000
        report = verify_directory(tmp_path / "out", signer.verifier)
        # without the witness's key the line proves nothing: counted, not "checked"
        assert report.size == 300 and report.cosignatures_checked == 0
        assert report.cosignatures_unverified == 1 and "--witness" in str(report)
        report = verify_directory(tmp_path / "out", signer.verifier,
                                  witnesses=[witness.verifier])
        assert report.cosignatures_checked == 1 and report.cosignatures_unverified == 0
        stored = verify_store(store, signer.verifier, witnesses=[witness.verifier])
        assert stored.entries_checked == 400 and stored.cosignatures_checked == 1
    finally:
        log.close()
        store.close()


def test_export_refuses_a_non_empty_target_and_leaves_nothing_behind(
    sqlite_url: str, signer: Signer, tmp_path: Path
) -> None:
    store = open_store(sqlite_url)
    log = build_log(store, signer, [10])
    try:
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "x").write_text("mine")
        with pytest.raises(KansaError, match="not an empty directory"):
            export_log(log, tmp_path / "busy")
        assert (tmp_path / "busy" / "x").read_text() == "mine"
        (tmp_path / "free").mkdir()
        assert export_log(log, tmp_path / "free").size == 10  # an empty directory is fine

        tamper_sql(sqlite_url, "DELETE FROM entries WHERE idx = 4")
        with pytest.raises(StorageError, match="entry 4 is missing"):
            export_log(log, tmp_path / "broken")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "free", "ledger.db",
                                                               "ledger.db-shm", "ledger.db-wal"]
    finally:
        log.close()
        store.close()


def test_verification_spans_a_full_level_one_tile(
    sqlite_url: str, signer: Signer, tmp_path: Path
) -> None:
    """65,536 + 300 entries: a full tile at level 1 and a partial one at level 2."""
    size = 65_536 + 300
    store = open_store(sqlite_url)
    log = Log(store, signer)
    try:
        log.append_many([Append(i.to_bytes(4, "big")) for i in range(size)])
        log.checkpoint()
        export_log(log, tmp_path / "out")
        out = tmp_path / "out"
        assert (out / "tile/1/000").stat().st_size == 8192
        assert (out / "tile/2/000.p/1").stat().st_size == 32
        assert (out / "tile/1/001.p/1").stat().st_size == 32
        report = verify_directory(out, signer.verifier)
        leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
        assert report.root == merkle.root_from_leaf_hashes(leaves)
        assert report.tiles_checked == 256 + 2 + 2 + 1

        tile = bytearray((out / "tile/1/000").read_bytes())
        tile[200 * 32] ^= 1
        (out / "tile/1/000").write_bytes(bytes(tile))
        with pytest.raises(VerificationError) as exc:
            verify_directory(out, signer.verifier)
        assert exc.value.problems == [
            "tile/1/000: hash 200 differs from the root of tile/0/200 recomputed from the "
            "entries (tile altered)"
        ]
    finally:
        log.close()
        store.close()


# --- tampering with an export -------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Signer]]:
    """One export of 600 entries (bundles 000, 001, 002.p/88), copied by each test."""
    base = tmp_path_factory.mktemp("export")
    signer = Signer.generate(ORIGIN)
    store = open_store(f"sqlite:///{base / 'ledger.db'}")
    log = build_log(store, signer, [600])
    export_log(log, base / "pristine")
    log.close()
    store.close()
    yield base / "pristine", signer


@pytest.fixture
def copy(exported: tuple[Path, Signer], tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    return out


def rewrite_bundle(path: Path, change: Any) -> None:
    entries = decode_bundle(path.read_bytes())
    change(entries)
    path.write_bytes(encode_bundle(entries))


def check_fails(directory: Path, signer: Signer) -> str:
    with pytest.raises(VerificationError) as exc:
        verify_directory(directory, signer.verifier)
    return problems_of(exc)


def test_pristine_copy_verifies(exported: tuple[Path, Signer], copy: Path) -> None:
    assert verify_directory(copy, exported[1].verifier).size == 600


def test_changed_entry_byte(exported: tuple[Path, Signer], copy: Path) -> None:
    bundle = copy / "tile/entries/001"
    def flip(entries: list[bytes]) -> None:
        entries[17] = entries[17][:-1] + bytes([entries[17][-1] ^ 1])
    rewrite_bundle(bundle, flip)
    found = check_fails(copy, exported[1])
    assert "tile/0/001: hash 17 differs from the hash of entry 273 (entry or tile altered)" in found
    assert "checkpoint: root hash" in found and "recomputed from the entries" in found


def test_deleted_entry(exported: tuple[Path, Signer], copy: Path) -> None:
    rewrite_bundle(copy / "tile/entries/000", lambda e: e.pop(17))
    found = check_fails(copy, exported[1])
    assert (
        "tile/entries/000: holds 255 entries, the checkpoint needs 256 (entry deleted?); "
        "entry 17 is the first that does not match tile/0/000"
    ) in found


def test_deleted_last_entry_of_partial_bundle(exported: tuple[Path, Signer], copy: Path) -> None:
    rewrite_bundle(copy / "tile/entries/002.p/88", lambda e: e.pop())
    found = check_fails(copy, exported[1])
    assert "tile/entries/002.p/88: holds 87 entries, the checkpoint needs 88 (entry deleted?)" in (
        found
    )


def test_reordered_entries(exported: tuple[Path, Signer], copy: Path) -> None:
    def swap(e: list[bytes]) -> None:
        e[5], e[6] = e[6], e[5]
    rewrite_bundle(copy / "tile/entries/000", swap)
    found = check_fails(copy, exported[1])
    assert "tile/0/000: hash 5 differs from the hash of entry 5, which is hash 6 " \
           "(entries 5 and 6 reordered?)" in found
    assert "tile/0/000: hash 6 differs from the hash of entry 6, which is hash 5" in found
    assert "checkpoint: root hash" in found


def test_inserted_entry(exported: tuple[Path, Signer], copy: Path) -> None:
    rewrite_bundle(copy / "tile/entries/001", lambda e: e.insert(3, b"forged"))
    found = check_fails(copy, exported[1])
    assert (
        "tile/entries/001: holds 257 entries, the checkpoint needs 256 (entry inserted?); "
        "entry 259 is the first that does not match tile/0/001"
    ) in found


def test_appended_entry_in_partial_bundle(exported: tuple[Path, Signer], copy: Path) -> None:
    rewrite_bundle(copy / "tile/entries/002.p/88", lambda e: e.append(b"late"))
    found = check_fails(copy, exported[1])
    assert "tile/entries/002.p/88: holds 89 entries, the checkpoint needs 88 (entry inserted?)" in (
        found
    )


def test_garbled_bundle(exported: tuple[Path, Signer], copy: Path) -> None:
    path = copy / "tile/entries/001"
    path.write_bytes(path.read_bytes()[:-3])
    found = check_fails(copy, exported[1])
    assert "tile/entries/001: entry 255 runs past the end of the bundle" in found


def test_deleted_bundle(exported: tuple[Path, Signer], copy: Path) -> None:
    (copy / "tile/entries/001").unlink()
    assert "tile/entries/001: missing" in check_fails(copy, exported[1]).splitlines()


def test_changed_tile_hash(exported: tuple[Path, Signer], copy: Path) -> None:
    path = copy / "tile/0/001"
    data = bytearray(path.read_bytes())
    data[3 * 32 + 7] ^= 0x80
    path.write_bytes(bytes(data))
    found = check_fails(copy, exported[1])
    # the entries still match the checkpoint: only the tile is named
    assert found == "tile/0/001: hash 3 differs from the hash of entry 259 (entry or tile altered)"


def test_changed_upper_tile(exported: tuple[Path, Signer], copy: Path) -> None:
    path = copy / "tile/1/000.p/2"
    path.write_bytes(path.read_bytes()[:32] + bytes(32))
    found = check_fails(copy, exported[1])
    assert found == (
        "tile/1/000.p/2: hash 1 differs from the root of tile/0/001 recomputed from the "
        "entries (tile altered)"
    )


def test_deleted_tile(exported: tuple[Path, Signer], copy: Path) -> None:
    (copy / "tile/0/000").unlink()
    assert check_fails(copy, exported[1]) == "tile/0/000: missing"


def test_truncated_tile(exported: tuple[Path, Signer], copy: Path) -> None:
    path = copy / "tile/0/001"
    path.write_bytes(path.read_bytes()[:8000])
    assert check_fails(copy, exported[1]) == (
        "tile/0/001: 8000 bytes, expected 8192 (256 hashes; tile truncated or padded)"
    )


def test_tile_of_wrong_width(exported: tuple[Path, Signer], copy: Path) -> None:
    old = copy / "tile/0/002.p/88"
    new = copy / "tile/0/002.p/87"
    new.write_bytes(old.read_bytes()[:87 * 32])
    old.unlink()
    found = check_fails(copy, exported[1])
    assert found == (
        "tile/0/002.p/88: missing; found tile/0/002.p/87 instead (wrong width: a tree of "
        "size 600 needs 88 hashes here)"
    )


def test_unexpected_files(exported: tuple[Path, Signer], copy: Path) -> None:
    (copy / "tile/0/003.p/1").parent.mkdir(parents=True)
    (copy / "tile/0/003.p/1").write_bytes(bytes(32))
    (copy / "tile/entries/notes.txt").write_text("hello")
    found = check_fails(copy, exported[1]).splitlines()
    assert found == [
        "tile/0/003.p/1: unexpected file (not part of a tree of size 600)",
        "tile/entries/notes.txt: unexpected file (not part of a tree of size 600)",
    ]


def test_checkpoint_signed_by_another_key(exported: tuple[Path, Signer], copy: Path) -> None:
    signer = exported[1]
    impostor = Signer.generate(ORIGIN)  # same name, other key
    body = parse_note((copy / "checkpoint").read_bytes()).text
    forged = sign_checkpoint(Checkpoint.parse_body(body), impostor)
    (copy / "checkpoint").write_bytes(forged.to_bytes())
    found = check_fails(copy, signer)
    assert found == (
        f"checkpoint: note carries no signature by {ORIGIN}+{signer.verifier.key_id.hex()}"
    )


def test_altered_checkpoint_root(exported: tuple[Path, Signer], copy: Path) -> None:
    text = (copy / "checkpoint").read_text()
    lines = text.split("\n")
    lines[2] = base64.b64encode(bytes(32)).decode()
    (copy / "checkpoint").write_text("\n".join(lines))
    found = check_fails(copy, exported[1])
    assert f"checkpoint: signature by {ORIGIN} on the note is invalid" in found
    assert f"checkpoint: root hash {bytes(32).hex()} of size 600 differs" in found


def test_altered_checkpoint_size(exported: tuple[Path, Signer], copy: Path) -> None:
    text = (copy / "checkpoint").read_text()
    (copy / "checkpoint").write_text(text.replace("\n600\n", "\n599\n", 1))
    found = check_fails(copy, exported[1])
    assert f"checkpoint: signature by {ORIGIN} on the note is invalid" in found
    assert "tile/entries/002.p/87: missing; found tile/entries/002.p/88 instead" in found


def test_missing_or_garbled_checkpoint(exported: tuple[Path, Signer], copy: Path) -> None:
    (copy / "checkpoint").write_text("not a note")
    assert "checkpoint: malformed" in check_fails(copy, exported[1])
    (copy / "checkpoint").unlink()
    assert check_fails(copy, exported[1]) == "checkpoint: missing"


def test_wrong_verifier_key(copy: Path) -> None:
    other = Signer.generate("example.com/other-log")
    assert "no signature by example.com/other-log" in check_fails(copy, other)


def test_metadata_is_not_trusted(exported: tuple[Path, Signer], copy: Path) -> None:
    (copy / "kansa-export.json").write_text('{"size": 1, "verifier_key": "lies"}')
    assert verify_directory(copy, exported[1].verifier).size == 600
    (copy / "kansa-export.json").unlink()
    assert verify_directory(copy, exported[1].verifier).size == 600


def test_problems_are_capped(exported: tuple[Path, Signer], copy: Path) -> None:
    for name in ("000", "001"):
        (copy / "tile/0" / name).write_bytes(bytes(8192))
    with pytest.raises(VerificationError) as exc:
        verify_directory(copy, exported[1].verifier)
    assert len(exc.value.problems) == 101
    assert exc.value.problems[-1] == "... and 412 more problems"
    assert "(and 100 more)" in str(exc.value)


# --- tampering with a store ----------------------------------------------------------


@pytest.fixture
def ledger(store_url: str, signer: Signer) -> Iterator[tuple[str, Store, Log]]:
    """A store with checkpoints at sizes 100, 300 and 600."""
    store = open_store(store_url)
    log = build_log(store, signer, [100, 300, 600])
    try:
        yield store_url, store, log
    finally:
        log.close()
        store.close()


def store_fails(store: Store, signer: Signer, **kw: Any) -> str:
    with pytest.raises(VerificationError) as exc:
        verify_store(store, signer.verifier, **kw)
    return problems_of(exc)


def test_store_verifies(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    _, store, log = ledger
    report = verify_store(store, signer.verifier,
                          known_checkpoints=[log.latest_checkpoint().to_bytes()])
    assert (report.size, report.entries_checked, report.checkpoints_checked) == (600, 600, 4)
    assert report.root == log.latest_checkpoint().checkpoint.root


def test_store_changed_entry(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "UPDATE entries SET data = ? WHERE idx = 273", (b"forged",))
    found = store_fails(store, signer)
    assert "tile/0/001: hash 17 differs from the hash of entry 273 (entry or tile altered)" in found
    assert "checkpoint at size 600: root differs from the root of the first 600 entries" in found
    assert "checkpoint at size 300: root differs" in found
    assert "checkpoint at size 100" not in found  # entry 273 lies beyond it


def test_store_deleted_entry(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "DELETE FROM entries WHERE idx = 17")
    found = store_fails(store, signer)
    assert found == "entries: entry 17 is missing from the store (rows deleted?)"


def test_store_deleted_trailing_entries(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "DELETE FROM entries WHERE idx >= 590")
    found = store_fails(store, signer)
    assert found == "entries: entries 590-599 are missing from the store (rows deleted?)"


def test_store_altered_tile(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    data = bytearray(store.read_tile(0, 1) or b"")
    data[3 * 32] ^= 1
    tamper_sql(url, "UPDATE tiles SET data = ? WHERE level = 0 AND idx = 1", (bytes(data),))
    found = store_fails(store, signer)
    assert "tile/0/001: hash 3 differs from the hash of entry 259 (entry or tile altered)" in found


def test_store_deleted_tile(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "DELETE FROM tiles WHERE level = 1")
    found = store_fails(store, signer)
    assert "tile/1/000.p/2: missing from the store" in found


def test_store_deleted_checkpoint_row(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, log = ledger
    held = make_known(store, 300)  # e.g. from a receipt an auditor kept
    # the rows are numbered in signing order (a loaded machine may sign one more early
    # checkpoint, so read the number rather than assume it): the deletion leaves a gap
    seq = read_sql(url, "SELECT seq FROM checkpoints WHERE size = 300")
    assert seq >= 2
    tamper_sql(url, "DELETE FROM checkpoints WHERE size = 300")
    assert store_fails(store, signer) == (
        f"checkpoints: 1 signed checkpoint(s) numbered {seq}..{seq} are missing from the "
        "store, just below size 600 (rows deleted?)"
    )
    found = store_fails(store, signer, known_checkpoints=[held])
    assert "known checkpoint of size 300: missing from the store (checkpoint row deleted?)" in (
        found.splitlines()
    )


def make_known(store: Store, size: int) -> str:
    row = store.checkpoint_at(size)
    assert row is not None
    return row.note


def test_store_forged_checkpoint_other_key(
    ledger: tuple[str, Store, Log], signer: Signer
) -> None:
    url, store, log = ledger
    impostor = Signer.generate(ORIGIN)
    root = log.root(450)  # even with the right root, the key is wrong
    forged = sign_checkpoint(Checkpoint(ORIGIN, 450, root), impostor).note.to_text()
    tamper_sql(url, "INSERT INTO checkpoints (size, created, note) VALUES (?, ?, ?)",
               (450, 0, forged))
    found = store_fails(store, signer)
    assert found == (
        f"checkpoint at size 450: note carries no signature by {ORIGIN}+"
        f"{signer.verifier.key_id.hex()} (forged or altered checkpoint?)"
    )


def test_store_checkpoints_that_disagree(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    """A checkpoint validly signed for a tree that is not this one (a stolen key, or a log
    bug) contradicts both the entries and its neighbours."""
    url, store, _ = ledger
    forged = sign_checkpoint(Checkpoint(ORIGIN, 450, bytes(32)), signer).note.to_text()
    tamper_sql(url, "INSERT INTO checkpoints (size, created, note) VALUES (?, ?, ?)",
               (450, 0, forged))
    found = store_fails(store, signer)
    assert "checkpoint at size 450: root differs from the root of the first 450 entries" in found
    assert "checkpoints at sizes 300 and 450: not consistent" in found
    assert "checkpoints at sizes 450 and 600: not consistent" in found


def test_store_altered_checkpoint_row(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "UPDATE checkpoints SET size = 601 WHERE size = 600")
    found = store_fails(store, signer)
    assert "checkpoint at size 601: the stored note is a checkpoint of size 600" in found


def test_store_shrunk_log_state(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    tamper_sql(url, "UPDATE log_state SET size = 500")
    found = store_fails(store, signer)
    assert (
        "checkpoint at size 600: signs 600 entries but the store's log size is 500 "
        "(entries or log state deleted?)"
    ) in found
    assert "entries: 100 rows lie past the log size 500, from index 500" in found


def test_store_malformed_cosignature(ledger: tuple[str, Store, Log], signer: Signer) -> None:
    url, store, _ = ledger
    store.add_cosignature(300, "witness.example", "— witness.example !!!notbase64\n")
    found = store_fails(store, signer)
    assert "checkpoint at size 300: stored cosignature" in found and "malformed" in found


def test_store_wrong_key(ledger: tuple[str, Store, Log]) -> None:
    _, store, _ = ledger
    other = Signer.generate("example.com/other-log")
    found = store_fails(store, other)
    assert f"store: holds log {ORIGIN!r}, not 'example.com/other-log'" in found
    assert "checkpoint at size 600: note carries no signature by example.com/other-log" in found


def test_store_many_checkpoints_at_tile_edges(store_url: str, signer: Signer) -> None:
    """Checkpoint roots are recomputed at every size, including those at tile edges."""
    sizes = [*range(1, 10), 255, 256, 257, 511, 512, 513, 700]
    store = open_store(store_url)
    log = build_log(store, signer, sizes)
    try:
        report = verify_store(store, signer.verifier)
        assert report.checkpoints_checked == len(sizes) and report.size == 700
    finally:
        log.close()
        store.close()


# --- the tree checker on its own -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=1300),
    picks=st.lists(st.integers(min_value=0, max_value=1300), max_size=12),
)
def test_prefix_roots_match_rfc_9162(size: int, picks: list[int]) -> None:
    """The checker's root at every wanted size equals MTH of that prefix, and tiles built
    by the sequencer's TreeEdge all compare equal."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    edge = TreeEdge.empty()
    tiles = edge.append(leaves)

    def source(level: int, index: int, width: int) -> bytes | None:
        return tiles[(level, index)][: width * 32]

    problems = _Problems()
    wanted = [p for p in picks if p <= size]
    checker = _TreeChecker(size, source, problems, wanted)
    for b in range(0, size, 256):
        checker.check_bundle(b // 256, leaves[b : b + 256])
    assert checker.finish() == merkle.root_from_leaf_hashes(leaves) == edge.root()
    assert len(problems) == 0
    for s in wanted:
        assert checker.roots[s] == merkle.root_from_leaf_hashes(leaves[:s])


def test_store_rows_of_the_wrong_type(sqlite_url: str, signer: Signer) -> None:
    """SQLite lets a BLOB column hold TEXT: such rows are findings, not crashes."""
    store = open_store(sqlite_url)
    log = build_log(store, signer, [300])
    try:
        tamper_sql(sqlite_url, "UPDATE tiles SET data = 'text' WHERE level = 0 AND idx = 1")
        found = store_fails(store, signer)
        assert found.startswith("tile/0/001.p/44: unreadable in the store")
        tamper_sql(sqlite_url, "UPDATE entries SET data = 'text' WHERE idx = 3")
        found = store_fails(store, signer)
        assert found.startswith("entries: rows 0-299 are unreadable in the store")
        assert "missing" not in found.splitlines()[0]
    finally:
        log.close()
        store.close()
