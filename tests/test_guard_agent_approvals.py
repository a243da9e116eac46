"""The approvals lifecycle (pending / approved / rejected / edited / expired / used), bound
to a tool call's canonical digest, decided through the ledger, the CLI and HTTP; on
SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kansa.api import Ledger
from kansa.capture.approvals_http import create_approvals_app, parse_tokens
from kansa.cli import app as cli_app
from kansa.errors import KansaError
from kansa.policy.approvals import (
    ApprovalError,
    ApprovalPending,
    Approvals,
    arguments_sha256,
    consume_or_request,
    tool_call_digest,
)

T0 = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


class Clock:
    """A scenario clock the test moves by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def led(store_url: str, tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger.init(tmp_path / "home", url=store_url)
    try:
        yield lg
    finally:
        lg.close()


def _held(ap: Approvals, tool: str = "send_email", args: Any = None,
          ttl: float = 1.0) -> Any:
    args = {"to": "x@evil.example", "body": "hi"} if args is None else args
    return ap.request(digest=tool_call_digest(tool, args), record_id="rec-held",
                      snapshot="agent:cfg", system="bot", app="app", model=None,
                      obligations=["agent#tainted"], ttl_hours=ttl, tool=tool,
                      arguments=args)


def _decisions(lg: Ledger) -> list[dict[str, Any]]:
    out = []
    for r in lg.find():
        a = r.entry.get("attributes") or {}
        if r.entry.get("kind") == "kansa.event" and str(
                a.get("kansa.event", "")).startswith("approval."):
            out.append(r.entry)
    return out


def test_digest_is_canonical_and_binds_name_and_every_value() -> None:
    a = tool_call_digest("send_email", {"to": "a@b.c", "n": 1, "cc": ["x", "y"]})
    assert a == tool_call_digest("send_email", {"cc": ["x", "y"], "n": 1, "to": "a@b.c"})
    assert a != tool_call_digest("send_mail", {"to": "a@b.c", "n": 1, "cc": ["x", "y"]})
    assert a != tool_call_digest("send_email", {"to": "a@b.c", "n": 2, "cc": ["x", "y"]})
    assert a != tool_call_digest("send_email", {"to": "a@b.c", "n": 1, "cc": ["y", "x"]})
    with pytest.raises(ApprovalError, match="not JSON"):
        tool_call_digest("t", {"x": {1, 2}})
    with pytest.raises(ApprovalError, match="not JSON"):
        tool_call_digest("t", {"x": float("nan")})
    # RFC 8785 numbers are IEEE doubles: a larger integer is refused, not silently rounded
    with pytest.raises(ApprovalError, match="not JSON.*safe integer"):
        tool_call_digest("t", {"id": 2**53})
    with pytest.raises(ApprovalError, match="tool name"):
        tool_call_digest("", {})


_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c,
                                                                         max_size=4),
                     max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(_json, _json)
def test_digests_differ_exactly_when_the_canonical_arguments_differ(a: Any, b: Any) -> None:
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (tool_call_digest("t", a) == tool_call_digest("t", b)) == same
    assert (arguments_sha256(a) == arguments_sha256(b)) == same


