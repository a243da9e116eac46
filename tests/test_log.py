"""The Log: appends, checkpoints, proofs, tamper refusal and store failures.

Every test that takes ``store_url`` runs twice: on SQLite and on a fresh PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kansa.errors import (
    EntryTooLargeError,
    InconsistentCheckpointError,
    KansaError,
    ProofError,
    StorageError,
)
from kansa.ledger import merkle
from kansa.ledger.log import Append, Log
from kansa.ledger.note import Checkpoint, Signer, Verifier, verify_checkpoint
from kansa.ledger.storage import Store, open_store
from kansa.ledger.tiles import MAX_ENTRY_SIZE, encode_bundle

ORIGIN = "example.com/kansa-test"
PG_BASE = os.environ.get("KANSA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
T = TypeVar("T")


def make_signer(name: str = ORIGIN, seed: bytes = b"log-key") -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))


@pytest.fixture
def signer() -> Signer:
    return make_signer()


@contextlib.contextmanager
def opened(url: str, signer: Signer | None, **kw: float) -> Iterator[Log]:
    store = open_store(url)
    log = Log(store, signer, **kw)
    try:
        yield log
    finally:
        log.close()
        store.close()


def payload(i: int, tag: str = "e") -> bytes:
    return f"{tag}-{i:06d}-".encode() + hashlib.sha256(f"{tag}{i}".encode()).digest()


def prefix_roots(leaf_hashes: list[bytes], sizes: set[int]) -> dict[int, bytes]:
    """MTH of each requested prefix, in one pass (compact range, RFC 9162 split order)."""
    out = {0: merkle.EMPTY_ROOT} if 0 in sizes else {}
    stack: list[tuple[int, bytes]] = []
    for n, leaf in enumerate(leaf_hashes, 1):
        height, node = 0, leaf
        while stack and stack[-1][0] == height:
            node = merkle.node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        if n in sizes:
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = merkle.node_hash(left, root)
            out[n] = root
    return out


def audit(store: Store, verifier: Verifier, log: Log | None = None) -> list[Checkpoint]:
    """Everything a verifier would check: entries are gapless, every signed checkpoint
    verifies, its root is the MTH of the stored entries, the tiles reproduce it, and every
    checkpoint is consistent with every later one."""
    size = store.size()
    rows = list(store.iter_entries(0, size))
    assert [r.index for r in rows] == list(range(size))
    leaves = [merkle.leaf_hash(r.data) for r in rows]
    cps = [verify_checkpoint(c.note, verifier).checkpoint for c in store.all_checkpoints()]
    assert [c.size for c in cps] == sorted({c.size for c in cps})
    assert all(c.size <= size for c in cps)
    roots = prefix_roots(leaves, {c.size for c in cps} | {size})
    reader = log.hash_reader() if log is not None else None
    for i, a in enumerate(cps):
        assert a.root == roots[a.size], f"checkpoint {a.size} does not match the entries"
        if reader is not None:
            assert merkle.tree_root(reader, a.size) == a.root
            for b in cps[i + 1 :]:
                proof = merkle.consistency_proof(reader, a.size, b.size)
                merkle.verify_consistency(a.size, b.size, a.root, b.root, proof)
    if reader is not None and size:
        assert merkle.tree_root(reader, size) == roots[size]
    return cps


def wait_for(pred: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def raw_execute(url: str, sql: str, params: tuple[object, ...]) -> int:
    """Change the store behind kansa's back (an attacker or a broken disk)."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("///")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as c:
            return c.execute(sql, params).rowcount
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(sql.replace("?", "%s"), params).rowcount


def flip_tile_byte(url: str, level: int, index: int, at: int = 5) -> None:
    store = open_store(url)
    try:
        data = store.read_tile(level, index)
    finally:
        store.close()
    assert data is not None, (level, index)
    bad = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]
    n = raw_execute(url, "UPDATE tiles SET data = ? WHERE level = ? AND idx = ?",
                    (bad, level, index))
    assert n == 1


