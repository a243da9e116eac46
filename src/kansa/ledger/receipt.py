"""Receipts: C2SP tlog-proof (c2sp.org/tlog-proof@v1), offline proof that an entry is in
the log, optionally witnessed.

    c2sp.org/tlog-proof@v1
    extra <base64>             (optional; kansa puts the entry itself here, see below)
    index <decimal>
    <base64 hash>              (the inclusion proof, zero or more lines)
    <empty line>
    <the signed checkpoint note, verbatim, with any witness cosignatures>

The spec's own words are quoted beside the code that follows them. The extra data is not
authenticated: "Applications MUST NOT implicitly trust the extra data". kansa's receipts
carry the entry itself there, which makes them self-contained: ``verify_receipt(data,
key, None)`` hashes those bytes as the leaf, so they are trusted only because the
inclusion proof leads from exactly them to the signed root.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from kansa.errors import FormatError, KeyFormatError, ProofError, SignatureError, StorageError
from kansa.ledger import merkle
from kansa.ledger.export import cosigned_note, load_checkpoint
from kansa.ledger.log import Log
from kansa.ledger.merkle import HASH_SIZE
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    Checkpoint,
    Note,
    SignedCheckpoint,
    Verifier,
    b64decode_strict,
    parse_note,
    verify_checkpoint,
    verify_cosignature,
)

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # a tree of fewer than 2**64 leaves is at most 64 levels deep
MAX_INDEX_DIGITS = 20  # 2**64 has 20 decimal digits


@dataclass(frozen=True)
class Receipt:
    index: int
    proof: tuple[bytes, ...]
    checkpoint: Checkpoint  # parsed from the note; trusted only once verify_receipt says so
    note: Note  # the checkpoint note as included, signatures and cosignatures
    extra: bytes | None = None  # NOT authenticated

    def to_bytes(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + _b64e(self.extra))
        lines.append(f"index {self.index}")
        lines.extend(_b64e(h) for h in self.proof)
        # "After the inclusion proof lines and an empty line, the checkpoint issued by the
        # log is included verbatim"
        return ("\n".join(lines) + "\n\n").encode() + self.note.to_bytes()


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64d(text: str, what: str) -> bytes:
    """tlog-proof: "the standard Base 64 encoding specified in RFC 4648, Section 4";
    only the canonical encoding is accepted, so a receipt has one spelling."""
    try:
        return b64decode_strict(text, what)
    except FormatError as e:
        raise FormatError(f"receipt: {e}") from None


def _parse_index(line: str) -> int:
    """ "index" followed by a space (U+0020) and the zero-based index of the entry in the
    log, represented as an ASCII decimal with no leading zeroes (unless the index is 0)."""
    if not line.startswith("index "):
        raise FormatError("receipt: expected an 'index N' line")
    digits = line[len("index ") :]
    if (
        not digits
        or not digits.isascii()
        or not digits.isdigit()
        or (digits != "0" and digits[0] == "0")
        or len(digits) > MAX_INDEX_DIGITS
    ):
        raise FormatError(
            f"receipt: index {digits!r} is not an ASCII decimal with no leading zeroes"
        )
    return int(digits)


def parse_receipt(data: bytes) -> Receipt:
    """Parse a tlog-proof receipt; nothing is verified. Raises :class:`FormatError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("receipt: not valid UTF-8") from None
    # "The proof is a sequence of lines separated by newlines (U+000A)."
    if "\r" in text:
        raise FormatError("receipt: contains a carriage return; lines end in U+000A only")
    head, sep, note_text = text.partition("\n\n")
    if not sep:
        raise FormatError("receipt: no empty line before the checkpoint")
    lines = head.split("\n")
    # "The first line MUST be the string c2sp.org/tlog-proof@v1."
    if lines[0] != HEADER:
        raise FormatError(f"receipt: first line is not {HEADER!r}")
    pos = 1
    extra = None
    # "The second line MAY start with the string extra followed by a space (U+0020) and
    # base64-encoded opaque extra data. If no extra data is present, this line is omitted."
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = _b64d(lines[pos][len("extra ") :], "extra data")
        pos += 1
    if pos == len(lines):
        raise FormatError("receipt: expected an 'index N' line")
    index = _parse_index(lines[pos])
    # "The next zero or more non-empty lines are the base64-encoded Merkle inclusion proof
    # ..., one SHA-256 hash per line, starting from the leaf's sibling hash up to the
    # root's child hash."
    hash_lines = lines[pos + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise FormatError(f"receipt: {len(hash_lines)} proof hashes, more than any tree needs")
    proof = []
    for n, line in enumerate(hash_lines, 1):
        h = _b64d(line, f"proof hash {n}")
        if len(h) != HASH_SIZE:
            raise FormatError(f"receipt: proof hash {n} has {len(h)} bytes, not {HASH_SIZE}")
        proof.append(h)
    # "... the checkpoint issued by the log is included verbatim, according to
    # tlog-checkpoint."
    note = parse_note(note_text)
    if note.to_text() != note_text:
        raise FormatError("receipt: the checkpoint note is not in canonical form")
    checkpoint = Checkpoint.parse_body(note.text)
    return Receipt(index, tuple(proof), checkpoint, note, extra)


def _check_witnesses(note: Note, witnesses: Sequence[Verifier], min_witnesses: int) -> None:
    """At least ``min_witnesses`` of ``witnesses`` must have cosigned the checkpoint. A
    present but invalid cosignature by a trusted witness is an error in itself."""
    unique = list({(w.name, w.key_id): w for w in witnesses}.values())
    for w in unique:
        if w.alg != ALG_COSIGNATURE_V1:
            raise KeyFormatError(f"witness key {w.name} is not a cosignature/v1 (0x04) key")
    if min_witnesses > len(unique):
        raise SignatureError(
            f"receipt: {min_witnesses} witness cosignatures are required but only "
            f"{len(unique)} distinct witness keys are trusted: no receipt can satisfy that"
        )
    missing = []
    for w in unique:
        present = any(s.name == w.name and s.key_id == w.key_id for s in note.signatures)
        if not present:
            missing.append(w.name)
            continue
        try:
            verify_cosignature(note, w)
        except SignatureError as e:
            raise SignatureError(f"receipt: {e}") from None
    cosigned = len(unique) - len(missing)
    if cosigned < min_witnesses:
        raise SignatureError(
            f"receipt: checkpoint is cosigned by {cosigned} of the {min_witnesses} witnesses "
            f"required; none from {', '.join(missing)}"
        )


def verify_receipt(
    data: bytes,
    verifier: Verifier,
    entry: bytes | None,
    *,
    witnesses: Sequence[Verifier] = (),
    min_witnesses: int = 0,
) -> Receipt:
    """Verify that ``entry`` is at the receipt's index in a tree the log signed.

    kansa's own receipts carry the entry itself as the extra data; pass ``entry=None``
    to prove exactly those bytes. The extra data is then trusted only because its leaf
    hash is what the inclusion proof leads from, never implicitly.

    Raises :class:`FormatError` (malformed), :class:`SignatureError` (checkpoint not
    signed by ``verifier``, its origin not the key's name, an invalid cosignature by a
    trusted witness, or fewer than ``min_witnesses`` valid ones), :class:`ProofError`
    (the proof does not lead from the entry to the signed root) or
    :class:`KeyFormatError` (a witness key that is not a cosignature/v1 key). With an
    explicit ``entry``, the returned ``extra`` is unauthenticated.
    """
    receipt = parse_receipt(data)
    what = "this entry"
    if entry is None:
        if receipt.extra is None:
            raise FormatError("receipt carries no entry in its extra data; supply the entry")
        entry = receipt.extra
        what = "the entry in the receipt's extra data"
    try:
        signed = verify_checkpoint(receipt.note.to_text(), verifier)
    except SignatureError as e:
        raise SignatureError(f"receipt: {e}") from None
    cp = signed.checkpoint
    # RFC 9162 §2.1.3.2, with the leaf hash of the entry the caller holds
    try:
        merkle.verify_inclusion(
            receipt.index, cp.size, merkle.leaf_hash(entry), receipt.proof, cp.root
        )
    except ProofError as e:
        raise ProofError(
            f"receipt: {what} is not proven at index {receipt.index} of the tree of size "
            f"{cp.size} ({e})"
        ) from None
    _check_witnesses(receipt.note, witnesses, min_witnesses)
    return receipt


def make_receipt(
    log: Log,
    index: int,
    *,
    extra: bytes | None = None,
    checkpoint: SignedCheckpoint | None = None,
) -> bytes:
    """A tlog-proof receipt for entry ``index``, against ``checkpoint`` or else the log's
    latest signed checkpoint, with every witness cosignature stored for it.

    The proof is checked against the entry and the root before it is returned, so a
    damaged store never yields a receipt that does not verify.
    """
    if checkpoint is None:
        stored = log.store.latest_checkpoint()
        if stored is None or stored.size <= index:
            latest = "none" if stored is None else f"size {stored.size}"
            raise ProofError(
                f"entry {index} is not covered by a signed checkpoint yet (latest: {latest})"
            )
        signed = load_checkpoint(log, stored)
    else:
        if log.signer is not None:
            verify_checkpoint(checkpoint.to_bytes(), log.signer.verifier)
        size = checkpoint.checkpoint.size
        note = cosigned_note(checkpoint.note.to_text(), log.store.cosignatures(size))
        signed = SignedCheckpoint(checkpoint.checkpoint, note)
    cp = signed.checkpoint
    if not 0 <= index < cp.size:
        raise ProofError(f"entry {index} is outside the checkpoint's tree of size {cp.size}")
    proof = log.inclusion_proof(index, cp.size)
    row = log.store.entry(index)
    if row is None:
        raise StorageError(f"entry {index} is missing from the store")
    try:
        merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(row.data), proof, cp.root)
    except ProofError as e:
        raise StorageError(
            f"the stored tiles do not prove entry {index} in the checkpoint of size "
            f"{cp.size} ({e}); the store is damaged: run 'kansa verify'"
        ) from None
    return Receipt(index, tuple(proof), cp, signed.note, extra).to_bytes()
