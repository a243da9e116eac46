"""The tamper-evident log: RFC 9162 Merkle tree, C2SP checkpoints, tiles, proofs, storage.

This layer stores opaque entries. It knows nothing of usage records, HTTP or laws.
"""
