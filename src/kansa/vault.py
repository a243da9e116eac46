"""Per-data-subject content encryption, commitments and crypto-shredding.

Every data subject gets a random 256-bit key. From that subject key we derive, per record:

- the commitment salt: HMAC-SHA256(subject key, "kansa/salt/v1" || record id); the entry
  holds SHA-256(salt || canonical content), so low-entropy content cannot be guessed
  from the public log;
- the subject's pseudonym, HMAC-SHA256(subject key, "kansa/pseudonym/v1"): entries name
  the subject only by it, never in clear.

The content itself is encrypted with AES-256-GCM under the subject key (record id as
associated data). Erasure destroys the subject key and the ciphertexts: afterwards
content, salts and the link between pseudonym and person are gone, while every entry,
and so every proof, is unchanged. (Design after crypto-shredding; not legal advice.)

Why a key hierarchy. Deleting a row does not delete its bytes: SQLite keeps old page
images in WAL frames (and, without secure_delete, in freed pages), PostgreSQL keeps dead
tuples until VACUUM, and plain VACUUM leaves their bytes in the page. Anyone with copies
of those files and the master key could unseal a deleted subject key from an old copy.
So a subject key is never sealed under the (long-lived) master key. Subject keys are
sealed (AES-256-GCM, ref as associated data) under one of 256 *key roots*, chosen by the
first two hex digits of the subject's ref; each root is a random key sealed under the
master key and stored in ``key_roots`` with a generation number. Erasing a subject, in
one transaction that excludes appends (``Store.erase_group``):

1. deletes the subject's sealed key and every ciphertext of its group;
2. *rotates its root*: a fresh root key, generation + 1, and every other key of that
   prefix (1/256 of the subjects) re-sealed under it. Every copy of the erased key that
   any old page may still hold was sealed under an older generation of that root;
3. then scrubs the key tables (``key_roots`` and, belt and braces, ``sealed_keys``):
   SQLite rewrites them with ``secure_delete`` on and checkpoints and truncates the WAL,
   PostgreSQL rewrites them with ``VACUUM FULL``. Both tables are small.

What must be destroyed for real is thus the key tables, never the ciphertexts: attachment
bytes that survive anywhere (dead tuples, unused page space) are sealed under a key of
which no copy can be unsealed any more. The alternative, overwriting every old copy of
every ciphertext, cannot be done under a live process on PostgreSQL (only VACUUM FULL of
the whole attachments table, which locks out appends, removes dead tuples' bytes), and
a key hierarchy in which a subject key is *derived* from a rotating key would force
re-encrypting every other subject's content at each erasure. What this does not reach
(backups, PostgreSQL WAL segments until recycled, file-system blocks of truncated files)
is listed in docs/design/erasure.md.

Processes that cached keys. Every erasure bumps the store's erasure generation; a vault
re-reads it (at most every ``erasure_poll`` seconds) before using a cached key, and on a
change drops every cached key and root: the next record of an erased subject gets a new
key (and pseudonym), which a later erasure destroys in turn. Within the poll window a
record may still be sealed under the old key; the store's ``attachments_not_erased``
trigger refuses to store content for an erased group, in the transaction that commits
the entry, so such content is never written (the record reads as erased).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kansa._random import random_bytes
from kansa.errors import ErasedError, KansaError
from kansa.ledger.storage import SealedKey, Store

ANONYMOUS = "\x00anonymous"  # records with no data subject share one erasable key
_FORMAT = b"\x01"


@dataclass(frozen=True)
class SubjectKey:
    ref: str  # where the wrapped key is stored: HMAC(master, subject), not the subject
    key: bytes
    pseudonym: str
    aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", AESGCM(self.key))

    def salt(self, record_id: str) -> bytes:
        return hmac.new(self.key, b"kansa/salt/v1\x00" + record_id.encode(), "sha256").digest()


def commitment(salt: bytes, content: bytes) -> str:
    return hashlib.sha256(salt + content).hexdigest()


_PREFIX = 2  # hex digits of the ref naming its key root: 256 roots


@dataclass(frozen=True)
class EraseResult:
    pseudonym: str | None  # None: no live key for the subject (only late content swept)
    contents_destroyed: int
    scrubbed: bool  # old page images made unreadable now (see Store.scrub)


class Vault:
    def __init__(self, store: Store, master_key: bytes, *, erasure_poll: float = 0.1) -> None:
        if len(master_key) != 32:
            raise KansaError("the master key must be 32 bytes")
        self._store = store
        self._master = master_key
        self._wrap = AESGCM(hmac.new(master_key, b"kansa/wrap/v1", "sha256").digest())
        self._by_subject: dict[str, SubjectKey] = {}
        self._by_pseudonym: dict[str, SubjectKey] = {}
        self._roots: dict[str, tuple[int, AESGCM]] = {}
        self._lock = threading.Lock()
        # seconds between checks of the store's erasure generation; 0: before every use
        # of a cached key (one indexed read). The trigger covers the window either way.
        self.erasure_poll = erasure_poll
        self._generation = store.erasure_generation()
        self._checked = time.monotonic()

    def ref(self, subject: str) -> str:
        return hmac.new(self._master, b"kansa/subject-ref/v1\x00" + subject.encode(),
                        "sha256").hexdigest()[:32]

    # -- learning of erasures by other processes ------------------------------------------

    def refresh(self) -> bool:
        """Drop every cached key and root if an erasure happened since the last look;
        True if one did."""
        generation = self._store.erasure_generation()
        with self._lock:
            self._checked = time.monotonic()
            if generation == self._generation:
                return False
            self._generation = generation
            self._by_subject.clear()
            self._by_pseudonym.clear()
            self._roots.clear()
        return True

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._checked >= self.erasure_poll:
            self.refresh()

    # -- roots and sealing ------------------------------------------------------------------

    @staticmethod
    def _root_ad(prefix: str, gen: int) -> bytes:
        return f"kansa/root/v1\x00{prefix}\x00{gen}".encode()

    def _seal_root(self, prefix: str, gen: int, root: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._wrap.encrypt(nonce, root, self._root_ad(prefix, gen))

    def _open_root(self, prefix: str, gen: int, blob: bytes) -> AESGCM:
        try:
            return AESGCM(self._wrap.decrypt(blob[:12], blob[12:], self._root_ad(prefix, gen)))
        except InvalidTag:
            raise KansaError(
                "a key root does not decrypt under this master key (wrong KANSA_HOME?)"
            ) from None

    def _root(self, prefix: str, *, reload: bool = False) -> tuple[int, AESGCM]:
        with self._lock:
            cached = None if reload else self._roots.get(prefix)
        if cached is not None:
            return cached
        stored = self._store.key_root(prefix)
        if stored is None:
            stored = self._store.put_key_root_if_absent(
                prefix, self._seal_root(prefix, 1, os.urandom(32)))
        root = (stored[0], self._open_root(prefix, stored[0], stored[1]))
        with self._lock:
            self._roots[prefix] = root
        return root

    def _unseal(self, sealed: SealedKey, root: tuple[int, AESGCM] | None = None) -> bytes:
        """The subject key in ``sealed``, under ``root`` or the current root of its prefix
        (a key of schema 2, gen None, is sealed under the master key)."""
        ad = sealed.ref.encode()
        try:
            if sealed.gen is None:
                return self._wrap.decrypt(sealed.data[:12], sealed.data[12:], ad)
            if root is None or root[0] != sealed.gen:
                root = self._root(sealed.ref[:_PREFIX])
                if root[0] != sealed.gen:  # rotated since it was cached
                    root = self._root(sealed.ref[:_PREFIX], reload=True)
            if root[0] != sealed.gen:
                raise KansaError(f"subject key {sealed.ref} is sealed under root generation "
                                 f"{sealed.gen}, which is gone: read it again")
            return root[1].decrypt(sealed.data[:12], sealed.data[12:], ad)
        except InvalidTag:
            raise KansaError(
                "a subject key does not decrypt under this master key (wrong KANSA_HOME?)"
            ) from None

    @staticmethod
    def _seal_under(root: AESGCM, ref: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + root.encrypt(nonce, key, ref.encode())

    @staticmethod
    def _pseudonym(key: bytes) -> str:
        return hmac.new(key, b"kansa/pseudonym/v1", "sha256").hexdigest()[:32]

    def _load(self, sealed: SealedKey) -> SubjectKey:
        for _ in range(3):
            try:
                key = self._unseal(sealed)
                break
            except KansaError:
                # an erasure re-sealed the prefix between our two reads: read the key again
                again = self._store.sealed_key(sealed.ref)
                if again is None or again.gen == sealed.gen:
                    raise
                sealed = again
        else:
            key = self._unseal(sealed)
        return SubjectKey(sealed.ref, key, self._pseudonym(key))

    def subject_key(self, subject: str | None, *, create: bool = True) -> SubjectKey | None:
        name = subject if subject is not None else ANONYMOUS
        self._maybe_refresh()
        with self._lock:
            cached = self._by_subject.get(name)
        if cached is not None:
            return cached
        ref = self.ref(name)
        prefix = ref[:_PREFIX]
        stored = self._store.sealed_key(ref)
        while stored is None:
            if not create:
                return None
            gen, root = self._root(prefix)
            key = os.urandom(32)
            stored = self._store.put_sealed_key_if_absent(
                ref, self._pseudonym(key), self._seal_under(root, ref, key), (prefix, gen))
            if stored is None:  # the root was rotated under us: seal under the new one
                self._root(prefix, reload=True)
        sk = self._load(stored)
        with self._lock:
            self._by_subject[name] = sk
            self._by_pseudonym[sk.pseudonym] = sk
        return sk

    def key_of_pseudonym(self, pseudonym: str) -> SubjectKey | None:
        self._maybe_refresh()
        with self._lock:
            cached = self._by_pseudonym.get(pseudonym)
        if cached is not None:
            return cached
        stored = self._store.sealed_key_of_group(pseudonym)
        if stored is None:
            return None
        sk = self._load(stored)
        with self._lock:
            self._by_pseudonym[pseudonym] = sk
        return sk

    def seal(
        self, subject: str | None, record_id: str, content: bytes
    ) -> tuple[SubjectKey, str, bytes]:
        """Return (subject key, commitment hex, encrypted attachment) for one record."""
        sk = self.subject_key(subject)
        assert sk is not None
        nonce = random_bytes(12)
        ct = sk.aead.encrypt(nonce, content, record_id.encode())
        return sk, commitment(sk.salt(record_id), content), _FORMAT + nonce + ct

    def open(self, pseudonym: str, record_id: str, attachment: bytes | None,
             expected_commitment: str | None) -> bytes:
        """Decrypt a record's content and check it against the commitment in its entry."""
        erased = self._store.group_erased_at(pseudonym)
        if attachment is None:
            if erased is not None:
                raise ErasedError(f"the content of record {record_id} was erased with its subject")
            raise KansaError(f"record {record_id} has no stored content")
        sk = self.key_of_pseudonym(pseudonym)
        if sk is None:
            raise ErasedError(f"the key for record {record_id}'s subject was destroyed")
        if attachment[:1] != _FORMAT or len(attachment) < 29:
            raise KansaError(f"stored content of record {record_id} is malformed")
        try:
            content = sk.aead.decrypt(attachment[1:13], attachment[13:], record_id.encode())
        except InvalidTag:
            raise KansaError(f"stored content of record {record_id} fails authentication") from None
        if expected_commitment is not None and not hmac.compare_digest(
            commitment(sk.salt(record_id), content), expected_commitment
        ):
            raise KansaError(f"stored content of record {record_id} does not match its commitment")
        return content

    def _rotate(
        self, prefix: str, old: tuple[int, bytes] | None, gen: int, keys: list[SealedKey]
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """Inside the erasure's transaction: a new root for ``prefix`` at ``gen``, and the
        prefix's surviving keys re-sealed under it."""
        old_root = (old[0], self._open_root(prefix, old[0], old[1])) if old else None
        new_key = os.urandom(32)
        new_root = AESGCM(new_key)
        resealed = []
        for k in keys:
            if k.gen is None:  # schema 2: sealed under the master key
                key = self._wrap.decrypt(k.data[:12], k.data[12:], k.ref.encode())
            elif old_root is not None and k.gen == old_root[0]:
                key = old_root[1].decrypt(k.data[:12], k.data[12:], k.ref.encode())
            else:  # refuse rather than lose a key: the erasure rolls back
                raise KansaError(f"subject key {k.ref} is sealed under root generation {k.gen}"
                                 f" but the root is at {old_root[0] if old_root else None}")
            resealed.append((k.ref, self._seal_under(new_root, k.ref, key)))
        return self._seal_root(prefix, gen, new_key), resealed

    def erase(self, subject: str) -> EraseResult:
        """Destroy the subject's key and content, rotate its key root, sweep content that
        reached the store for any erased subject after its erasure, and scrub."""
        self.refresh()
        sk = self.subject_key(subject, create=False)
        if sk is None:
            n, scrubbed = self._store.erase_group(None, None, None, self._rotate)
            self.refresh()
            return EraseResult(None, n, scrubbed)
        # the root must exist before the transaction (a schema-2 key may have none yet):
        # creating it inside would race with a process creating it for a new key
        self._root(sk.ref[:_PREFIX])
        n, scrubbed = self._store.erase_group(sk.ref, sk.pseudonym, sk.ref[:_PREFIX],
                                              self._rotate)
        self.refresh()  # our own erasure bumped the generation: drop every cached key
        return EraseResult(sk.pseudonym, n, scrubbed)
