"""Issue 8 items 4-6: a signed history never forks, verify covers what the rows say beside
the entries, record ids are unique and never an index, and untrusted files are read
with a bound. Store-level tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

import kansa
from kansa.errors import (
    DuplicateIdError,
    FormatError,
    InconsistentCheckpointError,
    KansaError,
    RollbackError,
    StorageError,
    VerificationError,
)
from kansa.home import KEPT_CHECKPOINT, Home
from kansa.ledger.files import MAX_RECEIPT_BYTES, read_bounded
from kansa.ledger.log import Append, Log
from kansa.ledger.note import ALG_COSIGNATURE_V1, Signer, cosign
from kansa.ledger.storage import _PG_MIGRATIONS, _SQLITE_MIGRATIONS, open_store
from kansa.ledger.verify import verify_directory

ORIGIN = "example.com/integrity"


def tamper(url: str, sql: str, params: Sequence[Any] = ()) -> None:
    """Alter a store behind kansa's back, on a connection of its own."""
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


def rollback(url: str, size: int) -> None:
    """What restoring a backup taken at ``size`` does: later rows are gone."""
    for sql in ("DELETE FROM entries WHERE idx >= ?", "DELETE FROM attachments WHERE idx >= ?",
                "DELETE FROM checkpoints WHERE size > ?", "DELETE FROM cosignatures WHERE size > ?",
                "UPDATE log_state SET size = ? WHERE id = 1"):
        tamper(url, sql, (size,))


def rec(i: int, **kw: object) -> dict[str, object]:
    return {"ts": f"2026-11-22T09:{i // 60 % 60:02d}:{i % 60:02d}Z", "system": "bot",
            "subject": f"user-{i % 3}", "gen_ai.request.model": "m", "input": f"q {i}",
            "output": f"a {i}", "id": f"r-{i}", **kw}


@pytest.fixture
def home_ledger(store_url: str, tmp_path: Path) -> Iterator[tuple[str, kansa.Ledger]]:
    """A ledger in a home (so the latest checkpoint is kept there) with 300 records and
    checkpoints at 100 and 300."""
    lg = kansa.Ledger.init(tmp_path / "home", origin=ORIGIN, url=store_url)
    lg.append_many([rec(i) for i in range(100)])
    lg.checkpoint()
    lg.append_many([rec(i) for i in range(100, 300)])
    lg.checkpoint()
    yield store_url, lg
    lg.close()


def reopen(lg: kansa.Ledger) -> kansa.Ledger:
    assert lg.home is not None
    lg.close()
    return kansa.Ledger.open(home=lg.home.path)


def problems(lg: kansa.Ledger, **kw: Any) -> list[str]:
    with pytest.raises(VerificationError) as exc:
        lg.verify(**kw)
    return exc.value.problems


# --- item 4: a signed history never forks ----------------------------------------------


def test_latest_checkpoint_is_kept_in_home(home_ledger: tuple[str, kansa.Ledger]) -> None:
    _, lg = home_ledger
    assert lg.home is not None
    kept = json.loads((lg.home.path / KEPT_CHECKPOINT).read_text())
    assert kept["size"] == 300 and kept["seq"] == len(lg.log.store.all_checkpoints())
    assert kept["note"] == lg.log.latest_checkpoint().note.to_text()
    # never moved back: keeping an older checkpoint leaves the newer one
    older = lg.log.store.checkpoint_at(100)
    assert older is not None
    lg.home.kept_checkpoint().keep(older)
    assert lg.home.kept_checkpoint().load().size == 300  # type: ignore[union-attr]
    assert lg.verify().size == 300


def test_rolled_back_store_refuses_to_sequence_and_fails_verify(
    home_ledger: tuple[str, kansa.Ledger],
) -> None:
    url, lg = home_ledger
    rollback(url, 100)
    lg = reopen(lg)
    try:
        with pytest.raises(RollbackError) as exc:
            lg.append(rec(1000))
        msg = str(exc.value)
        assert "rolled back from size 300 to 100" in msg and KEPT_CHECKPOINT in msg
        assert "Restore the newest backup" in msg
        with pytest.raises(RollbackError):
            lg.checkpoint()  # nor is a second checkpoint signed for a size already signed
        found = problems(lg)
        assert any("rolled back from size 300 to 100" in p for p in found)
        assert lg.log.store.size() == 100  # nothing was appended
    finally:
        lg.close()


