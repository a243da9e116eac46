"""Reversible pseudonyms for personal data and secrets, keyed per data subject.

Before a call leaves, each value a detector found is replaced by a token such as
``<EMAIL_3f9a0c21>``; the answer that comes back has its tokens put back
(:func:`restore`). The token is ``HMAC-SHA256(k, kind || value)`` cut to 8 hex digits
(longer on a collision within one mapping), with ``k`` derived from the subject's vault
key (:class:`VaultKeyring`): the same value gets the same token for one subject, in every
call (a conversation's history stays consistent), and different tokens for two subjects
(tokens do not link people across subjects).

The mapping token -> value lives in memory for the call (:class:`PseudonymMap`) and, when
a store is given, in the table ``guard_pseudonyms`` (:class:`PseudonymStore`), each value
sealed with AES-256-GCM under a key derived from the same subject key. Erasing the subject
(:meth:`kansa.vault.Vault.erase`) destroys that key and scrubs the key tables, so every
copy of a sealed value, in live rows, freed pages or WAL frames, becomes unreadable; the
store also deletes the rows of erased subjects at its next write. Clear values are never
written anywhere: not into the table, nor into record attributes (those hold kinds,
counts and keyed hashes, :func:`keyed_hash`).

Pure functions: :func:`pseudonymise` (body, keyring, subject) -> (body, mapping) and
:func:`restore` (body, mapping) -> (body, count). A *body* is a JSON value (a request or
answer body as parsed): strings inside are scanned, except under structural keys
(:data:`SKIP_KEYS`: model, role, ids, tool names, data URLs); a string under
``arguments`` (tool-call arguments, JSON in a string) is parsed, walked and written back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kansa.errors import ErasedError, GuardError
from kansa.guard.findings import Finding
from kansa.ledger import migrations
from kansa.ledger.migrations import Migration

if TYPE_CHECKING:
    from kansa.guard.ner import NerScanner
    from kansa.ledger.storage import Store
    from kansa.vault import Vault

__all__ = ["SKIP_KEYS", "TOKEN", "Keyring", "PseudonymMap", "PseudonymStore", "StaticKeyring",
           "VaultKeyring", "keyed_hash", "pseudonymise", "redact", "restore", "scan_text",
           "walk_strings"]

# keys whose string values are structure, not content: never scanned or rewritten
SKIP_KEYS = frozenset({"model", "role", "type", "id", "tool_call_id", "call_id", "name",
                       "image_url", "url", "input_audio", "audio", "data", "format",
                       "response_format", "tool_choice", "stop", "object", "finish_reason",
                       "stop_reason", "signature", "media_type", "source", "encrypted_content"})
TOKEN = re.compile(r"<([A-Z][A-Z0-9_]*?)_([0-9a-f]{8,32})>")
_ARGUMENT_KEYS = frozenset({"arguments"})  # JSON carried in a string (OpenAI tool calls)
_MIN_HEX = 8


# -- keys ---------------------------------------------------------------------------------------


class Keyring(Protocol):
    """Where per-subject secrets come from: ``secret(subject)`` -> (group, 32 bytes). The
    group names the subject's erasure group (the vault's pseudonym), never the subject."""

    def secret(self, subject: str | None) -> tuple[str, bytes]: ...


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"kansa/guard/" + label, "sha256").digest()


class VaultKeyring:
    """Per-subject secrets derived from the vault's subject keys (so the vault's erasure
    destroys them). Subjects without a name share the vault's anonymous key."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def secret(self, subject: str | None) -> tuple[str, bytes]:
        sk = self.vault.subject_key(subject)
        assert sk is not None  # create=True
        return sk.pseudonym, _derive(sk.key, b"pseudonym/v1")

    @property
    def store(self) -> Store:
        return self.vault._store


