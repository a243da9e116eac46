"""kansa gateway against a real stand-in upstream, over real sockets: every route, streams,
and every way a request can end (upstream 5xx, timeout, reset, refused; client gone
mid-stream; malformed, oversized, unauthenticated). Each must answer as documented and
leave exactly one record, durable before the response completes."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_harness import (
    CuttableProxy,
    GatewayServer,
    find_record,
    free_port,
    running_gateway,
    store_bytes,
    wait_for,
)
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig, Upstream, create_gateway_app
from kansa.capture.gateway_keys import GatewayKeys
from standin import Standin

MSG = [{"role": "user", "content": "hi there"}]


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


def _rec(ledger: Ledger, r: httpx.Response) -> Any:
    """The response's record, read right after the response: it must already be durable."""
    rid = r.headers["x-kansa-record"]
    return ledger.get(rid)


def _content(ledger: Ledger, rid: str) -> Any:
    return ledger.get(rid).content


# -- every route -------------------------------------------------------------------------


def test_chat_completion_is_recorded_before_the_response_completes(
        ledger: Ledger, standin: Standin) -> None:
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions",
                   json={"model": "gpt-test", "messages": MSG, "temperature": 0.5,
                         "user": "person-1"},
                   headers={"x-kansa-actor": "agent-9", "x-kansa-conversation-id": "conv-1"})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "echo: hi there"
        assert "x-kansa-durability" not in r.headers
        rec = _rec(ledger, r)  # no waiting: durable before the response completed
    e = rec.entry
    assert e["id"] == r.headers["x-kansa-record"]
    assert e["system"] == "kansa-gateway"
    assert e["outcome"] == "ok" and e["status"] == 200
    assert e["gen_ai.operation.name"] == "chat"
    assert e["gen_ai.provider.name"] == "openai"
    assert e["gen_ai.request.model"] == "gpt-test"
    assert e["gen_ai.usage.input_tokens"] == 7 and e["gen_ai.usage.output_tokens"] == 3
    assert e["attributes"]["gen_ai.request.temperature"] == 0.5
    assert e["actor"] == "agent-9" and e["gen_ai.conversation.id"] == "conv-1"
    assert e["attributes"]["kansa.gateway.upstream"] == "default"
    assert e["latency_ms"] > 0
    assert e["content"]["alg"] == "sha256-salted-v1"
    assert "person-1" not in json.dumps(e)  # the subject appears only as a pseudonym
    assert [x.id for x in ledger.find(subject="person-1")] == [e["id"]]
    full = ledger.get(e["id"])
    assert full.content["gen_ai.input.messages"] == MSG
    assert full.content["gen_ai.output.messages"][0]["content"] == "echo: hi there"
    # the stand-in got the request the client sent, minus the gateway's own headers
    sent = standin.requests[-1]
    assert sent["body"]["messages"] == MSG
    assert not any(h.lower().startswith("x-kansa-") for h in sent["headers"])


def test_every_route_is_proxied_and_recorded(sqlite_ledger: Ledger, standin: Standin) -> None:
    ledger = sqlite_ledger
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        comp = c.post("/v1/completions", json={"model": "m", "prompt": "Once"})
        emb = c.post("/v1/embeddings", json={"model": "e", "input": "vector me"})
        resp = c.post("/v1/responses", json={"model": "m", "input": "hello"})
        msgs = c.post("/v1/messages", json={"model": "claude-x", "max_tokens": 16,
                                            "messages": MSG},
                      headers={"anthropic-version": "2023-06-01"})
        models = c.get("/v1/models")
        model = c.get("/v1/models/some-model")
    for r in (comp, emb, resp, msgs, models, model):
        assert r.status_code == 200, r.text
    assert standin.requests[-3]["headers"].get("anthropic-version") == "2023-06-01"
    assert models.json()["data"][0]["id"] == "standin-model"
    assert model.json()["id"] == "some-model"

    e = _rec(ledger, comp).entry
    assert (e["gen_ai.operation.name"], e["gen_ai.usage.input_tokens"]) == ("text_completion", 3)
    assert e["gen_ai.response.finish_reasons"] == ["length"]
    assert _content(ledger, e["id"])["input"] == "Once"

    e = _rec(ledger, emb).entry
    assert e["gen_ai.operation.name"] == "embeddings" and e["gen_ai.usage.input_tokens"] == 4
    assert "gen_ai.output.messages" not in _content(ledger, e["id"])  # vectors are not content

    e = _rec(ledger, resp).entry
    assert e["gen_ai.usage.input_tokens"] == 5 and e["gen_ai.usage.output_tokens"] == 2
    assert e["gen_ai.response.finish_reasons"] == ["completed"]

    e = _rec(ledger, msgs).entry
    assert e["gen_ai.provider.name"] == "anthropic"
    assert e["gen_ai.usage.input_tokens"] == 9 and e["gen_ai.usage.output_tokens"] == 4
    assert e["gen_ai.response.finish_reasons"] == ["end_turn"]

    for r in (models, model):
        e = _rec(ledger, r).entry
        assert e["gen_ai.operation.name"] == "list_models" and e["status"] == 200
    assert ledger.log.size() == 6


