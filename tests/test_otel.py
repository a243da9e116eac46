"""OpenTelemetry intake: real opentelemetry-sdk exports (OTLPSpanExporter over HTTP to the
app under uvicorn) and hand-built OTLP/JSON bodies, into a real kansa.Ledger on SQLite and
PostgreSQL; OTLP/HTTP error handling; fuzzed bodies for both decoders. No mocks."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.applications import Starlette

import kansa
from kansa.capture.otel import (
    Span,
    SpanEvent,
    create_otlp_app,
    otel_records,
    record_from_span,
    spans_from_otlp_json,
    spans_from_otlp_protobuf,
)
from kansa.errors import KansaError
from kansa.ledger.note import Signer
from kansa.ledger.tiles import MAX_ENTRY_SIZE
from kansa.records.model import canonical
from serving import serving

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
T0_ISO = "2026-01-01T00:00:00.000000Z"
MASTER = b"o" * 32


# -- harness ----------------------------------------------------------------------------




@pytest.fixture
def signer() -> Signer:
    return Signer.generate("test.kansa/otel")


@pytest.fixture
def ledger(store_url: str, signer: Signer) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(store_url, signer=signer, master_key=MASTER)
    yield lg
    lg.close()


@pytest.fixture
def app(ledger: kansa.Ledger) -> Starlette:
    return create_otlp_app(ledger)


@pytest.fixture
def url(app: Starlette) -> Iterator[str]:
    with serving(app) as u:
        yield u


def sdk_export(url: str, build: Callable[[Tracer], None], *, batch: bool = False,
               compression: Compression | None = None, service: str = "support-bot") -> None:
    """Export the spans ``build`` makes with the real SDK and OTLP/HTTP exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression,
                                timeout=10)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=100, schedule_delay_millis=50)
        if batch else SimpleSpanProcessor(exporter))
    try:
        build(provider.get_tracer("test.instrumentation", "1.0"))
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()


def by_span(ledger: kansa.Ledger) -> dict[str, kansa.api.StoredRecord]:
    return {r.entry["attributes"]["kansa.otel.span_id"]: r
            for r in ledger.find(with_content=True)}


