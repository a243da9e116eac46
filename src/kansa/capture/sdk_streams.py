"""Streamed answers through a wrapped SDK client: the SDK's own stream object keeps its
class, its iterator and ``close`` pass through kansa (to see each event and how the
stream ends); ``with_streaming_response`` bodies are watched as the caller reads them;
OpenAI streams are asked for their usage.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kansa.capture.sdk_call import _CURRENT, _SENTINELS, _afailed, _failed

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.sdk_call import _Call


_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"  # the SDKs' with_raw/streaming marker


def _stream_usage(call: _Call, options: Any) -> None:
    """Ask an OpenAI chat or completions stream for its usage, as the gateway does
    (``GatewayConfig.inject_stream_usage``): without ``stream_options.include_usage`` a
    stream carries no token counts, and the ``chat.completions.stream`` helper never sets
    it. The caller asked for no usage chunk, so ``_iterate`` keeps it from them; the
    record's request stays the body the caller sent. Not done for the Responses API
    (its streams carry usage) nor when the caller reads the raw bytes
    (``with_raw_response``/``with_streaming_response``), whose bytes kansa does not edit."""
    body = getattr(options, "json_data", None)
    if not isinstance(body, dict) or body.get("stream") is not True:
        return
    url = str(getattr(options, "url", ""))
    if url.rstrip("/").endswith("responses"):
        return
    extra = getattr(options, "extra_json", None)
    if isinstance(extra, Mapping) and "stream_options" in extra:
        return
    headers = getattr(options, "headers", None)
    if isinstance(headers, Mapping) and any(
            isinstance(k, str) and k.lower() == _RAW_RESPONSE_HEADER.lower() for k in headers):
        return
    so = body.get("stream_options")
    if so is None or type(so).__name__ in _SENTINELS:
        so = {}
    if not isinstance(so, Mapping) or "include_usage" in so:
        return
    # a new dict: the caller's own arguments are left as they were
    options.json_data = {**body, "stream_options": {**so, "include_usage": True}}
    call.strip_usage = True


def _is_usage_only(item: Any) -> bool:
    """The extra chunk include_usage adds: no choices, only usage."""
    return getattr(item, "choices", None) == [] and getattr(item, "usage", None) is not None


class _RawBody:
    """Watches the httpx response of a ``with_streaming_response`` call: its
    ``iter_bytes``/``aiter_bytes`` (which ``read``, ``text``, ``json``, ``iter_lines`` and
    the SDK's ``parse()`` all go through) keep the decoded bytes the caller reads, and its
    ``close``/``aclose`` (the context manager's exit, or httpx itself once the body is
    read) records the call, once. httpx closes the response from inside the read, before
    the decoder's last bytes are handed over: a close made while a read is under way is
    held until that read returns. A read abandoned mid-body (``break``) closes the
    response without recording: the caller's own close (the context manager's exit)
    records it, durably; a response never closed is recorded in the background when it
    is collected (``_abandoned``), never blocking a finalizer."""

    __slots__ = ("call", "resp", "active", "pending", "__weakref__")

    def __init__(self, call: _Call, resp: Any) -> None:
        self.call = call
        self.resp = resp
        self.active = False  # inside httpx's iterator (not suspended at our yield)
        self.pending = False  # closed during that: record when the read returns

    def _keep(self) -> bool:
        # a body already read is replayed from memory: it was kept the first time
        return not hasattr(self.resp, "_content") and self.call.raw is not None

    def iter_bytes(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        call, keep = self.call, self._keep()
        it = type(self.resp).iter_bytes(self.resp, *args, **kwargs)
        while True:
            self.active = True
            try:
                chunk = next(it)
            except StopIteration:
                break
            except BaseException as e:
                if self.pending and not call.done:
                    self.pending = False
                    _failed(call.cfg.sink, call, e)
                raise
            finally:
                self.active = False
            if keep:
                call.raw.append(chunk)  # type: ignore[union-attr]
            try:
                yield chunk
            except GeneratorExit:
                self.active = True  # httpx closes the response now: not yet the record
                try:
                    it.close()
                finally:
                    self.active = self.pending = False
                raise
        if keep:
            call.raw_complete = True
        if self.pending:
            self._record()

    async def aiter_bytes(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        call, keep = self.call, self._keep()
        it = type(self.resp).aiter_bytes(self.resp, *args, **kwargs)
        while True:
            self.active = True
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                break
            except BaseException as e:
                if self.pending and not call.done:
                    self.pending = False
                    await _afailed(call.cfg.sink, call, e)
                raise
            finally:
                self.active = False
            if keep:
                call.raw.append(chunk)  # type: ignore[union-attr]
            try:
                yield chunk
            except GeneratorExit:
                self.active = True
                try:
                    await it.aclose()
                finally:
                    self.active = self.pending = False
                raise
        if keep:
            call.raw_complete = True
        if self.pending:
            await self._arecord()

    def _record(self) -> None:
        self.pending = False
        if not self.call.done:
            self.call.cfg.sink.commit(self.call.end())

    async def _arecord(self) -> None:
        self.pending = False
        if not self.call.done:
            await self.call.cfg.sink.acommit(self.call.end())

    def close(self) -> None:
        type(self.resp).close(self.resp)
        if self.active:
            self.pending = True
        else:
            self._record()

    async def aclose(self) -> None:
        await type(self.resp).aclose(self.resp)
        if self.active:
            self.pending = True
        else:
            await self._arecord()


def _abandoned(call: _Call) -> None:
    """A with_streaming_response response collected without being closed."""
    if not call.done:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            call.cfg.sink.later(call.end())


def _watch_body(resp: Any, call: _Call, is_async: bool) -> None:
    call.raw = []
    ctype = str(getattr(resp, "headers", {}).get("content-type", ""))
    call.raw_sse = ctype.split(";")[0].strip().lower() == "text/event-stream"
    watch = _RawBody(call, resp)
    weakref.finalize(watch, _abandoned, call)
    # instance attributes: httpx's read()/iter_raw() call self.iter_bytes()/self.close()
    if is_async:
        resp.aiter_bytes = watch.aiter_bytes
        resp.aclose = watch.aclose
    else:
        resp.iter_bytes = watch.iter_bytes
        resp.close = watch.close


def _wrap_stream(stream: Any, call: _Call, is_async: bool) -> None:
    """Keep the SDK's stream object; route its iterator through us and hook its close.

    Each event reaches ``_process_response_data`` with the stream's HTTP response, which
    names its call (``_kansa_call``): no per-chunk context switching."""
    call.events = []
    inner = stream._iterator  # the SDK's generator (anthropic: a cached property)
    try:
        stream.response._kansa_call = call
    except AttributeError:  # a response that takes no attributes: route by context
        inner = _ctx_aiterate(call, inner) if is_async else _ctx_iterate(call, inner)
    if is_async:
        stream._iterator = _aiterate(call, inner)
        stream.close = _AsyncCloser(call, weakref.ref(stream))
    else:
        stream._iterator = _iterate(call, inner)
        stream.close = _Closer(call, weakref.ref(stream))


def _iterate(call: _Call, inner: Iterator[Any]) -> Iterator[Any]:
    sink = call.cfg.sink
    try:
        for item in inner:
            if call.strip_usage and _is_usage_only(item):
                continue  # kansa asked for it (see _stream_usage), not the caller
            try:
                yield item
            except GeneratorExit:  # dropped mid-stream: never block a finalizer
                if not call.done:
                    sink.later(call.stream_end(closed=True))
                raise
    except GeneratorExit:
        raise
    except BaseException as e:
        if not call.done:
            _failed(sink, call, e)
        raise
    if not call.done:
        sink.commit(call.stream_end(closed=False))


async def _aiterate(call: _Call, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    sink = call.cfg.sink
    try:
        async for item in inner:
            if call.strip_usage and _is_usage_only(item):
                continue  # kansa asked for it (see _stream_usage), not the caller
            try:
                yield item
            except GeneratorExit:
                if not call.done:
                    sink.later(call.stream_end(closed=True))
                raise
    except GeneratorExit:
        raise
    except BaseException as e:
        if not call.done:
            await _afailed(sink, call, e)
        raise
    if not call.done:
        await sink.acommit(call.stream_end(closed=False))


def _ctx_iterate(call: _Call, inner: Iterator[Any]) -> Iterator[Any]:
    while True:
        token = _CURRENT.set(call)
        try:
            item = next(inner)
        except StopIteration:
            return
        finally:
            _CURRENT.reset(token)
        yield item


async def _ctx_aiterate(call: _Call, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    while True:
        token = _CURRENT.set(call)
        try:
            item = await inner.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _CURRENT.reset(token)
        yield item


class _Closer:
    """The stream's ``close``: records the call (aborted unless it had finished), then
    closes as the SDK does. Holds the stream weakly, so a dropped stream is collected;
    if it is dropped unclosed, the record is made when it is."""

    __slots__ = ("call", "ref")

    def __init__(self, call: _Call, ref: weakref.ref[Any]) -> None:
        self.call = call
        self.ref = ref

    def __call__(self) -> None:
        stream = self.ref()
        try:
            if not self.call.done:
                self.call.cfg.sink.commit(self.call.stream_end(closed=True))
        finally:
            if stream is not None:
                type(stream).close(stream)

    def __del__(self) -> None:
        call = self.call
        if not call.done:
            with contextlib.suppress(Exception):  # at interpreter shutdown
                call.cfg.sink.later(call.stream_end(closed=True))


class _AsyncCloser(_Closer):
    __slots__ = ()

    async def __call__(self) -> None:  # type: ignore[override]
        stream = self.ref()
        try:
            if not self.call.done:
                await self.call.cfg.sink.acommit(self.call.stream_end(closed=True))
        finally:
            if stream is not None:
                await type(stream).close(stream)