# -- streams -------------------------------------------------------------------------------


def _events(raw: bytes) -> list[bytes]:
    return [e for e in raw.split(b"\n\n") if e.strip()]


def test_chat_stream_usage_is_taken_from_the_stream(ledger: Ledger, standin: Standin) -> None:
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        with c.stream("POST", "/v1/chat/completions",
                      json={"model": "m", "stream": True, "messages": MSG}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            rid = r.headers["x-kansa-record"]  # named up front
            raw = b"".join(r.iter_raw())
        rec = ledger.get(rid)  # durable once the stream completed
    # the gateway asked for usage on the client's behalf...
    assert standin.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    # ...and kept the usage-only chunk the client did not ask for out of its stream
    events = _events(raw)
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"choices": []' in e for e in events)
    assert len(events) == 8
    e = rec.entry
    assert e["gen_ai.usage.input_tokens"] == 11 and e["gen_ai.usage.output_tokens"] == 6
    assert e["attributes"]["kansa.stream"] is True and e["attributes"]["kansa.ttfb_ms"] > 0
    assert e["gen_ai.response.finish_reasons"] == ["stop"]
    out = rec.content["gen_ai.output.messages"][0]["content"]
    assert out == "Hello from the stand-in"
    assert "stream_options" not in rec.content.get("gen_ai.input.messages", [{}])[0]


def test_stream_usage_the_client_asked_for_reaches_it(sqlite_ledger: Ledger,
                                                      standin: Standin) -> None:
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions",
                   json={"model": "m", "stream": True, "messages": MSG,
                         "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert b'"choices": []' in r.content and b'"prompt_tokens": 11' in r.content
    assert _rec(sqlite_ledger, r).entry["gen_ai.usage.output_tokens"] == 6


def test_anthropic_responses_and_completions_streams(sqlite_ledger: Ledger,
                                                     standin: Standin) -> None:
    ledger = sqlite_ledger
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        a = c.post("/v1/messages", json={"model": "claude", "stream": True, "max_tokens": 9,
                                          "messages": MSG})
        s = c.post("/v1/responses", json={"model": "m", "stream": True, "input": "x"})
        t = c.post("/v1/completions", json={"model": "m", "stream": True, "prompt": "x"})
    assert a.content.rstrip().endswith(b'{"type": "message_stop"}')
    e = _rec(ledger, a).entry
    assert e["gen_ai.usage.input_tokens"] == 9 and e["gen_ai.usage.output_tokens"] == 4
    assert e["gen_ai.response.finish_reasons"] == ["end_turn"]
    blocks = _content(ledger, e["id"])["gen_ai.output.messages"][0]["content"]
    assert blocks[0]["text"] == "Bonjour monde"
    e = _rec(ledger, s).entry
    assert e["gen_ai.usage.input_tokens"] == 5 and e["attributes"]["kansa.stream"] is True
    e = _rec(ledger, t).entry
    assert e["gen_ai.usage.input_tokens"] == 11 and e["gen_ai.operation.name"] == "text_completion"


def test_stream_is_forwarded_chunk_by_chunk(sqlite_ledger: Ledger, standin: Standin) -> None:
    """The upstream sends one event and then waits: the client must already have it."""
    standin.release.clear()
    try:
        with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
                httpx.Client(base_url=gw.url, timeout=10) as c, \
                c.stream("POST", "/v1/chat/completions",
                         json={"model": "hold", "stream": True, "messages": MSG}) as r:
            it = r.iter_raw()
            first = b""
            while b'"content": "Hel"' not in first:  # the first event, however it is split
                first += next(it)
            assert b"[DONE]" not in first
            assert not standin.release.is_set()  # the upstream is still holding the rest
            standin.release.set()
            rest = b"".join(it)
            rid = r.headers["x-kansa-record"]
        assert rest.rstrip().endswith(b"data: [DONE]")
        assert sqlite_ledger.get(rid).entry["outcome"] == "ok"
    finally:
        standin.release.clear()


def test_usage_is_counted_when_the_upstream_reports_none(sqlite_ledger: Ledger,
                                                         standin: Standin) -> None:
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        plain = c.post("/v1/chat/completions", json={"model": "no-usage", "messages": MSG})
        streamed = c.post("/v1/chat/completions",
                          json={"model": "no-usage", "stream": True, "messages": MSG})
    for r in (plain, streamed):
        e = _rec(sqlite_ledger, r).entry
        assert e["attributes"]["kansa.usage.estimated"] is True
        assert e["gen_ai.usage.input_tokens"] >= 2 and e["gen_ai.usage.output_tokens"] >= 2


# -- upstream failures --------------------------------------------------------------------


def test_upstream_errors_pass_through_and_are_recorded(ledger: Ledger, standin: Standin) -> None:
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        r500 = c.post("/v1/chat/completions", json={"model": "fail-500", "messages": MSG})
        r429 = c.post("/v1/messages", json={"model": "fail-429", "max_tokens": 5,
                                             "messages": MSG})
    assert r500.status_code == 500 and r500.json()["error"]["message"] == "standin failure"
    assert r429.status_code == 429 and r429.json()["type"] == "error"
    e = _rec(ledger, r500).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (500, "error", "500")
    assert _content(ledger, e["id"])["output"]["message"] == "standin failure"
    e = _rec(ledger, r429).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (429, "error", "429")


def test_upstream_timeout_is_504_and_recorded(ledger: Ledger, standin: Standin) -> None:
    cfg = _cfg(standin, read_timeout=0.3)
    with running_gateway(ledger, cfg) as gw, httpx.Client(base_url=gw.url, timeout=10) as c:
        t = time.monotonic()
        r = c.post("/v1/chat/completions", json={"model": "slow", "delay": 3, "messages": MSG})
        took = time.monotonic() - t
    assert r.status_code == 504 and took < 2.5
    assert r.json()["error"]["code"] == "upstream_timeout"
    e = _rec(ledger, r).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (504, "timeout", "upstream_timeout")


def test_upstream_reset_and_refused_are_502_and_recorded(sqlite_ledger: Ledger,
                                                         standin: Standin) -> None:
    ledger = sqlite_ledger
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        reset = c.post("/v1/chat/completions", json={"model": "reset", "messages": MSG})
        ok = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert reset.status_code == 502 and reset.json()["error"]["code"] == "upstream_unreachable"
    assert ok.status_code == 200  # the gateway carries on
    e = _rec(ledger, reset).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (502, "error", "upstream_unreachable")

    dead = GatewayConfig.from_upstream(f"http://127.0.0.1:{free_port()}/v1", connect_timeout=2)
    with running_gateway(ledger, dead) as gw, httpx.Client(base_url=gw.url) as c:
        refused = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert refused.status_code == 502
    assert _rec(ledger, refused).entry["outcome"] == "error"


def test_upstream_failing_mid_stream_cuts_the_client_stream(ledger: Ledger,
                                                            standin: Standin) -> None:
    cfg = _cfg(standin, read_timeout=0.3)
    got: dict[str, tuple[str, bytes]] = {}
    with running_gateway(ledger, cfg) as gw, httpx.Client(base_url=gw.url, timeout=10) as c:
        for model in ("drop-midstream", "stall-midstream"):
            body = b""
            with pytest.raises(httpx.RemoteProtocolError), \
                    c.stream("POST", "/v1/chat/completions",
                             json={"model": model, "stream": True, "delay": 3,
                                   "messages": MSG}) as r:
                rid = r.headers["x-kansa-record"]
                for chunk in r.iter_raw():
                    body += chunk
            got[model] = (rid, body)
    for model, (outcome, err) in {"drop-midstream": ("error", "upstream_disconnected"),
                                  "stall-midstream": ("timeout", "upstream_timeout")}.items():
        rid, body = got[model]
        assert b'"content": "Hel"' in body  # what arrived was passed on
        assert b"[DONE]" not in body  # no terminal event: the client knows it is cut
        assert b'"code": "stream_failed"' in body  # and an SSE error event says why
        e = ledger.get(rid).entry
        assert (e["status"], e["outcome"], e["error.type"]) == (200, outcome, err)
        assert e["attributes"]["kansa.stream"] is True


# -- the client leaving ----------------------------------------------------------------------


def test_client_disconnect_mid_stream_is_recorded_aborted(ledger: Ledger,
                                                          standin: Standin) -> None:
    standin.events.clear()
    with running_gateway(ledger, _cfg(standin)) as gw:
        with httpx.Client(base_url=gw.url, timeout=10) as c, \
                c.stream("POST", "/v1/chat/completions",
                         json={"model": "drip", "stream": True, "messages": MSG}) as r:
            rid = r.headers["x-kansa-record"]
            it = r.iter_raw()
            seen = next(it) + next(it)
        assert b"data:" in seen
        rec = wait_for(lambda: find_record(ledger, rid), timeout=10)
        assert rec is not None, "the aborted stream left no record"
        e = rec.entry
        assert (e["outcome"], e["error.type"], e["status"]) == (
            "aborted", "client_disconnected", 200)
        # the gateway dropped the upstream connection too, long before the drip's 10 s end
        assert standin.wait_event("drip: client gone", timeout=5)
        assert "drip: finished" not in standin.events
        assert rec.content["gen_ai.output.messages"][0]["content"].startswith("Hel")


def test_client_disconnect_while_waiting_upstream(sqlite_ledger: Ledger,
                                                  standin: Standin) -> None:
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw:
        body = json.dumps({"model": "slow", "delay": 2, "messages": MSG}).encode()
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                  b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.3)
        s.close()
        rec = wait_for(lambda: next(iter(sqlite_ledger.find()), None), timeout=5)
    assert rec is not None
    assert rec.entry["outcome"] == "aborted" and rec.entry["error.type"] == "client_disconnected"
    assert rec.entry["latency_ms"] < 1500  # recorded when the client left, not when upstream ended


# -- bad requests ------------------------------------------------------------------------------


def test_malformed_json_is_400_and_recorded(ledger: Ledger, standin: Standin) -> None:
    n_before = len(standin.requests)
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url) as c:
        bad = c.post("/v1/chat/completions", content=b'{"model": "m", "messages": [',
                     headers={"content-type": "application/json"})
        arr = c.post("/v1/chat/completions", json=["not", "an", "object"])
        nan = c.post("/v1/chat/completions", content=b'{"model": "m", "temperature": NaN}')
        bad_a = c.post("/v1/messages", content=b"{oops")
        empty = c.post("/v1/embeddings", content=b"")
    assert len(standin.requests) == n_before  # none of them reached the upstream
    for r, code in ((bad, "invalid_json"), (arr, "invalid_body"), (nan, "invalid_json"),
                    (empty, "invalid_json")):
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == code and err["type"] == "invalid_request_error"
        assert err["message"].startswith("kansa gateway:")
        e = _rec(ledger, r).entry
        assert (e["status"], e["outcome"], e["error.type"]) == (400, "error", code)
    assert bad_a.status_code == 400 and bad_a.json()["type"] == "error"  # Anthropic's shape
    assert _rec(ledger, bad_a).entry["gen_ai.provider.name"] == "anthropic"
    raw_input = _content(ledger, bad.headers["x-kansa-record"])["input"]
    assert raw_input == '{"model": "m", "messages": ['


