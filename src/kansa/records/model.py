"""UsageRecord: one AI call or agent action, named after the OpenTelemetry GenAI conventions.

A record has two halves. The *entry* (what goes into the Merkle tree) holds metadata and
a salted SHA-256 commitment to the content; the *payload* (prompt, response, tool
arguments) never enters the tree and is stored encrypted beside it. Entry bytes are
RFC 8785 (JCS) canonical JSON, so anyone can recompute them.

Flat input shape (one JSON object per line for ``kansa log append``)::

    {"ts": "2026-11-22T09:30:00Z", "system": "support-bot", "subject": "user-7",
     "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
     "gen_ai.usage.input_tokens": 31, "input": "...", "output": "..."}
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

from kansa import _bounds
from kansa._random import random_bytes
from kansa.errors import RecordError
from kansa.ledger.tiles import MAX_ENTRY_SIZE
from kansa.records.attributes import (
    ERROR_TYPE,
    GEN_AI_AGENT_NAME,
    GEN_AI_CONVERSATION_ID,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_RESULT,
    GEN_AI_TOOL_NAME,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)

ENTRY_VERSION = 1
OUTCOMES = ("ok", "error", "timeout", "aborted", "blocked")
KINDS = ("gen_ai.call", "agent.step", "tool.call", "kansa.erasure", "kansa.event")

# input field -> (attribute name, type) for the metadata that goes into the entry
_STR_FIELDS = {
    "system": "system",
    "actor": "actor",
    "app": "app",
    GEN_AI_PROVIDER_NAME: "provider",
    GEN_AI_OPERATION_NAME: "operation",
    GEN_AI_REQUEST_MODEL: "request_model",
    GEN_AI_RESPONSE_MODEL: "response_model",
    GEN_AI_RESPONSE_ID: "response_id",
    GEN_AI_CONVERSATION_ID: "conversation_id",
    GEN_AI_TOOL_NAME: "tool_name",
    GEN_AI_AGENT_NAME: "agent_name",
    ERROR_TYPE: "error_type",
    "outcome": "outcome",
    "kind": "kind",
}
_INT_FIELDS = {
    GEN_AI_USAGE_INPUT_TOKENS: "input_tokens",
    GEN_AI_USAGE_OUTPUT_TOKENS: "output_tokens",
    "status": "status",
}
# content: committed to in the entry, stored encrypted outside the tree
CONTENT_FIELDS = (
    "input",
    "output",
    GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_TOOL_CALL_ARGUMENTS,
    GEN_AI_TOOL_CALL_RESULT,
)
_OTHER = {"ts", "subject", "id", "latency_ms", GEN_AI_RESPONSE_FINISH_REASONS, "attributes"}
MAX_STR = 1024  # metadata strings; content has no such limit (it is not in the entry)


def new_record_id(ts: datetime | None = None) -> str:
    """A UUIDv7-layout id (48-bit milliseconds, then randomness): sortable by time."""
    ms = int((ts.timestamp() if ts else time.time()) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(random_bytes(10), "big")
    value = (
        (ms << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_ts(ts: datetime) -> str:
    """RFC 3339, UTC, microseconds: one spelling per instant, so entries are canonical."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: object, *, line: int | None = None, field_name: str = "ts") -> datetime:
    if not isinstance(value, str):
        raise RecordError("expected an RFC 3339 timestamp string", line=line, field=field_name)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(
            f"{value!r} is not an RFC 3339 timestamp (e.g. 2026-11-22T09:30:00Z)",
            line=line,
            field=field_name,
        ) from None
    if dt.tzinfo is None:
        raise RecordError(
            f"{value!r} has no time zone; add Z or an offset", line=line, field=field_name
        )
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise RecordError(f"{value!r} is out of range in UTC", line=line,
                          field=field_name) from None


