"""Signed rule packs: the signature statement, every rejection, the trust store, the CLI."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kansa.cli import app
from kansa.errors import KansaError, SignatureError
from kansa.ledger.note import ALG_COSIGNATURE_V1, Signer, parse_note, sign_note
from kansa.policy.bundled import example_pack_files
from kansa.policy.pack import PackError, PolicyError, load_pack
from kansa.policy.signing import (
    ORIGIN,
    MalformedSignatureError,
    PackAlteredError,
    PackSignatureError,
    Statement,
    TrustStoreError,
    UnsignedPackError,
    UntrustedSignerError,
    WrongPackError,
    check_statement,
    file_hash,
    parse_statement,
    sign_pack,
    trust_add,
    trust_remove,
    trusted_publishers,
    verify_pack_signature,
    verify_signed_pack,
)

V1_PATH, V2_PATH = example_pack_files()
V1, V2 = V1_PATH.read_bytes(), V2_PATH.read_bytes()
PUB = Signer.generate("publisher.example/packs")
OTHER = Signer.generate("other.example/packs")
SIG1 = sign_pack(V1, PUB)


def test_signature_is_a_signed_note_naming_pack_version_and_hashes() -> None:
    note = parse_note(SIG1)
    pack = load_pack(V1_PATH)
    assert note.text == (f"{ORIGIN}\npack kansa.example/ai-logging\nversion 1\n"
                         f"hash {pack.hash}\nfile {file_hash(V1)}\n")
    assert [s.name for s in note.signatures] == [PUB.name]
    assert verify_pack_signature(V1, SIG1, [OTHER.verifier, PUB.verifier]) == PUB.name
    assert verify_pack_signature(V1, SIG1, [PUB.verifier.vkey]) == PUB.name
    with pytest.raises(TrustStoreError, match="malformed"):
        verify_pack_signature(V1, SIG1, ["not-a-key"])
    signed = verify_signed_pack(V1, SIG1, [PUB.verifier])
    assert signed.pack.hash == pack.hash and signed.signer == PUB.verifier
    assert signed.statement == Statement(pack.id, "1", pack.hash, file_hash(V1))
    # the errors are policy errors and signature errors both
    assert issubclass(PackSignatureError, PolicyError)
    assert issubclass(PackSignatureError, SignatureError)


def test_a_pack_changed_after_signing_is_rejected() -> None:
    changed = V1.replace(b"logged with the model requested", b"logged with any model")
    assert changed != V1
    with pytest.raises(PackAlteredError) as e:
        verify_pack_signature(changed, SIG1, [PUB.verifier])
    signed_hash = load_pack(V1_PATH).hash
    assert f"signed pack hash {signed_hash}, got sha256:" in str(e.value)
    # a change that leaves the rules alone (a comment) is still a change to what was shipped
    commented = V1 + b"# an added comment\n"
    with pytest.raises(PackAlteredError, match="same rules, other bytes") as e2:
        verify_pack_signature(commented, SIG1, [PUB.verifier])
    assert f"signed file {file_hash(V1)}, got {file_hash(commented)}" in str(e2.value)
    # a change that breaks the YAML is reported as a change, not as a parse error
    with pytest.raises(PackAlteredError, match="no longer parses"):
        verify_pack_signature(V1.replace(b"pack:", b"pack::"), SIG1, [PUB.verifier])


def test_parsed_pack_is_checked_by_hash() -> None:
    assert verify_pack_signature(load_pack(V1_PATH), SIG1, [PUB.verifier]) == PUB.name
    with pytest.raises(WrongPackError):
        verify_pack_signature(load_pack(V2_PATH), SIG1, [PUB.verifier])


def test_unsigned_pack_is_rejected() -> None:
    for missing in (None, b"", b"\n"):
        with pytest.raises(UnsignedPackError, match="unsigned"):
            verify_pack_signature(V1, missing, [PUB.verifier])


def test_untrusted_key_is_rejected() -> None:
    with pytest.raises(UntrustedSignerError, match="no publisher key is trusted"):
        verify_pack_signature(V1, SIG1, [])
    with pytest.raises(UntrustedSignerError, match=r"publisher.example/packs\+[0-9a-f]{8}"):
        verify_pack_signature(V1, sign_pack(V1, OTHER), [PUB.verifier])
    # same name, another key: the key ID differs, so it is not the trusted key
    impostor = Signer.generate(PUB.name)
    with pytest.raises(UntrustedSignerError):
        verify_pack_signature(V1, sign_pack(V1, impostor), [PUB.verifier])


def test_signature_for_another_pack_or_version_is_rejected() -> None:
    with pytest.raises(WrongPackError, match="for kansa.example/ai-logging@1, not for "
                                             "kansa.example/ai-logging@2"):
        verify_pack_signature(V2, SIG1, [PUB.verifier])
    renamed = V1.replace(b"pack: kansa.example/ai-logging", b"pack: kansa.example/other")
    with pytest.raises(WrongPackError):
        verify_pack_signature(renamed, SIG1, [PUB.verifier])


def _note(text: str) -> bytes:
    return sign_note(text, PUB).to_bytes()


def test_malformed_signatures_are_rejected() -> None:
    pack = load_pack(V1_PATH)
    good = Statement(pack.id, pack.version, pack.hash, file_hash(V1)).text()
    cases = {
        b"not a note at all": "not a signed note",
        _note(good.replace(ORIGIN, "example.org/other-statement")): "not a pack signature",
        _note(good + "extra line\n"): "has 5 lines",
        _note(good.replace("version 1", "release 1")): "line 3 must be 'version <value>'",
        _note(good.replace(pack.hash, "sha256:abc")): "not sha256:<64 hex digits>",
        b"\xff\xfe" + SIG1: "not a signed note",
        SIG1 + b"\n": "not a signed note",
        SIG1 * 2000: "larger than",
    }
    for sig, reason in cases.items():
        with pytest.raises(MalformedSignatureError, match=reason):
            verify_pack_signature(V1, sig, [PUB.verifier])


def test_non_canonical_base64_in_the_signature_is_rejected() -> None:
    # 68 signature bytes end in a base64 group with 2 unused bits; Python's decoder
    # ignores them, so without a canonical-form check a changed file would still verify
    text, sig_line = SIG1.decode().rsplit("\n\n", 1)
    name, blob = sig_line.rstrip("\n").split(" ")[1:]
    assert blob.endswith("=") and not blob.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(blob[-2])
    twin = blob[:-2] + alphabet[last ^ 1] + "="
    assert base64.b64decode(twin) == base64.b64decode(blob)
    forged = f"{text}\n\n\u2014 {name} {twin}\n".encode()
    with pytest.raises(MalformedSignatureError, match="canonical"):
        verify_pack_signature(V1, forged, [PUB.verifier])


def test_statement_changed_after_signing_is_rejected() -> None:
    note = SIG1.decode()
    other_hash = "sha256:" + "0" * 64
    forged = note.replace(note.split("\n")[3].split(" ")[1], other_hash, 1).encode()
    with pytest.raises(PackAlteredError, match="does not verify"):
        verify_pack_signature(V1, forged, [PUB.verifier])


def test_sign_refuses_an_invalid_pack() -> None:
    with pytest.raises(PackError, match="lacks 'obligations'"):
        sign_pack(b"pack: x\nversion: '1'\ntitle: t\npublisher: p\nsources: [https://e.org]\n"
                  b"jurisdiction: j\nstatus: draft\neffective_from: 2026-01-01\n", PUB)


def test_check_statement_ignores_whose_key() -> None:
    assert check_statement(V1, sign_pack(V1, OTHER)).ref == "kansa.example/ai-logging@1"
    with pytest.raises(WrongPackError):
        check_statement(V2, SIG1)


def test_parse_statement_round_trip() -> None:
    s = Statement("a.b/c", "2026-06", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
    assert parse_statement(s.text()) == s


# -- property: every single-byte change is caught ------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(["pack", "sig"]), where=st.floats(0, 1, exclude_max=True),
       byte=st.integers(0, 255))
def test_any_single_byte_change_is_rejected(target: str, where: float, byte: int) -> None:
    data = bytearray(V1 if target == "pack" else SIG1)
    pos = int(where * len(data))
    if data[pos] == byte:
        byte = (byte + 1) % 256
    data[pos] = byte
    pack, sig = (bytes(data), SIG1) if target == "pack" else (V1, bytes(data))
    with pytest.raises(PackSignatureError):
        verify_pack_signature(pack, sig, [PUB.verifier])


# -- the trust store ------------------------------------------------------------------------


def test_trust_store_add_list_remove(tmp_path: Path) -> None:
    assert trusted_publishers(tmp_path) == []
    v, new = trust_add(tmp_path, PUB.verifier.vkey)
    assert new and v == PUB.verifier
    assert trust_add(tmp_path, PUB.verifier.vkey + "\n") == (PUB.verifier, False)
    trust_add(tmp_path, OTHER.verifier.vkey)
    assert set(trusted_publishers(tmp_path)) == {PUB.verifier, OTHER.verifier}
    assert verify_pack_signature(V1, SIG1, trusted_publishers(tmp_path)) == PUB.name
    assert trust_remove(tmp_path, PUB.name) == [PUB.verifier]
    assert trusted_publishers(tmp_path) == [OTHER.verifier]
    with pytest.raises(UntrustedSignerError):
        verify_pack_signature(V1, SIG1, trusted_publishers(tmp_path))
    with pytest.raises(TrustStoreError, match="no trusted publisher key named"):
        trust_remove(tmp_path, PUB.name)
    ref = f"{OTHER.name}+{OTHER.verifier.key_id.hex()}"
    assert trust_remove(tmp_path, ref) == [OTHER.verifier]


def test_trust_store_refuses_bad_keys(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match="not a verifier key"):
        trust_add(tmp_path, "garbage")
    witness = Signer.generate("witness.example", ALG_COSIGNATURE_V1)
    with pytest.raises(TrustStoreError, match="witness key"):
        trust_add(tmp_path, witness.verifier.vkey)
    (tmp_path / "trusted_publishers").mkdir(exist_ok=True)
    (tmp_path / "trusted_publishers" / "broken.vkey").write_text("not a key\n")
    with pytest.raises(TrustStoreError, match="broken.vkey"):
        trusted_publishers(tmp_path)


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_keygen_sign_verify_trust(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    env = {"KANSA_HOME": str(home), "COLUMNS": "200"}
    r = runner.invoke(app, ["packs", "keygen", "acme.example/packs", "-o", str(tmp_path)],
                      env=env)
    assert r.exit_code == 0, r.output
    key, vkey = tmp_path / "acme.example_packs.key", tmp_path / "acme.example_packs.vkey"
    assert key.stat().st_mode & 0o777 == 0o600
    signer = Signer.parse(key.read_text())
    assert vkey.read_text().strip() == signer.verifier.vkey
    r = runner.invoke(app, ["packs", "keygen", "acme.example/packs", "-o", str(tmp_path)],
                      env=env)
    assert r.exit_code == 1 and "not overwriting" in r.output

    pack = tmp_path / "p.yaml"
    pack.write_bytes(V1)
    r = runner.invoke(app, ["packs", "sign", str(pack), "--key", str(key)], env=env)
    assert r.exit_code == 0, r.output
    sig = (tmp_path / "p.yaml.sig").read_bytes()
    assert verify_pack_signature(V1, sig, [signer.verifier]) == "acme.example/packs"

    r = runner.invoke(app, ["packs", "verify", str(pack)], env=env)
    assert r.exit_code == 1 and "no publisher key is trusted" in r.output
    r = runner.invoke(app, ["packs", "trust", "add", str(vkey)], env=env)
    assert r.exit_code == 0 and "now trusted" in r.output
    r = runner.invoke(app, ["packs", "trust", "list"], env=env)
    assert signer.verifier.vkey in r.output
    r = runner.invoke(app, ["packs", "verify", str(pack)], env=env)
    assert r.exit_code == 0 and "kansa.example/ai-logging@1" in r.output
    pack.write_bytes(V1 + b"# edited\n")
    r = runner.invoke(app, ["packs", "verify", str(pack)], env=env)
    assert r.exit_code == 1 and "changed after signing" in r.output
    r = runner.invoke(app, ["packs", "trust", "remove", "acme.example/packs"], env=env)
    assert r.exit_code == 0 and trusted_publishers(home) == []
    r = runner.invoke(app, ["packs", "trust", "remove", "acme.example/packs"], env=env)
    assert r.exit_code == 1 and "no trusted publisher key" in r.output
    assert isinstance(TrustStoreError("x"), KansaError)
