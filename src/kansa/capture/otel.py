"""OpenTelemetry intake: OTLP/HTTP ``/v1/traces`` spans become usage records, and
``/v1/logs`` GenAI events become records joined to their span's (see
:func:`record_from_log`). A span or log delivered twice (an exporter's retry) is recorded
once: record ids derive from trace and span ids (:func:`otel_record_id`).

Three attribute dialects are read, in this order of precedence when a span carries more
than one:

1. The current OpenTelemetry GenAI semantic conventions (semantic-conventions
   docs/gen-ai/gen-ai-spans.md, gen-ai-events.md): ``gen_ai.operation.name``,
   ``gen_ai.provider.name`` (older: ``gen_ai.system``), ``gen_ai.request.model``,
   ``gen_ai.response.model``, ``gen_ai.response.id``, ``gen_ai.response.finish_reasons``,
   ``gen_ai.usage.input_tokens``/``output_tokens`` (older: ``prompt_tokens``/
   ``completion_tokens``), ``gen_ai.conversation.id``, ``gen_ai.tool.name``,
   ``gen_ai.agent.name``, ``error.type``; content in ``gen_ai.input.messages``,
   ``gen_ai.output.messages``, ``gen_ai.system_instructions``, ``gen_ai.tool.definitions``,
   ``gen_ai.tool.call.arguments``/``result`` (structured, or a JSON string "if structured
   format is not supported"), also when carried by a span event named
   ``gen_ai.client.inference.operation.details``.
2. The older indexed attributes OpenLLMetry writes (traceloop/openllmetry,
   packages/opentelemetry-semantic-conventions-ai: ``LLM_PROMPTS = "gen_ai.prompt"``,
   ``LLM_COMPLETIONS = "gen_ai.completion"``, ``LLM_REQUEST_TYPE = "llm.request.type"``,
   ``LLM_USER = "llm.user"``, ``LLM_REQUEST_FUNCTIONS = "llm.request.functions"``):
   ``gen_ai.prompt.N.role``/``.content``/..., ``gen_ai.completion.N.role``/``.content``/
   ``.finish_reason``/``.tool_calls.M.*``; and the deprecated whole-text ``gen_ai.prompt``/
   ``gen_ai.completion`` attributes and ``gen_ai.content.prompt``/``.completion`` events.
3. OpenInference (Arize-ai/openinference spec/semantic_conventions.md):
   ``openinference.span.kind`` (LLM, EMBEDDING, TOOL, AGENT are recorded), ``llm.model_name``
   (the model that answered; the one asked for is ``model`` in the JSON string
   ``llm.invocation_parameters``, whose temperature, max_tokens, top_p are kept too),
   ``llm.request.model_name``/``llm.response.model_name``, ``llm.provider``, ``llm.system``,
   ``llm.token_count.prompt``/``completion``, ``llm.input_messages.N.message.*``,
   ``llm.output_messages.N.message.*``, ``llm.prompts``, ``llm.choices``, ``llm.tools``,
   ``llm.finish_reason``, ``input.value``/``output.value``, ``tool.name``, ``agent.name``,
   ``embedding.model_name``, ``embedding.embeddings.N.embedding.text``.

Spans that are none of these (HTTP, database, framework "chain" spans, ...) map to
``None``: they are counted and skipped, not errors.

Where things go: prompts, completions, messages, tool arguments and results are
*content* (committed to in the entry, encrypted beside it, never in the entry). The
span's start time is the record's ``ts``, its duration the ``latency_ms``; status ERROR (or
an ``error.type``) makes the outcome ``error`` (``timeout`` when the error type says so),
with ``error.type`` (else the exception event's ``exception.type``, else ``_OTHER``, the
semconv fallback value). ``service.name`` of the resource is the record's ``system``
("otel" without one). The data subject is the first of ``user.id`` (OpenInference and
the OTel registry), ``enduser.id`` (its deprecated predecessor),
``traceloop.association.properties.user_id`` (OpenLLMetry), ``llm.user`` (OpenLLMetry: the
API's ``user`` parameter) and ``session.id`` (OpenInference), so that erasure can find
the content (``gen_ai.user``, OpenLLMetry's name for the API's ``user``, comes after
``llm.user``); ``session.id`` is also the conversation id when ``gen_ai.conversation.id``
is absent. The entry keeps ``kansa.otel.trace_id``/``span_id``/``parent_span_id``/
``span_name``/``scope``/``dialect``, the other scalar ``gen_ai.*`` attributes,
``server.address`` and ``server.port``; nothing else of the span (no user ids).

OTLP (opentelemetry-proto docs/specification.md): binary protobuf or the JSON mapping
(lowerCamelCase keys, hex trace/span ids, 64-bit integers as decimal strings or numbers,
enums as integers, unknown fields ignored); gzip (and deflate) request bodies; a 20 MiB
limit after decompression (413, sent once the body has been read to its end, so the
client reads it); 400 with a ``google.rpc.Status`` for undecodable data;
200 with an ``ExportTraceServiceResponse`` in the request's encoding, whose
``partial_success`` counts the spans rejected as malformed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kansa._time import EPOCH as _EPOCH
from kansa.capture.pipeline import Pipeline
from kansa.errors import FormatError, KansaError, RecordError, StorageError
from kansa.ledger.tiles import MAX_ENTRY_SIZE
from kansa.records.attributes import (
    ERROR_TYPE,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_RESULT,
    GEN_AI_TOOL_DEFINITIONS,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    KANSA_EVENT,
    KANSA_OTEL_DIALECT,
    KANSA_OTEL_EVENT_NAME,
    KANSA_OTEL_PARENT_SPAN_ID,
    KANSA_OTEL_SCOPE,
    KANSA_OTEL_SEVERITY,
    KANSA_OTEL_SPAN_ID,
    KANSA_OTEL_SPAN_NAME,
    KANSA_OTEL_STATUS_MESSAGE,
    KANSA_OTEL_TRACE_ID,
    KANSA_STREAM,
)
from kansa.records.model import MAX_STR, UsageRecord, canonical

if TYPE_CHECKING:
    from kansa.api import Appended, Ledger
    from kansa.policy.inline import PolicyHandle

log = logging.getLogger("kansa.otel")

MAX_BODY_SIZE = 20 * 1024 * 1024  # the spec's recommended default, after decompression
TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
JSON_TYPE = "application/json"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_MAX_DEPTH = 64  # nesting of AnyValue arrays/maps, and of dotted attribute paths
_SAFE_INT = 2**53  # JSON numbers are IEEE doubles (RFC 8785): larger ints become strings


class OTLPError(FormatError):
    """An OTLP request body that cannot be decoded, or a span that is malformed."""


@dataclass
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass
class Span:
    """One decoded OTLP span, with its resource's attributes and scope name.

    ``problem`` says why the span is malformed (bad ids, times or attribute values); such
    a span is rejected, counted in the response's ``partial_success``."""

    trace_id: str = ""  # lowercase hex
    span_id: str = ""
    parent_span_id: str = ""
    name: str = ""
    kind: int = 0
    start_ns: int = 0
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    problem: str | None = None