@dataclass
class UsageRecord:
    """One model call, agent step or tool call, as kansa records it."""

    system: str
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    kind: str = "gen_ai.call"
    provider: str | None = None
    operation: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: tuple[str, ...] = ()
    conversation_id: str | None = None
    tool_name: str | None = None
    agent_name: str | None = None
    actor: str | None = None
    app: str | None = None
    subject: str | None = None  # the data subject; never written to the entry in clear
    outcome: str = "ok"
    status: int | None = None
    error_type: str | None = None
    latency_ms: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)  # other gen_ai.* scalars
    content: dict[str, Any] = field(default_factory=dict)  # input/output/...: never in the entry
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_record_id(self.ts)
        self.validate()

    def validate(self, line: int | None = None) -> None:
        if not isinstance(self.system, str) or not self.system:
            raise RecordError("a record needs a non-empty 'system'", line=line, field="system")
        if self.outcome not in OUTCOMES:
            raise RecordError(
                f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}",
                line=line,
                field="outcome",
            )
        if self.kind not in KINDS:
            raise RecordError(
                f"kind {self.kind!r} is not one of {', '.join(KINDS)}", line=line, field="kind"
            )
        for name in ("input_tokens", "output_tokens"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise RecordError(
                    "token counts are non-negative integers",
                    line=line,
                    field=f"gen_ai.usage.{name}",
                )
        if self.latency_ms is not None and (
            isinstance(self.latency_ms, bool)
            or not isinstance(self.latency_ms, int | float)
            or not 0 <= self.latency_ms <= 1e15  # false for NaN too; 1e15 ms is 31,000 years
        ):
            raise RecordError("latency_ms is a number from 0 to 1e15", line=line,
                              field="latency_ms")

    # -- parsing ----------------------------------------------------------------------

    @classmethod
    def from_flat(cls, obj: object, *, line: int | None = None) -> UsageRecord:
        """Build a record from the flat OTel-style JSON object; errors name line and field."""
        if not isinstance(obj, Mapping):
            raise RecordError("each line must be a JSON object", line=line)
        kw: dict[str, Any] = {}
        content: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise RecordError("field names must be strings", line=line)
            if value is None:
                continue
            if key in _STR_FIELDS:
                if not isinstance(value, str):
                    raise RecordError(
                        f"expected a string, got {type(value).__name__}", line=line, field=key
                    )
                if len(value) > MAX_STR:
                    raise RecordError(
                        f"longer than {MAX_STR} characters", line=line, field=key
                    )
                kw[_STR_FIELDS[key]] = value
            elif key in _INT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise RecordError(
                        f"expected an integer, got {type(value).__name__}", line=line, field=key
                    )
                if value < 0:
                    raise RecordError("must not be negative", line=line, field=key)
                kw[_INT_FIELDS[key]] = value
            elif key in CONTENT_FIELDS:
                content[key] = value
            elif key == "ts":
                kw["ts"] = parse_ts(value, line=line)
            elif key == "subject":
                if not isinstance(value, str) or not value:
                    raise RecordError("expected a non-empty string", line=line, field=key)
                kw["subject"] = value
            elif key == "id":
                if not isinstance(value, str) or not 1 <= len(value) <= 128:
                    raise RecordError("expected a string of 1-128 characters", line=line, field=key)
                kw["id"] = value
            elif key == "latency_ms":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RecordError("expected a number", line=line, field=key)
                kw["latency_ms"] = value
            elif key == GEN_AI_RESPONSE_FINISH_REASONS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise RecordError("expected a list of strings", line=line, field=key)
                kw["finish_reasons"] = tuple(value)
            elif key == "attributes":
                if not isinstance(value, Mapping):
                    raise RecordError("expected an object", line=line, field=key)
                for k, v in value.items():
                    _check_attribute(k, v, line)
                    attributes[k] = v
            elif key.startswith("gen_ai."):
                _check_attribute(key, value, line)
                attributes[key] = value
            else:
                raise RecordError(
                    "unknown field (content goes in 'input'/'output', other OTel attributes "
                    "start with 'gen_ai.' or go in 'attributes')",
                    line=line,
                    field=key,
                )
        if "system" not in kw:
            raise RecordError("missing required field", line=line, field="system")
        try:
            return cls(content=content, attributes=attributes, **kw)
        except RecordError as e:
            raise e.at(line=line) from None

    def check_encodable(self, line: int | None = None) -> None:
        """Everything appending this record would refuse, found without appending: content
        nested too deeply or not canonical JSON (numbers beyond IEEE doubles, 2**53 and
        more, lone surrogates), metadata that cannot be UTF-8, and an entry over the
        tlog-tiles bound of 65,535 bytes. Errors name the line and field."""
        self.validate(line)
        for key, value in self.content.items():
            if _bounds.depth(value) > _bounds.MAX_DEPTH:
                raise RecordError(f"nested deeper than {_bounds.MAX_DEPTH} levels",
                                  line=line, field=key)
        _canonical_at(self.content, line)
        if self.subject is not None:
            _utf8(self.subject, line, "subject")
        # the entry as it will be, with a pseudonym and a commitment of their real lengths
        entry = self.entry_object(subject_ref=None if self.subject is None else "0" * 32,
                                  commitment="0" * 64 if self.content else None)
        size = len(_canonical_at(entry, line))
        if size > MAX_ENTRY_SIZE:
            raise RecordError(
                f"its ledger entry would be {size} bytes; at most {MAX_ENTRY_SIZE} are "
                "allowed (content fields do not count: move large values to 'input', "
                "'output' or another content field)", line=line)

    # -- the entry ----------------------------------------------------------------------

    def entry_object(self, *, subject_ref: str | None, commitment: str | None) -> dict[str, Any]:
        """The JSON object that becomes the ledger entry (no content, no clear subject)."""
        e: dict[str, Any] = {"v": ENTRY_VERSION, "kind": self.kind, "id": self.id,
                             "ts": format_ts(self.ts), "system": self.system,
                             "outcome": self.outcome}
        for attr_name, key in _ENTRY_KEYS:
            value = getattr(self, attr_name)
            if value is not None:
                e[key] = value
        if self.finish_reasons:
            e[GEN_AI_RESPONSE_FINISH_REASONS] = list(self.finish_reasons)
        if self.latency_ms is not None:
            # round to microseconds; a whole number is written as an integer, as JCS would
            ms = round(float(self.latency_ms), 3)
            e["latency_ms"] = int(ms) if ms.is_integer() else ms
        if self.attributes:
            e["attributes"] = dict(self.attributes)
        if subject_ref is not None:
            e["subject"] = subject_ref
        if commitment is not None:
            e["content"] = {"alg": "sha256-salted-v1", "commitment": commitment}
        return e


_ENTRY_KEYS = [
    ("actor", "actor"),
    ("app", "app"),
    ("provider", GEN_AI_PROVIDER_NAME),
    ("operation", GEN_AI_OPERATION_NAME),
    ("request_model", GEN_AI_REQUEST_MODEL),
    ("response_model", GEN_AI_RESPONSE_MODEL),
    ("response_id", GEN_AI_RESPONSE_ID),
    ("input_tokens", GEN_AI_USAGE_INPUT_TOKENS),
    ("output_tokens", GEN_AI_USAGE_OUTPUT_TOKENS),
    ("conversation_id", GEN_AI_CONVERSATION_ID),
    ("tool_name", GEN_AI_TOOL_NAME),
    ("agent_name", GEN_AI_AGENT_NAME),
    ("status", "status"),
    ("error_type", ERROR_TYPE),
]


def _check_attribute(key: object, value: object, line: int | None) -> None:
    if not isinstance(key, str) or not key or len(key) > 256:
        raise RecordError("attribute names are non-empty strings", line=line, field=str(key))
    if isinstance(value, float) and value != value:
        raise RecordError("NaN is not allowed", line=line, field=key)
    if not isinstance(value, str | int | float | bool) and not (
        isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value)
    ):
        raise RecordError(
            "attributes are scalars or lists of scalars (content belongs in 'input'/'output')",
            line=line,
            field=key,
        )
    if isinstance(value, str) and len(value) > MAX_STR:
        raise RecordError(f"longer than {MAX_STR} characters", line=line, field=key)


