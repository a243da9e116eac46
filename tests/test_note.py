"""C2SP signed-note, tlog-checkpoint and tlog-cosignature.

Interoperability vectors are Go's, from golang.org/x/mod/sumdb/note note_test.go
(TestNewVerifier, TestNewSigner, TestSign, TestOpen): the PeterNeumann and EnochRoot keys
and their published signatures. Ed25519 is deterministic (RFC 8032), so signing the same
text with the same seed must reproduce Go's note byte for byte. The checkpoint example is
the one in c2sp.org/tlog-cosignature (and tlog-checkpoint).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kansa.errors import FormatError, KansaError, KeyFormatError, SignatureError
from kansa.ledger import note
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Checkpoint,
    NoteSignature,
    Signer,
    Verifier,
)

# --- golang.org/x/mod/sumdb/note note_test.go -------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + PETER_SIG

# c2sp.org/tlog-cosignature: "an example of a checkpoint that contains a cosignature"
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrD"
    "JsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def _seed_of(skey: str) -> bytes:
    """The Ed25519 seed inside a Go signer key, split as Go's chop does (key may hold '+')."""
    blob = skey.split("+", 4)[4]
    raw = base64.b64decode(blob)
    assert raw[0] == ALG_ED25519
    return raw[1:]


def signer_from_seed(name: str, seed: bytes, alg: int = ALG_ED25519) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed), alg)


PETER = signer_from_seed("PeterNeumann", _seed_of(PETER_SKEY))


def seeded(i: int, name: str = "example.com/log", alg: int = ALG_ED25519) -> Signer:
    return signer_from_seed(name, hashlib.sha256(b"kansa-test-seed-%d" % i).digest(), alg)


def seeded_with_plus(kind: str, alg: int = ALG_ED25519) -> Signer:
    """A deterministic signer whose skey (or vkey) base64 contains a '+'."""
    for i in range(1000):
        s = seeded(i, "example.com/plus", alg)
        blob = s.skey.split("+", 4)[4] if kind == "skey" else s.verifier.vkey.split("+", 2)[2]
        if "+" in blob:
            return s
    raise AssertionError("no such seed in 1000 tries")


# --- interoperability with Go's golang.org/x/mod/sumdb/note --------------------------------


def test_go_vkey_parses_and_round_trips() -> None:
    v = Verifier.parse(PETER_VKEY)
    assert v.name == "PeterNeumann"
    assert v.alg == ALG_ED25519
    assert v.key_id.hex() == "c74f20a3"
    assert v.vkey == PETER_VKEY
    assert PETER.verifier == v  # Go's signer key and verifier key are one pair
    assert Verifier.parse(ENOCH_VKEY).key_id.hex() == "af0cfe78"


def test_go_note_verifies() -> None:
    n = note.verify_note(GO_NOTE, Verifier.parse(PETER_VKEY))
    assert n.text == GO_TEXT
    assert len(n.signatures) == 1
    assert n.signatures[0].key_id == bytes.fromhex("c74f20a3")
    n2 = note.verify_note(GO_NOTE.encode(), Verifier.parse(PETER_VKEY))
    assert n2 == n


def test_go_note_reproduced_byte_for_byte() -> None:
    """Ed25519 is deterministic: our signature line must be exactly Go's."""
    assert note.sign_note(GO_TEXT, PETER).to_text() == GO_NOTE
    assert note.sign_note(GO_TEXT, PETER).to_bytes() == GO_NOTE.encode()


def test_go_signer_key_parses() -> None:
    """Go's skey has a '+' inside its base64 key material ("...QIDr+Y7h..."): Go splits the
    key string with chop() three times, so the key material may contain '+'."""
    s = Signer.parse(PETER_SKEY)
    assert s.name == "PeterNeumann"
    assert s.verifier.vkey == PETER_VKEY
    assert s.skey == PETER_SKEY
    assert note.sign_note(GO_TEXT, s).to_text() == GO_NOTE