def hex_ids(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


# -- the three dialects through the real SDK ----------------------------------------------


def test_semconv_spans_from_the_sdk(url: str, ledger: kansa.Ledger, app: Starlette,
                                    store_url: str, signer: Signer) -> None:
    messages_in = [{"role": "user", "parts": [{"type": "text", "content": "Wie spät ist es?"}]}]
    messages_out = [{"role": "assistant", "finish_reason": "stop",
                     "parts": [{"type": "text", "content": "Zehn nach neun."}]}]
    ids: dict[str, tuple[str, str]] = {}
    reader = kansa.Ledger.open(store_url, signer=signer, master_key=MASTER)

    def build(tracer: Tracer) -> None:
        s = tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, start_time=T0,
                              attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": "chatcmpl-123",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 31,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.conversation.id": "conv-9",
            "gen_ai.input.messages": json.dumps(messages_in),
            "gen_ai.output.messages": json.dumps(messages_out),
            "gen_ai.system_instructions": json.dumps([{"type": "text",
                                                       "content": "Be brief."}]),
            "server.address": "api.openai.com",
            "user.id": "user-7",
            "http.request.method": "POST",
        })
        s.end(end_time=T0 + 1_234_500_000)
        ids["ok"] = hex_ids(s)
        # the SimpleSpanProcessor export returned: the record must already be committed,
        # visible through another connection to the store
        assert [r.id for r in reader.find()] != []

        e = tracer.start_span("chat claude", start_time=T0 + 10**9, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4", "error.type": "overloaded_error"})
        e.set_status(Status(StatusCode.ERROR, "the API said 529"))
        e.end(end_time=T0 + 2 * 10**9)
        ids["err"] = hex_ids(e)

        t = tracer.start_span("chat timeout", start_time=T0, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o"})
        t.record_exception(TimeoutError("read timed out"))
        t.set_status(Status(StatusCode.ERROR))
        t.end(end_time=T0 + 30 * 10**9)
        ids["timeout"] = hex_ids(t)

        tool = tracer.start_span("execute_tool get_weather", start_time=T0, attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
            "gen_ai.tool.call.arguments": json.dumps({"location": "Paris"}),
            "gen_ai.tool.call.result": "rainy, 57°F"})
        tool.end(end_time=T0 + 5_000_000)
        ids["tool"] = hex_ids(tool)

        with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER) as h:
            h.set_attribute("http.response.status_code", 200)

    try:
        sdk_export(url, build)
    finally:
        reader.close()
    recs = by_span(ledger)
    assert len(recs) == 4
    assert app.state.otlp_stats.skipped == 1 and app.state.otlp_stats.rejected == 0

    ok = recs[ids["ok"][1]]
    e = ok.entry
    assert e["kind"] == "gen_ai.call" and e["system"] == "support-bot"
    assert e["gen_ai.operation.name"] == "chat" and e["gen_ai.provider.name"] == "openai"
    assert e["gen_ai.request.model"] == "gpt-4o-mini"
    assert e["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert e["gen_ai.response.id"] == "chatcmpl-123"
    assert e["gen_ai.response.finish_reasons"] == ["stop"]
    assert (e["gen_ai.usage.input_tokens"], e["gen_ai.usage.output_tokens"]) == (31, 7)
    assert e["gen_ai.conversation.id"] == "conv-9"
    assert e["outcome"] == "ok" and e["latency_ms"] == 1234.5 and e["ts"] == T0_ISO
    attrs = e["attributes"]
    assert attrs["kansa.otel.trace_id"] == ids["ok"][0]
    assert attrs["kansa.otel.dialect"] == "semconv"
    assert attrs["kansa.otel.scope"] == "test.instrumentation"
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["server.address"] == "api.openai.com"
    assert "http.request.method" not in attrs and "user.id" not in attrs
    text = ok.entry_bytes.decode()
    assert "Wie spät" not in text and "user-7" not in text and "Be brief" not in text
    assert ok.content == {"gen_ai.input.messages": messages_in,
                          "gen_ai.output.messages": messages_out,
                          "gen_ai.system_instructions": [{"type": "text",
                                                          "content": "Be brief."}]}
    assert [r.id for r in ledger.find(subject="user-7")] == [ok.id]

    err = recs[ids["err"][1]].entry
    assert err["outcome"] == "error" and err["error.type"] == "overloaded_error"
    assert err["latency_ms"] == 1000
    assert recs[ids["err"][1]].content == {"kansa.otel.status_message": "the API said 529"}
    to = recs[ids["timeout"][1]].entry
    assert to["outcome"] == "timeout" and to["error.type"] == "TimeoutError"
    tl = recs[ids["tool"][1]]
    assert tl.entry["kind"] == "tool.call" and tl.entry["gen_ai.tool.name"] == "get_weather"
    assert tl.content == {"gen_ai.tool.call.arguments": {"location": "Paris"},
                          "gen_ai.tool.call.result": "rainy, 57°F"}


def test_openllmetry_indexed_spans_from_the_sdk(url: str, ledger: kansa.Ledger) -> None:
    ids = {}

    def build(tracer: Tracer) -> None:
        attrs: dict[str, Any] = {
            "llm.request.type": "chat", "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet",
            "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.prompt_tokens": 120, "gen_ai.usage.completion_tokens": 9,
            "llm.usage.total_tokens": 129, "llm.is_streaming": True,
            "traceloop.association.properties.user_id": "customer-42",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "Bonjour.",
            "gen_ai.completion.0.finish_reason": "end_turn",
            "gen_ai.completion.0.tool_calls.0.name": "translate",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"to": "fr"}',
        }
        for i in range(12):  # index 10 must follow 9, not 1
            attrs[f"gen_ai.prompt.{i}.role"] = "user" if i else "system"
            attrs[f"gen_ai.prompt.{i}.content"] = f"message {i}"
        s = tracer.start_span("anthropic.chat", start_time=T0, attributes=attrs)
        s.end(end_time=T0 + 2_000_000)
        ids["llm"] = hex_ids(s)
        # an OpenLLMetry workflow span: not a model call
        w = tracer.start_span("support.workflow", attributes={
            "traceloop.span.kind": "workflow", "traceloop.entity.input": "{}"})
        w.end()

    sdk_export(url, build)
    recs = by_span(ledger)
    assert list(recs) == [ids["llm"][1]]
    r = recs[ids["llm"][1]]
    e = r.entry
    assert e["gen_ai.provider.name"] == "Anthropic" and e["gen_ai.operation.name"] == "chat"
    assert e["gen_ai.request.model"] == "claude-3-5-sonnet"
    assert e["gen_ai.response.model"] == "claude-3-5-sonnet-20241022"
    assert (e["gen_ai.usage.input_tokens"], e["gen_ai.usage.output_tokens"]) == (120, 9)
    assert e["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert e["latency_ms"] == 2 and e["attributes"]["kansa.otel.dialect"] == "openllmetry"
    assert e["attributes"]["kansa.stream"] is True
    assert e["attributes"]["kansa.otel.trace_id"] == ids["llm"][0]
    assert not any(k.startswith("gen_ai.prompt") for k in e["attributes"])
    assert "message 3" not in r.entry_bytes.decode()
    assert r.content is not None
    assert r.content["gen_ai.input.messages"] == [
        {"role": "user" if i else "system", "content": f"message {i}"} for i in range(12)]
    assert r.content["gen_ai.output.messages"] == [{
        "role": "assistant", "content": "Bonjour.", "finish_reason": "end_turn",
        "tool_calls": [{"name": "translate", "arguments": '{"to": "fr"}'}]}]
    assert [x.id for x in ledger.find(subject="customer-42")] == [r.id]


def test_openinference_spans_from_the_sdk(url: str, ledger: kansa.Ledger) -> None:
    ids = {}

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("RunnableSequence", attributes={
                "openinference.span.kind": "CHAIN", "input.value": "chain input"}):
            s = tracer.start_span("ChatOpenAI", start_time=T0, attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06",
                # the model asked for; llm.model_name is the one that answered
                "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0.2}',
                "llm.provider": "azure", "llm.system": "openai",
                "llm.token_count.prompt": 40, "llm.token_count.completion": 9,
                "llm.token_count.total": 49,
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "Answer in one word.",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": "Capital of France?",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Paris",
                "llm.finish_reason": "stop",
                "input.value": json.dumps({"messages": ["..."]}),
                "input.mime_type": "application/json",
                "output.value": "Paris", "session.id": "sess-1",
            })
            s.end(end_time=T0 + 750_000_000)
            ids["llm"] = hex_ids(s)
            t = tracer.start_span("lookup", start_time=T0, attributes={
                "openinference.span.kind": "TOOL", "tool.name": "lookup_city",
                "input.value": '{"city": "Paris"}', "input.mime_type": "application/json",
                "output.value": "population 2.1M"})
            t.end(end_time=T0 + 1_000_000)
            ids["tool"] = hex_ids(t)
            r = tracer.start_span("vector search", attributes={
                "openinference.span.kind": "RETRIEVER", "llm.model_name": "not-a-call"})
            r.end()

    sdk_export(url, build)
    recs = by_span(ledger)
    assert set(recs) == {ids["llm"][1], ids["tool"][1]}
    llm = recs[ids["llm"][1]]
    e = llm.entry
    assert e["kind"] == "gen_ai.call" and e["gen_ai.operation.name"] == "chat"
    assert e["gen_ai.provider.name"] == "azure"
    assert e["gen_ai.request.model"] == "gpt-4o"
    assert e["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert e["attributes"]["gen_ai.request.temperature"] == 0.2
    assert (e["gen_ai.usage.input_tokens"], e["gen_ai.usage.output_tokens"]) == (40, 9)
    assert e["gen_ai.response.finish_reasons"] == ["stop"]
    assert e["gen_ai.conversation.id"] == "sess-1" and e["latency_ms"] == 750
    assert e["attributes"]["kansa.otel.dialect"] == "openinference"
    assert "parent_span_id" in json.dumps(e["attributes"])  # it ran inside the chain span
    assert llm.content == {
        "gen_ai.input.messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"}],
        "gen_ai.output.messages": [{"role": "assistant", "content": "Paris"}],
        "input": {"messages": ["..."]}, "output": "Paris"}
    assert [x.id for x in ledger.find(subject="sess-1")] == [llm.id]
    tool = recs[ids["tool"][1]]
    assert tool.entry["kind"] == "tool.call" and tool.entry["gen_ai.tool.name"] == "lookup_city"
    assert tool.content == {"gen_ai.tool.call.arguments": {"city": "Paris"},
                            "gen_ai.tool.call.result": "population 2.1M"}


