"""C2SP tlog-proof receipts: made from real logs (SQLite and PostgreSQL), verified with the
verifier key alone, and refused when any part is altered. No mocks."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kansa.errors import FormatError, KansaError, KeyFormatError, ProofError, SignatureError
from kansa.ledger import merkle
from kansa.ledger.log import Append, Log
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Signer,
    cosign,
    sign_checkpoint,
    sign_note,
)
from kansa.ledger.receipt import HEADER, Receipt, make_receipt, parse_receipt, verify_receipt
from kansa.ledger.storage import open_store

ORIGIN = "example.com/test-log"


def entry(i: int) -> bytes:
    return f'{{"id":"rec-{i}","n":{i}}}'.encode()


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def log(store_url: str, signer: Signer) -> Iterator[Log]:
    store = open_store(store_url)
    lg = Log(store, signer, checkpoint_interval=3600)
    lg.append_many([Append(entry(i)) for i in range(300)])
    lg.checkpoint()
    try:
        yield lg
    finally:
        lg.close()
        store.close()


def replace_line(data: bytes, n: int, line: str) -> bytes:
    lines = data.decode().split("\n")
    lines[n] = line
    return "\n".join(lines).encode()


# --- round trips -------------------------------------------------------------------------


def test_round_trip(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 273, extra=b"rec-273")
    r = verify_receipt(data, signer.verifier, entry(273))
    assert isinstance(r, Receipt)
    assert (r.index, r.extra, r.checkpoint.size, r.checkpoint.origin) == (273, b"rec-273", 300,
                                                                           ORIGIN)
    assert r.checkpoint.root == log.latest_checkpoint().checkpoint.root
    assert list(r.proof) == log.inclusion_proof(273, 300)
    assert parse_receipt(data) == r and r.to_bytes() == data


def test_self_contained_receipt_carries_the_entry(log: Log, signer: Signer) -> None:
    """kansa's receipts put the entry in the extra data; entry=None proves those bytes."""
    data = make_receipt(log, 99, extra=entry(99))
    r = verify_receipt(data, signer.verifier, None)
    assert (r.index, r.extra) == (99, entry(99))
    # the extra data is now what the proof authenticates: altering it is caught
    forged = data.replace(base64.b64encode(entry(99)), base64.b64encode(entry(98)))
    assert forged != data
    with pytest.raises(ProofError, match="the entry in the receipt's extra data is not proven"):
        verify_receipt(forged, signer.verifier, None)
    with pytest.raises(FormatError, match="carries no entry in its extra data"):
        verify_receipt(make_receipt(log, 99), signer.verifier, None)
    # an explicit entry still wins over the extra data
    with pytest.raises(ProofError, match="this entry is not proven"):
        verify_receipt(data, signer.verifier, entry(98))


def test_layout_follows_the_spec(log: Log) -> None:
    data = make_receipt(log, 5, extra=b"rec-5")
    head, _, note = data.decode().partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1" == HEADER
    assert lines[1] == "extra " + base64.b64encode(b"rec-5").decode()
    assert lines[2] == "index 5"
    proof = log.inclusion_proof(5, 300)
    assert lines[3:] == [base64.b64encode(h).decode() for h in proof]
    assert note == log.latest_checkpoint().note.to_text()  # the checkpoint, verbatim
    without = make_receipt(log, 5).decode().split("\n")
    assert without[1] == "index 5"  # no extra data: the line is omitted


def test_every_index_verifies(log: Log, signer: Signer) -> None:
    for i in [0, 1, 2, 127, 255, 256, 257, 298, 299]:
        r = verify_receipt(make_receipt(log, i), signer.verifier, entry(i))
        assert r.index == i and r.checkpoint.size == 300


def test_single_entry_tree_has_an_empty_proof(store_url: str, signer: Signer) -> None:
    store = open_store(store_url)
    lg = Log(store, signer)
    try:
        lg.append(b"only")
        lg.checkpoint()
        data = make_receipt(lg, 0)
        assert data.startswith(b"c2sp.org/tlog-proof@v1\nindex 0\n\n")
        assert verify_receipt(data, signer.verifier, b"only").proof == ()
    finally:
        lg.close()
        store.close()