class StaticKeyring:
    """Per-subject secrets derived from one 32-byte key (no vault, nothing erasable):
    for the SDK without a ledger, the CLI and tests of the pure functions."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise GuardError("a keyring key must be 32 bytes")
        self._key = key

    def secret(self, subject: str | None) -> tuple[str, bytes]:
        name = ("" if subject is None else subject).encode()
        k = hmac.new(self._key, b"kansa/guard/subject/v1\x00" + name, "sha256").digest()
        return hashlib.sha256(b"kansa/guard/group/v1" + k).hexdigest()[:32], k


def keyed_hash(secret: bytes, kind: str, value: str) -> str:
    """``kind:<16 hex>``, the value's HMAC under the subject's secret: what records may
    hold about a value (equal values of one subject are linkable, nothing is readable,
    and erasing the subject makes even that link unrecoverable)."""
    mac = hmac.new(_derive(secret, b"hash/v1"), f"{kind}\x00{value}".encode(), "sha256")
    return f"{kind}:{mac.hexdigest()[:16]}"


# -- the mapping -------------------------------------------------------------------------------


@dataclass
class PseudonymMap:
    """token -> value for one subject (``group``); ``secret`` makes the tokens."""

    group: str
    secret: bytes = field(repr=False)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    new: list[str] = field(default_factory=list, repr=False)  # tokens not yet stored

    def token(self, kind: str, value: str) -> str:
        """The token for ``value`` (the same one each time for this subject)."""
        known = self._by_value.get((kind, value))
        if known is not None:
            return known
        label = kind.upper()
        mac = hmac.new(_derive(self.secret, b"token/v1"), f"{kind}\x00{value}".encode(),
                       "sha256").hexdigest()
        n = _MIN_HEX
        while True:
            tok = f"<{label}_{mac[:n]}>"
            if self.tokens.get(tok, value) == value:
                break
            n += 4  # two values share a prefix in this mapping: a longer token
        self.tokens[tok] = value
        self._by_value[(kind, value)] = tok
        self.new.append(tok)
        return tok

    def add(self, token: str, value: str) -> None:
        """A token known from earlier (the store)."""
        self.tokens.setdefault(token, value)

    def __len__(self) -> int:
        return len(self.tokens)


# -- scanning and walking ----------------------------------------------------------------------

Scanner = Callable[[str], list[Finding]]


def scan_text(text: str, *, secrets: bool = True, pii: bool = True,
              kinds: Collection[str] | None = None, min_score: float = 0.5,
              channel: str = "user", ner: NerScanner | None = None) -> list[Finding]:
    """Secrets and personal data in ``text``, one finding per stretch (tokens this module
    wrote are never findings); ``ner``: names and places by the optional GiNZA model
    too (:mod:`kansa.guard.ner`)."""
    from kansa.guard.pii import PII_KINDS, scan_pii
    from kansa.guard.secrets import resolve_overlaps, scan_secrets

    found: list[Finding] = []
    if secrets:
        found += [f for f in scan_secrets(text, channel)
                  if f.score >= min_score and (kinds is None or f.kind in kinds)]
    if pii:
        pk = None if kinds is None else [k for k in kinds if k in PII_KINDS]
        if pk is None or pk:
            found += scan_pii(text, channel, kinds=pk, min_score=min_score)
        if ner is not None:
            found += [f for f in ner.scan(text, channel)
                      if f.score >= min_score and (kinds is None or f.kind in kinds)]
    if not found:
        return found
    tokens = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
    if tokens:
        found = [f for f in found if all(f.end <= s or f.start >= e for s, e in tokens)]
    return resolve_overlaps(found)


def walk_strings(body: Any, fn: Callable[[str, str], str], key: str = "") -> Any:
    """``body`` with every content string ``s`` (under key ``k``) replaced by
    ``fn(s, k)``; structural keys (:data:`SKIP_KEYS`) untouched; a new object only where
    something changed (the rest is shared)."""
    if isinstance(body, str):
        if key in _ARGUMENT_KEYS:
            return _walk_json_string(body, fn)
        return fn(body, key)
    if isinstance(body, dict):
        out: dict[str, Any] | None = None
        for k, v in body.items():
            if k in SKIP_KEYS and isinstance(v, str):
                continue
            nv = walk_strings(v, fn, k)
            if nv is not v:
                if out is None:
                    out = dict(body)
                out[k] = nv
        return body if out is None else out
    if isinstance(body, list):
        new = [walk_strings(v, fn, key) for v in body]
        return body if all(a is b for a, b in zip(new, body, strict=True)) else new
    return body


def _walk_json_string(s: str, fn: Callable[[str, str], str]) -> str:
    """A JSON document carried in a string: walk its strings, write it back if changed;
    if it does not parse (a partial stream), treat it as text whose replacements must be
    JSON-escaped."""
    try:
        doc = json.loads(s)
    except ValueError:
        return fn(s, "arguments")
    new = walk_strings(doc, fn)
    return s if new is doc else json.dumps(new, ensure_ascii=False)


def _replace(text: str, found: list[Finding], sub: Callable[[Finding, str], str]) -> str:
    parts: list[str] = []
    at = 0
    for f in found:
        parts.append(text[at:f.start])
        parts.append(sub(f, text[f.start:f.end]))
        at = f.end
    parts.append(text[at:])
    return "".join(parts)


def pseudonymise(body: Any, keyring: Keyring, subject: str | None, *,
                 mapping: PseudonymMap | None = None,
                 scan: Scanner | None = None,
                 only: Callable[[Finding], bool] | None = None,
                 ) -> tuple[Any, PseudonymMap, list[Finding]]:
    """``body`` with every value found replaced by its subject-keyed token; returns the
    new body (``body`` itself is not changed), the mapping (``mapping`` extended, or a new
    one) and the findings (their spans are in the strings as they were). ``only``: which
    findings to pseudonymise (the others are left and still returned)."""
    group, secret = keyring.secret(subject)
    m = mapping if mapping is not None else PseudonymMap(group, secret)
    if m.group != group:
        raise GuardError("a pseudonym mapping is used with another subject's key")
    scanner = scan or scan_text
    seen: list[Finding] = []

    def one(s: str, key: str) -> str:
        found = scanner(s)
        if not found:
            return s
        seen.extend(found)
        act = [f for f in found if only is None or only(f)]
        return _replace(s, act, lambda f, v: m.token(f.kind, v)) if act else s

    return walk_strings(body, one), m, seen


def redact(body: Any, *, scan: Scanner | None = None,
           only: Callable[[Finding], bool] | None = None) -> tuple[Any, list[Finding]]:
    """``body`` with every value found replaced by ``[REDACTED:KIND]`` (irreversible)."""
    scanner = scan or scan_text
    seen: list[Finding] = []

    def one(s: str, key: str) -> str:
        found = scanner(s)
        if not found:
            return s
        seen.extend(found)
        act = [f for f in found if only is None or only(f)]
        return _replace(s, act, lambda f, v: f"[REDACTED:{f.kind.upper()}]") if act else s

    return walk_strings(body, one), seen


def restore(body: Any, mapping: Mapping[str, str] | PseudonymMap) -> tuple[Any, int]:
    """``body`` with every token of ``mapping`` put back (in tool-call arguments,
    JSON-escaped); returns the new body and how many tokens were restored. Tokens the
    mapping does not know stay as they are."""
    tokens = mapping.tokens if isinstance(mapping, PseudonymMap) else mapping
    if not tokens:
        return body, 0
    count = 0

    def one(s: str, key: str) -> str:
        nonlocal count
        if "<" not in s:
            return s

        def sub(m: re.Match[str]) -> str:
            nonlocal count
            v = tokens.get(m.group())
            if v is None:
                return m.group()
            count += 1
            return json.dumps(v, ensure_ascii=False)[1:-1] if key == "arguments" else v

        return TOKEN.sub(sub, s)

    return walk_strings(body, one), count


# -- the store ------------------------------------------------------------------------------

COMPONENT = "guard_pseudonyms"
_TABLE = ("CREATE TABLE IF NOT EXISTS guard_pseudonyms (grp TEXT NOT NULL, token TEXT NOT NULL,"
          " data BLOB NOT NULL, PRIMARY KEY (grp, token))")
_TABLE_PG = _TABLE.replace("BLOB", "BYTEA")
migrations.register(COMPONENT, [Migration(1, "guard pseudonym mappings", (_TABLE,),
                                          (_TABLE_PG,))])


class PseudonymStore:
    """The token -> value mappings of every subject, each value sealed (AES-256-GCM) under
    a key derived from the subject's vault key, the group and token as associated data.
    Rows of erased subjects are deleted at the first write after an erasure (the sealed
    bytes were unreadable from the erasure on)."""

    def __init__(self, keyring: VaultKeyring) -> None:
        self.keyring = keyring
        self.store = keyring.store
        migrations.ensure(self.store, COMPONENT)
        self._saved: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._generation = -1

    @staticmethod
    def _aead(secret: bytes) -> AESGCM:
        return AESGCM(_derive(secret, b"mapping/v1"))

    def _purge_erased(self) -> None:
        gen = self.store.erasure_generation()
        if gen == self._generation:
            return
        self.store.execute("DELETE FROM guard_pseudonyms WHERE grp IN"
                           " (SELECT grp FROM erased_groups)")
        with self._lock:
            self._generation = gen
            self._saved.clear()

    def save(self, mapping: PseudonymMap) -> int:
        """Store the mapping's new tokens; returns how many rows were written."""
        self._purge_erased()
        aead = self._aead(mapping.secret)
        rows = []
        for tok in mapping.new:
            if (mapping.group, tok) in self._saved:
                continue
            nonce = os.urandom(12)
            ad = f"{mapping.group}\x00{tok}".encode()
            rows.append((mapping.group, tok,
                         nonce + aead.encrypt(nonce, mapping.tokens[tok].encode(), ad)))
        mapping.new.clear()
        for r in rows:
            self.store.execute("INSERT INTO guard_pseudonyms (grp, token, data) VALUES (?, ?, ?)"
                               " ON CONFLICT DO NOTHING", r)
        with self._lock:
            self._saved.update((r[0], r[1]) for r in rows)
        return len(rows)

    def load(self, subject: str | None, tokens: Collection[str] | None = None,
             ) -> PseudonymMap:
        """The stored mapping of ``subject`` (only ``tokens`` if given). A subject erased
        since: its vault key is new, so nothing of the old mapping opens (ErasedError if
        rows remain that do not)."""
        group, secret = self.keyring.secret(subject)
        m = PseudonymMap(group, secret)
        rows = self.store.query("SELECT token, data FROM guard_pseudonyms WHERE grp = ?",
                                (group,))
        aead = self._aead(secret)
        for tok, data in rows:
            tok = str(tok)
            if tokens is not None and tok not in tokens:
                continue
            blob = bytes(data)
            try:
                value = aead.decrypt(blob[:12], blob[12:], f"{group}\x00{tok}".encode())
            except InvalidTag:
                raise ErasedError(f"a pseudonym of this subject does not open ({tok})") from None
            m.add(tok, value.decode())
        return m