def test_sqlite_backup_restore_is_caught(tmp_path: Path) -> None:
    """The real thing: a copy of ledger.db taken at size 100, restored after 300."""
    lg = kansa.Ledger.init(tmp_path / "home", origin=ORIGIN)
    assert lg.home is not None
    db = lg.home.path / "ledger.db"
    lg.append_many([rec(i) for i in range(100)])
    lg.checkpoint()
    backup = sqlite3.connect(tmp_path / "backup.db")
    with sqlite3.connect(db) as src:
        src.backup(backup)
    backup.close()
    lg.append_many([rec(i) for i in range(100, 300)])
    lg.checkpoint()
    lg.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.db", db)
    lg = kansa.Ledger.open(home=tmp_path / "home")
    try:
        with pytest.raises(RollbackError, match="rolled back from size 300 to 100"):
            lg.append(rec(500))
        assert any("rolled back from size 300 to 100" in p for p in problems(lg))
    finally:
        lg.close()


def test_another_history_over_the_kept_checkpoint_is_never_signed(
    sqlite_url: str, tmp_path: Path
) -> None:
    signer = Signer.generate(ORIGIN)
    home = Home(tmp_path)
    keeper = home.kept_checkpoint()
    with Log(open_store(sqlite_url), signer, keeper=keeper) as log:
        log.append_many([Append(b"a%d" % i) for i in range(300)])
        log.checkpoint()
        log.store.close()
    assert keeper.load().size == 300  # type: ignore[union-attr]
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with Log(open_store(other), signer) as log:  # the same key, a different history
        log.append_many([Append(b"b%d" % i) for i in range(400)])
        log.flush()
        tamper(other, "DELETE FROM checkpoints")
        log.store.close()
    store = open_store(other)
    log = Log(store, signer, keeper=keeper)
    try:
        with pytest.raises(InconsistentCheckpointError, match="refusing to sign size 400"):
            log.checkpoint()
        assert store.latest_checkpoint() is None
    finally:
        log.close()
        store.close()


def test_deleted_latest_checkpoint_row_is_caught(home_ledger: tuple[str, kansa.Ledger]) -> None:
    url, lg = home_ledger
    tamper(url, "DELETE FROM checkpoints WHERE size = 300")
    found = problems(lg)
    assert "known checkpoint of size 300: missing from the store (checkpoint row deleted?)" in found


def test_deleted_and_renumbered_checkpoint_rows_are_caught(
    home_ledger: tuple[str, kansa.Ledger],
) -> None:
    url, lg = home_ledger
    n = len(lg.log.store.all_checkpoints())
    tamper(url, "DELETE FROM checkpoints WHERE size = 100")
    tamper(url, "UPDATE checkpoints SET seq = seq - 1 WHERE size > 100")  # hide the gap
    found = problems(lg)
    assert any(f"the log signed {n} checkpoints up to size 300" in p for p in found), found


def test_checkpoint_deleted_under_a_cosignature_is_caught(
    home_ledger: tuple[str, kansa.Ledger],
) -> None:
    url, lg = home_ledger
    witness = Signer.generate("witness.example/w", alg=ALG_COSIGNATURE_V1)
    cp = lg.log.store.checkpoint_at(100)
    assert cp is not None
    body = cp.note.split("\n\n")[0] + "\n"
    lg.log.store.add_cosignature(100, witness.name, cosign(body, witness, 1_700_000_000).line())
    assert lg.verify(witnesses=[witness.verifier]).cosignatures_checked == 1
    tamper(url, "DELETE FROM checkpoints WHERE size = 100")
    tamper(url, "UPDATE checkpoints SET seq = seq - 1 WHERE size > 100")  # hide the gap
    assert lg.home is not None
    (lg.home.path / KEPT_CHECKPOINT).unlink()  # even without the kept checkpoint
    found = problems(lg)
    assert ("checkpoint at size 100: missing from the store, though witness cosignatures "
            "for it are stored (checkpoint row deleted?)") in found