def test_batched_gzip_export_is_all_recorded_and_verifies(url: str, ledger: kansa.Ledger,
                                                          app: Starlette) -> None:
    def build(tracer: Tracer) -> None:
        for i in range(300):
            attrs: dict[str, Any] = {"i": i}
            if i % 3:
                attrs.update({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                              "gen_ai.request.model": f"m-{i % 5}",
                              "gen_ai.usage.input_tokens": i,
                              "gen_ai.input.messages": json.dumps([{"role": "user",
                                                                    "content": f"q{i}"}])})
            tracer.start_span(f"op {i}", attributes=attrs).end()

    sdk_export(url, build, batch=True, compression=Compression.Gzip)
    stats = app.state.otlp_stats
    assert (stats.spans, stats.recorded, stats.skipped, stats.rejected) == (300, 200, 100, 0)
    assert stats.requests >= 3  # batches of at most 100
    tokens = sorted(r.entry["gen_ai.usage.input_tokens"] for r in ledger.find())
    assert tokens == [i for i in range(300) if i % 3]
    assert len(list(ledger.find(model="m-1"))) == 40
    one = next(ledger.find(model="m-2", with_content=True))
    assert one.content is not None
    assert one.content["gen_ai.input.messages"][0]["content"] == \
        f"q{one.entry['gen_ai.usage.input_tokens']}"
    ledger.verify()  # every entry, tile and checkpoint of the live store checks out


def test_deflate_export(url: str, ledger: kansa.Ledger) -> None:
    sdk_export(url, lambda t: t.start_span("x", attributes={
        "gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e-3"}).end(),
        compression=Compression.Deflate)
    [r] = list(ledger.find())
    assert r.entry["gen_ai.operation.name"] == "embeddings"


# -- hand-built OTLP/JSON ---------------------------------------------------------------


def anyv(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # int64 as a decimal string, as the spec writes it
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, list):
        return {"arrayValue": {"values": [anyv(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": anyv(x)} for k, x in v.items()]}}
    return {"stringValue": v}


def kvs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": anyv(v)} for k, v in d.items()]


def jspan(attrs: dict[str, Any], *, start: int = T0, end: int = T0 + 10**9,
          trace_id: str | None = None, span_id: str | None = None, **extra: Any
          ) -> dict[str, Any]:
    return {"traceId": trace_id or os.urandom(16).hex(), "spanId": span_id or os.urandom(8).hex(),
            "name": "span", "kind": 3, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end), "attributes": kvs(attrs), **extra}


def jrequest(spans: list[dict[str, Any]], service: str = "json-svc") -> bytes:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": kvs({"service.name": service})},
        "scopeSpans": [{"scope": {"name": "hand"}, "spans": spans}]}]}).encode()


