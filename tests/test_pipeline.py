"""The capture pipeline (kansa.capture.pipeline): one set of stages for the gateway, the
SDK wrappers and the OTLP intake; a third-party stage registered through the
``kansa.stages`` entry point runs in all three; failing stages fail closed; timing."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import kansa
from gateway_harness import GatewayServer
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig, create_gateway_app
from kansa.capture.otel import create_otlp_app
from kansa.capture.pipeline import (
    ATTR_PIPELINE_ERROR,
    Call,
    Pipeline,
    PolicyStage,
    Stage,
    Verdict,
    entry_point_stages,
)
from kansa.capture.shapes import CallInfo
from kansa.policy.inline import ATTR_DECISION, PolicyHandle
from kansa.records.model import UsageRecord
from standin import Standin
from test_inline_policy import write_policy
from test_otel import JSON_HEADERS, jrequest, jspan, serving

MSG = [{"role": "user", "content": "hello"}]

STAGE_MODULE = '''
from kansa.capture.pipeline import Verdict

class Tagger:
    """A third party's stage: tags every record, blocks the model "nope"."""

    name = "tagger"
    reads = frozenset({"gen_ai.request.model"})

    def before(self, call):
        if call.entry.get("gen_ai.request.model") == "nope":
            return Verdict("block", "tagger: no nope", {"tagger.refused": True})
        return Verdict("allow", attributes={"tagger.before": call.surface})

    def on_event(self, call, event):
        call.state["events"] = call.state.get("events", 0) + 1

    def after(self, call, record):
        record.attributes["tagger.after"] = call.surface
        if "events" in call.state:
            record.attributes["tagger.events"] = call.state["events"]
        if call.surface != "otel" and call.entry.get("gen_ai.request.model") == "hold-me":
            return Verdict("block", "not this answer")
        return None