# --- basics --------------------------------------------------------------------------------


def test_empty_log(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer) as log:
        assert log.size() == 0
        assert log.store.latest_checkpoint() is None
        with pytest.raises(KansaError):
            log.latest_checkpoint()
        assert log.root(0) == merkle.EMPTY_ROOT
        assert log.store.entries(0, 10) == []
        with pytest.raises(ProofError):
            log.inclusion_proof(0, 0)
        assert log.consistency_proof(0, 0) == []
        cp = log.checkpoint()  # the empty tree may be signed too
        assert cp.checkpoint == Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT)
        assert verify_checkpoint(cp.to_bytes(), signer.verifier).checkpoint.size == 0
        assert log.store.get_meta("origin") == ORIGIN
        assert log.origin == ORIGIN


def test_append_returns_consecutive_indices(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer) as log:
        got = [log.append(payload(i)) for i in range(40)]
        assert got == list(range(40))
        got = log.append_many([Append(payload(i)) for i in range(40, 340)])
        assert got == list(range(40, 340))
        futs = [log.submit(Append(payload(i))) for i in range(340, 400)]
        assert [f.result(timeout=30) for f in futs] == list(range(340, 400))
        assert log.size() == 400
        rows = log.store.entries(0, 400)
        assert [r.data for r in rows] == [payload(i) for i in range(400)]
        cp = log.checkpoint().checkpoint
        assert cp.size == 400
        assert cp.root == merkle.root_from_leaf_hashes([merkle.leaf_hash(payload(i))
                                                         for i in range(400)])
        # inclusion proofs from the stored tiles verify against the signed root
        for i in (0, 1, 255, 256, 257, 399):
            proof = log.inclusion_proof(i, 400)
            merkle.verify_inclusion(i, 400, merkle.leaf_hash(payload(i)), proof, cp.root)
        audit(log.store, signer.verifier, log)


def test_append_metadata_stored(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer) as log:
        before = time.time_ns() // 1000
        i0 = log.append(b"plain")
        i1 = log.append(b"grouped", ts=1_700_000_000_000_000, group="g1", attachment=b"att")
        after = time.time_ns() // 1000
        r0, r1 = log.store.entry(i0), log.store.entry(i1)
        assert r0 is not None and r1 is not None
        assert before <= r0.ts <= after and r0.group is None and r0.data == b"plain"
        assert (r1.ts, r1.group, r1.data) == (1_700_000_000_000_000, "g1", b"grouped")
        assert log.store.attachment(i1) == ("g1", b"att")
        assert log.store.attachment(i0) is None


def test_entry_size_limit(store_url: str, signer: Signer) -> None:
    biggest = bytes(range(256)) * 255 + b"\xfe" * 255
    assert len(biggest) == MAX_ENTRY_SIZE == 65535
    with opened(store_url, signer) as log:
        assert log.append(b"first") == 0
        assert log.append(biggest) == 1
        with pytest.raises(EntryTooLargeError):
            log.append(biggest + b"x")
        with pytest.raises(EntryTooLargeError):
            log.submit(Append(b"\x00" * 100_000))
        assert log.append(b"after") == 2
        assert log.size() == 3
        rows = log.store.entries(0, 3)
        assert [r.data for r in rows] == [b"first", biggest, b"after"]
        assert len(encode_bundle([r.data for r in rows])) == 2 * 3 + 5 + 65535 + 5
        log.flush()
        audit(log.store, signer.verifier, log)