def test_approve_is_single_use_and_recorded(led: Ledger) -> None:
    clock = Clock()
    ap = Approvals.for_ledger(led, clock=clock)
    a = _held(ap)
    assert a.state(a.created) == "pending" and ap.list("pending") == [a]
    with pytest.raises(ApprovalPending, match="still pending"):
        ap.resume(a.id)
    with pytest.raises(ApprovalPending):
        ap.consume(a.id, a.digest, "r1")
    clock.at += timedelta(minutes=5)
    got = ap.approve(a.id, by="alice", reason="ticket 42")
    assert got.status == "approved" and got.decided_by == "alice" and got.note == "ticket 42"
    assert ap.resume(a.id).call_arguments() == {"to": "x@evil.example", "body": "hi"}
    with pytest.raises(ApprovalError, match="not pending"):
        ap.reject(a.id)
    with pytest.raises(ApprovalError, match="different call"):
        ap.consume(a.id, tool_call_digest("send_email", {"to": "y@evil.example"}), "r2")
    used = ap.consume(a.id, a.digest, "r3")
    assert used.status == "used" and used.used_by == "r3"
    with pytest.raises(ApprovalError, match="already used"):
        ap.consume(a.id, a.digest, "r4")
    (rec,) = _decisions(led)
    attrs = rec["attributes"]
    assert rec["gen_ai.operation.name"] == "approval.approved" and rec["actor"] == "alice"
    assert rec["ts"].startswith("2026-11-18T09:05:00")
    assert attrs["kansa.approval.id"] == a.id and attrs["kansa.approval.reason"] == "ticket 42"
    assert attrs["kansa.approval.digest"] == a.digest
    assert attrs["kansa.approval.held_record"] == "rec-held"
    assert rec["gen_ai.tool.name"] == "send_email"
    assert led.get(got.decision_record or "").entry == rec
    # the arguments themselves never enter the entry
    assert "evil.example" not in json.dumps(rec)


def test_reject_refuses_the_resume_and_says_who_and_why(led: Ledger) -> None:
    ap = Approvals.for_ledger(led, clock=Clock())
    a = _held(ap)
    r = ap.reject(a.id, by="bob", reason="mails data out")
    assert r.status == "rejected" and r.state(r.created) == "rejected"
    with pytest.raises(ApprovalError, match="rejected by bob: mails data out"):
        ap.resume(a.id)
    settled = consume_or_request(ap, approval_id=a.id, digest=a.digest, record_id="r9",
                                 snapshot="s", system="bot", app=None, model=None,
                                 obligations=[], ttl_hours=1)
    assert settled.kind == "approval_invalid" and "rejected" in settled.why
    (rec,) = _decisions(led)
    assert rec["gen_ai.operation.name"] == "approval.rejected"
    assert rec["attributes"]["kansa.approval.reason"] == "mails data out"


def test_edit_binds_the_edited_arguments_only(led: Ledger) -> None:
    ap = Approvals.for_ledger(led, clock=Clock())
    a = _held(ap)
    fixed = {"to": "boss@example.co.jp", "body": "hi"}
    e = ap.edit(a.id, fixed, by="carol", reason="internal recipient")
    assert e.status == "edited" and e.edited == fixed and e.call_arguments() == fixed
    with pytest.raises(ApprovalError, match="must use the edited arguments"):
        ap.consume(a.id, a.digest, "r1")
    with pytest.raises(ApprovalError, match="different call"):
        ap.consume(a.id, tool_call_digest("send_email", {**fixed, "cc": "x"}), "r1")
    assert ap.consume(a.id, tool_call_digest("send_email", fixed), "r2").status == "used"
    (rec,) = _decisions(led)
    assert rec["attributes"]["kansa.approval.arguments_sha256"] == arguments_sha256(fixed)
    assert rec["attributes"]["kansa.approval.edited_digest"] == tool_call_digest(
        "send_email", fixed)
    # a model call (no tool) has no arguments to edit
    m = ap.request(digest="sha256:m", record_id="r", snapshot="s", system="bot", app=None,
                   model="m", obligations=[], ttl_hours=1)
    with pytest.raises(ApprovalError, match="only a tool call"):
        ap.edit(m.id, {"x": 1})


def test_expiry_reads_the_clock_it_is_given(led: Ledger) -> None:
    clock = Clock()
    ap = Approvals.for_ledger(led, clock=clock)
    a = _held(ap, ttl=1)
    b = _held(ap, ttl=1)
    ap.approve(b.id)
    clock.at += timedelta(minutes=59)
    assert [x.id for x in ap.list("pending")] == [a.id]
    clock.at += timedelta(minutes=1)
    assert ap.list("pending") == [] and {x.id for x in ap.list("expired")} == {a.id, b.id}
    assert ap.get(a.id).state(ap._now(None)) == "expired"  # type: ignore[union-attr]
    with pytest.raises(ApprovalError, match="expired"):
        ap.approve(a.id)
    with pytest.raises(ApprovalError, match="expired"):
        ap.consume(b.id, b.digest, "r")
    with pytest.raises(ApprovalError, match="expired"):
        ap.resume(b.id)
    # an explicit instant wins over the clock
    assert ap.consume(b.id, b.digest, "r", now=T0 + timedelta(minutes=30)).status == "used"
    with pytest.raises(ApprovalError, match="positive"):
        _held(ap, ttl=0)
    with pytest.raises(ApprovalError, match="unknown approval status"):
        ap.list("maybe")


