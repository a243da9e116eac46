"""C2SP tlog-tiles: index paths, tile paths and widths, entry bundles, tile hash reader."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kansa.errors import FormatError, KansaError, ProofError
from kansa.ledger import merkle, tiles
from kansa.ledger.edge import TreeEdge

# --- index paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "path"),
    [
        (0, "000"),
        (1, "001"),
        (67, "067"),
        (999, "999"),
        (1000, "x001/000"),
        (1234, "x001/234"),
        (1234067, "x001/x234/067"),  # the tlog-tiles example
        (10**6, "x001/x000/000"),
        (2**64 - 1, "x018/x446/x744/x073/x709/x551/615"),
    ],
)
def test_encode_decode_index(n: int, path: str) -> None:
    assert tiles.encode_index(n) == path
    assert tiles.decode_index(path) == n


@settings(max_examples=500, deadline=None)
@given(n=st.integers(min_value=0, max_value=2**64))
def test_index_round_trip(n: int) -> None:
    path = tiles.encode_index(n)
    parts = path.split("/")
    assert all(p.startswith("x") and len(p) == 4 for p in parts[:-1])
    assert len(parts[-1]) == 3 and parts[-1].isdigit()
    assert parts == ["000"] or not parts[0].endswith("x000")
    assert tiles.decode_index(path) == n


def test_encode_index_negative() -> None:
    with pytest.raises(ValueError):
        tiles.encode_index(-1)


@pytest.mark.parametrize(
    "bad",
    ["", "1", "01", "0000", "x001", "001/000", "x01/000", "x001/00", "y001/000", "x001/x23/067",
     "abc", "-01", "x001/", "/000", "x0a1/000", "+01", " 01", "x+01/000",
     # str.isdigit() is True for these, but they are not ASCII digits
     "\u00b2\u00b2\u00b2", "x\u00b2\u00b2\u00b2/000", "\u0660\u0666\u0667", "\uff10\uff10\uff11",
     # non-canonical: Go's tlog.ParseTilePath requires path == Tile.Path()
     "x000/067", "x000/x001/000"],
)
def test_decode_index_rejects(bad: str) -> None:
    with pytest.raises(FormatError):
        tiles.decode_index(bad)


@settings(max_examples=500, deadline=None)
@given(path=st.text(max_size=20))
def test_decode_index_fuzz(path: str) -> None:
    """Random paths either decode to an index that encodes back to the same path, or raise
    FormatError (a path is canonical: no "x000" prefix, ASCII digits only)."""
    try:
        n = tiles.decode_index(path)
    except FormatError:
        return
    assert tiles.encode_index(n) == path


def test_tile_and_entry_paths() -> None:
    assert tiles.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tiles.tile_path(1, 0, 7) == "tile/1/000.p/7"
    assert tiles.tile_path(2, 3, 256) == "tile/2/003"
    assert tiles.entries_path(1234067) == "tile/entries/x001/x234/067"
    assert tiles.entries_path(0, 1) == "tile/entries/000.p/1"


def test_tile_widths() -> None:
    assert tiles.tile_width_at(0, 0, 0) == 0
    assert tiles.tile_width_at(0, 0, 1) == 1
    assert tiles.tile_width_at(0, 0, 300) == 256
    assert tiles.tile_width_at(0, 1, 300) == 44
    assert tiles.tile_width_at(0, 2, 300) == 0
    assert tiles.tile_width_at(1, 0, 300) == 1
    assert tiles.tile_width_at(1, 0, 255) == 0
    assert tiles.tile_width_at(2, 0, 65536) == 1
    assert list(tiles.tiles_for_size(0)) == []
    assert list(tiles.tiles_for_size(5)) == [(0, 0, 5)]
    assert list(tiles.tiles_for_size(256)) == [(0, 0, 256), (1, 0, 1)]
    assert list(tiles.tiles_for_size(513)) == [(0, 0, 256), (0, 1, 256), (0, 2, 1), (1, 0, 2)]
    assert list(tiles.tiles_for_size(65536))[-2:] == [(1, 0, 256), (2, 0, 1)]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=0, max_value=2**20))
def test_tiles_for_size_covers_each_level(n: int) -> None:
    """Level L publishes exactly n >> 8L hashes, in tiles of 256 with one partial at most."""
    by_level: dict[int, list[tuple[int, int]]] = {}
    for lv, ix, w in tiles.tiles_for_size(n):
        assert w == tiles.tile_width_at(lv, ix, n)
        by_level.setdefault(lv, []).append((ix, w))
    for lv, row in by_level.items():
        assert [ix for ix, _ in row] == list(range(len(row)))
        assert sum(w for _, w in row) == n >> (8 * lv)
        assert all(w == 256 for _, w in row[:-1]) and 0 < row[-1][1] <= 256
    assert set(by_level) == {lv for lv in range(8) if n >> (8 * lv)}


# --- entry bundles ------------------------------------------------------------------------


def test_bundle_known_encoding() -> None:
    assert tiles.encode_bundle([]) == b""
    assert tiles.encode_bundle([b""]) == b"\x00\x00"
    assert tiles.encode_bundle([b"ab", b"", b"c"]) == b"\x00\x02ab\x00\x00\x00\x01c"
    assert tiles.decode_bundle(b"\x00\x02ab\x00\x00\x00\x01c") == [b"ab", b"", b"c"]


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.binary(max_size=600), max_size=256))
def test_bundle_round_trip(entries: list[bytes]) -> None:
    data = tiles.encode_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert tiles.decode_bundle(data) == entries


def test_bundle_entry_size_limit() -> None:
    biggest = bytes(range(256)) * 255 + bytes(255)
    assert len(biggest) == 65535
    data = tiles.encode_bundle([b"x", biggest, b"y"])
    assert data[3:5] == b"\xff\xff"
    assert tiles.decode_bundle(data) == [b"x", biggest, b"y"]
    with pytest.raises(FormatError):
        tiles.encode_bundle([b"x", biggest + b"!"])
    assert tiles.MAX_ENTRY_SIZE == 65535


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    data=st.data(),
)
def test_truncated_bundle_is_format_error(entries: list[bytes], data: st.DataObject) -> None:
    full = tiles.encode_bundle(entries)
    # every prefix that does not end exactly on an entry boundary is truncated
    boundaries = {0}
    pos = 0
    for e in entries:
        pos += 2 + len(e)
        boundaries.add(pos)
    cut = data.draw(st.integers(0, len(full) - 1).filter(lambda c: c not in boundaries))
    with pytest.raises(FormatError):
        tiles.decode_bundle(full[:cut])


def test_every_truncation_of_a_bundle() -> None:
    entries = [b"", b"a", b"bc" * 200, b"\x00\x01", b"z" * 70]
    full = tiles.encode_bundle(entries)
    ok = 0
    for cut in range(len(full)):
        try:
            got = tiles.decode_bundle(full[:cut])
        except FormatError:
            continue
        ok += 1
        assert got == entries[: len(got)]  # only a whole-entry prefix decodes
    assert ok == len(entries)  # the cuts at 0 and after each of the first four entries


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_decode_bundle_fuzz(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        entries = tiles.decode_bundle(data)
        assert tiles.encode_bundle(entries) == data


# --- hash tiles -----------------------------------------------------------------------------


def test_split_hashes() -> None:
    hs = [hashlib.sha256(bytes([i])).digest() for i in range(256)]
    assert tiles.split_hashes(b"".join(hs)) == hs
    assert tiles.split_hashes(b"") == []
    for bad in [b"\x00" * 31, b"\x00" * 33, b"\x00" * (257 * 32)]:
        with pytest.raises(FormatError):
            tiles.split_hashes(bad)


def test_reduce_hashes_is_perfect_subtree_root() -> None:
    for k in range(9):
        hs = [hashlib.sha256(bytes([i])).digest() for i in range(1 << k)]
        assert tiles.reduce_hashes(hs) == merkle.root_from_leaf_hashes(hs)


def test_tile_hash_reader_reads_stored_tiles_and_caches() -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(600)]
    stored = TreeEdge.empty().append(leaves)
    fetched: list[tuple[int, int]] = []

    def fetch(lv: int, ix: int) -> bytes:
        fetched.append((lv, ix))
        return stored[(lv, ix)]

    reader = tiles.TileHashReader(fetch)
    ref = merkle.ListHashReader(leaves)
    for level in range(10):
        for index in range(600 >> level):
            assert reader.subtree(level, index) == ref.subtree(level, index), (level, index)
    assert sorted(set(fetched)) == sorted(fetched)  # each tile fetched once
    # a tile too short for the subtree asked for is a ProofError, not garbage
    short = tiles.TileHashReader(lambda lv, ix: stored[(lv, ix)][:32 * 10])
    with pytest.raises(ProofError):
        short.subtree(0, 10)
    with pytest.raises(ProofError):
        short.subtree(4, 0)
    assert short.subtree(3, 0) == ref.subtree(3, 0)


def test_bundle_errors_are_kansa_errors() -> None:
    assert issubclass(FormatError, KansaError)
    with pytest.raises(KansaError):
        tiles.decode_bundle(struct.pack(">H", 5) + b"abc")
