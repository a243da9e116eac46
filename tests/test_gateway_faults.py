"""No model call without its record (issue 8, item 2): for every fault class (lone
surrogates in every string a caller controls, oversize in both directions, upstream 500 /
hang / reset / partial stream, client abort mid-stream) every upstream call the stand-in
received and every x-kansa-record id named to a client is in the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fault_classes import (
    FAULT_CONFIG,
    FAULTS,
    Ctx,
    Seen,
    audit,
    new_nonce,
    oversize_request_raw,
)
from gateway_harness import find_record, free_port, running_gateway, wait_for
from kansa.api import Ledger
from kansa.capture import gateway as gateway_module
from kansa.capture.gateway import GatewayConfig, create_gateway_app
from kansa.capture.shapes import CallInfo, StreamAssembler
from kansa.capture.upstream import Origin, UpstreamPool, UpstreamTooLarge
from kansa.errors import KansaError
from standin import Standin


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home", url=store_url)
    yield led
    led.close()


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


def _cfg(standin: Standin, **kw: Any) -> GatewayConfig:
    return GatewayConfig.from_upstream(standin.url, **kw)


def _all_found(ledger: Ledger, ids: list[str]) -> bool:
    return all(find_record(ledger, i) is not None for i in ids)


# -- every fault class ------------------------------------------------------------------------


def test_every_fault_class_leaves_every_upstream_call_and_named_id_in_the_ledger(
        ledger: Ledger, standin: Standin) -> None:
    tries: list[tuple[str, str, Seen]] = []
    with running_gateway(ledger, _cfg(standin, **FAULT_CONFIG)) as gw:
        ctx = Ctx(gw.url, standin)
        for name, fault in FAULTS.items():
            nonce = new_nonce()
            tries.append((name, nonce, fault(ctx, nonce)))
        # a client that left mid-stream is recorded once the gateway notices: wait for it
        named = [i for _, _, s in tries for i in s.ids]
        wait_for(lambda: _all_found(ledger, named))
    for name, _, seen in tries:
        assert seen.expected, f"{name}: the client saw {seen.detail}"
        assert seen.ids, f"{name}: no record was named to the client"
    tallies = audit(ledger, standin, tries)
    for name, t in tallies.items():
        assert t.named_found == t.named, name
        assert t.upstream_recorded == t.upstream_calls, name
        refused_before_upstream = name.startswith(("surrogate:", "oversize request"))
        assert t.upstream_calls == (0 if refused_before_upstream else 1), name
        assert t.records == 1, name  # one record per try, refused or not
    # every record the ledger holds is one of these tries (nothing extra, nothing lost)
    assert ledger.log.size() == len(tries)


# -- lone surrogates ----------------------------------------------------------------------------


def test_a_lone_surrogate_is_refused_before_the_upstream_and_recorded_escaped(
        sqlite_ledger: Ledger, standin: Standin) -> None:
    n_before = len(standin.requests)
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", content=json.dumps(
            {"model": "gpt-test", "user": "ann\ud800", "stream": True,
             "messages": [{"role": "user", "content": "x\udc00y"}]}).encode(),
            headers={"content-type": "application/json"})
        ok = c.post("/v1/chat/completions", json={
            "model": "gpt-test", "user": "bob", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and ok.status_code == 200
    err = r.json()["error"]
    assert err["code"] == "invalid_unicode"
    assert "$.user" in err["message"] and "not sent upstream" in err["message"]
    assert len(standin.requests) == n_before + 1  # only the good request went upstream
    rec = sqlite_ledger.get(r.headers["x-kansa-record"])
    e = rec.entry
    assert (e["status"], e["outcome"], e["error.type"]) == (400, "error", "invalid_unicode")
    assert e["gen_ai.request.model"] == "gpt-test"
    assert e["attributes"]["kansa.content.escaped"] is True
    # kept as the escape text the caller sent, nothing lost, and erasable by that name
    assert rec.content is not None
    assert rec.content["gen_ai.input.messages"][0]["content"] == "x\\udc00y"
    assert [x.id for x in sqlite_ledger.find(subject="ann\\ud800")] == [rec.id]


def test_surrogate_pairs_a_bom_and_hangul_are_text_and_pass(sqlite_ledger: Ledger,
                                                            standin: Standin) -> None:
    """What looks like a surrogate but is not a lone one: an escaped pair (an emoji),
    escaped Hangul (\\ud55c), raw UTF-8 text, a UTF-8 byte order mark."""
    bodies = [
        b'{"model": "gpt-test", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}',
        b'{"model": "gpt-test", "messages": [{"role": "user", "content": "\\ud55c\\uAC00"}]}',
        '{"model": "gpt-test", "user": "한😀", "messages": []}'.encode(),
        b'\xef\xbb\xbf{"model": "gpt-test", "messages": []}',
    ]
    n_before = len(standin.requests)
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        rs = [c.post("/v1/chat/completions", content=b,
                     headers={"content-type": "application/json"}) for b in bodies]
    assert [r.status_code for r in rs] == [200] * len(bodies)
    assert len(standin.requests) == n_before + len(bodies)
    assert standin.requests[n_before]["body"]["messages"][0]["content"] == "😀"
    assert sqlite_ledger.get(rs[2].headers["x-kansa-record"]).content is not None
    assert [r.id for r in sqlite_ledger.find(subject="한😀")] == [rs[2].headers["x-kansa-record"]]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_strings_in_any_caller_field_never_make_an_unrecorded_call(
        sqlite_ledger: Ledger, standin: Standin, data: st.DataObject) -> None:
    # any code point, and surrogates often (hypothesis leaves them out by default, and they
    # are 2,048 of 1.1 million code points)
    text = st.text(st.one_of(st.characters(categories=["Cs"]),
                             st.characters(codec=None, exclude_categories=())), max_size=8)
    field = data.draw(st.sampled_from(["model", "user", "content", "key", "tool", "stop"]))
    s = data.draw(text)
    nonce = new_nonce()
    body: dict[str, Any] = {"model": "gpt-test", "messages": [
        {"role": "user", "content": nonce}]}
    if field == "model":
        body["model"] = "m" + s
    elif field == "user":
        body["user"] = s
    elif field == "content":
        body["messages"].append({"role": "user", "content": s})
    elif field == "key":
        body["metadata"] = {s: "v"}
    elif field == "tool":
        body["tools"] = [{"type": "function", "function": {"name": s}}]
    else:
        body["stop"] = [s]
    # as the gateway sees it: JSON joins a high and a low surrogate sent side by side
    seen = json.dumps(json.loads(json.dumps(body)), ensure_ascii=False)
    lone = any(0xD800 <= ord(ch) <= 0xDFFF for ch in seen)
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        n_before = len(standin.requests)
        r = c.post("/v1/chat/completions", content=json.dumps(body).encode(),
                   headers={"content-type": "application/json"})
        n_up = len(standin.requests) - n_before
    rid = r.headers["x-kansa-record"]
    rec = sqlite_ledger.get(rid)  # durable before the answer: no waiting
    if lone:
        assert (r.status_code, n_up) == (400, 0)
        assert rec.entry["error.type"] == "invalid_unicode"
    else:
        assert n_up == 1 and r.status_code != 400, r.text
    assert nonce in json.dumps(rec.content)


# -- the record path fails closed ---------------------------------------------------------------


def test_an_unexpected_error_in_the_record_path_withholds_the_answer(
        sqlite_ledger: Ledger, standin: Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(rec: Any) -> Any:
        raise RuntimeError("an unexpected bug")

    msgs = [{"role": "user", "content": "hi"}]
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        monkeypatch.setattr(sqlite_ledger, "aappend", boom)
        plain = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": msgs})
        got = b""
        with pytest.raises(httpx.RemoteProtocolError), \
                c.stream("POST", "/v1/chat/completions",
                         json={"model": "gpt-test", "stream": True, "messages": msgs}) as s:
            for chunk in s.iter_raw():
                got += chunk
        refused = c.post("/v1/chat/completions", content=b'{"model": 1',
                         headers={"content-type": "application/json"})
        monkeypatch.undo()
        after = c.post("/v1/chat/completions", json={"model": "gpt-test", "messages": msgs})
    assert plain.status_code == 503 and "x-kansa-record" not in plain.headers
    assert b"[DONE]" not in got and b"stream could not be recorded" in got
    assert refused.status_code == 503 and "x-kansa-record" not in refused.headers
    assert after.status_code == 200 and find_record(sqlite_ledger,
                                                    after.headers["x-kansa-record"])


@pytest.mark.parametrize("where", ["json", "stream"])
def test_an_unexpected_error_after_the_upstream_is_recorded_and_not_served(
        sqlite_ledger: Ledger, standin: Standin, monkeypatch: pytest.MonkeyPatch,
        where: str) -> None:
    """A bug of the gateway's own once the upstream answered (here: the response parser,
    the stream assembler) still leaves the call's record, and the client no answer."""
    def boom(*a: Any) -> Any:
        raise RuntimeError("an unexpected bug")

    if where == "json":
        monkeypatch.setattr(gateway_module, "_parse_response", boom)
    else:
        monkeypatch.setattr(StreamAssembler, "feed", boom)
    nonce = new_nonce()
    body = {"model": "gpt-test", "stream": where == "stream",
            "messages": [{"role": "user", "content": nonce}]}
    n_before = len(standin.requests)
    got = b""
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        if where == "json":
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 502 and r.json()["error"]["code"] == "gateway_error"
            rid = r.headers["x-kansa-record"]
        else:
            with pytest.raises(httpx.RemoteProtocolError), \
                    c.stream("POST", "/v1/chat/completions", json=body) as s:
                rid = s.headers["x-kansa-record"]
                for chunk in s.iter_raw():
                    got += chunk
            assert b"[DONE]" not in got and b"internal error" in got
    assert len(standin.requests) == n_before + 1
    rec = sqlite_ledger.get(rid)
    assert (rec.entry["outcome"], rec.entry["error.type"]) == ("error", "gateway_error")
    assert nonce in json.dumps(rec.content)