def test_go_open_two_signatures() -> None:
    """TestOpen: a note with Peter's and Enoch's signatures verifies under either key;
    the signature by the key not asked for is ignored."""
    msg = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    n = note.verify_note(msg, Verifier.parse(PETER_VKEY))
    assert n.text == GO_TEXT
    assert [s.name for s in n.signatures] == ["PeterNeumann", "EnochRoot"]
    n = note.verify_note(msg, Verifier.parse(ENOCH_VKEY))
    assert n.text == GO_TEXT
    # and in the other order
    note.verify_note(GO_TEXT + "\n" + ENOCH_SIG + PETER_SIG, Verifier.parse(PETER_VKEY))


def test_go_open_too_many_signatures() -> None:
    with pytest.raises(FormatError):
        note.parse_note(GO_TEXT + "\n" + PETER_SIG * 101)
    with pytest.raises(FormatError):
        note.verify_note(GO_TEXT + "\n" + PETER_SIG * 101, Verifier.parse(PETER_VKEY))
    # 100 is fine (signed-note: verifiers MUST accept at least 16)
    note.verify_note(GO_TEXT + "\n" + PETER_SIG * 100, Verifier.parse(PETER_VKEY))


def test_go_open_invalid_signature() -> None:
    bad = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError):
        note.verify_note(bad, Verifier.parse(PETER_VKEY))


@pytest.mark.parametrize(
    "msg",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode(),
        GO_TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFY"
        "C2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ],
    ids=["no sigs", "blank only", "no final newline", "control char", "bad utf8", "bad name",
         "unexpected line"],
)
def test_go_open_bad_messages(msg: str | bytes) -> None:
    """TestOpen badMsgs: Go says "malformed note"; we must refuse them as well."""
    with pytest.raises(KansaError):
        note.verify_note(msg, Verifier.parse(PETER_VKEY))


def _go_manglings(key: str) -> list[str]:
    """TestNewVerifier / TestNewSigner: every proper substring, and every byte + 1."""
    b = key.encode()
    out = {b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)}
    out.discard(b)
    for i in range(len(b)):
        out.add(b[:i] + bytes([b[i] + 1]) + b[i + 1 :])
    return [x.decode() for x in out]


def test_go_vkey_manglings_rejected() -> None:
    for k in _go_manglings(PETER_VKEY) + [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]:
        with pytest.raises(KeyFormatError):
            Verifier.parse(k)
            pytest.fail(f"accepted mangled verifier key {k!r}")


def test_go_skey_manglings_rejected() -> None:
    for k in _go_manglings(PETER_SKEY):
        with pytest.raises(KeyFormatError):
            Signer.parse(k)
            pytest.fail(f"accepted mangled signer key {k!r}")


# --- key strings ----------------------------------------------------------------------


def test_key_id_definition() -> None:
    """signed-note: key ID = SHA-256(name || 0x0A || type || public key)[:4]."""
    s = seeded(1, "example.com/foo")
    pub = s.verifier.public_key
    assert len(pub) == 32
    want = hashlib.sha256(b"example.com/foo\n\x01" + pub).digest()[:4]
    assert s.verifier.key_id == want
    assert s.verifier.vkey == (
        "example.com/foo+" + want.hex() + "+" + base64.b64encode(b"\x01" + pub).decode()
    )
    w = seeded(1, "example.com/foo", ALG_COSIGNATURE_V1)
    assert w.verifier.key_id == hashlib.sha256(b"example.com/foo\n\x04" + pub).digest()[:4]
    assert w.verifier.key_id != want


names = st.from_regex(r"[a-zA-Z0-9./_:\-é]{1,40}", fullmatch=True)
seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=100, deadline=None)
@given(name=names, seed=seeds, alg=st.sampled_from([ALG_ED25519, ALG_COSIGNATURE_V1]))
def test_key_strings_round_trip(name: str, seed: bytes, alg: int) -> None:
    s = signer_from_seed(name, seed, alg)
    v = Verifier.parse(s.verifier.vkey)
    assert v == s.verifier
    assert v.vkey == s.verifier.vkey
    s2 = Signer.parse(s.skey)
    assert (s2.name, s2.alg, s2.verifier, s2.skey) == (s.name, s.alg, s.verifier, s.skey)


