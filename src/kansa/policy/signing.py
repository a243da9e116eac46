"""Signed rule packs: a publisher's C2SP signed note over a pack's hash, and the trust store.

A pack file ``P.yaml`` is distributed with ``P.yaml.sig``, a C2SP signed note
(c2sp.org/signed-note, Ed25519) whose text is exactly five lines::

    kansa.dev/pack-signature/v1
    pack kansa.example/ai-logging
    version 2
    hash sha256:3f5c...        (the pack hash: SHA-256 of RFC 8785 JSON of the parsed pack)
    file sha256:9a0b...        (SHA-256 of the pack file's bytes, comments and all)

followed by a blank line and the publisher's signature line(s) (``— name base64``). The
pack hash ties the signature to what findings and activations name; the file hash makes
every byte the publisher shipped part of the statement, so an edited comment (which might
mislead a reader) is rejected too.

Verification trusts nothing but the verifier keys in the trust store
(``$KANSA_HOME/trusted_publishers/*.vkey``, one ``name+keyid+base64`` key per file). A
pack is rejected if it is unsigned, signed only by keys not trusted, changed after
signing, or if the signature speaks of another pack or version; a signature file that
is malformed or not in its one canonical encoding is rejected too (base64 with stray
padding bits would otherwise let a changed file still verify).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kansa.errors import FormatError, KeyFormatError, SignatureError
from kansa.ledger.note import ALG_ED25519, Note, Signer, Verifier, parse_note, sign_note
from kansa.policy.pack import Pack, PackError, PolicyError, parse_pack

ORIGIN = "kansa.dev/pack-signature/v1"
TRUST_DIR = "trusted_publishers"
MAX_SIG_BYTES = 64 * 1024  # a note with a few signatures is < 1 KiB


class PackSignatureError(PolicyError, SignatureError):
    """A pack's signature is missing, untrusted, invalid or does not match the pack."""


class UnsignedPackError(PackSignatureError):
    """The pack comes without a signature."""


class UntrustedSignerError(PackSignatureError):
    """No signature on the pack is by a trusted publisher key."""


class PackAlteredError(PackSignatureError):
    """The pack (or its signature) changed after it was signed."""


class WrongPackError(PackSignatureError):
    """The signature is for another pack id or version."""


class MalformedSignatureError(PackSignatureError):
    """The signature file is not a well-formed pack-signature note."""


class TrustStoreError(PolicyError):
    """The trust store holds an unreadable key, or a key cannot be added or removed."""


@dataclass(frozen=True)
class Statement:
    """What a publisher signs about one pack version."""

    pack: str
    version: str
    hash: str  # "sha256:<hex>" of the parsed pack
    file: str  # "sha256:<hex>" of the file's bytes

    def text(self) -> str:
        return (f"{ORIGIN}\npack {self.pack}\nversion {self.version}\nhash {self.hash}\n"
                f"file {self.file}\n")


@dataclass(frozen=True)
class SignedPack:
    """A pack whose signature verified, and by which trusted key."""

    pack: Pack
    statement: Statement
    signer: Verifier

    @property
    def signer_ref(self) -> str:
        return publisher_ref(self.signer)


_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_FIELD_RE = re.compile(r"^[\x21-\x7e]{1,128}$")  # ids and versions: printable ASCII, no space


def file_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def publisher_ref(v: Verifier) -> str:
    """``name+keyid``: how a publisher key is named in messages and ledger records."""
    return f"{v.name}+{v.key_id.hex()}"


def key_hash(v: Verifier) -> str:
    """SHA-256 of the verifier key string: the key's full identity (the key ID is 4 bytes)."""
    return "sha256:" + hashlib.sha256(v.vkey.encode()).hexdigest()


