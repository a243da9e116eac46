"""Where the SDK's records go and how they are written: the default ledger, the sink
(a ledger and a durability mode) and the background writer.

``durable=True``: the calling thread seals the record and waits for its group commit.
``durable=False`` (and streams dropped unclosed): the call is handed to one background
thread that builds, seals and submits records in batches; :func:`flush` waits for them,
and the process flushes (and closes a ledger it opened itself) at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import logging
import math
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any

from kansa.capture.shapes import to_record
from kansa.errors import RecordError
from kansa.records.model import UsageRecord

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.api import Ledger
    from kansa.capture.sdk_call import _Call


_logger = logging.getLogger("kansa.sdk")


_default_ledger: Ledger | None = None


_default_opened = False  # we opened it (so we close it at exit)


_default_lock = threading.RLock()


def set_default_ledger(ledger: Ledger | None) -> None:
    """The ledger used by wrappers, steps and tools given none. Unset, it is opened
    lazily with ``kansa.Ledger.open()`` ($KANSA_HOME) on the first record."""
    global _default_ledger, _default_opened
    with _default_lock:
        old, opened = _default_ledger, _default_opened
        _default_ledger, _default_opened = ledger, False
    if opened and old is not None and old is not ledger:
        flush()
        old.close()  # the one we opened ourselves


def _get_default_ledger() -> Ledger:
    global _default_ledger, _default_opened
    ledger = _default_ledger
    if ledger is None:
        with _default_lock:
            if _default_ledger is None:
                from kansa.api import Ledger

                _default_ledger, _default_opened = Ledger.open(), True
                _register_exit()
            ledger = _default_ledger
    return ledger


def _jsonable(v: Any, depth: int = 0) -> Any:
    """A JSON value for anything a caller may hand us (tool arguments and results)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: keep the text, escaped
            return v.encode("utf-8", "backslashreplace").decode("utf-8")
        return v
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if depth > 64:
        return repr(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x, depth + 1) for x in v]
    if isinstance(v, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(v)).decode()}
    dump = getattr(v, "model_dump", None)  # pydantic models (SDK objects included)
    if callable(dump):
        try:
            return _jsonable(dump(mode="json"), depth + 1)
        except Exception:
            pass
    if hasattr(v, "__dataclass_fields__") and not isinstance(v, type):
        import dataclasses

        return _jsonable(dataclasses.asdict(v), depth + 1)
    return repr(v)


def _prepare(ledger: Ledger, rec: UsageRecord) -> Any:
    """Seal a record: the ledger's Append item (entry, commitment, ciphertext)."""
    try:
        return ledger._prepare(rec)
    except RecordError:
        # content the canonical JSON encoder refuses (an SDK object left in a request,
        # a NaN): record a JSON rendering of it rather than lose the record
        rec.content = _jsonable(rec.content)
        return ledger._prepare(rec)


def _as_record(obj: _Call | UsageRecord) -> UsageRecord:
    if isinstance(obj, UsageRecord):
        return obj
    rec = to_record(obj.info())
    pipeline = obj.cfg.pipeline
    if pipeline is not None:
        pipeline.after(obj.pc, rec)  # the capture pipeline's after moment
    obj.release()
    return rec


async def _aas_record(obj: _Call | UsageRecord) -> UsageRecord:
    """:func:`_as_record` on an event loop: the pipeline's stages run their async side
    (policy judging off the loop)."""
    if isinstance(obj, UsageRecord):
        return obj
    rec = to_record(obj.info())
    pipeline = obj.cfg.pipeline
    if pipeline is not None:
        await pipeline.aafter(obj.pc, rec)
    obj.release()
    return rec


def _submit(ledger: Ledger, rec: UsageRecord) -> Future[int]:
    """Seal and queue a record to the ledger's sequencer without waiting."""
    return ledger.log.submit(_prepare(ledger, rec))


def _report(fut: Future[int]) -> None:
    exc = fut.exception()
    if exc is not None:
        _logger.warning("kansa: a background record failed to commit: %s", exc)


