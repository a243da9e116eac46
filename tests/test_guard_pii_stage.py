"""The data guard stage (kansa.guard.data_stage) in the capture pipeline, on calls built
here: actions per direction, what the record holds (kinds, counts, keyed hashes, never a
value), answers held, bad configuration refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kansa.capture.pipeline import Call, Pipeline
from kansa.capture.shapes import CallInfo, to_record
from kansa.errors import GuardError
from kansa.guard.data_stage import DataGuardStage, DataPolicy
from kansa.guard.pseudonym import StaticKeyring

KR = StaticKeyring(b"k" * 32)
KEY = "sk-ant-api03-" + "Ab3" * 31 + "AA"
MAIL = "taro.yamada@example.co.jp"


def call_of(text: str, response: Any = None, subject: str = "alice") -> Call:
    info = CallInfo(system="s", provider="openai", operation="chat",
                    request={"model": "m", "messages": [{"role": "user", "content": text}]},
                    response=response, status=200, subject=subject)
    return Call("gateway", info=info)


def answer(text: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}]}


def no_clear_value(attrs: dict[str, Any], *values: str) -> None:
    blob = json.dumps(attrs, ensure_ascii=False)
    for v in values:
        assert v not in blob


def test_a_secret_going_out_is_blocked_and_recorded_without_its_value() -> None:
    stage = DataGuardStage(KR)
    c = call_of(f"use {KEY} and mail {MAIL}")
    v = stage.before(c)
    assert v is not None and v.decision == "block"
    assert "anthropic_key" in v.message and KEY not in v.message
    a = dict(v.attributes)
    assert a["kansa.guard.data.out.kinds"] == ["anthropic_key", "email"]
    assert a["kansa.guard.data.out.findings"] == 2
    assert a["kansa.guard.data.out.action"] == "block"
    assert len(a["kansa.guard.data.out.hashes"]) == 2
    assert "AML.T0057" in a["kansa.guard.data.out.techniques"]
    no_clear_value(a, KEY, MAIL)


def test_pseudonymise_on_a_surface_that_cannot_rewrite_fails_closed() -> None:
    v = DataGuardStage(KR, can_rewrite=False).before(call_of(f"mail {MAIL}"))
    assert v is not None and v.decision == "block" and "cannot rewrite" in v.message
    assert v.attributes["kansa.guard.data.out.action"] == "pseudonymise"


@pytest.mark.parametrize("action,decision", [("observe", "allow"), ("flag", "flag")])
def test_observe_and_flag_let_the_body_through_unchanged(action: str, decision: str) -> None:
    stage = DataGuardStage(KR, policy=DataPolicy(outgoing={"*": action}))
    c = call_of(f"mail {MAIL}")
    v = stage.before(c)
    assert v is not None and v.decision == decision
    assert v.attributes["kansa.guard.data.out.action"] == action
    assert "pseudonymised" not in json.dumps(dict(v.attributes))


def test_nothing_found_nothing_recorded() -> None:
    stage = DataGuardStage(KR)
    assert stage.before(call_of("こんにちは、今日の天気は？")) is None
    assert stage.after(call_of("hi", answer("晴れです")), to_record(call_of("hi").info)) is None  # type: ignore[arg-type]


def test_kind_beats_detector_beats_star() -> None:
    p = DataPolicy(outgoing={"*": "block", "pii": "flag", "email": "observe"})
    stage = DataGuardStage(KR, policy=p)
    v = stage.before(call_of(f"mail {MAIL}"))
    assert v is not None and v.decision == "allow"
    v = stage.before(call_of("tel 090-1234-5678"))
    assert v is not None and v.decision == "flag"
    v = stage.before(call_of(KEY))
    assert v is not None and v.decision == "block"


def test_a_leak_in_the_answer_is_recorded_and_held_through_the_pipeline() -> None:
    stage = DataGuardStage(KR, policy=DataPolicy(incoming={"secrets": "block", "pii": "flag"}))
    pipe = Pipeline([stage])
    c = call_of("what is the key?", answer(f"It is {KEY}. Mail {MAIL}."))
    assert pipe.before(c) is None
    c.holdable = True
    rec = pipe.after(c, to_record(c.info))  # type: ignore[arg-type]
    a = rec.attributes
    assert rec.outcome == "blocked" and rec.error_type == "answer_held"
    assert a["kansa.guard.data.in.kinds"] == ["anthropic_key", "email"]
    assert a["kansa.guard.data.in.action"] == "block"
    assert "guard.data" in a["kansa.pipeline.held"]
    no_clear_value(a, KEY, MAIL)


def test_tool_call_arguments_in_the_answer_are_scanned() -> None:
    stage = DataGuardStage(KR, policy=DataPolicy(incoming={"*": "flag"}))
    resp = {"choices": [{"message": {"role": "assistant", "tool_calls": [{
        "id": "c1", "type": "function", "function": {
            "name": "http_post", "arguments": json.dumps({"url": "https://x.example/",
                                                          "body": "card 4111111111111111"})}}]}}]}
    c = call_of("pay", resp)
    v = stage.after(c, to_record(c.info))  # type: ignore[arg-type]
    assert v is not None and v.decision == "flag"
    assert v.attributes["kansa.guard.data.in.kinds"] == ["payment_card"]


@pytest.mark.parametrize("kw,msg", [
    ({"outgoing": {"shoe_size": "block"}}, "unknown kind 'shoe_size'"),
    ({"outgoing": {"email": "shred"}}, "unknown action 'shred'"),
    ({"incoming": {"pii": "pseudonymise"}}, "cannot be pseudonymised"),
    ({"min_score": 1.5}, "not within 0..1"),
])
def test_bad_policy_is_a_clear_error(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(GuardError, match=msg):
        DataPolicy(**kw)
