"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for the SDK tests.

Starlette served by uvicorn in a thread, on a free port. It answers the real SDKs with
the wire shapes of the real APIs: /v1/chat/completions (plain and SSE, include_usage),
/v1/completions, /v1/embeddings (float and base64), /v1/responses (plain and SSE),
/v1/models, and Anthropic's /v1/messages (plain and SSE message_start … message_stop).

The model name steers it:

    err-<status>      answer that HTTP status with the provider's error body
    flaky-<key>       429 (retry-after-ms: 1) the first time a key is seen, then normally
    slow              wait 1 s before answering (client timeouts)
    alias-<name>      (chat) answered by model <name>-2026-01-01
    long              a stream of 200 chunks, 5 ms apart (closing a stream early)
    cut               a stream that ends before its final event
    boom              (Anthropic) an SSE error event in the middle of the stream

Every exchange is kept (request body, status, raw response bytes) so tests can map the
very bytes a gateway would have seen and compare.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CREATED = 1_763_800_000


@dataclass
class Exchange:
    path: str
    request: Any
    status: int
    body: bytes  # the raw response body (SSE bytes for streams)
    streamed: bool
    complete: bool = True  # False if the client went away before the body ended


def _reply(text: str) -> str:
    return f"echo: {text}"


def _words(text: str) -> int:
    return len(text.split())


def _last_user_text(messages: Any) -> str:
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


