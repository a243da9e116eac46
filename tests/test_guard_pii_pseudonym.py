"""Reversible, subject-keyed pseudonyms (kansa.guard.pseudonym): the round trip as a
property, tokens keyed per subject, tool-call arguments, the sealed mapping store, and
erasure checked on the bytes of the SQLite files (WAL included) by an attacker who holds
the master key (bench/redteam_erasure.py's)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

import kansa
from kansa.errors import GuardError
from kansa.guard.pii import my_number_check_digit
from kansa.guard.pseudonym import (
    TOKEN,
    PseudonymMap,
    PseudonymStore,
    StaticKeyring,
    VaultKeyring,
    _derive,
    keyed_hash,
    pseudonymise,
    redact,
    restore,
)
from kansa.ledger.note import Signer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import redteam_erasure as rt  # noqa: E402 (bench/ is on sys.path)

MASTER = b"m" * 32
KR = StaticKeyring(b"k" * 32)

MN = "123456789018"
VALUES = ["taro.yamada@example.co.jp", "090-1234-5678", f"マイナンバー {MN}", "〒100-0001",
          "山田太郎様", "card 4111 1111 1111 1111", "sk-proj-" + "aB3dE6" * 9,
          "IBAN GB82 WEST 1234 5698 7654 32", "東京都千代田区丸の内1-2-3"]
CLEAR = ["taro.yamada@example.co.jp", "090-1234-5678", MN, "100-0001", "山田太郎",
         "4111 1111 1111 1111", "sk-proj-" + "aB3dE6" * 9, "GB82 WEST 1234 5698 7654 32",
         "東京都千代田区丸の内1-2-3"]


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": text}]}


def strings(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


# -- the round trip ---------------------------------------------------------------------------

noise = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>"), max_size=80)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(noise, st.sampled_from(VALUES)), min_size=1, max_size=5),
       st.sampled_from(["alice", "bob", None]))
def test_pseudonymise_then_restore_is_the_identity(parts: list[tuple[str, str]],
                                                   subject: str | None) -> None:
    text = "".join(f"{n}\n{v}\n" for n, v in parts)
    body = chat(text)
    out, mapping, found = pseudonymise(body, KR, subject)
    assert body == chat(text)  # the input is not changed in place
    back, n = restore(out, mapping)
    assert back == body
    assert n == len(TOKEN.findall(strings(out)))
    for _, v in parts:  # the clear value left no trace in what goes out
        clear = CLEAR[VALUES.index(v)]
        if clear in text and any(text[f.start:f.end] == clear for f in found):
            assert clear not in strings(out)


def test_same_value_same_token_per_subject_and_different_across_subjects() -> None:
    a1, _, _ = pseudonymise(chat("mail taro@example.com"), KR, "alice")
    a2, _, _ = pseudonymise(chat("again: taro@example.com!"), KR, "alice")
    b, _, _ = pseudonymise(chat("mail taro@example.com"), KR, "bob")
    ta = TOKEN.findall(strings(a1))
    assert ta == TOKEN.findall(strings(a2))
    assert ta != TOKEN.findall(strings(b))
    assert a1["messages"][1]["content"].startswith("mail <EMAIL_")


def test_a_token_collision_within_a_mapping_gets_a_longer_token() -> None:
    m = PseudonymMap("g", b"s" * 32)
    t1 = m.token("email", "a@example.com")
    m.tokens["<EMAIL_" + TOKEN.match(t1).group(2)[:8] + ">"] = "other"  # type: ignore[union-attr]
    m._by_value.clear()
    t2 = m.token("email", "a@example.com")
    assert t2 != t1 and len(t2) > len(t1)


def test_structure_is_not_rewritten_and_arguments_are_walked_as_json() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"
    body = {"model": "taro@example.com", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "send_mail", "arguments": json.dumps(
                {"to": "taro@example.com", "key": pem}, ensure_ascii=False)}}]}]}
    out, m, _ = pseudonymise(body, KR, "alice")
    assert out["model"] == "taro@example.com"  # a structural key is never scanned
    args = json.loads(out["messages"][0]["tool_calls"][0]["function"]["arguments"])
    assert TOKEN.fullmatch(args["to"]) and TOKEN.fullmatch(args["key"])
    # the answer names the tokens inside its own tool-call arguments: restored JSON-escaped
    answer = {"choices": [{"message": {"role": "assistant", "tool_calls": [{
        "id": "c", "type": "function", "function": {
            "name": "send_mail",
            "arguments": f'{{"to": "{args["to"]}", "body": "{args["key"]}"}}'}}]}}]}
    back, n = restore(answer, m)
    got = json.loads(back["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert n == 2 and got == {"to": "taro@example.com", "body": pem}


def test_unknown_tokens_stay_and_a_foreign_mapping_is_refused() -> None:
    _, m, _ = pseudonymise(chat("taro@example.com"), KR, "alice")
    back, n = restore({"content": "<EMAIL_0123abcd> stays"}, m)
    assert n == 0 and back["content"] == "<EMAIL_0123abcd> stays"
    with pytest.raises(GuardError, match="another subject"):
        pseudonymise(chat("x@example.com"), KR, "bob", mapping=m)


def test_redact_is_irreversible() -> None:
    out, found = redact(chat("電話 090-1234-5678"))
    assert out["messages"][1]["content"] == "電話 [REDACTED:PHONE_JP]"
    assert [f.kind for f in found] == ["phone_jp"]


def test_keyed_hash_is_per_subject_and_holds_no_value() -> None:
    _, sa = KR.secret("alice")
    _, sb = KR.secret("bob")
    h = keyed_hash(sa, "email", "taro@example.com")
    assert h.startswith("email:") and "taro" not in h
    assert h == keyed_hash(sa, "email", "taro@example.com")
    assert h != keyed_hash(sb, "email", "taro@example.com")


def test_static_keyring_key_must_be_32_bytes() -> None:
    with pytest.raises(GuardError, match="32 bytes"):
        StaticKeyring(b"short")


# -- the sealed store and erasure ---------------------------------------------------------------


def _ledger(url: str) -> kansa.Ledger:
    return kansa.Ledger.open(url, signer=Signer.generate("test.kansa/guard"),
                             master_key=MASTER)


def test_store_round_trip_across_ledger_instances(store_url: str) -> None:
    with _ledger(store_url) as led:
        kr = VaultKeyring(led.vault)
        _, m, _ = pseudonymise(chat("mail taro@example.com tel 090-1234-5678"), kr, "alice")
        assert PseudonymStore(kr).save(m) == 2
        assert PseudonymStore(kr).save(m) == 0  # nothing new
    with _ledger(store_url) as led:
        got = PseudonymStore(VaultKeyring(led.vault)).load("alice")
        assert got.tokens == m.tokens
        assert PseudonymStore(VaultKeyring(led.vault)).load("bob").tokens == {}


def _attacker_opens(files: dict[str, bytes], copy: Path, blobs: list[tuple[str, str, bytes]],
                    url: str) -> int:
    """How many sealed mapping values an attacker holding master.key and copies of the
    files can open: every subject key it can unseal from the key tables, each tried on
    every sealed value."""
    roots, sealed = rt._live_rows(url, copy, files)
    a = rt.Attacker(MASTER, b"".join(files.values()))
    opened_roots = [r for p, g, d in roots if (r := a.unseal_root(p, g, d)) is not None]
    a.unseal_keys(opened_roots, sealed)
    n = 0
    for grp, tok, blob in blobs:
        for key in a.keys:
            aead = AESGCM(_derive(_derive(key, b"pseudonym/v1"), b"mapping/v1"))
            with contextlib.suppress(InvalidTag):
                aead.decrypt(blob[:12], blob[12:], f"{grp}\x00{tok}".encode())
                n += 1
                break
    return n


def test_erasing_the_subject_makes_its_mapping_unrecoverable_on_the_file_bytes(
        tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    secret = "kansa.victim.9f3e@example.org"
    with _ledger(url) as led:
        kr = VaultKeyring(led.vault)
        store = PseudonymStore(kr)
        _, m, _ = pseudonymise(chat(f"mail {secret} or {MN[:11]}"
                                    f"{my_number_check_digit(MN[:11])}"), kr, "victim")
        _, other, _ = pseudonymise(chat("mail survivor@example.org"), kr, "survivor")
        store.save(m)
        store.save(other)
        blobs = [(str(g), str(t), bytes(d)) for g, t, d in led.log.store.query(
            "SELECT grp, token, data FROM guard_pseudonyms WHERE grp = ?", (m.group,))]
        assert len(blobs) == 2
        files = rt._sqlite_files(db)
        assert any(f.endswith("-wal") for f in files)  # the WAL is part of what is read
        assert secret.encode() not in b"".join(files.values())  # never written in clear
        # the attacker's method works while the subject lives: the test can fail
        assert _attacker_opens(files, _dir(tmp_path, "before"), blobs, url) == 2

        led.erase("victim")
        store.save(other)  # the next write deletes the erased subject's rows
        left = led.log.store.query("SELECT count(*) FROM guard_pseudonyms WHERE grp = ?",
                                   (m.group,))
        assert left[0][0] == 0
        files = rt._sqlite_files(db)
        assert secret.encode() not in b"".join(files.values())
        assert _attacker_opens(files, _dir(tmp_path, "after"), blobs, url) == 0
        # a new record of the subject gets a new key: the old tokens do not open
        assert PseudonymStore(kr).load("victim").tokens == {}
        # the survivor's mapping is intact
        assert PseudonymStore(kr).load("survivor").tokens == other.tokens


def _dir(tmp: Path, name: str) -> Path:
    p = tmp / name
    os.makedirs(p, exist_ok=True)
    return p
