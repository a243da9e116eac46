"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

Everything here is a small pure function over hashes, so it can be audited line by line
against the RFC text quoted beside it. Proof *generation* reads node hashes through a
:class:`HashReader` (an in-memory list, stored tiles, an exported directory); proof
*verification* needs nothing but the hashes it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from kansa.errors import ProofError

HASH_SIZE = 32

# RFC 9162 §2.1.1: "The hash of an empty list is the hash of an empty string: MTH({}) = HASH()."
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (RFC 9162: "k < n <= 2k"), for n > 1."""
    if n < 2:
        raise ValueError(f"split_point needs n > 1, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes, computed bottom-up in O(n) time and O(log n) memory.

    Bottom-up merging of perfect subtrees, then folding the remaining right edge from
    the smallest subtree upwards, gives exactly the RFC's recursive split at the largest
    power of two.
    """
    if not hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    for h in hashes:
        height = 0
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            h = node_hash(left, h)
            height += 1
        stack.append((height, h))
    root = stack.pop()[1]
    while stack:
        root = node_hash(stack.pop()[1], root)
    return root


class HashReader(Protocol):
    """Source of the hash of any *perfect, aligned* subtree of a log.

    ``subtree(level, index)`` is MTH of the 2**level leaves starting at index * 2**level.
    """

    def subtree(self, level: int, index: int) -> bytes: ...


class ListHashReader:
    """A :class:`HashReader` over leaf hashes held in memory (tests, small trees)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def subtree(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise ProofError(f"no complete subtree at level {level}, index {index}") from None


def range_hash(reader: HashReader, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for a range that is a node of some tree (lo aligned to the RFC split).

    A perfect aligned range is one stored hash; any other range is split at the largest
    power of two, exactly as RFC 9162 §2.1.1 defines MTH.
    """
    n = hi - lo
    if n <= 0:
        raise ValueError(f"empty range [{lo}, {hi})")
    if n & (n - 1) == 0 and lo % n == 0:
        return reader.subtree(n.bit_length() - 1, lo // n)
    k = split_point(n)
    return node_hash(range_hash(reader, lo, lo + k), range_hash(reader, lo + k, hi))


def tree_root(reader: HashReader, size: int) -> bytes:
    return EMPTY_ROOT if size == 0 else range_hash(reader, 0, size)


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1, iteratively:

    PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])   for m < k
    PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(range_hash(reader, lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(reader, lo, lo + k))
            lo = lo + k
    path.reverse()  # the recursion emits the leaf's neighbour first
    return path


def consistency_proof(reader: HashReader, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1:

    SUBPROOF(m, D[m], true)  = {}
    SUBPROOF(m, D[m], false) = {MTH(D[m])}
    SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])         for m <= k
    SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])  for m > k
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    path: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            path.append(range_hash(reader, lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(reader, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        path.append(range_hash(reader, lo, hi))
    path.reverse()
    return path


def _shift_while(fn: int, sn: int, cond: Callable[[int], bool]) -> tuple[int, int]:
    while cond(fn):
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2 steps 1-5, returning the computed root (callers compare it)."""
    _check_hash(leaf)
    # 1. If leaf_index is greater than or equal to tree_size, then stop and fail.
    if index >= size or index < 0:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    # 2. Set fn to leaf_index and sn to tree_size - 1.  3. Set r to hash.
    fn, sn, r = index, size - 1, leaf
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        _check_hash(p)
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #     either LSB(fn) is set or fn is 0.
            fn, sn = _shift_while(fn, sn, lambda f: f != 0 and not f & 1)
        else:
            # Otherwise: i. Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0. Compare r against the root_hash.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf hash ``leaf`` at ``index``."""
    _check_hash(root)
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree root")


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """RFC 9162 §2.1.4.2, with the trivial cases (old size 0 or equal sizes) made explicit."""
    for h in (old_root, new_root, *proof):
        _check_hash(h)
    if old_size < 0 or new_size < old_size:
        raise ProofError(f"tree shrank from size {old_size} to {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise ProofError("empty consistency proof between different sizes")
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    fn, sn = _shift_while(fn, sn, lambda f: bool(f & 1))
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is deep")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)  # i.
            sr = node_hash(c, sr)  # ii.
            # iii. If LSB(fn) is not set, then right-shift both fn and sn equally until
            #      either LSB(fn) is set or fn is 0.
            fn, sn = _shift_while(fn, sn, lambda f: f != 0 and not f & 1)
        else:
            sr = node_hash(sr, c)  # Otherwise: i. Set sr to HASH(0x01 || sr || c).
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. verify that fr == first_hash, sr == second_hash, and that sn is 0.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {new_size}")


def _check_hash(h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"proof hash has {len(h)} bytes, expected {HASH_SIZE}")
