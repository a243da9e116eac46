"""What a request to the gateway is: its route, the kansa metadata its headers carry
(``x-kansa-*``: subject, actor, app, attributes), its JSON body, and where a lone UTF-16
surrogate hides in it (which no record can hold).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from kansa.capture.gateway_wire import _reject_constant
from kansa.capture.pipeline import Call
from kansa.capture.shapes import OPERATIONS, CallInfo
from kansa.records.attributes import KANSA_AI_DISCLOSURE
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
    name = KANSA_AI_DISCLOSURE if k == b"x-kansa-ai-disclosure" else \
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


class _Reject(Exception):
    """A request the gateway answers with its own error (recorded like any other call).
    ``drain``: read and drop up to that many bytes of the body first, so a client still
    sending sees the answer instead of a reset."""

    def __init__(self, status: int, code: str, message: str, *, outcome: str | None = None,
                 close: bool = False, extra: list[tuple[bytes, bytes]] | None = None,
                 drain: int = 0) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.outcome, self.close, self.extra, self.drain = outcome, close, extra, drain


@dataclass
class _Incoming:
    """What a request's headers say beyond the metadata they set on the call."""

    token: str | None = None  # the caller's key (a gateway key, or its own upstream key)
    caller_auth: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_length: int | None = None
    forward: list[tuple[bytes, bytes]] = field(default_factory=list)  # to the upstream
    has_content_type: bool = False
    subject: str | None = None  # x-kansa-subject, whole
    app: str | None = None
    approval: str | None = None  # x-kansa-approval
    bad_unicode: str | None = None  # where a lone surrogate was found, if anywhere


def _read_headers(headers: list[tuple[bytes, bytes]], call: CallInfo) -> _Incoming:
    """Sort a request's headers: credentials, kansa's metadata (set on ``call``: actor,
    conversation, attributes) and the headers forwarded upstream."""
    inc = _Incoming()
    attrs = call.attributes
    for k, v in headers:
        if k in _DROP_REQ:
            if k == b"authorization":
                s = v.decode("latin-1")
                inc.token = s[7:].strip() if s[:7].lower() == "bearer " else s
                inc.caller_auth.append((k, v))
            elif k == b"x-api-key" or k == b"api-key":
                inc.token = inc.token or v.decode("latin-1").strip()
                inc.caller_auth.append((k, v))
            elif k == b"content-length":
                with contextlib.suppress(ValueError):
                    inc.content_length = int(v)
            continue
        if k.startswith(b"x-kansa-"):
            if k == b"x-kansa-subject":
                # whole: it is never in the entry (only its keyed pseudonym), and a cut
                # name is one `kansa erase --subject` would not find
                inc.subject = _hstr(v, None)
            elif k == b"x-kansa-actor":
                call.actor = _hstr(v)
            elif k == b"x-kansa-app":
                inc.app = _hstr(v)
            elif k == b"x-kansa-conversation-id":
                call.conversation_id = _hstr(v)
            elif k == b"x-kansa-approval":
                inc.approval = _hstr(v).strip()
            elif k == b"x-kansa-ai-disclosure" or k.startswith(b"x-kansa-attr-"):
                bad_hdr = _header_attribute(attrs, k, v)
                if bad_hdr and inc.bad_unicode is None:
                    inc.bad_unicode = f"the header {_hstr(k)[:64]}"
            continue
        if k == b"content-type":
            inc.has_content_type = True
        inc.forward.append((k, v))
    return inc


def _parse_body(call: CallInfo, body: bytes) -> tuple[dict[str, Any], str | None]:
    """The JSON object a request body holds (also set as ``call.request``) and where a
    lone surrogate is in it (None: nowhere; the record then holds it escaped). Raises
    :class:`_Reject` for a body that is not JSON or not an object."""
    # A lone surrogate can come from the bytes ED A0..BF (json.loads decodes bytes
    # with "surrogatepass") or from a \uD8xx-\uDFxx escape. The strict decode (which
    # json.loads would do anyway) rules out the first; two substring searches the
    # second, so ordinary bodies pay nothing (a regex over a 100 KB body cost ms).
    maybe_lone = b"\\ud" in body or b"\\uD" in body
    try:
        try:
            text = body.decode("utf-8-sig")  # what json.loads does, minus surrogates
        except UnicodeDecodeError:  # other encodings json.loads detects, or ED A0..
            req = json.loads(body, parse_constant=_reject_constant)
            maybe_lone = True
        else:
            req = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        call.request = body.decode("utf-8", "backslashreplace")
        raise _Reject(400, "invalid_json",
                      f"kansa gateway: the request body is not valid JSON ({e})") from None
    where: str | None = None
    if maybe_lone and _holds_lone_surrogate(req):
        # a lone surrogate is not text: the record (RFC 8785) cannot hold it, so the
        # request is refused; the record keeps it as the text "\udXXX"
        try:
            where = _surrogate_path(req)
            if where is not None:
                req = _escape_surrogates(req)
        except RecursionError:
            where = "the body"
            req = body.decode("utf-8", "backslashreplace")
        if where is not None and where != "the body":
            where = f"the body at {where}"
    call.request = req
    if not isinstance(req, dict):
        raise _Reject(400, "invalid_body", "kansa gateway: the request body must be a JSON "
                      "object")
    return req, where


def _subject_of(req: dict[str, Any], header: str | None, route: _Route) -> str | None:
    """Whom the call is about: x-kansa-subject, else the body's ``user`` (OpenAI) or
    ``metadata.user_id`` (Anthropic)."""
    subject = header or req.get("user")
    if not isinstance(subject, str) and route.shape == "anthropic":
        md = req.get("metadata")
        subject = md.get("user_id") if isinstance(md, dict) else None
    return subject if isinstance(subject, str) and subject else None
