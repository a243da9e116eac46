"""Streamed answers through the gateway: the usage-only chunk the gateway asked an OpenAI
stream for on the client's behalf is kept from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import TYPE_CHECKING

from kansa.capture.gateway_request import _Call
from kansa.capture.gateway_wire import _resp_headers, _sse_error, _uncancel
from kansa.capture.shapes import CallInfo, StreamAssembler
from kansa.capture.upstream import UpstreamResponse, UpstreamTooLarge
from kansa.records.attributes import KANSA_TTFB_MS

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_records import Recorder
    from kansa.capture.gateway_request import _Route
    from kansa.capture.gateway_wire import Send, _State
    from kansa.capture.pipeline import Pipeline


_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')

_logger = logging.getLogger("kansa.gateway")


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class _UsageStripper:
    """When the gateway asked an OpenAI stream for usage on the client's behalf, drop the
    usage-only chunk (``choices: []``) the client did not ask for. Works on whole events
    (an SSE client acts only on whole events anyway); other bytes pass at once."""

    def __init__(self) -> None:
        self._buf = b""

    def push(self, chunk: bytes) -> bytes:
        buf = self._buf + chunk
        end = -1
        for m in _EVENT_END.finditer(buf):
            end = m.end()
        if end < 0:
            self._buf = buf
            return b""
        complete, self._buf = buf[:end], buf[end:]
        if not _USAGE_ONLY.search(complete):
            return complete
        out = []
        pos = 0
        for m in _EVENT_END.finditer(complete):
            event = complete[pos:m.end()]
            pos = m.end()
            if not (_USAGE_ONLY.search(event) and _is_usage_only(event)):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def _is_usage_only(event: bytes) -> bool:
    data = b"\n".join(line[5:].lstrip() for line in event.replace(b"\r", b"\n").split(b"\n")
                      if line.startswith(b"data:"))
    try:
        obj = json.loads(data)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(
        obj.get("usage"), dict)


async def relay_stream(send: Send, call: CallInfo, route: _Route, state: _State,
                       resp: UpstreamResponse, strip_usage: bool, t0: float, *,
                       recorder: Recorder) -> None:
    """Forward an upstream SSE stream chunk by chunk, feeding the assembler and the
    pipeline's ``on_event``; with durable records the terminal event waits for the record.
    A stream that fails, or whose record cannot be made durable, is cut (never completed)."""
    call.streamed = True
    call.status = resp.status
    durable = not recorder.config.async_records
    asm = StreamAssembler(route.shape)
    stripper = _UsageStripper() if strip_usage else None
    held: list[bytes] = []
    failure = await _pump(send, call, state, resp, t0, asm, stripper, held, durable,
                          recorder.pipeline)
    state.finishing = True
    if failure is not None:
        resp.close()
    if stripper is not None:
        held.append(stripper.flush())
    try:
        call.response = asm.result()
    except Exception:  # a bug of ours: the call is still recorded (without the answer)
        _logger.exception("stream %s: cannot assemble the answer", call.record_id)
        failure = failure or ("error", "gateway_error")
    call.latency_ms = (time.perf_counter() - t0) * 1000
    if failure is not None:
        call.outcome, call.error_type = failure
    elif resp.status < 400 and (ended := asm.outcome()) is not None:
        call.outcome, call.error_type = ended  # as the SDK wrappers record it
    recorded = await recorder.record(call, t0)
    if failure is not None or not recorded:
        await _cut(send, call, route, failure, recorder.config.max_response_bytes)
        return  # the server closes the connection: the response never completes
    await send({"type": "http.response.body", "body": b"".join(held)})


async def _pump(send: Send, call: CallInfo, state: _State, resp: UpstreamResponse, t0: float,
                asm: StreamAssembler, stripper: _UsageStripper | None, held: list[bytes],
                durable: bool, pipeline: Pipeline) -> tuple[str, str] | None:
    """Send the stream's chunks as they come; how it failed (outcome, error type), if so."""
    pc = call.pc if isinstance(call, _Call) and pipeline.has_events else None
    first = True
    try:
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": _stream_headers(call, resp, durable)})
        async for chunk in resp.chunks():
            if first:
                call.attributes[KANSA_TTFB_MS] = round((time.perf_counter() - t0) * 1000, 3)
                first = False
            asm.feed(chunk)
            if pc is not None:
                pipeline.event(pc, chunk)
            out = stripper.push(chunk) if stripper is not None else chunk
            if durable and (held or asm.done):
                held.append(out)  # the terminal event waits for the record
            elif out:
                await send({"type": "http.response.body", "body": out, "more_body": True})
    except asyncio.CancelledError:
        if not state.client_gone:
            raise
        _uncancel()
        return ("aborted", "client_disconnected")
    except UpstreamTooLarge:
        return ("error", "upstream_response_too_large")
    except TimeoutError:
        return ("timeout", "upstream_timeout")
    except OSError:
        return ("error", "upstream_disconnected")
    except Exception:  # a bug of ours (the assembler...): record the call, cut the stream
        _logger.exception("stream %s: unexpected error", call.record_id)
        return ("error", "gateway_error")
    return None


def _stream_headers(call: CallInfo, resp: UpstreamResponse,
                    durable: bool) -> list[tuple[bytes, bytes]]:
    headers_out = _resp_headers(resp.headers)
    headers_out.append((b"x-kansa-record", call.record_id.encode()))
    if not durable:
        headers_out.append((b"x-kansa-durability", b"async"))
    return headers_out


async def _cut(send: Send, call: CallInfo, route: _Route, failure: tuple[str, str] | None,
               limit: int) -> None:
    """Tell an SSE client why its stream stops short (unless it left), then log it."""
    if failure is None or failure[0] != "aborted":
        code = failure[1] if failure is not None else None
        why = {
            None: "the ledger store is unavailable: the stream could not be recorded",
            "upstream_response_too_large":
                f"the upstream's stream exceeds the gateway's limit of {limit} bytes "
                "(max_response_bytes); it was cut",
            "gateway_error": "internal error; the stream was recorded and cut",
        }.get(code) or f"upstream stream failed ({code})"
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body",
                        "body": _sse_error(route, "kansa gateway: " + why),
                        "more_body": True})
    _logger.warning("stream %s cut: %s", call.record_id,
                    failure[1] if failure else "ledger unavailable")
