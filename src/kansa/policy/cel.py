"""CEL checks, compiled once with the Rust-backed ``common-expression-language`` package.

An expression sees three variables:

- ``record``: the ledger entry as stored (RFC 8785 JSON, OpenTelemetry GenAI names), e.g.
  ``record["gen_ai.request.model"]``, ``record.outcome``, ``record.kind``;
- ``system``: facts about the AI system that produced the record, from configuration
  (``{}`` when none are configured); dates in facts are CEL timestamps;
- ``now``: the instant the record is judged at (its own timestamp unless a caller says
  otherwise), so a replay of the same history gives the same answers.

Reading a key a record lacks is an error in CEL: write ``"key" in record`` or
``has(record.key)`` first. Errors name the obligation and, for syntax, the position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import cel

from kansa.policy.pack import PolicyError

_POS_RE = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")


class CheckError(PolicyError):
    """A CEL expression does not compile, fails at run time, or returns a non-boolean."""

    def __init__(self, message: str, *, obligation: str, position: tuple[int, int] | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.obligation = obligation
        self.position = position
        self.index = index


class Expr:
    """One compiled CEL expression belonging to one obligation."""

    __slots__ = ("source", "obligation", "program")

    def __init__(self, source: str, obligation: str, program: cel.Program) -> None:
        self.source = source
        self.obligation = obligation
        self.program = program

    def test(self, ctx: cel.Context, *, index: int | None = None, what: str = "check") -> bool:
        """Evaluate to a boolean; anything else, or any evaluation error, is a CheckError."""
        try:
            result = self.program.execute(ctx)
        except Exception as e:
            where = f" on entry {index}" if index is not None else ""
            detail = f"no such key {e.args[0]!r}" if isinstance(e, KeyError) and e.args \
                else _first_line(str(e)) or type(e).__name__
            raise CheckError(f"obligation {self.obligation!r}: {what} {self.source!r} failed"
                             f"{where}: {detail}", obligation=self.obligation,
                             index=index) from None
        if not isinstance(result, bool):
            raise CheckError(
                f"obligation {self.obligation!r}: {what} {self.source!r} returned "
                f"{type(result).__name__} {result!r}, not a boolean",
                obligation=self.obligation, index=index)
        return result


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0] if s.strip() else ""


def compile_check(source: str, obligation: str) -> Expr:
    """Compile ``source``; a syntax error raises CheckError with the line and column."""
    try:
        program = cel.compile(source)
    except Exception as e:  # ValueError for syntax errors; be safe with anything else
        msg = str(e)
        m = _POS_RE.search(msg)
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            reason = m.group(3).strip()
            raise CheckError(f"obligation {obligation!r}: CEL syntax error at {line}:{col}: "
                             f"{reason}", obligation=obligation,
                             position=(line, col)) from None
        raise CheckError(f"obligation {obligation!r}: CEL does not compile: "
                         f"{_first_line(msg) or type(e).__name__}",
                         obligation=obligation) from None
    return Expr(source, obligation, program)


def _fact(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, Mapping):
        return {str(k): _fact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fact(v) for v in value]
    return value


def system_facts(facts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Configuration facts made ready for CEL (dates become UTC timestamps)."""
    return _fact(dict(facts or {}))  # type: ignore[no-any-return]


def context(record: Mapping[str, Any], system: Mapping[str, Any], now: datetime) -> cel.Context:
    """The evaluation context of one record: converted once, shared by every check."""
    return cel.Context({"record": dict(record), "system": dict(system), "now": now})