def test_a_record_the_vault_cannot_key_is_still_written(sqlite_ledger: Ledger,
                                                        standin: Standin) -> None:
    """Defence in depth: a record that still carries lone surrogates (a subject the vault
    cannot HMAC, an upstream's model name) is escaped and written, not lost."""
    app = create_gateway_app(sqlite_ledger, _cfg(standin))
    call = CallInfo(system="s", provider="openai", operation="chat", record_id="",
                    subject="ann\ud800", status=200,
                    request={"model": "m", "messages": [{"role": "user", "content": "a\udfff"}]},
                    response={"model": "up\ud801", "choices": []})
    from kansa.records.model import new_record_id
    call.record_id = new_record_id()
    assert asyncio.run(app._record(call, time.perf_counter())) is True
    e = sqlite_ledger.get(call.record_id).entry
    assert e["gen_ai.response.model"] == "up\\ud801"
    assert e["attributes"]["kansa.content.escaped"] is True
    assert [r.id for r in sqlite_ledger.find(subject="ann\\ud800")] == [call.record_id]


# -- oversize -----------------------------------------------------------------------------------


def test_a_17_mb_body_gets_a_413_the_client_can_read(ledger: Ledger, standin: Standin) -> None:
    n_before = len(standin.requests)
    big = json.dumps({"model": "gpt-test", "messages": [
        {"role": "user", "content": "x" * (17 * 1000 * 1000)}]}).encode()

    def chunks() -> Iterator[bytes]:  # no content-length: found too large while reading
        for i in range(0, len(big), 1 << 20):
            yield big[i:i + (1 << 20)]

    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url,
                                                                     timeout=60) as c:
        declared = c.post("/v1/chat/completions", content=big,
                          headers={"content-type": "application/json"})
        chunked = c.post("/v1/chat/completions", content=chunks(),
                         headers={"content-type": "application/json"})
        # a client that sends its whole body before reading (httpx reads an early answer
        # after a failed write, which hid the reset) must receive the 413 too
        raw = oversize_request_raw(Ctx(gw.url, standin), new_nonce())
    assert len(standin.requests) == n_before
    assert raw.expected, raw.detail
    for rid in [declared.headers["x-kansa-record"], chunked.headers["x-kansa-record"], *raw.ids]:
        e = ledger.get(rid).entry
        assert (e["status"], e["error.type"]) == (413, "request_too_large")
    for r in (declared, chunked):
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


