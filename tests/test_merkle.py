"""RFC 9162 / RFC 6962 Merkle tree: known answers, and properties over random trees.

Known answers come from the Certificate Transparency test vectors as published in
github.com/transparency-dev/merkle (Apache-2.0):

* ``testonly/constants.go``: LeafInputs(), NodeHashes(), RootHashes() (the RFC 6962
  8-leaf tree, every prefix root and every perfect-subtree hash);
* ``testonly/reference_test.go``: TestRefInclusionProof / TestRefConsistencyProof;
* ``proof/verify_test.go``: inclusionProofs / consistencyProofs and the corruption
  probes of corruptInclusionProof / corruptConsistencyProof.

Independent oracles used by the property tests: a direct transcription of the RFC's
recursive MTH / PATH / SUBPROOF definitions (below), and the level arrays of
:class:`merkle.ListHashReader`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kansa.errors import ProofError
from kansa.ledger import merkle
from kansa.ledger.edge import TreeEdge
from kansa.ledger.tiles import TILE_HEIGHT, TileHashReader, tiles_for_size

h = bytes.fromhex

# --- transparency-dev/merkle testonly/constants.go ------------------------------------

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

# RootHashes(): index = tree size
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# NodeHashes(): [level][index]
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# reference_test.go TestRefInclusionProof, plus verify_test.go inclusionProofs
# (whose leaf numbers are 1-based there; converted to 0-based indices here).
INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (0, 1, []),
    (0, 2, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")]),
    (1, 2, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

# reference_test.go TestRefConsistencyProof, plus verify_test.go consistencyProofs
CONSISTENCY_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
VEC_LEAVES = [merkle.leaf_hash(x) for x in LEAF_INPUTS]


# --- an independent oracle: RFC 9162 §2.1 transcribed recursively -----------------------


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return ref_subproof(m, leaves[:k], b) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


def ref_consistency(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if m == 0 or m == len(leaves):
        return []
    return ref_subproof(m, leaves, True)


def synthetic(n: int, salt: bytes = b"") -> list[bytes]:
    """Cheap, distinct 32-byte 'leaf hashes'."""
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


# --- known answers -----------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle.EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT
    assert merkle.tree_root(merkle.ListHashReader([]), 0) == merkle.EMPTY_ROOT
    assert TreeEdge.empty().root() == merkle.EMPTY_ROOT


def test_leaf_and_node_hash_domain_separation() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == ROOTS[1]
    a, b = VEC_LEAVES[0], VEC_LEAVES[1]
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.node_hash(a, b) == NODE_HASHES[1][0]
    # a leaf whose content is a node encoding must not collide with that node
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)


@pytest.mark.parametrize("n", range(len(ROOTS)))
def test_rfc6962_prefix_roots(n: int) -> None:
    leaves = VEC_LEAVES[:n]
    assert merkle.root_from_leaf_hashes(leaves) == ROOTS[n]
    assert merkle.tree_root(merkle.ListHashReader(leaves), n) == ROOTS[n]
    # the full tree's reader serves every prefix root too
    assert merkle.tree_root(merkle.ListHashReader(VEC_LEAVES), n) == ROOTS[n]
    edge = TreeEdge.empty()
    edge.append(leaves)
    assert edge.root() == ROOTS[n]
    assert ref_mth(leaves) == ROOTS[n]


def test_rfc6962_eight_leaf_root() -> None:
    assert (
        merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in LEAF_INPUTS]).hex()
        == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


def test_rfc6962_node_hashes() -> None:
    reader = merkle.ListHashReader(VEC_LEAVES)
    for level, row in enumerate(NODE_HASHES):
        for index, want in enumerate(row):
            assert reader.subtree(level, index) == want, (level, index)
    # the same perfect subtrees read back through tiles
    edge = TreeEdge.empty()
    tiles = edge.append(VEC_LEAVES)
    tr = TileHashReader(lambda lv, ix: tiles[(lv, ix)])
    for level, row in enumerate(NODE_HASHES):
        for index, want in enumerate(row):
            assert tr.subtree(level, index) == want, (level, index)


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION_VECTORS)
def test_inclusion_vectors(index: int, size: int, want: list[bytes]) -> None:
    reader = merkle.ListHashReader(VEC_LEAVES)
    assert merkle.inclusion_proof(reader, index, size) == want
    assert merkle.inclusion_proof(merkle.ListHashReader(VEC_LEAVES[:size]), index, size) == want
    assert ref_path(index, VEC_LEAVES[:size]) == want
    merkle.verify_inclusion(index, size, VEC_LEAVES[index], want, ROOTS[size])
    assert merkle.root_from_inclusion_proof(index, size, VEC_LEAVES[index], want) == ROOTS[size]


@pytest.mark.parametrize(("old", "new", "want"), CONSISTENCY_VECTORS)
def test_consistency_vectors(old: int, new: int, want: list[bytes]) -> None:
    reader = merkle.ListHashReader(VEC_LEAVES)
    assert merkle.consistency_proof(reader, old, new) == want
    assert ref_consistency(old, VEC_LEAVES[:new]) == want
    merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], want)


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """proof/verify_test.go corruptInclusionProof, transcribed."""
    probes = [
        ("leafIndex - 1", index - 1, size, root, leaf, proof),
        ("leafIndex + 1", index + 1, size, root, leaf, proof),
        ("leafIndex ^ 2", index ^ 2, size, root, leaf, proof),
        ("treeSize * 2", index, size * 2, root, leaf, proof),
        ("treeSize / 2", index, size // 2, root, leaf, proof),
        ("wrong leaf", index, size, root, b"WrongLeaf", proof),
        ("empty root", index, size, ROOTS[0], leaf, proof),
        ("random root", index, size, SOME_HASH, leaf, proof),
        ("trailing garbage", index, size, root, leaf, [*proof, b""]),
        ("trailing root", index, size, root, leaf, [*proof, root]),
        ("preceding garbage", index, size, root, leaf, [b"", *proof]),
        ("preceding root", index, size, root, leaf, [root, *proof]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((f"modified proof[{i}] bit 3", index, size, root, leaf, bad))
    if proof:
        probes.append(("removed component", index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append(
            ("inserted component", index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]])
        )
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in INCLUSION_VECTORS if v[1] > 1])
def test_inclusion_vectors_corrupted(index: int, size: int, proof: list[bytes]) -> None:
    leaf = VEC_LEAVES[index]
    for desc, i, n, root, lf, pr in _corrupt_inclusion(index, size, proof, ROOTS[size], leaf):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(i, n, lf, pr, root)
            pytest.fail(f"verified a corrupted inclusion proof: {desc}")


def _corrupt_consistency(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """proof/verify_test.go corruptConsistencyProof, transcribed."""
    probes = [
        ("size1 - 1", m - 1, n, r1, r2, proof),
        ("size1 + 1", m + 1, n, r1, r2, proof),
        ("size1 ^ 2", m ^ 2, n, r1, r2, proof),
        ("size2 * 2", m, n * 2, r1, r2, proof),
        ("size2 / 2", m, n // 2, r1, r2, proof),
        ("wrong root1", m, n, b"WrongRoot", r2, proof),
        ("wrong root2", m, n, r1, b"WrongRoot", proof),
        ("swapped roots", m, n, r2, r1, proof),
        ("empty proof", m, n, r1, r2, []),
        ("trailing garbage", m, n, r1, r2, [*proof, b""]),
        ("trailing root1", m, n, r1, r2, [*proof, r1]),
        ("trailing root2", m, n, r1, r2, [*proof, r2]),
        ("preceding garbage", m, n, r1, r2, [b"", *proof]),
        ("preceding root1", m, n, r1, r2, [r1, *proof]),
        ("preceding root2", m, n, r1, r2, [r2, *proof]),
        ("preceding proof[0]", m, n, r1, r2, [proof[0], *proof]),
        ("truncated proof", m, n, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((f"modified proof[{i}] bit 4", m, n, r1, r2, bad))
    return probes


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_consistency_vectors_corrupted(old: int, new: int, proof: list[bytes]) -> None:
    for desc, m, n, r1, r2, pr in _corrupt_consistency(old, new, ROOTS[old], ROOTS[new], proof):
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, r1, r2, pr)
            pytest.fail(f"verified a corrupted consistency proof: {desc}")


# proof/verify_test.go TestVerifyConsistency: the trivial cases
# Go uses short "don't care" strings; kansa also rejects hashes that are not 32 bytes,
# so the same cases use 32-byte stand-ins.
R1, R2 = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()
TRIVIAL = {
    "0-0 different roots": (0, 0, R1, R2, [], False),
    "1-1 different roots": (1, 1, R1, R2, [], False),
    "0-0 same root": (0, 0, R1, R1, [], True),
    "0-1": (0, 1, R1, R2, [], True),
    "1-1 same root": (1, 1, R2, R2, [], True),
    "1-0 time travel": (1, 0, R1, R2, [], False),
    "2-1 time travel": (2, 1, R1, R2, [], False),
    "1-2 empty proof": (1, 2, R1, R2, [], False),
    "0-0 empty root vs other": (0, 0, ROOTS[0], R2, [], False),
    "1-1 empty root vs other": (1, 1, ROOTS[0], R2, [], False),
    "0-0 non-empty proof": (0, 0, ROOTS[0], ROOTS[0], [ROOTS[0]], False),
    "0-1 non-empty proof": (0, 1, ROOTS[0], ROOTS[0], [ROOTS[0]], False),
    "1-1 non-empty proof": (1, 1, ROOTS[0], ROOTS[0], [ROOTS[0]], False),
}


@pytest.mark.parametrize(("m", "n", "r1", "r2", "proof", "ok"), TRIVIAL.values(), ids=TRIVIAL)
def test_consistency_trivial_cases(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        merkle.verify_consistency(m, n, r1, r2, proof)
    else:
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, r1, r2, proof)


# proof/verify_test.go TestVerifyInclusion / TestVerifyInclusionSingleEntry
@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_degenerate_probes(index: int, size: int) -> None:
    for leaf, root in [(SOME_HASH, b""), (b"", ROOTS[0]), (SOME_HASH, ROOTS[0])]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaf, [], root)


@pytest.mark.parametrize(
    ("leaf", "root", "ok"),
    [
        (merkle.leaf_hash(b"data"), merkle.leaf_hash(b"data"), True),
        (merkle.leaf_hash(b"data"), b"", False),
        (b"", merkle.leaf_hash(b"data"), False),
        (b"", b"", False),  # "wrong hash size": Go rejects a leaf hash that is not 32 bytes
    ],
    ids=["ok", "empty root", "empty leaf", "both empty"],
)
def test_inclusion_single_entry(leaf: bytes, root: bytes, ok: bool) -> None:
    if ok:
        merkle.verify_inclusion(0, 1, leaf, [], root)
    else:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(0, 1, leaf, [], root)


def test_proof_generation_rejects_out_of_range() -> None:
    reader = merkle.ListHashReader(VEC_LEAVES)
    for index, size in [(0, 0), (8, 8), (-1, 4), (5, 3)]:
        with pytest.raises(ProofError):
            merkle.inclusion_proof(reader, index, size)
    for old, new in [(5, 3), (-1, 3)]:
        with pytest.raises(ProofError):
            merkle.consistency_proof(reader, old, new)
    # asking the reader for a subtree the tree does not have
    with pytest.raises(ProofError):
        merkle.inclusion_proof(merkle.ListHashReader(VEC_LEAVES[:4]), 0, 8)


def test_split_point() -> None:
    assert [merkle.split_point(n) for n in (2, 3, 4, 5, 7, 8, 9, 63, 28937)] == [
        1, 2, 2, 4, 4, 4, 8, 32, 16384,
    ]
    with pytest.raises(ValueError):
        merkle.split_point(1)


def test_roots_commit_to_size() -> None:
    # legacy Bitcoin-style trees satisfy root([a,b,c]) == root([a,b,c,c]); RFC 6962 does not
    a, b, c = synthetic(3)
    assert merkle.root_from_leaf_hashes([a, b, c]) != merkle.root_from_leaf_hashes([a, b, c, c])


# --- properties ---------------------------------------------------------------------------


class Tree:
    """A tree of n synthetic leaves with both hash readers, for property tests."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.leaves = synthetic(n, b"prop")
        self.list_reader = merkle.ListHashReader(self.leaves)
        edge = TreeEdge.empty()
        self.tiles: dict[tuple[int, int], bytes] = {}
        self.tiles.update(edge.append(self.leaves))
        self.edge = edge
        self.tile_reader = TileHashReader(lambda lv, ix: self.tiles[(lv, ix)])
        self.root = merkle.root_from_leaf_hashes(self.leaves)