def test_checkpoint_signed_automatically(store_url: str, signer: Signer) -> None:
    """Within ~checkpoint_interval of an append, a checkpoint covering it is signed, without
    anyone calling checkpoint(). (A behaviour check: the timeout is generous.)"""
    with opened(store_url, signer, checkpoint_interval=0.25) as log:
        log.append(b"one")
        stored = wait_for(lambda: log.store.latest_checkpoint(), timeout=5,
                          what="first checkpoint")
        assert stored.size == 1
        cp = verify_checkpoint(stored.note, signer.verifier).checkpoint
        assert cp.root == merkle.leaf_hash(b"one")
        # and again after more appends, now that one checkpoint exists
        for i in range(5):
            log.append(payload(i))
        stored = wait_for(
            lambda: (c := log.store.latest_checkpoint()) is not None and c.size == 6 and c,
            timeout=5,
            what="checkpoint at size 6",
        )
        assert verify_checkpoint(stored.note, signer.verifier).checkpoint.size == 6
        audit(log.store, signer.verifier, log)


def test_consistency_between_successive_checkpoints(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer, checkpoint_interval=3600) as log:
        n = 0
        sizes = []
        for batch in (1, 1, 2, 60, 192, 1, 255, 257, 3):
            log.append_many([Append(payload(n + i)) for i in range(batch)])
            n += batch
            cp = log.checkpoint().checkpoint
            assert cp.size == n
            sizes.append(n)
        # nothing new: no new checkpoint
        assert log.checkpoint().checkpoint.size == n
        cps = audit(log.store, signer.verifier, log)
        assert [c.size for c in cps] == sizes
        for a, b in zip(cps, cps[1:], strict=False):
            proof = log.consistency_proof(a.size, b.size)
            merkle.verify_consistency(a.size, b.size, a.root, b.root, proof)
            with pytest.raises(ProofError):
                merkle.verify_consistency(a.size, b.size, b.root, a.root, proof)


def test_reopen_continues_the_same_tree(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer) as log:
        log.append_many([Append(payload(i)) for i in range(300)])
        log.flush()
    with opened(store_url, signer) as log:
        assert log.size() == 300
        assert log.append(payload(300)) == 300
        log.append_many([Append(payload(i)) for i in range(301, 520)])
        log.flush()
        assert log.latest_checkpoint().checkpoint.size == 520
        audit(log.store, signer.verifier, log)
    # a reader without the key can still read and parse checkpoints, not append
    with opened(store_url, None) as reader:
        assert reader.latest_checkpoint().checkpoint.size == 520
        with pytest.raises(KansaError):
            reader.append(b"x")
    # the store belongs to its origin
    with pytest.raises(KansaError), opened(store_url, make_signer("example.com/other")):
        pass


# --- tampering ---------------------------------------------------------------------------


def test_refuses_to_sign_after_partial_tile_tampered(store_url: str, signer: Signer) -> None:
    """Someone edits the rightmost level-0 tile while the log is down. The restarted log
    builds on the stored tiles, so the new tree is not an extension of the signed one:
    it must refuse to sign it."""
    with opened(store_url, signer) as log:
        log.append_many([Append(payload(i)) for i in range(300)])
        log.flush()
        before = log.store.all_checkpoints()
        assert before[-1].size == 300
    flip_tile_byte(store_url, 0, 1)  # 44 hashes: leaves 256..299
    with opened(store_url, signer) as log:
        log.append(payload(300))
        with pytest.raises(InconsistentCheckpointError):
            log.checkpoint()
        time.sleep(2 * log.checkpoint_interval)  # the sequencer's own attempt also fails
        assert log.store.all_checkpoints() == before


def test_refuses_to_sign_after_upper_tile_tampered(store_url: str, signer: Signer) -> None:
    """A running log whose level-1 tile (the 256-leaf subtree hashes) is altered."""
    with opened(store_url, signer) as log:
        log.append_many([Append(payload(i)) for i in range(600)])
        log.flush()
        before = log.store.all_checkpoints()
        flip_tile_byte(store_url, 1, 0, at=40)  # second hash: the root of leaves 256..511
        log.append(payload(600))
        with pytest.raises(InconsistentCheckpointError):
            log.checkpoint()
        time.sleep(2 * log.checkpoint_interval)
        assert log.store.all_checkpoints() == before
        with pytest.raises(InconsistentCheckpointError):
            log.flush()
        assert log.store.all_checkpoints() == before


