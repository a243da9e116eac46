"""Per-data-subject content encryption, commitments and crypto-shredding.

Every data subject gets a random 256-bit key, stored wrapped (AES-256-GCM) under the
installation's master key. From that subject key we derive, per record:

- the commitment salt: HMAC-SHA256(subject key, "kansa/salt/v1" || record id); the entry
  holds SHA-256(salt || canonical content), so low-entropy content cannot be guessed
  from the public log;
- the subject's pseudonym, HMAC-SHA256(subject key, "kansa/pseudonym/v1"): entries name
  the subject only by it, never in clear.

The content itself is encrypted with AES-256-GCM under the subject key (record id as
associated data). Erasure destroys the wrapped key and the ciphertexts: afterwards
content, salts and the link between pseudonym and person are gone, while every entry,
and so every proof, is unchanged. (Design after crypto-shredding; not legal advice.)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kansa._random import random_bytes
from kansa.errors import ErasedError, KansaError
from kansa.ledger.storage import Store

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


class Vault:
    def __init__(self, store: Store, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise KansaError("the master key must be 32 bytes")
        self._store = store
        self._master = master_key
        self._wrap = AESGCM(hmac.new(master_key, b"kansa/wrap/v1", "sha256").digest())
        self._by_subject: dict[str, SubjectKey] = {}
        self._by_pseudonym: dict[str, SubjectKey] = {}
        self._lock = threading.Lock()

    def ref(self, subject: str) -> str:
        return hmac.new(self._master, b"kansa/subject-ref/v1\x00" + subject.encode(),
                        "sha256").hexdigest()[:32]

    def _unwrap(self, ref: str, blob: bytes) -> bytes:
        try:
            return self._wrap.decrypt(blob[:12], blob[12:], ref.encode())
        except InvalidTag:
            raise KansaError(
                "a subject key does not decrypt under this master key (wrong KANSA_HOME?)"
            ) from None

    @staticmethod
    def _pseudonym(key: bytes) -> str:
        return hmac.new(key, b"kansa/pseudonym/v1", "sha256").hexdigest()[:32]

    def subject_key(self, subject: str | None, *, create: bool = True) -> SubjectKey | None:
        name = subject if subject is not None else ANONYMOUS
        with self._lock:
            cached = self._by_subject.get(name)
        if cached is not None:
            return cached
        ref = self.ref(name)
        stored = self._store.sealed_key(ref)
        if stored is None:
            if not create:
                return None
            key = os.urandom(32)
            nonce = os.urandom(12)
            wrapped = nonce + self._wrap.encrypt(nonce, key, ref.encode())
            stored = self._store.put_sealed_key_if_absent(ref, self._pseudonym(key), wrapped)
        key = self._unwrap(ref, stored[1])
        sk = SubjectKey(ref, key, self._pseudonym(key))
        with self._lock:
            self._by_subject[name] = sk
            self._by_pseudonym[sk.pseudonym] = sk
        return sk

    def key_of_pseudonym(self, pseudonym: str) -> SubjectKey | None:
        with self._lock:
            cached = self._by_pseudonym.get(pseudonym)
        if cached is not None:
            return cached
        stored = self._store.sealed_key_of_group(pseudonym)
        if stored is None:
            return None
        ref, blob = stored
        key = self._unwrap(ref, blob)
        sk = SubjectKey(ref, key, self._pseudonym(key))
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

    def erase(self, subject: str) -> tuple[str, int] | None:
        """Destroy the subject's key and content; return (pseudonym, contents destroyed)."""
        sk = self.subject_key(subject, create=False)
        if sk is None:
            return None
        n = self._store.erase_group(sk.ref, sk.pseudonym)
        with self._lock:
            self._by_subject = {k: v for k, v in self._by_subject.items() if v.ref != sk.ref}
            self._by_pseudonym.pop(sk.pseudonym, None)
        return sk.pseudonym, n