def parse_statement(text: str) -> Statement:
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) != 6:
        raise MalformedSignatureError(
            f"a pack signature's text has 5 lines ({ORIGIN}, pack, version, hash, file); "
            f"this one has {len(lines) - 1}")
    if lines[0] != ORIGIN:
        raise MalformedSignatureError(
            f"not a pack signature: first line is {lines[0][:80]!r}, expected {ORIGIN!r}")
    values: list[str] = []
    labels = ("pack", "version", "hash", "file")
    for n, (line, label) in enumerate(zip(lines[1:5], labels, strict=True), 2):
        head, _, value = line.partition(" ")
        if head != label or not _FIELD_RE.match(value):
            raise MalformedSignatureError(
                f"pack signature line {n} must be '{label} <value>', got {line[:80]!r}")
        if label in ("hash", "file") and not _HASH_RE.match(value):
            raise MalformedSignatureError(
                f"pack signature line {n}: {value[:80]!r} is not sha256:<64 hex digits>")
        values.append(value)
    return Statement(*values)


def sign_pack(pack_bytes: bytes, signer: Signer, *, name: str = "<pack>") -> bytes:
    """The signature note (``.sig`` file bytes) for a pack file's bytes.

    The pack is parsed first: a publisher never signs a pack that does not validate."""
    pack = _parse_bytes(pack_bytes, name)
    st = Statement(pack.id, pack.version, pack.hash, file_hash(pack_bytes))
    return sign_note(st.text(), signer).to_bytes()


def _parse_bytes(data: bytes, name: str) -> Pack:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PackError(f"{name}:{line}: not UTF-8 text") from None
    return parse_pack(text, name)


def _signed_by_trusted(note: Note, trusted: Sequence[Verifier]) -> Verifier:
    names = []
    for s in note.signatures:
        names.append(f"{s.name}+{s.key_id.hex()}")
        for v in trusted:
            if v.alg == ALG_ED25519 and s.name == v.name and s.key_id == v.key_id:
                if not v.verify_raw(note.text.encode(), s.signature):
                    raise PackAlteredError(
                        f"the signature by {publisher_ref(v)} does not verify: the signed "
                        "statement or the signature was changed after signing")
                return v
    if not trusted:
        raise UntrustedSignerError(
            f"signed by {', '.join(names)}, but no publisher key is trusted "
            "(add one with 'kansa packs trust add VKEY_FILE')")
    raise UntrustedSignerError(
        f"signed by {', '.join(names)}, none of which is a trusted publisher key "
        f"(trusted: {', '.join(publisher_ref(v) for v in trusted)})")


def _read_note(note_bytes: bytes | None, where: str) -> Note:
    if note_bytes is None or not note_bytes.strip():
        raise UnsignedPackError(f"{where} is unsigned: no signature (.sig) was supplied")
    if len(note_bytes) > MAX_SIG_BYTES:
        raise MalformedSignatureError(f"{where}: signature file is larger than {MAX_SIG_BYTES} "
                                      "bytes")
    try:
        note = parse_note(note_bytes)
    except FormatError as e:
        raise MalformedSignatureError(f"{where}: signature is not a signed note: {e}") from None
    if note.to_bytes() != note_bytes:
        raise MalformedSignatureError(
            f"{where}: signature is not in canonical signed-note encoding (altered?)")
    return note


def read_signature(note_bytes: bytes | None, trusted: Sequence[Verifier],
                   *, where: str = "pack") -> tuple[Statement, Verifier]:
    """Check the note's form and its signature by a trusted key; return what it states."""
    note = _read_note(note_bytes, where)
    statement = parse_statement(note.text)
    return statement, _signed_by_trusted(note, trusted)


def _match(statement: Statement, pack: bytes | Pack, name: str) -> Pack:
    """The parsed pack, if it is the one ``statement`` speaks of, byte for byte when the
    bytes are given."""
    if isinstance(pack, Pack):
        parsed, got_file = pack, None
    else:
        got_file = file_hash(pack)
        try:
            parsed = _parse_bytes(pack, name)
        except PackError as e:
            if got_file != statement.file:
                raise PackAlteredError(
                    f"{name}: pack file changed after signing (it no longer parses: {e}); "
                    f"signed file {statement.file}, got {got_file}") from None
            raise
    if (parsed.id, parsed.version) != (statement.pack, statement.version):
        raise WrongPackError(
            f"{name}: the signature is for {statement.pack}@{statement.version}, "
            f"not for {parsed.ref}")
    if parsed.hash != statement.hash:
        raise PackAlteredError(
            f"{name}: pack {parsed.ref} changed after signing: signed pack hash "
            f"{statement.hash}, got {parsed.hash}")
    if got_file is not None and got_file != statement.file:
        raise PackAlteredError(
            f"{name}: pack file {parsed.ref} changed after signing (same rules, other bytes, "
            f"e.g. comments): signed file {statement.file}, got {got_file}")
    return parsed


