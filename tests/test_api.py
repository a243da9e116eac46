"""kansa.Ledger end to end on both stores: records, content vault, erasure, proofs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import kansa
from kansa.errors import KansaError, RecordError
from kansa.ledger import merkle
from kansa.ledger.note import Signer
from kansa.ledger.receipt import verify_receipt
from kansa.records.model import UsageRecord


@pytest.fixture
def ledger(store_url: str) -> kansa.Ledger:
    lg = kansa.Ledger.open(store_url, signer=Signer.generate("test.kansa/api"),
                           master_key=b"k" * 32)
    yield lg
    lg.close()


def _rec(i: int, subject: str = "user-1", **kw: object) -> dict[str, object]:
    return {"ts": f"2026-11-22T09:{i // 60 % 60:02d}:{i % 60:02d}Z", "system": "bot",
            "subject": subject, "gen_ai.request.model": "gpt-4o-mini" if i % 2 else "claude",
            "input": f"質問 {i}", "output": f"answer {i}", **kw}


def test_append_get_roundtrip_and_content_is_verified(ledger: kansa.Ledger) -> None:
    a = ledger.append(_rec(1))
    got = ledger.get(a.id)
    assert got.index == a.index == 0
    assert got.content == {"input": "質問 1", "output": "answer 1"}
    assert got.content_state == "present"
    assert "質問" not in got.entry_bytes.decode()
    assert got.entry["subject"] != "user-1" and len(got.entry["subject"]) == 32
    assert ledger.get(0).id == a.id


def test_tampered_ciphertext_is_refused(ledger: kansa.Ledger) -> None:
    a = ledger.append(_rec(1))
    store = ledger.log.store
    grp, blob = store.attachment(a.index)  # type: ignore[misc]
    forged = blob[:-1] + bytes([blob[-1] ^ 1])
    store._execute("UPDATE attachments SET data = ? WHERE idx = ?", (forged, a.index))
    with pytest.raises(KansaError, match="fails authentication"):
        ledger.get(a.id)


def test_find_filters(ledger: kansa.Ledger) -> None:
    ledger.append_many([_rec(i, subject=f"user-{i % 3}") for i in range(30)])
    assert len(list(ledger.find())) == 30
    assert len(list(ledger.find(subject="user-1"))) == 10
    assert len(list(ledger.find(model="claude"))) == 15
    assert len(list(ledger.find(system="nope"))) == 0
    assert len(list(ledger.find(since="2026-11-22T09:00:10Z", until="2026-11-22T09:00:20Z"))) == 10
    assert len(list(ledger.find(limit=4))) == 4
    assert list(ledger.find(subject="never-seen")) == []


def test_erasure_destroys_content_keeps_every_proof(ledger: kansa.Ledger) -> None:
    appended = ledger.append_many([_rec(i, subject=f"user-{i % 2}") for i in range(20)])
    receipts = {a.index: ledger.prove(a.id) for a in appended[:4]}
    cp_before = ledger.checkpoint()
    erasure = ledger.erase("user-1", reason="test")
    assert erasure.contents_destroyed == 10
    for a in appended:
        view = ledger.get(a.id)
        assert view.content_state == ("erased" if a.index % 2 else "present")
        assert (view.content is None) == bool(a.index % 2)
    # the erased subject can no longer be found or linked
    assert list(ledger.find(subject="user-1")) == []
    assert "user-1" not in json.dumps([r.entry for r in ledger.find()])
    # the erasure is itself a record
    er = ledger.get(erasure.record.id)
    assert er.entry["kind"] == "kansa.erasure"
    assert er.entry["attributes"]["kansa.erasure.subject"] == erasure.pseudonym
    # every proof issued before still verifies, and the tree only grew
    for index, receipt in receipts.items():
        r = verify_receipt(receipt, ledger.verifier, None)
        assert r.index == index
    cp_after = ledger.checkpoint()
    proof = ledger.log.consistency_proof(cp_before.checkpoint.size, cp_after.checkpoint.size)
    merkle.verify_consistency(cp_before.checkpoint.size, cp_after.checkpoint.size,
                              cp_before.checkpoint.root, cp_after.checkpoint.root, proof)
    ledger.verify()
    with pytest.raises(KansaError, match="already erased"):
        ledger.erase("user-1")
    # a new record for the same person gets a fresh, unlinkable pseudonym
    b = ledger.append(_rec(99, subject="user-1"))
    assert ledger.get(b.id).entry["subject"] != erasure.pseudonym
    assert ledger.get(b.id).content_state == "present"


def test_records_without_subject_or_content(ledger: kansa.Ledger) -> None:
    a = ledger.append({"system": "batch", "gen_ai.operation.name": "embeddings"})
    v = ledger.get(a.id)
    assert v.content_state == "none" and v.content is None and "subject" not in v.entry
    b = ledger.append(UsageRecord(system="agent", kind="tool.call", tool_name="search",
                                  content={"gen_ai.tool.call.arguments": {"q": "x"}}))
    assert ledger.get(b.index).content == {"gen_ai.tool.call.arguments": {"q": "x"}}


def test_async_append(ledger: kansa.Ledger) -> None:
    async def main() -> list[int]:
        res = await asyncio.gather(*(ledger.aappend(_rec(i)) for i in range(50)))
        return sorted(r.index for r in res)

    assert asyncio.run(main()) == list(range(50))


def test_unknown_references(ledger: kansa.Ledger) -> None:
    ledger.append(_rec(1))
    with pytest.raises(KansaError, match="no record with id"):
        ledger.get("0190-nope")
    with pytest.raises(KansaError, match="holds 1 entries"):
        ledger.get(5)


def test_home_init_and_reopen(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with kansa.Ledger.init(home, origin="example.com/ai-log") as lg:
        a = lg.append(_rec(1))
        vkey = lg.verifier.vkey
    assert (home / "log.key").stat().st_mode & 0o777 == 0o600
    assert (home / "master.key").stat().st_mode & 0o777 == 0o600
    with kansa.Ledger.open(home=home) as lg:
        assert lg.verifier.vkey == vkey
        assert lg.get(a.id).content == {"input": "質問 1", "output": "answer 1"}
    with pytest.raises(KansaError, match="already holds"):
        kansa.Ledger.init(home)
    with pytest.raises(KansaError, match="kansa init"):
        kansa.Ledger.open(home=tmp_path / "missing")


def test_wrong_master_key_cannot_read_content(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    signer = Signer.generate("test.kansa/api")
    with kansa.Ledger.open(url, signer=signer, master_key=b"a" * 32) as lg:
        a = lg.append(_rec(1))
    with kansa.Ledger.open(url, signer=signer, master_key=b"b" * 32) as lg, pytest.raises(
        KansaError, match="master key"
    ):
        lg.get(a.id)


def test_store_of_another_log_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with kansa.Ledger.open(url, signer=Signer.generate("a.example/log"), master_key=b"a" * 32):
        pass
    with pytest.raises(KansaError, match="belongs to log"):
        kansa.Ledger.open(url, signer=Signer.generate("b.example/log"), master_key=b"a" * 32)


@pytest.mark.parametrize(("record", "field"), [
    ({"system": "bot", "input": {"n": 2**53}}, "input"),
    ({"system": "bot", "output": "\ud800"}, "output"),
    ({"system": "bot", "subject": "user-\udfff", "input": "hi"}, "subject"),
])
def test_an_unencodable_record_is_refused_naming_its_field(
    ledger: kansa.Ledger, record: dict[str, object], field: str
) -> None:
    size = ledger.log.size()
    with pytest.raises(RecordError, match=f"'{field}'"):
        ledger.append(record)
    assert ledger.log.size() == size