def test_oversized_body_is_413_and_recorded(ledger: Ledger, standin: Standin) -> None:
    n_before = len(standin.requests)
    cfg = _cfg(standin, max_body_bytes=2048)
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})
    with running_gateway(ledger, cfg) as gw, httpx.Client(base_url=gw.url) as c:
        declared = c.post("/v1/chat/completions", content=big.encode())

        def chunks() -> Iterator[bytes]:  # no content-length: found while reading
            for i in range(0, len(big), 500):
                yield big[i:i + 500].encode()

        chunked = c.post("/v1/chat/completions", content=chunks())
        small = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert small.status_code == 200
    assert len(standin.requests) == n_before + 1
    for r in (declared, chunked):
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        e = _rec(ledger, r).entry
        assert (e["status"], e["error.type"]) == (413, "request_too_large")
    assert _rec(ledger, declared).entry["attributes"]["http.request.body.size"] == len(big)


def test_unknown_routes_and_methods_are_recorded(sqlite_ledger: Ledger,
                                                 standin: Standin) -> None:
    with running_gateway(sqlite_ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        nope = c.get("/v1/nope")
        wrong = c.get("/v1/chat/completions")
        spec = c.get("/openapi.json")
        health = c.get("/healthz")
    assert nope.status_code == 404 and wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert _rec(sqlite_ledger, nope).entry["attributes"]["url.path"] == "/v1/nope"
    assert _rec(sqlite_ledger, wrong).entry["status"] == 405
    assert "/v1/chat/completions" in spec.json()["paths"]
    assert health.json()["status"] == "ok" and health.json()["keys"] == "open"
    assert sqlite_ledger.log.size() == 2  # the gateway's own routes are not records


# -- keys and credentials --------------------------------------------------------------------


def test_gateway_keys(ledger: Ledger, standin: Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_KEY", "sk-upstream-secret-1234")
    keys = GatewayKeys(ledger.log.store)
    key, info = keys.create("support-bot", "cx")
    other, _ = keys.create("other-app")
    cfg = GatewayConfig.from_upstream(standin.url, api_key_env="STANDIN_KEY",
                                      key_refresh_seconds=0.1)
    with running_gateway(ledger, cfg) as gw, httpx.Client(base_url=gw.url) as c:
        missing = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        wrong = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG},
                       headers={"authorization": "Bearer ksk_wrong"})
        good = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG},
                      headers={"authorization": f"Bearer {key}"})
        upstream_saw = standin.requests[-1]["headers"]
        anthropic_style = c.post("/v1/messages", json={"model": "c", "max_tokens": 3,
                                                       "messages": MSG},
                                 headers={"x-api-key": other})
        upstream_saw_a = standin.requests[-1]["headers"]
        # a key created after the gateway started works at once; a revoked one stops
        late, _ = keys.create("late-app")
        late_r = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG},
                        headers={"authorization": f"Bearer {late}"})
        assert keys.revoke(info.key_id) == 1
        revoked = wait_for(lambda: c.post(
            "/v1/chat/completions", json={"model": "m", "messages": MSG},
            headers={"authorization": f"Bearer {key}"}).status_code == 401, timeout=5)
        health = c.get("/healthz").json()
    assert missing.status_code == 401 and wrong.status_code == 401
    for r, code in ((missing, "missing_gateway_key"), (wrong, "invalid_gateway_key")):
        e = _rec(ledger, r).entry
        assert (e["status"], e["error.type"]) == (401, code)
        assert "app" not in e  # unknown caller
    assert good.status_code == 200 and anthropic_style.status_code == 200
    e = _rec(ledger, good).entry
    assert e["app"] == "support-bot"
    assert e["attributes"]["kansa.gateway.team"] == "cx"
    assert e["attributes"]["kansa.gateway.key"] == info.key_id
    assert _rec(ledger, anthropic_style).entry["app"] == "other-app"
    # the upstream got the upstream's key, never the caller's
    assert upstream_saw["authorization"] == "Bearer sk-upstream-secret-1234"
    assert upstream_saw_a["x-api-key"] == "sk-upstream-secret-1234"
    assert key not in json.dumps(upstream_saw) and other not in json.dumps(upstream_saw_a)
    assert late_r.status_code == 200 and _rec(ledger, late_r).entry["app"] == "late-app"
    assert revoked
    assert health["keys"] == "required"


