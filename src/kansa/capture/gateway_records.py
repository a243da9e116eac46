"""Making a gateway record recordable: usage estimated when the upstream gave none, and a
record that failed to canonicalise escaped rather than lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from kansa.capture.gateway_request import _Call, _esc
from kansa.capture.shapes import CallInfo, to_record
from kansa.errors import EntryTooLargeError, RecordError, StorageError
from kansa.records.attributes import (
    GEN_AI_OUTPUT_MESSAGES,
    KANSA_CONTENT_DROPPED,
    KANSA_CONTENT_ESCAPED,
    KANSA_USAGE_ESTIMATED,
)
from kansa.records.model import UsageRecord

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.api import Ledger
    from kansa.capture.gateway_config import GatewayConfig
    from kansa.capture.pipeline import Pipeline


_logger = logging.getLogger("kansa.gateway")


def _strings(v: Any, out: list[str], depth: int = 0) -> None:
    if isinstance(v, str):
        out.append(v)
    elif depth < 32 and isinstance(v, dict):
        for x in v.values():
            _strings(x, out, depth + 1)
    elif depth < 32 and isinstance(v, list):
        for x in v:
            _strings(x, out, depth + 1)


def _estimate_usage(rec: UsageRecord) -> None:
    """No usage from the upstream: count tokens roughly (4 characters a token)."""
    ins: list[str] = []
    outs: list[str] = []
    for k, v in rec.content.items():
        _strings(v, outs if k == GEN_AI_OUTPUT_MESSAGES or k == "output" else ins)
    if not ins and not outs:
        return
    rec.input_tokens = (sum(map(len, ins)) + 3) // 4
    if rec.operation != "embeddings":
        rec.output_tokens = (sum(map(len, outs)) + 3) // 4
    rec.attributes[KANSA_USAGE_ESTIMATED] = True


def _escape_record(rec: UsageRecord) -> None:
    """Make a record that failed to canonicalise recordable: content as ASCII JSON text,
    every other string with its lone surrogates as "\\udXXX" text."""
    rec.content = {_esc(k): json.dumps(v) for k, v in rec.content.items()}
    rec.finish_reasons = tuple(_esc(r[:64]) for r in rec.finish_reasons[:16])
    rec.attributes = {_esc(k): _esc(v) if isinstance(v, str) else v if isinstance(v, bool) or (
        isinstance(v, int | float) and abs(v) < 2**53) else _esc(str(v)[:64])
        for k, v in rec.attributes.items()}
    rec.attributes[KANSA_CONTENT_ESCAPED] = True
    for f in fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, str):
            setattr(rec, f.name, _esc(v))


# what Ledger's preparation of a record can raise for the record's own sake (nothing queued)
_UNRECORDABLE = (RecordError, EntryTooLargeError, ValueError, TypeError)  # + UnicodeError


class Recorder:
    """Turns the gateway's calls into records and appends them: after the pipeline's
    after moment, durably before the answer (default) or in the background
    (``async_records``). A store failure opens a breaker: for ``store_retry_seconds``
    requests are refused at once (the gateway fails closed)."""

    def __init__(self, ledger: Ledger, config: GatewayConfig, pipeline: Pipeline) -> None:
        self.ledger = ledger
        self.config = config
        self.pipeline = pipeline
        self.stats = {"requests": 0, "records": 0, "records_failed": 0, "store_errors": 0,
                      "refused_store_down": 0}
        self.down_until = 0.0  # monotonic time until which the store counts as down
        self._tasks: set[asyncio.Task[Any]] = set()  # async-mode appends under way

    def store_down(self) -> bool:
        return time.monotonic() < self.down_until

    async def build(self, call: CallInfo, t0: float) -> UsageRecord:
        if call.latency_ms is None:
            call.latency_ms = (time.perf_counter() - t0) * 1000
        rec = to_record(call)
        if rec.input_tokens is None and rec.output_tokens is None and rec.outcome == "ok" \
                and rec.operation in ("chat", "text_completion", "embeddings"):
            _estimate_usage(rec)
        if isinstance(call, _Call) and call.pc is not None:
            await self.pipeline.aafter(call.pc, rec)
        return rec

    async def record(self, call: CallInfo, t0: float) -> bool:
        """Append the call's record; False if it could not be made durable. Never raises
        (but for cancellation): every caller answers False by failing closed, so an
        unexpected error here withholds the answer instead of serving it unrecorded."""
        try:
            rec = await self.build(call, t0)
        except Exception as e:  # should not happen: to_record sanitises; record what we can
            _logger.warning("record %s: %r; recording without content", call.record_id, e)
            call.request = call.response = None
            call.attributes[KANSA_CONTENT_DROPPED] = True
            try:
                rec = await self.build(call, t0)
            except Exception as e2:
                self.stats["records_failed"] += 1
                _logger.error("record %s could not be built: %r", call.record_id, e2)
                return False
        if self.config.async_records:
            t = asyncio.ensure_future(self._append_async(rec))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            return True
        try:
            await self._append(rec)
        except StorageError as e:
            self.store_failed(e)
            return False
        except Exception as e:  # not the store's fault: no breaker, but no answer either
            self.stats["records_failed"] += 1
            _logger.error("record %s could not be appended: %r", rec.id, e)
            return False
        return True

    async def _append(self, rec: UsageRecord) -> None:
        try:
            await self.ledger.aappend(rec)
        except _UNRECORDABLE as e:
            # content that JSON cannot canonicalise (lone surrogates, huge numbers...), a
            # subject the vault cannot key (a lone surrogate: UnicodeEncodeError) or an
            # oversized entry: keep everything, escaped or trimmed, rather than lose the
            # record (these fail in Ledger's preparation, before anything is queued, so a
            # retry cannot duplicate)
            _logger.warning("record %s: %r; recording it escaped", rec.id, e)
            _escape_record(rec)
            try:
                await self.ledger.aappend(rec)
            except _UNRECORDABLE:
                rec.content = {}
                rec.attributes = {KANSA_CONTENT_DROPPED: True}
                await self.ledger.aappend(rec)
        self.stats["records"] += 1

    async def _append_async(self, rec: UsageRecord) -> None:
        try:
            await self._append(rec)
        except Exception as e:
            self.stats["records_failed"] += 1
            if isinstance(e, StorageError):
                self.store_failed(e)
            else:
                _logger.error("record %s could not be appended: %s", rec.id, e)

    def store_failed(self, e: Exception) -> None:
        self.stats["store_errors"] += 1
        self.down_until = time.monotonic() + self.config.store_retry_seconds
        _logger.error("kansa gateway: cannot record to the ledger (%s); %s", e,
                      "record lost (async mode)" if self.config.async_records else
                      "failing closed: responses are withheld until the store is back")

    async def drain(self) -> None:
        """Wait for the async-mode records still being appended (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