def test_answers_over_the_read_ahead_arrive_whole(sqlite_ledger: Ledger,
                                                  standin: Standin) -> None:
    """1 MB answers stalled at the client's 256 KiB read-ahead (then 504 after the read
    timeout): now they pass whole, plain and gzip."""
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as c:
        rs = [c.post("/v1/chat/completions", json={"model": m, "messages": [
            {"role": "user", "content": "q"}]}) for m in ("big-1000000", "big-1000000-gzip")]
    for r in rs:
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "echo: " + "x" * 1000000
        assert sqlite_ledger.get(r.headers["x-kansa-record"]).entry["outcome"] == "ok"


@pytest.mark.parametrize("model", ["big-3000000", "big-50000000-gzip"])
def test_an_answer_over_max_response_bytes_is_a_recorded_502(
        sqlite_ledger: Ledger, standin: Standin, model: str) -> None:
    cfg = _cfg(standin, max_response_bytes=1024 * 1024)
    with running_gateway(sqlite_ledger, cfg) as gw, httpx.Client(base_url=gw.url,
                                                                 timeout=60) as c:
        r = c.post("/v1/chat/completions", json={"model": model, "messages": [
            {"role": "user", "content": "q"}]})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "upstream_response_too_large" and "1048576 bytes" in err["message"]
    e = sqlite_ledger.get(r.headers["x-kansa-record"]).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (
        502, "error", "upstream_response_too_large")
    assert e["attributes"]["kansa.upstream.status"] == 200