def test_generated_keys_round_trip() -> None:
    """What `kansa init` would do: generate, save the strings, load them back."""
    for _ in range(20):
        s = Signer.generate("example.com/log")
        assert Verifier.parse(s.verifier.vkey) == s.verifier
        assert Signer.parse(s.skey).verifier == s.verifier


def test_key_strings_with_plus_in_base64() -> None:
    s = seeded_with_plus("skey")
    assert Signer.parse(s.skey).verifier == s.verifier
    v = seeded_with_plus("vkey").verifier
    assert Verifier.parse(v.vkey) == v


@pytest.mark.parametrize("bad", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u2003b"])
def test_bad_key_names_rejected(bad: str) -> None:
    with pytest.raises(KeyFormatError):
        Signer.generate(bad)
    pub = base64.b64encode(b"\x01" + bytes(32)).decode()
    with pytest.raises(KeyFormatError):
        Verifier.parse(f"{bad}+00000000+{pub}")


def test_verifier_key_wrong_type_or_length() -> None:
    s = seeded(2, "n")
    pub = s.verifier.public_key
    for raw in [b"\x02" + pub, b"\x01" + pub[:31], b"\x01" + pub + b"\x00", b""]:
        kid = hashlib.sha256(b"n\n" + raw).digest()[:4].hex()
        with pytest.raises(KeyFormatError):
            Verifier.parse(f"n+{kid}+{base64.b64encode(raw).decode()}")


# --- signing and verifying notes -------------------------------------------------------------


def test_sign_verify_and_wrong_key() -> None:
    a, b = seeded(10, "example.com/a"), seeded(11, "example.com/a")
    text = "hello\nworld\n"
    signed = note.sign_note(text, a).to_text()
    assert note.verify_note(signed, a.verifier).text == text
    # same name, different key: no signature by that key
    with pytest.raises(SignatureError):
        note.verify_note(signed, b.verifier)
    # different key, but a signature line forged to carry b's name and key ID
    forged = note.Note(
        text, (NoteSignature(b.name, b.verifier.key_id, note.parse_note(signed).signatures[0]
                             .signature),)
    ).to_text()
    with pytest.raises(SignatureError):
        note.verify_note(forged, b.verifier)


def test_unknown_extra_signatures_ignored() -> None:
    log = seeded(20, "example.com/log")
    other = seeded(21, "example.com/other")
    text = "some\ntext\n"
    n = note.sign_note(text, log)
    junk = [
        NoteSignature("example.com/other", other.verifier.key_id, b"\x00" * 64),  # invalid, unknown
        NoteSignature("example.com/log", b"\xde\xad\xbe\xef", b"\x01" * 64),  # same name, other ID
        NoteSignature("x", b"\x00\x00\x00\x00", b"\x02"),
    ]
    for extra in ([], junk, junk[::-1]):
        merged = note.Note(text, tuple(extra) + n.signatures + tuple(extra))
        got = note.verify_note(merged.to_text(), log.verifier)
        assert got.text == text
    # a genuine second signature by another key is fine too, either order
    both = note.add_signatures(n, list(note.sign_note(text, other).signatures))
    note.verify_note(both.to_text(), log.verifier)
    note.verify_note(both.to_text(), other.verifier)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_altered_text_rejected(data: st.DataObject) -> None:
    signer = seeded(30, "example.com/log")
    text = "example.com/log\n12345\nAAAA\n"
    signed = note.sign_note(text, signer).to_text()
    pos = data.draw(st.integers(0, len(text) - 1))
    ch = data.draw(st.characters(exclude_characters=[text[pos], "\r"]))
    altered = signed[:pos] + ch + signed[pos + 1 :]
    with pytest.raises(KansaError):
        note.verify_note(altered, signer.verifier)


def test_sign_note_input_checks() -> None:
    s = seeded(40, "n")
    with pytest.raises(FormatError):
        note.sign_note("no newline", s)
    with pytest.raises(FormatError):
        note.sign_note("blank\n\nline\n", s)
    with pytest.raises(SignatureError):
        note.sign_note("x\n", seeded(40, "n", ALG_COSIGNATURE_V1))


def test_parse_note_structure() -> None:
    n = note.parse_note(GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert n.text == GO_TEXT
    assert [s.name for s in n.signatures] == ["PeterNeumann", "EnochRoot"]
    assert n.signatures[1].key_id == bytes.fromhex("af0cfe78")
    assert n.to_text() == GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    with pytest.raises(FormatError):
        note.parse_note((GO_TEXT + "\n" + PETER_SIG).replace("\n", "\r\n"))


# --- checkpoints ------------------------------------------------------------------------------


def test_c2sp_example_checkpoint_parses() -> None:
    n = note.parse_note(C2SP_CHECKPOINT)
    cp = Checkpoint.parse_body(n.text)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.body() == n.text
    assert [s.name for s in n.signatures] == [
        "example.com/behind-the-sofa",
        "witness.example.com/w1",
    ]
    assert len(n.signatures[0].signature) == 64  # Ed25519
    assert len(n.signatures[1].signature) == 72  # u64 timestamp || Ed25519
    (ts,) = struct.unpack(">Q", n.signatures[1].signature[:8])
    assert ts == 1679315147  # the "time 1679315147" of the spec's signed-message example


def test_checkpoint_sign_and_verify() -> None:
    s = seeded(50, "example.com/log")
    cp = Checkpoint("example.com/log", 42, hashlib.sha256(b"root").digest())
    signed = note.sign_checkpoint(cp, s)
    got = note.verify_checkpoint(signed.to_bytes(), s.verifier)
    assert got.checkpoint == cp
    assert signed.to_bytes().decode().startswith("example.com/log\n42\n")
    with pytest.raises(SignatureError):
        note.sign_checkpoint(Checkpoint("example.com/other", 1, bytes(32)), s)
    # a checkpoint whose origin is not the key name is refused even if the signature is good
    s_other = seeded(50, "example.com/other")
    bad = note.sign_note(Checkpoint("example.com/log", 1, bytes(32)).body(), s_other).to_text()
    with pytest.raises(SignatureError):
        note.verify_checkpoint(bad, s_other.verifier)
    with pytest.raises(SignatureError):
        note.verify_checkpoint(signed.to_bytes(), seeded(51, "example.com/log").verifier)


@settings(max_examples=200, deadline=None)
@given(
    # no lone surrogates: they are not UTF-8, and parse_body rightly refuses them
    origin=st.text(st.characters(exclude_characters="\n\r", exclude_categories=("Cs",)),
                   min_size=1, max_size=60),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_body_round_trip(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    assert Checkpoint.parse_body(cp.body()) == cp


@pytest.mark.parametrize("size", [2**63, 2**64 - 1, 10**20, int("9" * 21)])
def test_checkpoint_sizes_beyond_signed_64_bits_are_refused(size: int) -> None:
    root = base64.b64encode(bytes(32)).decode()
    with pytest.raises(FormatError):
        Checkpoint.parse_body(f"example.com/log\n{size}\n{root}\n")


ROOT_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"o\n01\n{ROOT_B64}\n",  # leading zero
        f"o\n00\n{ROOT_B64}\n",
        f"o\n+1\n{ROOT_B64}\n",
        f"o\n-1\n{ROOT_B64}\n",
        f"o\n 1\n{ROOT_B64}\n",
        f"o\n1 \n{ROOT_B64}\n",
        f"o\n1.0\n{ROOT_B64}\n",
        f"o\n1_000\n{ROOT_B64}\n",
        f"o\n\uff11\n{ROOT_B64}\n",  # FULLWIDTH DIGIT ONE
        f"o\n\u00b2\n{ROOT_B64}\n",  # SUPERSCRIPT TWO: str.isdigit() is True
        f"o\n0x10\n{ROOT_B64}\n",
        f"o\n\n{ROOT_B64}\n",
        f"o\n1\n{ROOT_B64}\nextension line\n",  # extension lines
        f"o\n1\n{ROOT_B64}\n\n",
        f"o\n1\n{ROOT_B64}",  # no final newline
        f"\n1\n{ROOT_B64}\n",  # empty origin
        "o\n1\nAAAA\n",  # root too short
        f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n",
        f"o\n1\n{ROOT_B64[:-1]}\n",  # bad padding
        f"o\n1\n{ROOT_B64.replace('A', '-')}\n",  # not standard base64
        "o\n1\n",
        "",
    ],
)
def test_malformed_checkpoint_rejected(body: str) -> None:
    with pytest.raises(FormatError):
        Checkpoint.parse_body(body)
    # nor will a correctly signed note with such a body verify as a checkpoint
    s = seeded(60, "o")
    if body.endswith("\n") and "\n\n" not in body:
        with pytest.raises(FormatError):
            note.verify_checkpoint(note.sign_note(body, s).to_text(), s.verifier)


# --- cosignatures (alg 0x04) -----------------------------------------------------------------


def test_cosignature_round_trip() -> None:
    log = seeded(70, "example.com/log")
    witness = seeded(71, "witness.example.com/w1", ALG_COSIGNATURE_V1)
    cp = Checkpoint("example.com/log", 20852163, hashlib.sha256(b"r").digest())
    signed = note.sign_checkpoint(cp, log)
    ts = 1679315147
    line = note.cosign(signed.note.text, witness, ts)
    assert line.key_id == hashlib.sha256(
        b"witness.example.com/w1\n\x04" + witness.verifier.public_key
    ).digest()[:4]
    cosigned = note.add_signatures(signed.note, [line])
    wire = cosigned.to_text()
    # the log's signature still verifies, and the witness line round-trips through text
    assert note.verify_checkpoint(wire, log.verifier).checkpoint == cp
    reparsed = note.parse_note(wire)
    assert note.verify_cosignature(reparsed, witness.verifier) == ts
    # the signed message is exactly what tlog-cosignature specifies
    sig = reparsed.signatures[1].signature
    assert len(sig) == 72 and struct.unpack(">Q", sig[:8]) == (ts,)
    message = f"cosignature/v1\ntime {ts}\n{cp.body()}".encode()
    Ed25519PublicKey.from_public_bytes(witness.verifier.public_key).verify(sig[8:], message)
    # the witness's vkey is a type-0x04 verifier key
    assert base64.b64decode(witness.verifier.vkey.split("+", 2)[2])[0] == 0x04
    # adding the same cosignature twice does not duplicate it
    assert note.add_signatures(cosigned, [line]).signatures == cosigned.signatures


def test_cosignature_rejections() -> None:
    log = seeded(80, "example.com/log")
    witness = seeded(81, "w", ALG_COSIGNATURE_V1)
    other = seeded(82, "w", ALG_COSIGNATURE_V1)
    body = Checkpoint("example.com/log", 5, bytes(32)).body()
    signed = note.sign_note(body, log)
    line = note.cosign(body, witness, 1000)
    cosigned = note.add_signatures(signed, [line])
    with pytest.raises(SignatureError):  # another witness key
        note.verify_cosignature(cosigned, other.verifier)
    with pytest.raises(SignatureError):  # a log (0x01) key is not a witness key
        note.verify_cosignature(cosigned, log.verifier)
    with pytest.raises(SignatureError):  # a 0x01 key does not cosign
        note.cosign(body, log, 1000)
    with pytest.raises(SignatureError):  # a 0x04 verifier does not verify note signatures
        note.verify_note(cosigned.to_text(), witness.verifier)
    # tampered timestamp
    forged = NoteSignature(line.name, line.key_id, struct.pack(">Q", 1001) + line.signature[8:])
    with pytest.raises(SignatureError):
        note.verify_cosignature(note.add_signatures(signed, [forged]), witness.verifier)
    # cosignature over a different checkpoint
    other_body = Checkpoint("example.com/log", 6, bytes(32)).body()
    moved = note.Note(other_body, (line,))
    with pytest.raises(SignatureError):
        note.verify_cosignature(moved, witness.verifier)
    # wrong length
    short = NoteSignature(line.name, line.key_id, line.signature[:-1])
    with pytest.raises(SignatureError):
        note.verify_cosignature(note.Note(body, (short,)), witness.verifier)


# --- fuzz: malformed input raises KansaError and nothing else ------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
V = Verifier.parse(PETER_VKEY)
GOOD_CP = note.sign_checkpoint(
    Checkpoint("PeterNeumann", 7, hashlib.sha256(b"x").digest()), PETER
).note.to_text()


def _only_kansa_errors(fn: Callable[[Any], object], arg: object) -> None:
    """Call ``fn(arg)``: success or a KansaError are fine; any other exception fails."""
    with contextlib.suppress(KansaError):
        fn(arg)


def _all_parsers(data: str | bytes) -> None:
    _only_kansa_errors(note.parse_note, data)
    _only_kansa_errors(lambda d: note.verify_note(d, V), data)
    _only_kansa_errors(lambda d: note.verify_checkpoint(d, V), data)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    _only_kansa_errors(Checkpoint.parse_body, text)
    _only_kansa_errors(Verifier.parse, text)
    _only_kansa_errors(Signer.parse, text)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _all_parsers(data)


@FUZZ
@given(data=st.text(max_size=300))
def test_fuzz_random_text(data: str) -> None:
    _all_parsers(data)


# building blocks that make structurally interesting inputs likely
pieces = st.sampled_from(
    ["\n", "\n\n", "\u2014 ", " ", "+", "PRIVATE+KEY+", "PeterNeumann", "c74f20a3", "=", "A",
     "AQ==", "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "0", "01", "7", "-", "\r",
     ROOT_B64, "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFY", "\u00b2", "\x00"]
)


@FUZZ
@given(parts=st.lists(st.one_of(pieces, st.text(max_size=5)), max_size=30))
def test_fuzz_structured_text(parts: list[str]) -> None:
    _all_parsers("".join(parts))


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_valid_inputs(data: st.DataObject) -> None:
    """Edits of real notes and keys: errors are KansaErrors, and anything that still
    verifies as a checkpoint says exactly what was signed."""
    base = data.draw(st.sampled_from([GOOD_CP, GO_NOTE, PETER_VKEY, PETER_SKEY, C2SP_CHECKPOINT]))
    s = base
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(s)))
        j = data.draw(st.integers(i, min(len(s), i + 8)))
        s = s[:i] + data.draw(st.one_of(pieces, st.text(max_size=4))) + s[j:]
    _all_parsers(s)
    _all_parsers(s.encode())
    if base == GOOD_CP:
        try:
            got = note.verify_checkpoint(s, V)
        except KansaError:
            return
        assert got.checkpoint == Checkpoint.parse_body(note.parse_note(GOOD_CP).text)


def test_surrogates_raise_kansa_errors() -> None:
    """Text decoded with errors="surrogateescape" (e.g. sys.argv, os.environ, file names)
    carries lone surrogates; parsers must still fail with a KansaError."""
    pub = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    for bad in [
        "\udcff+c74f20a3+" + pub,
        "PRIVATE+KEY+\udcff+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr",
        "PeterNeumann+c74f20a3+" + pub + "\udcff",
    ]:
        _only_kansa_errors(Verifier.parse, bad)
        _only_kansa_errors(Signer.parse, bad)
    for bad in [
        "\udcff" + GO_NOTE,
        GO_TEXT + "\n\u2014 PeterNeumann \udcff\n",
        "PeterNeumann\n1\n" + ROOT_B64 + "\udcff\n\n" + PETER_SIG,
    ]:
        _only_kansa_errors(note.parse_note, bad)
        _only_kansa_errors(lambda d: note.verify_note(d, V), bad)
        _only_kansa_errors(lambda d: note.verify_checkpoint(d, V), bad)
        _only_kansa_errors(Checkpoint.parse_body, bad)
