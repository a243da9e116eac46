"""C2SP signed-note, tlog-checkpoint and tlog-cosignature (Ed25519 only).

Specs: c2sp.org/signed-note, c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature.
Key strings follow Go's golang.org/x/mod/sumdb/note so that existing tools read them:

    verifier key: <name>+<hex(key ID)>+<base64(0x01 || 32-byte public key)>
    signer key:   PRIVATE+KEY+<name>+<hex(key ID)>+<base64(0x01 || 32-byte seed)>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kansa.errors import FormatError, KeyFormatError, SignatureError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04  # timestamped Ed25519 witness cosignature (c2sp.org/tlog-cosignature)

SIG_PREFIX = "\u2014 "  # "— ": an em dash, a space
MAX_SIGNATURES = 100  # "verifiers MUST accept at least 16"; refuse absurd notes outright


def b64decode_strict(text: str, what: str) -> bytes:
    """The one base64 decoder for every signed or proven byte string kansa reads.

    RFC 4648 §4 standard alphabet with padding, and only the canonical spelling: §3.5
    lets an encoder leave the pad bits of the last character non-zero, which would give
    one signature, root or proof hash several spellings (a malleable note). Decoding and
    re-encoding must give back exactly ``text``.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{what} is not valid base64") from None
    if base64.b64encode(data).decode() != text:
        raise FormatError(f"{what} is not canonical base64 (non-zero pad bits?)")
    return data


_b64d = b64decode_strict


