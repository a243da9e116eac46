"""The fault classes the gateway must survive without a model call going unrecorded, shared
by tests/test_gateway_faults.py (which asserts) and bench/redteam_faults.py (which counts).

Each fault sends one request (or one stream) through a live gateway to the stand-in
upstream (tests/standin.py) with a fresh nonce in its content, and returns what the
client saw: the record ids named to it (``x-kansa-record``) and whether the answer was
the one documented for that fault. ``audit`` then matches the stand-in's requests (every
upstream call, by nonce) and the client's ids against the ledger.

The gateway these run against needs ``FAULT_CONFIG``: a short read timeout (the hang
faults) and a 1 MiB response limit (the oversize faults).
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai

from kansa.api import Ledger
from standin import Standin

FAULT_CONFIG: dict[str, Any] = {"read_timeout": 2.0, "max_response_bytes": 1024 * 1024}
NONCE = re.compile(r"nonce-[0-9a-f]{16}")


def new_nonce() -> str:
    return "nonce-" + uuid.uuid4().hex[:16]


@dataclass
class Seen:
    """What the client saw."""

    ids: list[str] = field(default_factory=list)  # x-kansa-record ids named to it
    expected: bool = False  # the documented answer for this fault
    detail: str = ""


@dataclass
class Ctx:
    url: str  # the gateway, http://127.0.0.1:port
    standin: Standin
    big_stream: int = 20 * 1024 * 1024  # what the gzip stream bomb expands to


def _msgs(nonce: str, extra: str = "") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{nonce} {extra}".strip()}]


def _named(r: httpx.Response | Any) -> list[str]:
    rid = r.headers.get("x-kansa-record")
    return [rid] if rid else []


def _code(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return err.get("code") or err.get("type")
    return None


def _post(ctx: Ctx, path: str, body: dict[str, Any] | bytes, status: int, code: str | None,
          headers: dict[str, str | bytes] | None = None) -> Seen:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(base_url=ctx.url, timeout=30) as c:
        r = c.post(path, content=content,
                   headers={"content-type": "application/json", **(headers or {})})
    ok = r.status_code == status and (code is None or _code(r) == code)
    return Seen(_named(r), ok, f"{r.status_code} {_code(r)}")


def _stream(ctx: Ctx, path: str, body: dict[str, Any], *, want_end: bool,
            abort_after_first: bool = False) -> Seen:
    """A streamed request; ``want_end``: the terminal event must (or must not) arrive."""
    got = b""
    ids: list[str] = []
    status = 0
    with httpx.Client(base_url=ctx.url, timeout=30) as c:
        try:
            with c.stream("POST", path, json=body) as r:
                status = r.status_code
                ids = _named(r)
                for chunk in r.iter_raw():
                    got += chunk
                    if abort_after_first:
                        break  # leaving the block closes the connection mid-stream
        except httpx.HTTPError as e:  # a cut stream: the connection ends without the end
            got += f"<{type(e).__name__}>".encode()
    ended = b"[DONE]" in got or b"message_stop" in got or b"response.completed" in got
    ok = status == 200 and ended == want_end
    return Seen(ids, ok, f"{status} ended={ended}")


# -- surrogates: every string field a caller controls --------------------------------------

LONE = "\ud800"


def surrogate_user(ctx: Ctx, nonce: str) -> Seen:
    """``user`` as the JSON escape \\ud800 (the official openai and anthropic clients encode
    their JSON as UTF-8 and cannot send one at all: raw clients and other SDKs can)."""
    return _post(ctx, "/v1/chat/completions", {"model": "gpt-test", "messages": _msgs(nonce),
                                               "user": LONE}, 400, "invalid_unicode")


def surrogate_user_stream(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/chat/completions", {"model": "gpt-test", "stream": True,
                                               "messages": _msgs(nonce), "user": LONE},
                 400, "invalid_unicode")


def surrogate_anthropic_user_id(ctx: Ctx, nonce: str) -> Seen:
    """Anthropic Messages ``metadata.user_id``."""
    return _post(ctx, "/v1/messages", {"model": "claude-test", "max_tokens": 16,
                                       "messages": _msgs(nonce),
                                       "metadata": {"user_id": "u" + LONE}},
                 400, None)


def surrogate_model(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/chat/completions", {"model": "gpt" + LONE, "messages": _msgs(nonce)},
                 400, "invalid_unicode")


def surrogate_message(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/responses", {"model": "gpt-test", "input": nonce + " \udfff tail"},
                 400, "invalid_unicode")


def surrogate_key(ctx: Ctx, nonce: str) -> Seen:
    """A lone surrogate in an object key (metadata), not a value."""
    return _post(ctx, "/v1/chat/completions", {"model": "gpt-test", "messages": _msgs(nonce),
                                               "metadata": {"k" + LONE: "v"}},
                 400, "invalid_unicode")


def surrogate_raw_bytes(ctx: Ctx, nonce: str) -> Seen:
    """The surrogate as raw (invalid) UTF-8 bytes ED A0 80: json.loads lets them through."""
    body = (b'{"model": "gpt-test", "messages": [{"role": "user", "content": "' +
            nonce.encode() + b' \xed\xa0\x80"}]}')
    return _post(ctx, "/v1/chat/completions", body, 400, "invalid_unicode")


def surrogate_embeddings(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/embeddings", {"model": "emb", "input": [nonce, "a" + LONE]},
                 400, "invalid_unicode")


def surrogate_attr_header(ctx: Ctx, nonce: str) -> Seen:
    """An x-kansa-attr-* header whose JSON list decodes to a lone surrogate."""
    return _post(ctx, "/v1/chat/completions", {"model": "gpt-test", "messages": _msgs(nonce)},
                 400, "invalid_unicode", headers={"x-kansa-attr-tags": '["a", "\\ud800"]'})


def surrogate_bytes_in_headers(ctx: Ctx, nonce: str) -> Seen:
    """Surrogate-like bytes in x-kansa-subject / -actor / -app headers: not UTF-8, so they
    are read as Latin-1 text (no surrogate): served and recorded as usual."""
    raw = b"\xed\xa0\x80"
    return _post(ctx, "/v1/chat/completions", {"model": "gpt-test", "messages": _msgs(nonce)},
                 200, None, headers={"x-kansa-subject": raw, "x-kansa-actor": raw,
                                     "x-kansa-app": raw, "x-kansa-attr-tags": b'["' + raw + b'"]'})


def surrogate_bytes_in_model_path(ctx: Ctx, nonce: str) -> Seen:
    """GET /v1/models/<ED A0 80 percent-encoded>: the path is decoded with replacement
    characters, so no surrogate: forwarded as sent and recorded (the nonce in the path)."""
    with httpx.Client(base_url=ctx.url, timeout=30) as c:
        r = c.get(f"/v1/models/m%ED%A0%80-{nonce}")
    return Seen(_named(r), r.status_code == 200 and r.json()["id"].endswith(nonce),
                str(r.status_code))


# -- oversize, both directions ----------------------------------------------------------------


def oversize_request(ctx: Ctx, nonce: str) -> Seen:
    """17 MB body (over the 16 MiB default): the client must receive the 413, not a reset."""
    body = {"model": "gpt-test", "messages": _msgs(nonce, "x" * (17 * 1000 * 1000))}
    return _post(ctx, "/v1/chat/completions", body, 413, "request_too_large")


def oversize_request_raw(ctx: Ctx, nonce: str) -> Seen:
    """The same through a plain socket that sends its whole body, then reads (as curl and
    many clients do; httpx happens to read an early answer after a failed write)."""
    body = json.dumps({"model": "gpt-test",
                       "messages": _msgs(nonce, "x" * (17 * 1000 * 1000))}).encode()
    port = int(ctx.url.rsplit(":", 1)[1])
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
                      b"content-type: application/json\r\n"
                      b"content-length: %d\r\n\r\n" % len(body) + body)
            while chunk := s.recv(65536):
                got += chunk
        except OSError as e:  # the reset this fault used to end in
            return Seen([], False, repr(e))
    head, _, rest = got.partition(b"\r\n\r\n")
    ids = [line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
           if line.lower().startswith(b"x-kansa-record:")]
    ok = head.startswith(b"HTTP/1.1 413") and b"request_too_large" in rest
    return Seen(ids, ok, head.split(b"\r\n", 1)[0].decode())


def large_response_ok(ctx: Ctx, nonce: str) -> Seen:
    """600 KB answer: over the client's 256 KiB read-ahead, under the 1 MiB limit."""
    body = {"model": "big-600000", "messages": _msgs(nonce)}
    with httpx.Client(base_url=ctx.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=body)
    ok = r.status_code == 200 and len(r.json()["choices"][0]["message"]["content"]) > 600000
    return Seen(_named(r), ok, str(r.status_code))