'''


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    s = Standin().start()
    yield s
    s.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """A distribution installed on sys.path whose entry point adds a stage."""
    site = tmp_path / "site"
    dist = site / "kansa_tagger-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kansa-tagger\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kansa.stages]\ntagger = kansa_tagger:Tagger\n")
    (site / "kansa_tagger.py").write_text(textwrap.dedent(STAGE_MODULE))
    sys.path.insert(0, str(site))
    entry_point_stages.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("kansa_tagger", None)
        entry_point_stages.cache_clear()


def _attrs(ledger: Ledger, rid: str) -> dict[str, Any]:
    return dict(ledger.get(rid).entry.get("attributes", {}))


def test_an_entry_point_stage_runs_in_the_gateway_the_sdk_and_the_otel_intake(
        third_party: None, tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    import openai

    from kansa.capture.sdk import last_record_id

    assert [f().name for f in entry_point_stages()] == ["tagger"]
    p = write_policy(tmp_path, "mode: observe\n")

    # the gateway: before (attributes, a block) and after
    app = create_gateway_app(ledger, GatewayConfig.from_upstream(standin.url),
                             policy=PolicyHandle.load(p))
    assert [s.name for s in app.pipeline.stages] == ["policy", "tagger"]
    gw = GatewayServer(app).start()
    try:
        with httpx.Client(base_url=gw.url) as c:
            ok = c.post("/v1/chat/completions", json={"model": "gpt-x", "messages": MSG})
            no = c.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
            streamed = c.post("/v1/chat/completions",
                              json={"model": "gpt-x", "messages": MSG, "stream": True})
            held = c.post("/v1/chat/completions", json={"model": "hold-me", "messages": MSG})
            health = c.get("/healthz").json()
    finally:
        gw.stop()
    assert ok.status_code == 200
    a = _attrs(ledger, ok.headers["x-kansa-record"])
    assert a["tagger.before"] == "gateway" and a["tagger.after"] == "gateway"
    assert a[ATTR_DECISION] == "allow"  # the policy stage ran first, as before
    assert no.status_code == 403 and no.json()["kansa"]["stage"] == "tagger"
    assert no.json()["error"]["code"] == "policy_blocked"
    b = _attrs(ledger, no.headers["x-kansa-record"])
    assert b["tagger.refused"] is True and b["tagger.after"] == "gateway"
    assert ledger.get(no.headers["x-kansa-record"]).entry["outcome"] == "blocked"
    assert not any((q.get("body") or {}).get("model") == "nope" for q in standin.requests)
    assert streamed.status_code == 200
    assert _attrs(ledger, streamed.headers["x-kansa-record"])["tagger.events"] >= 1
    assert held.status_code == 403 and held.json()["error"]["code"] == "answer_held"
    h = ledger.get(held.headers["x-kansa-record"]).entry
    assert h["outcome"] == "blocked" and h["error.type"] == "answer_held"
    assert h["attributes"]["kansa.pipeline.held"] == "tagger: not this answer"
    assert any((q.get("body") or {}).get("model") == "hold-me" for q in standin.requests)
    assert health["pipeline"]["tagger"]["before"]["calls"] == 4
    assert health["pipeline"]["policy"]["after"]["calls"] == 4
    assert health["pipeline"]["tagger"]["event"]["calls"] >= 1

    # the SDK wrapper: a real openai client against the stand-in
    client = kansa.wrap(openai.OpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                        ledger=ledger, system="bot")
    client.chat.completions.create(model="gpt-x", messages=MSG)  # type: ignore[arg-type]
    a = _attrs(ledger, str(last_record_id()))
    assert a["tagger.before"] == "sdk" and a["tagger.after"] == "sdk"
    for _ in client.chat.completions.create(model="gpt-x", messages=MSG,  # type: ignore[arg-type]
                                             stream=True):
        pass
    a = _attrs(ledger, str(last_record_id()))
    assert a["tagger.after"] == "sdk" and a["tagger.events"] >= 2
    with pytest.raises(kansa.PolicyBlocked, match="tagger: no nope") as e:
        client.chat.completions.create(model="nope", messages=MSG)  # type: ignore[arg-type]
    assert _attrs(ledger, str(e.value.record_id))["tagger.refused"] is True
    with pytest.raises(kansa.PolicyBlocked, match="held by the pipeline stage tagger") as e:
        client.chat.completions.create(model="hold-me", messages=MSG)  # type: ignore[arg-type]
    h = ledger.get(str(e.value.record_id)).entry
    assert h["outcome"] == "blocked" and h["error.type"] == "answer_held"
    aclient = kansa.wrap(openai.AsyncOpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                         ledger=ledger, system="bot", policy=p)

    async def go() -> str:
        await aclient.chat.completions.create(model="gpt-x", messages=MSG)  # type: ignore[arg-type]
        return str(last_record_id())

    a = _attrs(ledger, asyncio.run(go()))
    assert a["tagger.before"] == "sdk" and a["tagger.after"] == "sdk"
    assert a[ATTR_DECISION] == "allow"

    # the OTLP intake: after only
    with serving(create_otlp_app(ledger)) as url:
        span = jspan({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                      "gen_ai.provider.name": "openai"})
        r = httpx.post(f"{url}/v1/traces", content=jrequest([span]), headers=JSON_HEADERS)
    assert r.status_code == 200
    [rec] = [x for x in ledger.find() if x.entry["system"] == "json-svc"]
    assert rec.entry["attributes"]["tagger.after"] == "otel"
    assert "tagger.before" not in rec.entry["attributes"]


class _Boom:
    name = "boom"
    reads: frozenset[str] = frozenset()

    def __init__(self, where: str) -> None:
        self.where = where

    def before(self, call: Call) -> Verdict | None:
        if self.where == "before":
            raise RuntimeError("kaput")
        return None

    def after(self, call: Call, record: UsageRecord) -> None:
        if self.where == "after":
            raise RuntimeError("kaput")


def _call() -> Call:
    return Call("test", info=CallInfo(system="s", provider="openai", operation="chat",
                                      request={"model": "m", "messages": MSG}))


def _record() -> UsageRecord:
    from kansa.capture.shapes import to_record

    info = _call().info
    assert info is not None
    return to_record(info)


def test_a_failing_stage_fails_closed_with_its_reason() -> None:
    assert isinstance(_Boom("x"), Stage)
    pipe = Pipeline([_Boom("before")])
    call = _call()
    r = pipe.before(call)
    assert r is not None and r.kind == "stage_failed" and r.verdict.decision == "block"
    assert call.attributes[ATTR_PIPELINE_ERROR] == "boom: RuntimeError: kaput"
    assert pipe.stats()["boom"]["before"]["errors"] == 1
    pipe = Pipeline([_Boom("after")])
    rec = pipe.after(_call(), _record())
    assert rec.attributes[ATTR_PIPELINE_ERROR] == "boom: RuntimeError: kaput"


def test_an_entry_point_that_does_not_load_stops_the_surface(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "kansa_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kansa-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kansa.stages]\nbroken = no_such_module:X\n")
    sys.path.insert(0, str(site))
    entry_point_stages.cache_clear()
    try:
        with pytest.raises(kansa.KansaError, match="cannot load the pipeline stage broken"):
            Pipeline.default()
    finally:
        sys.path.remove(str(site))
        entry_point_stages.cache_clear()


class _Ask:
    def __init__(self, name: str) -> None:
        self.name = name

    def before(self, call: Call) -> Verdict | None:
        return Verdict("approval_required", f"{self.name} asks",
                       attributes={f"{self.name}.asked": True})


def test_one_approval_serves_every_stage_that_asks(tmp_path: Path, ledger: Ledger) -> None:
    from kansa.policy.approvals import Approvals

    approvals = Approvals(ledger.log.store)
    pipe = Pipeline([_Ask("a"), _Ask("b")])
    call = _call()
    r = pipe.before(call, approvals=lambda: approvals, digest=lambda: "sha256:x")
    assert r is not None and r.kind == "approval_required" and r.verdict.approval
    assert r.verdict.message == "a asks; b asks"
    assert call.attributes["a.asked"] and call.attributes["b.asked"]
    assert len(approvals.list()) == 1
    approvals.decide(r.verdict.approval, approve=True)
    again = _call()
    assert pipe.before(again, approvals=lambda: approvals, approval_id=r.verdict.approval,
                       digest=lambda: "sha256:x") is None
    assert again.approval == r.verdict.approval and "a.asked" not in again.attributes
    used = pipe.before(_call(), approvals=lambda: approvals, approval_id=r.verdict.approval,
                       digest=lambda: "sha256:x")
    assert used is not None and used.kind == "approval_invalid" and "already used" in used.why
    assert pipe.decisions["approval_required"] == 2


def test_policy_stage_pins_one_snapshot_per_call(tmp_path: Path) -> None:
    h = PolicyHandle.load(write_policy(tmp_path, "mode: observe\n"))
    stage = PolicyStage(h)
    pipe = Pipeline([stage])
    call = pipe.open("test")
    first = call.state["policy"]
    h.current = h.current.__class__(h.current.spec)  # a reload swaps the reference
    assert stage._snap(call) is first
    rec = pipe.after(call, _record())
    assert rec.attributes["kansa.policy.snapshot"] == first.hash


def test_the_otel_intake_judges_policy_after_the_fact(tmp_path: Path, ledger: Ledger) -> None:
    p = write_policy(tmp_path, "mode: observe\nmodes:\n  test.inline/rules#model-allowed: block\n")
    h = PolicyHandle.load(p)
    app = create_otlp_app(ledger, policy=h)
    with serving(app) as url:
        span = jspan({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-x",
                      "gen_ai.provider.name": "openai"})
        r = httpx.post(f"{url}/v1/traces", content=jrequest([span]), headers=JSON_HEADERS)
    assert r.status_code == 200
    [rec] = list(ledger.find())
    assert rec.entry["attributes"][ATTR_DECISION] in ("allow", "flag")
    assert rec.entry["attributes"]["kansa.policy.snapshot"] == h.current.hash
    assert app.state.pipeline.stats()["policy"]["after"]["calls"] == 1


# -- rewriting: a stage that redacts requests and rewrites answers --------------------------

REDACTOR_MODULE = '''
from kansa.capture.pipeline import Verdict