def test_export_checked_against_an_auditors_checkpoint(
    home_ledger: tuple[str, kansa.Ledger], tmp_path: Path
) -> None:
    url, lg = home_ledger
    lg.export(tmp_path / "audit1")
    held = (tmp_path / "audit1" / "checkpoint").read_bytes()
    lg.append_many([rec(i) for i in range(300, 350)])
    lg.export(tmp_path / "audit2")
    key = lg.verifier
    report = verify_directory(tmp_path / "audit2", key, known_checkpoints=[held])
    assert report.size == 350 and report.checkpoints_checked == 2
    # an export of a rolled-back store: older than what the auditor already holds
    newer = (tmp_path / "audit2" / "checkpoint").read_bytes()
    with pytest.raises(VerificationError) as exc:
        verify_directory(tmp_path / "audit1", key, known_checkpoints=[newer])
    assert any("rolled back from size 350 to 300" in p for p in exc.value.problems)


def test_export_of_a_fork_is_caught(tmp_path: Path) -> None:
    signer = Signer.generate(ORIGIN)
    dirs = []
    for n, prefix in enumerate((b"a", b"b")):
        store = open_store(f"sqlite:///{tmp_path}/s{n}.db")
        with Log(store, signer) as log:
            log.append_many([Append(prefix + b"%d" % i) for i in range(200 + 100 * n)])
            log.flush()
            from kansa.ledger.export import export_log

            export_log(log, tmp_path / f"e{n}")
        store.close()
        dirs.append(tmp_path / f"e{n}")
    held = (dirs[0] / "checkpoint").read_bytes()
    with pytest.raises(VerificationError) as exc:
        verify_directory(dirs[1], signer.verifier, known_checkpoints=[held])
    assert any("the log forked" in p for p in exc.value.problems)


def test_cli_verify_with_checkpoint_file(
    home_ledger: tuple[str, kansa.Ledger], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from kansa.cli import app

    url, lg = home_ledger
    assert lg.home is not None
    home = str(lg.home.path)
    held = tmp_path / "held-checkpoint"
    held.write_bytes(lg.log.latest_checkpoint().to_bytes())
    lg.close()
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", "--home", home, "--checkpoint", str(held)])
    assert ok.exit_code == 0, ok.output
    rollback(url, 100)
    bad = runner.invoke(app, ["verify", "--home", home, "--checkpoint", str(held)])
    assert bad.exit_code == 1 and "rolled back from size 300 to 100" in bad.output


# --- item 5: what verify does not cover ------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("UPDATE entries SET ts = ts + 3600000000 WHERE idx = 7", "entry 7: the row's time"),
        ("UPDATE entries SET ext_id = 'r-x' WHERE idx = 7",
         "entry 7: the row's record id 'r-x' differs from the entry's 'r-7'"),
        ("UPDATE entries SET grp = 'someone-else' WHERE idx = 7",
         "entry 7: the row's erasure group 'someone-else' differs"),
        ("DELETE FROM attachments WHERE idx = 7",
         "entry 7: its content is missing from the store (attachment deleted?)"),
        ("UPDATE attachments SET data = (SELECT data FROM attachments WHERE idx = 10)"
         " WHERE idx = 7", "entry 7: stored content of record r-7 fails authentication"),
    ],
)
def test_verify_checks_row_metadata_and_content(
    home_ledger: tuple[str, kansa.Ledger], sql: str, expect: str
) -> None:
    url, lg = home_ledger
    tamper(url, sql)
    found = problems(lg)
    assert any(p.startswith(expect) for p in found), found


