"""Fuzzing kansa's trust boundaries: whatever bytes arrive (a receipt, a checkpoint note,
a tile, an export directory), only kansa's own errors (KansaError subclasses) escape,
and every change to a verified file is caught."""

from __future__ import annotations

import atexit
import base64
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kansa.errors import FormatError, KansaError, ProofError, VerificationError
from kansa.ledger import merkle
from kansa.ledger.export import export_log
from kansa.ledger.log import Append, Log
from kansa.ledger.note import Signer, b64decode_strict, parse_note, verify_checkpoint
from kansa.ledger.receipt import make_receipt, parse_receipt, verify_receipt
from kansa.ledger.storage import open_store
from kansa.ledger.tiles import TileHashReader, decode_bundle, split_hashes
from kansa.ledger.verify import verify_directory

SIGNER = Signer.generate("example.com/fuzz")


@functools.cache
def _fixture() -> tuple[Path, bytes, bytes]:
    """An export of 300 entries, a receipt and a checkpoint note, built once."""
    root = Path(tempfile.mkdtemp(prefix="kansa-fuzz-"))
    atexit.register(shutil.rmtree, root, True)
    store = open_store(str(root / "ledger.db"))
    with Log(store, SIGNER) as log:
        log.append_many([Append(b"entry %d" % i * (i % 7 + 1)) for i in range(300)])
        log.flush()
        export_log(log, root / "export")
        receipt = make_receipt(log, 123, extra=store.entry(123).data)  # type: ignore[union-attr]
        note = log.latest_checkpoint().to_bytes()
    store.close()
    return root / "export", receipt, note


def _mutate(data: bytes, op: str, pos: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    i = pos % len(data)
    if op == "flip":
        return data[:i] + bytes([data[i] ^ (byte or 1)]) + data[i + 1 :]
    if op == "truncate":
        return data[:i]
    if op == "insert":
        return data[:i] + bytes([byte]) + data[i:]
    if op == "delete":
        return data[:i] + data[i + 1 :]
    return data + data[i:]  # "extend"


OPS = st.sampled_from(["flip", "truncate", "insert", "delete", "extend"])


@settings(max_examples=300, deadline=None)
@given(op=OPS, pos=st.integers(0, 1 << 20), byte=st.integers(0, 255))
def test_receipt_mutations_raise_only_kansa_errors(op: str, pos: int, byte: int) -> None:
    _, receipt, _ = _fixture()
    data = _mutate(receipt, op, pos, byte)
    try:
        r = verify_receipt(data, SIGNER.verifier, None)
    except KansaError:
        return
    # what still verifies proves exactly the same entry at the same index
    assert r.index == 123 and r.extra == parse_receipt(receipt).extra


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_receipt_random_bytes_raise_only_kansa_errors(data: bytes) -> None:
    with pytest.raises(KansaError):
        verify_receipt(data, SIGNER.verifier, None)


@settings(max_examples=300, deadline=None)
@given(op=OPS, pos=st.integers(0, 1 << 12), byte=st.integers(0, 255))
def test_checkpoint_note_mutations(op: str, pos: int, byte: int) -> None:
    _, _, note = _fixture()
    data = _mutate(note, op, pos, byte)
    try:
        signed = verify_checkpoint(data, SIGNER.verifier)
    except KansaError:
        return
    # only a change to the signature block that keeps the log's signature can pass
    assert signed.checkpoint == verify_checkpoint(note, SIGNER.verifier).checkpoint


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_note_parser_random_text(text: str) -> None:
    try:
        note = parse_note(text)
    except FormatError:
        return
    assert parse_note(note.to_text()) == note  # what parses has one meaning


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_strict_base64_has_one_spelling(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert b64decode_strict(text, "x") == data


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \n",
               max_size=24))
def test_strict_base64_accepts_only_canonical(text: str) -> None:
    try:
        data = b64decode_strict(text, "x")
    except FormatError:
        return
    assert base64.b64encode(data).decode() == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_bundle_and_tile_readers(data: bytes) -> None:
    try:
        entries = decode_bundle(data)
        assert sum(2 + len(e) for e in entries) == len(data)
    except FormatError:
        pass
    try:
        hashes = split_hashes(data)
        assert b"".join(hashes) == data and len(hashes) <= 256
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(tile=st.binary(max_size=8192), level=st.integers(0, 16), index=st.integers(0, 1 << 10))
def test_tile_hash_reader_on_arbitrary_tiles(tile: bytes, level: int, index: int) -> None:
    reader = TileHashReader(lambda lv, ix: tile)
    try:
        h = reader.subtree(level, index)
        assert len(h) == merkle.HASH_SIZE
    except ProofError:
        pass


FILES = [
    "checkpoint", "tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1",
    "tile/entries/000", "tile/entries/001.p/44",
]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    rel=st.sampled_from(FILES),
    op=st.sampled_from(["flip", "truncate", "insert", "delete", "extend", "remove",
                        "dev-zero", "fifo", "dir", "swap"]),
    pos=st.integers(0, 1 << 16),
    byte=st.integers(0, 255),
)
def test_every_change_to_an_export_is_caught(rel: str, op: str, pos: int, byte: int) -> None:
    src, _, _ = _fixture()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "e"
        shutil.copytree(src, d, symlinks=True)
        target = d / rel
        if op == "remove":
            target.unlink()
        elif op == "dev-zero":
            target.unlink()
            os.symlink("/dev/zero", target)
        elif op == "fifo":
            target.unlink()
            os.mkfifo(target)
        elif op == "dir":
            target.unlink()
            target.mkdir()
        elif op == "swap":
            other = d / FILES[pos % len(FILES)]
            assume(other != target)
            a, b = target.read_bytes(), other.read_bytes()
            target.write_bytes(b)
            other.write_bytes(a)
        else:
            before = target.read_bytes()
            after = _mutate(before, op, pos, byte)
            assume(after != before)
            target.write_bytes(after)
        with pytest.raises(VerificationError) as exc:
            verify_directory(d, SIGNER.verifier)
        assert exc.value.problems
