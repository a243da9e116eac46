"""kansa.wrap with the SDKs' ``with_streaming_response`` (the caller reads the body off
the wire after the call returns) and the ``chat.completions.stream`` helper (usage asked
for on the caller's behalf), with the real openai and anthropic packages against the
local stand-in upstream (tests/sdk_standin.py), records read back from a real ledger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import kansa
from kansa.capture import sdk
from kansa.ledger.note import Signer
from sdk_standin import StandIn

MSGS = [{"role": "user", "content": "where is order A-1042"}]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn().start()
    yield s
    s.stop()


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(sqlite_url, signer=Signer.generate("test.kansa/sdk-sr"),
                           master_key=b"s" * 32)
    yield lg
    sdk.flush(10)
    lg.close()


def oai(s: StandIn, ledger: kansa.Ledger, cls: Any = openai.OpenAI) -> Any:
    return kansa.wrap(cls(base_url=f"{s.url}/v1", api_key="sk-test", max_retries=0),
                      ledger=ledger, system="support-bot")


def ant(s: StandIn, ledger: kansa.Ledger, cls: Any = anthropic.Anthropic) -> Any:
    return kansa.wrap(cls(base_url=s.url, api_key="sk-ant-test", max_retries=0),
                      ledger=ledger, system="support-bot")


def only(ledger: kansa.Ledger) -> kansa.StoredRecord:
    rs = list(ledger.find(with_content=True))
    assert len(rs) == 1, [r.entry for r in rs]
    return rs[0]


def test_openai_chat_streaming_response_parse(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-sr", messages=MSGS) as resp:
        # nothing is recorded before the caller has the body: the record is made at close
        assert list(ledger.find()) == []
        completion = resp.parse()
    wire = standin.last("chat")
    rec = only(ledger)
    e = rec.entry
    assert (e["status"], e["outcome"], e["gen_ai.response.model"]) == (200, "ok", "gpt-sr")
    usage = json.loads(wire.body)["usage"]
    assert e["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] == \
        completion.usage.prompt_tokens
    assert e["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert e["gen_ai.response.finish_reasons"] == ["stop"]
    assert rec.content is not None
    assert json.dumps(rec.content, ensure_ascii=False).count(
        completion.choices[0].message.content) == 1


def test_openai_chat_streaming_response_sse_iter_lines(
        ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-sr-stream", messages=MSGS, stream=True,
            stream_options={"include_usage": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    e = only(ledger).entry
    assert e["outcome"] == "ok"
    assert e["attributes"]["kansa.stream"] is True  # assembled from the SSE bytes the caller read
    assert e["gen_ai.response.model"] == "gpt-sr-stream"
    assert e["gen_ai.usage.output_tokens"] > 0
    # the raw bytes are the caller's: kansa asked for nothing more than they did
    assert standin.last("chat").request["stream_options"] == {"include_usage": True}


def test_openai_streaming_response_closed_unread_is_aborted(
        ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    with client.chat.completions.with_streaming_response.create(
            model="long", messages=MSGS, stream=True) as resp:
        for _ in resp.iter_bytes():
            break  # the caller stops reading: they did not take the answer
    e = only(ledger).entry
    assert (e["status"], e["outcome"], e["error.type"]) == (200, "aborted",
                                                            "client_disconnected")
    # raw bytes are the caller's: kansa did not ask for a usage chunk they would read
    assert "stream_options" not in standin.last("chat").request


def test_openai_responses_streaming_response(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    with client.responses.with_streaming_response.create(model="gpt-resp",
                                                         input="hello there") as resp:
        body = resp.json()
    e = only(ledger).entry
    assert e["outcome"] == "ok" and e["gen_ai.response.model"] == "gpt-resp"
    assert e["gen_ai.usage.input_tokens"] == body["usage"]["input_tokens"]
    assert e["gen_ai.usage.output_tokens"] == body["usage"]["output_tokens"]


def test_anthropic_messages_streaming_response(ledger: kansa.Ledger, standin: StandIn) -> None:
    client = ant(standin, ledger)
    with client.messages.with_streaming_response.create(
            model="claude-sr", max_tokens=64, messages=MSGS) as resp:
        message = resp.parse()
    e = only(ledger).entry
    assert (e["status"], e["outcome"], e["gen_ai.response.model"]) == (200, "ok", "claude-sr")
    u = message.usage
    # the GenAI conventions count cached input among the input tokens (as the gateway does)
    assert e["gen_ai.usage.input_tokens"] == (u.input_tokens + (u.cache_read_input_tokens or 0)
                                              + (u.cache_creation_input_tokens or 0))
    assert e["gen_ai.usage.output_tokens"] == u.output_tokens


def test_anthropic_messages_streaming_response_sse(
        ledger: kansa.Ledger, standin: StandIn) -> None:
    client = ant(standin, ledger)
    with client.messages.with_streaming_response.create(
            model="claude-sse", max_tokens=64, messages=MSGS, stream=True) as resp:
        text = resp.text()
    assert "message_stop" in text
    rec = only(ledger)
    e = rec.entry
    assert (e["outcome"], e["gen_ai.response.model"]) == ("ok", "claude-sse")
    assert e["gen_ai.usage.output_tokens"] > 0
    assert e["gen_ai.response.finish_reasons"] == ["end_turn"]


def test_async_streaming_response(ledger: kansa.Ledger, standin: StandIn) -> None:
    async def go() -> tuple[Any, Any]:
        oc = oai(standin, ledger, openai.AsyncOpenAI)
        ac = ant(standin, ledger, anthropic.AsyncAnthropic)
        async with oc.chat.completions.with_streaming_response.create(
                model="gpt-async", messages=MSGS) as r1:
            c = await r1.parse()
        async with ac.messages.with_streaming_response.create(
                model="claude-async", max_tokens=64, messages=MSGS) as r2:
            m = await r2.parse()
        await oc.close()
        await ac.close()
        return c, m

    c, m = asyncio.run(go())
    rs = list(ledger.find())
    assert [r.entry["gen_ai.response.model"] for r in rs] == ["gpt-async", "claude-async"]
    assert [r.entry["outcome"] for r in rs] == ["ok", "ok"]
    assert rs[0].entry["gen_ai.usage.output_tokens"] == c.usage.completion_tokens
    assert rs[1].entry["gen_ai.usage.output_tokens"] == m.usage.output_tokens


def test_chat_stream_helper_gets_usage_caller_sees_no_extra_chunk(
        ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    with client.chat.completions.stream(model="gpt-helper", messages=MSGS) as stream:
        chunks = [ev.chunk for ev in stream if ev.type == "chunk"]
        final = stream.get_final_completion()
    # kansa asked upstream for usage ...
    wire = standin.last("chat")
    assert wire.request["stream_options"] == {"include_usage": True}
    assert b'"choices": [], "usage"' in wire.body
    # ... the caller sees the stream they asked for: no usage-only chunk, no usage
    assert all(c.choices for c in chunks)
    assert final.usage is None
    e = only(ledger).entry
    assert e["gen_ai.usage.input_tokens"] > 0 and e["gen_ai.usage.output_tokens"] > 0
    # the record's request is the caller's, not kansa's addition
    assert "stream_options" not in json.dumps(only(ledger).content)


def test_plain_stream_keeps_usage_the_caller_asked_for(
        ledger: kansa.Ledger, standin: StandIn) -> None:
    client = oai(standin, ledger)
    chunks = list(client.chat.completions.create(
        model="gpt-asked", messages=MSGS, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert only(ledger).entry["gen_ai.usage.output_tokens"] == \
        chunks[-1].usage.completion_tokens


def test_async_chat_stream_helper_gets_usage(ledger: kansa.Ledger, standin: StandIn) -> None:
    async def go() -> list[Any]:
        client = oai(standin, ledger, openai.AsyncOpenAI)
        async with client.chat.completions.stream(model="gpt-ahelper",
                                                  messages=MSGS) as stream:
            chunks = [ev.chunk async for ev in stream if ev.type == "chunk"]
        await client.close()
        return chunks

    chunks = asyncio.run(go())
    assert chunks and all(c.choices for c in chunks)  # no usage-only chunk reached them
    assert standin.last("chat").request["stream_options"] == {"include_usage": True}
    e = only(ledger).entry
    assert e["gen_ai.usage.output_tokens"] > 0 and e["outcome"] == "ok"