@pytest.mark.parametrize("shape", ["plain", "gzip"])
def test_a_stream_over_max_response_bytes_is_cut_with_an_error_event(
        sqlite_ledger: Ledger, standin: Standin, shape: str) -> None:
    model = "big-300000000" + ("-gzip" if shape == "gzip" else "")
    cfg = _cfg(standin, max_response_bytes=2 * 1024 * 1024)
    got = b""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "q"}]}
    with running_gateway(sqlite_ledger, cfg) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as c, \
            pytest.raises(httpx.RemoteProtocolError), \
            c.stream("POST", "/v1/chat/completions", json=body) as s:
        rid = s.headers["x-kansa-record"]
        for chunk in s.iter_raw():
            got += chunk
    assert b"[DONE]" not in got
    assert got.rstrip().endswith(b"}")
    last = json.loads(got.rstrip().rsplit(b"\n\n", 1)[-1].removeprefix(b"data: "))
    assert "max_response_bytes" in last["error"]["message"]
    assert len(got) <= 2 * 1024 * 1024 + 4096  # never more than the limit went through
    rec = sqlite_ledger.get(rid)  # written before the cut
    assert (rec.entry["outcome"], rec.entry["error.type"]) == (
        "error", "upstream_response_too_large")


def test_the_upstream_client_bounds_what_it_decodes() -> None:
    """UpstreamPool alone: read() takes bodies past the read-ahead; a body over
    max_response_bytes fails with UpstreamTooLarge, decoding at most one byte past it."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=1)
    plain = b"y" * (3 * 1024 * 1024)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        body, enc = (bomb, b"content-encoding: gzip\r\n") if b"/bomb" in head else (plain, b"")
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n" + enc +
                b"content-length: %d\r\n\r\n" % len(body) + body)
        with contextlib.suppress(ConnectionError):
            await w.drain()
        w.close()

    async def main() -> list[Any]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        origin = Origin(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1")
        out: list[Any] = []
        for limit, path in ((None, b"/plain"), (1 << 20, b"/bomb"), (1 << 20, b"/plain")):
            pool = UpstreamPool(max_response_bytes=limit, read_timeout=30)
            resp = await pool.request(origin, b"GET", path, [], b"")
            try:
                out.append(len(await resp.read()))
            except UpstreamTooLarge as e:
                out.append((e.limit, resp._total))
            finally:
                resp.release()
                await pool.close()
        server.close()
        return out

    got = asyncio.run(main())
    assert got[0] == len(plain)
    assert got[1] == (1 << 20, (1 << 20) + 1)  # the bomb never expanded past limit + 1
    assert got[2] == (1 << 20, 0)  # announced too large by content-length: nothing read


def test_max_response_bytes_is_a_config_key_and_must_be_positive(tmp_path: Path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text('max_response_bytes = 4096\n[[upstream]]\nbase_url = "http://x/v1"\n')
    assert GatewayConfig.from_toml(p).max_response_bytes == 4096
    assert GatewayConfig.from_upstream("http://x/v1").max_response_bytes == 32 * 1024 * 1024
    for bad in (0, -1):
        with pytest.raises(KansaError, match="max_response_bytes"):
            GatewayConfig.from_dict({"max_response_bytes": bad,
                                     "upstream": [{"base_url": "http://x/v1"}]})


def test_the_cli_flag_overrides_the_config_file(tmp_path: Path, standin: Standin) -> None:
    """``kansa gateway --config F --max-response-bytes N``: the flag wins over the file."""
    from test_gateway_multiproc import _start, _stop, _wait_ready

    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'max_response_bytes = 100000000\n[[upstream]]\nbase_url = "{standin.url}"\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gw.log"
    proc = _start(["--config", str(cfg), "--port", str(port), "--home", str(tmp_path / "h"),
                   "--max-response-bytes", "5000"], log)
    try:
        _wait_ready(url, proc, log)
        small = httpx.post(url + "/v1/chat/completions", json={"model": "big-1000", "messages": []})
        big = httpx.post(url + "/v1/chat/completions", json={"model": "big-6000", "messages": []})
    finally:
        assert _stop(proc) == 0
    assert small.status_code == 200
    assert big.status_code == 502 and "limit of 5000 bytes" in big.json()["error"]["message"]
