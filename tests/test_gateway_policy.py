"""Inline enforcement in the real gateway (uvicorn, real sockets) against the stand-in
upstream: modes, block, the approval flow, header attributes, and hot reload (admin
endpoint, file watch, SIGHUP in a real `kansa gateway` process), including reload under
load: no request lost, and every record judged under one whole snapshot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway_harness import GatewayServer, free_port, wait_for
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig, create_gateway_app
from kansa.cli import app as cli_app
from kansa.policy.inline import (
    ATTR_APPROVAL,
    ATTR_DECISION,
    ATTR_FINDINGS,
    ATTR_SNAPSHOT,
    PolicyHandle,
    PolicySnapshot,
    load_policy,
)
from standin import Standin
from test_inline_policy import write_policy

MSG = [{"role": "user", "content": "hello"}]
TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
POLICY_ATTRS = (ATTR_DECISION, ATTR_FINDINGS, ATTR_SNAPSHOT, ATTR_APPROVAL,
                "kansa.policy.error")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KANSA_TEST_ADMIN", TOKEN)
    return "KANSA_TEST_ADMIN"


def _serve(ledger: Ledger, standin: Standin, policy: Path | PolicyHandle,
           **kw: Any) -> GatewayServer:
    cfg = GatewayConfig.from_upstream(standin.url, **kw)
    handle = policy if isinstance(policy, PolicyHandle) else PolicyHandle.load(policy)
    return GatewayServer(create_gateway_app(ledger, cfg, policy=handle)).start()


def _chat(c: httpx.Client, model: str = "gpt-x", headers: dict[str, str] | None = None,
          **body: Any) -> httpx.Response:
    return c.post("/v1/chat/completions", json={"model": model, "messages": MSG, **body},
                  headers={"x-kansa-actor": "svc", **(headers or {})})


def _attrs(ledger: Ledger, r: httpx.Response) -> dict[str, Any]:
    return dict(ledger.get(r.headers["x-kansa-record"]).entry.get("attributes", {}))


def _sent(standin: Standin, model: str) -> int:
    return sum(1 for q in standin.requests if (q.get("body") or {}).get("model") == model)


# -- modes --------------------------------------------------------------------------------


def test_observe_records_the_decision_without_changing_the_call(
        tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    p = write_policy(tmp_path, "mode: observe\n")
    snap = load_policy(p)
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            r = _chat(c)
            told = _chat(c, headers={"x-kansa-ai-disclosure": "true"})
    finally:
        gw.stop()
    assert r.status_code == 200 and told.status_code == 200
    a = _attrs(ledger, r)
    assert a[ATTR_DECISION] == "allow" and a[ATTR_SNAPSHOT] == snap.hash
    assert a[ATTR_FINDINGS] == ["test.inline/rules@1#disclosure=fail"]
    b = _attrs(ledger, told)
    assert b["kansa.ai_disclosure"] is True and ATTR_FINDINGS not in b


def test_flag_marks_the_record(tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    p = write_policy(tmp_path, "mode: observe\nmodes:\n  test.inline/rules#disclosure: flag\n")
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            r = _chat(c)
            s = _chat(c, stream=True)
    finally:
        gw.stop()
    assert r.status_code == 200 and _attrs(ledger, r)[ATTR_DECISION] == "flag"
    assert s.status_code == 200 and _attrs(ledger, s)[ATTR_DECISION] == "flag"


def test_block_refuses_before_the_upstream_and_records(
        tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    p = write_policy(tmp_path, "modes:\n  test.inline/rules#model-allowed: block\n")
    before = _sent(standin, "forbidden-model")
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            r = _chat(c, "forbidden-model")
            fine = _chat(c)
            m = c.post("/v1/messages", json={"model": "forbidden-model", "max_tokens": 5,
                                             "messages": MSG})
    finally:
        gw.stop()
    assert r.status_code == 403
    err = r.json()
    assert err["error"]["code"] == "policy_blocked"
    assert "test.inline/rules@1#model-allowed (Art. 2(1))" in err["error"]["message"]
    assert err["kansa"]["obligations"] == [{"obligation": "test.inline/rules@1#model-allowed",
                                            "citation": "Art. 2(1)", "mode": "block"}]
    assert _sent(standin, "forbidden-model") == before  # never reached the upstream
    e = ledger.get(r.headers["x-kansa-record"]).entry
    assert e["outcome"] == "blocked" and e["status"] == 403
    assert e["attributes"][ATTR_DECISION] == "block"
    assert "test.inline/rules@1#model-allowed=fail" in e["attributes"][ATTR_FINDINGS]
    assert fine.status_code == 200
    assert m.status_code == 403 and m.json()["type"] == "error"  # Anthropic's error shape
    assert m.json()["error"]["type"] == "permission_error"
    assert m.json()["kansa"]["decision"] == "block"


def test_approval_flow_end_to_end_is_single_use(
        tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    p = write_policy(tmp_path, "modes:\n  test.inline/rules#sensitive: require_approval\n")
    hdr = {"x-kansa-attr-app.sensitive": "true"}
    home = str(tmp_path / "home")
    runner = CliRunner()
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            held = _chat(c, "held-model", headers=hdr)
            assert held.status_code == 428, held.text
            aid = held.headers["x-kansa-approval-id"]
            assert held.json()["kansa"]["approval_id"] == aid
            assert held.json()["error"]["code"] == "approval_required"
            pending = _chat(c, "held-model", headers={**hdr, "x-kansa-approval": aid})
            assert pending.status_code == 428
            assert pending.json()["error"]["code"] == "approval_pending"
            listed = runner.invoke(cli_app, ["approvals", "list", "--json", "--home", home])
            assert listed.exit_code == 0, listed.output
            assert [a["id"] for a in json.loads(listed.stdout)] == [aid]
            ok = runner.invoke(cli_app, ["approvals", "approve", aid, "--by", "alice",
                                         "--home", home])
            assert ok.exit_code == 0, ok.output
            other = _chat(c, "held-model", headers={**hdr, "x-kansa-approval": aid},
                          temperature=0.1)
            passed = _chat(c, "held-model", headers={**hdr, "x-kansa-approval": aid})
            again = _chat(c, "held-model", headers={**hdr, "x-kansa-approval": aid})
            counts = c.get("/healthz").json()["policy"]
    finally:
        gw.stop()
    assert other.status_code == 403 and "different request" in other.json()["error"]["message"]
    assert passed.status_code == 200, passed.text
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "approval_invalid"
    assert "already used" in again.json()["error"]["message"]
    assert _sent(standin, "held-model") == 1  # only the approved retry went upstream
    h = _attrs(ledger, held)
    assert h[ATTR_DECISION] == "approval_required" and h[ATTR_APPROVAL] == aid
    assert ledger.get(held.headers["x-kansa-record"]).entry["outcome"] == "blocked"
    a = _attrs(ledger, passed)
    assert a[ATTR_DECISION] == "approved" and a[ATTR_APPROVAL] == aid
    assert _attrs(ledger, again)[ATTR_DECISION] == "approval_required"
    listed = runner.invoke(cli_app, ["approvals", "list", "--all", "--json", "--home", home])
    (row,) = json.loads(listed.stdout)
    assert row["status"] == "used" and row["used_by"] == passed.headers["x-kansa-record"]
    assert row["decided_by"] == "alice"
    # held, pending, other request, used again: four held; one approved
    assert counts == {"block": 0, "approval_required": 4, "flag": 0, "approved": 1}


def test_denied_approval_refuses_the_retry(tmp_path: Path, ledger: Ledger,
                                           standin: Standin) -> None:
    p = write_policy(tmp_path, "modes:\n  test.inline/rules#sensitive: require_approval\n")
    hdr = {"x-kansa-attr-app.sensitive": "true"}
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            aid = _chat(c, headers=hdr).headers["x-kansa-approval-id"]
            res = CliRunner().invoke(cli_app, ["approvals", "deny", aid,
                                               "--home", str(tmp_path / "home")])
            assert res.exit_code == 0, res.output
            r = _chat(c, headers={**hdr, "x-kansa-approval": aid})
    finally:
        gw.stop()
    assert r.status_code == 403 and "rejected" in r.json()["error"]["message"]


def test_header_attributes_are_typed_and_cannot_forge_a_decision(
        tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    p = write_policy(tmp_path, "mode: flag\n")
    gw = _serve(ledger, standin, p)
    try:
        with httpx.Client(base_url=gw.url) as c:
            r = _chat(c, headers={"x-kansa-attr-kansa.policy.decision": "allow",
                                  "x-kansa-attr-kansa.output.label.machine_readable":
                                      '["c2pa", "watermark"]',
                                  "x-kansa-attr-app.tier": "gold",
                                  "x-kansa-ai-disclosure": "false"})
    finally:
        gw.stop()
    a = _attrs(ledger, r)
    assert a[ATTR_DECISION] == "flag"  # the policy's, not the caller's
    assert a["kansa.output.label.machine_readable"] == ["c2pa", "watermark"]
    assert a["app.tier"] == "gold" and a["kansa.ai_disclosure"] is False


# -- hot reload ---------------------------------------------------------------------------


def _policy_pair(d: Path) -> tuple[Path, Path]:
    """Two policies that decide the same requests differently: under A, model
    forbidden-model is blocked and every call without disclosure is flagged; under B
    (rules version 2, forbidding gpt-x, observe) nothing is blocked and only calls without
    usage are flagged."""
    a = write_policy(d, "mode: flag\nmodes:\n  test.inline/rules#model-allowed: block\n",
                     name="a.yaml")
    b = write_policy(d, "mode: observe\nmodes:\n  test.inline/rules#usage: flag\n",
                     version="2", forbidden="gpt-x", disclosure=False, name="b.yaml")
    return a, b


def _swap(live: Path, src: Path) -> None:
    tmp = live.with_suffix(".tmp")
    tmp.write_text(src.read_text("utf-8"), "utf-8")
    os.replace(tmp, live)  # readers of the file never see it half written


def _without_policy(entry: dict[str, Any]) -> dict[str, Any]:
    e = dict(entry)
    attrs = {k: v for k, v in e.get("attributes", {}).items() if k not in POLICY_ATTRS}
    if attrs:
        e["attributes"] = attrs
    else:
        e.pop("attributes", None)
    return e


def test_hot_reload_under_load_loses_no_request_and_never_mixes_snapshots(
        tmp_path: Path, store_url: str, standin: Standin, admin_env: str) -> None:
    a, b = _policy_pair(tmp_path)
    snaps: dict[str, PolicySnapshot] = {s.hash: s for s in (load_policy(a), load_policy(b))}
    live = tmp_path / "live.yaml"
    _swap(live, a)
    ledger = Ledger.init(tmp_path / "home", url=store_url)
    gw = _serve(ledger, standin, live, admin_token_env=admin_env)
    results: list[tuple[str, httpx.Response]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    clients, per_client = 8, 40

    def client(i: int) -> None:
        try:
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                for n in range(per_client):
                    model = "forbidden-model" if (i + n) % 3 == 0 else "gpt-x"
                    r = _chat(c, model, stream=(n % 4 == 1))
                    with lock:
                        results.append((model, r))
        except BaseException as e:  # a lost request must fail the test, not vanish
            failures.append(e)

    reloads: list[dict[str, Any]] = []
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=gw.url) as admin:
            n = 0
            while any(t.is_alive() for t in threads):
                _swap(live, b if n % 2 == 0 else a)
                if n % 5 == 4:  # now and then the in-process way, as SIGHUP does
                    reloads.append(gw.app.policy.reload().as_dict())  # type: ignore[union-attr]
                else:
                    reloads.append(admin.post("/-/kansa/policy/reload", headers=ADMIN).json())
                n += 1
                time.sleep(0.005)
        for t in threads:
            t.join()
        size = ledger.log.store.size()
        entries = [json.loads(row.data) for row in ledger.log.store.iter_entries()]
    finally:
        gw.stop()
        ledger.close()
    assert not failures, failures
    assert len(results) == clients * per_client
    assert all(r["ok"] for r in reloads) and len(reloads) >= 10
    # every request answered, and recorded exactly once
    assert all(r.status_code in (200, 403) for _, r in results)
    assert size == len(results) == len(entries)
    assert {e["id"] for e in entries} == {r.headers["x-kansa-record"] for _, r in results}
    by_id = {e["id"]: e for e in entries}
    used: set[str] = set()
    for model, r in results:
        e = by_id[r.headers["x-kansa-record"]]
        attrs = e["attributes"]
        snap = snaps[attrs[ATTR_SNAPSHOT]]  # one of the two whole snapshots, by its hash
        used.add(snap.hash)
        at = datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        plain = _without_policy(e)
        if r.status_code == 403:  # refused on the request side: the same snapshot says so
            assert model == "forbidden-model" and e["outcome"] == "blocked"
            req = {k: v for k, v in plain.items() if k not in ("status", "error.type")}
            d = snap.check_request({**req, "outcome": "ok"}, at)
            assert d is not None and d.decision == attrs[ATTR_DECISION] == "block"
        else:
            assert snap.check_request({**plain, "outcome": "ok"}, at) is None
            d = snap.judge_record(plain, at)
            assert attrs[ATTR_DECISION] == d.decision
        assert attrs.get(ATTR_FINDINGS, []) == [f.label for f in d.failed]
    assert used == set(snaps)  # both snapshots served requests


def test_admin_reload_keeps_the_old_snapshot_when_the_file_is_broken(
        tmp_path: Path, ledger: Ledger, standin: Standin, admin_env: str) -> None:
    a, b = _policy_pair(tmp_path)
    live = tmp_path / "live.yaml"
    _swap(live, a)
    ha, hb = load_policy(a).hash, load_policy(b).hash
    gw = _serve(ledger, standin, live, admin_token_env=admin_env)
    try:
        with httpx.Client(base_url=gw.url) as c:
            assert c.post("/-/kansa/policy/reload").status_code == 401
            assert c.post("/-/kansa/policy/reload",
                          headers={"authorization": "Bearer wrong"}).status_code == 401
            _swap(live, b)
            ok = c.post("/-/kansa/policy/reload", headers=ADMIN)
            assert ok.status_code == 200 and ok.json() == {"ok": True, "snapshot": hb,
                                                           "changed": True, "error": None}
            live.write_text("packs: [rules-2.yaml]\nmodes:\n  nope#x: block\n", "utf-8")
            bad = c.post("/-/kansa/policy/reload", headers=ADMIN)
            status = c.get("/-/kansa/policy", headers=ADMIN).json()
            r = _chat(c, "forbidden-model")
            health = c.get("/healthz").json()
    finally:
        gw.stop()
    assert bad.status_code == 422
    assert bad.json()["snapshot"] == hb and not bad.json()["changed"]
    assert bad.json()["error"].startswith(f"{live}:3:")
    assert status["snapshot"] == hb and status["last_error"] == bad.json()["error"]
    assert status["reloads"] == 1
    assert health["policy_snapshot"] == hb and ha != hb
    assert r.status_code == 200  # B does not block it
    assert _attrs(ledger, r)[ATTR_SNAPSHOT] == hb


def test_admin_endpoints_are_off_without_a_token(tmp_path: Path, ledger: Ledger,
                                                 standin: Standin) -> None:
    a, _ = _policy_pair(tmp_path)
    gw = _serve(ledger, standin, a)
    try:
        with httpx.Client(base_url=gw.url) as c:
            r = c.post("/-/kansa/policy/reload", headers=ADMIN)
    finally:
        gw.stop()
    assert r.status_code == 403 and "disabled" in r.json()["error"]


def test_policy_watch_reloads_when_the_file_changes(tmp_path: Path, ledger: Ledger,
                                                    standin: Standin) -> None:
    a, b = _policy_pair(tmp_path)
    live = tmp_path / "live.yaml"
    _swap(live, a)
    hb = load_policy(b).hash
    gw = _serve(ledger, standin, live, policy_watch_seconds=0.05)
    try:
        with httpx.Client(base_url=gw.url) as c:
            _swap(live, b)
            assert wait_for(lambda: c.get("/healthz").json()["policy_snapshot"] == hb)
            r = _chat(c)
    finally:
        gw.stop()
    assert _attrs(ledger, r)[ATTR_SNAPSHOT] == hb


def test_sighup_reloads_a_running_gateway_process(tmp_path: Path, standin: Standin) -> None:
    a, b = _policy_pair(tmp_path)
    live = tmp_path / "live.yaml"
    _swap(live, a)
    ha, hb = load_policy(a).hash, load_policy(b).hash
    port = free_port()
    env = dict(os.environ, KANSA_TEST_ADMIN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kansa", "gateway", "--upstream", standin.url, "--port",
         str(port), "--home", str(tmp_path / "home"), "--policy", str(live),
         "--admin-token-env", "KANSA_TEST_ADMIN"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def snapshot() -> str | None:
        try:
            return str(httpx.get(url + "/healthz", timeout=2).json()["policy_snapshot"])
        except httpx.HTTPError:
            return None

    try:
        assert wait_for(lambda: snapshot() == ha, timeout=30), "gateway did not start"
        _swap(live, b)
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: snapshot() == hb), "SIGHUP did not reload"
        live.write_text("packs: [rules-2.yaml]\nmode: sometimes\n", "utf-8")
        proc.send_signal(signal.SIGHUP)
        status = wait_for(lambda: httpx.get(url + "/-/kansa/policy", headers=ADMIN)
                          .json() if httpx.get(url + "/-/kansa/policy", headers=ADMIN)
                          .json()["last_error"] else None)
        assert proc.poll() is None  # still serving
        r = httpx.post(url + "/v1/chat/completions",
                       json={"model": "forbidden-model", "messages": MSG})
    finally:
        proc.terminate()
        proc.wait(15)
    assert status and status["snapshot"] == hb and "mode 'sometimes'" in status["last_error"]
    assert r.status_code == 200


# -- the SDK applies the same decisions -----------------------------------------------------


def _wrapped(standin: Standin, ledger: Ledger, policy: Any, cls: Any = None) -> Any:
    import openai

    import kansa

    client = (cls or openai.OpenAI)(base_url=standin.url, api_key="sk-test", max_retries=0)
    return kansa.wrap(client, ledger=ledger, system="bot", app="web", policy=policy)


def test_sdk_block_raises_and_records_like_the_gateway(
        tmp_path: Path, ledger: Ledger, standin: Standin) -> None:
    import kansa

    p = write_policy(tmp_path, "mode: flag\nmodes:\n  test.inline/rules#model-allowed: block\n")
    snap = load_policy(p)
    client = _wrapped(standin, ledger, p)
    before = _sent(standin, "forbidden-model")
    with pytest.raises(kansa.PolicyBlocked) as e:
        client.chat.completions.create(model="forbidden-model", messages=MSG)
    assert e.value.decision == "block" and e.value.snapshot == snap.hash
    assert e.value.failed == [("test.inline/rules@1#model-allowed", "Art. 2(1)")]
    assert "test.inline/rules@1#model-allowed (Art. 2(1))" in str(e.value)
    assert isinstance(e.value, kansa.KansaError)
    assert _sent(standin, "forbidden-model") == before
    blocked = ledger.get(str(e.value.record_id)).entry
    assert blocked["outcome"] == "blocked" and blocked["error.type"] == "policy_blocked"
    assert blocked["attributes"][ATTR_DECISION] == "block"
    assert blocked["attributes"][ATTR_SNAPSHOT] == snap.hash
    client.chat.completions.create(model="gpt-x", messages=MSG)
    from kansa.capture.sdk import last_record_id

    ok = ledger.get(str(last_record_id())).entry
    assert ok["outcome"] == "ok" and ok["attributes"][ATTR_DECISION] == "flag"
    assert ok["attributes"][ATTR_FINDINGS] == ["test.inline/rules@1#disclosure=fail"]
    with kansa.context(attributes={"kansa.ai_disclosure": True}):
        client.chat.completions.create(model="gpt-x", messages=MSG)
    told = ledger.get(str(last_record_id())).entry
    assert told["attributes"][ATTR_DECISION] == "allow"


def test_sdk_approval_flow_and_async_client(tmp_path: Path, ledger: Ledger,
                                            standin: Standin) -> None:
    import asyncio

    import openai

    import kansa
    from kansa.policy.approvals import Approvals

    p = write_policy(tmp_path, "modes:\n  test.inline/rules#sensitive: require_approval\n")
    client = _wrapped(standin, ledger, PolicyHandle.load(p))
    with kansa.context(attributes={"app.sensitive": True}):
        with pytest.raises(kansa.PolicyBlocked) as e:
            client.chat.completions.create(model="sdk-held", messages=MSG)
        aid = e.value.approval_id
        assert e.value.decision == "approval_required" and aid is not None
        Approvals(ledger.log.store).decide(aid, approve=True, by="bob")
        r = client.chat.completions.create(model="sdk-held", messages=MSG,
                                           extra_headers={"x-kansa-approval": aid})
        assert r.choices
        from kansa.capture.sdk import last_record_id

        passed = ledger.get(str(last_record_id())).entry
        with pytest.raises(kansa.PolicyBlocked, match="already used"):
            client.chat.completions.create(model="sdk-held", messages=MSG,
                                           extra_headers={"x-kansa-approval": aid})
        aclient = _wrapped(standin, ledger, p, cls=openai.AsyncOpenAI)

        async def go() -> kansa.PolicyBlocked:
            try:
                await aclient.chat.completions.create(model="sdk-held", messages=MSG)
            except kansa.PolicyBlocked as err:
                return err
            raise AssertionError("not held")

        held = asyncio.run(go())
    assert passed["attributes"][ATTR_DECISION] == "approved"
    assert passed["attributes"][ATTR_APPROVAL] == aid
    assert _sent(standin, "sdk-held") == 1
    assert held.approval_id is not None and held.approval_id != aid
    assert ledger.get(str(held.record_id)).entry["outcome"] == "blocked"


def test_policy_watch_reloads_every_worker_process(tmp_path: Path, standin: Standin) -> None:
    a, b = _policy_pair(tmp_path)
    live = tmp_path / "live.yaml"
    _swap(live, a)
    ha, hb = load_policy(a).hash, load_policy(b).hash
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kansa", "gateway", "--upstream", standin.url, "--port",
         str(port), "--home", str(tmp_path / "home"), "--policy", str(live),
         "--policy-watch", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=(err := (tmp_path / "stderr").open("wb")))
    url = f"http://127.0.0.1:{port}"

    def snapshots(n: int) -> set[str]:
        seen = set()
        try:
            for _ in range(n):  # fresh connections: the kernel spreads them over workers
                r = httpx.post(url + "/v1/chat/completions", timeout=5,
                               json={"model": "gpt-x", "messages": MSG},
                               headers={"connection": "close"})
                seen.add(str(ledger_attr(tmp_path, r.headers["x-kansa-record"])))
        except httpx.HTTPError:
            return set()
        return seen

    try:
        assert wait_for(lambda: snapshots(4) == {ha}, timeout=40), "gateway did not start"
        _swap(live, b)
        assert wait_for(lambda: snapshots(20) == {hb}, timeout=20), "a worker kept A"
    finally:
        proc.terminate()
        proc.wait(20)
        err.close()
    # several workers on SQLite work, but the CLI says what they cost
    assert "--workers 2 on SQLite" in (tmp_path / "stderr").read_text()


def ledger_attr(tmp_path: Path, record_id: str) -> Any:
    led = Ledger.open(None, home=tmp_path / "home")
    try:
        return led.get(record_id).entry["attributes"][ATTR_SNAPSHOT]
    finally:
        led.close()