class _Background:
    """Builds, seals and queues records off the caller's thread (durable=False, and
    streams dropped without being closed). ``put`` is safe to call from finalizers."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._inflight: list[Future[int]] = []

    def put(self, sink: _Sink, obj: _Call | UsageRecord) -> None:
        if self._thread is None:
            self._start()
        self._q.put((sink, obj))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                _register_exit()
                t = threading.Thread(target=self._run, name="kansa-sdk", daemon=True)
                t.start()
                self._thread = t

    def _run(self) -> None:
        while True:
            # take everything queued, seal it all, then submit it all at once: the
            # sequencer then commits it as one group instead of one commit per record
            batch = [self._q.get()]
            while len(batch) < 1024:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            ready: list[tuple[Ledger, Any]] = []
            for item in batch:
                if isinstance(item, threading.Event):
                    self._submit_all(ready)
                    ready = []
                    wait_futures(self._inflight)
                    self._inflight = []
                    item.set()
                    continue
                sink, obj = item
                try:
                    rec = _as_record(obj)
                    ledger = sink.ledger()
                    ready.append((ledger, _prepare(ledger, rec)))
                except Exception as e:
                    _logger.warning("kansa: a background record was lost: %s", e)
            self._submit_all(ready)
            if len(self._inflight) >= 1024:
                self._inflight = [f for f in self._inflight if not f.done()]

    def _submit_all(self, ready: list[tuple[Ledger, Any]]) -> None:
        for ledger, item in ready:
            try:
                fut = ledger.log.submit(item)
            except Exception as e:
                _logger.warning("kansa: a background record was lost: %s", e)
                continue
            fut.add_done_callback(_report)
            self._inflight.append(fut)

    def flush(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)


_BACKGROUND = _Background()


_exit_registered = False


def flush(timeout: float | None = None) -> bool:
    """Wait until every record handed to the background (``durable=False`` wrappers,
    steps and tools, abandoned streams) is durable. False if ``timeout`` ran out."""
    return _BACKGROUND.flush(timeout)


def _register_exit() -> None:
    global _exit_registered
    with _default_lock:
        if not _exit_registered:
            atexit.register(_at_exit)
            _exit_registered = True


def _at_exit() -> None:
    global _default_ledger
    try:
        flush(timeout=30)
    finally:
        with _default_lock:
            if _default_opened and _default_ledger is not None:
                _default_ledger.close()
                _default_ledger = None


class _Sink:
    """A ledger (or the default one) and a durability mode."""

    __slots__ = ("_ledger", "durable")

    def __init__(self, ledger: Ledger | None, durable: bool) -> None:
        self._ledger = ledger
        self.durable = durable

    def ledger(self) -> Ledger:
        return self._ledger if self._ledger is not None else _get_default_ledger()

    def commit(self, obj: _Call | UsageRecord) -> None:
        """Record; with durable=True return once durable (raising if it cannot be)."""
        if not self.durable:
            _BACKGROUND.put(self, obj)
            return
        _submit(self.ledger(), _as_record(obj)).result()

    async def acommit(self, obj: _Call | UsageRecord) -> None:
        if not self.durable:
            _BACKGROUND.put(self, obj)
            return
        rec = await _aas_record(obj)
        await asyncio.wrap_future(_submit(self.ledger(), rec))

    def later(self, obj: _Call | UsageRecord) -> None:
        """Record without ever blocking (from finalizers and failure paths)."""
        _BACKGROUND.put(self, obj)


def _commit_quietly(sink: _Sink, obj: _Call | UsageRecord) -> None:
    try:
        sink.commit(obj)
    except Exception as e:
        _logger.warning("kansa: recording a failed call failed too: %s", e)


async def _acommit_quietly(sink: _Sink, obj: _Call | UsageRecord) -> None:
    try:
        await sink.acommit(obj)
    except Exception as e:
        _logger.warning("kansa: recording a failed call failed too: %s", e)