def _check_name(name: str) -> None:
    # signed-note: "The key name ... MUST be non-empty, well-formed UTF-8 containing
    # neither Unicode spaces nor plus (U+002B)."
    if not name or "+" in name or any(c.isspace() for c in name):
        raise KeyFormatError(f"key name {name!r} must be non-empty, without spaces or '+'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFormatError(f"key name {name!r} is not valid UTF-8") from None


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A note verifier: Ed25519 (0x01) for logs, or cosignature/v1 (0x04) for witnesses."""

    name: str
    alg: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public_key)

    @property
    def vkey(self) -> str:
        blob = base64.b64encode(bytes([self.alg]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.strip().split("+", 2)  # base64 may itself contain '+'
        if len(parts) != 3:
            raise KeyFormatError("a verifier key has the form name+hexkeyid+base64key")
        name, hex_id, blob = parts
        _check_name(name)
        try:
            raw = _b64d(blob, "verifier key")
        except FormatError as e:
            raise KeyFormatError(str(e)) from None
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise KeyFormatError("verifier key must be type 0x01 or 0x04 with a 32-byte key")
        v = cls(name, raw[0], raw[1:])
        if hex_id.lower() != v.key_id.hex():
            raise KeyFormatError(f"verifier key ID {hex_id} does not match its key")
        return v

    def _public(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify_raw(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public().verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 note signer (log key, alg 0x01) or witness cosigner (alg 0x04)."""

    name: str
    private_key: Ed25519PrivateKey
    alg: int = ALG_ED25519

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        _check_name(name)
        return cls(name, Ed25519PrivateKey.generate(), alg)

    @property
    def verifier(self) -> Verifier:
        pub = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, self.alg, pub)

    @property
    def skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        blob = base64.b64encode(bytes([self.alg]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+{blob}"

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.strip().split("+", 4)  # base64 may itself contain '+'
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise KeyFormatError("a signer key has the form PRIVATE+KEY+name+hexkeyid+base64key")
        _, _, name, hex_id, blob = parts
        _check_name(name)
        try:
            raw = _b64d(blob, "signer key")
        except FormatError as e:
            raise KeyFormatError(str(e)) from None
        if len(raw) != 33 or raw[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise KeyFormatError("signer key must be type 0x01 or 0x04 with a 32-byte seed")
        s = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]), raw[0])
        if hex_id.lower() != s.verifier.key_id.hex():
            raise KeyFormatError(f"signer key ID {hex_id} does not match its key")
        return s

    def sign_raw(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


# --- signed notes ---------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # everything after the 4-byte key ID

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIG_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    text: str  # ends with a newline
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def to_bytes(self) -> bytes:
        return self.to_text().encode()


def sign_note(text: str, signer: Signer) -> Note:
    """signed-note: the signature is over the note text, which ends in a newline."""
    if signer.alg != ALG_ED25519:
        raise SignatureError("only an Ed25519 (0x01) key signs notes; 0x04 keys cosign")
    _check_text(text)
    sig = signer.sign_raw(text.encode())
    return Note(text, (NoteSignature(signer.name, signer.verifier.key_id, sig),))


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if "\n\n" in text:
        raise FormatError("note text must not contain a blank line")


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into its text and signature lines (signatures not checked)."""
    try:
        raw = data.decode("utf-8") if isinstance(data, bytes) else data
        raw.encode("utf-8")  # a str may carry lone surrogates (surrogateescape)
    except UnicodeError:
        raise FormatError("note is not valid UTF-8") from None
    if "\r" in raw:
        raise FormatError("note contains a carriage return")
    idx = raw.rfind("\n\n")
    if idx < 0:
        raise FormatError("note has no blank line separating text from signatures")
    text, sig_block = raw[: idx + 1], raw[idx + 2 :]
    if not sig_block.endswith("\n"):
        raise FormatError("note signature block must end with a newline")
    sigs = []
    for n, line in enumerate(sig_block[:-1].split("\n"), 1):
        if not line.startswith(SIG_PREFIX):
            raise FormatError(f"signature line {n} does not start with '\u2014 '")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise FormatError(f"signature line {n} is not '\u2014 name base64'")
        name, blob = parts
        raw_sig = _b64d(blob, f"signature line {n}")
        if len(raw_sig) < 5:
            raise FormatError(f"signature line {n} is too short")
        sigs.append(NoteSignature(name, raw_sig[:4], raw_sig[4:]))
    if not sigs:
        raise FormatError("note has no signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise FormatError(f"note has {len(sigs)} signatures, more than {MAX_SIGNATURES}")
    return Note(text, tuple(sigs))


def verify_note(data: bytes | str, verifier: Verifier) -> Note:
    """Parse a note and require a valid signature by ``verifier``; unknown keys are ignored."""
    note = parse_note(data)
    for s in note.signatures:
        if s.name == verifier.name and s.key_id == verifier.key_id:
            if verifier.alg == ALG_ED25519 and verifier.verify_raw(note.text.encode(), s.signature):
                return note
            raise SignatureError(f"signature by {verifier.name} on the note is invalid")
    raise SignatureError(f"note carries no signature by {verifier.name}+{verifier.key_id.hex()}")


# --- checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """c2sp.org/tlog-checkpoint body: origin, decimal tree size, base64 root hash."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError("checkpoint is not valid UTF-8") from None
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise FormatError("checkpoint must have origin, size and root lines")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if len(lines) > 4:
            raise FormatError("checkpoint has extension lines, which kansa does not accept")
        if not origin:
            raise FormatError("checkpoint origin line is empty")
        # tlog-checkpoint: "the tree size as an ASCII decimal number ... no leading zeroes"
        if (
            not size_s.isascii()
            or not size_s.isdigit()
            or len(size_s) > 20
            or (size_s != "0" and size_s[0] == "0")
        ):
            raise FormatError(f"checkpoint size {size_s[:40]!r} is not a decimal number")
        if int(size_s) >= 1 << 63:  # stores and witnesses keep sizes as signed 64-bit
            raise FormatError(f"checkpoint size {size_s} is too large")
        root = _b64d(root_s, "checkpoint root hash")
        if len(root) != 32:
            raise FormatError(f"checkpoint root hash has {len(root)} bytes, expected 32")
        return cls(origin, int(size_s), root)


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: Note

    def to_bytes(self) -> bytes:
        return self.note.to_bytes()


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> SignedCheckpoint:
    if cp.origin != signer.name:
        raise SignatureError(
            f"checkpoint origin {cp.origin!r} differs from key {signer.name!r}"
        )
    return SignedCheckpoint(cp, sign_note(cp.body(), signer))


def verify_checkpoint(data: bytes | str, verifier: Verifier) -> SignedCheckpoint:
    """Verify the log's signature and parse the body; the origin must equal the key name."""
    note = verify_note(data, verifier)
    cp = Checkpoint.parse_body(note.text)
    if cp.origin != verifier.name:
        raise SignatureError(f"checkpoint origin {cp.origin!r} is not the key name")
    return SignedCheckpoint(cp, note)


# --- cosignatures (c2sp.org/tlog-cosignature, cosignature/v1) ------------------------


def cosignature_message(body: str, timestamp: int) -> bytes:
    """tlog-cosignature: the signed message is "cosignature/v1\\ntime <ts>\\n" + checkpoint."""
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, witness: Signer, timestamp: int) -> NoteSignature:
    if witness.alg != ALG_COSIGNATURE_V1:
        raise SignatureError("a witness cosigns with a 0x04 (cosignature/v1) key")
    sig = witness.sign_raw(cosignature_message(body, timestamp))
    return NoteSignature(witness.name, witness.verifier.key_id, struct.pack(">Q", timestamp) + sig)


def verify_cosignature(note: Note, witness: Verifier) -> int:
    """Return the cosignature's timestamp, or raise if ``witness`` did not cosign ``note``."""
    if witness.alg != ALG_COSIGNATURE_V1:
        raise SignatureError("witness key must be a cosignature/v1 (0x04) key")
    for s in note.signatures:
        if s.name == witness.name and s.key_id == witness.key_id:
            if len(s.signature) != 72:
                raise SignatureError(f"cosignature by {witness.name} has the wrong length")
            (ts,) = struct.unpack(">Q", s.signature[:8])
            if witness.verify_raw(cosignature_message(note.text, ts), s.signature[8:]):
                return int(ts)
            raise SignatureError(f"cosignature by {witness.name} is invalid")
    raise SignatureError(f"checkpoint carries no cosignature by {witness.name}")


def add_signatures(note: Note, extra: list[NoteSignature]) -> Note:
    known = {(s.name, s.key_id) for s in note.signatures}
    merged = list(note.signatures) + [s for s in extra if (s.name, s.key_id) not in known]
    return Note(note.text, tuple(merged))