JSON_HEADERS = {"Content-Type": "application/json"}
PB_HEADERS = {"Content-Type": "application/x-protobuf"}


def test_json_structured_values_events_and_status(url: str, ledger: kansa.Ledger) -> None:
    out_msgs = [{"role": "assistant", "parts": [{"type": "text", "content": "42"}],
                 "finish_reason": "stop"}]
    span = jspan({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.5-pro", "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 2, "gen_ai.request.seed": 2**60,
        "gen_ai.request.stop_sequences": ["END"], "gen_ai.request.top_p": 0.9,
        "gen_ai.input.messages": [{"role": "user",
                                   "parts": [{"type": "text", "content": "6*7?"}]}],
        "gen_ai.tool.definitions": [{"type": "function", "name": "calc"}],
        "enduser.id": "alice", "gen_ai.custom.blob": b"\x00\x01",
    }, trace_id="5B8EFFF798038103D269B633813FC60C", end=T0 + 2_500_000_000,
        events=[{"name": "gen_ai.client.inference.operation.details",
                 "timeUnixNano": str(T0 + 10**9),
                 "attributes": kvs({"gen_ai.output.messages": out_msgs,
                                    "gen_ai.input.messages": "ignored: the span has them"})}],
        status={"code": 2, "message": "quota"})
    r = httpx.post(f"{url}/v1/traces", content=jrequest([span]), headers=JSON_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {}  # full success: partialSuccess left unset
    [rec] = list(ledger.find(with_content=True))
    e = rec.entry
    assert e["system"] == "json-svc" and e["gen_ai.provider.name"] == "gcp.gemini"
    assert e["attributes"]["kansa.otel.trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert e["attributes"]["gen_ai.request.seed"] == str(2**60)  # beyond JSON's safe ints
    assert e["attributes"]["gen_ai.request.stop_sequences"] == ["END"]
    assert e["attributes"]["gen_ai.custom.blob"] == "AAE="
    assert e["outcome"] == "error" and e["error.type"] == "_OTHER"
    assert e["latency_ms"] == 2500 and e["gen_ai.response.finish_reasons"] == ["stop"]
    assert rec.content == {
        "gen_ai.input.messages": [{"role": "user",
                                   "parts": [{"type": "text", "content": "6*7?"}]}],
        "gen_ai.output.messages": out_msgs,
        "gen_ai.tool.definitions": [{"type": "function", "name": "calc"}],
        "kansa.otel.status_message": "quota"}
    assert len(list(ledger.find(subject="alice"))) == 1


def test_json_partial_success_counts_malformed_spans(url: str, ledger: kansa.Ledger,
                                                     app: Starlette) -> None:
    good = jspan({"gen_ai.operation.name": "chat", "gen_ai.request.model": "ok-model"})
    bad_id = jspan({"gen_ai.operation.name": "chat"}, trace_id="xyz")
    bad_tokens = jspan({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": -3})
    no_start = jspan({"gen_ai.operation.name": "chat"}, start=0)
    not_genai = jspan({"db.system": "postgresql"})
    surrogate = jspan({"gen_ai.operation.name": "chat", "gen_ai.prompt": "half \ud800 a pair"})
    spans: list[Any] = [good, bad_id, bad_tokens, no_start, not_genai, "not a span", surrogate]
    r = httpx.post(f"{url}/v1/traces", content=jrequest(spans), headers=JSON_HEADERS)
    assert r.status_code == 200
    ps = r.json()["partialSuccess"]
    assert ps["rejectedSpans"] == "4"
    msg = ps["errorMessage"]
    assert "rejected 4 of 7 spans" in msg and "traceId" in msg and "surrogate" not in msg
    assert "non-negative" in msg and "start time" in msg and "spans[5]" in msg
    # a lone surrogate does not cost the model call its record: kept as "\\ud800" text
    recs = list(ledger.find(with_content=True))
    assert [x.entry.get("gen_ai.request.model") for x in recs] == ["ok-model", None]
    assert recs[1].content == {"input": "half \\ud800 a pair"}
    assert app.state.otlp_stats.skipped == 1


def test_gzip_json_and_empty_requests(url: str, ledger: kansa.Ledger) -> None:
    body = gzip.compress(jrequest([jspan({"gen_ai.operation.name": "chat",
                                          "gen_ai.request.model": "zipped"})]))
    r = httpx.post(f"{url}/v1/traces", content=body,
                   headers={**JSON_HEADERS, "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json() == {}
    assert [x.entry["gen_ai.request.model"] for x in ledger.find()] == ["zipped"]
    for content, headers in ((b"{}", JSON_HEADERS), (b"", PB_HEADERS)):
        r = httpx.post(f"{url}/v1/traces", content=content, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == headers["Content-Type"]
    assert r.content == b""  # an empty ExportTraceServiceResponse


def test_protobuf_partial_success_response(url: str, ledger: kansa.Ledger) -> None:
    def pb_span(trace_id: bytes, model: str) -> trace_pb2.Span:
        return trace_pb2.Span(
            trace_id=trace_id, span_id=os.urandom(8), name="chat",
            start_time_unix_nano=T0, end_time_unix_nano=T0 + 10**6,
            attributes=[common_pb2.KeyValue(key="gen_ai.request.model",
                                            value=common_pb2.AnyValue(string_value=model))])
    req = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        scope_spans=[trace_pb2.ScopeSpans(spans=[pb_span(os.urandom(16), "good"),
                                                 pb_span(b"abc", "bad"),
                                                 pb_span(bytes(16), "zero")])])])
    r = httpx.post(f"{url}/v1/traces", content=req.SerializeToString(), headers=PB_HEADERS)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
    assert resp.HasField("partial_success")
    assert resp.partial_success.rejected_spans == 2
    assert "traceId is 3 bytes" in resp.partial_success.error_message
    assert "all zeroes" in resp.partial_success.error_message
    [rec] = list(ledger.find())
    assert rec.entry["gen_ai.request.model"] == "good" and rec.entry["system"] == "otel"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_oversized_body_the_client_reads_the_413(url: str, ledger: kansa.Ledger) -> None:
    # 25 MB against the default 20 MiB limit: kansa must read the body to its end before
    # answering, or the client, still sending, sees a connection reset instead of the 413
    big = b"\x00" * (25 * 1024 * 1024)
    for path in ("/v1/traces", "/v1/logs"):
        r = httpx.post(f"{url}{path}", content=big, headers=PB_HEADERS, timeout=60)
        assert r.status_code == 413
        assert status_pb2.Status.FromString(r.content).code == 8

    # without a Content-Length (chunked): the limit is found while reading
    def chunks() -> Iterator[bytes]:
        for _ in range(25):
            yield b"{" + b" " * (1024 * 1024 - 1)

    r = httpx.post(f"{url}/v1/traces", content=chunks(), headers=JSON_HEADERS, timeout=60)
    assert r.status_code == 413 and "exceeds" in r.json()["message"]
    assert list(ledger.find()) == []


def jlogs(records: list[dict[str, Any]], service: str = "json-svc") -> bytes:
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": kvs({"service.name": service})},
        "scopeLogs": [{"scope": {"name": "test.logs"}, "logRecords": records}]}]}).encode()