_TREES: dict[int, Tree] = {}
MAX_N = 2000


def tree(n: int) -> Tree:
    t = _TREES.get(n)
    if t is None:
        if len(_TREES) > 64:
            _TREES.clear()
        t = _TREES[n] = Tree(n)
    return t


def root_of(size: int) -> bytes:
    """MTH of the first ``size`` property-test leaves (every tree here is a prefix of one)."""
    return merkle.tree_root(tree(MAX_N).list_reader, size)


def flips(proof: list[bytes], mask: int) -> list[list[bytes]]:
    """Every proof obtained by XOR-ing one byte of one hash with ``mask`` (non-zero)."""
    out = []
    for i, p in enumerate(proof):
        for j in range(len(p)):
            bad = list(proof)
            bad[i] = p[:j] + bytes([p[j] ^ mask]) + p[j + 1 :]
            out.append(bad)
    return out


sizes = st.integers(min_value=1, max_value=2000)
masks = st.integers(min_value=1, max_value=255)
PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(data=st.data(), n=sizes, mask=masks)
def test_inclusion_property(data: st.DataObject, n: int, mask: int) -> None:
    t = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = merkle.inclusion_proof(t.list_reader, i, n)
    assert merkle.inclusion_proof(t.tile_reader, i, n) == proof
    assert len(proof) <= (n - 1).bit_length()
    merkle.verify_inclusion(i, n, t.leaves[i], proof, t.root)

    for bad in flips(proof, mask):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(i, n, t.leaves[i], bad, t.root)
    # wrong leaf, wrong root
    with pytest.raises(ProofError):
        merkle.verify_inclusion(i, n, hashlib.sha256(t.leaves[i]).digest(), proof, t.root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(i, n, t.leaves[i], proof, hashlib.sha256(t.root).digest())
    # another index of the same tree
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i), label="other index")
        with pytest.raises(ProofError):
            merkle.verify_inclusion(j, n, t.leaves[i], proof, t.root)
    # another size, with that size's own (correct) root
    m = data.draw(st.integers(i + 1, MAX_N).filter(lambda x: x != n), label="other size")
    with pytest.raises(ProofError):
        merkle.verify_inclusion(i, m, t.leaves[i], proof, root_of(m))
    # index out of range
    with pytest.raises(ProofError):
        merkle.verify_inclusion(n, n, t.leaves[i], proof, t.root)
    # a hash dropped or added
    if proof:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(i, n, t.leaves[i], proof[:-1], t.root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(i, n, t.leaves[i], [*proof, t.root], t.root)


@PROP
@given(data=st.data(), n=sizes, mask=masks)
def test_consistency_property(data: st.DataObject, n: int, mask: int) -> None:
    t = tree(n)
    m = data.draw(st.integers(0, n), label="old size")
    old_root = root_of(m)
    proof = merkle.consistency_proof(t.list_reader, m, n)
    assert merkle.consistency_proof(t.tile_reader, m, n) == proof
    merkle.verify_consistency(m, n, old_root, t.root, proof)

    for bad in flips(proof, mask):
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, old_root, t.root, bad)
    if 0 < m < n:
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, hashlib.sha256(old_root).digest(), t.root, proof)
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, old_root, hashlib.sha256(t.root).digest(), proof)
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, t.root, old_root, proof)
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, old_root, t.root, proof[:-1])
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, old_root, t.root, [*proof, t.root])
        # another old size (with its own correct root) must not be "proved" by this proof
        if n > 2:
            m2 = data.draw(st.integers(1, n - 1).filter(lambda x: x != m), label="other old")
            with pytest.raises(ProofError):
                merkle.verify_consistency(m2, n, root_of(m2), t.root, proof)
        # another new size (with its own correct root)
        n2 = data.draw(st.integers(m + 1, MAX_N).filter(lambda x: x != n), label="other new")
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n2, old_root, root_of(n2), proof)
    if m < n:  # a tree never shrinks
        with pytest.raises(ProofError):
            merkle.verify_consistency(n, m, t.root, old_root, [])
        with pytest.raises(ProofError):
            merkle.verify_consistency(n, m, t.root, old_root, proof)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=70))