def test_tampered_full_tile_breaks_proofs(store_url: str, signer: Signer) -> None:
    """A full level-0 tile below the right edge is not read to sign; altering it must at
    least make the inclusion proofs it serves fail against the signed root."""
    with opened(store_url, signer) as log:
        log.append_many([Append(payload(i)) for i in range(300)])
        cp = log.checkpoint().checkpoint
        flip_tile_byte(store_url, 0, 0, at=32 * 7 + 3)  # leaf 7's hash
        for i in (6, 100, 255):  # leaf 7's hash is in each of these proofs
            proof = log.inclusion_proof(i, cp.size)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(i, cp.size, merkle.leaf_hash(payload(i)), proof, cp.root)


# --- concurrency -------------------------------------------------------------------------


def test_async_append(store_url: str, signer: Signer) -> None:
    with opened(store_url, signer) as log:

        async def main() -> list[int]:
            return await asyncio.gather(*(log.append_async(Append(payload(i))) for i in range(200)))

        got = asyncio.run(main())
        assert sorted(got) == list(range(200))
        rows = {r.index: r.data for r in log.store.entries(0, 200)}
        for i, idx in enumerate(got):
            assert rows[idx] == payload(i)
        log.flush()
        audit(log.store, signer.verifier, log)


def test_many_threads_append(store_url: str, signer: Signer) -> None:
    threads_n, per_thread = 8, 120
    with opened(store_url, signer, checkpoint_interval=0.05) as log:
        results: dict[int, list[tuple[int, bytes]]] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(threads_n)

        def worker(t: int) -> None:
            try:
                start.wait()
                out = []
                for i in range(per_thread):
                    e = payload(i, f"t{t}")
                    out.append((log.append(e), e))
                results[t] = out
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
        assert not errors, errors
        acked = [x for out in results.values() for x in out]
        indices = sorted(i for i, _ in acked)
        assert indices == list(range(threads_n * per_thread))  # no gaps, no duplicates
        for _, out in results.items():  # each thread's appends are ordered
            assert [i for i, _ in out] == sorted(i for i, _ in out)
        stored = {r.index: r.data for r in log.store.iter_entries()}
        assert all(stored[i] == e for i, e in acked)
        log.flush()
        cps = audit(log.store, signer.verifier, log)
        assert cps[-1].size == threads_n * per_thread


def test_two_logs_one_store(store_url: str, signer: Signer) -> None:
    """Two Log objects on one store (as two processes would be) share one gapless tree."""
    with opened(store_url, signer, checkpoint_interval=0.05) as a, \
            opened(store_url, signer, checkpoint_interval=0.05) as b:
        futs: list[tuple[Future[int], bytes]] = []
        for i in range(300):
            log, tag = (a, "a") if i % 2 else (b, "b")
            e = payload(i, tag)
            futs.append((log.submit(Append(e)), e))
        acked = [(f.result(timeout=60), e) for f, e in futs]
        assert sorted(i for i, _ in acked) == list(range(300))
        a.flush()
        b.flush()
        stored = {r.index: r.data for r in a.store.iter_entries()}
        assert all(stored[i] == e for i, e in acked)
        audit(a.store, signer.verifier, a)


# --- store failure (PostgreSQL) -----------------------------------------------------------


def _terminate(app: str) -> int:
    """pg_terminate_backend every connection of this test's store; wait until they are gone."""
    with psycopg.connect(PG_BASE, autocommit=True) as c:
        pids = [
            r[0]
            for r in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchall()
        ]
        for pid in pids:
            c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(
            lambda: not c.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchall(),
            what="terminated backends to go away",
        )
    return len(pids)


def _retry(fn: Callable[[], T]) -> T:
    """A thread whose connection was killed learns it once (StorageError), then reconnects."""
    for _ in range(3):
        try:
            return fn()
        except StorageError:
            continue
    return fn()