def test_json_logs_join_their_span_and_retries_are_not_recorded_twice(
        url: str, ledger: kansa.Ledger) -> None:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    messages = [{"role": "user", "parts": [{"type": "text", "content": "[tool] hi"}]}]
    details = {"timeUnixNano": str(T0 + 5), "traceId": trace_id, "spanId": span_id,
               "eventName": "gen_ai.client.inference.operation.details",
               "attributes": kvs({"gen_ai.input.messages": messages,
                                  "gen_ai.request.model": "m", "user.id": "u-9"})}
    legacy = {"timeUnixNano": str(T0 + 6), "traceId": trace_id, "spanId": span_id,
              "attributes": kvs({"event.name": "gen_ai.choice"}),
              "body": anyv({"index": 0, "message": {"content": "hello"}})}
    not_genai = {"timeUnixNano": str(T0 + 7), "body": anyv("a plain log line")}
    malformed = {"timeUnixNano": "soon", "eventName": "gen_ai.x"}
    body = jlogs([details, legacy, not_genai, malformed])
    # the log arrives before its span; then both are delivered again (exporter retries)
    for _ in range(2):
        r = httpx.post(f"{url}/v1/logs", content=body, headers=JSON_HEADERS)
        assert r.status_code == 200
        assert r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    spans = jrequest([jspan({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                             "user.id": "u-9"}, trace_id=trace_id, span_id=span_id)])
    for _ in range(2):
        assert httpx.post(f"{url}/v1/traces", content=spans,
                          headers=JSON_HEADERS).status_code == 200
    recs = otel_records(ledger, trace_id, span_id)
    assert sorted(r.entry["kind"] for r in recs) == ["gen_ai.call", "kansa.event",
                                                      "kansa.event"]
    assert ledger.log.size() == 3
    events = {r.entry["attributes"]["kansa.otel.event_name"]: r for r in recs
              if r.entry["kind"] == "kansa.event"}
    d = events["gen_ai.client.inference.operation.details"]
    assert d.content is not None and d.content["gen_ai.input.messages"] == messages
    assert "gen_ai.request.model" not in d.entry  # the call is counted by its span only
    c = events["gen_ai.choice"]
    assert c.content == {"body": {"index": 0, "message": {"content": "hello"}}}
    # a log naming the span's subject is sealed under it: erased with the span's content
    (call,) = [r for r in recs if r.entry["kind"] == "gen_ai.call"]
    assert d.entry["subject"] == call.entry["subject"]
    assert b"u-9" not in d.entry_bytes
    ledger.erase("u-9")
    assert ledger.get(d.index).content_state == "erased"