def test_swapped_ids_are_caught_at_prove_and_verify(home_ledger: tuple[str, kansa.Ledger]) -> None:
    url, lg = home_ledger
    tamper(url, "UPDATE entries SET ext_id = 'tmp' WHERE idx = 3")
    tamper(url, "UPDATE entries SET ext_id = 'r-3' WHERE idx = 4")
    tamper(url, "UPDATE entries SET ext_id = 'r-4' WHERE idx = 3")
    with pytest.raises(StorageError, match="maps record id 'r-3' to entry 4, but that entry "
                                           "is record 'r-4'"):
        lg.prove("r-3")
    assert sum("the row's record id" in p for p in problems(lg)) == 2


def test_missing_content_is_reported_per_record(home_ledger: tuple[str, kansa.Ledger]) -> None:
    url, lg = home_ledger
    tamper(url, "DELETE FROM attachments WHERE idx = 5")
    lg.erase("user-0")  # records 0, 3, 6, ...
    assert lg.missing_content(range(10)) == {0: "erased", 3: "erased", 5: "missing",
                                             6: "erased", 9: "erased"}
    assert "entry 5: its content is missing" in problems(lg)[0]


def test_listing_reports_missing_content_per_record(
    home_ledger: tuple[str, kansa.Ledger]
) -> None:
    """One deleted attachment used to fail the whole 'log show --content' listing."""
    url, lg = home_ledger
    tamper(url, "DELETE FROM attachments WHERE idx = 5")
    rows = list(lg.find(limit=8, with_content=True))
    assert [r.index for r in rows] == list(range(8))
    assert [r.content_state for r in rows] == ["present"] * 5 + ["missing"] + ["present"] * 2
    assert rows[5].content is None and "no stored content" in (rows[5].content_problem or "")
    assert rows[4].content is not None and rows[4].content_problem is None
    assert lg.home is not None
    from typer.testing import CliRunner

    from kansa.cli import app

    shown = CliRunner().invoke(app, ["log", "show", "--home", str(lg.home.path), "--limit",
                                     "8", "--content", "--json"])
    assert shown.exit_code == 0, shown.output
    states = [json.loads(line)["content_state"] for line in shown.output.splitlines()]
    assert states.count("missing") == 1 and states.count("present") == 7


def test_record_ids_are_unique(store_url: str) -> None:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate(ORIGIN), master_key=b"k" * 32)
    try:
        lg.append(rec(1))
        with pytest.raises(DuplicateIdError, match="record id 'r-1' is already in the log "
                                                    "at entry 0"):
            lg.append(rec(1))
        # in one batch: the duplicate fails alone, the others are appended
        futs = [lg.log.submit(lg._prepare(r)) for r in (rec(2), rec(2), rec(3))]
        assert futs[0].result() == 1 and futs[2].result() == 2
        # in one batch "appears twice"; if the sequencer took them in two, "already in the log"
        with pytest.raises(DuplicateIdError, match="appears twice|is already in the log"):
            futs[1].result()
        assert lg.log.store.size() == 3
    finally:
        lg.close()


def test_unique_index_behind_kansas_back(store_url: str) -> None:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate(ORIGIN), master_key=b"k" * 32)
    try:
        lg.append_many([rec(1), rec(2)])
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
            tamper(store_url, "UPDATE entries SET ext_id = 'r-1' WHERE idx = 1")
    finally:
        lg.close()


def test_migration_keeps_the_first_of_existing_duplicate_ids(store_url: str) -> None:
    """A store of schema 2 holding duplicate ids and unnumbered checkpoints."""
    rows = [(0, "a", b"0"), (1, "b", b"1"), (2, "a", b"2"), (3, "a", b"3")]
    if store_url.startswith("sqlite:"):
        c = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        for stmt in _SQLITE_MIGRATIONS[0] + _SQLITE_MIGRATIONS[1]:
            c.execute(stmt)
        c.execute("PRAGMA user_version = 2")
        c.commit()
        c.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            for stmt in _PG_MIGRATIONS[0] + _PG_MIGRATIONS[1]:
                pg.execute(stmt)
            pg.execute("CREATE TABLE kansa_schema (version INTEGER NOT NULL)")
            pg.execute("INSERT INTO kansa_schema (version) VALUES (2)")
    for idx, ext_id, data in rows:
        tamper(store_url, "INSERT INTO entries (idx, ts, grp, ext_id, data) "
               "VALUES (?, 0, NULL, ?, ?)", (idx, ext_id, data))
    for size in (2, 4):
        tamper(store_url, "INSERT INTO checkpoints (size, created, note) VALUES (?, 0, 'n')",
               (size,))
    store = open_store(store_url)
    try:
        assert [r.ext_id for r in store.entries(0, 4)] == ["a", "b", None, None]
        assert store.index_of("a") == 0
        assert [cp.seq for cp in store.all_checkpoints()] == [1, 2]
        assert store.existing_ext_ids(["a", "c"]) == {"a"}
    finally:
        store.close()


