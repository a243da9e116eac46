"""What a request to the gateway is: its route, the kansa metadata its headers carry
(``x-kansa-*``: subject, actor, app, attributes), its JSON body, and where a lone UTF-16
surrogate hides in it (which no record can hold).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from kansa.capture.pipeline import Call
from kansa.capture.shapes import OPERATIONS, CallInfo
from kansa.records.model import MAX_STR


@dataclass(frozen=True)
class _Route:
    suffix: str  # path below /v1, appended to the upstream's base URL
    operation: str
    shape: str  # openai, anthropic
    method: str


_ROUTES = {
    "/v1/chat/completions": _Route("/chat/completions", OPERATIONS["chat/completions"],
                                   "openai", "POST"),
    "/v1/completions": _Route("/completions", OPERATIONS["completions"], "openai", "POST"),
    "/v1/embeddings": _Route("/embeddings", OPERATIONS["embeddings"], "openai", "POST"),
    "/v1/responses": _Route("/responses", OPERATIONS["responses"], "openai", "POST"),
    "/v1/models": _Route("/models", OPERATIONS["models"], "openai", "GET"),
    "/v1/messages": _Route("/messages", OPERATIONS["messages"], "anthropic", "POST"),
}


_UNKNOWN = _Route("", "unknown", "openai", "")


_DROP_REQ = frozenset({
    b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te",
    b"upgrade", b"proxy-authorization", b"proxy-connection", b"accept-encoding", b"expect",
    b"authorization", b"x-api-key", b"api-key", b"trailer",
})


_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")  # no climbing out of the upstream's base path


@dataclass
class _Call(CallInfo):
    """A call and its run through the capture pipeline (which pins the policy snapshot
    it is judged under, read once, at its start)."""

    pc: Call | None = None


def _hstr(v: bytes, limit: int | None = MAX_STR) -> str:
    """A metadata header's text: UTF-8 when the bytes are UTF-8 (curl, Node and browsers
    send non-ASCII text so, and `kansa erase --subject` must find the name as typed),
    else Latin-1 (HTTP's historical charset: every byte string decodes, and never to a
    lone surrogate)."""
    try:
        text = v.decode("utf-8")
    except UnicodeDecodeError:
        text = v.decode("latin-1")
    return text if limit is None else text[:limit]


_MAX_HEADER_ATTRS = 32  # the attributes dict holds only header attributes at that point


_RESERVED_ATTRS = ("kansa.policy.", "kansa.gateway.", "kansa.content.", "kansa.usage.",
                   "kansa.pipeline.")


def _header_attribute(attrs: dict[str, Any], k: bytes, v: bytes) -> bool:
    """An attribute the caller states in a header (HTTP lowercases the name): ``true`` /
    ``false`` are booleans, a JSON list of strings is a list, anything else a string.
    Names kansa itself sets cannot be given (a caller must not forge a policy decision).
    True if the list held a lone surrogate (kept then as the header's text, which has none:
    headers are read as UTF-8, else Latin-1)."""
    name = "kansa.ai_disclosure" if k == b"x-kansa-ai-disclosure" else \
        k[13:].decode("latin-1")
    if not name or len(name) > 128 or name.startswith(_RESERVED_ATTRS) or \
            len(attrs) >= _MAX_HEADER_ATTRS:
        return False
    s = _hstr(v).strip()
    low = s.lower()
    value: Any = s[:MAX_STR]
    bad = False
    if low in ("true", "false"):
        value = low == "true"
    elif s.startswith("["):
        with contextlib.suppress(ValueError):
            got = json.loads(s)
            if isinstance(got, list) and all(isinstance(x, str | bool) for x in got):
                if any(isinstance(x, str) and _has_surrogate(x) for x in got):
                    bad = True
                else:
                    value = got[:64]
    attrs[name] = value
    return bad


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _holds_lone_surrogate(v: Any) -> bool:
    """Whether any string or key in parsed JSON holds a lone surrogate (at C speed: the
    encoder and the UTF-8 codec; the walk below only locates it)."""
    try:
        json.dumps(v, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:  # deeper than the C encoder goes: walk it (iteratively)
        return _surrogate_path(v) is not None
    return False


def _esc(s: str) -> str:
    """Lone surrogates as the text "\\udXXX" (the JSON escape a caller sent): nothing lost,
    and the result is valid Unicode."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_path(v: Any) -> str | None:
    """Where in parsed JSON the first string (or key) with a lone surrogate is, as
    ``$.messages[0].content``; None if nowhere. Iterative: JSON may nest deeply."""
    stack: list[tuple[Any, str]] = [(v, "$")]
    while stack:
        x, path = stack.pop()
        if isinstance(x, str):
            if _has_surrogate(x):
                return path
        elif isinstance(x, dict):
            items = list(x.items())
            for k, y in reversed(items):
                if _has_surrogate(k):
                    return f"{path} (a key)"
                stack.append((y, f"{path}.{k}"))
        elif isinstance(x, list):
            stack.extend((y, f"{path}[{i}]") for i, y in reversed(list(enumerate(x))))
    return None


def _escape_surrogates(v: Any) -> Any:
    """A copy of parsed JSON with every string's lone surrogates as "\\udXXX" text."""
    if isinstance(v, str):
        return _esc(v)
    if isinstance(v, dict):
        return {_esc(k): _escape_surrogates(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_escape_surrogates(x) for x in v]
    return v
