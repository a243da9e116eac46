"""JSON Lines intake: every line one flat record; errors say which line and field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TextIO

from kansa import _bounds
from kansa.errors import RecordError
from kansa.records.model import UsageRecord

MAX_LINE = 16 * 1024 * 1024


def parse_line(text: str, line: int) -> UsageRecord:
    """One line, checked completely: JSON, the record schema, canonical encoding of the
    entry and content, and the entry size bound. A line that passes will append."""
    if len(text) > MAX_LINE:
        raise RecordError(f"line is longer than {MAX_LINE} characters", line=line)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:  # the C decoder's own guard, far below the C stack's limit
        raise RecordError(f"nested deeper than {_bounds.MAX_DEPTH} levels", line=line) \
            from None
    except json.JSONDecodeError as e:
        raise RecordError(f"not valid JSON: {e.msg} at column {e.colno}", line=line) from None
    except ValueError as e:  # NaN/Infinity, integers too long to convert
        raise RecordError(str(e), line=line) from None
    rec = UsageRecord.from_flat(obj, line=line)
    rec.check_encodable(line)  # content nested deeper than MAX_DEPTH is refused here
    return rec


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_lines(lines: Iterable[str]) -> Iterator[UsageRecord | RecordError]:
    """Yield a record, or the error for that line, for every non-blank line."""
    for _n, got in parse_numbered(lines):
        yield got


def parse_numbered(lines: Iterable[str]) -> Iterator[tuple[int, UsageRecord | RecordError]]:
    """(line number, record or error) for every non-blank line; a record whose ``id`` an
    earlier line of the same input already gave is an error (ids are unique)."""
    seen: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        try:
            rec = parse_line(text, n)
        except RecordError as e:
            yield n, e
            continue
        first = seen.setdefault(rec.id, n)
        if first != n:
            yield n, RecordError(f"record id {rec.id!r} is already used on line {first}; "
                                 "record ids are unique", line=n, field="id")
        else:
            yield n, rec


def bounded_lines(stream: TextIO, limit: int = MAX_LINE) -> Iterator[str]:
    """The lines of ``stream``, never holding more than ``limit`` + 1 characters of one: a
    longer line is yielded cut to ``limit`` + 1 characters (which parse_line refuses, so
    the line numbers stay right) and the rest of it is skipped."""
    while True:
        text = stream.readline(limit + 1)
        if not text:
            return
        if len(text) > limit and not text.endswith("\n"):
            rest = text
            while rest and not rest.endswith("\n"):
                rest = stream.readline(limit + 1)
        yield text
