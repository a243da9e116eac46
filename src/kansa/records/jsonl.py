"""JSON Lines intake: every line one flat record; errors say which line and field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from kansa.errors import RecordError
from kansa.records.model import UsageRecord

MAX_LINE = 16 * 1024 * 1024


def parse_line(text: str, line: int) -> UsageRecord:
    if len(text) > MAX_LINE:
        raise RecordError(f"line is longer than {MAX_LINE} bytes", line=line)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON: {e.msg} at column {e.colno}", line=line) from None
    except ValueError as e:
        raise RecordError(str(e), line=line) from None
    return UsageRecord.from_flat(obj, line=line)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_lines(lines: Iterable[str]) -> Iterator[UsageRecord | RecordError]:
    """Yield a record, or the error for that line, for every non-blank line."""
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        try:
            yield parse_line(text, n)
        except RecordError as e:
            yield e
