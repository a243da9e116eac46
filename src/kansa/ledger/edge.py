"""The right edge of a tiled Merkle tree: the only state needed to append and to get the root.

Appending leaves only ever touches the rightmost (partial) tile at each level, and the
root of a tree of size n is built from perfect subtrees that all lie in those tiles. So
the sequencer keeps just these few tiles in memory and writes back the ones it changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kansa.ledger.merkle import EMPTY_ROOT, HASH_SIZE, node_hash
from kansa.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, reduce_hashes


class TreeEdge:
    def __init__(self, size: int, tiles: list[list[bytes]]) -> None:
        # tiles[L] holds the hashes of the rightmost, not yet full tile at level L
        self.size = size
        self._tiles = tiles

    @classmethod
    def empty(cls) -> TreeEdge:
        return cls(0, [[]])

    @classmethod
    def load(cls, size: int, fetch: Callable[[int, int], bytes | None]) -> TreeEdge:
        """Rebuild the edge of a stored tree of ``size`` leaves from its tiles."""
        tiles: list[list[bytes]] = []
        level = 0
        while True:
            count = size >> (TILE_HEIGHT * level)
            if count == 0 and level > 0:
                break
            width = count % TILE_WIDTH
            hashes: list[bytes] = []
            if width:
                data = fetch(level, count // TILE_WIDTH) or b""
                if len(data) < width * HASH_SIZE:
                    raise ValueError(
                        f"stored tile ({level}, {count // TILE_WIDTH}) has "
                        f"{len(data) // HASH_SIZE} hashes, the tree needs {width}"
                    )
                hashes = [data[i : i + HASH_SIZE] for i in range(0, width * HASH_SIZE, HASH_SIZE)]
            tiles.append(hashes)
            if count < TILE_WIDTH:
                break
            level += 1
        return cls(size, tiles)

    def copy(self) -> TreeEdge:
        return TreeEdge(self.size, [list(t) for t in self._tiles])

    def append(self, leaf_hashes: Iterable[bytes]) -> dict[tuple[int, int], bytes]:
        """Add leaf hashes; return every tile that changed as {(level, index): bytes}."""
        changed: dict[tuple[int, int], bytes] = {}
        tiles = self._tiles
        touched: set[int] = set()
        for h in leaf_hashes:
            self.size += 1
            level, up = 0, h
            while True:
                tile = tiles[level]
                tile.append(up)
                touched.add(level)
                if len(tile) < TILE_WIDTH:
                    break
                # a full tile is final: write it out, and its root climbs one tile level
                index = ((self.size >> (TILE_HEIGHT * level)) - 1) // TILE_WIDTH
                changed[(level, index)] = b"".join(tile)
                up = reduce_hashes(tile)
                tiles[level] = []
                touched.discard(level)
                level += 1
                if level == len(tiles):
                    tiles.append([])
        for level in touched:
            if tiles[level]:
                index = (self.size >> (TILE_HEIGHT * level)) // TILE_WIDTH
                changed[(level, index)] = b"".join(tiles[level])
        return changed

    def root(self) -> bytes:
        """MTH of the whole tree from the perfect subtrees along the right edge."""
        if self.size == 0:
            return EMPTY_ROOT
        parts: list[bytes] = []  # perfect subtree hashes, left (largest) to right
        for level in range(len(self._tiles) - 1, -1, -1):
            tile = self._tiles[level]
            pos = 0
            for h in range(TILE_HEIGHT - 1, -1, -1):
                if len(tile) & (1 << h):
                    parts.append(reduce_hashes(tile[pos : pos + (1 << h)]))
                    pos += 1 << h
        root = parts.pop()
        while parts:
            root = node_hash(parts.pop(), root)
        return root
