"""Bounds on untrusted structured input: JSON nesting depth (shared by every reader).

Python's ``json`` decoder recurses once per nesting level and raises RecursionError near
the interpreter's limit, and every recursive walk after it (RFC 8785 encoding, CEL
conversion, validation) would do the same. kansa reads no legitimate document nested
deeper than :data:`MAX_DEPTH`, so readers refuse deeper ones with their own clear error.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class TooDeep(ValueError):
    """A JSON value is nested deeper than the bound (readers turn it into their own error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of a JSON-like value (a scalar is 0), without recursion; stops
    counting (and returns limit + 1) as soon as the limit is passed."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list | tuple):
            children = v
        else:
            continue
        d += 1
        if d > limit:
            return limit + 1
        deepest = max(deepest, d)
        stack.extend((c, d) for c in children if isinstance(c, dict | list | tuple))
    return deepest


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` if ``value`` is nested deeper than ``limit``."""
    if depth(value, limit) > limit:
        raise TooDeep(limit)


def loads(text: str | bytes, limit: int = MAX_DEPTH, **kw: Any) -> Any:
    """``json.loads`` that raises :class:`TooDeep` (never RecursionError) for deep input.

    The C decoder guards its own recursion and raises RecursionError cleanly, long before
    the C stack is at risk; that is turned into TooDeep, and shallower values are checked
    against ``limit`` without recursion."""
    try:
        value = json.loads(text, **kw)
    except RecursionError:
        raise TooDeep(limit) from None
    check_depth(value, limit)
    return value


def count_values(value: Any, limit: int) -> int:
    """How many values ``value`` holds, counting a shared one (a YAML alias) each time it
    is reached, without recursion; stops at ``limit`` + 1. Walks that copy (CEL
    conversion, canonical JSON) do that much work, so this bounds "billion laughs"."""
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        n += 1
        if n > limit:
            return n
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return n