def test_protobuf_logs(url: str, ledger: kansa.Ledger) -> None:
    req = logs_service_pb2.ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    lr = rl.scope_logs.add().log_records.add()
    lr.time_unix_nano = T0
    lr.trace_id, lr.span_id = os.urandom(16), os.urandom(8)
    lr.event_name = "gen_ai.client.inference.operation.details"
    kv = lr.attributes.add()
    kv.key, kv.value.string_value = "gen_ai.output.messages", '[{"role": "assistant"}]'
    r = httpx.post(f"{url}/v1/logs", content=req.SerializeToString(), headers=PB_HEADERS)
    assert r.status_code == 200
    assert not logs_service_pb2.ExportLogsServiceResponse.FromString(
        r.content).HasField("partial_success")
    (rec,) = ledger.find(with_content=True)
    assert rec.entry["attributes"]["kansa.otel.trace_id"] == lr.trace_id.hex()
    assert rec.content == {"gen_ai.output.messages": [{"role": "assistant"}]}
    assert rec.entry["system"] == "otel"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_http_errors(url: str, ledger: kansa.Ledger, tmp_path: Path, signer: Signer) -> None:
    post = f"{url}/v1/traces"
    # undecodable bodies: 400 with a google.rpc.Status in the request's encoding
    for body in (b"{not json", b"[]", b'{"resourceSpans": 5}', b"\xff\xfe\x00",
                 b'{"resourceSpans": [{"scopeSpans": [{"spans": 7}]}]}', b'{"a": NaN}'):
        r = httpx.post(post, content=body, headers=JSON_HEADERS)
        assert r.status_code == 400, body
        assert r.headers["content-type"] == "application/json" and r.json()["code"] == 3
        assert r.json()["message"]
    r = httpx.post(post, content=b"\x0a\x05\x0a\x03\xff\xff", headers=PB_HEADERS)
    assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "ExportTraceServiceRequest" in status.message
    r = httpx.post(post, content=b"\x1f\x8b garbage", headers={**PB_HEADERS,
                                                             "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in status_pb2.Status.FromString(r.content).message
    r = httpx.post(post, content=gzip.compress(b"{}")[:-6],
                   headers={**JSON_HEADERS, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "truncated" in r.json()["message"]
    # other media types and codings: 415
    for headers in ({"Content-Type": "text/plain"}, {},
                    {**JSON_HEADERS, "Content-Encoding": "br"}):
        r = httpx.post(post, content=b"{}", headers=headers)
        assert r.status_code == 415 and "unsupported" in r.text
    assert httpx.get(post).status_code == 405
    assert list(ledger.find()) == []
    # size limit: 413 on the wire and after decompression (a gzip bomb)
    small = create_otlp_app(ledger, max_body_size=4096)
    with serving(small) as small_url:
        big = jrequest([jspan({"gen_ai.operation.name": "chat", "pad": "x" * 5000})])
        r = httpx.post(f"{small_url}/v1/traces", content=big, headers=JSON_HEADERS)
        assert r.status_code == 413 and "4096" in r.json()["message"]
        bomb = gzip.compress(b"\x00" * 2_000_000)
        assert len(bomb) < 4096
        r = httpx.post(f"{small_url}/v1/traces", content=bomb,
                       headers={**PB_HEADERS, "Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert status_pb2.Status.FromString(r.content).code == 8
        ok = zlib.compress(jrequest([jspan({"gen_ai.operation.name": "chat"})]))
        r = httpx.post(f"{small_url}/v1/traces", content=ok,
                       headers={**JSON_HEADERS, "Content-Encoding": "deflate"})
        assert r.status_code == 200
    assert len(list(ledger.find())) == 1


def test_mounted_under_another_app(ledger: kansa.Ledger) -> None:
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/otel", app=create_otlp_app(ledger))])
    with serving(outer) as u:
        r = httpx.post(f"{u}/otel/v1/traces", headers=JSON_HEADERS,
                       content=jrequest([jspan({"gen_ai.operation.name": "chat"})]))
    assert r.status_code == 200 and len(list(ledger.find())) == 1


# -- the mapping, directly ---------------------------------------------------------------


def mk(attrs: dict[str, Any], **kw: Any) -> Span:
    return Span(trace_id="ab" * 16, span_id="cd" * 8, start_ns=T0, end_ns=T0 + 10**6,
                attributes=attrs, **kw)


def test_mapping_edge_cases() -> None:
    assert record_from_span(mk({"http.route": "/x"})) is None
    assert record_from_span(mk({"openinference.span.kind": "CHAIN",
                                "gen_ai.request.model": "m"})) is None
    # old whole-text prompt/completion events; service.name from the resource argument
    rec = record_from_span(mk({"gen_ai.system": "openai", "gen_ai.request.model": "m"}, events=[
        SpanEvent("gen_ai.content.prompt", T0, {"gen_ai.prompt": '[{"role": "user"}]'}),
    ]), {"service.name": "svc"})
    assert rec is not None and rec.system == "svc" and rec.provider == "openai"
    assert rec.content == {"input": [{"role": "user"}]}
    # clashing indexed paths keep their flat names instead of failing
    rec = record_from_span(mk({"llm.request.type": "completion", "gen_ai.prompt.0": "a",
                               "gen_ai.prompt.0.content": "b"}))
    assert rec is not None and rec.operation == "text_completion"
    assert rec.content["gen_ai.input.messages"] == {"0": "a", "0.content": "b"}
    # OpenInference completions API and embeddings
    rec = record_from_span(mk({"openinference.span.kind": "LLM", "llm.model_name": "davinci",
                               "llm.prompts": ["p1", "p2"],
                               "llm.choices.0.completion.text": "c1"}))
    assert rec is not None and rec.operation == "text_completion"
    assert rec.content == {"input": ["p1", "p2"], "output": "c1"}
    rec = record_from_span(mk({"openinference.span.kind": "EMBEDDING",
                               "embedding.model_name": "text-embedding-3-small",
                               "embedding.embeddings.0.embedding.text": "hello",
                               "embedding.embeddings.0.embedding.vector": [0.1, 0.2]}))
    assert rec is not None and rec.operation == "embeddings"
    assert rec.request_model == "text-embedding-3-small" and rec.content == {"input": "hello"}
    # too large for an entry: refused up front, not when the batch is appended
    with pytest.raises(KansaError, match="entry would be"):
        record_from_span(mk({"gen_ai.operation.name": "chat",
                             **{f"gen_ai.x{i}": "v" * 1000 for i in range(70)}}))
    with pytest.raises(KansaError, match="1024"):
        record_from_span(mk({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m" * 2000}))
    # long or structured unknown gen_ai.* values are content, not entry metadata
    rec = record_from_span(mk({"gen_ai.operation.name": "chat", "gen_ai.x.long": "y" * 2000,
                               "gen_ai.x.map": {"a": 1}}))
    assert rec is not None and set(rec.content) == {"gen_ai.x.long", "gen_ai.x.map"}


# -- fuzzing: only KansaError (or, over HTTP, clean 200/400s) ----------------------------

KEYS = ["gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
        "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
        "gen_ai.usage.prompt_tokens", "gen_ai.response.finish_reasons", "gen_ai.input.messages",
        "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt",
        "gen_ai.prompt.0.content", "gen_ai.prompt.0", "gen_ai.prompt.1.role",
        "gen_ai.completion.0.finish_reason", "gen_ai.completion.0.tool_calls.0.name",
        "llm.request.type", "openinference.span.kind", "llm.model_name", "llm.provider",
        "llm.token_count.prompt", "llm.input_messages.0.message.role",
        "llm.output_messages.0.message.content", "llm.prompts", "llm.prompts.0.prompt.text",
        "llm.choices.0.completion.text", "llm.tools.0.tool.name", "llm.finish_reason",
        "embedding.embeddings.0.embedding.text", "input.value", "input.mime_type",
        "output.value", "user.id", "session.id", "error.type", "gen_ai.tool.name",
        "gen_ai.request.seed", "http.response.status_code", "service.name", "gen_ai.x"]
WORDS = ["chat", "execute_tool", "invoke_agent", "LLM", "TOOL", "EMBEDDING", "CHAIN",
         "completion", "application/json", "[1, 2]", '{"a": [}', "timeout", "",
         "[1e400, -1e999]", "[123456789012345678901234567890]", '["\\ud800"]',
         '{"a": "\\udc00x", "b": "\\ud83d\\ude00"}', "[" * 40 + "]" * 40,
         "[" * 900 + "]" * 900]

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6)
leaf_values = st.one_of(
    st.builds(lambda s: {"stringValue": s}, st.sampled_from(WORDS) | st.text(max_size=12)),
    st.builds(lambda i: {"intValue": i}, st.integers(-2**70, 2**70) | st.text("-0123456789",
                                                                              max_size=22)),
    st.builds(lambda f: {"doubleValue": f},
              st.floats() | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e5", "x"])),
    st.builds(lambda b: {"boolValue": b}, st.booleans()),
    st.builds(lambda b: {"bytesValue": b}, st.sampled_from(["AAE=", "!!", "_-8="])),
    st.just({}), junk)
any_values = st.recursive(leaf_values, lambda inner: st.one_of(
    st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
    st.builds(lambda kv: {"kvlistValue": {"values": kv}}, st.lists(st.fixed_dictionaries(
        {"key": st.sampled_from(KEYS) | st.text(max_size=6), "value": inner}), max_size=3))),
    max_leaves=8)
attr_lists = st.lists(
    st.fixed_dictionaries({"key": st.sampled_from(KEYS) | st.text(max_size=10),
                           "value": any_values}) | junk, max_size=8) | junk
ids16 = st.sampled_from(["ab" * 16, "AB" * 16, "0" * 32, "q" * 32, "qrvM" * 5 + "q8eL==",
                         "ab" * 8]) | junk
times = st.integers(-5, 2**64) | st.text("0123456789", max_size=25) | junk
spans_st = st.fixed_dictionaries({
    "traceId": ids16, "spanId": st.sampled_from(["cd" * 8, "00" * 8, "x"]) | junk,
    "startTimeUnixNano": times, "endTimeUnixNano": times, "attributes": attr_lists,
}, optional={
    "parentSpanId": st.sampled_from(["", "ef" * 8, "zz"]) | junk,
    "name": st.text(max_size=8) | junk, "kind": st.integers(0, 5) | junk,
    "status": st.fixed_dictionaries({"code": st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR"])
                                      | junk, "message": st.text(max_size=8) | junk}) | junk,
    "events": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["gen_ai.client.inference.operation.details", "exception",
                                  "gen_ai.content.prompt"]) | junk,
         "timeUnixNano": times, "attributes": attr_lists}) | junk, max_size=2) | junk,
}) | junk
docs = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries({
    "resource": st.fixed_dictionaries({"attributes": attr_lists}) | junk,
    "scopeSpans": st.lists(st.fixed_dictionaries(
        {"scope": st.fixed_dictionaries({"name": st.text(max_size=5)}) | junk,
         "spans": st.lists(spans_st, max_size=4) | junk}) | junk, max_size=2) | junk,
}) | junk, max_size=2) | junk}) | junk


def decode_and_map(decoder: Callable[[bytes], list[Span]], body: bytes) -> int:
    """Decode and map; returns the records made. Anything but a KansaError fails."""
    try:
        spans = decoder(body)
    except KansaError:
        return 0
    made = 0
    for s in spans:
        try:
            rec = record_from_span(s)
        except KansaError:
            continue
        if rec is not None:
            # what Ledger.append will do: these must not fail once a record is made
            canonical(rec.content)
            entry = canonical(rec.entry_object(subject_ref="s" * 32, commitment="c" * 64))
            assert len(entry) <= MAX_ENTRY_SIZE
            made += 1
    return made


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(docs)
def test_fuzz_json_documents(doc: Any) -> None:
    decode_and_map(spans_from_otlp_json, json.dumps(doc).encode())


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_json_bytes(body: bytes) -> None:
    decode_and_map(spans_from_otlp_json, body)


def sample_protobuf() -> bytes:
    attrs = [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value="chat"))
             for k in ("gen_ai.operation.name", "gen_ai.prompt.0.content")]
    attrs.append(common_pb2.KeyValue(key="gen_ai.usage.input_tokens",
                                     value=common_pb2.AnyValue(int_value=5)))
    attrs.append(common_pb2.KeyValue(key="gen_ai.input.messages", value=common_pb2.AnyValue(
        array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(
            kvlist_value=common_pb2.KeyValueList(values=[common_pb2.KeyValue(
                key="role", value=common_pb2.AnyValue(double_value=float("inf")))]))]))))
    span = trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s",
                          start_time_unix_nano=T0, end_time_unix_nano=T0 + 5,
                          attributes=attrs, status=trace_pb2.Status(code=2))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]).SerializeToString()