def test_pg_backend_killed_between_appends(pg_url: str, signer: Signer) -> None:
    app = "kansa_t_" + uuid.uuid4().hex[:10]
    url = f"{pg_url}&application_name={app}"
    with opened(url, signer, checkpoint_interval=0.05) as log:
        for i in range(10):
            assert log.append(payload(i)) == i
        wait_for(lambda: (c := log.store.latest_checkpoint()) is not None and c.size == 10,
                 what="checkpoint at 10")
        time.sleep(0.2)  # the sequencer is idle now, its connection open
        assert _terminate(app) >= 1
        # the sequencer's connection is dead: this commit fails, and says so
        fut = log.submit(Append(b"not acknowledged"))
        with pytest.raises(StorageError):
            fut.result(timeout=30)
        # the log reconnects and carries on, with no hole where the failed append was
        assert log.append(payload(10)) == 10
        assert log.append(payload(11)) == 11
        _retry(log.flush)
        cps = audit(log.store, signer.verifier, log)
        assert cps[-1].size == 12
        assert [r.data for r in log.store.entries(0, 12)] == [payload(i) for i in range(12)]


def test_pg_backend_killed_during_appends(pg_url: str, signer: Signer) -> None:
    """Kill the store's connections repeatedly while eight threads append. Every append
    either is acknowledged or fails with StorageError; nothing acknowledged is lost; the
    tree stays gapless and every checkpoint consistent; the log keeps working."""
    app = "kansa_t_" + uuid.uuid4().hex[:10]
    url = f"{pg_url}&application_name={app}"
    outcomes: list[tuple[bytes, int | BaseException]] = []
    lock = threading.Lock()
    stop = threading.Event()

    with opened(url, signer, checkpoint_interval=0.02) as log:

        def appender(t: int) -> None:
            i = 0
            while not stop.is_set():
                e = payload(i, f"k{t}")
                i += 1
                try:
                    res: int | BaseException = log.submit(Append(e)).result(timeout=60)
                except BaseException as exc:
                    res = exc
                with lock:
                    outcomes.append((e, res))

        ts = [threading.Thread(target=appender, args=(t,)) for t in range(8)]
        for t in ts:
            t.start()
        try:
            kills = attempts = 0
            # under load a kill may find no connection open: keep trying, bounded
            while (kills < 3 or attempts < 6) and attempts < 60:
                time.sleep(0.15)
                kills += _terminate(app)
                attempts += 1
            time.sleep(0.15)
        finally:
            stop.set()
            for t in ts:
                t.join(timeout=60)
        assert kills >= 3

        failures = [r for _, r in outcomes if isinstance(r, BaseException)]
        acked = [(e, r) for e, r in outcomes if isinstance(r, int)]
        assert all(isinstance(r, StorageError) for r in failures), failures[:3]
        assert failures, "no append failed: the connections were not killed mid-stream"
        assert len(acked) > 50

        # the log still works
        extra = _retry(lambda: log.append(b"after the storm"))
        _retry(log.flush)

    with opened(pg_url, signer) as log:  # a fresh process's view of the store
        size = log.size()
        stored = {r.index: r.data for r in log.store.iter_entries()}
        assert sorted(stored) == list(range(size))
        for e, i in acked:
            assert stored[i] == e, f"acknowledged entry {i} lost or changed"
        assert stored[extra] == b"after the storm"
        assert len(set(stored.values())) == size  # nothing written twice
        cps = audit(log.store, signer.verifier, log)
        assert cps[-1].size == size
        assert log.append(b"and again") == size


def _schema_of(pg_url: str) -> str:
    return pg_url.split("search_path%3D", 1)[1].split("&", 1)[0]