def verify_signed_pack(pack: bytes | Pack, note_bytes: bytes | None,
                       trusted: Sequence[Verifier], *, name: str = "<pack>") -> SignedPack:
    """Verify ``note_bytes`` as a trusted publisher's signature over ``pack``.

    Given the file's bytes, both the pack hash and the file hash must match; given an
    already parsed :class:`Pack`, only its hash can be (and is) compared. Raises a
    :class:`PackSignatureError` subclass naming what is wrong."""
    statement, signer = read_signature(note_bytes, trusted, where=name)
    return SignedPack(_match(statement, pack, name), statement, signer)


def check_statement(pack_bytes: bytes, note_bytes: bytes, *, name: str = "<pack>") -> Pack:
    """A publisher's own check before publishing: the note is well formed and states this
    pack's hashes. Whose key signed it is not checked (that is the installer's job)."""
    return _match(parse_statement(_read_note(note_bytes, name).text), pack_bytes, name)


def verify_pack_signature(pack: bytes | Pack, note_bytes: bytes | None,
                          trusted: Sequence[Verifier | str]) -> str:
    """The name of the trusted publisher key that signed ``pack`` (else an error);
    ``trusted`` holds verifiers or vkey strings."""
    try:
        keys = [v if isinstance(v, Verifier) else Verifier.parse(v) for v in trusted]
    except KeyFormatError as e:
        raise TrustStoreError(f"a trusted publisher key is malformed: {e}") from None
    return verify_signed_pack(pack, note_bytes, keys).signer.name


# -- the trust store ---------------------------------------------------------------------


def trust_dir(home: Path) -> Path:
    return home / TRUST_DIR


def _key_file_name(v: Verifier) -> str:
    # key names may hold '/', which cannot be a file name; the file's content is what counts
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", v.name)
    return f"{safe}+{v.key_id.hex()}.vkey"


def trusted_publishers(home: Path) -> list[Verifier]:
    """Every trusted publisher key in ``home``; an unreadable key file is an error."""
    d = trust_dir(home)
    if not d.is_dir():
        return []
    keys = []
    for f in sorted(d.glob("*.vkey")):
        try:
            v = Verifier.parse(f.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, KeyFormatError) as e:
            raise TrustStoreError(f"{f}: not a publisher verifier key: {e}") from None
        if v.alg != ALG_ED25519:
            raise TrustStoreError(f"{f}: publisher keys are Ed25519 (0x01) keys")
        keys.append(v)
    return keys


def trust_add(home: Path, vkey: str) -> tuple[Verifier, bool]:
    """Trust a publisher verifier key; returns it and whether it was new."""
    try:
        v = Verifier.parse(vkey)
    except KeyFormatError as e:
        raise TrustStoreError(f"not a verifier key: {e}") from None
    if v.alg != ALG_ED25519:
        raise TrustStoreError("a publisher key is an Ed25519 (0x01) key, not a witness key")
    if v in trusted_publishers(home):
        return v, False
    d = trust_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(d / _key_file_name(v), (v.vkey + "\n").encode())
    return v, True


def trust_remove(home: Path, name: str) -> list[Verifier]:
    """Stop trusting the keys named ``name`` (or ``name+keyid``); returns those removed."""
    removed = []
    d = trust_dir(home)
    for f in sorted(d.glob("*.vkey")) if d.is_dir() else []:
        try:
            v = Verifier.parse(f.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, KeyFormatError):
            continue  # trusted_publishers() reports broken files; removal is by name
        if name in (v.name, publisher_ref(v)):
            f.unlink()
            removed.append(v)
    if not removed:
        raise TrustStoreError(f"no trusted publisher key named {name!r} in {d}")
    return removed


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``path`` so that it holds either its old bytes or all of ``data``, never a
    part: a temporary file in the same directory, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
