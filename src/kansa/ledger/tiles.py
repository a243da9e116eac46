"""C2SP tlog-tiles: tile paths, entry bundles, and a HashReader over tiles.

From c2sp.org/tlog-tiles: a tile at level L, index N holds up to 256 consecutive hashes
of tree level 8*L (the leaf hashes for L = 0, then roots of 256**L-leaf subtrees), 32
bytes each, in order. A full tile is 8,192 bytes; a partial tile of width W sits at
``<N>.p/<W>``. Entry bundles hold 256 entries each, every entry "prefixed by its length
as a big-endian uint16", so one entry is at most 65,535 bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from kansa.errors import FormatError, ProofError
from kansa.ledger.merkle import HASH_SIZE, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256
MAX_ENTRY_SIZE = 0xFFFF


def encode_index(n: int) -> str:
    """tlog-tiles: "the index N is encoded as a zero-padded 3-digit path element ... if N is
    greater than 999, it is split into multiple path elements, all but the last prefixed
    by x": 1234067 -> x001/x234/067."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def decode_index(path: str) -> int:
    parts = path.split("/")
    n = 0
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        digits = p if last else p[1:]
        if (
            (not last and not p.startswith("x"))
            or len(digits) != 3
            or not (digits.isascii() and digits.isdigit())
        ):
            raise FormatError(f"bad tile index path {path!r}")
        n = n * 1000 + int(digits)
    # like Go's ParseTilePath: only the canonical spelling (no x000/ prefixes) is a path
    if encode_index(n) != path:
        raise FormatError(f"tile index path {path!r} is not canonical")
    return n


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    base = f"tile/{level}/{encode_index(index)}"
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    base = f"tile/entries/{encode_index(index)}"
    return base if width == TILE_WIDTH else f"{base}.p/{width}"


def tile_width_at(level: int, index: int, tree_size: int) -> int:
    """Width of tile (level, index) in a tree of ``tree_size`` leaves (0 if absent)."""
    count = tree_size >> (TILE_HEIGHT * level)  # hashes at tree level 8*level
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tiles_for_size(tree_size: int) -> Iterator[tuple[int, int, int]]:
    """Every (level, index, width) that a tree of this size publishes."""
    level = 0
    while True:
        count = tree_size >> (TILE_HEIGHT * level)
        if count == 0:
            return
        for index in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            yield level, index, tile_width_at(level, index, tree_size)
        level += 1


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise FormatError(f"entry of {len(e)} bytes exceeds {MAX_ENTRY_SIZE}")
        out += struct.pack(">H", len(e))
        out += e
    return bytes(out)


def decode_bundle(data: bytes, where: str = "entry bundle") -> list[bytes]:
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FormatError(f"{where}: truncated length prefix at byte {pos}")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise FormatError(f"{where}: entry {len(entries)} runs past the end of the bundle")
        entries.append(data[pos : pos + n])
        pos += n
    return entries


def split_hashes(data: bytes, where: str = "tile") -> list[bytes]:
    if len(data) % HASH_SIZE or len(data) > TILE_WIDTH * HASH_SIZE:
        raise FormatError(f"{where}: {len(data)} bytes is not a whole number of hashes (≤ 256)")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def reduce_hashes(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree given its 2**h bottom hashes."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


TileFetcher = Callable[[int, int], bytes]  # (level, index) -> tile bytes (any width)


def tile_levels(data: bytes) -> list[list[bytes]]:
    """All internal levels of one tile: levels[h][j] is the subtree of 2**h hashes at j."""
    cur = [data[i : i + HASH_SIZE]
           for i in range(0, len(data) - len(data) % HASH_SIZE, HASH_SIZE)]
    out = [cur]
    sha = hashlib.sha256
    while len(cur) >= 2:
        cur = [sha(b"\x01" + cur[i] + cur[i + 1]).digest() for i in range(0, len(cur) - 1, 2)]
        out.append(cur)
    return out


class TileLevelsCache:
    """Tile levels shared by readers. A stored tile only grows and the hashes it held never
    change, so cached levels stay right for every subtree they cover (LRU-bounded)."""

    def __init__(self, max_tiles: int = 1024) -> None:
        self.max_tiles = max_tiles
        self._d: OrderedDict[tuple[int, int], list[list[bytes]]] = OrderedDict()

    def get(self, key: tuple[int, int]) -> list[list[bytes]] | None:
        v = self._d.get(key)
        if v is not None:
            with contextlib.suppress(KeyError):
                self._d.move_to_end(key)
        return v

    def put(self, key: tuple[int, int], levels: list[list[bytes]]) -> None:
        self._d[key] = levels
        while len(self._d) > self.max_tiles:
            with contextlib.suppress(KeyError):
                self._d.popitem(last=False)


class TileHashReader:
    """HashReader over tiles: subtree (k, j) lives in tile level k // 8; each tile's
    internal levels are computed once and may be shared across readers."""

    def __init__(self, fetch: TileFetcher, shared: TileLevelsCache | None = None) -> None:
        self._fetch = fetch
        self._shared = shared
        self._cache: dict[tuple[int, int], list[list[bytes]]] = {}

    def subtree(self, level: int, index: int) -> bytes:
        tile_level, h = divmod(level, TILE_HEIGHT)
        first = index << h  # position at tree level 8 * tile_level
        tile_index, offset = divmod(first, TILE_WIDTH)
        pos = offset >> h
        key = (tile_level, tile_index)
        lv = self._cache.get(key)
        if lv is None and self._shared is not None:
            lv = self._shared.get(key)
        if lv is None or h >= len(lv) or pos >= len(lv[h]):
            lv = tile_levels(self._fetch(tile_level, tile_index))
            self._cache[key] = lv
            if self._shared is not None:
                self._shared.put(key, lv)
        if h >= len(lv) or pos >= len(lv[h]):
            raise ProofError(
                f"tile {tile_path(tile_level, tile_index)} is too short for subtree "
                f"({level}, {index})"
            )
        return lv[h][pos]
