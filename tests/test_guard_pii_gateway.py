"""End to end through the gateway (a real socket, uvicorn) with the stand-in upstream that
echoes what it received: the upstream never sees a clear value, the caller gets them back
restored, a secret is refused before it leaves, and the ledger's file bytes (SQLite
database and WAL) never hold a clear value, in UTF-8 or JSON-escaped form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_harness import GatewayServer, store_bytes
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig, create_gateway_app
from kansa.capture.pipeline import Pipeline
from kansa.guard.data_stage import DataGuardStage
from kansa.guard.pseudonym import TOKEN, PseudonymStore
from standin import Standin

MAIL = "hanako.suzuki.7f2@example.co.jp"
PHONE = "090-3141-5926"
MYNUM = "123456789018"
NAME = "鈴木花子"
KEY = "sk-proj-" + "Zq9x" * 14
TEXT = f"{NAME}様の連絡先は{MAIL}、電話{PHONE}、マイナンバー{MYNUM}です。要約して。"
CLEAR = [MAIL, PHONE, MYNUM, NAME, KEY]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.init(tmp_path / "home")
    yield led
    led.close()


def _forms(v: str) -> list[bytes]:
    """The ways a value could sit in a file: UTF-8, JSON-escaped, UTF-16."""
    return [v.encode(), json.dumps(v).encode()[1:-1], v.encode("utf-16-le")]


def test_pseudonymised_out_restored_back_and_never_in_the_ledger_bytes(
        ledger: Ledger, standin: Standin, tmp_path: Path) -> None:
    stage = DataGuardStage.for_ledger(ledger)
    app = create_gateway_app(ledger, GatewayConfig.from_upstream(standin.url),
                             pipeline=Pipeline([stage]))
    gw = GatewayServer(app).start()
    hdr = {"x-kansa-subject": "hanako"}
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            ok = c.post("/v1/chat/completions", headers=hdr,
                        json={"model": "gpt-x", "messages": [{"role": "user", "content": TEXT}]})
            upstream_got: dict[str, Any] = standin.requests[-1]["body"]
            n = len(standin.requests)
            refused = c.post("/v1/chat/completions", headers=hdr, json={
                "model": "gpt-x", "messages": [{"role": "user", "content": f"use {KEY}"}]})
            assert len(standin.requests) == n  # the secret never left
            again = c.post("/v1/chat/completions", headers=hdr,
                           json={"model": "gpt-x",
                                 "messages": [{"role": "user", "content": f"再送 {MAIL}"}]})
            again_got: dict[str, Any] = standin.requests[-1]["body"]
    finally:
        gw.stop()

    # the upstream saw tokens only
    sent = json.dumps(upstream_got, ensure_ascii=False)
    for v in CLEAR:
        assert v not in sent
    tokens = TOKEN.findall(sent)
    assert {k for k, _ in tokens} == {"PERSON", "EMAIL", "PHONE_JP", "MY_NUMBER"}
    # the caller got the echo back with every value restored, exactly
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"] == "echo: " + TEXT
    # the same value gets the same token in the subject's next call
    mail_token = next(f"<EMAIL_{h}>" for k, h in tokens if k == "EMAIL")
    assert mail_token in json.dumps(again_got, ensure_ascii=False)
    assert again.json()["choices"][0]["message"]["content"] == f"echo: 再送 {MAIL}"

    # the secret: refused before it left, recorded as such
    assert refused.status_code == 403
    r = ledger.get(refused.headers["x-kansa-record"]).entry
    assert r["outcome"] == "blocked"
    assert r["attributes"]["kansa.guard.data.out.kinds"] == ["openai_key"]

    # the record: kinds, counts and keyed hashes; the content holds what left (tokens)
    got = ledger.get(ok.headers["x-kansa-record"])
    a = got.entry["attributes"]
    assert a["kansa.guard.data.out.kinds"] == ["email", "my_number", "person", "phone_jp"]
    assert a["kansa.guard.data.pseudonymised"] == 4
    assert a["kansa.guard.data.restored"] == 4
    assert a["kansa.pipeline.rewritten"] == ["guard.data:request", "guard.data:response"]
    content = json.dumps(got.content, ensure_ascii=False)
    assert mail_token in content
    for v in CLEAR:
        assert v not in content
        assert v not in json.dumps(got.entry, ensure_ascii=False)

    # the bytes of the store's files: no clear value in any form
    db = tmp_path / "home" / "ledger.db"
    raw = store_bytes(f"sqlite:///{db}")
    assert b"kansa.guard.data.out.kinds" in raw  # the right file: the entries are in it
    for v in CLEAR:
        for form in _forms(v):
            assert form not in raw, (v, form)

    # erasure reaches the mapping: the subject's tokens no longer resolve
    store = PseudonymStore(stage.keyring)  # type: ignore[arg-type]
    assert store.load("hanako").tokens  # before: the mapping is there (sealed)
    ledger.erase("hanako")
    assert store.load("hanako").tokens == {}
