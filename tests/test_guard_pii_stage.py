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


def call_of(text: str, response: Any = None, subject: str = "alice",
            rewritable: bool = True) -> Call:
    info = CallInfo(system="s", provider="openai", operation="chat",
                    request={"model": "m", "messages": [{"role": "user", "content": text}]},
                    response=response, status=200, subject=subject)
    c = Call("gateway", info=info)
    if response is not None:  # what a surface does before the after moment
        c.answered(lambda: response, rewritable=rewritable)
    return c


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


def test_pseudonymised_request_and_restored_answer_through_the_pipeline() -> None:
    stage = DataGuardStage(KR)
    pipe = Pipeline([stage])
    c = call_of(f"mail {MAIL} or call 090-1234-5678")
    assert pipe.before(c) is None
    sent = json.dumps(c.request, ensure_ascii=False)
    assert MAIL not in sent and "090-1234-5678" not in sent
    assert c.info is not None and c.info.request == c.request  # the record holds what left
    # the upstream echoes the tokens; the caller gets the values back
    echoed = answer("echo: " + c.request["messages"][0]["content"])  # type: ignore[index]
    c.answered(lambda: echoed, rewritable=True)
    rec = pipe.after(c, to_record(c.info))
    assert c.delivered is not None
    delivered = json.loads(c.delivered)
    assert delivered["choices"][0]["message"]["content"] == (
        f"echo: mail {MAIL} or call 090-1234-5678")
    a = rec.attributes
    assert a["kansa.guard.data.restored"] == 2
    assert "kansa.guard.data.in.kinds" not in a  # restored tokens are not leaks
    no_clear_value(a, MAIL, "090-1234-5678")


def test_a_secret_in_the_answer_is_redacted_by_default() -> None:
    stage = DataGuardStage(KR)
    c = call_of("hi", answer(f"here: {KEY}"))
    v = stage.after(c, to_record(c.info))  # type: ignore[arg-type]
    assert v is not None and v.response is not None
    assert v.response["choices"][0]["message"]["content"] == "here: [REDACTED:ANTHROPIC_KEY]"
    assert v.attributes["kansa.guard.data.in.action"] == "redact"


def test_tokens_of_an_earlier_call_are_restored_from_the_store(tmp_path: Any) -> None:
    from kansa.api import Ledger

    with Ledger.init(tmp_path / "home") as led:
        stage = DataGuardStage.for_ledger(led)
        first = call_of(f"mail {MAIL}")
        v = stage.before(first)
        assert v is not None and v.request is not None
        token = v.request["messages"][0]["content"].removeprefix("mail ")
        # a later call whose answer names the token without it being in this request
        later = call_of("what was the address?", answer(f"It was {token}."))
        got = stage.after(later, to_record(later.info))  # type: ignore[arg-type]
        assert got is not None and got.response is not None
        assert got.response["choices"][0]["message"]["content"] == f"It was {MAIL}."
        # another subject cannot resolve it
        other = call_of("?", answer(f"It was {token}."), subject="mallory")
        got = stage.after(other, to_record(other.info))  # type: ignore[arg-type]
        assert got is None or got.response is None


def test_gateway_guard_data_option_builds_the_stage_from_yaml(tmp_path: Any) -> None:
    from kansa.api import Ledger
    from kansa.capture.gateway import GatewayConfig
    from kansa.cli.gateway import _guarded

    cfg_file = tmp_path / "data.yaml"
    cfg_file.write_text("outgoing:\n  secrets: block\n  my_number: block\n  pii: pseudonymise\n"
                        "incoming:\n  '*': flag\nmin_score: 0.7\n")
    with Ledger.init(tmp_path / "home") as led:
        got = _guarded(GatewayConfig.from_upstream("http://127.0.0.1:9"), led, None,
                       guard_data=cfg_file)
        [stage] = got["pipeline"].stages
        assert isinstance(stage, DataGuardStage) and stage.store is not None
        assert stage.policy.outgoing["my_number"] == "block"
        assert stage.policy.min_score == 0.7
    bad = tmp_path / "bad.yaml"
    bad.write_text("outgoing: {email: shred}\n")
    with pytest.raises(GuardError, match="unknown action 'shred'"):
        DataPolicy.load(bad)
    bad.write_text("outgong: {}\n")
    with pytest.raises(GuardError, match="unknown key 'outgong'"):
        DataPolicy.load(bad)
    with pytest.raises(GuardError, match="cannot read"):
        DataPolicy.load(tmp_path / "missing.yaml")


def test_ner_without_the_extra_is_a_clear_error_and_never_a_download() -> None:
    from kansa.guard.ner import NerScanner, available

    policy = DataPolicy.from_dict({"ner": True})
    if available():  # the kansa[ner] extra is installed here: the stage loads it
        assert DataGuardStage(KR, policy=policy).ner is not None
        return
    with pytest.raises(GuardError, match=r"pip install 'kansa\[ner\]'"):
        DataGuardStage(KR, policy=policy)
    with pytest.raises(GuardError, match="NER extra is not installed"):
        NerScanner().scan("山田が担当します")
    with pytest.raises(GuardError, match="ner: expected true or false"):
        DataPolicy.from_dict({"ner": "yes"})