def test_credentials_never_reach_storage(ledger: Ledger, standin: Standin,
                                         monkeypatch: pytest.MonkeyPatch,
                                         store_url: str) -> None:
    upstream_secret = "sk-UPSTREAM-" + "7" * 24
    monkeypatch.setenv("STANDIN_KEY", upstream_secret)
    keys = GatewayKeys(ledger.log.store)
    gateway_key, _ = keys.create("app")
    caller_secret = "sk-CALLER-" + "9" * 24
    with running_gateway(ledger, GatewayConfig.from_upstream(
            standin.url, api_key_env="STANDIN_KEY")) as gw, \
            httpx.Client(base_url=gw.url) as c:
        for headers in ({"authorization": f"Bearer {gateway_key}"},
                        {"x-api-key": gateway_key},
                        {"authorization": f"Bearer {gateway_key}", "x-api-key": caller_secret},
                        {"authorization": f"Bearer {caller_secret}"}):
            c.post("/v1/chat/completions", json={"model": "m", "messages": MSG},
                   headers=headers)
            c.post("/v1/chat/completions", json={"model": "m", "stream": True,
                                                 "messages": MSG}, headers=headers)
            c.post("/v1/messages", content=b"{bad json", headers=headers)
    # an open gateway passes the caller's own key through to the upstream: not stored either
    keys.store.execute("DELETE FROM gateway_keys")
    with running_gateway(ledger, GatewayConfig.from_upstream(standin.url)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG},
                   headers={"authorization": f"Bearer {caller_secret}"})
        assert r.status_code == 200
        assert standin.requests[-1]["headers"]["authorization"] == f"Bearer {caller_secret}"
    ledger.log.flush()
    assert ledger.log.size() == 13
    assert any(h.get("authorization") == f"Bearer {upstream_secret}"
               for h in (q["headers"] for q in standin.requests))
    data = store_bytes(store_url)
    assert b'"system":"kansa-gateway"' in data  # the dump does cover the entries
    for secret in (upstream_secret, gateway_key, caller_secret):
        for form in (secret.encode(), secret.encode().hex().encode(),
                     secret.encode("utf-16-le")):
            assert form not in data, f"{secret[:12]}... found in the store"
        assert secret[4:20].encode() not in data


