"""A stand-in model provider for ``kansa demo``: OpenAI and Anthropic shapes, on loopback.

It answers instantly with canned text in the language of the question, streams when
asked, and misbehaves on request through the model name:

    fail-<status>   that HTTP status with a provider-style error body
    slow            waits 3 s before answering (to show a gateway timeout)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _answer(body: dict[str, Any]) -> str:
    msgs = body.get("messages") or [{"content": body.get("prompt", "")}]
    last = str(msgs[-1].get("content", "")) if isinstance(msgs[-1], dict) else ""
    if any("\u3040" <= c <= "\u9fff" for c in last):
        return "承知しました。ご質問にお答えします：手続きは三営業日以内に完了します。"
    return "Sure. Your request will be completed within three business days."


def _misbehave(model: str) -> Response | None:
    if model.startswith("fail-") and model[5:].isdigit():
        status = int(model[5:])
        return JSONResponse({"error": {"message": f"stand-in failure {status}",
                                       "type": "server_error"}}, status_code=status)
    return None


async def _chat(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", "stand-in"))
    if (bad := _misbehave(model)) is not None:
        return bad
    if model == "slow":
        await asyncio.sleep(3)
    text = _answer(body)
    words = text.split(" ") if " " in text else [text[i : i + 6] for i in range(0, len(text), 6)]
    usage = {"prompt_tokens": 12, "completion_tokens": len(words),
             "total_tokens": 12 + len(words)}
    cid = f"chatcmpl-standin-{time.monotonic_ns()}"
    if not body.get("stream"):
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": usage,
        })

    async def events() -> AsyncIterator[bytes]:
        for i, w in enumerate(words):
            chunk = {"id": cid, "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": {"content": w + (" " if " " in text
                                                                         else "")},
                                  "finish_reason": "stop" if i == len(words) - 1 else None}]}
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {"id": cid, "object": "chat.completion.chunk", "model": model,
                    "choices": [], "usage": usage}
            yield f"data: {json.dumps(tail)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _messages(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", "stand-in"))
    if (bad := _misbehave(model)) is not None:
        return bad
    text = _answer(body)
    mid = f"msg_standin_{time.monotonic_ns()}"
    usage = {"input_tokens": 14, "output_tokens": 9}
    if not body.get("stream"):
        return JSONResponse({"id": mid, "type": "message", "role": "assistant", "model": model,
                             "content": [{"type": "text", "text": text}],
                             "stop_reason": "end_turn", "usage": usage})

    def ev(name: str, obj: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

    async def events() -> AsyncIterator[bytes]:
        yield ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": 14, "output_tokens": 0}}})
        yield ev("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
        yield ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": text}})
        yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                   "usage": {"output_tokens": 9}})
        yield ev("message_stop", {"type": "message_stop"})

    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": m, "object": "model", "owned_by": "stand-in"}
        for m in ("gpt-4o-mini", "claude-sonnet-4", "slow", "fail-500")
    ]})


def create_standin_app() -> Starlette:
    return Starlette(routes=[
        Route("/v1/chat/completions", _chat, methods=["POST"]),
        Route("/v1/messages", _messages, methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
    ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """An ASGI app served by uvicorn on loopback, in a daemon thread of this process."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto",
        ))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
