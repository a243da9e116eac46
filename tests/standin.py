"""A stand-in upstream for gateway tests: a real aiohttp server on a free loopback port, in
a thread of its own, mimicking OpenAI (chat completions, completions, embeddings,
responses, models) and Anthropic Messages, including their SSE streams.

The request's ``model`` picks a behaviour:

    anything else        a normal answer (streamed if "stream": true), usage included
                         when OpenAI's stream_options.include_usage asks for it
    fail-<status>        that HTTP status with a provider-style error body
    slow                 waits ``delay`` seconds (default 5) before answering
    reset                resets the connection (TCP RST) before answering
    drop-midstream       streams two events, then resets the connection
    stall-midstream      streams one event, then goes silent for ``delay`` seconds
    drip                 streams an event every 50 ms for 10 s; notes when the client leaves
    hold                 streams one event, then waits until ``release`` is set
    no-usage             never reports usage
    cut-short            streams two events, then ends the stream cleanly without its end
    error-event          streams two events, then an in-stream error event, then ends
    big-<n>[-gzip]       an answer whose text is <n> bytes (streamed in 64 KiB events if
                         asked), gzip-compressed on the wire with -gzip (a small body that
                         expands to <n>)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from typing import Any

from aiohttp import web


class Standin:
    def __init__(self, *, behaviours: bool = True) -> None:
        self.behaviours = behaviours  # False: every model is a normal one (for fuzzing)
        self.requests: list[dict[str, Any]] = []  # path, headers, body of every request
        self.events: list[str] = []  # e.g. "drip: client gone"
        self.release = threading.Event()
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._n = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, ssl_context: ssl.SSLContext | None = None) -> Standin:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/v1/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.SockSite(self._runner, sock,
                                                 ssl_context=ssl_context).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/v1"
        return self

    def stop(self) -> None:
        self.release.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def wait_event(self, name: str, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if name in self.events:
                return True
            time.sleep(0.01)
        return False

    # -- handling ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {"_body": body}
        tail = request.match_info["tail"]
        self.requests.append({"path": "/" + tail, "method": request.method,
                              "headers": {k.lower(): v for k, v in request.headers.items()},
                              "body": body})
        self._n += 1
        model = body.get("model") if isinstance(body.get("model"), str) else "standin-model"
        if not self.behaviours:
            model = "standin-model"
        anthropic = tail == "messages"
        delay = float(body.get("delay", 5)) if isinstance(body.get("delay"), int | float) else 5.0

        if tail == "models" or tail.startswith("models/"):
            if tail == "models":
                return web.json_response({"object": "list", "data": [
                    {"id": "standin-model", "object": "model", "owned_by": "standin"}]})
            return web.json_response({"id": tail[7:], "object": "model", "owned_by": "standin"})
        if model.startswith("fail-"):
            status = int(model[5:])
            err = ({"type": "error", "error": {"type": "api_error",
                                               "message": "standin failure"}}
                   if anthropic else {"error": {"message": "standin failure",
                                                "type": "server_error", "param": None,
                                                "code": None}})
            return web.json_response(err, status=status)
        if model == "slow":
            await asyncio.sleep(delay)
        if model == "reset":
            _reset(request)
            return web.Response()
        if model.startswith("big-"):
            return await self._big(request, body, model)

        stream = body.get("stream") is True
        if tail == "chat/completions":
            return await (self._chat_stream(request, body, model, delay) if stream
                          else self._json(_chat(model, body, self._n)))
        if tail == "completions":
            return await (self._chat_stream(request, body, model, delay, legacy=True) if stream
                          else self._json(_completion(model, body, self._n)))
        if tail == "embeddings":
            return web.json_response({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
                "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        if tail == "responses":
            if stream:
                return await self._responses_stream(request, body, model, delay)
            return web.json_response(_response(model, self._n))
        if tail == "messages":
            if stream:
                return await self._messages_stream(request, body, model, delay)
            return web.json_response(_message(model, self._n, body))
        return web.json_response({"error": {"message": "no such route"}}, status=404)

    async def _big(self, request: web.Request, body: dict[str, Any],
                   model: str) -> web.StreamResponse:
        size = int(model.split("-")[1])
        gz = zlib.compressobj(1, zlib.DEFLATED, 31) if model.endswith("-gzip") else None
        headers = {"Content-Encoding": "gzip"} if gz is not None else {}
        if body.get("stream") is not True:
            # the JSON written piece by piece: a big (or compressed) body starts at once
            head, tail = json.dumps(_chat(model, {"messages": [{"content": "@"}]},
                                          self._n)).encode().split(b"@")
            resp = web.StreamResponse(headers={"Content-Type": "application/json", **headers})
            await resp.prepare(request)
            pieces = [head] + [b"x" * min(1 << 20, size - i) for i in range(0, size, 1 << 20)]
            try:
                for p in pieces + [tail]:
                    await resp.write(gz.compress(p) if gz is not None else p)
                if gz is not None:
                    await resp.write(gz.flush())
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                self.events.append(f"{model}: client gone")
            return resp
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await resp.prepare(request)
        piece = "x" * 65536
        events = [_data({"id": "big", "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": {"content": piece}}]})] * 16
        sent = 0
        try:
            while sent < size:  # 1 MiB of events a write
                block = b"".join(events)
                sent += len(block)
                await resp.write(gz.compress(block) if gz is not None else block)
            tail = _data({"id": "big", "object": "chat.completion.chunk", "model": model,
                          "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            tail += b"data: [DONE]\n\n"
            await resp.write(gz.compress(tail) + gz.flush() if gz is not None else tail)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            self.events.append(f"{model}: client gone")
        return resp

    async def _json(self, obj: dict[str, Any]) -> web.Response:
        return web.json_response(obj)

    async def _sse(self, request: web.Request, events: list[bytes], model: str,
                   delay: float) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            for i, ev in enumerate(events):
                if model == "cut-short" and i == 2:
                    break
                if model == "error-event" and i == 2:
                    await resp.write(_event("error", {"type": "error", "error": {
                        "type": "overloaded_error", "message": "Overloaded"}}))
                    break
                if model == "drop-midstream" and i == 2:
                    _reset(request)
                    return resp
                if model == "stall-midstream" and i == 1:
                    await asyncio.sleep(delay)
                if model == "hold" and i == 1:
                    await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
                if model == "drip" and i > 0:
                    await asyncio.sleep(0.05)
                await resp.write(ev)
            if model == "drip":
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    await resp.write(b": keep-alive\n\n")
        except (ConnectionResetError, ConnectionError, RuntimeError):
            self.events.append(f"{model}: client gone")
            return resp
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        self.events.append(f"{model}: finished")
        return resp

    async def _chat_stream(self, request: web.Request, body: dict[str, Any], model: str,
                           delay: float, legacy: bool = False) -> web.StreamResponse:
        usage = (isinstance(body.get("stream_options"), dict)
                 and body["stream_options"].get("include_usage") is True
                 and model != "no-usage")
        cid = f"chatcmpl-standin-{self._n}"
        obj = "text_completion" if legacy else "chat.completion.chunk"
        extra: dict[str, Any] = {"usage": None} if usage else {}
        pieces = ["Hel", "lo", " from", " the", " stand", "-in"]
        events = []
        for i, p in enumerate(pieces):
            choice: dict[str, Any] = ({"index": 0, "text": p, "finish_reason": None} if legacy
                                      else {"index": 0, "delta": ({"role": "assistant",
                                                                   "content": p} if i == 0
                                                                  else {"content": p}),
                                            "finish_reason": None})
            events.append(_data({"id": cid, "object": obj, "created": 1, "model": model,
                                 "choices": [choice], **extra}))
        last: dict[str, Any] = ({"index": 0, "text": "", "finish_reason": "stop"} if legacy
                                else {"index": 0, "delta": {}, "finish_reason": "stop"})
        events.append(_data({"id": cid, "object": obj, "created": 1, "model": model,
                             "choices": [last], **extra}))
        if usage:
            events.append(_data({"id": cid, "object": obj, "created": 1, "model": model,
                                 "choices": [], "usage": {"prompt_tokens": 11,
                                                          "completion_tokens": 6,
                                                          "total_tokens": 17}}))
        events.append(b"data: [DONE]\n\n")
        return await self._sse(request, events, model, delay)

    async def _responses_stream(self, request: web.Request, body: dict[str, Any], model: str,
                                delay: float) -> web.StreamResponse:
        final = _response(model, self._n)
        events = [
            _event("response.created", {"type": "response.created",
                                         "response": {**final, "status": "in_progress",
                                                      "output": []}}),
            _event("response.output_text.delta", {"type": "response.output_text.delta",
                                                  "delta": "Hello"}),
            _event("response.output_text.delta", {"type": "response.output_text.delta",
                                                  "delta": " there"}),
            _event("response.completed", {"type": "response.completed", "response": final}),
        ]
        return await self._sse(request, events, model, delay)

    async def _messages_stream(self, request: web.Request, body: dict[str, Any], model: str,
                               delay: float) -> web.StreamResponse:
        msg = _message(model, self._n)
        start = dict(msg, content=[], stop_reason=None,
                     usage={"input_tokens": 9, "output_tokens": 1})
        events = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
            _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "Bonjour"}}),
            _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": " monde"}}),
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "end_turn"},
                                     "usage": {"output_tokens": 4}}),
            _event("message_stop", {"type": "message_stop"}),
        ]
        return await self._sse(request, events, model, delay)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"


def _last_user(body: dict[str, Any]) -> str:
    msgs = body.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict):
        c = msgs[-1].get("content")
        return c if isinstance(c, str) else json.dumps(c)
    return ""


def _chat(model: str, body: dict[str, Any], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"chatcmpl-standin-{n}", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant",
                                             "content": "echo: " + _last_user(body)},
                     "finish_reason": "stop"}],
    }
    if model == "tool-caller":  # asks for the tool call the test put in "x_tool_call"
        tc = body.get("x_tool_call") or {}
        out["choices"] = [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function", "function": {
                    "name": tc.get("name", "tool"),
                    "arguments": json.dumps(tc.get("arguments", {}))}}]}}]
    if model != "no-usage":
        out["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    return out


def _completion(model: str, body: dict[str, Any], n: int) -> dict[str, Any]:
    return {"id": f"cmpl-standin-{n}", "object": "text_completion", "created": 1, "model": model,
            "choices": [{"index": 0, "text": "once upon a time", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def _response(model: str, n: int) -> dict[str, Any]:
    return {"id": f"resp_standin_{n}", "object": "response", "status": "completed",
            "model": model,
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello there"}]}],
            "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}


def _message(model: str, n: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"id": f"msg_standin_{n}", "type": "message", "role": "assistant", "model": model,
           "content": [{"type": "text", "text": "Bonjour monde"}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 9, "output_tokens": 4}}
    if model == "tool-caller":
        tc = (body or {}).get("x_tool_call") or {}
        out["content"] = [{"type": "tool_use", "id": f"toolu_{n}",
                           "name": tc.get("name", "tool"), "input": tc.get("arguments", {})}]
        out["stop_reason"] = "tool_use"
    return out
