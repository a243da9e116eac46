"""Red-team: kansa.wrap never calls the model when the call's record cannot be made.

Metadata a caller sets (kansa.context subject/attributes, wrap's system, a subject
function) that no ledger entry can hold (a lone surrogate, an entry over 64 KiB) used to
be found only after the upstream call: the model was called, the caller got a
RecordError instead of the answer, and no record was written. Now the call is refused
before anything is sent. Content that the SDK itself cannot encode (a lone surrogate in
a message) is recorded as a failed call with the string's surrogates escaped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import kansa
from kansa.capture import sdk
from kansa.errors import RecordError
from kansa.ledger.note import Signer
from sdk_standin import StandIn

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn().start()
    yield s
    s.stop()


@pytest.fixture
def lite(sqlite_url: str) -> Iterator[kansa.Ledger]:
    lg = kansa.Ledger.open(sqlite_url, signer=Signer.generate("test.kansa/atk"),
                           master_key=b"s" * 32)
    yield lg
    sdk.flush(10)
    lg.close()


def _client(s: StandIn, lg: kansa.Ledger, cls: Any = openai.OpenAI, **kw: Any) -> Any:
    c = cls(base_url=f"{s.url}/v1", api_key="sk-test", max_retries=0)
    return kansa.wrap(c, ledger=lg, **{"system": "bot", **kw})


BAD_CONTEXTS = [
    {"subject": "\ud800"},
    {"conversation_id": "c\udfff"},
    {"actor": "\udc00"},
    {"attributes": {"k": "\ud800"}},
    {"attributes": {f"a{i}": "x" * 4000 for i in range(20)}},  # entry over 64 KiB
]


@pytest.mark.parametrize("ctx", BAD_CONTEXTS, ids=lambda c: next(iter(c)) + str(len(str(c))))
@pytest.mark.parametrize("stream", [False, True])
def test_unrecordable_context_refused_before_upstream(
    standin: StandIn, lite: kansa.Ledger, ctx: dict[str, Any], stream: bool
) -> None:
    calls = len(standin.exchanges)
    with pytest.raises(RecordError), kansa.context(**ctx):
        r = _client(standin, lite).chat.completions.create(model="m", messages=MSGS,
                                                           stream=stream)
        list(r) if stream else None
    sdk.flush(10)
    assert len(standin.exchanges) == calls, "the model was called although no record can be"


def test_unrecordable_context_refused_before_a_tool_or_step_runs(lite: kansa.Ledger) -> None:
    """A tool ran (its side effects done), then its record failed: refused up front."""
    ran: list[str] = []

    @kansa.tool("search", ledger=lite)
    def search(q: str) -> str:
        ran.append(q)
        return q

    with pytest.raises(RecordError), kansa.context(subject="\ud800"):
        search("x")
    with pytest.raises(RecordError), kansa.context(attributes={"k": "\udfff"}), \
            kansa.step("plan", ledger=lite):
        ran.append("step")
    assert ran == []


def test_merged_context_attributes_over_the_bound_refused_at_the_call(
    standin: StandIn, lite: kansa.Ledger
) -> None:
    """Each context alone fits; together they pass the 64 KiB entry bound."""
    calls = len(standin.exchanges)
    half = {f"a{i}": "x" * 4000 for i in range(9)}
    other = {f"b{i}": "x" * 4000 for i in range(9)}
    with kansa.context(attributes=half), kansa.context(attributes=other), \
            pytest.raises(RecordError):
        _client(standin, lite).chat.completions.create(model="m", messages=MSGS)
    assert len(standin.exchanges) == calls


def test_unrecordable_context_refused_before_upstream_async(
    standin: StandIn, lite: kansa.Ledger
) -> None:
    calls = len(standin.exchanges)

    async def go() -> None:
        c = _client(standin, lite, openai.AsyncOpenAI)
        async with kansa.context(subject="\ud800"):
            await c.chat.completions.create(model="m", messages=MSGS)  # pragma: no cover

    with pytest.raises(RecordError):
        asyncio.run(go())
    assert len(standin.exchanges) == calls


def test_unrecordable_wrap_system_or_subject_fn(standin: StandIn, lite: kansa.Ledger) -> None:
    calls = len(standin.exchanges)
    with pytest.raises(RecordError):
        _client(standin, lite, system="b\ud800").chat.completions.create(model="m",
                                                                          messages=MSGS)
    with pytest.raises(RecordError):
        _client(standin, lite, subject=lambda: "\udc00").chat.completions.create(
            model="m", messages=MSGS)
    assert len(standin.exchanges) == calls
    assert list(lite.find()) == []
    # a good call still goes through and is recorded
    _client(standin, lite).chat.completions.create(model="m", messages=MSGS)
    assert len(standin.exchanges) == calls + 1
    assert len(list(lite.find())) == 1


def test_surrogate_in_message_still_recorded(standin: StandIn, lite: kansa.Ledger) -> None:
    """The openai client cannot encode the body (nothing is sent); the failed call is
    still a record, its content kept with the surrogate escaped."""
    calls = len(standin.exchanges)
    with pytest.raises(UnicodeEncodeError):
        _client(standin, lite).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi \udc00"}])
    sdk.flush(10)
    assert len(standin.exchanges) == calls
    recs = list(lite.find(with_content=True))
    assert len(recs) == 1
    assert recs[0].entry["outcome"] == "error"
    assert "\\udc00" in str(recs[0].content)