def _utf8(text: str, line: int | None, field_name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RecordError(f"contains a lone surrogate (U+{ord(text[e.start]):04X}) at "
                          f"character {e.start}; it cannot be encoded as UTF-8",
                          line=line, field=field_name) from None


def _canonical_at(obj: dict[str, Any], line: int | None) -> bytes:
    """canonical(obj); on failure, find the top-level field at fault and name it."""
    try:
        return canonical(obj)
    except RecordError as whole:
        for key, value in obj.items():
            if isinstance(value, dict) and key == "attributes":
                _canonical_at(value, line)  # name the attribute
            try:
                _utf8(key, line, key)
                canonical(value)
            except RecordError as e:
                raise e.at(line=line, field=key) from None
        raise whole.at(line=line) from None


def canonical(obj: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON bytes.

    The rfc8785 package is pure Python and cost ~0.3 ms per record, the largest part of an
    append. For values where the two provably agree, the C-accelerated json encoder gives
    the same bytes: JCS sorts keys by UTF-16 code units (the same order as Python's for
    keys without characters beyond U+FFFF), escapes exactly what json.dumps escapes with
    ensure_ascii=False, and prints numbers as ECMAScript does, which matches Python's
    repr for integers and for non-integral floats with 1e-4 <= |x| < 1e16. Everything
    else goes to rfc8785. A property test checks the two agree.
    """
    if _fast_ok(obj):
        text = json.dumps(
            obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let rfc8785 name the problem
            pass
    try:
        return bytes(rfc8785.dumps(obj))
    except RecursionError:
        raise RecordError(f"nested deeper than {_bounds.MAX_DEPTH} levels") from None
    except Exception as e:  # rfc8785 raises its own types for non-JSON values
        raise RecordError(f"cannot be canonicalised as JSON (RFC 8785): {_jcs_reason(e)}"
                          ) from None


def _jcs_reason(e: Exception) -> str:
    text = str(e)
    if "safe integer" in text:
        return f"{text} (integers must be below 2**53 in magnitude; send larger ones as strings)"
    if "non-UTF-8" in text or "surrogate" in text:
        return "a string contains a lone surrogate (e.g. \\ud800), which is not Unicode text"
    if "not representable" in text:
        return f"{text} (infinite or NaN numbers, e.g. 1e400, have no JSON form)"
    return text


def _fast_ok(obj: Any, depth: int = 0) -> bool:
    t = type(obj)
    if t is str or obj is None or t is bool:
        return True
    if t is int:
        return bool(-(2**53) < obj < 2**53)  # JCS numbers are IEEE doubles
    if t is float:
        # (non-finite values fail the range test before int() could overflow)
        return bool(1e-4 <= abs(obj) < 1e16 and obj != int(obj))
    if depth > 32:
        return False
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (not k.isascii() and any(ord(c) > 0xFFFF for c in k)):
                return False
            if type(v) is not str and not _fast_ok(v, depth + 1):
                return False
        return True
    if t is list or t is tuple:
        return all(type(v) is str or _fast_ok(v, depth + 1) for v in obj)
    return False
