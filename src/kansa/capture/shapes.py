"""One mapping from a model call to a UsageRecord, shared by the gateway, the SDK wrappers
and (for the record fields) the OpenTelemetry intake, so every path records the same thing.

The wire shapes are OpenAI's (chat completions, completions, embeddings, responses,
models) and Anthropic's Messages API, including their streamed (SSE) forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kansa.records.attributes import (
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_DEFINITIONS,
    KANSA_STREAM,
)
from kansa.records.model import MAX_STR, UsageRecord

# OpenTelemetry GenAI gen_ai.operation.name values, per API path
OPERATIONS = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
    "models": "list_models",
    "messages": "chat",
}


def outcome_for_status(status: int | None) -> str:
    if status is None:
        return "error"
    if status < 400:
        return "ok"
    if status in (408, 504):
        return "timeout"
    return "error"


@dataclass
class CallInfo:
    """Everything known about one call once it has ended, however it ended."""

    system: str
    provider: str  # "openai", "anthropic", ... (gen_ai.provider.name)
    operation: str  # gen_ai.operation.name
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    request: Any = None  # the parsed request body, if it parsed
    response: Any = None  # the parsed response body, or one assembled from a stream
    status: int | None = None
    outcome: str | None = None  # derived from status unless set (aborted, blocked, timeout)
    error_type: str | None = None
    latency_ms: float | None = None
    app: str | None = None
    actor: str | None = None
    subject: str | None = None
    conversation_id: str | None = None
    streamed: bool = False
    record_id: str = ""  # pre-assigned so a response can name its record before it ends
    attributes: dict[str, Any] = field(default_factory=dict)
    shape: str | None = None  # wire shape ("openai", "anthropic") if not named by provider


def _usage(provider: str, response: Any) -> tuple[int | None, int | None]:
    if not isinstance(response, dict):
        return None, None
    u = response.get("usage")
    if not isinstance(u, dict):
        return None, None
    if provider == "anthropic" or "input_tokens" in u:
        i, o = u.get("input_tokens"), u.get("output_tokens")
        if provider == "anthropic" and isinstance(i, int):
            # Anthropic counts cached input separately; OTel's input_tokens is the total
            for k in ("cache_read_input_tokens", "cache_creation_input_tokens"):
                if isinstance(u.get(k), int):
                    i += u[k]
    else:
        i, o = u.get("prompt_tokens"), u.get("completion_tokens")
    return (i if isinstance(i, int) and i >= 0 else None,
            o if isinstance(o, int) and o >= 0 else None)


def _finish_reasons(provider: str, response: Any) -> tuple[str, ...]:
    if not isinstance(response, dict):
        return ()
    if provider == "anthropic":
        r = response.get("stop_reason")
        return (r,) if isinstance(r, str) else ()
    out = []
    for c in response.get("choices") or []:
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str):
            out.append(c["finish_reason"])
    if not out and isinstance(response.get("status"), str) and "output" in response:
        out.append(response["status"])  # Responses API: completed / incomplete
    return tuple(out)


def _input_content(request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return {} if request is None else {"input": request}
    content: dict[str, Any] = {}
    if "messages" in request:
        content[GEN_AI_INPUT_MESSAGES] = request["messages"]
    if "system" in request:  # Anthropic
        content[GEN_AI_SYSTEM_INSTRUCTIONS] = request["system"]
    if "instructions" in request:  # Responses API
        content[GEN_AI_SYSTEM_INSTRUCTIONS] = request["instructions"]
    for key in ("prompt", "input"):
        if key in request:
            content["input"] = request[key]
    if "tools" in request:
        content[GEN_AI_TOOL_DEFINITIONS] = request["tools"]
    return content


def _output_content(provider: str, response: Any) -> dict[str, Any]:
    if not isinstance(response, dict):
        return {} if response is None else {"output": response}
    if provider == "anthropic":
        if "content" in response:
            return {GEN_AI_OUTPUT_MESSAGES: [
                {"role": response.get("role", "assistant"), "content": response.get("content")}
            ]}
        return {"output": response["error"]} if "error" in response else {}
    if "choices" in response:
        msgs = []
        for c in response["choices"]:
            if isinstance(c, dict):
                msgs.append(c.get("message") if "message" in c else {"text": c.get("text")})
        return {GEN_AI_OUTPUT_MESSAGES: msgs}
    if "output" in response:  # Responses API
        return {GEN_AI_OUTPUT_MESSAGES: response["output"]}
    if "error" in response:
        return {"output": response["error"]}
    return {}


def _str(v: Any) -> str | None:
    # metadata strings come from callers and upstreams: keep them within a record's limit
    return v[:MAX_STR] if isinstance(v, str) and v else None


def to_record(call: CallInfo) -> UsageRecord:
    """The UsageRecord for a finished call. Embedding vectors and model lists are not
    content worth keeping: only their shape is recorded."""
    req = call.request if isinstance(call.request, dict) else {}
    resp = call.response if isinstance(call.response, dict) else {}
    shape = call.shape or call.provider
    in_tok, out_tok = _usage(shape, resp)
    content = _input_content(call.request)
    if call.operation not in ("embeddings", "list_models"):
        content.update(_output_content(shape, call.response))
    attributes = dict(call.attributes)
    if call.streamed:
        attributes[KANSA_STREAM] = True
    for src, dst in (("temperature", GEN_AI_REQUEST_TEMPERATURE),
                     ("max_tokens", GEN_AI_REQUEST_MAX_TOKENS),
                     ("top_p", GEN_AI_REQUEST_TOP_P)):
        v = req.get(src)
        # only numbers an RFC 8785 entry can hold (finite, exact as IEEE doubles)
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 2**53:
            attributes[dst] = v
    tool_names = [
        (t.get("function") or {}).get("name") or t.get("name")
        for t in req.get("tools") or [] if isinstance(t, dict)
    ]
    latency = call.latency_ms
    if latency is None:
        latency = (datetime.now(UTC) - call.started).total_seconds() * 1000
    rec = UsageRecord(
        system=call.system,
        ts=call.started,
        provider=call.provider,
        operation=call.operation,
        request_model=_str(req.get("model")),
        response_model=_str(resp.get("model")),
        response_id=_str(resp.get("id")),
        input_tokens=in_tok,
        output_tokens=out_tok,
        finish_reasons=_finish_reasons(shape, resp),
        conversation_id=call.conversation_id,
        tool_name=",".join(n for n in tool_names if isinstance(n, str))[:1024] or None,
        app=call.app,
        actor=call.actor,
        subject=call.subject,
        outcome=call.outcome or outcome_for_status(call.status),
        status=call.status,
        error_type=call.error_type,
        latency_ms=max(0.0, latency),
        attributes=attributes,
        content=content,
        id=call.record_id,
    )
    return rec


# -- streams ---------------------------------------------------------------------------


class StreamAssembler:
    """Rebuilds a final response from SSE events as they pass, without holding the raw
    stream: OpenAI chat/completions chunks, Responses API events, Anthropic events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._buf = b""
        self.response: dict[str, Any] = {}
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str] = {}
        self._blocks: list[dict[str, Any]] = []
        self.done = False
        self.error_type: str | None = None  # set by an error event inside the stream

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while True:
            cut = self._buf.find(b"\n\n")
            if cut < 0:
                # tolerate CRLF framing
                cut2 = self._buf.find(b"\r\n\r\n")
                if cut2 < 0:
                    if len(self._buf) > 1 << 20:  # a runaway event: stop assembling
                        self._buf = b""
                    return
                event, self._buf = self._buf[:cut2], self._buf[cut2 + 4 :]
            else:
                event, self._buf = self._buf[:cut], self._buf[cut + 2 :]
            self._event(event)

    def _event(self, raw: bytes) -> None:
        data_lines = [
            line[5:].lstrip() for line in raw.replace(b"\r", b"").split(b"\n")
            if line.startswith(b"data:")
        ]
        if not data_lines:
            return
        data = b"\n".join(data_lines)
        if data.strip() == b"[DONE]":
            self.done = True
            return
        try:
            obj = json.loads(data)
        except ValueError:
            return
        if isinstance(obj, dict):
            err = obj.get("error")
            if obj.get("type") == "error" or isinstance(err, dict):
                detail = err.get("type") or err.get("code") if isinstance(err, dict) else None
                self.error_type = str(detail or "stream_error")[:128]
            if self.provider == "anthropic":
                self._anthropic(obj)
            else:
                self._openai(obj)

    def _openai(self, obj: dict[str, Any]) -> None:
        r = self.response
        typ = obj.get("type")
        if isinstance(typ, str) and typ.startswith("response."):  # Responses API
            if isinstance(obj.get("response"), dict):
                self.response = dict(obj["response"])
            if typ in ("response.completed", "response.failed", "response.incomplete"):
                self.done = True
            return
        for k in ("id", "model", "created", "object"):
            if k in obj and k not in r:
                r[k] = obj[k]
        if isinstance(obj.get("usage"), dict):
            r["usage"] = obj["usage"]
        for c in obj.get("choices") or []:
            if not isinstance(c, dict):
                continue
            i = c.get("index", 0) if isinstance(c.get("index"), int) else 0
            delta = c.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text is None:
                text = c.get("text")
            if isinstance(text, str):
                self._texts.setdefault(i, []).append(text)
            if isinstance(c.get("finish_reason"), str):
                self._finish[i] = c["finish_reason"]

    def _anthropic(self, obj: dict[str, Any]) -> None:
        typ = obj.get("type")
        if typ == "message_start" and isinstance(obj.get("message"), dict):
            self.response = dict(obj["message"])
            self.response.setdefault("content", [])
        elif typ == "content_block_start" and isinstance(obj.get("content_block"), dict):
            self._blocks.append(dict(obj["content_block"]))
        elif typ == "content_block_delta" and isinstance(obj.get("delta"), dict):
            d = obj["delta"]
            if self._blocks and isinstance(d.get("text"), str):
                self._blocks[-1]["text"] = self._blocks[-1].get("text", "") + d["text"]
            elif self._blocks and isinstance(d.get("partial_json"), str):
                b = self._blocks[-1]
                b["partial_json"] = b.get("partial_json", "") + d["partial_json"]
        elif typ == "message_delta":
            d = obj.get("delta") or {}
            if isinstance(d, dict) and isinstance(d.get("stop_reason"), str):
                self.response["stop_reason"] = d["stop_reason"]
            u = obj.get("usage")
            if isinstance(u, dict):
                usage = dict(self.response.get("usage") or {})
                usage.update(u)
                self.response["usage"] = usage
        elif typ == "message_stop":
            self.done = True

    def outcome(self) -> tuple[str, str] | None:
        """(outcome, error.type) for a stream the upstream ended on its own, or None when it
        ended as a complete, successful stream. The SDK wrappers and the gateway agree on
        this: an error event inside the stream, or an end without the final event, is an
        error, not a success."""
        if self.error_type is not None:
            return "error", self.error_type
        if self.done or (self.provider != "anthropic" and self._finish):
            return None
        return "error", "incomplete_stream"

    def result(self) -> dict[str, Any]:
        """The response assembled so far (complete once ``done``)."""
        if self.provider == "anthropic":
            r = dict(self.response)
            if self._blocks:
                r["content"] = self._blocks
            return r
        r = dict(self.response)
        if self._texts or self._finish:
            idx = sorted(set(self._texts) | set(self._finish))
            r["choices"] = [
                {"index": i, "message": {"role": "assistant",
                                         "content": "".join(self._texts.get(i, []))},
                 "finish_reason": self._finish.get(i)}
                for i in idx
            ]
        return r
