"""Making a gateway record recordable: usage estimated when the upstream gave none, and a
record that failed to canonicalise escaped rather than lost.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from kansa.capture.gateway_request import _esc
from kansa.errors import EntryTooLargeError, RecordError
from kansa.records.model import UsageRecord


def _strings(v: Any, out: list[str], depth: int = 0) -> None:
    if isinstance(v, str):
        out.append(v)
    elif depth < 32 and isinstance(v, dict):
        for x in v.values():
            _strings(x, out, depth + 1)
    elif depth < 32 and isinstance(v, list):
        for x in v:
            _strings(x, out, depth + 1)


def _estimate_usage(rec: UsageRecord) -> None:
    """No usage from the upstream: count tokens roughly (4 characters a token)."""
    ins: list[str] = []
    outs: list[str] = []
    for k, v in rec.content.items():
        _strings(v, outs if k == "gen_ai.output.messages" or k == "output" else ins)
    if not ins and not outs:
        return
    rec.input_tokens = (sum(map(len, ins)) + 3) // 4
    if rec.operation != "embeddings":
        rec.output_tokens = (sum(map(len, outs)) + 3) // 4
    rec.attributes["kansa.usage.estimated"] = True


def _escape_record(rec: UsageRecord) -> None:
    """Make a record that failed to canonicalise recordable: content as ASCII JSON text,
    every other string with its lone surrogates as "\\udXXX" text."""
    rec.content = {_esc(k): json.dumps(v) for k, v in rec.content.items()}
    rec.finish_reasons = tuple(_esc(r[:64]) for r in rec.finish_reasons[:16])
    rec.attributes = {_esc(k): _esc(v) if isinstance(v, str) else v if isinstance(v, bool) or (
        isinstance(v, int | float) and abs(v) < 2**53) else _esc(str(v)[:64])
        for k, v in rec.attributes.items()}
    rec.attributes["kansa.content.escaped"] = True
    for f in fields(rec):
        v = getattr(rec, f.name)
        if isinstance(v, str):
            setattr(rec, f.name, _esc(v))


# what Ledger's preparation of a record can raise for the record's own sake (nothing queued)
_UNRECORDABLE = (RecordError, EntryTooLargeError, ValueError, TypeError)  # + UnicodeError