# -- durability modes and store failures ----------------------------------------------------


class _WriteLock:
    """Holds the store's append lock from another session, as a busy writer would."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> _WriteLock:
        if self.url.startswith("sqlite:"):
            self.c: Any = sqlite3.connect(self.url.removeprefix("sqlite:///"),
                                          isolation_level=None)
            self.c.execute("BEGIN IMMEDIATE")
        else:  # both append paths: the advisory lock and the log_state row lock
            import psycopg

            self.c = psycopg.connect(self.url)
            self.c.execute("SELECT pg_advisory_xact_lock(%s)", (0x6B616E7361,))
            self.c.execute("SELECT size FROM log_state WHERE id = 1 FOR UPDATE")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.url.startswith("sqlite:"):
            self.c.execute("COMMIT")
        else:
            self.c.rollback()
        self.c.close()


def test_responses_wait_for_their_record_to_be_durable(ledger: Ledger, standin: Standin,
                                                       store_url: str) -> None:
    """While the store cannot commit, a JSON response and a stream's terminal event wait;
    the stream's earlier events do not."""
    done: dict[str, float] = {}
    chunks: list[tuple[float, bytes]] = []
    with running_gateway(ledger, _cfg(standin)) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as c:
        c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})  # warm up

        def plain() -> None:
            r = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
            done["plain"] = time.monotonic()
            done["plain_status"] = r.status_code

        def stream() -> None:
            with c.stream("POST", "/v1/chat/completions",
                          json={"model": "m", "stream": True, "messages": MSG}) as r:
                for chunk in r.iter_raw():
                    chunks.append((time.monotonic(), chunk))

        with _WriteLock(store_url):
            threads = [threading.Thread(target=plain), threading.Thread(target=stream)]
            for t in threads:
                t.start()
            time.sleep(0.6)
            released = time.monotonic()
            assert "plain" not in done  # still waiting for its record
            early = b"".join(ch for _, ch in chunks)
            assert b'"content": "Hel"' in early and b"[DONE]" not in early
        for t in threads:
            t.join(15)
    assert done["plain_status"] == 200 and done["plain"] >= released
    done_at = [t for t, ch in chunks if b"[DONE]" in ch]
    assert done_at and done_at[0] >= released
    assert ledger.log.size() == 3


