"""The keyed fingerprint index: which recorded output does this text come from?

Each recorded output's normalised text (:func:`kansa.provenance.normalise.normalise`)
becomes

* an **exact hash**: HMAC-SHA256 under the organisation's fingerprint key, 16 bytes;
* a **MinHash signature** (:data:`PERMS` values) over its character :data:`NGRAM`-grams,
  each first hashed under secrets derived from the key (:meth:`ngram_hashes`): without
  the key nobody can compute a signature, so the index cannot be probed with guessed
  text, and it holds no readable content (n-grams are never stored, only minima of
  keyed hashes);
* :data:`BANDS` **LSH band keys** (:data:`ROWS` signature values each, hashed): two
  outputs whose n-gram sets have Jaccard similarity J share at least one band with
  probability 1 - (1 - J^ROWS)^BANDS (J = 0.35: 99.96%; J = 0.02: 2.5%), and at least
  :data:`MIN_BANDS` (J = 0.35: 99.7%; J = 0.03: 0.16%).

A lookup computes the query's band keys, takes the outputs sharing at least
:data:`MIN_BANDS` bands (an indexed point query per band), and scores each candidate by
its stored signature: estimated Jaccard, and the estimated share of the query's n-grams
found in the output (containment). A candidate matches if the Jaccard estimate reaches
:data:`JACCARD` (or containment is high). Character n-grams survive copy-editing (a
changed word spoils the n-grams around it only), truncation (half a text keeps J ~ 0.5)
and reordering of sentences (a set has no order); they do not survive paraphrase.

Rows are filed under the record's erasure group (the subject's pseudonym, as the vault
files content): erasing the subject deletes them with SQLite's ``secure_delete`` on and
checkpoints the WAL, so their bytes leave the database files (tested on the bytes).

Tables (component ``provenance`` in the migrations registry): ``provenance_outputs``
(one row per indexed output: log index, group, exact hash, signature, n-gram count) and
``provenance_bands`` (band key, log index).
"""

from __future__ import annotations

import contextlib
import hmac
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from kansa.errors import KansaError
from kansa.ledger import migrations
from kansa.ledger.migrations import Migration
from kansa.ledger.storage import Store
from kansa.provenance.normalise import normalise

NGRAM = 9  # characters per n-gram: 5 matched too much unrelated prose (bench/provenance.py)
PERMS = 128  # MinHash values per signature
ROWS = 2  # signature values per LSH band
BANDS = PERMS // ROWS
MIN_BANDS = 2  # bands a candidate must share with the query (one alone is mostly noise)
MIN_NGRAMS = 24  # below this a text is too short to fingerprint: exact hash only
# measured (bench/provenance.py, n = 9): unrelated human prose reaches J 0.08 at most;
# 20% word edits leave J >= 0.35, half a text J >= 0.39, reordering J >= 0.8 (1st pct)
JACCARD = 0.2  # estimated Jaccard at or above which a candidate matches
# or: estimated share of the query's n-grams found in the output (a short excerpt of a
# long answer), with some Jaccard: the estimate is noisy when the output is much longer
CONTAINMENT, CONTAINMENT_MIN_JACCARD = 0.8, 0.1