def test_proofs_match_rfc_recursion(n: int) -> None:
    t = tree(n)
    assert t.root == ref_mth(t.leaves)
    for i in range(n):
        assert merkle.inclusion_proof(t.list_reader, i, n) == ref_path(i, t.leaves)
    for m in range(n + 1):
        want = ref_consistency(m, t.leaves)
        assert merkle.consistency_proof(t.list_reader, m, n) == want
        assert merkle.consistency_proof(t.tile_reader, m, n) == want


@PROP
@given(n=sizes, data=st.data())
def test_older_sizes_served_from_newer_tiles(n: int, data: st.DataObject) -> None:
    """Tiles of a grown tree serve proofs for every older size, equal to the list reader's."""
    big = tree(MAX_N)
    i = data.draw(st.integers(0, n - 1), label="index")
    m = data.draw(st.integers(0, n), label="old size")
    root = merkle.tree_root(big.tile_reader, n)
    assert root == merkle.tree_root(big.list_reader, n) == merkle.root_from_leaf_hashes(
        big.leaves[:n]
    )
    proof = merkle.inclusion_proof(big.tile_reader, i, n)
    assert proof == merkle.inclusion_proof(big.list_reader, i, n)
    merkle.verify_inclusion(i, n, big.leaves[i], proof, root)
    cproof = merkle.consistency_proof(big.tile_reader, m, n)
    assert cproof == merkle.consistency_proof(big.list_reader, m, n)
    merkle.verify_consistency(m, n, merkle.tree_root(big.list_reader, m), root, cproof)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=1, max_value=2000))