class StandIn:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._n = 0
        app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> StandIn:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()

    def last(self, path: str | None = None, model: str | None = None) -> Exchange:
        with self._lock:
            for ex in reversed(self.exchanges):
                if (path is None or ex.path == path) and (
                        model is None or (ex.request or {}).get("model") == model):
                    return ex
        raise LookupError(f"no exchange on {path} for {model}")

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for ex in self.exchanges if ex.path == path)

    # -- helpers ------------------------------------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def _keep(self, ex: Exchange) -> None:
        with self._lock:
            self.exchanges.append(ex)

    async def _steer(self, path: str, body: Any, anthropic: bool) -> Response | None:
        """An error or a delay, as the model name asks; None to answer normally."""
        model = body.get("model", "") if isinstance(body, dict) else ""
        status = None
        headers = {}
        if model.startswith("err-"):
            status = int(model[4:7])
        elif model.startswith("flaky-"):
            with self._lock:
                first = model not in self._seen
                self._seen.add(model)
            if first:
                status, headers = 429, {"retry-after-ms": "1"}
        elif model == "slow":
            await asyncio.sleep(1.0)
        if status is None:
            return None
        if anthropic:
            etype = {429: "rate_limit_error", 529: "overloaded_error",
                     400: "invalid_request_error"}.get(status, "api_error")
            err: dict[str, Any] = {"type": "error",
                                   "error": {"type": etype, "message": f"stand-in {status}"}}
        else:
            code = {429: "rate_limit_exceeded", 400: "invalid_value"}.get(status)
            err = {"error": {"message": f"stand-in {status}", "type": "server_error"
                             if status >= 500 else "invalid_request_error",
                             "param": None, "code": code}}
        raw = json.dumps(err).encode()
        self._keep(Exchange(path, body, status, raw, False))
        return Response(raw, status_code=status, media_type="application/json",
                        headers=headers)

    def _plain(self, path: str, body: Any, obj: Any) -> Response:
        raw = json.dumps(obj, ensure_ascii=False).encode()
        self._keep(Exchange(path, body, 200, raw, False))
        return Response(raw, media_type="application/json")

    def _stream(self, path: str, body: Any, events: list[bytes], delay: float = 0.0
                ) -> StreamingResponse:
        ex = Exchange(path, body, 200, b"", True, complete=False)
        self._keep(ex)

        async def gen() -> AsyncIterator[bytes]:
            for chunk in events:
                ex.body += chunk
                yield chunk
                if delay:
                    await asyncio.sleep(delay)
            ex.complete = True

        return StreamingResponse(gen(), media_type="text/event-stream")

    # -- OpenAI -------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        if (r := await self._steer("chat", body, False)) is not None:
            return r
        model = body["model"]
        text = _reply(_last_user_text(body.get("messages")))
        n = int(body.get("n") or 1)
        # an alias answers with a dated snapshot, as the real API does ("gpt-4o" is
        # answered by "gpt-4o-2024-08-06"): the request and response models then differ
        answered = model[len("alias-"):] + "-2026-01-01" if model.startswith("alias-") \
            else model
        cid = f"chatcmpl-{self._next_id()}"
        usage = {"prompt_tokens": _words(json.dumps(body.get("messages"))),
                 "completion_tokens": _words(text) * n}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return self._plain("chat", body, {
                "id": cid, "object": "chat.completion", "created": CREATED, "model": answered,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text,
                                                     "refusal": None},
                             "logprobs": None, "finish_reason": "stop" if i == 0 else "length"}
                            for i in range(n)],
                "usage": usage, "system_fingerprint": "fp_standin"})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        words = ["w"] * 200 if model == "long" else text.split(" ")

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": CREATED,
                   "model": answered, "system_fingerprint": "fp_standin", "choices": choices}
            if include_usage:
                obj["usage"] = None
            obj.update(extra)
            return _sse(obj)

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                          "logprobs": None, "finish_reason": None}])]
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            events.append(chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                  "finish_reason": None}]))
        if model != "cut":
            events.append(chunk([{"index": 0, "delta": {}, "logprobs": None,
                                  "finish_reason": "stop"}]))
            if include_usage:
                events.append(chunk([], usage=usage))
            events.append(b"data: [DONE]\n\n")
        return self._stream("chat", body, events, 0.005 if model == "long" else 0.0)

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        if (r := await self._steer("completions", body, False)) is not None:
            return r
        prompt = body.get("prompt")
        text = _reply(prompt if isinstance(prompt, str) else json.dumps(prompt))
        cid = f"cmpl-{self._next_id()}"
        usage = {"prompt_tokens": _words(str(prompt)), "completion_tokens": _words(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": cid, "object": "text_completion", "created": CREATED,
                "model": body["model"]}
        if not body.get("stream"):
            return self._plain("completions", body, {
                **base, "choices": [{"text": text, "index": 0, "logprobs": None,
                                     "finish_reason": "length"}], "usage": usage})
        events = [_sse({**base, "choices": [{"text": (" " if i else "") + w, "index": 0,
                                            "logprobs": None, "finish_reason": None}]})
                  for i, w in enumerate(text.split(" "))]
        events.append(_sse({**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                                "finish_reason": "length"}]}))
        events.append(b"data: [DONE]\n\n")
        return self._stream("completions", body, events)

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        if (r := await self._steer("embeddings", body, False)) is not None:
            return r
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vec = [round(0.001 * (len(str(text)) + k), 6) for k in range(4)]
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(_words(str(t)) for t in inputs)
        return self._plain("embeddings", body, {
            "object": "list", "data": data, "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def responses(self, request: Request) -> Response:
        body = await request.json()
        if (r := await self._steer("responses", body, False)) is not None:
            return r
        inp = body.get("input")
        text = _reply(inp if isinstance(inp, str) else _last_user_text(inp))
        rid = f"resp_{self._next_id()}"
        usage = {"input_tokens": _words(json.dumps(inp)), "output_tokens": _words(text),
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens_details": {"reasoning_tokens": 0}}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = {"type": "message", "id": f"msg_{rid}", "status": "completed",
                   "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}

        def response(status: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
            return {"id": rid, "object": "response", "created_at": CREATED, "status": status,
                    "model": body["model"], "output": output, "parallel_tool_calls": True,
                    "tool_choice": "auto", "tools": [], "error": None,
                    "incomplete_details": None, "instructions": body.get("instructions"),
                    "metadata": {}, "temperature": body.get("temperature"), "top_p": None,
                    "usage": usage if with_usage else None}

        if not body.get("stream"):
            return self._plain("responses", body, response("completed", [message], True))
        seq = iter(range(1000))
        events = [_sse({"type": "response.created", "sequence_number": next(seq),
                        "response": response("in_progress", [], False)}, "response.created")]
        for w in text.split(" "):
            events.append(_sse({"type": "response.output_text.delta",
                                "sequence_number": next(seq), "item_id": message["id"],
                                "output_index": 0, "content_index": 0, "delta": w + " "},
                               "response.output_text.delta"))
        if body["model"] != "cut":
            events.append(_sse({"type": "response.completed", "sequence_number": next(seq),
                                "response": response("completed", [message], True)},
                               "response.completed"))
        return self._stream("responses", body, events)

    async def models(self, request: Request) -> Response:
        return self._plain("models", None, {"object": "list", "data": [
            {"id": "gpt-standin", "object": "model", "created": CREATED, "owned_by": "kansa"},
        ]})

    # -- Anthropic ----------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        if (r := await self._steer("messages", body, True)) is not None:
            return r
        model = body["model"]
        text = _reply(_last_user_text(body.get("messages")))
        mid = f"msg_{self._next_id()}"
        in_tok = _words(json.dumps(body.get("messages"))) + _words(str(body.get("system", "")))
        out_tok = _words(text)
        if not body.get("stream"):
            return self._plain("messages", body, {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": in_tok, "output_tokens": out_tok,
                          "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0}})
        words = ["w"] * 200 if model == "long" else text.split(" ")
        events = [
            _sse({"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": in_tok, "output_tokens": 1,
                          "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0}}},
                 "message_start"),
            _sse({"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}}, "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        for i, w in enumerate(words):
            if model == "boom" and i == 1:
                events.append(_sse({"type": "error", "error": {
                    "type": "overloaded_error", "message": "Overloaded"}}, "error"))
                break
            events.append(_sse({"type": "content_block_delta", "index": 0, "delta": {
                "type": "text_delta", "text": w if i == 0 else " " + w}},
                "content_block_delta"))
        if model not in ("cut", "boom"):
            events += [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                         "stop_sequence": None},
                      "usage": {"output_tokens": out_tok}}, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ]
        return self._stream("messages", body, events, 0.005 if model == "long" else 0.0)
