"""HTTP through ASGI for the gateway: reading a request body within its bound, draining a
refused one, noticing a client that leaves, sending bytes, parsing an upstream answer,
and the error bodies in each API's own shape (OpenAI, Anthropic; JSON and SSE).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_request import _Route


Scope = MutableMapping[str, Any]


Message = MutableMapping[str, Any]


Receive = Callable[[], Awaitable[Message]]


Send = Callable[[Message], Awaitable[None]]


_DROP_RESP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding",
    b"date", b"server", b"proxy-authenticate", b"upgrade", b"trailer", b"te",
})


_DRAIN_SECONDS = 30.0  # how long a refused body is read (and dropped) so the client sees 413


class _TooLarge(Exception):
    def __init__(self, whole: bool) -> None:
        super().__init__()
        self.whole = whole  # the body was read to its end (nothing left to drain)


class _ClientGone(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _State:
    """Per request: whether the client left, and whether cancellation is still allowed."""

    __slots__ = ("client_gone", "finishing", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.client_gone = False
        self.finishing = False
        self.task = task


async def _watch(receive: Receive, state: _State) -> None:
    """Cancel the request's handler if the client disconnects while it waits upstream."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not state.finishing and state.task is not None:
                state.client_gone = True
                state.task.cancel()
            return


async def _send_json(send: Send, status: int, obj: Any) -> None:
    await _send_bytes(send, status, json.dumps(obj).encode(), b"application/json")


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a refused request body (at most ``limit`` bytes, for at
    most _DRAIN_SECONDS), so the client, which sends its whole body before it reads the
    answer, gets the error instead of a reset. Past either bound it is cut off anyway."""
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            while got <= limit:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                got += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    return


async def _read_body(receive: Receive, limit: int) -> bytes:
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise _ClientGone
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > limit:
            raise _TooLarge(whole=True)
        return body
    parts = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone
        b = msg.get("body", b"")
        size += len(b)
        if size > limit:
            raise _TooLarge(whole=not msg.get("more_body"))
        parts.append(b)
        if not msg.get("more_body"):
            return b"".join(parts)


def _resp_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in raw if k not in _DROP_RESP and not k.startswith(b"x-kansa-")]


def _parse_response(data: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            pass
    return data.decode("utf-8", "replace") if data else None


async def _send_bytes(send: Send, status: int, body: bytes, ctype: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 428: "invalid_request_error",
                    404: "not_found_error", 405: "invalid_request_error",
                    413: "request_too_large", 502: "api_error", 503: "overloaded_error",
                    504: "api_error"}


def _error_body(route: _Route, status: int, code: str, message: str) -> bytes:
    if route.shape == "anthropic":
        return json.dumps({"type": "error", "error": {
            "type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}).encode()
    typ = "invalid_request_error" if status < 500 else "server_error"
    return json.dumps({"error": {"message": message, "type": typ, "param": None,
                                 "code": code}}).encode()


def _sse_error(route: _Route, message: str) -> bytes:
    if route.shape == "anthropic":
        data = json.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + data.encode() + b"\n\n"
    data = json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": "stream_failed"}})
    return b"data: " + data.encode() + b"\n\n"