def oversize_response(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/chat/completions", {"model": "big-3000000", "messages": _msgs(nonce)},
                 502, "upstream_response_too_large")


def oversize_response_gzip(ctx: Ctx, nonce: str) -> Seen:
    """A small gzip body expanding to 50 MB."""
    return _post(ctx, "/v1/chat/completions",
                 {"model": "big-50000000-gzip", "messages": _msgs(nonce)},
                 502, "upstream_response_too_large")


def oversize_stream_gzip(ctx: Ctx, nonce: str) -> Seen:
    """A gzip SSE stream expanding past the limit: cut with an error event, no [DONE]."""
    seen = _stream(ctx, "/v1/chat/completions",
                   {"model": f"big-{ctx.big_stream}-gzip", "stream": True,
                    "messages": _msgs(nonce)}, want_end=False)
    return seen


# -- upstream failures --------------------------------------------------------------------------


def upstream_500(ctx: Ctx, nonce: str) -> Seen:
    """Through the official openai client (no retries: one upstream call)."""
    client = openai.OpenAI(base_url=ctx.url + "/v1", api_key="sk-test", max_retries=0)
    try:
        client.chat.completions.create(model="fail-500",
                                       messages=_msgs(nonce))
    except openai.InternalServerError as e:
        return Seen(_named(e.response), e.status_code == 500, "500")
    finally:
        client.close()
    return Seen([], False, "served")