DELIVERED = []  # the answers the stage handed back, for the test to compare
SECRET = "alice@example.com"


def _scrub(v):
    if isinstance(v, str):
        return v.replace(SECRET, "[email]")
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def rewrite(call, resp):
    if call.surface == "tool":
        return {**resp, "result": "rewritten: " + str(resp["result"])}
    if "choices" in resp:
        c0 = resp["choices"][0]
        return {**resp, "choices": [{**c0, "message": {**c0["message"],
                                                        "content": "rewritten"}}]}
    return {**resp, "content": [{"type": "text", "text": "rewritten"}]}


class Redactor:
    """A third party's stage: personal data never leaves, answers are rewritten."""

    name = "redactor"
    reads = frozenset()

    def before(self, call):
        req = call.request
        call.state["seen_id"] = call.record_id
        if req is None:
            return None
        call.state["stream"] = req.get("stream") is True
        name = req.get("name") if call.surface == "tool" else req.get("model")
        if name == "bad-request":
            return Verdict("allow", request=["not", "an object"])
        if name == "nan-request":
            return Verdict("allow", request={**req, "temperature": float("nan")})
        if name == "forbidden":
            return Verdict("block", "redactor: forbidden tool")
        if name == "needs-ok":
            return Verdict("approval_required", "redactor: ask first")
        attrs = {"redactor.saw_secret": SECRET in repr(req)}
        if call.subject is not None:
            attrs["redactor.subject"] = call.subject
        return Verdict("allow", attributes=attrs, request=_scrub(req))

    def after(self, call, record):
        record.attributes["redactor.record_id"] = call.state.get("seen_id", call.record_id)
        resp = call.response
        name = (call.request or {}).get("model") or (call.request or {}).get("name")
        if resp is None:
            if call.state.get("stream"):
                return Verdict("allow", response={"ignored": True})
            return None
        if name == "bad-response":
            return Verdict("allow", response=[1, 2])
        if name == "odd-response":
            return Verdict("allow", response={"x": object()})
        out = rewrite(call, resp)
        DELIVERED.append(out)
        return Verdict("allow", response=out)
