"""What a CEL check reads of a record, and projecting records on those reads.

A check's verdict depends only on what its expressions read of the record, the system's
facts (chosen by the record's system name) and which date boundaries the record's time
has passed. When every expression of a pack reads the record in forms recognised here
(:func:`record_reads`) and never reads ``now``, one judgement serves every record that
agrees on those inputs (:func:`projector` gives the key), and building the CEL context
(the dominant cost) is skipped for all but the first. Replay's memo (policy/memo.py) and
inline enforcement's (policy/inline.py) share this one analysis, so a fix reaches both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kansa.policy.cel import _TOKEN_RE

if TYPE_CHECKING:
    from kansa.policy.judging import CompiledPack


# left operand
_IN_OPENERS = {"", "(", ",", "&&", "||", "?", ":", "[", "{"}

Read = tuple[tuple[str, ...], bool]  # (a path of one or two keys, the whole value?)


def _tokens(source: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        if m is None:
            return None
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _key(token: tuple[str, str]) -> str | None:
    """The value of a plain string literal without escapes; None for anything else."""
    kind, text = token
    if kind != "str" or text[0] not in "\"'" or "\\" in text or text[:3] in ('"""', "'''"):
        return None
    return text[1:-1]


def record_reads(source: str) -> frozenset[Read] | None:
    """What a CEL expression reads of ``record``, conservatively: ``record.X``,
    ``record["X"]``, ``"X" in record``, ``has(record.X)`` (and the same one level down, e.g.
    ``"Y" in record.attributes``). None when the expression reads ``now`` or uses
    ``record`` any other way: its value may then depend on more than these reads."""
    toks = _tokens(source)
    if toks is None:
        return None
    text = [t for _, t in toks] + ["", "", ""]
    reads: set[Read] = set()
    for i, (kind, word) in enumerate(toks):
        if kind != "id" or (i and text[i - 1] == "."):
            continue  # a field name, not a variable
        if word == "now":
            return None
        if word != "record":
            continue
        path: list[str] = []
        j = i + 1
        while True:
            if text[j] == "." and toks[j + 1][0] == "id" and text[j + 2] != "(":
                path.append(text[j + 1])
                j += 2
            elif text[j] == "[" and j + 2 < len(toks) and _key(toks[j + 1]) is not None \
                    and text[j + 2] == "]":
                path.append(str(_key(toks[j + 1])))
                j += 3
            else:
                break
        ends = text[j] not in (".", "[", "(")
        literal = _key(toks[i - 2]) if i >= 2 else None
        if (ends and i >= 2 and text[i - 1] == "in" and literal is not None
                and (text[i - 3] if i >= 3 else "") in _IN_OPENERS and len(path) < 2):
            reads.add(((*path, literal), False))  # "X" in record / "Y" in record.X
        elif ends and i >= 2 and text[i - 1] == "(" and text[i - 2] == "has" \
                and (i < 3 or text[i - 3] != ".") and text[j] == ")" and 1 <= len(path) <= 2:
            reads.add((tuple(path), False))  # has(record.X) / has(record.X.Y)
        elif path:
            reads.add((tuple(path[:2]), True))
        else:
            return None  # record as a whole: size(record), record[k], ...
    return frozenset(reads)


def _normal(reads: Iterable[Read]) -> list[Read]:
    """Drop reads another read covers: a whole value covers its presence and its keys."""
    reads = list(reads)
    whole = {p for p, w in reads if w}
    keep = {(p, w) for p, w in reads
            if (w or p not in whole) and not (len(p) == 2 and (p[0],) in whole)}
    return sorted(keep)


_MISSING = ("<missing>",)  # a key absent from the record (no JSON value is a tuple)


def _freeze(v: Any) -> Any:
    """A hashable stand-in for a JSON value, equal only for values CEL cannot tell apart
    (1, 1.0 and true are equal in Python, not in CEL)."""
    cls = v.__class__
    if v is None or cls is str or v is _MISSING:
        return v
    if cls is list:
        types = tuple(map(type, v))
        if list not in types and dict not in types:  # the common case: a list of scalars
            return ("list", tuple(v), types)
    if isinstance(v, dict | list):
        return ("json", json.dumps(v, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False))
    return (cls, v)


def _values(m: Mapping[str, Any], keys: list[str], missing: list[Any]) -> tuple[Any, ...]:
    """The values of ``keys`` in ``m`` (``missing``: as many _MISSING) as a hashable key,
    paired with their types (1, 1.0 and true are equal in Python, not in CEL)."""
    vals = tuple(map(m.get, keys, missing))
    types = tuple(map(type, vals))
    if list in types or dict in types:
        vals = tuple([_freeze(v) if t is list or t is dict else v
                      for v, t in zip(vals, types, strict=True)])
    return (vals, types)


def projector(reads: Iterable[Read]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function giving, for a record, a hashable value equal for two records exactly
    when they agree on everything ``reads`` covers: whole values, presence, and entries
    of maps (a key read one level down whose value is not a map counts whole)."""
    whole: list[str] = []
    present: list[str] = []
    subs: dict[str, list[tuple[str, bool]]] = {}
    for path, w in _normal(reads):
        if len(path) == 2:
            subs.setdefault(path[0], []).append((path[1], w))
        elif w:
            whole.append(path[0])
        else:
            present.append(path[0])
    present = [k for k in present if k not in subs]  # a map's reader tells absence too
    groups = [_map_reader(k, v) for k, v in sorted(subs.items())]
    whole_missing = [_MISSING] * len(whole)

    def project(e: Mapping[str, Any]) -> tuple[Any, ...]:
        return (_values(e, whole, whole_missing), tuple(map(e.__contains__, present)),
                tuple([g(e) for g in groups]))

    return project


def _map_reader(key: str, subs: list[tuple[str, bool]]) -> Callable[[Mapping[str, Any]], Any]:
    values = [q for q, w in subs if w]
    present = [q for q, w in subs if not w]
    missing = [_MISSING] * len(values)

    def read(e: Mapping[str, Any]) -> Any:
        v = e.get(key, _MISSING)
        if v.__class__ is not dict:
            return _freeze(v)  # absent, or not a map: then its whole value decides
        return ("map", _values(v, values, missing), tuple(map(v.__contains__, present)))

    return read


def pack_reads(cp: CompiledPack) -> list[Read] | None:
    reads: set[Read] = set()
    for c in cp.obligations:
        for e in (c.applies, c.expr, *(t[0] for t in c.transitions)):
            if e is None:
                continue
            got = record_reads(e.source)
            if got is None:
                return None
            reads |= got
    return _normal(reads)