def test_old_receipts_keep_verifying_and_older_checkpoints(log: Log, signer: Signer) -> None:
    old = make_receipt(log, 10)
    first = log.latest_checkpoint()
    log.append_many([Append(entry(i)) for i in range(300, 700)])
    log.checkpoint()
    assert verify_receipt(old, signer.verifier, entry(10)).checkpoint.size == 300
    assert verify_receipt(make_receipt(log, 10), signer.verifier, entry(10)).checkpoint.size == 700
    pinned = make_receipt(log, 10, checkpoint=first)
    assert pinned == old


def test_uncovered_index_is_refused(log: Log) -> None:
    log.append(b"late")  # size 301; the latest checkpoint still has 300
    with pytest.raises(ProofError, match="entry 300 is not covered by a signed checkpoint"):
        make_receipt(log, 300)
    with pytest.raises(ProofError, match="outside the checkpoint's tree of size 300"):
        make_receipt(log, 300, checkpoint=log.latest_checkpoint())


# --- tampering -------------------------------------------------------------------------


def test_altered_proof_hash(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    lines = data.decode().split("\n")
    h = bytearray(base64.b64decode(lines[3]))
    h[0] ^= 1
    bad = replace_line(data, 3, base64.b64encode(bytes(h)).decode())
    with pytest.raises(ProofError, match="not proven at index 42 of the tree of size 300"):
        verify_receipt(bad, signer.verifier, entry(42))


def test_dropped_or_extra_proof_hash(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    lines = data.decode().split("\n")
    shorter = "\n".join(lines[:3] + lines[4:]).encode()
    with pytest.raises(ProofError, match="shorter than the tree is deep"):
        verify_receipt(shorter, signer.verifier, entry(42))
    longer = "\n".join(lines[:4] + lines[3:]).encode()
    with pytest.raises(ProofError, match="longer than the tree is deep"):
        verify_receipt(longer, signer.verifier, entry(42))


def test_altered_index(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    with pytest.raises(ProofError, match="not proven at index 43"):
        verify_receipt(replace_line(data, 1, "index 43"), signer.verifier, entry(42))
    with pytest.raises(ProofError, match="outside a tree of size 300"):
        verify_receipt(replace_line(data, 1, "index 300"), signer.verifier, entry(42))


def test_altered_entry(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    with pytest.raises(ProofError, match="this entry is not proven at index 42"):
        verify_receipt(data, signer.verifier, entry(42) + b" ")
    with pytest.raises(ProofError):
        verify_receipt(data, signer.verifier, entry(43))


def test_altered_checkpoint(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    text = data.decode()
    root_b64 = base64.b64encode(log.latest_checkpoint().checkpoint.root).decode()
    other_root = base64.b64encode(bytes(32)).decode()
    with pytest.raises(SignatureError, match=f"signature by {ORIGIN} on the note is invalid"):
        verify_receipt(text.replace(root_b64, other_root).encode(), signer.verifier, entry(42))
    with pytest.raises(SignatureError, match="invalid"):
        verify_receipt(text.replace("\n300\n", "\n301\n").encode(), signer.verifier, entry(42))


def test_checkpoint_signed_by_another_key(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    cp = log.latest_checkpoint().checkpoint
    impostor = Signer.generate(ORIGIN)
    forged = parse_receipt(data)
    swapped = Receipt(forged.index, forged.proof, cp, sign_checkpoint(cp, impostor).note)
    with pytest.raises(SignatureError, match="carries no signature by example.com/test-log"):
        verify_receipt(swapped.to_bytes(), signer.verifier, entry(42))
    other = Signer.generate("example.com/other-log")
    with pytest.raises(SignatureError, match="no signature by example.com/other-log"):
        verify_receipt(data, other.verifier, entry(42))


def test_checkpoint_origin_must_be_the_key_name(log: Log, signer: Signer) -> None:
    data = make_receipt(log, 42)
    r = parse_receipt(data)
    # the log's own key over a body naming another log (sign_checkpoint would refuse)
    cp = Checkpoint("example.com/elsewhere", r.checkpoint.size, r.checkpoint.root)
    note = sign_note(cp.body(), signer)
    with pytest.raises(SignatureError, match="origin 'example.com/elsewhere' is not the key"):
        verify_receipt(Receipt(42, r.proof, cp, note).to_bytes(), signer.verifier, entry(42))


# --- witnesses ---------------------------------------------------------------------------


def test_witness_cosignatures(log: Log, signer: Signer) -> None:
    w1 = Signer.generate("witness.example/one", alg=ALG_COSIGNATURE_V1)
    w2 = Signer.generate("witness.example/two", alg=ALG_COSIGNATURE_V1)
    body = log.latest_checkpoint().checkpoint.body()
    log.store.add_cosignature(300, w1.name, cosign(body, w1, 1_700_000_000).line())
    data = make_receipt(log, 7)
    assert f"\n\u2014 {w1.name} ".encode() in data
    r = verify_receipt(data, signer.verifier, entry(7), witnesses=[w1.verifier], min_witnesses=1)
    assert r.index == 7
    # w2 never cosigned: fine unless it is required
    verify_receipt(data, signer.verifier, entry(7), witnesses=[w1.verifier, w2.verifier],
                   min_witnesses=1)
    with pytest.raises(SignatureError,
                       match="cosigned by 1 of the 2 witnesses required; none from witness"):
        verify_receipt(data, signer.verifier, entry(7), witnesses=[w1.verifier, w2.verifier],
                       min_witnesses=2)
    with pytest.raises(SignatureError, match="2 witness cosignatures are required but only 1 "
                       "distinct witness keys are trusted"):
        verify_receipt(data, signer.verifier, entry(7), witnesses=[w1.verifier, w1.verifier],
                       min_witnesses=2)
    with pytest.raises(KeyFormatError, match="is not a cosignature/v1"):
        verify_receipt(data, signer.verifier, entry(7), witnesses=[signer.verifier])


def test_altered_cosignature(log: Log, signer: Signer) -> None:
    w1 = Signer.generate("witness.example/one", alg=ALG_COSIGNATURE_V1)
    body = log.latest_checkpoint().checkpoint.body()
    good = cosign(body, w1, 1_700_000_000).line()
    log.store.add_cosignature(300, w1.name, good)
    data = make_receipt(log, 7)
    verify_receipt(data, signer.verifier, entry(7), witnesses=[w1.verifier], min_witnesses=1)
    # the witness's timestamp is signed too: moving it by one second breaks the cosignature
    sig = bytearray(base64.b64decode(good.split(" ")[2]))
    sig[4 + 7] ^= 1  # after the 4-byte key ID, the last byte of the 8-byte timestamp
    bad_line = f"\u2014 {w1.name} {base64.b64encode(bytes(sig)).decode()}\n"
    bad = data.replace(good.encode(), bad_line.encode())
    assert bad != data
    with pytest.raises(SignatureError, match=f"cosignature by {w1.name} is invalid"):
        verify_receipt(bad, signer.verifier, entry(7), witnesses=[w1.verifier])
    # a witness nobody asked about is ignored, as signed-note requires of unknown keys
    assert verify_receipt(bad, signer.verifier, entry(7)).index == 7


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace(HEADER, "c2sp.org/tlog-proof@v2"), "first line is not"),
        (lambda t: t.replace("index 42", "index 042"), "no leading zeroes"),
        (lambda t: t.replace("index 42", "index -1"), "no leading zeroes"),
        (lambda t: t.replace("index 42", "index \u0664\u0662"), "no leading zeroes"),
        (lambda t: t.replace("index 42", "idx 42"), "expected an 'index N' line"),
        (lambda t: t.replace("\n\n", "\n", 1), "no empty line before the checkpoint|hash"),
        (lambda t: t.replace("\n", "\r\n"), "carriage return"),
        (lambda t: t.replace("extra cmVjLTQy", "extra cmVjLTQy!"), "extra data is not valid"),
        (lambda t: t.replace("extra cmVjLTQy", "extra cmVjLTQz"), None),  # unauthenticated
        (lambda t: t.replace("index 42\n", "index 42\nAAAA\n"), "proof hash 1 has 3 bytes"),
        (lambda t: t.replace("index 42\n", "index 42\nAB==\n"), "not canonical base64"),
        (lambda t: t + "trailing", "signature block must end with a newline"),
    ],
)
def test_malformed_receipts(
    log: Log, signer: Signer, change: Callable[[str], str], message: str | None
) -> None:
    data = make_receipt(log, 42, extra=b"rec-42").decode()
    altered = change(data).encode()
    assert altered != data.encode()
    if message is None:  # parses; whether it verifies is the proof's business
        parse_receipt(altered)
        return
    with pytest.raises(FormatError, match=message):
        parse_receipt(altered)
    with pytest.raises(FormatError):
        verify_receipt(altered, signer.verifier, entry(42))


def test_garbage_is_a_format_error() -> None:
    for data in [b"", b"\xff\xfe", b"c2sp.org/tlog-proof@v1\n", b"c2sp.org/tlog-proof@v1\n\n",
                 b"c2sp.org/tlog-proof@v1\nindex 1\n\nno note\n"]:
        with pytest.raises(FormatError):
            parse_receipt(data)


def test_too_many_proof_lines(log: Log) -> None:
    data = make_receipt(log, 42).decode()
    _, _, note = data.partition("\n\n")
    many = f"{HEADER}\nindex 42" + ("\n" + "A" * 43 + "=") * 65 + "\n\n" + note
    with pytest.raises(FormatError, match="65 proof hashes"):
        parse_receipt(many.encode())


# --- fuzzing -----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    with contextlib.suppress(KansaError):  # anything else fails the test
        parse_receipt(data)


TOKENS = [HEADER, "extra ", "extra AA==", "index ", "index 0", "index 7", "index 01", "",
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "example.com/test-log", "300", "0",
          "\u2014 example.com/test-log AAAAAAAA", "\u2014 x", "\u2014 ", "=", "\u2014", " "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=12), max_size=14))
def test_fuzz_line_structured(lines: list[str]) -> None:
    with contextlib.suppress(KansaError):
        parse_receipt("\n".join(lines).encode())


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, Signer]]:
    base = tmp_path_factory.mktemp("receipt")
    signer = Signer.generate(ORIGIN)
    store = open_store(f"sqlite:///{base / 'ledger.db'}")
    lg = Log(store, signer)
    lg.append_many([Append(entry(i)) for i in range(40)])
    lg.checkpoint()
    data = make_receipt(lg, 17, extra=b"rec-17")
    lg.close()
    store.close()
    yield data, signer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_fuzz_mutations_never_verify_something_else(
    sample: tuple[bytes, Signer], pos: int, byte: int
) -> None:
    """One byte changed anywhere: either a KansaError, or the same entry, index and tree
    (only the unauthenticated extra data, or nothing at all, changed)."""
    data, signer = sample
    i = pos % len(data)
    mutated = data[:i] + bytes([byte]) + data[i + 1 :]
    original = parse_receipt(data)
    try:
        r = verify_receipt(mutated, signer.verifier, entry(17))
    except KansaError:
        assert mutated != data
        return
    assert (r.index, r.checkpoint, list(r.proof)) == (
        original.index, original.checkpoint, list(original.proof)
    )
    assert merkle.leaf_hash(entry(17)) and r.note.text == original.note.text


@pytest.fixture(scope="module")
def self_contained(sample: tuple[bytes, Signer]) -> tuple[bytes, Signer]:
    data, signer = sample
    r = parse_receipt(data)
    return Receipt(r.index, r.proof, r.checkpoint, r.note, entry(17)).to_bytes(), signer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(min_value=0), byte=st.integers(min_value=0, max_value=255))
def test_fuzz_mutations_of_self_contained_receipts(
    self_contained: tuple[bytes, Signer], pos: int, byte: int
) -> None:
    """With the entry in the extra data, no one-byte change verifies as another entry."""
    data, signer = self_contained
    assert verify_receipt(data, signer.verifier, None).extra == entry(17)
    i = pos % len(data)
    mutated = data[:i] + bytes([byte]) + data[i + 1 :]
    try:
        r = verify_receipt(mutated, signer.verifier, None)
    except KansaError:
        assert mutated != data
        return
    assert (r.index, r.extra, r.checkpoint) == (17, entry(17), parse_receipt(data).checkpoint)
