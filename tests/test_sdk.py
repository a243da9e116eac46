"""kansa.wrap, kansa.step, kansa.tool and kansa.context, with the real openai and
anthropic packages talking HTTP to a local stand-in server (tests/sdk_standin.py), and
every record read back from a real ledger (SQLite and PostgreSQL for the main cases)."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletion

import kansa
from kansa.capture import sdk, sdk_writer
from kansa.capture.shapes import CallInfo, StreamAssembler, to_record
from kansa.ledger.note import Signer
from sdk_standin import StandIn

MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "注文 A-1042 はどこ？"}]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn().start()
    yield s
    s.stop()


def _open(url: str) -> kansa.Ledger:
    return kansa.Ledger.open(url, signer=Signer.generate("test.kansa/sdk"), master_key=b"s" * 32)


@pytest.fixture
def ledger(store_url: str) -> Iterator[kansa.Ledger]:
    lg = _open(store_url)
    yield lg
    sdk.flush(10)
    lg.close()


@pytest.fixture
def lite(sqlite_url: str) -> Iterator[kansa.Ledger]:
    lg = _open(sqlite_url)
    yield lg
    sdk.flush(10)
    lg.close()


def oai(s: StandIn, ledger: kansa.Ledger | None, cls: Any = openai.OpenAI,
        wrap: bool = True, **kw: Any) -> Any:
    opts = {"max_retries": 0, **{k: kw.pop(k) for k in ("max_retries", "timeout") if k in kw}}
    client = cls(base_url=f"{s.url}/v1", api_key="sk-test", **opts)
    if not wrap:
        return client
    return kansa.wrap(client, ledger=ledger, system="support-bot", app="web", actor="svc", **kw)


def ant(s: StandIn, ledger: kansa.Ledger | None, cls: Any = anthropic.Anthropic,
        wrap: bool = True, **kw: Any) -> Any:
    opts = {"max_retries": 0, **{k: kw.pop(k) for k in ("max_retries", "timeout") if k in kw}}
    client = cls(base_url=s.url, api_key="sk-ant-test", **opts)
    if not wrap:
        return client
    return kansa.wrap(client, ledger=ledger, system="support-bot", **kw)


def records(ledger: kansa.Ledger) -> list[kansa.StoredRecord]:
    return list(ledger.find(with_content=True))


def only(ledger: kansa.Ledger) -> kansa.StoredRecord:
    rs = records(ledger)
    assert len(rs) == 1, [r.entry for r in rs]
    return rs[0]


def check_common(rec: kansa.StoredRecord, *, provider: str, operation: str, model: str) -> None:
    e = rec.entry
    assert e["kind"] == "gen_ai.call"
    assert e["gen_ai.provider.name"] == provider
    assert e["gen_ai.operation.name"] == operation
    assert e["gen_ai.request.model"] == model
    assert e["system"] == "support-bot"
    assert isinstance(e["latency_ms"], int | float) and e["latency_ms"] > 0


# -- OpenAI ---------------------------------------------------------------------------------


def test_openai_chat_records_the_exchange(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    assert type(client) is openai.OpenAI
    with kansa.context(subject="user-7", conversation_id="conv-1"):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS,
                                           temperature=0.2, n=2)
    assert isinstance(r, ChatCompletion)
    assert r.choices[0].message.content == "echo: 注文 A-1042 はどこ？"
    rec = only(ledger)  # durable=True: recorded by the time create() returned
    check_common(rec, provider="openai", operation="chat", model="gpt-4o-mini")
    e = rec.entry
    assert e["id"] == sdk.last_record_id()
    assert e["gen_ai.response.model"] == "gpt-4o-mini" and e["gen_ai.response.id"] == r.id
    assert r.usage is not None
    assert e["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens
    assert e["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert e["gen_ai.response.finish_reasons"] == ["stop", "length"]
    assert e["outcome"] == "ok" and e["status"] == 200
    assert e["app"] == "web" and e["actor"] == "svc"
    assert e["gen_ai.conversation.id"] == "conv-1"
    assert e["attributes"]["gen_ai.request.temperature"] == 0.2
    assert "kansa.stream" not in e["attributes"]
    # content: committed in the entry, stored encrypted, decrypts to what was exchanged
    assert rec.content == {
        "gen_ai.input.messages": MSGS,
        "gen_ai.output.messages": [{"role": "assistant", "content": r.choices[0].message.content,
                                    "refusal": None}] * 2,
    }
    assert "content" in e and "注文" not in rec.entry_bytes.decode()
    assert e["subject"] != "user-7"
    assert [x.id for x in ledger.find(subject="user-7")] == [e["id"]]


def test_openai_chat_stream(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger, subject="user-9")
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True})
    assert isinstance(stream, openai.Stream)
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 1:
            assert records(ledger) == []  # recorded when the stream ends, not before
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: 注文 A-1042 はどこ？"
    rec = only(ledger)
    check_common(rec, provider="openai", operation="chat", model="gpt-4o-mini")
    e = rec.entry
    usage = chunks[-1].usage
    assert usage is not None
    assert e["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert e["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert e["gen_ai.response.finish_reasons"] == ["stop"]
    assert e["gen_ai.response.id"] == chunks[0].id
    assert e["outcome"] == "ok" and e["status"] == 200
    assert e["attributes"]["kansa.stream"] is True
    assert rec.content == {"gen_ai.input.messages": MSGS,
                           "gen_ai.output.messages": [{"role": "assistant", "content": text}]}
    assert [x.id for x in ledger.find(subject="user-9")] == [e["id"]]


def test_openai_async_chat_and_stream(ledger: kansa.Ledger, standin: StandIn) -> None:
    async def main() -> tuple[str, str, list[str]]:
        client = oai(standin, ledger, cls=openai.AsyncOpenAI)
        assert type(client) is openai.AsyncOpenAI
        async with client:
            r = await client.chat.completions.create(model="gpt-async", messages=MSGS)
            first = sdk.last_record_id()
            stream = await client.chat.completions.create(
                model="gpt-async", messages=[{"role": "user", "content": "stream me"}],
                stream=True)
            assert isinstance(stream, openai.AsyncStream)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            second = sdk.last_record_id()
        assert first and second and first != second
        return str(r.choices[0].message.content), "".join(parts), [first, second]

    plain, streamed, ids = asyncio.run(main())
    rs = records(ledger)
    assert [r.id for r in rs] == ids
    a, b = rs
    check_common(a, provider="openai", operation="chat", model="gpt-async")
    assert a.entry["outcome"] == "ok" and a.entry["gen_ai.response.finish_reasons"] == ["stop"]
    assert a.content is not None
    assert a.content["gen_ai.output.messages"][0]["content"] == plain
    assert b.entry["attributes"]["kansa.stream"] is True and b.entry["outcome"] == "ok"
    assert b.content == {"gen_ai.input.messages": [{"role": "user", "content": "stream me"}],
                         "gen_ai.output.messages": [{"role": "assistant", "content": streamed}]}
    assert streamed == "echo: stream me"


def test_openai_completions_embeddings_responses_models(lite: kansa.Ledger,
                                                        standin: StandIn) -> None:
    client = oai(standin, lite)
    c = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi", max_tokens=5)
    cs = "".join(x.choices[0].text for x in client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="say hi", stream=True))
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    emb_f = client.embeddings.create(model="text-embedding-3-small", input="x",
                                     encoding_format="float")
    resp = client.responses.create(model="gpt-4.1", input="hello there", instructions="be brief")
    events = list(client.responses.create(model="gpt-4.1", input="hello there", stream=True))
    models = client.models.list()
    assert c.choices[0].text == cs == "echo: say hi"
    assert len(emb.data) == 2 and len(emb_f.data[0].embedding) == 4
    assert resp.output_text == "echo: hello there"
    assert events[-1].type == "response.completed"
    assert [m.id for m in models] == ["gpt-standin"]

    rs = records(lite)
    assert [r.entry["gen_ai.operation.name"] for r in rs] == [
        "text_completion", "text_completion", "embeddings", "embeddings", "chat", "chat",
        "list_models"]
    comp, comp_s, e1, e2, r1, r2, ml = rs
    assert comp.entry["gen_ai.response.finish_reasons"] == ["length"]
    assert comp.entry["attributes"] == {"gen_ai.request.max_tokens": 5}
    assert comp.content == {"input": "say hi",
                            "gen_ai.output.messages": [{"text": c.choices[0].text}]}
    assert comp_s.entry["attributes"]["kansa.stream"] is True
    assert comp_s.content is not None
    assert comp_s.content["gen_ai.output.messages"] == [{"role": "assistant", "content": cs}]
    assert e1.entry["gen_ai.usage.input_tokens"] == emb.usage.prompt_tokens == 3
    assert e1.content == {"input": ["a b", "c"]}  # vectors are not kept, only the input
    assert e2.content == {"input": "x"}
    assert r1.entry["gen_ai.response.id"] == resp.id
    assert r1.entry["gen_ai.response.finish_reasons"] == ["completed"]
    assert resp.usage is not None
    assert r1.entry["gen_ai.usage.output_tokens"] == resp.usage.output_tokens
    assert r1.content is not None and r1.content["gen_ai.system_instructions"] == "be brief"
    assert r1.content["gen_ai.output.messages"][0]["content"][0]["text"] == resp.output_text
    assert r2.entry["attributes"]["kansa.stream"] is True and r2.entry["outcome"] == "ok"
    assert r2.entry["gen_ai.usage.input_tokens"] == resp.usage.input_tokens
    assert ml.entry["outcome"] == "ok" and ml.content is None


# -- Anthropic ------------------------------------------------------------------------------


def test_anthropic_messages_plain_stream_and_helper(ledger: kansa.Ledger,
                                                   standin: StandIn) -> None:
    client = ant(standin, ledger, actor="agent-runner")
    assert type(client) is anthropic.Anthropic
    msgs = [{"role": "user", "content": "hi claude"}]
    m = client.messages.create(model="claude-sonnet-4", max_tokens=64, system="be nice",
                               messages=msgs)
    stream = client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=msgs,
                                    stream=True)
    assert isinstance(stream, anthropic.Stream)
    kinds = [ev.type for ev in stream]
    with client.messages.stream(model="claude-sonnet-4", max_tokens=64, messages=msgs) as ms:
        final = ms.get_final_text()
    assert m.content[0].text == final == "echo: hi claude"  # type: ignore[union-attr]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"

    a, b, c = records(ledger)
    for rec in (a, b, c):
        check_common(rec, provider="anthropic", operation="chat", model="claude-sonnet-4")
        e = rec.entry
        assert e["outcome"] == "ok" and e["status"] == 200 and e["actor"] == "agent-runner"
        assert e["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert e["gen_ai.response.model"] == "claude-sonnet-4"
        assert e["attributes"]["gen_ai.request.max_tokens"] == 64
        assert rec.content is not None and rec.content["gen_ai.input.messages"] == msgs
        assert rec.content["gen_ai.output.messages"] == [
            {"role": "assistant", "content": [{"type": "text", "text": "echo: hi claude"}]}]
    # input tokens include cached input, as OTel counts them
    assert a.entry["gen_ai.usage.input_tokens"] == m.usage.input_tokens + 2
    assert a.entry["gen_ai.usage.output_tokens"] == m.usage.output_tokens
    assert a.content is not None and a.content["gen_ai.system_instructions"] == "be nice"
    assert "kansa.stream" not in a.entry["attributes"]
    assert b.entry["attributes"]["kansa.stream"] is True
    assert c.entry["attributes"]["kansa.stream"] is True
    assert b.entry["gen_ai.usage.output_tokens"] == m.usage.output_tokens


def test_anthropic_async(ledger: kansa.Ledger, standin: StandIn) -> None:
    async def main() -> str:
        client = ant(standin, ledger, cls=anthropic.AsyncAnthropic)
        async with client:
            await client.messages.create(model="claude-haiku", max_tokens=8,
                                         messages=[{"role": "user", "content": "one"}])
            stream = await client.messages.create(
                model="claude-haiku", max_tokens=8, stream=True,
                messages=[{"role": "user", "content": "two"}])
            assert isinstance(stream, anthropic.AsyncStream)
            async for _ in stream:
                pass
            async with client.messages.stream(
                    model="claude-haiku", max_tokens=8,
                    messages=[{"role": "user", "content": "three"}]) as ms:
                return await ms.get_final_text()

    assert asyncio.run(main()) == "echo: three"
    rs = records(ledger)
    assert [r.content["gen_ai.output.messages"][0]["content"][0]["text"]  # type: ignore[index]
            for r in rs] == ["echo: one", "echo: two", "echo: three"]
    assert [r.entry["outcome"] for r in rs] == ["ok"] * 3
    assert [r.entry.get("attributes", {}).get("kansa.stream", False) for r in rs] == [
        False, True, True]


# -- failures -------------------------------------------------------------------------------


def test_status_errors_are_recorded_and_reraised_unchanged(ledger: kansa.Ledger,
                                                          standin: StandIn) -> None:
    wrapped, plain = oai(standin, ledger), oai(standin, ledger, wrap=False)
    cases = [("err-429", openai.RateLimitError, "error"),
             ("err-500", openai.InternalServerError, "error"),
             ("err-504", openai.InternalServerError, "timeout"),  # a gateway timeout
             ("err-400", openai.BadRequestError, "error")]
    for model, exc_type, _ in cases:
        with pytest.raises(exc_type) as got:
            wrapped.chat.completions.create(model=model, messages=MSGS)
        with pytest.raises(exc_type) as want:
            plain.chat.completions.create(model=model, messages=MSGS)
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
        assert got.value.status_code == int(model[4:])
    rs = records(ledger)
    assert len(rs) == len(cases)  # the unwrapped client recorded nothing
    for rec, (model, _, outcome) in zip(rs, cases, strict=True):
        e = rec.entry
        # error.type is the HTTP status, as the gateway records it; the provider's error
        # body is kept (encrypted) as the output
        assert (e["status"], e["outcome"], e["error.type"]) == (int(model[4:]), outcome,
                                                                model[4:])
        assert rec.content is not None and rec.content["gen_ai.input.messages"] == MSGS
        assert rec.content["output"]["message"] == f"stand-in {model[4:]}"

    client = ant(standin, ledger)
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.messages.create(model="err-529", max_tokens=8,
                               messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 529
    e = records(ledger)[-1].entry
    assert (e["status"], e["outcome"], e["error.type"]) == (529, "error", "529")
    assert records(ledger)[-1].content["output"]["type"] == "overloaded_error"  # type: ignore[index]


def test_timeouts_and_connection_errors(lite: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, lite, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="slow", messages=MSGS)
    aclient = ant(standin, lite, timeout=0.2)
    with pytest.raises(anthropic.APITimeoutError):
        aclient.messages.create(model="slow", max_tokens=8, messages=[{"role": "user",
                                                                       "content": "x"}])
    dead = kansa.wrap(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k",
                                    max_retries=0), ledger=lite, system="support-bot")
    with pytest.raises(openai.APIConnectionError) as ei:
        dead.embeddings.create(model="text-embedding-3-small", input="x")
    assert not isinstance(ei.value, openai.APITimeoutError)

    async def cancelled() -> None:
        ac = oai(standin, lite, cls=openai.AsyncOpenAI)
        async with ac:
            task = asyncio.create_task(ac.chat.completions.create(model="slow", messages=MSGS))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancelled())
    assert sdk.flush(10)

    t1, t2, conn, cancel = records(lite)
    assert (cancel.entry["outcome"], cancel.entry["error.type"]) == ("aborted", "CancelledError")
    assert cancel.content == {"gen_ai.input.messages": MSGS}
    for rec, etype in ((t1, "upstream_timeout"), (t2, "upstream_timeout")):
        e = rec.entry
        assert e["outcome"] == "timeout" and e["error.type"] == etype and "status" not in e
        assert 150 <= e["latency_ms"] < 1000
    assert t1.content == {"gen_ai.input.messages": MSGS}
    e = conn.entry
    assert (e["outcome"], e["error.type"], e["gen_ai.operation.name"]) == (
        "error", "upstream_unreachable", "embeddings")
    assert "status" not in e and conn.content == {"input": "x"}


def test_streams_closed_early_are_aborted(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    t0 = time.monotonic()
    stream = client.chat.completions.create(model="long", messages=MSGS, stream=True)
    it = iter(stream)
    next(it), next(it), next(it)
    # lazily, chunk by chunk: the stand-in needs ~1 s to send all 200 chunks
    assert time.monotonic() - t0 < 0.9 and not standin.last("chat", "long").complete
    stream.close()

    with client.chat.completions.create(model="long", messages=MSGS, stream=True) as s2:
        for i, _ in enumerate(s2):
            if i == 4:
                break

    aclient = ant(standin, ledger)
    with aclient.messages.stream(model="long", max_tokens=8,
                                 messages=[{"role": "user", "content": "x"}]) as ms:
        for i, _ in enumerate(ms):
            if i == 3:
                break

    async def async_abort() -> None:
        ac = oai(standin, ledger, cls=openai.AsyncOpenAI)
        async with ac:
            st = await ac.chat.completions.create(model="long", messages=MSGS, stream=True)
            await st.__anext__()
            await st.close()

    asyncio.run(async_abort())

    # dropped without close(): recorded when the stream object is collected
    dropped = client.chat.completions.create(model="long", messages=MSGS, stream=True)
    next(iter(dropped))
    del dropped
    gc.collect()
    assert sdk.flush(10)

    rs = records(ledger)
    assert len(rs) == 5
    for rec in rs:
        assert rec.entry["outcome"] == "aborted", rec.entry
        assert rec.entry["error.type"] == "client_disconnected"
        assert rec.entry["status"] == 200 and rec.entry["attributes"]["kansa.stream"] is True
        assert "gen_ai.response.finish_reasons" not in rec.entry
    # what had arrived before the caller stopped is what was recorded
    assert rs[0].content is not None
    assert rs[0].content["gen_ai.output.messages"] == [{"role": "assistant", "content": "w w"}]
    assert rs[2].content is not None
    assert rs[2].content["gen_ai.output.messages"][0]["content"] == [{"type": "text", "text": "w"}]


def test_streams_cut_or_failing_upstream(lite: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, lite)
    assert len(list(client.chat.completions.create(model="cut", messages=MSGS,
                                                   stream=True))) > 1
    aclient = ant(standin, lite)
    seen = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        for ev in aclient.messages.create(model="boom", max_tokens=8, stream=True,
                                          messages=[{"role": "user", "content": "x"}]):
            seen.append(ev.type)
    assert "Overloaded" in str(ei.value) and "content_block_delta" in seen
    cut, boom = records(lite)
    assert (cut.entry["outcome"], cut.entry["error.type"]) == ("error", "incomplete_stream")
    assert (boom.entry["outcome"], boom.entry["error.type"]) == ("error", "overloaded_error")
    assert boom.content is not None
    assert boom.content["gen_ai.output.messages"][0]["content"] == [{"type": "text",
                                                                     "text": "echo:"}]


def test_streams_route_events_without_response_attributes(
        lite: kansa.Ledger, standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stream's events are routed by an attribute on its HTTP response; should the
    # response class refuse attributes, they are routed through the context instead
    import httpx
    import httpx2

    def refuse(self: object, name: str, value: object) -> None:
        if name == "_kansa_call":
            raise AttributeError(name)
        object.__setattr__(self, name, value)

    for cls in (httpx.Response, httpx2.Response):
        monkeypatch.setattr(cls, "__setattr__", refuse)
    client = oai(standin, lite)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, stream=True) if c.choices)

    async def main() -> str:
        ac = ant(standin, lite, cls=anthropic.AsyncAnthropic)
        async with ac, ac.messages.stream(model="claude-x", max_tokens=8,
                                          messages=[{"role": "user", "content": "a"}]) as ms:
            return await ms.get_final_text()

    atext = asyncio.run(main())
    a, b = records(lite)
    assert a.content is not None and b.content is not None
    assert a.content["gen_ai.output.messages"] == [{"role": "assistant", "content": text}]
    assert b.content["gen_ai.output.messages"][0]["content"] == [{"type": "text",
                                                                  "text": atext}]
    assert [r.entry["outcome"] for r in (a, b)] == ["ok", "ok"]


def test_retries_are_one_call_one_record(lite: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, lite, max_retries=2)
    before = standin.count("chat")
    r = client.chat.completions.create(model="flaky-a", messages=MSGS)
    assert standin.count("chat") - before == 2  # a 429, then the answer
    rec = only(lite)
    assert rec.entry["outcome"] == "ok" and rec.entry["gen_ai.response.id"] == r.id


# -- the same record as the gateway's mapping ------------------------------------------------


def _gateway_record(ex: Any, provider: str, operation: str, **meta: Any) -> Any:
    """What the gateway maps from the bytes it saw on the wire."""
    if ex.streamed:
        asm = StreamAssembler(provider)
        asm.feed(ex.body)
        response = asm.result()
    else:
        response = json.loads(ex.body)
    return to_record(CallInfo(provider=provider, operation=operation, request=ex.request,
                              response=response, status=ex.status, streamed=ex.streamed,
                              error_type=str(ex.status) if ex.status >= 400 else None,
                              **meta))


def _raises(fn: Any) -> Any:
    def run() -> None:
        with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)):
            fn()
    return run


def test_sdk_records_equal_the_gateway_mapping(lite: kansa.Ledger, standin: StandIn) -> None:
    oc, ac = oai(standin, lite), ant(standin, lite)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"id": {"type": "string"}}}}}]
    with kansa.context(subject="user-3", conversation_id="c-9"):
        calls: list[tuple[str, str, str, str, Any]] = [
            ("chat", "gpt-4o", "openai", "chat", lambda: oc.chat.completions.create(
                model="gpt-4o", messages=MSGS, tools=tools, top_p=0.5, n=2)),
            ("chat", "gpt-4o", "openai", "chat", lambda: list(oc.chat.completions.create(
                model="gpt-4o", messages=MSGS, stream=True,
                stream_options={"include_usage": True}))),
            ("completions", "instruct", "openai", "text_completion", lambda: oc.completions.create(
                model="instruct", prompt=["a", "b"], temperature=0)),
            ("completions", "instruct", "openai", "text_completion",
             lambda: list(oc.completions.create(model="instruct", prompt="p", stream=True))),
            ("embeddings", "emb-3", "openai", "embeddings", lambda: oc.embeddings.create(
                model="emb-3", input=["x", "y z"])),
            ("responses", "gpt-4.1", "openai", "chat", lambda: oc.responses.create(
                model="gpt-4.1", input=[{"role": "user", "content": "hi"}],
                instructions="brief", max_output_tokens=20)),
            ("responses", "gpt-4.1", "openai", "chat", lambda: list(oc.responses.create(
                model="gpt-4.1", input="hi", stream=True))),
            ("messages", "claude-x", "anthropic", "chat", lambda: ac.messages.create(
                model="claude-x", max_tokens=30, system="sys",
                messages=[{"role": "user", "content": [{"type": "text", "text": "q"}]}])),
            ("messages", "claude-x", "anthropic", "chat", lambda: list(ac.messages.create(
                model="claude-x", max_tokens=30, stream=True,
                messages=[{"role": "user", "content": "q"}]))),
            ("chat", "err-429", "openai", "chat", _raises(lambda: oc.chat.completions.create(
                model="err-429", messages=MSGS))),
            ("messages", "err-529", "anthropic", "chat", _raises(lambda: ac.messages.create(
                model="err-529", max_tokens=30, messages=[{"role": "user", "content": "q"}]))),
        ]
        exchanges = []
        for path, model, _, _, call in calls:
            call()
            exchanges.append(standin.last(path, model))
    stored = records(lite)
    assert len(stored) == len(calls)
    ignore = {"id", "ts", "latency_ms", "subject", "content"}
    for (_, _, provider, operation, _), ex, rec in zip(calls, exchanges, stored, strict=True):
        gw = _gateway_record(ex, provider, operation, system="support-bot",
                             app="web" if provider == "openai" else None,
                             actor="svc" if provider == "openai" else None,
                             subject="user-3", conversation_id="c-9")
        want = gw.entry_object(subject_ref=None, commitment=None)
        got = rec.entry
        assert {k: v for k, v in got.items() if k not in ignore} == {
            k: v for k, v in want.items() if k not in ignore}, (provider, operation)
        assert rec.content == (gw.content or None)
        assert rec.entry["gen_ai.operation.name"] == operation


# -- metadata, durability, the wrapped client itself -------------------------------------------


def test_context_and_subject_precedence(lite: kansa.Ledger, standin: StandIn) -> None:
    who = {"id": "user-a"}
    client = oai(standin, lite, subject=lambda: who["id"])
    client.embeddings.create(model="e", input="1")
    with kansa.context(subject="user-b", actor="batch", attributes={"tenant": "t1"}):
        client.embeddings.create(model="e", input="2")
        with kansa.context(conversation_id="c-1", attributes={"run": 2}):
            client.embeddings.create(model="e", input="3")
    who["id"] = "user-c"
    client.embeddings.create(model="e", input="4")
    subjects = [[r.id for r in lite.find(subject=s)] for s in ("user-a", "user-b", "user-c")]
    rs = records(lite)
    ids = [r.id for r in rs]
    assert subjects == [[ids[0]], ids[1:3], [ids[3]]]
    assert [r.entry["actor"] for r in rs] == ["svc", "batch", "batch", "svc"]
    assert [r.entry.get("gen_ai.conversation.id") for r in rs] == [None, None, "c-1", None]
    assert rs[1].entry["attributes"] == {"tenant": "t1"}
    assert rs[2].entry["attributes"] == {"tenant": "t1", "run": 2}


def test_durable_false_records_in_the_background(lite: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, lite, durable=False)
    r = client.chat.completions.create(model="bg", messages=MSGS)
    rid = sdk.last_record_id()
    assert sdk.flush(10)
    rec = only(lite)
    assert rec.id == rid and rec.entry["gen_ai.response.id"] == r.id
    assert rec.entry["outcome"] == "ok"


def test_concurrent_calls_get_unique_records(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(4):
                client.embeddings.create(model="e", input=f"{n}-{i}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rs = records(ledger)
    assert len(rs) == 32 and len({r.id for r in rs}) == 32
    assert sorted(r.content["input"] for r in rs) == sorted(  # type: ignore[index]
        f"{n}-{i}" for n in range(8) for i in range(4))


def test_derived_clients_stay_wrapped_and_original_is_untouched(
        lite: kansa.Ledger, standin: StandIn) -> None:
    original = openai.OpenAI(base_url=f"{standin.url}/v1", api_key="k", max_retries=0)
    wrapped = kansa.wrap(original, ledger=lite, system="support-bot")
    assert wrapped is not original and type(wrapped) is type(original)
    original.embeddings.create(model="e", input="unrecorded")
    wrapped.with_options(timeout=5).embeddings.create(model="e", input="derived")
    wrapped.copy(max_retries=1).embeddings.create(model="e", input="copied")
    raw = wrapped.chat.completions.with_raw_response.create(model="raw", messages=MSGS)
    assert raw.parse().choices[0].message.content
    rs = records(lite)
    assert [r.content["input"] for r in rs[:2]] == ["derived", "copied"]  # type: ignore[index]
    e = rs[2].entry
    assert (e["status"], e["outcome"], e["gen_ai.response.model"]) == (200, "ok", "raw")
    assert e["gen_ai.usage.output_tokens"] > 0


def test_wrap_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="openai or anthropic client"):
        kansa.wrap(object())


def test_default_ledger_opens_lazily_from_kansa_home(
        tmp_path: Path, standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    kansa.Ledger.init(tmp_path / "home", origin="test.kansa/default").close()
    monkeypatch.setenv("KANSA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KANSA_SYSTEM", "from-env")
    sdk.set_default_ledger(None)
    client = kansa.wrap(openai.OpenAI(base_url=f"{standin.url}/v1", api_key="k",
                                      max_retries=0))
    assert sdk_writer._default_ledger is None  # nothing opened until something is recorded
    client.embeddings.create(model="e", input="x")
    opened = sdk_writer._default_ledger
    assert opened is not None
    rec = only(opened)
    assert rec.entry["system"] == "from-env"
    sdk.set_default_ledger(None)  # closes the ledger it had opened
    with kansa.Ledger.open(home=tmp_path / "home") as lg:
        assert [r.id for r in lg.find()] == [rec.id]


def test_import_kansa_does_not_import_the_sdks() -> None:
    code = ("import sys, kansa; kansa.wrap, kansa.step, kansa.tool, kansa.context; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('openai', 'anthropic', 'httpx2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- agent steps and tool calls -----------------------------------------------------------


def test_steps_and_tools_sync(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)

    @kansa.tool("lookup_order", ledger=ledger)
    def lookup(order_id: str, verbose: bool = False) -> dict[str, str]:
        return {"order": order_id, "status": "shipped"}

    @kansa.step("answer", ledger=ledger, agent="support-agent")
    def answer(question: str) -> str:
        with kansa.step("plan", ledger=ledger) as plan:
            plan.output = {"next": "lookup"}
        found = lookup("A-1042")
        client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
        return f"{question}: {found['status']}"

    with kansa.context(subject="user-7"):
        assert answer("where") == "where: shipped"
    assert answer.__name__ == "answer"

    plan, tool_rec, call, step_rec = records(ledger)
    assert step_rec.entry["kind"] == "agent.step"
    assert step_rec.entry["gen_ai.operation.name"] == "invoke_agent"
    assert step_rec.entry["attributes"] == {"kansa.step.name": "answer"}
    assert step_rec.entry["gen_ai.agent.name"] == "support-agent"
    assert step_rec.entry["outcome"] == "ok" and step_rec.entry["latency_ms"] > 0
    assert step_rec.content is None
    parent = step_rec.id
    assert plan.entry["kind"] == "agent.step"
    assert plan.entry["attributes"] == {"kansa.step.name": "plan", "kansa.parent_id": parent}
    assert plan.entry["gen_ai.agent.name"] == "support-agent"  # inherited
    assert plan.content == {"output": {"next": "lookup"}}
    assert call.entry["kind"] == "gen_ai.call"
    assert call.entry["attributes"]["kansa.parent_id"] == parent
    e = tool_rec.entry
    assert (e["kind"], e["gen_ai.operation.name"], e["gen_ai.tool.name"]) == (
        "tool.call", "execute_tool", "lookup_order")
    assert e["attributes"] == {"kansa.parent_id": parent} and e["outcome"] == "ok"
    assert tool_rec.content == {
        "gen_ai.tool.call.arguments": {"order_id": "A-1042", "verbose": False},
        "gen_ai.tool.call.result": {"order": "A-1042", "status": "shipped"}}
    assert "A-1042" not in tool_rec.entry_bytes.decode()  # committed, not in the clear
    assert "shipped" not in tool_rec.entry_bytes.decode()
    ids = {r.id for r in (plan, tool_rec, call, step_rec)}
    assert len(ids) == 4
    assert {r.id for r in ledger.find(subject="user-7")} == ids


def test_step_and_tool_errors_propagate_unchanged(lite: kansa.Ledger) -> None:
    boom = ValueError("no such order")

    @kansa.tool(ledger=lite)
    def cancel_order(order_id: str) -> None:
        raise boom

    with pytest.raises(ValueError) as ei, kansa.step("cancel", ledger=lite) as s:
        s.input = "please cancel A-1"
        cancel_order("A-1")
    assert ei.value is boom
    with pytest.raises(KeyError), kansa.tool("fetch", ledger=lite, arguments={"k": 1}) as t:
        t.result = "never recorded"
        raise KeyError("k")

    tool_rec, step_rec, fetch = records(lite)
    assert tool_rec.entry["gen_ai.tool.name"] == "cancel_order"
    assert (tool_rec.entry["outcome"], tool_rec.entry["error.type"]) == ("error", "ValueError")
    assert tool_rec.content == {"gen_ai.tool.call.arguments": {"order_id": "A-1"}}
    assert tool_rec.entry["attributes"]["kansa.parent_id"] == step_rec.id
    assert (step_rec.entry["outcome"], step_rec.entry["error.type"]) == ("error", "ValueError")
    assert step_rec.content == {"input": "please cancel A-1"}
    assert (fetch.entry["outcome"], fetch.entry["error.type"]) == ("error", "KeyError")
    assert fetch.content == {"gen_ai.tool.call.arguments": {"k": 1}}


def test_steps_and_tools_async(lite: kansa.Ledger) -> None:
    @kansa.tool("search", ledger=lite)
    async def search(query: str, *, k: int = 3) -> list[str]:
        await asyncio.sleep(0.01)
        return [f"{query}-{i}" for i in range(k)]

    @kansa.step("research", ledger=lite)
    async def research(topic: str) -> int:
        a, b = await asyncio.gather(search(topic), search(topic, k=1))
        async with kansa.step("summarise", ledger=lite, durable=False):
            await asyncio.sleep(0)
        return len(a) + len(b)

    @kansa.step("fails", ledger=lite)
    async def fails() -> None:
        raise RuntimeError("upstream down")

    async def main() -> int:
        n = await research("kansa")
        with pytest.raises(RuntimeError, match="upstream down"):
            await fails()
        return n

    assert asyncio.run(main()) == 4
    assert sdk.flush(10)
    rs = records(lite)
    by_name = {r.entry.get("gen_ai.tool.name") or r.entry["attributes"]["kansa.step.name"]: r
               for r in rs}
    assert len(rs) == 5
    research_id = next(r.id for r in rs if r.entry.get("attributes", {}).get(
        "kansa.step.name") == "research")
    searches = [r for r in rs if r.entry["kind"] == "tool.call"]
    assert len(searches) == 2
    assert sorted(json.dumps(r.content, sort_keys=True) for r in searches) == sorted([
        json.dumps({"gen_ai.tool.call.arguments": {"query": "kansa", "k": 3},
                    "gen_ai.tool.call.result": ["kansa-0", "kansa-1", "kansa-2"]},
                   sort_keys=True),
        json.dumps({"gen_ai.tool.call.arguments": {"query": "kansa", "k": 1},
                    "gen_ai.tool.call.result": ["kansa-0"]}, sort_keys=True)])
    for r in searches:
        assert r.entry["attributes"]["kansa.parent_id"] == research_id
        assert r.entry["latency_ms"] >= 9
    assert by_name["summarise"].entry["attributes"]["kansa.parent_id"] == research_id
    assert by_name["research"].entry["outcome"] == "ok"
    assert "kansa.parent_id" not in by_name["fails"].entry["attributes"]
    assert (by_name["fails"].entry["outcome"], by_name["fails"].entry["error.type"]) == (
        "error", "RuntimeError")