def test_prove_7_is_the_record_with_id_7(sqlite_url: str) -> None:
    lg = kansa.Ledger.open(sqlite_url, signer=Signer.generate(ORIGIN), master_key=b"k" * 32)
    try:
        lg.append_many([rec(i, id=f"x{i}") for i in range(9)] + [rec(9, id="7")])
        receipt = kansa.ledger.receipt.verify_receipt(lg.prove("7"), lg.verifier, None)
        assert receipt.index == 9 and json.loads(receipt.extra or b"")["id"] == "7"
        assert kansa.ledger.receipt.verify_receipt(lg.prove(7), lg.verifier, None).index == 7
        with pytest.raises(KansaError, match=r"no record with id '8'; to name entry 8 by its "
                                             r"index.*--index 8"):
            lg.prove("8")
    finally:
        lg.close()


def test_cli_prove_takes_an_id_or_index(home_ledger: tuple[str, kansa.Ledger]) -> None:
    from typer.testing import CliRunner

    from kansa.cli import app

    _, lg = home_ledger
    assert lg.home is not None
    home = str(lg.home.path)
    lg.close()
    runner = CliRunner()
    by_index = runner.invoke(app, ["prove", "--index", "4", "--home", home])
    assert by_index.exit_code == 0 and "index 4\n" in by_index.output
    by_id = runner.invoke(app, ["prove", "r-4", "--home", home])
    assert by_id.exit_code == 0 and by_id.output == by_index.output
    neither = runner.invoke(app, ["prove", "--home", home])
    assert neither.exit_code == 1 and "--index N" in neither.output
    digits = runner.invoke(app, ["prove", "4", "--home", home])
    assert digits.exit_code == 1 and "kansa prove --index 4" in digits.output


# --- item 6: untrusted files are read with a bound -------------------------------------


@pytest.fixture
def export_dir(sqlite_url: str, tmp_path: Path) -> tuple[Path, Signer]:
    from kansa.ledger.export import export_log

    signer = Signer.generate(ORIGIN)
    store = open_store(sqlite_url)
    with Log(store, signer) as log:
        log.append_many([Append(b"e%d" % i) for i in range(300)])
        log.flush()
        export_log(log, tmp_path / "out")
    store.close()
    return tmp_path / "out", signer


def dir_problems(d: Path, signer: Signer) -> list[str]:
    with pytest.raises(VerificationError) as exc:
        verify_directory(d, signer.verifier)
    return exc.value.problems


def test_tile_linked_to_dev_zero_is_refused(export_dir: tuple[Path, Signer]) -> None:
    d, signer = export_dir
    (d / "tile/0/000").unlink()
    os.symlink("/dev/zero", d / "tile/0/000")
    found = dir_problems(d, signer)
    assert any(p.startswith("tile/0/000: a symlink leading outside") for p in found), found


def test_sparse_and_fifo_tiles_are_refused(export_dir: tuple[Path, Signer]) -> None:
    d, signer = export_dir
    with open(d / "tile/entries/000", "r+b") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB, no disk used
    (d / "tile/0/000").unlink()
    os.mkfifo(d / "tile/0/000")
    found = dir_problems(d, signer)
    assert any(p.startswith("tile/entries/000: 2147483648 bytes, more than the 16777472")
               for p in found), found
    assert "tile/0/000: not a regular file (a FIFO); refused" in found