@dataclass
class LogRecord:
    """One decoded OTLP log record (an event when ``event_name`` is set), with its
    resource's attributes and scope name; ``problem`` as for :class:`Span`."""

    trace_id: str = ""  # lowercase hex, "" when the log is outside any span
    span_id: str = ""
    time_ns: int = 0
    observed_ns: int = 0
    severity_number: int = 0
    severity_text: str = ""
    event_name: str = ""
    body: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    problem: str | None = None


class _Bad(Exception):
    """A malformed part of a span (internal: becomes Span.problem)."""


# -- values ------------------------------------------------------------------------------


def _clean_str(s: str) -> str:
    # JSON "\ud800" escapes decode to lone surrogates, which no UTF-8 store can hold. The
    # span still stands for a model call that happened: keep it, the surrogate written as
    # the text "\ud800" (as the gateway records one), rather than lose its record
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _int_value(i: int) -> int | str:
    return i if -_SAFE_INT < i < _SAFE_INT else str(i)


def _float_value(f: float) -> float | str:
    if math.isfinite(f):
        return f
    # the proto3 JSON spellings; JSON (and so an entry) has no NaN or infinities
    return "NaN" if f != f else ("Infinity" if f > 0 else "-Infinity")


# -- protobuf ----------------------------------------------------------------------------


