"""The capture pipeline (kansa.capture.pipeline): one set of stages for the gateway, the
SDK wrappers and the OTLP intake; a third-party stage registered through the
``kansa.stages`` entry point runs in all three; failing stages fail closed; timing."""

from __future__ import annotations

import asyncio
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