def test_sample_protobuf_maps() -> None:
    assert decode_and_map(spans_from_otlp_protobuf, sample_protobuf()) == 1
    [span] = spans_from_otlp_protobuf(sample_protobuf())
    rec = record_from_span(span)
    assert rec is not None and rec.outcome == "error" and rec.input_tokens == 5
    assert rec.content["gen_ai.input.messages"] == [{"role": "Infinity"}]


@FUZZ
@given(st.binary(max_size=300) | st.builds(
    lambda cuts: bytes(b ^ 0xFF if i in cuts else b for i, b in enumerate(sample_protobuf())),
    st.sets(st.integers(0, 400), max_size=3)) | st.builds(
    lambda n: sample_protobuf()[:n], st.integers(0, 400)))
def test_fuzz_protobuf(body: bytes) -> None:
    decode_and_map(spans_from_otlp_protobuf, body)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[str, kansa.Ledger]]:
    with tempfile.TemporaryDirectory() as d:
        lg = kansa.Ledger.open(f"sqlite:///{d}/fuzz.db", signer=Signer.generate("fuzz/otel"),
                               master_key=MASTER)
        try:
            with serving(create_otlp_app(lg)) as u:
                yield u, lg
        finally:
            lg.close()


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(docs.map(lambda d: ("json", json.dumps(d).encode())),
                 st.binary(max_size=200).map(lambda b: ("protobuf", b)),
                 st.binary(max_size=200).map(lambda b: ("json", b))),
       st.booleans())