def anthropic_ok(ctx: Ctx, nonce: str) -> Seen:
    """The control, through the official anthropic client, with a subject."""
    client = anthropic.Anthropic(base_url=ctx.url, api_key="sk-ant-test", max_retries=0)
    try:
        raw = client.messages.with_raw_response.create(
            model="claude-test", max_tokens=16, messages=_msgs(nonce),
            metadata={"user_id": "user-7"})
        msg = raw.parse()
    finally:
        client.close()
    return Seen(_named(raw), msg.content[0].type == "text", str(raw.status_code))


def upstream_500_stream(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/messages", {"model": "fail-500", "stream": True, "max_tokens": 8,
                                       "messages": _msgs(nonce)}, 500, None)


def upstream_hang(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/chat/completions", {"model": "slow", "delay": 4,
                                               "messages": _msgs(nonce)},
                 504, "upstream_timeout")


def upstream_hang_midstream(ctx: Ctx, nonce: str) -> Seen:
    return _stream(ctx, "/v1/chat/completions", {"model": "stall-midstream", "delay": 4,
                                                 "stream": True, "messages": _msgs(nonce)},
                   want_end=False)


def upstream_reset(ctx: Ctx, nonce: str) -> Seen:
    return _post(ctx, "/v1/chat/completions", {"model": "reset", "messages": _msgs(nonce)},
                 502, "upstream_unreachable")


def partial_stream_reset(ctx: Ctx, nonce: str) -> Seen:
    return _stream(ctx, "/v1/chat/completions", {"model": "drop-midstream", "stream": True,
                                                 "messages": _msgs(nonce)}, want_end=False)


def partial_stream_cut_short(ctx: Ctx, nonce: str) -> Seen:
    """The upstream ends the stream cleanly but without its terminal event."""
    return _stream(ctx, "/v1/messages", {"model": "cut-short", "stream": True, "max_tokens": 8,
                                         "messages": _msgs(nonce)}, want_end=False)


def client_abort_midstream(ctx: Ctx, nonce: str) -> Seen:
    return _stream(ctx, "/v1/chat/completions", {"model": "drip", "stream": True,
                                                 "messages": _msgs(nonce)},
                   want_end=False, abort_after_first=True)