def test_racing_resumes_of_an_edit_pass_once(led: Ledger) -> None:
    ap = Approvals(led.log.store, clock=Clock())
    a = _held(ap)
    fixed = {"to": "boss@example.co.jp"}
    ap.edit(a.id, fixed)
    d = tool_call_digest("send_email", fixed)
    wins: list[str] = []

    def go(i: int) -> None:
        try:
            ap.consume(a.id, d, f"r{i}")
            wins.append(f"r{i}")
        except ApprovalError:
            pass

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_show_reject_edit_and_deny_alias(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    lg = Ledger.init(home)
    try:
        ap = Approvals(lg.log.store)  # the real clock: the CLI decides now
        a, b, c = _held(ap), _held(ap, args={"to": "z@evil.example"}), _held(ap)
    finally:
        lg.close()
    run = CliRunner()
    shown = run.invoke(cli_app, ["approvals", "show", a.id, "--home", home])
    assert shown.exit_code == 0, shown.output
    assert "send_email" in shown.stdout and "x@evil.example" in shown.stdout
    assert "pending" in shown.stdout
    rej = run.invoke(cli_app, ["approvals", "reject", a.id, "--by", "bob", "--reason",
                               "exfiltration", "--home", home])
    assert rej.exit_code == 0, rej.output
    assert "rejected" in rej.output
    bad = run.invoke(cli_app, ["approvals", "edit", b.id, "--arguments", "{nope",
                               "--home", home])
    assert bad.exit_code != 0 and "not JSON" in bad.output
    ed = run.invoke(cli_app, ["approvals", "edit", b.id, "--arguments",
                              '{"to": "boss@example.co.jp"}', "--home", home])
    assert ed.exit_code == 0, ed.output
    den = run.invoke(cli_app, ["approvals", "deny", c.id, "--home", home])
    assert den.exit_code == 0, den.output
    again = run.invoke(cli_app, ["approvals", "approve", a.id, "--home", home])
    assert again.exit_code != 0 and "rejected by bob" in again.output
    listed = json.loads(run.invoke(cli_app, ["approvals", "list", "--all", "--json",
                                             "--home", home]).stdout)
    assert {r["id"]: r["state"] for r in listed} == {a.id: "rejected", b.id: "edited",
                                                      c.id: "rejected"}
    assert next(r for r in listed if r["id"] == b.id)["edited"] == {"to": "boss@example.co.jp"}
    only = json.loads(run.invoke(cli_app, ["approvals", "list", "--status", "edited",
                                           "--json", "--home", home]).stdout)
    assert [r["id"] for r in only] == [b.id]
    with Ledger.open(home=home) as lg2:
        ops = sorted(e["gen_ai.operation.name"] for e in _decisions(lg2))
        assert ops == ["approval.edited", "approval.rejected", "approval.rejected"]
        lg2.verify()  # raises if the log does not verify
    helped = run.invoke(cli_app, ["approvals", "edit", "--help"])
    assert "exactly these arguments" in helped.stdout


# -- HTTP ------------------------------------------------------------------------------------


def test_http_lists_decides_and_records_as_the_token_holder(led: Ledger) -> None:
    clock = Clock()
    ap = Approvals(led.log.store, clock=clock)
    a, b, c = _held(ap), _held(ap), _held(ap)
    app = create_approvals_app(led, {"s" * 20: "alice", "t" * 20: "bob"}, clock=clock)
    hdr = {"authorization": "Bearer " + "s" * 20}
    with TestClient(app) as http:
        assert http.get("/approvals").status_code == 401
        assert http.get("/approvals", headers={"authorization": "Bearer wrong"}
                        ).status_code == 401
        got = http.get("/approvals", headers=hdr).json()["approvals"]
        assert {x["id"] for x in got} == {a.id, b.id, c.id}
        one = http.get(f"/approvals/{a.id}", headers=hdr).json()
        assert one["tool"] == "send_email" and one["arguments"]["to"] == "x@evil.example"
        assert http.get("/approvals/apr_nope", headers=hdr).status_code == 404
        r = http.post(f"/approvals/{a.id}/reject", headers=hdr,
                      json={"reason": "exfil", "by": "mallory"})
        assert r.status_code == 200 and r.json()["decided_by"] == "alice"
        assert r.json()["state"] == "rejected"
        assert http.post(f"/approvals/{a.id}/approve", headers=hdr).status_code == 409
        assert http.post(f"/approvals/{b.id}/edit", headers=hdr,
                         json={"reason": "x"}).status_code == 400
        assert http.post(f"/approvals/{b.id}/approve", headers=hdr,
                         json={"arguments": {}}).status_code == 400
        assert http.post(f"/approvals/{b.id}/approve", headers=hdr,
                         content=b"{bad").status_code == 400
        assert http.post(f"/approvals/{b.id}/frobnicate", headers=hdr).status_code == 404
        e = http.post(f"/approvals/{b.id}/edit", headers={"authorization": "Bearer " + "t" * 20},
                      json={"arguments": {"to": "boss@example.co.jp"}})
        assert e.status_code == 200 and e.json()["edited"] == {"to": "boss@example.co.jp"}
        assert http.get("/approvals?status=bogus", headers=hdr).status_code == 400
        big = http.post(f"/approvals/{c.id}/edit", headers=hdr,
                        content=b'{"arguments": {"n": 99999999999999999999}}')
        assert big.status_code == 400 and "safe integer" in big.json()["error"]["message"]
        clock.at += timedelta(hours=2)
        assert http.post(f"/approvals/{c.id}/approve", headers=hdr).status_code == 409
        exp = http.get("/approvals?status=expired", headers=hdr).json()["approvals"]
        assert {x["id"] for x in exp} == {b.id, c.id}
    by = {e["attributes"]["kansa.approval.id"]: e["actor"] for e in _decisions(led)}
    assert by == {a.id: "alice", b.id: "bob"}


def test_tokens_parse_or_say_why() -> None:
    assert parse_tokens(["alice=" + "k" * 16]) == {"k" * 16: "alice"}
    for bad in (["alice"], ["=" + "k" * 16], ["alice=short"], []):
        with pytest.raises(KansaError, match="NAME=SECRET|at least one"):
            parse_tokens(bad)


def test_serve_refuses_bad_tokens_before_listening(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    Ledger.init(home).close()
    res = CliRunner().invoke(cli_app, ["approvals", "serve", "--token", "alice=short",
                                       "--home", home])
    assert res.exit_code != 0 and "NAME=SECRET" in res.output
    helped = CliRunner().invoke(cli_app, ["approvals", "serve", "--help"])
    assert "Authorization: Bearer" in " ".join(helped.output.split())


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["approve", "reject", "edit"]),
       st.one_of(st.binary(max_size=64), _json.map(lambda v: json.dumps(v).encode())))
def test_http_answers_any_body_with_a_decision_or_a_clear_error(
        action: str, body: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        lg = Ledger.init(Path(d) / "home")
        try:
            ap = Approvals(lg.log.store, clock=Clock())
            a = _held(ap)
            app = create_approvals_app(lg, {"s" * 20: "alice"}, clock=Clock())
            with TestClient(app) as http:
                r = http.post(f"/approvals/{a.id}/{action}", content=body,
                              headers={"authorization": "Bearer " + "s" * 20})
        finally:
            lg.close()
    assert r.status_code in (200, 400, 409, 413), r.text
    if r.status_code != 200:
        assert r.json()["error"]["message"]