def test_async_mode_does_not_wait_for_the_store(sqlite_ledger: Ledger,
                                                standin: Standin) -> None:
    url = sqlite_ledger.log.store.url
    with running_gateway(sqlite_ledger, _cfg(standin, async_records=True)) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as c:
        with _WriteLock(url):
            t = time.monotonic()
            r = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
            took = time.monotonic() - t
            assert find_record(sqlite_ledger, r.headers["x-kansa-record"]) is None
        assert r.status_code == 200 and took < 0.5
        assert r.headers["x-kansa-durability"] == "async"
        assert wait_for(lambda: find_record(sqlite_ledger, r.headers["x-kansa-record"]))


def test_async_records_mode_says_so(sqlite_ledger: Ledger, standin: Standin) -> None:
    with running_gateway(sqlite_ledger, _cfg(standin, async_records=True)) as gw, \
            httpx.Client(base_url=gw.url) as c:
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        s = c.post("/v1/chat/completions", json={"model": "m", "stream": True,
                                                 "messages": MSG})
        bad = c.post("/v1/chat/completions", content=b"{")
        health = c.get("/healthz").json()
    assert health["durability"] == "async"
    for resp in (r, s, bad):
        assert resp.headers["x-kansa-durability"] == "async"
        rid = resp.headers["x-kansa-record"]
        assert wait_for(lambda rid=rid: find_record(sqlite_ledger, rid), timeout=5)