COMPONENT = "provenance"
_SQLITE = (
    "CREATE TABLE IF NOT EXISTS provenance_outputs (idx BIGINT PRIMARY KEY,"
    " grp TEXT NOT NULL, exact BLOB NOT NULL, sig BLOB, ngrams INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS provenance_outputs_exact ON provenance_outputs (exact)",
    "CREATE INDEX IF NOT EXISTS provenance_outputs_grp ON provenance_outputs (grp)",
    "CREATE TABLE IF NOT EXISTS provenance_bands (band BIGINT NOT NULL, idx BIGINT NOT NULL,"
    " PRIMARY KEY (band, idx)) WITHOUT ROWID",
)
_PG = tuple(s.replace("BLOB", "BYTEA").replace(" WITHOUT ROWID", "") for s in _SQLITE)
migrations.register(COMPONENT, [Migration(1, "fingerprint index", _SQLITE, _PG)])

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class Fingerprint:
    exact: bytes  # 16 bytes
    sig: np.ndarray | None  # uint32[PERMS]; None: too short to fingerprint
    ngrams: int

    def bands(self) -> list[int]:
        if self.sig is None:
            return []
        s = self.sig.astype(np.uint64)
        pairs = (s[0::2] << np.uint64(32)) | s[1::2]
        # mix each band's two values with its position (splitmix64's finaliser): a band key
        # is a 64-bit number that says nothing without the signature's key
        z = pairs + np.arange(1, BANDS + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        return [int(v) for v in z.astype(np.int64)]


@dataclass(frozen=True)
class Match:
    index: int  # the record's index in the log
    method: str  # "exact" or "fingerprint"
    jaccard: float  # estimated (1.0 for exact)
    containment: float  # estimated share of the query's n-grams in the output


class Fingerprinter:
    """Keyed fingerprints (see the module's description). ``key``: 32 bytes, the
    organisation's fingerprint key (:func:`kansa.provenance.keys.ProvenanceKeys`)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise KansaError("the fingerprint key must be at least 16 bytes")
        self._exact_key = hmac.new(key, b"kansa/fingerprint/exact/v1", "sha256").digest()
        seed = hmac.new(key, b"kansa/fingerprint/perm/v1", "sha512").digest()
        rng = np.random.default_rng(int.from_bytes(seed, "big"))
        # multiply-shift hashing (odd multipliers, 64-bit wrap-around): one permutation each
        self._a = rng.integers(0, 2**63, PERMS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, PERMS, dtype=np.uint64)
        self._base = np.uint64(int(rng.integers(0, 2**62)) * 2 + 1)
        self._xor = np.uint64(int(rng.integers(0, 2**63)))

    def exact(self, norm: str) -> bytes:
        return hmac.new(self._exact_key, norm.encode(), "sha256").digest()[:16]

    def ngram_hashes(self, norm: str) -> np.ndarray:
        """The distinct keyed hashes of ``norm``'s character n-grams (uint64).

        Vectorised (a few tens of microseconds per answer, where a BLAKE2b call per n-gram
        took milliseconds): a polynomial hash of the n code points under a secret odd
        base, then splitmix64's finaliser over it XOR a secret word. Both secrets come
        from the key; without them no n-gram's hash, hence no signature, can be computed.
        """
        if len(norm) < NGRAM:
            return np.zeros(0, dtype=np.uint64)
        c = np.frombuffer(norm.encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        m = len(c) - NGRAM + 1
        with np.errstate(over="ignore"):
            h = np.zeros(m, dtype=np.uint64)
            for j in range(NGRAM):
                h = h * self._base + c[j:j + m]
            z = h ^ self._xor
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        return np.unique(z)

    def fingerprint(self, text: str, *, normalised: bool = False) -> Fingerprint:
        norm = text if normalised else normalise(text)
        h = self.ngram_hashes(norm)
        if len(h) < MIN_NGRAMS:
            return Fingerprint(self.exact(norm), None, len(h))
        with np.errstate(over="ignore"):
            v = (h[None, :] * self._a[:, None] + self._b[:, None]) >> np.uint64(32)
        return Fingerprint(self.exact(norm), v.min(axis=1).astype(np.uint32), len(h))


def _score(q: Fingerprint, sig: bytes, ngrams: int) -> tuple[float, float]:
    assert q.sig is not None
    j = float(np.count_nonzero(np.frombuffer(sig, dtype="<u4") == q.sig)) / PERMS
    # |Q ∩ S| = J (|Q| + |S|) / (1 + J); containment = |Q ∩ S| / |Q|
    c = j * (q.ngrams + ngrams) / ((1 + j) * q.ngrams) if q.ngrams else 0.0
    return j, min(1.0, c)


class FingerprintIndex:
    """The index over ``store`` (its own tables; see the module's description)."""

    def __init__(self, store: Store, key: bytes) -> None:
        self.store = store
        self.fp = Fingerprinter(key)
        migrations.ensure(store, COMPONENT)

    def add(self, index: int, group: str, text: str) -> Fingerprint:
        """Index the output of the record at log ``index``, filed under ``group``."""
        f = self.fp.fingerprint(text)
        self.add_many([(index, group, f)])
        return f

    def add_many(self, rows: Sequence[tuple[int, str, Fingerprint]]) -> None:
        if not rows:
            return
        outs: list[Any] = []
        bands: list[Any] = []
        for index, group, f in rows:
            sig = None if f.sig is None else f.sig.astype("<u4").tobytes()
            outs.append((index, group, f.exact, sig, f.ngrams))
            bands.extend((band, index) for band in f.bands())
        with _txn(self.store):
            for chunk in _chunks(outs, 200):
                self.store.execute(
                    "INSERT INTO provenance_outputs (idx, grp, exact, sig, ngrams) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                    + " ON CONFLICT (idx) DO NOTHING", [v for r in chunk for v in r])
            for chunk in _chunks(bands, 400):
                self.store.execute(
                    "INSERT INTO provenance_bands (band, idx) VALUES "
                    + ", ".join(["(?, ?)"] * len(chunk))
                    + " ON CONFLICT (band, idx) DO NOTHING", [v for r in chunk for v in r])

    def lookup(self, text: str, *, limit: int = 5) -> list[Match]:
        """The outputs ``text`` most likely comes from, best first: an exact normalised
        match first, then fingerprint matches above the thresholds."""
        q = self.fp.fingerprint(text)
        out: list[Match] = []
        seen: set[int] = set()
        for (idx,) in self.store.query(
                "SELECT idx FROM provenance_outputs WHERE exact = ? ORDER BY idx LIMIT ?",
                (q.exact, limit)):
            out.append(Match(int(idx), "exact", 1.0, 1.0))
            seen.add(int(idx))
        if q.sig is None:
            return out
        bands = q.bands()
        counts: Counter[int] = Counter(int(r[0]) for r in self.store.query(
            f"SELECT idx FROM provenance_bands WHERE band IN ({','.join('?' * len(bands))})",
            bands))
        cands = [i for i, n in counts.items() if n >= MIN_BANDS and i not in seen]
        scored: list[Match] = []
        for chunk in _chunks(cands, 500):
            marks = ",".join("?" * len(chunk))
            for idx, sig, ngrams in self.store.query(
                    f"SELECT idx, sig, ngrams FROM provenance_outputs WHERE idx IN ({marks})"
                    " AND sig IS NOT NULL", chunk):
                j, c = _score(q, bytes(sig), int(ngrams))
                if j >= JACCARD or (c >= CONTAINMENT and j >= CONTAINMENT_MIN_JACCARD):
                    scored.append(Match(int(idx), "fingerprint", round(j, 4), round(c, 4)))
        scored.sort(key=lambda m: (-max(m.jaccard, m.containment), m.index))
        return (out + scored)[:limit]

    def indexed(self, index: int) -> bool:
        return bool(self.store.query("SELECT 1 FROM provenance_outputs WHERE idx = ?",
                                     (index,)))

    def count(self) -> int:
        return int(self.store.query("SELECT COUNT(*) FROM provenance_outputs")[0][0])

    def erase_group(self, group: str) -> int:
        """Delete every fingerprint filed under ``group`` (a subject's pseudonym) so that
        their bytes leave the store's files (SQLite: ``secure_delete`` and a WAL
        checkpoint; PostgreSQL: the rows, then ``VACUUM FULL`` of the two tables).
        Returns how many outputs were removed."""
        rows = self.store.query("SELECT idx FROM provenance_outputs WHERE grp = ?", (group,))
        if not rows:
            return 0
        idxs = [int(r[0]) for r in rows]
        sqlite = self.store.dialect == "sqlite"
        if sqlite:
            self.store.execute("PRAGMA secure_delete = ON")
        try:
            with _txn(self.store):
                for chunk in _chunks(idxs, 500):
                    marks = ",".join("?" * len(chunk))
                    self.store.execute(
                        f"DELETE FROM provenance_bands WHERE idx IN ({marks})", chunk)
                    self.store.execute(
                        f"DELETE FROM provenance_outputs WHERE idx IN ({marks})", chunk)
        finally:
            if sqlite:
                self.store.execute("PRAGMA secure_delete = OFF")
        if sqlite:
            self.store.scrub()
        else:
            for table in ("provenance_bands", "provenance_outputs"):
                with contextlib.suppress(Exception):  # needs the table owner; best effort
                    self.store.execute(f"VACUUM FULL {table}")
        return len(idxs)

    def size_bytes(self) -> int | None:
        """Bytes the index's tables and indexes take (SQLite: dbstat; else None)."""
        if self.store.dialect != "sqlite":
            got = self.store.query(
                "SELECT pg_total_relation_size('provenance_outputs')"
                " + pg_total_relation_size('provenance_bands')")
            return int(got[0][0])
        try:
            got = self.store.query(
                "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'provenance_%'")
        except KansaError:
            return None
        return int(got[0][0] or 0)


T = TypeVar("T")


def _chunks(items: Sequence[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield list(items[i:i + n])


@contextlib.contextmanager
def _txn(store: Store) -> Iterator[None]:
    """One transaction on this thread's connection (the stores' connections autocommit).
    SQLite takes the write lock at BEGIN so two writers never deadlock on an upgrade."""
    store.execute("BEGIN IMMEDIATE" if store.dialect == "sqlite" else "BEGIN")
    try:
        yield
    except BaseException:
        store.execute("ROLLBACK")
        raise
    store.execute("COMMIT")