'''

REWRITTEN = "kansa.pipeline.rewritten"
NOT_APPLIED = "kansa.pipeline.rewrite_not_applied"
DELIVERED_SHA = "kansa.pipeline.delivered_sha256"
SECRET_MSG = [{"role": "user", "content": "mail alice@example.com please"}]


@pytest.fixture
def redactor(tmp_path: Path) -> Iterator[Any]:
    """The redacting stage, installed through the kansa.stages entry point."""
    import importlib

    site = tmp_path / "site2"
    dist = site / "kansa_redactor-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kansa-redactor\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[kansa.stages]\nredactor = kansa_redactor:Redactor\n")
    (site / "kansa_redactor.py").write_text(textwrap.dedent(REDACTOR_MODULE))
    sys.path.insert(0, str(site))
    entry_point_stages.cache_clear()
    try:
        yield importlib.import_module("kansa_redactor")
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("kansa_redactor", None)
        entry_point_stages.cache_clear()


def _sha(obj: Any) -> str:
    import hashlib

    from kansa.records.model import canonical

    return hashlib.sha256(canonical(obj)).hexdigest()


def _sent(standin: Standin, n: int) -> list[dict[str, Any]]:
    """The bodies of the last n requests the stand-in upstream received."""
    return [q.get("body") or {} for q in standin.requests[-n:]]


def test_a_stage_redacts_the_request_and_rewrites_the_answer_in_the_gateway(
        redactor: Any, ledger: Ledger, standin: Standin) -> None:
    app = create_gateway_app(ledger, GatewayConfig.from_upstream(standin.url))
    assert [s.name for s in app.pipeline.stages] == ["redactor"]
    gw = GatewayServer(app).start()
    try:
        with httpx.Client(base_url=gw.url) as c:
            hdr = {"x-kansa-subject": "user-7"}
            ok = c.post("/v1/chat/completions", headers=hdr,
                        json={"model": "gpt-x", "messages": SECRET_MSG})
            [upstream_got] = _sent(standin, 1)
            again = c.post("/v1/chat/completions", headers=hdr,
                           json={"model": "gpt-x", "messages": SECRET_MSG})
            streamed = c.post("/v1/chat/completions",
                              json={"model": "gpt-x", "messages": SECRET_MSG, "stream": True})
            [stream_got] = _sent(standin, 1)
            n = len(standin.requests)
            bad_req = c.post("/v1/chat/completions",
                             json={"model": "bad-request", "messages": MSG})
            nan_req = c.post("/v1/chat/completions",
                             json={"model": "nan-request", "messages": MSG})
            assert len(standin.requests) == n  # refused: nothing left
            bad_resp = c.post("/v1/chat/completions",
                              json={"model": "bad-response", "messages": MSG})
            odd_resp = c.post("/v1/chat/completions",
                              json={"model": "odd-response", "messages": MSG})
    finally:
        gw.stop()

    # what the upstream received: the redacted body, and only that
    assert upstream_got["messages"][0]["content"] == "mail [email] please"
    assert "alice" not in json.dumps(upstream_got)
    # what the caller received: the rewritten answer, whole (content-length right)
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "rewritten"
    assert ok.json() == redactor.DELIVERED[0]
    rid = ok.headers["x-kansa-record"]
    got = ledger.get(rid)
    a = got.entry["attributes"]
    assert a[REWRITTEN] == ["redactor:request", "redactor:response"]
    assert a[DELIVERED_SHA] == _sha(ok.json())
    assert a["redactor.saw_secret"] is True and a["redactor.record_id"] == rid
    assert "redactor.subject" not in a  # user-7 had no pseudonym before this call
    # the record holds what left (redacted) and the answer the upstream gave
    assert got.content is not None and "alice" not in json.dumps(got.content)
    assert got.content["gen_ai.input.messages"][0]["content"] == "mail [email] please"
    assert "echo: mail [email] please" in json.dumps(got.content)
    # the second call of the same subject: the stage sees its pseudonym, as entries name it
    a2 = ledger.get(again.headers["x-kansa-record"]).entry
    assert a2["attributes"]["redactor.subject"] == got.entry["subject"]
    assert got.entry["subject"] != "user-7"

    # a stream: the request is redacted, the answer untouched, the record says so
    assert streamed.status_code == 200 and "rewritten" not in streamed.text
    assert "alice" not in json.dumps(stream_got)
    s = ledger.get(streamed.headers["x-kansa-record"]).entry["attributes"]
    assert s[REWRITTEN] == ["redactor:request"]
    assert s[NOT_APPLIED] == ["redactor:response"] and DELIVERED_SHA not in s

    # bad replacements fail closed, with the reason in the record
    for r, why in ((bad_req, "the request replacement is a list, not a JSON object"),
                   (nan_req, "the request replacement is not JSON")):
        assert r.status_code == 403 and r.json()["error"]["code"] == "pipeline_error"
        e = ledger.get(r.headers["x-kansa-record"]).entry
        assert e["outcome"] == "blocked" and why in e["attributes"]["kansa.pipeline.error"]
    for r, why in ((bad_resp, "the response replacement is a list, not a JSON object"),
                   (odd_resp, "the response replacement is not JSON")):
        assert r.status_code == 403 and r.json()["error"]["code"] == "answer_held"
        assert "echo" not in r.text
        e = ledger.get(r.headers["x-kansa-record"]).entry
        assert e["outcome"] == "blocked" and e["error.type"] == "pipeline_error"
        assert why in e["attributes"]["kansa.pipeline.error"]
        assert REWRITTEN not in e["attributes"] or e["attributes"][REWRITTEN] == [
            "redactor:request"]


def test_a_stage_redacts_and_rewrites_through_the_sdk_wrappers(
        redactor: Any, ledger: Ledger, standin: Standin) -> None:
    import anthropic
    import openai
    from openai.types.chat import ChatCompletion

    from kansa.capture.sdk import flush, last_record_id

    client = kansa.wrap(openai.OpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                        ledger=ledger, system="bot")
    out = client.chat.completions.create(model="gpt-x", messages=SECRET_MSG)  # type: ignore[arg-type]
    [sent] = _sent(standin, 1)
    assert sent["messages"][0]["content"] == "mail [email] please"
    assert type(out) is ChatCompletion and out.choices[0].message.content == "rewritten"
    rid = str(last_record_id())
    got = ledger.get(rid)
    a = got.entry["attributes"]
    assert a[REWRITTEN] == ["redactor:request", "redactor:response"]
    assert a[DELIVERED_SHA] == _sha(redactor.DELIVERED[-1])
    assert a["redactor.record_id"] == rid
    assert got.content is not None and "alice" not in json.dumps(got.content)
    assert "echo: mail [email] please" in json.dumps(got.content)

    # streamed: redacted request, the answer untouched, the record says so
    chunks = list(client.chat.completions.create(model="gpt-x", messages=SECRET_MSG,  # type: ignore[arg-type]
                                                 stream=True))
    assert "alice" not in json.dumps(_sent(standin, 1))
    assert "rewritten" not in repr(chunks)
    s = ledger.get(str(last_record_id())).entry["attributes"]
    assert s[REWRITTEN] == ["redactor:request"] and s[NOT_APPLIED] == ["redactor:response"]

    # bad replacements fail closed
    with pytest.raises(kansa.PolicyBlocked, match="request replacement is a list") as e:
        client.chat.completions.create(model="bad-request", messages=MSG)  # type: ignore[arg-type]
    assert ledger.get(str(e.value.record_id)).entry["error.type"] == "pipeline_error"
    with pytest.raises(kansa.PolicyBlocked, match="response replacement is not JSON") as e:
        client.chat.completions.create(model="odd-response", messages=MSG)  # type: ignore[arg-type]
    h = ledger.get(str(e.value.record_id)).entry
    assert h["outcome"] == "blocked" and h["error.type"] == "pipeline_error"

    # not durable: recorded in the background, too late to rewrite the answer
    bg = kansa.wrap(openai.OpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                    ledger=ledger, system="bot", durable=False)
    out = bg.chat.completions.create(model="gpt-x", messages=SECRET_MSG)  # type: ignore[arg-type]
    assert out.choices[0].message.content == "echo: mail [email] please"
    flush()
    s = ledger.get(str(last_record_id())).entry["attributes"]
    assert s[REWRITTEN] == ["redactor:request"] and s[NOT_APPLIED] == ["redactor:response"]

    # async openai
    aclient = kansa.wrap(openai.AsyncOpenAI(base_url=standin.url, api_key="sk", max_retries=0),
                         ledger=ledger, system="bot")

    async def go() -> tuple[Any, str]:
        r = await aclient.chat.completions.create(model="gpt-x", messages=SECRET_MSG)  # type: ignore[arg-type]
        return r, str(last_record_id())

    out, rid = asyncio.run(go())
    assert type(out) is ChatCompletion and out.choices[0].message.content == "rewritten"
    assert _sent(standin, 1)[0]["messages"][0]["content"] == "mail [email] please"
    assert ledger.get(rid).entry["attributes"][REWRITTEN] == ["redactor:request",
                                                              "redactor:response"]

    # anthropic: its own base URL (no /v1), its own answer type
    ant = kansa.wrap(anthropic.Anthropic(base_url=standin.url[:-3], api_key="sk",
                                         max_retries=0), ledger=ledger, system="bot")
    msg = ant.messages.create(model="claude-x", max_tokens=10, messages=SECRET_MSG)  # type: ignore[arg-type]
    assert _sent(standin, 1)[0]["messages"][0]["content"] == "mail [email] please"
    assert type(msg).__name__ == "Message" and msg.content[0].text == "rewritten"  # type: ignore[union-attr]
    a = ledger.get(str(last_record_id())).entry["attributes"]
    assert a[REWRITTEN] == ["redactor:request", "redactor:response"]
    assert a[DELIVERED_SHA] == _sha(redactor.DELIVERED[-1])


def test_a_stage_redacts_arguments_and_rewrites_results_of_tools(
        redactor: Any, ledger: Ledger) -> None:
    from kansa.capture.sdk import last_record_id
    from kansa.policy.approvals import Approvals

    ran: list[Any] = []

    @kansa.tool("lookup", ledger=ledger)
    def lookup(email: str, n: int = 1) -> str:
        ran.append(email)
        return f"found {email} x{n}"

    assert lookup("alice@example.com") == "rewritten: found [email] x1"
    assert ran == ["[email]"]
    got = ledger.get(str(last_record_id()))
    a = got.entry["attributes"]
    assert a[REWRITTEN] == ["redactor:request", "redactor:response"]
    assert a[DELIVERED_SHA] == _sha(redactor.DELIVERED[-1])
    assert got.content == {"gen_ai.tool.call.arguments": {"email": "[email]", "n": 1},
                           "gen_ai.tool.call.result": "found [email] x1"}

    async def alookup_body(email: str) -> str:
        return f"async {email}"

    alookup = kansa.tool("lookup", ledger=ledger)(alookup_body)
    assert asyncio.run(alookup(email="alice@example.com")) == "rewritten: async [email]"

    # the with form: arguments replaced; the result is the caller's already: not rewritten
    with kansa.tool("lookup", arguments={"email": "alice@example.com"}, ledger=ledger) as t:
        assert t.arguments == {"email": "[email]"}
        t.result = "done"
    a = ledger.get(t.id).entry["attributes"]
    assert a[REWRITTEN] == ["redactor:request"] and a[NOT_APPLIED] == ["redactor:response"]

    # blocked: the tool never runs, the call is recorded
    @kansa.tool("forbidden", ledger=ledger)
    def forbidden() -> str:
        ran.append("forbidden")
        return "no"

    with pytest.raises(kansa.PolicyBlocked, match="redactor: forbidden tool") as e:
        forbidden()
    assert ran == ["[email]"]
    b = ledger.get(str(e.value.record_id)).entry
    assert b["outcome"] == "blocked" and b["error.type"] == "policy_blocked"

    # approval: the one approval flow, the id passed through kansa.context
    @kansa.tool("needs-ok", ledger=ledger)
    def needs_ok(x: int) -> Any:
        return x * 2

    with pytest.raises(kansa.PolicyBlocked, match="kansa.context\\(approval=") as e:
        needs_ok(21)
    aid = e.value.approval_id
    assert aid is not None
    Approvals(ledger.log.store).decide(aid, approve=True)
    with kansa.context(approval=aid):
        assert needs_ok(21) == "rewritten: 42"
        with pytest.raises(kansa.PolicyBlocked, match="already used"):
            needs_ok(21)

    # a bad answer replacement withholds the result
    @kansa.tool("bad-response", ledger=ledger)
    def bad() -> str:
        return "secret"

    with pytest.raises(kansa.PolicyBlocked, match="response replacement is a list") as e:
        bad()
    h = ledger.get(str(e.value.record_id)).entry
    assert h["outcome"] == "blocked" and h["error.type"] == "pipeline_error"


def test_without_stages_tools_and_calls_see_no_pipeline(ledger: Ledger) -> None:
    from kansa.capture.sdk import last_record_id

    entry_point_stages.cache_clear()

    @kansa.tool("plain", ledger=ledger)
    def plain(x: int) -> int:
        return x + 1

    assert plain(1) == 2
    a = ledger.get(str(last_record_id())).entry.get("attributes", {})
    assert REWRITTEN not in a and NOT_APPLIED not in a


def test_a_replacement_is_validated_and_chained() -> None:
    class First:
        name = "first"

        def before(self, call: Call) -> Verdict:
            return Verdict("allow", request={**(call.request or {}), "model": "m2"})

    class Second:
        name = "second"

        def before(self, call: Call) -> Verdict | None:
            assert call.request is not None and call.request["model"] == "m2"
            assert call.entry["gen_ai.request.model"] == "m2"  # the entry follows
            return None

    pipe = Pipeline([First(), Second()])
    call = _call()
    assert pipe.before(call) is None
    assert call.request_replaced and call.rewritten == ["first:request"]
    assert call.info is not None and call.info.request["model"] == "m2"
    rec = pipe.after(call, _record())
    assert rec.attributes[REWRITTEN] == ["first:request"]