def test_fuzz_http_never_500(fuzz_server: tuple[str, kansa.Ledger], case: tuple[str, bytes],
                             zipped: bool) -> None:
    u, lg = fuzz_server
    encoding, body = case
    headers = {"Content-Type": "application/json" if encoding == "json"
               else "application/x-protobuf"}
    if zipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    before = lg.log.size()
    expected = decode_and_map(spans_from_otlp_json if encoding == "json"
                              else spans_from_otlp_protobuf,
                              gzip.decompress(body) if zipped else body)
    r = httpx.post(f"{u}/v1/traces", content=body, headers=headers)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert lg.log.size() == before + expected  # every record made was appended
        if encoding == "json":
            assert isinstance(r.json(), dict)
        else:
            trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)


# -- the command line -----------------------------------------------------------------------


def test_cli_otel_serve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "KANSA_HOME": str(home)}
    kansa_cmd = [sys.executable, "-m", "kansa"]
    subprocess.run([*kansa_cmd, "init"], env=env, check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*kansa_cmd, "otel", "serve", "--port", str(port)], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        sdk_export(f"http://127.0.0.1:{port}", lambda t: t.start_span("chat", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "cli-model"}).end())
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/v1/traces" in err
    assert re.search(r"1 spans recorded, 0 skipped", err), err
    with kansa.Ledger.open(home=home) as lg:
        assert [r.entry["gen_ai.request.model"] for r in lg.find()] == ["cli-model"]