def test_pg_failed_automatic_signing_is_retried(pg_url: str, signer: Signer) -> None:
    """The store fails while the sequencer is signing (its connection is killed while it
    waits to insert the checkpoint). No append failed, so the acknowledged entry must still
    get a checkpoint on its own: the sequencer has to try again."""
    app = "kansa_t_" + uuid.uuid4().hex[:10]
    url = f"{pg_url}&application_name={app}"
    schema = _schema_of(pg_url)
    with opened(url, signer, checkpoint_interval=0.05) as log:
        for i in range(3):
            log.append(payload(i))
        wait_for(lambda: (c := log.store.latest_checkpoint()) is not None and c.size == 3,
                 what="checkpoint at 3")
        with psycopg.connect(PG_BASE, autocommit=True) as admin, admin.transaction():
            # readers pass, writers of the checkpoints table wait
            admin.execute(f"LOCK TABLE {schema}.checkpoints IN EXCLUSIVE MODE")
            assert log.append(payload(3)) == 3  # acknowledged: durable
            blocked = wait_for(
                lambda: admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event_type = 'Lock'", (app,)
                ).fetchall(),
                what="the sequencer to block on inserting its checkpoint",
            )
            for (pid,) in blocked:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # lock released; the store works again
        stored = wait_for(
            lambda: (c := _retry(log.store.latest_checkpoint)) is not None and c.size == 4 and c,
            timeout=5,
            what="a checkpoint covering the acknowledged entry 3 (no further appends)",
        )
        assert verify_checkpoint(stored.note, signer.verifier).checkpoint.size == 4


def _refuse_checkpoints(url: str) -> None:
    """Make the store reject every checkpoint insert (as a full disk or a revoked grant
    would), through the database itself."""
    if url.startswith("sqlite:"):
        raw_execute(url, "CREATE TRIGGER refuse_cp BEFORE INSERT ON checkpoints "
                    "BEGIN SELECT RAISE(ABORT, 'store refuses checkpoints'); END", ())
    else:
        raw_execute(url, "CREATE FUNCTION refuse_cp() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'store refuses checkpoints'; END $$", ())
        raw_execute(url, "CREATE TRIGGER refuse_cp BEFORE INSERT ON checkpoints "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_cp()", ())


def _allow_checkpoints(url: str) -> None:
    if url.startswith("sqlite:"):
        raw_execute(url, "DROP TRIGGER refuse_cp", ())
    else:
        raw_execute(url, "DROP TRIGGER refuse_cp ON checkpoints", ())


def test_store_refusing_checkpoints_does_not_stop_appends(store_url: str, signer: Signer) -> None:
    """Signing fails inside the store with an error that is not a connection failure. The
    sequencer must survive it: appends keep being acknowledged, checkpoint() reports a
    KansaError, and signing resumes once the store accepts checkpoints again."""
    with opened(store_url, signer, checkpoint_interval=0.05) as log:
        log.append(b"a")
        log.flush()
        _refuse_checkpoints(store_url)
        assert log.submit(Append(b"b")).result(timeout=5) == 1
        time.sleep(0.3)  # the sequencer's automatic signing attempt fails meanwhile
        assert log.submit(Append(b"c")).result(timeout=5) == 2
        with pytest.raises(KansaError):
            log.checkpoint()
        assert log.store.latest_checkpoint().size == 1  # type: ignore[union-attr]
        _allow_checkpoints(store_url)
        assert log.checkpoint().checkpoint.size == 3
        assert log.submit(Append(b"d")).result(timeout=5) == 3
        log.flush()
        audit(log.store, signer.verifier, log)


def test_async_waiters_whose_loop_closed_do_not_stop_the_sequencer(
    store_url: str, signer: Signer
) -> None:
    """An asyncio caller that went away (its loop closed) must not kill the sequencer:
    resolving its future is skipped, the entry is still durable, later appends work."""
    import asyncio

    with opened(store_url, signer) as log:

        async def fire_and_leave() -> None:
            task = asyncio.ensure_future(log.append_async(Append(b"left behind")))
            await asyncio.sleep(0)
            task.cancel()

        asyncio.run(fire_and_leave())
        assert log.append(b"after") in (0, 1)
        log.flush()
        assert log.size() == 2
        assert {r.data for r in log.store.entries(0, 2)} == {b"left behind", b"after"}