def test_store_outage_fails_closed_and_loses_nothing_acknowledged(
        pg_url: str, tmp_path: Path, standin: Standin) -> None:
    """PostgreSQL behind a proxy we can cut: while the store is gone every request is
    refused (503, saying why) and nothing is acknowledged without its record; after it
    returns, service resumes. Every 200 has its record, no 503 has one."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(pg_url)
    proxy = CuttableProxy(u.hostname or "127.0.0.1", u.port or 5432)
    netloc = (u.username + "@" if u.username else "") + f"127.0.0.1:{proxy.port}"
    via_proxy = urlunsplit((u.scheme, netloc, u.path, u.query + "&connect_timeout=2", ""))
    assert via_proxy.startswith("postgresql://")
    Ledger.init(tmp_path / "home", url=pg_url).close()
    ledger = Ledger.open(via_proxy, home=tmp_path / "home")
    cfg = _cfg(standin, store_retry_seconds=0.3)
    ok_ids: list[str] = []
    refused = 0
    try:
        with running_gateway(ledger, cfg) as gw, httpx.Client(base_url=gw.url, timeout=30) as c:
            def call(i: int) -> httpx.Response:
                r = c.post("/v1/chat/completions",
                           json={"model": "m", "messages": [{"role": "user",
                                                             "content": f"n{i}"}]})
                if r.status_code == 200:
                    ok_ids.append(r.headers["x-kansa-record"])
                return r

            for i in range(5):
                assert call(i).status_code == 200
            proxy.cut()
            during = [call(100 + i) for i in range(6)]
            health_down = c.get("/healthz")
            proxy.restore()
            after = wait_for(lambda: call(200).status_code == 200, timeout=15, step=0.2)
            for i in range(5):
                call(300 + i)
            health_up = c.get("/healthz").json()
    finally:
        ledger.close()
        proxy.close()
    assert [r.status_code for r in during] == [503] * 6, [r.text[:300] for r in during]
    for r in during:
        refused += 1
        assert "x-kansa-record" not in r.headers
        assert r.json()["error"]["code"] == "ledger_unavailable"
        assert "fails closed" in r.json()["error"]["message"]
    assert health_down.status_code == 503 and health_down.json()["ledger"] == "unavailable"
    assert health_up["store_errors"] >= 1
    assert after
    with Ledger.open(pg_url, home=tmp_path / "home") as check:
        stored = {r.id for r in check.find()}
        assert set(ok_ids) <= stored  # everything acknowledged is durable
        assert len(ok_ids) >= 11
        contents = [r.content["gen_ai.input.messages"][0]["content"]
                    for r in check.find(with_content=True)]
        assert not any(c.startswith("n10") for c in contents)  # refused: no record, no answer
        check.checkpoint()
        check.verify()
    assert refused == 6


# -- config-file routing -----------------------------------------------------------------------


def test_config_routes_models_to_upstreams(sqlite_ledger: Ledger, standin: Standin,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    other = Standin().start()
    monkeypatch.setenv("CLAUDE_KEY", "sk-ant-test")
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text(f"""
system = "routing-test"
max_body_bytes = 100000

[[upstream]]
name = "anthropic"
models = ["claude-*"]
base_url = "{other.url}"
api_key_env = "CLAUDE_KEY"

