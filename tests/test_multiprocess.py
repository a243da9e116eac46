"""Several processes on one store, and processes killed with SIGKILL mid-append.

Each child is a fresh Python interpreter (subprocess) running the small worker script
below: it opens the store, builds a Log with the shared signing key, appends entries that
are a pure function of (child pid, sequence number), and prints "<index> <seq>" for every
append the moment it is acknowledged (flushed), so the parent knows exactly what was acked.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kansa.ledger import merkle
from kansa.ledger.log import Log
from kansa.ledger.note import Checkpoint, Signer, verify_checkpoint
from kansa.ledger.storage import Store, open_store

ORIGIN = "example.com/kansa-multiprocess"
SEED = hashlib.sha256(b"multiprocess-log-key").digest()
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))


def entry(pid: int, seq: int) -> bytes:
    """The entry a worker with this pid appends as its seq-th append (some are large)."""
    body = hashlib.sha256(f"{pid}/{seq}".encode()).digest()
    size = 3000 if seq % 37 == 0 else 40
    return f"p{pid}:{seq}:".encode() + (body * (size // 32 + 1))[:size]


WORKER = (
    '''
import hashlib
import os
import sys
import time
from collections import deque

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kansa.ledger.log import Append, Log
from kansa.ledger.note import Signer
from kansa.ledger.storage import open_store

'''
    + inspect.getsource(entry)
    + '''

def main():
    url, origin, seed_hex, count, go = sys.argv[1:6]
    count = int(count)  # < 0: until killed
    signer = Signer(origin, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)))
    store = open_store(url)
    log = Log(store, signer, checkpoint_interval=0.05)
    pid = os.getpid()
    print("ready", flush=True)
    while go != "-" and not os.path.exists(go):
        time.sleep(0.005)
    window = deque()
    seq = 0
    while len(window) < 16 and (count < 0 or seq < count):
        window.append((seq, log.submit(Append(entry(pid, seq)))))
        seq += 1
    while window:
        s, fut = window.popleft()
        index = fut.result()
        sys.stdout.write(f"{index} {s}\\n")
        sys.stdout.flush()
        if count < 0 or seq < count:
            window.append((seq, log.submit(Append(entry(pid, seq)))))
            seq += 1
    log.close()
    store.close()
    print("done", flush=True)


main()
'''
)


class Worker:
    """A child process running WORKER, with its stdout collected line by line."""

    def __init__(self, script: Path, url: str, count: int, go: str) -> None:
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, ORIGIN, SEED.hex(), str(count), go],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.first_ack = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line == "ready\n":
                self.ready.set()
            elif line[:1].isdigit():
                self.first_ack.set()
        self.ready.set()
        self.first_ack.set()

    def finish(self, timeout: float = 90) -> str:
        """Wait for the child (killing it after ``timeout``); return its stderr."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        self._err.seek(0)
        err = self._err.read()
        self._err.close()
        return err

    def acked(self) -> dict[int, bytes]:
        """index -> exact entry bytes, for every complete ack line the child printed."""
        out = {}
        for line in self.lines:
            if line.endswith("\n") and line[:1].isdigit():
                index, seq = map(int, line.split())
                out[index] = entry(self.pid, seq)
        return out


@pytest.fixture
def worker_script(tmp_path: Path) -> Path:
    p = tmp_path / "kansa_worker.py"
    p.write_text(WORKER)
    return p


@contextlib.contextmanager
def opened(url: str) -> Iterator[Log]:
    store = open_store(url)
    log = Log(store, SIGNER)
    try:
        yield log
    finally:
        log.close()
        store.close()