def test_root_from_leaf_hashes_matches_reader(n: int) -> None:
    t = tree(n)
    assert merkle.tree_root(t.list_reader, n) == t.root
    assert merkle.tree_root(t.tile_reader, n) == t.root
    assert t.edge.root() == t.root


def test_proof_hash_of_wrong_length_rejected() -> None:
    t = tree(10)
    proof = merkle.inclusion_proof(t.list_reader, 3, 10)
    for bad in ([proof[0][:31], *proof[1:]], [proof[0] + b"\x00", *proof[1:]]):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(3, 10, t.leaves[3], bad, t.root)
    cproof = merkle.consistency_proof(t.list_reader, 3, 10)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 10, root_of(3), t.root, [cproof[0][:-1], *cproof[1:]])


# --- TreeEdge: the sequencer's right edge ------------------------------------------------


def test_edge_root_every_size_up_to_1100() -> None:
    """Appending one leaf at a time across the 255/256/257, 511/512/513 ... boundaries."""
    leaves = synthetic(1100, b"edge")
    edge = TreeEdge.empty()
    stored: dict[tuple[int, int], bytes] = {}
    # roots of every prefix, computed incrementally from RFC MTH over a compact range
    stack: list[tuple[int, bytes]] = []
    for n, leaf in enumerate(leaves, 1):
        stored.update(edge.append([leaf]))
        height, node = 0, leaf
        while stack and stack[-1][0] == height:
            node = merkle.node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        want = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            want = merkle.node_hash(left, want)
        assert edge.size == n
        assert edge.root() == want, n
        if n in (1, 255, 256, 257, 511, 512, 513, 767, 768, 1024, 1025, 1100):
            assert want == merkle.root_from_leaf_hashes(leaves[:n])
            _check_tiles(stored, leaves[:n])
            loaded = TreeEdge.load(n, lambda lv, ix: stored.get((lv, ix)))
            assert loaded.root() == want