def normal_stream(ctx: Ctx, nonce: str) -> Seen:
    """The control: a normal stream ends with its terminal event."""
    return _stream(ctx, "/v1/chat/completions", {"model": "gpt-test", "stream": True,
                                                 "messages": _msgs(nonce)}, want_end=True)


Fault = Callable[[Ctx, str], Seen]
FAULTS: dict[str, Fault] = {
    "surrogate: user": surrogate_user,
    "surrogate: user, streamed": surrogate_user_stream,
    "surrogate: metadata.user_id (Anthropic)": surrogate_anthropic_user_id,
    "surrogate: model": surrogate_model,
    "surrogate: message text": surrogate_message,
    "surrogate: object key": surrogate_key,
    "surrogate: raw bytes ED A0 80": surrogate_raw_bytes,
    "surrogate: embeddings input": surrogate_embeddings,
    "surrogate: x-kansa-attr header": surrogate_attr_header,
    "surrogate bytes in x-kansa headers": surrogate_bytes_in_headers,
    "surrogate bytes in a model path": surrogate_bytes_in_model_path,
    "oversize request 17 MB (httpx)": oversize_request,
    "oversize request 17 MB (socket)": oversize_request_raw,
    "large response 600 KB (ok)": large_response_ok,
    "oversize response 3 MB": oversize_response,
    "oversize response gzip->50 MB": oversize_response_gzip,
    "oversize stream gzip": oversize_stream_gzip,
    "upstream 500 (openai client)": upstream_500,
    "upstream 500, streamed": upstream_500_stream,
    "upstream hang": upstream_hang,
    "upstream hang mid-stream": upstream_hang_midstream,
    "upstream connection reset": upstream_reset,
    "partial stream (reset)": partial_stream_reset,
    "partial stream (clean end, no terminal)": partial_stream_cut_short,
    "client abort mid-stream": client_abort_midstream,
    "normal stream (control)": normal_stream,
    "normal call, anthropic client (control)": anthropic_ok,
}


# -- the audit ------------------------------------------------------------------------------


@dataclass
class Tally:
    tries: int = 0
    expected: int = 0  # clients that saw the documented answer
    upstream_calls: int = 0  # requests the stand-in received
    records: int = 0  # records of this fault's tries (by nonce or by named id)
    upstream_recorded: int = 0  # upstream calls whose record is in the ledger
    named: int = 0
    named_found: int = 0

    @property
    def sound(self) -> bool:
        return self.upstream_recorded == self.upstream_calls and self.named_found == self.named


def audit(ledger: Ledger, standin: Standin, tries: list[tuple[str, str, Seen]]) -> dict[str, Tally]:
    """Match every upstream call (by nonce, at the stand-in) and every id named to a client
    against the ledger, per fault class."""
    fault_of = {nonce: name for name, nonce, _ in tries}
    tallies = {name: Tally() for name, _, _ in tries}
    called: dict[str, int] = {}
    for req in list(standin.requests):
        for nonce in set(NONCE.findall(req["path"] + json.dumps(req["body"]))):
            called[nonce] = called.get(nonce, 0) + 1
    recorded: dict[str, int] = {}
    ids: set[str] = set()
    for rec in ledger.find(with_content=True):
        ids.add(rec.id)
        for nonce in set(NONCE.findall(json.dumps([rec.entry, rec.content]))):
            recorded[nonce] = recorded.get(nonce, 0) + 1
    for name, nonce, seen in tries:
        t = tallies[name]
        t.tries += 1
        t.expected += seen.expected
        n_up = called.get(nonce, 0)
        n_rec = recorded.get(nonce, 0)
        t.upstream_calls += n_up
        t.upstream_recorded += min(n_up, n_rec)
        # a record without content (the 413) is counted by the id it was named by
        t.records += max(n_rec, len([i for i in seen.ids if i in ids]))
        t.named += len(seen.ids)
        t.named_found += sum(1 for i in seen.ids if i in ids)
    assert set(fault_of.values()) <= set(tallies)
    return tallies