def audit(store: Store, log: Log) -> tuple[list[bytes], list[Checkpoint]]:
    """Gapless entries; every checkpoint verifies, matches the entries, is reproduced by
    the tiles, and is consistent with every later checkpoint."""
    size = store.size()
    rows = list(store.iter_entries(0, size))
    assert [r.index for r in rows] == list(range(size)), "gap or duplicate in the entries"
    data = [r.data for r in rows]
    leaves = [merkle.leaf_hash(d) for d in data]
    cps = [verify_checkpoint(c.note, SIGNER.verifier).checkpoint for c in store.all_checkpoints()]
    assert cps, "no checkpoint was signed"
    assert [c.size for c in cps] == sorted({c.size for c in cps})
    wanted = {c.size for c in cps}
    roots: dict[int, bytes] = {}
    stack: list[tuple[int, bytes]] = []
    for n, leaf in enumerate(leaves, 1):
        height, node = 0, leaf
        while stack and stack[-1][0] == height:
            node = merkle.node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        if n in wanted:
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = merkle.node_hash(left, root)
            roots[n] = root
    roots[0] = merkle.EMPTY_ROOT
    reader = log.hash_reader()
    for i, a in enumerate(cps):
        assert a.size <= size
        assert a.root == roots[a.size], f"signed checkpoint {a.size} disagrees with the entries"
        assert merkle.tree_root(reader, a.size) == a.root
        for b in cps[i + 1 :]:
            proof = merkle.consistency_proof(reader, a.size, b.size)
            merkle.verify_consistency(a.size, b.size, a.root, b.root, proof)
    return data, cps


@pytest.mark.slow
def test_processes_append_concurrently(store_url: str, worker_script: Path, tmp_path: Path) -> None:
    with opened(store_url):  # create the schema once, before the race
        pass
    go = tmp_path / "go"
    counts = [150, 150, 150, 150]
    workers = [Worker(worker_script, store_url, n, str(go)) for n in counts]
    for w in workers:
        assert w.ready.wait(60), "worker did not start"
    go.touch()
    for w, n in zip(workers, counts, strict=True):
        err = w.finish()
        assert w.proc.returncode == 0, err
        assert len(w.acked()) == n, err
    acked: dict[int, bytes] = {}
    for w in workers:
        mine = w.acked()
        assert not set(mine) & set(acked), "two processes were given the same index"
        acked.update(mine)
    total = sum(counts)
    assert sorted(acked) == list(range(total))
    with opened(store_url) as log:
        assert log.size() == total
        data, cps = audit(log.store, log)
        assert all(data[i] == e for i, e in acked.items())
        assert cps[-1].size == total  # each worker signs on close: the last one covers all
        # the appends really were interleaved between processes
        owners = [d.split(b":", 1)[0] for d in data]
        switches = sum(1 for a, b in zip(owners, owners[1:], strict=False) if a != b)
        assert switches >= len(counts) - 1


@pytest.mark.slow
def test_kill_9_during_appends(store_url: str, worker_script: Path) -> None:
    rng = random.Random(4242)
    acked: dict[int, bytes] = {}
    rounds = 3
    for r in range(rounds):
        w = Worker(worker_script, store_url, -1, "-")
        assert w.first_ack.wait(60), "worker never acknowledged an append: " + w.finish(5)
        time.sleep(rng.uniform(0.6, 1.4))
        assert w.proc.poll() is None, "worker exited early: " + w.finish(5)
        os.kill(w.pid, signal.SIGKILL)
        w.finish()
        assert w.proc.returncode == -signal.SIGKILL
        mine = w.acked()
        assert len(mine) > 10, "too few acks before the kill to mean anything"
        assert not set(mine) & set(acked)
        acked.update(mine)

        # restart: a new Log on the same store
        with opened(store_url) as log:
            size_before = log.size()
            stored = {row.index: row.data for row in log.store.iter_entries()}
            for i, e in acked.items():
                assert stored.get(i) == e, f"round {r}: acknowledged entry {i} lost or changed"
            # the log appends again, right after the last stored entry
            mark = f"parent after kill {r}".encode()
            i = log.append(mark)
            assert i == size_before
            acked[i] = mark
            cp = log.checkpoint().checkpoint
            data, cps = audit(log.store, log)
            assert cp.size == len(data) == size_before + 1
            assert cp.root == merkle.root_from_leaf_hashes([merkle.leaf_hash(d) for d in data])
            assert cps[-1] == cp
            assert len(cps) >= 2