def _check_tiles(stored: dict[tuple[int, int], bytes], leaves: list[bytes]) -> None:
    """Stored tiles are exactly tlog-tiles' tiles for this size: right level, index, width."""
    n = len(leaves)
    reader = merkle.ListHashReader(leaves)
    expected = {(lv, ix): w for lv, ix, w in tiles_for_size(n)}
    assert set(stored) == set(expected)
    for (lv, ix), width in expected.items():
        data = stored[(lv, ix)]
        assert len(data) == width * 32, (lv, ix, width)
        want = b"".join(
            reader.subtree(TILE_HEIGHT * lv, ix * 256 + k) for k in range(width)
        )
        assert data == want, (lv, ix)


@pytest.mark.parametrize("batch", [1, 7, 1000, 70000])
def test_edge_tile_boundaries_65536(batch: int) -> None:
    """Sizes 255, 256, 257, 65535, 65536, 65537 (and a level-2 partial tile), in batches."""
    n_total = 65536 + 300
    leaves = synthetic(n_total, b"big")
    checkpoints = {255, 256, 257, 65535, 65536, 65537, n_total}
    edge = TreeEdge.empty()
    stored: dict[tuple[int, int], bytes] = {}
    pos = 0
    roots_seen = 0
    while pos < n_total:
        nxt = min(n_total, pos + batch)
        # stop exactly on each boundary we want to look at
        for c in sorted(checkpoints):
            if pos < c < nxt:
                nxt = c
                break
        stored.update(edge.append(leaves[pos:nxt]))
        pos = nxt
        if pos in checkpoints:
            roots_seen += 1
            want = merkle.root_from_leaf_hashes(leaves[:pos])
            assert edge.root() == want, pos
            loaded = TreeEdge.load(pos, lambda lv, ix: stored.get((lv, ix)))
            assert loaded.root() == want, pos
            tr = TileHashReader(lambda lv, ix: stored[(lv, ix)])
            assert merkle.tree_root(tr, pos) == want
            if pos >= 65536:
                assert len(stored[(2, 0)]) == 32  # one level-2 hash: the 65536-leaf root
                assert stored[(2, 0)] == merkle.root_from_leaf_hashes(leaves[:65536])
    assert roots_seen == len(checkpoints)
    assert set(stored) == {(lv, ix) for lv, ix, _ in tiles_for_size(n_total)}


def test_edge_load_rejects_short_tile() -> None:
    edge = TreeEdge.empty()
    stored = edge.append(synthetic(300))
    short = dict(stored)
    short[(0, 1)] = short[(0, 1)][:-32]
    with pytest.raises(ValueError):
        TreeEdge.load(300, lambda lv, ix: short.get((lv, ix)))
    with pytest.raises(ValueError):
        TreeEdge.load(300, lambda lv, ix: None if (lv, ix) == (1, 0) else stored.get((lv, ix)))


def test_hashes_of_the_wrong_length_are_rejected() -> None:
    h = hashlib.sha256(b"x").digest()
    with pytest.raises(ProofError, match="bytes"):
        merkle.verify_consistency(1, 1, b"short", b"short", [])
    with pytest.raises(ProofError, match="bytes"):
        merkle.verify_inclusion(0, 1, h, [], b"short")