def _pb_any(v: Any, depth: int = 0) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return bool(v.bool_value)
    if kind == "int_value":
        return _int_value(int(v.int_value))
    if kind == "double_value":
        return _float_value(float(v.double_value))
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if depth >= _MAX_DEPTH:
        raise _Bad(f"attribute values nest deeper than {_MAX_DEPTH} levels")
    if kind == "array_value":
        return [_pb_any(x, depth + 1) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_any(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return None  # empty AnyValue (or a kind this receiver does not know)


def _pb_attrs(kvs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = _pb_any(kv.value)
        if value is not None:
            out[kv.key] = value
    return out


def _id_hex(raw: bytes, size: int, what: str, *, optional: bool = False) -> str:
    if optional and not raw:
        return ""
    if len(raw) != size:
        raise _Bad(f"{what} is {len(raw)} bytes, not {size}")
    if not any(raw):
        raise _Bad(f"{what} is all zeroes (invalid)")
    return raw.hex()


def _pb_span(sp: Any, resource: dict[str, Any], scope: str) -> Span:
    span = Span(resource=resource, scope=scope)
    try:
        span.trace_id = _id_hex(sp.trace_id, 16, "traceId")
        span.span_id = _id_hex(sp.span_id, 8, "spanId")
        span.parent_span_id = _id_hex(sp.parent_span_id, 8, "parentSpanId", optional=True)
        span.name = sp.name
        span.kind = int(sp.kind)
        span.start_ns = int(sp.start_time_unix_nano)
        span.end_ns = int(sp.end_time_unix_nano)
        span.attributes = _pb_attrs(sp.attributes)
        span.events = [
            SpanEvent(ev.name, int(ev.time_unix_nano), _pb_attrs(ev.attributes))
            for ev in sp.events
        ]
        span.status_code = int(sp.status.code)
        span.status_message = sp.status.message
    except _Bad as e:
        span.problem = str(e)
    return span


def spans_from_otlp_protobuf(body: bytes) -> list[Span]:
    """Decode a binary protobuf ``ExportTraceServiceRequest``. Raises :class:`OTLPError`
    if the body does not decode; a malformed span comes back with ``problem`` set."""
    try:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    except Exception as e:  # DecodeError, and whatever else a hostile body provokes
        raise OTLPError(f"the body is not a protobuf ExportTraceServiceRequest: {e}") from None
    out: list[Span] = []
    for i, rs in enumerate(req.resource_spans):
        try:
            resource = _pb_attrs(rs.resource.attributes)
        except _Bad as e:
            raise OTLPError(f"resourceSpans[{i}].resource: {e}") from None
        for ss in rs.scope_spans:
            scope = ss.scope.name
            out.extend(_pb_span(sp, resource, scope) for sp in ss.spans)
    return out


def _pb_log(lr: Any, resource: dict[str, Any], scope: str) -> LogRecord:
    log_ = LogRecord(resource=resource, scope=scope)
    try:
        log_.trace_id = _id_hex(lr.trace_id, 16, "traceId", optional=True)
        log_.span_id = _id_hex(lr.span_id, 8, "spanId", optional=True)
        log_.time_ns = int(lr.time_unix_nano)
        log_.observed_ns = int(lr.observed_time_unix_nano)
        log_.severity_number = int(lr.severity_number)
        log_.severity_text = lr.severity_text
        log_.event_name = getattr(lr, "event_name", "")
        log_.body = _pb_any(lr.body) if lr.HasField("body") else None
        log_.attributes = _pb_attrs(lr.attributes)
    except _Bad as e:
        log_.problem = str(e)
    return log_


def logs_from_otlp_protobuf(body: bytes) -> list[LogRecord]:
    """Decode a binary protobuf ``ExportLogsServiceRequest`` (as spans_from_otlp_protobuf)."""
    try:
        req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
    except Exception as e:
        raise OTLPError(f"the body is not a protobuf ExportLogsServiceRequest: {e}") from None
    out: list[LogRecord] = []
    for i, rl in enumerate(req.resource_logs):
        try:
            resource = _pb_attrs(rl.resource.attributes)
        except _Bad as e:
            raise OTLPError(f"resourceLogs[{i}].resource: {e}") from None
        for sl in rl.scope_logs:
            out.extend(_pb_log(lr, resource, sl.scope.name) for lr in sl.log_records)
    return out


# -- JSON --------------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-fA-F]*")
_DECIMAL = re.compile(r"-?[0-9]{1,20}")


def _js_int(v: Any, what: str) -> int:
    if isinstance(v, bool):
        raise _Bad(f"{what} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and _DECIMAL.fullmatch(v):
        return int(v)  # proto3 JSON writes 64-bit integers as decimal strings
    raise _Bad(f"{what} is not an integer")


def _js_float(v: Any, what: str) -> float:
    if isinstance(v, bool):
        raise _Bad(f"{what} is not a number")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if v in special:
            return special[v]
        try:
            return float(v)
        except ValueError:
            pass
    raise _Bad(f"{what} is not a number")


def _js_any(v: Any, where: str, depth: int = 0) -> Any:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _Bad(f"{where} is not an AnyValue object")
    if "stringValue" in v:
        s = v["stringValue"]
        if not isinstance(s, str):
            raise _Bad(f"{where}.stringValue is not a string")
        return _clean_str(s)
    if "boolValue" in v:
        b = v["boolValue"]
        if not isinstance(b, bool):
            raise _Bad(f"{where}.boolValue is not a boolean")
        return b
    if "intValue" in v:
        return _int_value(_js_int(v["intValue"], f"{where}.intValue"))
    if "doubleValue" in v:
        return _float_value(_js_float(v["doubleValue"], f"{where}.doubleValue"))
    if "bytesValue" in v:
        raw = v["bytesValue"]
        try:
            if not isinstance(raw, str):
                raise ValueError
            data = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
        except (ValueError, binascii.Error):
            raise _Bad(f"{where}.bytesValue is not base64") from None
        return base64.b64encode(data).decode("ascii")
    if depth >= _MAX_DEPTH and ("arrayValue" in v or "kvlistValue" in v):
        raise _Bad(f"attribute values nest deeper than {_MAX_DEPTH} levels")
    if "arrayValue" in v:
        values = _js_list(v["arrayValue"], "values", f"{where}.arrayValue")
        return [_js_any(x, f"{where}.arrayValue.values[{i}]", depth + 1)
                for i, x in enumerate(values)]
    if "kvlistValue" in v:
        values = _js_list(v["kvlistValue"], "values", f"{where}.kvlistValue")
        return _js_kvs(values, f"{where}.kvlistValue.values", depth + 1)
    return None


def _js_list(obj: Any, key: str, where: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not an object")
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _Bad(f"{where}.{key} is not an array")
    return v


def _js_kvs(kvs: Any, where: str, depth: int = 0) -> dict[str, Any]:
    if kvs is None:
        return {}
    if not isinstance(kvs, list):
        raise _Bad(f"{where} is not an array")
    out: dict[str, Any] = {}
    for i, kv in enumerate(kvs):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise _Bad(f"{where}[{i}] is not a {{key, value}} object")
        value = _js_any(kv.get("value"), f"{where}[{i}].value", depth)
        if value is not None:
            out[_clean_str(kv["key"])] = value
    return out


def _js_id(v: Any, size: int, what: str, *, optional: bool = False) -> str:
    if v is None or v == "":
        if optional:
            return ""
        raise _Bad(f"{what} is missing")
    if not isinstance(v, str):
        raise _Bad(f"{what} is not a string")
    if len(v) == 2 * size and _HEX.fullmatch(v):
        raw = bytes.fromhex(v)
    else:
        # some exporters use protobuf's own JSON mapping, which writes bytes as base64
        try:
            raw = base64.b64decode(v, validate=True)
        except (ValueError, binascii.Error):
            raise _Bad(f"{what} is not {2 * size} hex digits") from None
        if len(raw) != size:
            raise _Bad(f"{what} is not {2 * size} hex digits")
    return _id_hex(raw, size, what)


def _js_span(sp: Any, where: str, resource: dict[str, Any], scope: str) -> Span:
    span = Span(resource=resource, scope=scope)
    try:
        if not isinstance(sp, dict):
            raise _Bad(f"{where} is not an object")
        span.trace_id = _js_id(sp.get("traceId"), 16, "traceId")
        span.span_id = _js_id(sp.get("spanId"), 8, "spanId")
        span.parent_span_id = _js_id(sp.get("parentSpanId"), 8, "parentSpanId", optional=True)
        name = sp.get("name", "")
        if not isinstance(name, str):
            raise _Bad("name is not a string")
        span.name = _clean_str(name)
        span.kind = _js_int(sp.get("kind", 0), "kind")
        span.start_ns = _js_int(sp.get("startTimeUnixNano", 0), "startTimeUnixNano")
        span.end_ns = _js_int(sp.get("endTimeUnixNano", 0), "endTimeUnixNano")
        span.attributes = _js_kvs(sp.get("attributes"), "attributes")
        events = sp.get("events")
        if events is not None and not isinstance(events, list):
            raise _Bad("events is not an array")
        for j, ev in enumerate(events or []):
            if not isinstance(ev, dict):
                raise _Bad(f"events[{j}] is not an object")
            ev_name = ev.get("name", "")
            if not isinstance(ev_name, str):
                raise _Bad(f"events[{j}].name is not a string")
            span.events.append(SpanEvent(
                _clean_str(ev_name),
                _js_int(ev.get("timeUnixNano", 0), f"events[{j}].timeUnixNano"),
                _js_kvs(ev.get("attributes"), f"events[{j}].attributes"),
            ))
        status = sp.get("status")
        if status is not None:
            if not isinstance(status, dict):
                raise _Bad("status is not an object")
            code = status.get("code", 0)
            named = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
            span.status_code = (named[code] if isinstance(code, str) and code in named
                                else _js_int(code, "status.code"))
            message = status.get("message", "")
            if not isinstance(message, str):
                raise _Bad("status.message is not a string")
            span.status_message = _clean_str(message)
    except _Bad as e:
        span.problem = f"{where}: {e}"
    return span


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_Item = TypeVar("_Item")


def _otlp_json_items(body: bytes, request: str, outer: str, inner: str, items: str,
                     make: Callable[[Any, str, dict[str, Any], str], _Item]) -> list[_Item]:
    """Walk an OTLP/JSON export request (``resourceSpans`` / ``scopeSpans`` / ``spans``,
    or the same for logs), making one item per leaf with its resource attributes and
    scope name. A malformed envelope raises :class:`OTLPError` naming where; a malformed
    leaf is ``make``'s to report on the item."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise OTLPError(f"the body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise OTLPError(f"the body is not an {request} JSON object")
    out: list[_Item] = []
    try:
        for i, rx in enumerate(_js_list(doc, outer, "request")):
            where = f"{outer}[{i}]"
            if not isinstance(rx, dict):
                raise _Bad(f"{where} is not an object")
            res = rx.get("resource")
            if res is not None and not isinstance(res, dict):
                raise _Bad(f"{where}.resource is not an object")
            resource = _js_kvs((res or {}).get("attributes"), f"{where}.resource.attributes")
            for j, sx in enumerate(_js_list(rx, inner, where)):
                sw = f"{where}.{inner}[{j}]"
                if not isinstance(sx, dict):
                    raise _Bad(f"{sw} is not an object")
                scope_obj = sx.get("scope")
                scope = scope_obj.get("name", "") if isinstance(scope_obj, dict) else ""
                scope = _clean_str(scope) if isinstance(scope, str) else ""
                for k, leaf in enumerate(_js_list(sx, items, sw)):
                    out.append(make(leaf, f"{sw}.{items}[{k}]", resource, scope))
    except _Bad as e:
        raise OTLPError(str(e)) from None
    return out


def spans_from_otlp_json(body: bytes) -> list[Span]:
    """Decode an OTLP/JSON ``ExportTraceServiceRequest``. Raises :class:`OTLPError` if the
    body is not JSON of that shape; a malformed span comes back with ``problem`` set."""
    return _otlp_json_items(body, "ExportTraceServiceRequest", "resourceSpans", "scopeSpans",
                            "spans", _js_span)


def _js_log(lr: Any, where: str, resource: dict[str, Any], scope: str) -> LogRecord:
    log_ = LogRecord(resource=resource, scope=scope)
    try:
        if not isinstance(lr, dict):
            raise _Bad(f"{where} is not an object")
        log_.trace_id = _js_id(lr.get("traceId"), 16, "traceId", optional=True)
        log_.span_id = _js_id(lr.get("spanId"), 8, "spanId", optional=True)
        log_.time_ns = _js_int(lr.get("timeUnixNano", 0), "timeUnixNano")
        log_.observed_ns = _js_int(lr.get("observedTimeUnixNano", 0), "observedTimeUnixNano")
        sev = lr.get("severityNumber", 0)
        log_.severity_number = 0 if isinstance(sev, str) else _js_int(sev, "severityNumber")
        for key in ("severityText", "eventName"):
            v = lr.get(key, "")
            if not isinstance(v, str):
                raise _Bad(f"{key} is not a string")
            if key == "severityText":
                log_.severity_text = _clean_str(v)
            else:
                log_.event_name = _clean_str(v)
        log_.body = _js_any(lr.get("body"), "body")
        log_.attributes = _js_kvs(lr.get("attributes"), "attributes")
    except _Bad as e:
        log_.problem = f"{where}: {e}"
    return log_


def logs_from_otlp_json(body: bytes) -> list[LogRecord]:
    """Decode an OTLP/JSON ``ExportLogsServiceRequest`` (as spans_from_otlp_json)."""
    return _otlp_json_items(body, "ExportLogsServiceRequest", "resourceLogs", "scopeLogs",
                            "logRecords", _js_log)


# -- record ids ----------------------------------------------------------------------------


def otel_record_id(what: str, trace_id: str, span_id: str, time_ns: int,
                   extra: bytes = b"") -> str:
    """The record id of a span (or of a log), a function of what identifies it, so that an
    exporter's retry of the same span finds the record the first export made: the
    ledger's index of record ids is the memory of what was recorded, across restarts.
    UUIDv7 layout like every record id (48-bit milliseconds of the span's start, so ids
    still sort by time); the 74 random bits are a SHA-256 of the trace and span ids
    (and, for a log, of the log record itself)."""
    ms = max(0, time_ns // 1_000_000) & ((1 << 48) - 1)
    h = hashlib.sha256(b"kansa/otel/v1\0" + what.encode() + b"\0" + trace_id.encode()
                       + b"\0" + span_id.encode() + b"\0" + extra).digest()
    rand = int.from_bytes(h[:10], "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) \
        | (rand & ((1 << 62) - 1))
    x = f"{value:032x}"
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


# -- spans to records --------------------------------------------------------------------

# OpenInference span kinds recorded, and the GenAI operation each stands for
_OI_KINDS = {"LLM": None, "EMBEDDING": "embeddings", "TOOL": "execute_tool",
             "AGENT": "invoke_agent"}
# OpenLLMetry llm.request.type values -> gen_ai.operation.name
_REQUEST_TYPES = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings",
                  "embeddings": "embeddings", "rerank": "rerank"}
_SUBJECT_KEYS = ("user.id", "enduser.id", "traceloop.association.properties.user_id",
                 "llm.user", "gen_ai.user", "session.id")
# content attributes of the current conventions (structured, or JSON strings)
_CONTENT_KEYS = (GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES,
                 GEN_AI_SYSTEM_INSTRUCTIONS, GEN_AI_TOOL_DEFINITIONS,
                 GEN_AI_TOOL_CALL_ARGUMENTS, GEN_AI_TOOL_CALL_RESULT)
# attributes turned into record fields (not repeated among the entry's attributes)
_FIELD_KEYS = frozenset({
    GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL, GEN_AI_RESPONSE_ID, GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens", GEN_AI_CONVERSATION_ID, GEN_AI_TOOL_NAME,
    GEN_AI_AGENT_NAME, "gen_ai.prompt", "gen_ai.completion",
    # an end-user id (OpenLLMetry: the OpenAI API's ``user``) is the subject: pseudonymised
    "gen_ai.user",
})
# indexed (flattened list) attribute families
_INDEXED = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.",
            "llm.output_messages.", "llm.prompts.", "llm.choices.", "llm.tools.",
            "llm.request.functions.", "embedding.embeddings.")
_KEPT_OTHER = ("server.address", "server.port")


_GENAI_MARKERS = (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, "gen_ai.system",
                  GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_MODEL, GEN_AI_INPUT_MESSAGES,
                  GEN_AI_OUTPUT_MESSAGES, "llm.request.type")


def _dialect(a: Mapping[str, Any], indexed: Mapping[str, Any]) -> str | None:
    """Which convention a span follows, or None if it is not a GenAI/LLM span."""
    kind = a.get("openinference.span.kind")
    if isinstance(kind, str):  # OpenInference says what the span is: trust it
        return "openinference" if kind.upper() in _OI_KINDS else None
    if "gen_ai.prompt." in indexed or "gen_ai.completion." in indexed \
            or "llm.request.type" in a:
        return "openllmetry"
    if any(k in a for k in _GENAI_MARKERS):
        return "semconv"
    if "llm.model_name" in a:
        return "openinference"
    return None


def _sort_key(k: str) -> tuple[int, str]:
    s = k.lstrip("0")
    return len(s), s


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        conv = {k: _listify(v) for k, v in node.items()}
        if conv and all(k.isascii() and k.isdigit() for k in conv):
            return [conv[k] for k in sorted(conv, key=_sort_key)]
        return conv
    return node


def _unflatten(items: list[tuple[str, Any]]) -> Any:
    """``[("0.role", "user"), ("0.content", "hi")]`` -> ``[{"role": "user", "content": "hi"}]``.
    Numeric path segments become list positions (in index order, gaps closed); a path
    that clashes with another keeps its flat name."""
    root: dict[str, Any] = {}
    for path, value in items:
        parts = path.split(".")
        node: dict[str, Any] | None = root
        if len(parts) > _MAX_DEPTH:
            node = None
        else:
            for p in parts[:-1]:
                assert node is not None
                nxt = node.setdefault(p, {})
                if not isinstance(nxt, dict):
                    node = None
                    break
                node = nxt
        if node is not None and not isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = value
        else:
            root[path] = value
    return _listify(root)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


_CONTENT_JSON = json.JSONDecoder(parse_constant=_reject_constant,
                                 parse_int=lambda t: _int_value(int(t)),
                                 parse_float=lambda t: _float_value(float(t)))


def _maybe_json(v: Any) -> Any:
    """Structured values arrive as such, or as JSON strings where an SDK cannot send them.
    Parsed like AnyValues are converted, so content always canonicalises (RFC 8785): big
    integers and non-finite numbers become strings; lone surrogates keep the string."""
    if isinstance(v, str) and v[:1] in ("[", "{"):
        try:
            parsed = _CONTENT_JSON.decode(v)
            if _SURROGATE_ESCAPE.search(v):
                json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            return v
        if v.count("[") + v.count("{") > _MAX_DEPTH and not _shallow(parsed):
            return v
        return parsed
    return v


def _shallow(obj: Any) -> bool:
    """Whether ``obj`` nests at most _MAX_DEPTH deep (iteratively: it may be deeper)."""
    stack = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= _MAX_DEPTH:
                return False
            stack.extend((x, depth + 1) for x in (node.values() if isinstance(node, dict)
                                                  else node))
    return True


def _strip_wrapper(items: Any, key: str) -> Any:
    """OpenInference nests each list item under its kind: ``[{"message": {...}}]``."""
    if not isinstance(items, list):
        return items
    return [x[key] if isinstance(x, dict) and len(x) == 1 and key in x else x for x in items]


def _text(a: Mapping[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = a.get(k)
        if isinstance(v, str) and v:
            if len(v) > MAX_STR:
                raise RecordError(f"longer than {MAX_STR} characters", field=k)
            return v
    return None


def _count(a: Mapping[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = a.get(k)
        if v is None:
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise RecordError("token counts are non-negative integers", field=k)
        return v
    return None


def _ts(ns: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError:
        raise RecordError("the span's start time is out of range", field="startTimeUnixNano")\
            from None


def _effective_attributes(span: Span) -> dict[str, Any]:
    """The span's attributes, gaps filled from the events that carry GenAI details."""
    extra: dict[str, Any] = {}
    for ev in span.events:
        if ev.name == DETAILS_EVENT:
            extra.update(ev.attributes)
        elif ev.name == "gen_ai.content.prompt" and "gen_ai.prompt" in ev.attributes:
            extra["gen_ai.prompt"] = ev.attributes["gen_ai.prompt"]
        elif ev.name == "gen_ai.content.completion" and "gen_ai.completion" in ev.attributes:
            extra["gen_ai.completion"] = ev.attributes["gen_ai.completion"]
    if not extra:
        return span.attributes
    extra.update(span.attributes)
    return extra


def _scalar_ok(v: Any) -> bool:
    if isinstance(v, str):
        return len(v) <= MAX_STR
    if isinstance(v, bool | int | float):
        return True
    return isinstance(v, list) and all(
        isinstance(x, bool | int | float) or (isinstance(x, str) and len(x) <= MAX_STR)
        for x in v
    )


def record_from_span(span: Span, resource_attrs: Mapping[str, Any] | None = None
                     ) -> UsageRecord | None:
    """The usage record for one span, or None if it is not a GenAI/LLM span.

    ``resource_attrs`` defaults to the span's own resource. Raises :class:`OTLPError` for a
    span the decoder found malformed and :class:`RecordError` for one whose GenAI
    attributes are invalid (negative token counts, say)."""
    if span.problem is not None:
        raise OTLPError(span.problem)
    res = span.resource if resource_attrs is None else resource_attrs
    a = _effective_attributes(span)
    indexed: dict[str, list[tuple[str, Any]]] = {}
    for k, v in a.items():
        if k.startswith(_INDEXED):
            for prefix in _INDEXED:
                if k.startswith(prefix):
                    indexed.setdefault(prefix, []).append((k[len(prefix):], v))
                    break
    dialect = _dialect(a, indexed)
    if dialect is None:
        return None

    def family(prefix: str) -> Any:
        items = indexed.get(prefix)
        return _unflatten(items) if items else None

    oi_kind = a.get("openinference.span.kind")
    oi_kind = oi_kind.upper() if isinstance(oi_kind, str) else None
    # -- operation and kind
    operation = _text(a, GEN_AI_OPERATION_NAME)
    if operation is None:
        req_type = a.get("llm.request.type")
        if isinstance(req_type, str) and req_type in _REQUEST_TYPES:
            operation = _REQUEST_TYPES[req_type]
        elif oi_kind is not None:
            operation = _OI_KINDS.get(oi_kind) or (
                "text_completion" if "llm.prompts" in a or "llm.prompts." in indexed
                else "chat")
    kind = {"execute_tool": "tool.call", "invoke_agent": "agent.step",
            "create_agent": "agent.step"}.get(operation or "", "gen_ai.call")

    # -- content
    content: dict[str, Any] = {}
    for k in _CONTENT_KEYS:
        if k in a:
            content[k] = _maybe_json(a[k])
    prompts = family("gen_ai.prompt.")
    if prompts is not None and GEN_AI_INPUT_MESSAGES not in content:
        content[GEN_AI_INPUT_MESSAGES] = prompts
    completions = family("gen_ai.completion.")
    if completions is not None and GEN_AI_OUTPUT_MESSAGES not in content:
        content[GEN_AI_OUTPUT_MESSAGES] = completions
    for old, new in (("gen_ai.prompt", "input"), ("gen_ai.completion", "output")):
        if old in a and not isinstance(a[old], dict):
            content[new] = _maybe_json(a[old])
    oi_in = _strip_wrapper(family("llm.input_messages."), "message")
    if oi_in is not None and GEN_AI_INPUT_MESSAGES not in content:
        content[GEN_AI_INPUT_MESSAGES] = oi_in
    oi_out = _strip_wrapper(family("llm.output_messages."), "message")
    if oi_out is not None and GEN_AI_OUTPUT_MESSAGES not in content:
        content[GEN_AI_OUTPUT_MESSAGES] = oi_out
    tools = family("llm.tools.") or family("llm.request.functions.")
    if tools is not None and GEN_AI_TOOL_DEFINITIONS not in content:
        content[GEN_AI_TOOL_DEFINITIONS] = _strip_wrapper(tools, "tool")
    in_key, out_key = ((GEN_AI_TOOL_CALL_ARGUMENTS, GEN_AI_TOOL_CALL_RESULT)
                       if kind == "tool.call" else ("input", "output"))
    for src, dst in (("input.value", in_key), ("output.value", out_key)):
        v = a.get(src)
        if v is not None and dst not in content:
            mime = a.get(src.replace(".value", ".mime_type"))
            content[dst] = _maybe_json(v) if mime == "application/json" else v
    texts = [
        _dig(p, "prompt", "text") if isinstance(p, dict) else p
        for p in (_as_list(a.get("llm.prompts")) or _as_list(family("llm.prompts.")) or [])
    ]
    if texts and "input" not in content:
        content["input"] = texts[0] if len(texts) == 1 else texts
    choices = [
        _dig(c, "completion", "text") if isinstance(c, dict) else c
        for c in (_as_list(family("llm.choices.")) or [])
    ]
    if choices and "output" not in content:
        content["output"] = choices[0] if len(choices) == 1 else choices
    emb = _strip_wrapper(family("embedding.embeddings."), "embedding")
    if isinstance(emb, list) and "input" not in content:
        # the texts embedded, not the vectors (as the gateway keeps only their shape)
        emb_texts = [e.get("text") for e in emb if isinstance(e, dict) and "text" in e]
        if emb_texts:
            content["input"] = emb_texts[0] if len(emb_texts) == 1 else emb_texts
    if span.status_message:
        content[KANSA_OTEL_STATUS_MESSAGE] = span.status_message

    # -- finish reasons: the semconv array, else per completion/output message, else
    # OpenInference's single llm.finish_reason
    fr: Any = a.get(GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(fr, str):
        fr = [fr]
    for source in (completions, content.get(GEN_AI_OUTPUT_MESSAGES)):
        if not fr and isinstance(source, list):
            fr = [m["finish_reason"] for m in source
                  if isinstance(m, dict) and "finish_reason" in m]
    if not fr and isinstance(a.get("llm.finish_reason"), str):
        fr = [a["llm.finish_reason"]]
    if not isinstance(fr, list | None) or not all(
        isinstance(x, str) and len(x) <= MAX_STR for x in fr or ()
    ):
        raise RecordError("finish reasons are strings", field=GEN_AI_RESPONSE_FINISH_REASONS)
    finish = tuple(fr or ())

    # -- outcome
    error_type = _text(a, ERROR_TYPE)
    if span.status_code == 2 and error_type is None:
        for ev in span.events:
            if ev.name == "exception":
                error_type = _text(ev.attributes, "exception.type")
                if error_type:
                    break
        error_type = error_type or "_OTHER"
    outcome = "ok"
    if error_type is not None:
        outcome = "timeout" if "timeout" in error_type.lower() else "error"

    # -- latency and time
    if span.start_ns <= 0:
        raise RecordError("the span has no start time", field="startTimeUnixNano")
    latency = (span.end_ns - span.start_ns) / 1e6 if span.end_ns >= span.start_ns else None

    # -- who
    subject = _subject(a)
    system = _system(res)

    provider = _text(a, GEN_AI_PROVIDER_NAME, "gen_ai.system", "llm.provider", "llm.system")
    # OpenInference's llm.model_name is the model that answered (the response's); the
    # model asked for is in llm.invocation_parameters, a JSON string of the request's
    # parameters (openinference-instrumentation-openai)
    params = _maybe_json(a.get("llm.invocation_parameters"))
    params = params if isinstance(params, dict) else {}
    asked = params.get("model") if isinstance(params.get("model"), str) else None
    if asked is not None and len(asked) > MAX_STR:
        raise RecordError(f"longer than {MAX_STR} characters", field="llm.invocation_parameters")
    request_model = _text(a, GEN_AI_REQUEST_MODEL, "llm.request.model_name") or asked
    if request_model is None:
        # an embedding's model is named by the request; llm.model_name is the request's
        # only outside OpenInference (where no one else writes it)
        request_model = _text(a, "embedding.model_name") or (
            None if dialect == "openinference" else _text(a, "llm.model_name"))
    response_model = _text(a, GEN_AI_RESPONSE_MODEL, "llm.response.model_name",
                           "llm.model_name")

    # -- the entry's attributes: trace ids, then the other scalar gen_ai.* attributes
    attributes: dict[str, Any] = {KANSA_OTEL_TRACE_ID: span.trace_id,
                                  KANSA_OTEL_SPAN_ID: span.span_id,
                                  KANSA_OTEL_DIALECT: dialect}
    if span.parent_span_id:
        attributes[KANSA_OTEL_PARENT_SPAN_ID] = span.parent_span_id
    if span.name:
        attributes[KANSA_OTEL_SPAN_NAME] = span.name[:MAX_STR]
    if span.scope:
        attributes[KANSA_OTEL_SCOPE] = span.scope[:MAX_STR]
    if a.get("llm.is_streaming") is True or a.get("gen_ai.request.stream") is True \
            or params.get("stream") is True:
        attributes[KANSA_STREAM] = True
    for src, dst in (("temperature", GEN_AI_REQUEST_TEMPERATURE),
                     ("max_tokens", GEN_AI_REQUEST_MAX_TOKENS),
                     ("max_completion_tokens", GEN_AI_REQUEST_MAX_TOKENS),
                     ("top_p", GEN_AI_REQUEST_TOP_P)):
        v = params.get(src)
        if dst not in a and isinstance(v, int | float) and not isinstance(v, bool):
            attributes[dst] = v
    # gen_ai.system stays beside gen_ai.provider.name only if the two disagree
    skip = {"gen_ai.system"} if a.get("gen_ai.system") in (provider, None) else set()
    for k, v in a.items():
        if k in skip or k in _FIELD_KEYS or k in content or k in _CONTENT_KEYS \
                or k in _SUBJECT_KEYS or k.startswith(_INDEXED):
            continue
        if k.startswith("gen_ai.") or k in _KEPT_OTHER:
            if _scalar_ok(v):
                attributes[k] = v
            else:  # structured or long: it is content, not metadata
                content[k] = v

    rec = UsageRecord(
        system=system,
        ts=_ts(span.start_ns),
        kind=kind,
        provider=provider,
        operation=operation,
        request_model=request_model,
        response_model=response_model,
        response_id=_text(a, GEN_AI_RESPONSE_ID),
        input_tokens=_count(a, GEN_AI_USAGE_INPUT_TOKENS, "gen_ai.usage.prompt_tokens",
                            "llm.token_count.prompt"),
        output_tokens=_count(a, GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.completion_tokens",
                             "llm.token_count.completion"),
        finish_reasons=finish,
        conversation_id=_text(a, GEN_AI_CONVERSATION_ID, "session.id"),
        tool_name=_text(a, GEN_AI_TOOL_NAME) or (
            _text(a, "tool.name") if oi_kind == "TOOL" else None),
        agent_name=_text(a, GEN_AI_AGENT_NAME) or (
            _text(a, "agent.name") if oi_kind == "AGENT" else None),
        subject=subject,
        outcome=outcome,
        status=_status(a.get("http.response.status_code")),
        error_type=error_type,
        latency_ms=latency,
        attributes=attributes,
        content=content,
        id=otel_record_id("span", span.trace_id, span.span_id, span.start_ns),
    )
    _check_appendable(rec)
    return rec


def _subject(a: Mapping[str, Any]) -> str | None:
    for k in _SUBJECT_KEYS:
        v = a.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            v = str(v)
        if isinstance(v, str) and v:
            return v
    return None


def _system(res: Mapping[str, Any]) -> str:
    system = res.get("service.name")
    if not isinstance(system, str) or not system or len(system) > MAX_STR:
        return "otel"
    return system


LOG_EVENT = "otel.log"  # the kansa.event attribute of a record made from an OTLP log


def record_from_log(log_: LogRecord) -> UsageRecord | None:
    """The record for one OTLP log record that is a GenAI event (its ``event_name``, or
    the older ``event.name`` attribute, starts with ``gen_ai.``), else None (skipped).

    How logs join spans. ``opentelemetry-instrumentation-openai-v2`` in its ``event_only``
    content mode (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``,
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only``) puts the messages
    only in a ``gen_ai.client.inference.operation.details`` log record emitted in the
    span's context (its legacy mode: one ``gen_ai.user.message``/``gen_ai.choice``... log
    per message). Logs and spans travel in separate exports, in either order, possibly
    minutes apart, and either may be retried or lost. So a log becomes its own record,
    durable before its export is answered 200, never held in memory waiting for a span
    that may never come: kind ``kansa.event``, attribute ``kansa.event`` = ``otel.log``,
    ``kansa.otel.event_name``, and the same ``kansa.otel.trace_id``/``span_id`` as the
    span's record, which is the join (``otel_records(ledger, trace_id, span_id)`` gives
    both). Its attributes and body are content: encrypted, committed to, sealed under the
    same subject as the span's (``user.id``, ... in the log), erased with it. Nothing of
    the log's model, token counts or status is repeated in the entry, so a call is
    counted once, by its span's record."""
    if log_.problem is not None:
        raise OTLPError(log_.problem)
    a = log_.attributes
    name = log_.event_name
    if not name and isinstance(a.get("event.name"), str):
        name = a["event.name"]
    if not name.startswith("gen_ai."):
        return None
    ns = log_.time_ns or log_.observed_ns
    if ns <= 0:
        raise RecordError("the log record has no time", field="timeUnixNano")
    content: dict[str, Any] = {k: _maybe_json(v) for k, v in a.items()
                               if k not in _SUBJECT_KEYS and k != "event.name"}
    if log_.body is not None:
        content["body"] = _maybe_json(log_.body)
    attributes: dict[str, Any] = {KANSA_EVENT: LOG_EVENT,
                                  KANSA_OTEL_EVENT_NAME: name[:MAX_STR]}
    if log_.trace_id:
        attributes[KANSA_OTEL_TRACE_ID] = log_.trace_id
    if log_.span_id:
        attributes[KANSA_OTEL_SPAN_ID] = log_.span_id
    if log_.scope:
        attributes[KANSA_OTEL_SCOPE] = log_.scope[:MAX_STR]
    if log_.severity_text:
        attributes[KANSA_OTEL_SEVERITY] = log_.severity_text[:MAX_STR]
    # what identifies this log among the span's logs, stable across an exporter's retry
    ident = json.dumps([name, log_.time_ns, log_.observed_ns, a, log_.body],
                       sort_keys=True, ensure_ascii=True, default=repr).encode()
    rec = UsageRecord(
        system=_system(log_.resource),
        ts=_ts(ns),
        kind="kansa.event",
        conversation_id=_text(a, GEN_AI_CONVERSATION_ID, "session.id"),
        subject=_subject(a),
        attributes=attributes,
        content=content,
        id=otel_record_id("log", log_.trace_id, log_.span_id, ns,
                          hashlib.sha256(ident).digest()),
    )
    _check_appendable(rec)
    return rec


def otel_records(ledger: Ledger, trace_id: str, span_id: str, *,
                 with_content: bool = True) -> list[Any]:
    """The records of one span: its call record and the records of its logs (by the
    ``kansa.otel.trace_id``/``span_id`` attributes; a scan of the log's entries)."""
    out = []
    for r in ledger.find(with_content=with_content, limit=None):
        at = r.entry.get("attributes") or {}
        if at.get(KANSA_OTEL_TRACE_ID) == trace_id and at.get(KANSA_OTEL_SPAN_ID) == span_id:
            out.append(r)
    return out


def _dig(v: Any, *keys: str) -> Any:
    for k in keys:
        v = v.get(k) if isinstance(v, dict) else None
    return v


def _as_list(v: Any) -> list[Any] | None:
    return v if isinstance(v, list) else None


def _status(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000 else None


def _check_appendable(rec: UsageRecord) -> None:
    """Refuse now what Ledger.append would refuse later, so one span cannot fail a whole
    batch: an entry over the tlog-tiles size limit. (Content always canonicalises: the
    decoders normalise numbers JSON cannot hold and refuse lone surrogates.) The C JSON
    encoder gives the canonical length but for some float spellings, so the exact RFC 8785
    encoding is only computed for entries anywhere near the limit."""
    entry = rec.entry_object(subject_ref="0" * 32 if rec.subject is not None else None,
                             commitment="0" * 64 if rec.content else None)
    try:
        size = len(json.dumps(entry, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8"))
    except ValueError as e:  # also UnicodeEncodeError
        raise RecordError(f"the span's entry cannot be encoded: {e}") from None
    if size > MAX_ENTRY_SIZE // 2:
        size = len(canonical(entry))
    if size > MAX_ENTRY_SIZE:
        raise RecordError(f"the span's entry would be {size} bytes; entries hold at most "
                          f"{MAX_ENTRY_SIZE}")


# -- intake ------------------------------------------------------------------------------


@dataclass
class IntakeResult:
    spans: int = 0  # spans, or log records for /v1/logs
    recorded: int = 0
    skipped: int = 0  # not GenAI/LLM spans (or logs that are not GenAI events)
    rejected: int = 0  # malformed
    duplicates: int = 0  # already recorded (an exporter's retry): accepted, not recorded
    problems: list[str] = field(default_factory=list)
    appended: list[Appended] = field(default_factory=list)
    what: str = "spans"

    def error_message(self) -> str:
        shown = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"rejected {self.rejected} of {self.spans} {self.what}: {shown}{more}"


class InFlight:
    """Record ids being appended by this process right now. An exporter that times out
    retries while the first export may still be committing: the retry waits for that
    commit and then finds the record in the ledger's index instead of appending a
    second one. (Between processes serving one store the index alone decides: two
    deliveries of one span at the same instant to two processes can both append.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Event] = {}

    def append_new(self, ledger: Ledger, records: list[UsageRecord]
                   ) -> tuple[list[Appended], int]:
        """Append the records whose id the ledger does not hold yet; (appended,
        duplicates). Durable on return."""
        appended: list[Appended] = []
        duplicates = 0
        pending = records
        while pending:
            mine: list[UsageRecord] = []
            waits: list[threading.Event] = []
            later: list[UsageRecord] = []
            done = threading.Event()
            with self._lock:
                for rec in pending:
                    other = self._busy.get(rec.id)
                    if other is not None:  # another request (or this batch) has it
                        waits.append(other)
                        later.append(rec)
                    else:
                        self._busy[rec.id] = done
                        mine.append(rec)
            try:
                store = ledger.log.store
                new = [r for r in mine if store.index_of(r.id) is None]
                duplicates += len(mine) - len(new)
                if new:
                    appended.extend(ledger.append_many(new))
            finally:
                with self._lock:
                    for rec in mine:
                        if self._busy.get(rec.id) is done:
                            del self._busy[rec.id]
                done.set()
            for ev in waits:
                ev.wait()
            pending = later  # now recorded by the other request, or free to record
        return appended, duplicates


_INFLIGHT = InFlight()


def _ingest(ledger: Ledger, items: list[Any], to_record: Callable[[Any], UsageRecord | None],
            what: str, inflight: InFlight | None, pipeline: Pipeline | None = None,
            ) -> IntakeResult:
    result = IntakeResult(spans=len(items), what=what)
    records: list[UsageRecord] = []
    for item in items:
        try:
            rec = to_record(item)
        except KansaError as e:
            result.rejected += 1
            sid = f"span {item.span_id}: " if item.span_id and item.problem is None else ""
            result.problems.append(f"{sid}{e}")
            continue
        if rec is None:
            result.skipped += 1
        else:
            if pipeline:  # the capture pipeline's after moment (nothing runs before)
                pipeline.after(pipeline.open("otel", at=rec.ts), rec)
            records.append(rec)
    if records:
        result.appended, result.duplicates = (inflight or _INFLIGHT).append_new(ledger, records)
    result.recorded = len(result.appended)
    return result


def ingest(ledger: Ledger, spans: list[Span], *, inflight: InFlight | None = None,
           pipeline: Pipeline | None = None) -> IntakeResult:
    """Turn spans into records and append them durably (one stream of group commits); a
    span already recorded (same trace and span id: an exporter's retry) is counted in
    ``duplicates``, not recorded again. ``pipeline``: the capture pipeline whose after
    moment each record runs through. Blocking: call it from a worker thread."""
    return _ingest(ledger, spans, record_from_span, "spans", inflight, pipeline)


def ingest_logs(ledger: Ledger, logs: list[LogRecord], *, inflight: InFlight | None = None,
                pipeline: Pipeline | None = None) -> IntakeResult:
    """As :func:`ingest`, for OTLP log records (see :func:`record_from_log`)."""
    return _ingest(ledger, logs, record_from_log, "log records", inflight, pipeline)


@dataclass
class IntakeStats:
    """Counters since the app started (``app.state.otlp_stats``)."""

    requests: int = 0
    spans: int = 0
    recorded: int = 0
    skipped: int = 0
    rejected: int = 0
    duplicates: int = 0
    logs: int = 0
    logs_recorded: int = 0


class _TooLarge(Exception):
    pass


def _decompress(body: bytes, coding: str, limit: int) -> bytes:
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0:
        wbits = zlib.MAX_WBITS  # HTTP "deflate" is the zlib format...
    else:
        wbits = -zlib.MAX_WBITS  # ...though some clients send raw deflate
    out = bytearray()
    data = body
    try:
        while data:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise _TooLarge
            if not d.eof:
                raise OTLPError(f"the {coding} body is truncated")
            data = d.unused_data if wbits > 16 else b""  # gzip allows several members
    except zlib.error as e:
        raise OTLPError(f"the body is not valid {coding}: {e}") from None
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _status_body(encoding: str, code: int, message: str) -> bytes:
    """A google.rpc.Status (code = field 1, message = field 2), as the spec asks of every
    4xx/5xx response. Encoded here: two fields do not justify a dependency."""
    if encoding == "json":
        return json.dumps({"code": code, "message": message}).encode()
    m = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(m)) + m


_MEDIA = {"protobuf": "application/x-protobuf", "json": JSON_TYPE}
_GRPC_INVALID_ARGUMENT, _GRPC_UNAVAILABLE, _GRPC_INTERNAL = 3, 14, 13
_GRPC_RESOURCE_EXHAUSTED = 8


def _fail(encoding: str, status: int, code: int, message: str) -> Response:
    return Response(_status_body(encoding, code, message), status_code=status,
                    media_type=_MEDIA[encoding])


def _success(encoding: str, result: IntakeResult, logs: bool = False) -> Response:
    rejected = result.rejected
    message = result.error_message() if rejected else ""
    if encoding == "json":
        doc: dict[str, Any] = {}
        if rejected:
            key = "rejectedLogRecords" if logs else "rejectedSpans"
            doc["partialSuccess"] = {key: str(rejected), "errorMessage": message}
        body = json.dumps(doc).encode()
    elif logs:
        lresp = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            lresp.partial_success.rejected_log_records = rejected
            lresp.partial_success.error_message = message
        body = lresp.SerializeToString()
    else:
        tresp = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            tresp.partial_success.rejected_spans = rejected
            tresp.partial_success.error_message = message
        body = tresp.SerializeToString()
    return Response(body, status_code=200, media_type=_MEDIA[encoding])


# an oversized body is read to its end and thrown away before the 413 is sent: a server
# that answers and closes while the client is still sending makes the client's kernel see
# a reset, and the exporter never reads the 413. Past this much, the connection is cut.
_DRAIN_FACTOR = 8


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None (after draining it) if it exceeds ``limit``."""
    declared = request.headers.get("content-length", "")
    body = bytearray()
    over = declared.isdigit() and int(declared) > limit
    drained = 0
    async for chunk in request.stream():
        if over:
            drained += len(chunk)
            if drained > limit * _DRAIN_FACTOR:
                break
            continue
        body += chunk
        if len(body) > limit:
            over = True
            drained = len(body)
            body = bytearray()
    return None if over else bytes(body)


def create_otlp_app(ledger: Ledger, *, max_body_size: int = MAX_BODY_SIZE,
                    path: str = TRACES_PATH, logs_path: str = LOGS_PATH,
                    policy: PolicyHandle | None = None,
                    pipeline: Pipeline | None = None) -> Starlette:
    """A Starlette app serving OTLP/HTTP ``POST /v1/traces`` and ``POST /v1/logs`` into
    ``ledger``.

    Mountable under another app (the routes are relative). The ledger stays the caller's:
    the app does not close it. A 200 means every recorded span or log is durable; spans
    and logs already recorded (an exporter's retry) are acknowledged, not recorded
    twice. Each record runs through the capture pipeline's after moment: ``pipeline``,
    else :meth:`Pipeline.default` (``policy`` judged into the record, then the
    ``kansa.stages`` entry points); ``app.state.pipeline`` keeps it."""
    if pipeline is None:
        pipeline = Pipeline.default(policy)
    stats = IntakeStats()
    inflight = InFlight()
    span_decoders: dict[str, Callable[[bytes], list[Span]]] = {
        "protobuf": spans_from_otlp_protobuf, "json": spans_from_otlp_json}
    log_decoders: dict[str, Callable[[bytes], list[LogRecord]]] = {
        "protobuf": logs_from_otlp_protobuf, "json": logs_from_otlp_json}

    def work(body: bytes, coding: str, encoding: str, logs: bool) -> IntakeResult:
        raw = _decompress(body, coding, max_body_size)
        if logs:
            return ingest_logs(ledger, log_decoders[encoding](raw), inflight=inflight,
                               pipeline=pipeline)
        return ingest(ledger, span_decoders[encoding](raw), inflight=inflight,
                      pipeline=pipeline)

    async def export(request: Request, logs: bool) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in PROTOBUF_TYPES:
            encoding = "protobuf"
        elif media == JSON_TYPE:
            encoding = "json"
        else:
            return Response(
                f"unsupported Content-Type {media or '(none)'!r}: OTLP/HTTP takes "
                "application/x-protobuf or application/json\n", 415, media_type="text/plain")
        coding = request.headers.get("content-encoding", "").strip().lower()
        if coding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            return Response(f"unsupported Content-Encoding {coding!r}: use gzip or none\n",
                            415, media_type="text/plain")
        stats.requests += 1
        body = await _read_body(request, max_body_size)
        too_large = (f"the request body exceeds {max_body_size} bytes; send smaller "
                     "batches")
        if body is None:
            resp = _fail(encoding, 413, _GRPC_RESOURCE_EXHAUSTED, too_large)
            resp.headers["connection"] = "close"
            return resp
        try:
            result = await run_in_threadpool(work, body, coding, encoding, logs)
        except _TooLarge:
            return _fail(encoding, 413, _GRPC_RESOURCE_EXHAUSTED, too_large)
        except OTLPError as e:
            return _fail(encoding, 400, _GRPC_INVALID_ARGUMENT, str(e))
        except StorageError as e:
            log.error("OTLP intake could not append: %s", e)
            return _fail(encoding, 503, _GRPC_UNAVAILABLE, f"the ledger is unavailable: {e}")
        except KansaError as e:
            log.error("OTLP intake failed: %s", e)
            return _fail(encoding, 500, _GRPC_INTERNAL, str(e))
        if logs:
            stats.logs += result.spans
            stats.logs_recorded += result.recorded
        else:
            stats.spans += result.spans
            stats.recorded += result.recorded
        stats.skipped += result.skipped
        stats.rejected += result.rejected
        stats.duplicates += result.duplicates
        if result.rejected:
            log.warning("OTLP intake: %s", result.error_message())
        return _success(encoding, result, logs)

    async def traces(request: Request) -> Response:
        return await export(request, False)

    async def logs_(request: Request) -> Response:
        return await export(request, True)

    app = Starlette(routes=[Route(path, traces, methods=["POST"]),
                            Route(logs_path, logs_, methods=["POST"])])
    app.state.otlp_stats = stats
    app.state.pipeline = pipeline
    app.state.ledger = ledger
    return app