[[upstream]]
name = "local"
models = ["*"]
base_url = "{standin.url}"
""")
    try:
        cfg = GatewayConfig.from_toml(cfg_file)
        assert cfg.to_dict()["upstream"][0]["models"] == ["claude-*"]
        with running_gateway(sqlite_ledger, cfg) as gw, httpx.Client(base_url=gw.url) as c:
            a = c.post("/v1/messages", json={"model": "claude-3", "max_tokens": 3,
                                              "messages": MSG})
            b = c.post("/v1/chat/completions", json={"model": "llama", "messages": MSG})
            m = c.get("/v1/models/claude-3")
    finally:
        other.stop()
    assert a.status_code == b.status_code == m.status_code == 200
    assert [q["path"] for q in other.requests] == ["/messages", "/models/claude-3"]
    assert other.requests[0]["headers"]["x-api-key"] == "sk-ant-test"
    assert standin.requests[-1]["body"]["model"] == "llama"
    ea, eb = _rec(sqlite_ledger, a).entry, _rec(sqlite_ledger, b).entry
    assert ea["attributes"]["kansa.gateway.upstream"] == "anthropic"
    assert eb["attributes"]["kansa.gateway.upstream"] == "local"
    assert ea["system"] == "routing-test"


def test_config_errors_are_clear(tmp_path: Path, sqlite_ledger: Ledger) -> None:
    from kansa.errors import KansaError

    bad = tmp_path / "bad.toml"
    bad.write_text('[[upstream]]\nbase_url = "ftp://x"\n')
    with pytest.raises(KansaError, match="http"):
        GatewayConfig.from_toml(bad)
    bad.write_text('colour = "blue"\n[[upstream]]\nbase_url = "http://x"\n')
    with pytest.raises(KansaError, match="unknown gateway setting"):
        GatewayConfig.from_toml(bad)
    with pytest.raises(KansaError, match="is not set"):
        create_gateway_app(sqlite_ledger, GatewayConfig(
            upstreams=[Upstream("http://x/v1", name="u", api_key_env="KANSA_NO_SUCH_VAR")]))
    no_default = GatewayConfig(upstreams=[Upstream("http://x/v1", name="u", models=("gpt-*",))])
    app = create_gateway_app(sqlite_ledger, no_default)
    assert app._upstream_for("llama") is None and app._upstream_for("gpt-4") is not None


def test_streams_that_end_badly_are_errors_as_the_sdk_records_them(ledger: Ledger,
                                                                   standin: Standin) -> None:
    """An upstream that ends a stream cleanly but without its final event, or with an error
    event inside it, made an error, not a success: the gateway and kansa.wrap agree."""
    with running_gateway(ledger, _cfg(standin)) as gw, httpx.Client(base_url=gw.url,
                                                                     timeout=10) as c:
        cases = {
            ("/v1/chat/completions", "cut-short"): ("error", "incomplete_stream"),
            ("/v1/messages", "cut-short"): ("error", "incomplete_stream"),
            ("/v1/messages", "error-event"): ("error", "overloaded_error"),
            ("/v1/chat/completions", "gpt-4o-mini"): ("ok", None),
        }
        for (path, model), (outcome, err) in cases.items():
            body = {"model": model, "stream": True, "messages": MSG, "max_tokens": 10}
            with c.stream("POST", path, json=body) as r:
                rid = r.headers["x-kansa-record"]
                b"".join(r.iter_raw())
            e = ledger.get(rid).entry
            assert (e["outcome"], e.get("error.type")) == (outcome, err), (path, model, e)


def test_the_calls_time_comes_from_the_clock_passed_in(sqlite_ledger: Ledger,
                                                         standin: Standin) -> None:
    """A record's ts (and the instant policy judges the call at) is the gateway's clock,
    which a scenario (kansa demo) passes in, so nothing it shows depends on today."""
    from datetime import UTC, datetime

    when = datetime(2026, 11, 18, 9, 0, 0, 250000, tzinfo=UTC)
    app = create_gateway_app(sqlite_ledger, _cfg(standin), clock=lambda: when)
    gw = GatewayServer(app).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG})
            assert r.status_code == 200
            assert _rec(sqlite_ledger, r).entry["ts"] == "2026-11-18T09:00:00.250000Z"
    finally:
        gw.stop()