def test_checkpoint_symlink_inside_the_dir_is_read(export_dir: tuple[Path, Signer]) -> None:
    d, signer = export_dir
    (d / "checkpoint").rename(d / "cp")
    os.symlink("cp", d / "checkpoint")
    assert verify_directory(d, signer.verifier).size == 300


def test_read_bounded_refuses_devices_and_big_files(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="not a regular file"):
        read_bounded("/dev/zero", MAX_RECEIPT_BYTES)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FormatError, match="101 bytes, more than the 100"):
        read_bounded(big, 100)
    assert read_bounded(big, 101) == b"x" * 101


def test_cli_verify_receipt_dev_zero() -> None:
    from typer.testing import CliRunner

    from kansa.cli import app

    key = Signer.generate(ORIGIN).verifier.vkey
    r = CliRunner().invoke(app, ["verify-receipt", "/dev/zero", "--key", key])
    assert r.exit_code == 1 and "/dev/zero: not a regular file" in r.output


def test_malleable_signature_base64_is_refused(export_dir: tuple[Path, Signer]) -> None:
    d, signer = export_dir
    text = (d / "checkpoint").read_text()
    head, sig_line = text.rstrip("\n").rsplit("\n", 1)
    blob = sig_line.rsplit(" ", 1)[1]
    assert blob.endswith("=") and not blob.endswith("==")  # 68 bytes: 2 pad bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(blob[-2])
    twin = blob[:-2] + alphabet[last ^ 1] + "="  # the same bytes, another spelling
    (d / "checkpoint").write_text(text.replace(blob, twin))
    found = dir_problems(d, signer)
    assert any("not canonical base64" in p for p in found), found


def test_only_verified_cosignatures_count(export_dir: tuple[Path, Signer]) -> None:
    d, signer = export_dir
    witness = Signer.generate("witness.example/w", alg=ALG_COSIGNATURE_V1)
    text = (d / "checkpoint").read_text()
    body = text.split("\n\n")[0] + "\n"
    forged = cosign("other body\n", witness, 5).line()  # a cosignature of something else
    (d / "checkpoint").write_text(text + forged)
    report = verify_directory(d, signer.verifier)
    assert report.cosignatures_checked == 0 and report.cosignatures_unverified == 1
    found = []
    with pytest.raises(VerificationError) as exc:
        verify_directory(d, signer.verifier, witnesses=[witness.verifier])
    found = exc.value.problems
    assert found == ["checkpoint: cosignature by witness.example/w is invalid"]
    (d / "checkpoint").write_text(text + cosign(body, witness, 5).line())
    ok = verify_directory(d, signer.verifier, witnesses=[witness.verifier])
    assert ok.cosignatures_checked == 1


def test_fake_erasure_is_caught(home_ledger: tuple[str, kansa.Ledger]) -> None:
    """Deleting content and marking its group erased, without the erasure the log records."""
    url, lg = home_ledger
    row = lg.log.store.entry(4)
    assert row is not None and row.group is not None
    tamper(url, "DELETE FROM attachments WHERE grp = ?", (row.group,))
    tamper(url, "INSERT INTO erased_groups (grp, erased) VALUES (?, 0)", (row.group,))
    assert problems(lg) == [
        f"erasure group {row.group}: marked erased in the store, but the log holds no "
        f"kansa.erasure record for it (an erase stopped before recording itself: run the "
        f"same erase again to append its record; else content deleted behind the log's back)"
    ]
    lg.erase("user-1")  # the real thing is recorded, and verifies
    assert lg.verify().entries_checked == 301


def test_a_damaged_kept_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    kept = Home(tmp_path).kept_checkpoint()
    assert kept.load() is None
    (tmp_path / KEPT_CHECKPOINT).write_text("{not json")
    with pytest.raises(KansaError, match=f"{KEPT_CHECKPOINT}: not a kept checkpoint"):
        kept.load()
    (tmp_path / KEPT_CHECKPOINT).unlink()
    os.mkfifo(tmp_path / KEPT_CHECKPOINT)
    with pytest.raises(KansaError, match="not a regular file"):
        kept.load()
