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

The CEL package has no cost limit or timeout, and it holds the GIL while it evaluates (a
worker thread would not keep an event loop responsive). So every expression is bounded
before it is compiled (:func:`check_cost`): its length, bracket nesting, comprehension
nesting, literal sizes, and an estimate of its worst-case evaluation steps on any record
(a list read from a record has fewer than 32,768 elements: the entry is at most 65,535
bytes; so a comprehension's body counts 32,768 times, and a read of ``record`` or
``system`` inside one counts 32,768 steps; map() and filter() count the square of their
range, since this CEL implementation copies the list they build once per element). Within
the bounds an expression takes about a second at most on the worst record a 65,535-byte
entry allows, and microseconds on ordinary records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import cel

from kansa.errors import PolicyError

_POS_RE = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")

# CEL tokens, shared by the cost bound below and the read analysis of policy/reads.py
# (``record_reads``)
_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>[bB]?[rR][bB]?(?:\"\"\".*?\"\"\"|'''.*?'''|"[^"\n]*"|'[^'\n]*')
          # a raw string has no escapes: r"\" is one backslash, and the string ends there
      | [bB]?(?:\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''
              |"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
  | (?P<num>\d[\w.]*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
""", re.VERBOSE | re.DOTALL)

MAX_SOURCE = 4096  # characters of one expression (the bundled packs' longest is < 200)
MAX_NESTING = 24  # brackets ( [ { inside one another (the parser refuses ~100, panics later)
MAX_COMPREHENSION_DEPTH = 2  # .all/.exists/.exists_one/.map/.filter inside one another
MAX_LITERAL_ITEMS = 256  # elements of one list or map literal
MAX_COST = 1_000_000  # estimated evaluation steps on the worst record (~1 s at most)
UNKNOWN_RANGE = 32_768  # elements of a list or map read from a record (entry <= 65,535 B)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# measured on common-expression-language 0.10 (cel 0.14): map() and filter() copy the list
# they build once per element (quadratic), and matches() compiles its pattern on every call
_QUADRATIC = frozenset({"map", "filter"})
_CALL_COST = {"matches": 64}
_OPEN = {"(": ")", "[": "]", "{": "}"}


class CheckError(PolicyError):
    """A CEL expression does not compile, is too costly, fails at run time, or returns a
    non-boolean. ``reason`` is the message without the ``obligation '...': `` prefix."""

    def __init__(self, message: str, *, obligation: str, position: tuple[int, int] | None = None,
                 index: int | None = None) -> None:
        self.reason = message
        super().__init__(f"obligation {obligation!r}: {message}")
        self.obligation = obligation
        self.position = position
        self.index = index


def _is_panic(e: BaseException) -> bool:
    """A Rust panic inside the CEL package (pyo3's PanicException derives from
    BaseException, so ``except Exception`` does not see it)."""
    return type(e).__name__ == "PanicException"


def _pos(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def check_cost(source: str, obligation: str) -> int:
    """Refuse an expression that could be slow or large to compile or evaluate; return its
    estimated worst-case evaluation steps. Uses the same CEL tokens as the engine's read
    analysis (``record_reads``)."""
    def refuse(msg: str, offset: int | None = None) -> CheckError:
        if offset is None:
            return CheckError(f"CEL expression too costly: {msg}", obligation=obligation)
        line, col = _pos(source, offset)
        return CheckError(f"CEL expression too costly at {line}:{col}: {msg}",
                          obligation=obligation, position=(line, col))

    if len(source) > MAX_SOURCE:
        raise refuse(f"it is {len(source)} characters long; at most {MAX_SOURCE} are allowed")
    # a frame per open bracket: [closer, commas, multiplier inside, comprehension?, literal?,
    # literal elements inside it (nested included), the range of a map()/filter() (0: none),
    # the multiplier outside it]
    frames: list[list[Any]] = []
    toks: list[tuple[str, str, int]] = []
    cost = 0
    last_items = 0  # elements of the literal that closed last (a comprehension's range)
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        if m is None:  # not a CEL token: let the compiler name the syntax error
            if _compiles(source):  # never wave through what was not estimated
                raise refuse(f"kansa cannot estimate its cost from {source[pos:pos + 10]!r}"
                             " on (rewrite it with plainer CEL)", pos)
            break
        kind, text, at = m.lastgroup or "", m.group(), pos
        pos = m.end()
        if kind == "ws":
            continue
        mult = frames[-1][2] if frames else 1
        # inside a comprehension, a value read from the record or the system facts may be
        # as large as a record allows: `in`, `+`, `==`, size() are linear in it
        big = (mult > 1 and kind == "id" and text in ("record", "system")
               and not (toks and toks[-1][1] == "."))
        cost += mult * (UNKNOWN_RANGE if big else _CALL_COST.get(text, 1))
        if kind == "str" and len(text) > MAX_SOURCE // 4:
            raise refuse(f"a string literal of {len(text)} characters (at most "
                         f"{MAX_SOURCE // 4})", at)
        if text in _OPEN:
            if len(frames) >= MAX_NESTING:
                raise refuse(f"brackets nested more than {MAX_NESTING} deep", at)
            macro = (text == "(" and len(toks) >= 2 and toks[-1][0] == "id"
                     and toks[-1][1] in _MACROS and toks[-2][1] == ".")
            inner, quad = mult, 0
            if macro:
                depth = 1 + sum(1 for f in frames if f[3])
                if depth > MAX_COMPREHENSION_DEPTH:
                    raise refuse(f"comprehensions (.{toks[-1][1]}() and the like) nested "
                                 f"{depth} deep; at most {MAX_COMPREHENSION_DEPTH} are "
                                 "allowed", toks[-1][2])
                # the range: a literal that just closed, else a value of unknown size
                closed = len(toks) >= 3 and toks[-3][1] in ("]", "}")
                n = max(last_items, 1) if closed else UNKNOWN_RANGE
                inner = mult * n
                if toks[-1][1] in _QUADRATIC:  # the result list is copied once per element
                    cost += mult * n * n // 4
                    quad = n
            frames.append([_OPEN[text], 0, inner, macro, text != "(", 0, quad, mult])
        elif text in (")", "]", "}"):
            if not frames or frames[-1][0] != text:
                break  # unbalanced: the compiler's syntax error says where
            f = frames.pop()
            last_items = f[1] + (1 if toks and toks[-1][1] not in "([{," else 0)
            inside = f[5] + (last_items if f[4] else 0)
            if f[6]:
                # each copy of the result copies every element, and an element may be a
                # literal of many (measured: 256 copies of 1,280-element lists, 10 s)
                cost += f[7] * f[6] * f[6] // 4 * max(f[5] - 1, 0)
            if frames:
                frames[-1][5] += inside
            if f[4] and last_items > MAX_LITERAL_ITEMS:
                raise refuse(f"a literal of {last_items} elements (at most "
                             f"{MAX_LITERAL_ITEMS})", at)
        elif text == "," and frames:
            frames[-1][1] += 1
        if cost > MAX_COST:
            raise refuse(f"it could take more than {MAX_COST:,} evaluation steps on one "
                         f"record (a list or map read from a record counts as "
                         f"{UNKNOWN_RANGE:,} elements: a comprehension's body runs once for "
                         "each, map() and filter() copy their result once for each, "
                         "matches() compiles its pattern on every call)", at)
        toks.append((kind, text, at))
    return cost


def _compiles(source: str) -> bool:
    try:
        cel.compile(source)
    except BaseException as e:  # ValueError for syntax errors; a Rust panic for worse
        if not isinstance(e, Exception) and not _is_panic(e):
            raise
        return False
    return True


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
        except BaseException as e:
            if not isinstance(e, Exception) and not _is_panic(e):
                raise  # KeyboardInterrupt, SystemExit
            where = f" on entry {index}" if index is not None else ""
            detail = f"no such key {e.args[0]!r}" if isinstance(e, KeyError) and e.args \
                else _first_line(str(e)) or type(e).__name__
            raise CheckError(f"{what} {self.source!r} failed{where}: {detail}",
                             obligation=self.obligation, index=index) from None
        if not isinstance(result, bool):
            raise CheckError(
                f"{what} {self.source!r} returned "
                f"{type(result).__name__} {_short(repr(result))}, not a boolean",
                obligation=self.obligation, index=index)
        return result


def _first_line(s: str) -> str:
    return _short(s.strip().splitlines()[0]) if s.strip() else ""


def _short(s: str, n: int = 200) -> str:
    return s if len(s) <= n else s[:n] + "…"


def compile_check(source: str, obligation: str) -> Expr:
    """Bound (:func:`check_cost`), then compile ``source``; a syntax error raises
    CheckError with the line and column."""
    check_cost(source, obligation)
    try:
        program = cel.compile(source)
    except BaseException as e:  # ValueError for syntax errors; a Rust panic for worse
        if not isinstance(e, Exception) and not _is_panic(e):
            raise
        msg = str(e)
        m = _POS_RE.search(msg)
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            reason = _short(m.group(3).strip())
            raise CheckError(f"CEL syntax error at {line}:{col}: {reason}",
                             obligation=obligation, position=(line, col)) from None
        raise CheckError(f"CEL does not compile: {_first_line(msg) or type(e).__name__}",
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
