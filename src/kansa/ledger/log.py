"""The transparency log: a sequencer with group commit, signed checkpoints, and proofs.

Appenders hand entries to one sequencer thread per process. It takes whatever has queued
up while the previous commit was in flight (group commit), writes entries, attachments and
changed tiles in one transaction under the log's exclusive lock, and only then
acknowledges each append: an acknowledged entry is durable. Within ``checkpoint_interval``
of a commit it signs a C2SP checkpoint, after proving the new tree consistent with the
last checkpoint it signed; it refuses to sign otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from typing import Protocol

from kansa.errors import (
    DuplicateIdError,
    EntryTooLargeError,
    InconsistentCheckpointError,
    KansaError,
    ProofError,
    RollbackError,
    StorageError,
)
from kansa.ledger import merkle
from kansa.ledger.edge import TreeEdge
from kansa.ledger.note import (
    Checkpoint,
    SignedCheckpoint,
    Signer,
    Verifier,
    sign_checkpoint,
    verify_checkpoint,
)
from kansa.ledger.storage import Store, StoredCheckpoint, WriteTxn, now_us
from kansa.ledger.tiles import MAX_ENTRY_SIZE, TileHashReader, TileLevelsCache

_STOP = object()
_logger = logging.getLogger("kansa.ledger")
Row = tuple[int, str | None, str | None, bytes]  # (ts, group, ext_id, entry)


class CheckpointKeeper(Protocol):
    """Somewhere outside the store that keeps the latest checkpoint the log signed
    ($KANSA_HOME's latest-checkpoint.json): what a store restored from an old backup, or
    with rows deleted, cannot take back."""

    @property
    def where(self) -> str:
        """Names the place in messages, e.g. a file path."""
        ...

    def load(self) -> StoredCheckpoint | None: ...

    def keep(self, cp: StoredCheckpoint) -> None:
        """Record ``cp`` unless something as large is kept already (never goes back)."""
        ...


def rollback_message(kept_size: int, size: int, where: str) -> str:
    return (
        f"the store was rolled back from size {kept_size} to {size}: {where} holds the "
        f"checkpoint this log signed at size {kept_size}, but the store holds only {size} "
        f"entries (restored from an older backup, or rows deleted). Appending now would "
        f"sign a second, different history for sizes the log already signed, so kansa "
        f"refuses. Restore the newest backup (one with at least {kept_size} entries) and "
        f"run 'kansa verify'; if those entries are lost for good, keep this store and "
        f"{where} as evidence and start a new log ('kansa init' with a new --origin)"
    )


@dataclass(frozen=True)
class Append:
    """One entry to append, with its optional erasure group and attachment."""

    entry: bytes
    ts: int | None = None  # microseconds since the epoch; defaults to now
    group: str | None = None
    ext_id: str | None = None  # a caller's unique id for the entry, for lookups
    attachment: bytes | None = None


class _Waiter:
    """A producer thread's reusable wake-up: one lock release instead of a Future."""

    __slots__ = ("lock", "result", "error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.result = -1
        self.error: BaseException | None = None


class _Pending:
    __slots__ = ("item", "future", "waiter", "loop", "afut")

    def __init__(self, item: Append, future: Future[int] | None, waiter: _Waiter | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 afut: asyncio.Future[int] | None = None) -> None:
        self.item = item
        self.future = future
        self.waiter = waiter
        self.loop = loop
        self.afut = afut

    def fail(self, err: BaseException) -> None:
        if self.future is not None:
            with contextlib.suppress(InvalidStateError):
                self.future.set_exception(err)
        elif self.waiter is not None:
            self.waiter.error = err
            self.waiter.lock.release()
        elif self.loop is not None and self.afut is not None:
            with contextlib.suppress(RuntimeError):  # the waiter's event loop has closed
                self.loop.call_soon_threadsafe(_afail, self.afut, err)


def _afail(f: asyncio.Future[int], err: BaseException) -> None:
    if not f.done():
        f.set_exception(err)


def _aresolve(items: list[tuple[asyncio.Future[int], int]]) -> None:
    for f, i in items:
        if not f.done():
            f.set_result(i)


class Log:
    """A tlog backed by a :class:`Store`. Thread-safe; one per process per store is enough."""

    def __init__(
        self,
        store: Store,
        signer: Signer | None,
        *,
        checkpoint_interval: float = 0.25,
        max_batch: int = 8192,
        keeper: CheckpointKeeper | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.keeper = keeper
        self.checkpoint_interval = checkpoint_interval
        self.max_batch = max_batch
        origin = store.get_meta("origin")
        if origin is None and signer is not None:
            origin = store.claim_meta("origin", signer.name)
        if signer is not None and origin != signer.name:
            raise KansaError(f"this store belongs to log {origin!r}, not {signer.name!r}")
        self.origin = origin
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._edge: TreeEdge | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._last_cp_time = 0.0
        self._dirty = False
        self._cp_lock = threading.Lock()
        self._last_batch = 0
        self._tile_levels = TileLevelsCache()
        self._local = threading.local()

    # -- appending ----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._closed:
                    raise KansaError("the log is closed")
                if self._thread is None:
                    self.check_not_rolled_back()
                    self._thread = threading.Thread(
                        target=self._run, name="kansa-sequencer", daemon=True
                    )
                    self._thread.start()

    def submit(self, item: Append) -> Future[int]:
        """Queue an append; the future resolves to its index once the entry is durable."""
        self._check(item)
        fut: Future[int] = Future()
        self._queue.put(_Pending(item, fut))
        return fut

    def check_not_rolled_back(self) -> None:
        """Raise :class:`RollbackError` if the store holds fewer entries than the latest
        checkpoint kept outside it: sequencing from there would fork the log."""
        if self.keeper is None:
            return
        kept = self.keeper.load()
        size = self.store.size()
        if kept is not None and kept.size > size:
            raise RollbackError(rollback_message(kept.size, size, self.keeper.where))

    def _check(self, item: Append) -> None:
        if len(item.entry) > MAX_ENTRY_SIZE:
            raise EntryTooLargeError(
                f"entry is {len(item.entry)} bytes; the tlog-tiles entry bundle format "
                f"allows at most {MAX_ENTRY_SIZE}"
            )
        if self.signer is None:
            raise KansaError("this log was opened without its signing key: it cannot append")
        self._ensure_thread()

    def append(self, entry: bytes, **kw: object) -> int:
        """Append one entry and wait until it is durable; returns its index."""
        item = Append(entry, **kw)  # type: ignore[arg-type]
        self._check(item)
        w = getattr(self._local, "w", None)
        if w is None:
            w = self._local.w = _Waiter()
        self._queue.put(_Pending(item, None, w))
        try:
            w.lock.acquire()
        except BaseException:  # interrupted: this waiter may still be released later
            self._local.w = None
            raise
        if w.error is not None:
            err, w.error = w.error, None
            raise err
        return w.result

    def append_many(self, items: Iterable[Append]) -> list[int]:
        futs = [self.submit(i) for i in items]
        return [f.result() for f in futs]

    async def append_async(self, item: Append) -> int:
        self._check(item)
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[int] = loop.create_future()
        self._queue.put(_Pending(item, None, None, loop, afut))
        return await afut

    def _run(self) -> None:
        while True:
            timeout = None
            if self._dirty:
                timeout = max(0.0, self._last_cp_time + self.checkpoint_interval - time.monotonic())
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                first = None
            batch: list[_Pending] = []
            barriers: list[_Barrier] = []
            stop = False
            nxt: object = first
            yields = 0
            while nxt is not None:
                if nxt is _STOP:
                    stop = True
                    break
                if isinstance(nxt, _Barrier):
                    barriers.append(nxt)
                else:
                    batch.append(nxt)  # type: ignore[arg-type]
                if len(batch) >= self.max_batch:
                    break
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    nxt = None
                    if 0 < len(batch) < self._last_batch and yields < 8:
                        # producers woken by the last commit may be about to submit: give
                        # them the GIL once, so they join this batch, not the next one
                        yields += 1
                        time.sleep(0)
                        try:
                            nxt = self._queue.get_nowait()
                        except queue.Empty:
                            nxt = None
            self._last_batch = len(batch)
            if batch:
                self._commit(batch)
            for b in barriers:
                b.done.set()
            if self._dirty and (
                stop or time.monotonic() - self._last_cp_time >= self.checkpoint_interval
            ):
                try:
                    self._sign_checkpoint()
                except Exception as e:  # the sequencer must outlive a failed signing
                    _logger.warning("automatic checkpoint signing failed, will retry: %s", e)
            if stop:
                return

    def _load_edge(self, txn: WriteTxn, size: int) -> TreeEdge:
        if self._edge is not None and self._edge.size == size:
            return self._edge
        try:
            return TreeEdge.load(size, txn.read_tile)
        except ValueError as e:
            raise StorageError(f"the store's tiles are damaged: {e}") from None

    @staticmethod
    def _unique(
        batch: Sequence[_Pending], existing: Callable[[Sequence[str]], set[str]],
        index_of: Callable[[str], int | None],
    ) -> list[_Pending]:
        """The batch without appends whose record id is already in the log or earlier in
        the batch; each of those fails alone with :class:`DuplicateIdError`."""
        ids = [p.item.ext_id for p in batch if p.item.ext_id is not None]
        if not ids:
            return list(batch)
        taken = existing(ids)
        seen: set[str] = set()
        keep = []
        for p in batch:
            x = p.item.ext_id
            if x is None:
                keep.append(p)
            elif x in taken:
                at = index_of(x)
                where = f" at entry {at}" if at is not None else ""
                p.fail(DuplicateIdError(
                    f"record id {x!r} is already in the log{where}; record ids are unique "
                    f"(give this record another id, or leave the id out to get a fresh one)"
                ))
            elif x in seen:
                p.fail(DuplicateIdError(
                    f"record id {x!r} appears twice among the records appended at the same time; "
                    f"record ids are unique"
                ))
            else:
                seen.add(x)
                keep.append(p)
        return keep

    def _commit(self, batch: Sequence[_Pending]) -> None:
        try:
            now = now_us()
            leaf = merkle.leaf_hash

            def prepare(batch: Sequence[_Pending]) -> tuple[list[Row], list[bytes]]:
                rows = [
                    (p.item.ts if p.item.ts is not None else now, p.item.group,
                     p.item.ext_id, p.item.entry)
                    for p in batch
                ]
                return rows, [leaf(r[3]) for r in rows]

            fast = getattr(self.store, "append_batch", None)
            done = False
            if fast is not None and self._edge is not None:
                batch = self._unique(batch, self.store.existing_ext_ids, self.store.index_of)
                if not batch:
                    return
                rows, hashes = prepare(batch)
                size = self._edge.size
                edge = self._edge.copy()
                changed = edge.append(hashes)
                attachments = [(size + i, p.item.group or "", p.item.attachment)
                               for i, p in enumerate(batch) if p.item.attachment is not None]
                done = fast(size, rows, attachments, changed, edge.size)
                if not done:
                    self._edge = None  # another writer appended: take the locked path
            if not done:
                with self.store.writer() as txn:
                    batch = self._unique(batch, txn.existing_ext_ids, self.store.index_of)
                    if not batch:
                        return
                    rows, hashes = prepare(batch)
                    size = txn.size()
                    edge = self._load_edge(txn, size).copy()
                    changed = edge.append(hashes)
                    txn.insert_entries(size, rows)
                    txn.insert_attachments(
                        [(size + i, p.item.group or "", p.item.attachment)
                         for i, p in enumerate(batch) if p.item.attachment is not None]
                    )
                    txn.put_tiles(changed)
                    txn.set_size(edge.size)
            self._edge = edge
        except BaseException as e:  # every waiter learns of the failure; nothing is acked
            self._edge = None
            err = e if isinstance(e, KansaError) else StorageError(f"append failed: {e!r}")
            for p in batch:
                p.fail(err)
            return
        self._dirty = True
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int]]] = {}
        for i, p in enumerate(batch):
            if p.waiter is not None:
                p.waiter.result = size + i
                p.waiter.lock.release()
            elif p.future is not None:
                with contextlib.suppress(InvalidStateError):
                    p.future.set_result(size + i)
            elif p.loop is not None and p.afut is not None:
                by_loop.setdefault(p.loop, []).append((p.afut, size + i))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the waiters' event loop has closed
                loop.call_soon_threadsafe(_aresolve, items)

    # -- checkpoints ----------------------------------------------------------------------

    @property
    def verifier(self) -> Verifier:
        if self.signer is None:
            raise KansaError("no signing key loaded")
        return self.signer.verifier

    def _sign_checkpoint(self) -> StoredCheckpoint | None:
        if self.signer is None:
            raise KansaError("this log was opened without its signing key: it cannot sign")
        # a failed attempt leaves the log dirty, so the sequencer tries again next interval
        self._last_cp_time = time.monotonic()
        with self._cp_lock, self.store.writer() as txn:
            size = txn.size()
            last = txn.last_checkpoint()
            kept = self.keeper.load() if self.keeper is not None else None
            if kept is not None and kept.size > size:
                assert self.keeper is not None
                raise RollbackError(rollback_message(kept.size, size, self.keeper.where))
            if last is not None and last.size >= size:
                self._dirty = False
                return last
            edge = self._load_edge(txn, size)
            root = edge.root()
            if last is not None:
                self._check_consistent(txn, last, size, root)
            if kept is not None and (last is None or kept.note != last.note):
                # the kept checkpoint must be a prefix too (its row may have been deleted)
                self._check_consistent(txn, kept, size, root)
            signed = sign_checkpoint(Checkpoint(self.signer.name, size, root), self.signer)
            stored = StoredCheckpoint(size, now_us(), signed.note.to_text())
            stored = replace(stored, seq=txn.insert_checkpoint(stored))
        self._dirty = False
        if self.keeper is not None:
            self.keeper.keep(stored)
        return stored

    def _check_consistent(self, txn: WriteTxn, last: StoredCheckpoint, size: int,
                          root: bytes) -> None:
        """Refuse to sign unless the last signed checkpoint is a prefix of this tree."""
        assert self.signer is not None
        try:
            prev = verify_checkpoint(last.note, self.signer.verifier).checkpoint
            reader = TileHashReader(lambda lv, ix: txn.read_tile(lv, ix) or b"")
            proof = merkle.consistency_proof(reader, prev.size, size)
            merkle.verify_consistency(prev.size, size, prev.root, root, proof)
        except (KansaError, ValueError) as e:
            raise InconsistentCheckpointError(
                f"refusing to sign size {size}: it is not consistent with the checkpoint "
                f"signed at size {last.size} ({e})"
            ) from None

    def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint for the current tree now (if it grew) and return the latest."""
        self._sign_checkpoint()
        return self.latest_checkpoint()

    def latest_checkpoint(self) -> SignedCheckpoint:
        stored = self.store.latest_checkpoint()
        if stored is None:
            raise KansaError("the log has no signed checkpoint yet")
        return self._parse(stored.note)

    def _parse(self, note: str) -> SignedCheckpoint:
        if self.signer is not None:
            return verify_checkpoint(note, self.signer.verifier)
        from kansa.ledger.note import parse_note

        n = parse_note(note)
        return SignedCheckpoint(Checkpoint.parse_body(n.text), n)

    # -- proofs ---------------------------------------------------------------------------

    def hash_reader(self) -> TileHashReader:
        def fetch(level: int, index: int) -> bytes:
            data = self.store.read_tile(level, index)
            if data is None:
                raise ProofError(f"tile ({level}, {index}) is missing from the store")
            return data

        return TileHashReader(fetch, self._tile_levels)

    def size(self) -> int:
        return self.store.size()

    def root(self, size: int) -> bytes:
        return merkle.tree_root(self.hash_reader(), size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(self.hash_reader(), index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(self.hash_reader(), old_size, new_size)

    # -- lifecycle ------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait for queued appends and sign a checkpoint covering them."""
        if self._thread is not None:
            done = threading.Event()
            self._queue.put(_Barrier(done))
            done.wait()
        if self.signer is not None:
            self._sign_checkpoint()

    def close(self) -> None:
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
            self._thread = None

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Barrier:
    def __init__(self, done: threading.Event) -> None:
        self.done = done
