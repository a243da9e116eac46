"""A C2SP tlog-witness without HTTP: requests, checks, state, cosigning, answers.

Specs: c2sp.org/tlog-witness (the HTTP protocol) and c2sp.org/tlog-cosignature
(cosignature/v1, Ed25519, signature type 0x04). Quotes from them sit beside the code they
govern, so each check can be audited against the text.

Server side, a request flows through small functions, each raising :class:`WitnessRefusal`
with the HTTP status the spec assigns:

1. :func:`parse_add_checkpoint_request` (400): the framing of the body.
2. :func:`verify_submitted_checkpoint` (404, 403, 400): origin, log signature, checkpoint.
3. :func:`check_advance` (400, 409, 422): the pure consistency decision against the
   witness's record, run by :meth:`WitnessState.advance` inside one SQLite write
   transaction that also persists the new record and cosigns, so the check, the update
   and the cosignature are atomic across threads *and* processes sharing the state file.

Client side, :func:`pick_cosignature` checks a witness's answer. The HTTP server
(``create_witness_app``) and client (``add_checkpoint``, ``collect_cosignatures``) live in
:mod:`kansa.witness_http`: the ledger layer speaks no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kansa.errors import (
    FormatError,
    ProofError,
    SignatureError,
    StorageError,
    WitnessError,
)
from kansa.ledger import merkle
from kansa.ledger.note import (
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    cosign,
    parse_note,
    verify_cosignature,
    verify_note,
)

_logger = logging.getLogger("kansa.witness")

ADD_CHECKPOINT_PATH = "/add-checkpoint"

# tlog-witness: "The response MUST have a `Content-Type` of `text/x.tlog.size`."
SIZE_CONTENT_TYPE = "text/x.tlog.size"

# tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63

# Tree sizes are stored as SQLite INTEGERs (signed 64-bit); anything larger is refused
# as malformed (400) rather than allowed to overflow the store (which would be a 500).
MAX_TREE_SIZE = (1 << 63) - 1

# A legitimate body is an old-size line, at most 63 proof lines of 45 bytes and a checkpoint
# with a handful of signatures: a few KiB. Anything past this is refused with 413.
MAX_BODY_SIZE = 64 * 1024

# tlog-witness: "the string `old`, a single space (0x20), and the tree size ... encoded as
# an ASCII decimal with no leading zeroes (unless the size is zero, in which case the
# encoding MUST be `0`)". At most 19 digits: MAX_TREE_SIZE has 19.
_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,18})")
SIZE_BODY_RE = re.compile(r"(0|[1-9][0-9]{0,18})\n")


class WitnessRefusal(WitnessError):
    """A witness answered (or, server side, will answer) an add-checkpoint with an error.

    ``status`` is the HTTP status. ``known_size`` is set only for the "409 Conflict" whose
    body is the witness's recorded tree size (``text/x.tlog.size``): the caller should
    retry with a consistency proof from that size. A 409 without ``known_size`` means the
    witness holds a *different root for the same size*: evidence of a forked log.
    """

    def __init__(self, status: int, reason: str, *, known_size: int | None = None) -> None:
        self.status = status
        self.reason = reason
        self.known_size = known_size
        super().__init__(f"witness refused the checkpoint ({status}): {reason}")


# --- request format ------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed add-checkpoint body: old size, consistency proof, signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes  # the signed note exactly as sent; parsed and verified separately


def _bad(reason: str) -> WitnessRefusal:
    return WitnessRefusal(400, reason)


def parse_add_checkpoint_request(body: bytes) -> AddCheckpointRequest:
    """Split an add-checkpoint body; raise a 400 :class:`WitnessRefusal` if malformed.

    tlog-witness: "The request body MUST be a sequence of an old size line, zero or more
    consistency proof lines, and an empty line, followed by a checkpoint. Each line MUST
    terminate in a newline character (U+000A)."
    """
    # Neither the old size line nor a proof line can be empty, so the first "\n\n" ends
    # the last of them and the empty line follows it.
    blank = body.find(b"\n\n")
    if blank < 0:
        raise _bad("no empty line between the old size and proof lines and the checkpoint")
    head, checkpoint = body[:blank].split(b"\n"), body[blank + 2 :]
    old_line, proof_lines = head[0], head[1:]
    match = _OLD_LINE.fullmatch(old_line)
    if match is None:
        raise _bad("the first line must be 'old <size>', a decimal without leading zeroes")
    old_size = int(match.group(1))
    if old_size > MAX_TREE_SIZE:
        raise _bad(f"old size exceeds {MAX_TREE_SIZE}")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise _bad(f"{len(proof_lines)} consistency proof lines; at most {MAX_PROOF_LINES}")
    # "Each consistency proof line MUST encode a single hash in base64."
    proof = tuple(_parse_proof_line(n, line) for n, line in enumerate(proof_lines, 1))
    if not checkpoint:
        raise _bad("no checkpoint after the empty line")
    return AddCheckpointRequest(old_size, proof, checkpoint)


def _parse_proof_line(n: int, line: bytes) -> bytes:
    try:
        h = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"consistency proof line {n} is not base64") from None
    if len(h) != merkle.HASH_SIZE:
        raise _bad(f"consistency proof line {n} is {len(h)} bytes, not a SHA-256 hash")
    return h


def format_add_checkpoint_request(
    old_size: int, proof: Sequence[bytes], checkpoint_note: str
) -> bytes:
    """The add-checkpoint body for a proof from ``old_size`` to a signed checkpoint note."""
    if not 0 <= old_size <= MAX_TREE_SIZE:
        raise WitnessError(f"old size {old_size} is out of range")
    if len(proof) > MAX_PROOF_LINES:
        raise WitnessError(f"a consistency proof of {len(proof)} hashes is longer than 63")
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise WitnessError("every consistency proof hash must be 32 bytes")
    if not checkpoint_note.endswith("\n"):
        raise WitnessError("the signed checkpoint note must end with a newline")
    lines = [f"old {old_size}\n"] + [base64.b64encode(h).decode() + "\n" for h in proof]
    return ("".join(lines) + "\n" + checkpoint_note).encode()


# --- checkpoint verification -----------------------------------------------------------


def verify_submitted_checkpoint(
    data: bytes, logs: Mapping[str, Verifier]
) -> tuple[Checkpoint, Note]:
    """Verify a submitted checkpoint note against the key configured for its origin.

    tlog-witness: "The witness MUST verify the checkpoint signature against the public
    key(s) it trusts for the checkpoint origin, and it MUST ignore signatures from unknown
    keys. If the checkpoint origin is unknown, the witness MUST respond with a "404 Not
    Found" HTTP status code. If none of the signatures verify against a trusted public
    key, the witness MUST respond with a "403 Forbidden" HTTP status code."
    """
    try:
        note = parse_note(data)
    except FormatError as e:
        raise _bad(f"checkpoint: {e}") from None
    # tlog-checkpoint: the first line of the body is the origin.
    origin = note.text.split("\n", 1)[0]
    verifier = logs.get(origin)
    if verifier is None:
        raise WitnessRefusal(404, f"unknown log origin {origin!r}")
    try:
        verify_note(data, verifier)  # ignores signature lines of other keys
    except SignatureError as e:
        raise WitnessRefusal(403, str(e)) from None
    except FormatError as e:  # unreachable: parse_note accepted the same bytes above
        raise _bad(f"checkpoint: {e}") from None
    return checkpoint_head(note.text), note


def checkpoint_head(text: str) -> Checkpoint:
    """Origin, size and root of a checkpoint body, which may carry extension lines.

    tlog-checkpoint: "The note text is a sequence of at least three non-empty lines ...
    Any following lines are extension lines, opaque and OPTIONAL. Extension lines, if any,
    MUST be non-empty." tlog-cosignature: extension lines, "if present MUST be included in
    the cosigned message", and "the cosigner is asserting observation of correct
    append-only operation of the log based on the first three lines".
    """
    lines = text.split("\n")  # text ends in a newline, so the last element is ""
    if len(lines) < 4 or lines[-1] != "":
        raise _bad("checkpoint must have origin, size and root lines")
    if any(not extension for extension in lines[3:-1]):
        raise _bad("checkpoint extension lines must be non-empty")
    try:
        cp = Checkpoint.parse_body("\n".join(lines[:3]) + "\n")
    except (FormatError, ValueError) as e:  # ValueError: sizes of more than 4300 digits
        raise _bad(f"checkpoint: {e}") from None
    if cp.size > MAX_TREE_SIZE:
        raise _bad(f"checkpoint size exceeds {MAX_TREE_SIZE}")
    return cp


# --- the consistency decision (pure) ------------------------------------------------------


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes


# RFC 9162 §2.1.1: "The hash of an empty list is the hash of an empty string". A witness
# that never cosigned a log holds the empty tree: tlog-witness counts its size as "zero if
# it never cosigned a checkpoint for that origin", and a size-0 checkpoint matches it only
# if its root is SHA-256("").
EMPTY_TREE = TreeHead(0, merkle.EMPTY_ROOT)


def check_advance(
    recorded: TreeHead, old_size: int, new: TreeHead, proof: Sequence[bytes]
) -> None:
    """Decide whether a witness that recorded ``recorded`` may cosign ``new``.

    Returns if it may; raises :class:`WitnessRefusal` with the status the spec assigns.
    """
    # "The old size MUST be equal to or lower than the checkpoint size. Otherwise, the
    # witness MUST respond with a "400 Bad Request" HTTP status code."
    if old_size > new.size:
        raise _bad(f"old size {old_size} is larger than the checkpoint size {new.size}")
    # "The witness MUST check that the old size matches the size of the latest checkpoint
    # it cosigned for the checkpoint's origin (or zero if it never cosigned a checkpoint
    # for that origin). If it doesn't match, the witness MUST respond with a "409
    # Conflict" HTTP status code."
    if old_size != recorded.size:
        raise WitnessRefusal(
            409,
            f"old size {old_size} is not the size this witness cosigned, {recorded.size}",
            known_size=recorded.size,
        )
    # "If the old size matches the checkpoint size, the witness MUST check that the root
    # hashes are also identical. If they don't match, the witness MUST respond with a
    # "409 Conflict" HTTP status code."
    if new.size == recorded.size and new.root != recorded.root:
        raise WitnessRefusal(
            409, f"a different root hash was cosigned for tree size {new.size}: log forked"
        )
    # "The consistency proof lines MUST encode a Merkle Consistency Proof from the old size
    # to the checkpoint size ... The proof MUST be empty if the old size is zero. If the
    # Merkle Consistency Proof doesn't verify, the witness MUST respond with a "422
    # Unprocessable Entity" HTTP status code." verify_consistency refuses a non-empty
    # proof from size 0 or between equal sizes.
    try:
        merkle.verify_consistency(recorded.size, new.size, recorded.root, new.root, proof)
    except ProofError as e:
        raise WitnessRefusal(422, f"consistency proof does not verify: {e}") from None


# --- durable state ---------------------------------------------------------------------

_SCHEMA_VERSION = 1
_SCHEMA = [
    "CREATE TABLE witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL CHECK (size >= 0),"
    " root BLOB NOT NULL CHECK (length(root) = 32), checkpoint BLOB NOT NULL,"
    " updated INTEGER NOT NULL)",
    # tlog-witness: "the witness MAY log the request even if the consistency proof doesn't
    # verify (but MUST NOT cosign the checkpoint) as it might be proof of log misbehavior."
    "CREATE TABLE refused (id INTEGER PRIMARY KEY, origin TEXT NOT NULL,"
    " received INTEGER NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL,"
    " request BLOB NOT NULL)",
]


@dataclass(frozen=True)
class Refused:
    """A validly signed checkpoint the witness refused as inconsistent: fork evidence."""

    origin: str
    received: int  # UNIX seconds
    status: int
    reason: str
    request: bytes  # the whole add-checkpoint body


class WitnessState:
    """Per log origin, the latest (size, root) this witness cosigned, in a SQLite file.

    Every :meth:`advance` runs in one ``BEGIN IMMEDIATE`` transaction (SQLite's single
    writer lock), under a process-wide lock too: requests for any origin, from any thread
    or any process sharing the file, are serialized, so a check can never be overtaken by
    another update before its own commit (the rollback race tlog-witness describes).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with self._lock:
            self._connection()  # create or check the schema now: fail at start-up, not later

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA busy_timeout = 30000")
            c.execute("PRAGMA journal_mode = WAL")
            # FULL: the record is fsynced before any cosignature over it leaves the witness.
            c.execute("PRAGMA synchronous = FULL")
            c.execute("BEGIN IMMEDIATE")
            try:
                version = int(c.execute("PRAGMA user_version").fetchone()[0])
                if version == 0:
                    for stmt in _SCHEMA:
                        c.execute(stmt)
                    c.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                elif version != _SCHEMA_VERSION:
                    raise StorageError(
                        f"witness state {self.path} has schema version {version}; "
                        f"this kansa knows {_SCHEMA_VERSION}"
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                c.close()
                raise
        except sqlite3.Error as e:
            raise StorageError(f"cannot open witness state {self.path}: {e}") from None
        self._conn = c
        return c

    def latest(self, origin: str) -> TreeHead | None:
        """The tree head last cosigned for ``origin``, or None if it never was."""
        with self._lock:
            row = self._connection().execute(
                "SELECT size, root FROM witnessed WHERE origin = ?", (origin,)
            ).fetchone()
        return TreeHead(int(row[0]), bytes(row[1])) if row else None

    def advance(
        self,
        origin: str,
        old_size: int,
        new: TreeHead,
        proof: Sequence[bytes],
        checkpoint: bytes,
        sign: Callable[[], NoteSignature],
    ) -> NoteSignature:
        """Check, record and cosign ``new`` atomically; raise :class:`WitnessRefusal` if not.

        ``sign`` runs after the new record is written and before it is committed: the
        cosignature's timestamp is taken while this record is the latest, and the
        signature is returned only once the commit succeeded ("The witness MUST persist
        the new checkpoint before responding").
        """
        with self._lock:
            c = self._connection()
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    row = c.execute(
                        "SELECT size, root FROM witnessed WHERE origin = ?", (origin,)
                    ).fetchone()
                    recorded = TreeHead(int(row[0]), bytes(row[1])) if row else EMPTY_TREE
                    check_advance(recorded, old_size, new, proof)
                    c.execute(
                        "INSERT INTO witnessed (origin, size, root, checkpoint, updated) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                        "size = excluded.size, root = excluded.root, "
                        "checkpoint = excluded.checkpoint, updated = excluded.updated",
                        (origin, new.size, new.root, checkpoint, int(time.time())),
                    )
                    signature = sign()
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            except sqlite3.Error as e:
                raise StorageError(f"witness state {self.path}: {e}") from None
            return signature

    def record_refusal(self, origin: str, refusal: WitnessRefusal, request: bytes) -> None:
        with self._lock:
            try:
                self._connection().execute(
                    "INSERT INTO refused (origin, received, status, reason, request) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (origin, int(time.time()), refusal.status, refusal.reason, request),
                )
            except sqlite3.Error as e:
                raise StorageError(f"witness state {self.path}: {e}") from None

    def refusals(self, origin: str | None = None) -> list[Refused]:
        """Validly signed checkpoints refused as inconsistent (oldest first)."""
        sql = "SELECT origin, received, status, reason, request FROM refused"
        params: tuple[str, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            params = (origin,)
        with self._lock:
            rows = self._connection().execute(sql + " ORDER BY id", params).fetchall()
        return [Refused(o, int(t), int(s), r, bytes(b)) for o, t, s, r, b in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --- handling one request -------------------------------------------------------------


def process_add_checkpoint(
    body: bytes,
    *,
    signer: Signer,
    logs: Mapping[str, Verifier],
    state: WitnessState,
    clock: Callable[[], float] = time.time,
) -> list[NoteSignature]:
    """Handle one add-checkpoint body: the cosignature line(s), or a WitnessRefusal."""
    request = parse_add_checkpoint_request(body)
    cp, note = verify_submitted_checkpoint(request.checkpoint, logs)

    def sign() -> NoteSignature:
        # tlog-cosignature: the signed message is "cosignature/v1", the time line and "the
        # whole note body of the cosigned checkpoint (including the final newline, but not
        # including any signature lines)": note.text. The timestamp is POSIX seconds.
        return cosign(note.text, signer, int(clock()))

    try:
        signature = state.advance(
            cp.origin, request.old_size, TreeHead(cp.size, cp.root), request.proof,
            request.checkpoint, sign,
        )
    except WitnessRefusal as refusal:
        # Only a checkpoint with a valid log signature gets this far; if it contradicts
        # what was cosigned (bad proof, or another root for the same size), keep it.
        if refusal.status == 422 or (refusal.status == 409 and refusal.known_size is None):
            _logger.warning("refused checkpoint of %s: %s", cp.origin, refusal.reason)
            state.record_refusal(cp.origin, refusal, body)
        raise
    return [signature]


# --- reading a witness's answer ---------------------------------------------------------


def parse_cosignatures(note_text: str, body: bytes) -> list[NoteSignature]:
    """tlog-witness: "To parse the response, the client MAY concatenate it to the
    checkpoint, and use a note verification function"; here, the note parser."""
    try:
        return list(parse_note(note_text + "\n" + body.decode("utf-8")).signatures)
    except (FormatError, UnicodeDecodeError) as e:
        raise WitnessError(f"witness answered 200 with malformed signature lines: {e}") from None


def pick_cosignature(
    note_text: str, signatures: Sequence[NoteSignature], witness: Verifier | None
) -> NoteSignature:
    if witness is None:
        if len(signatures) != 1:
            raise WitnessError(
                f"witness answered {len(signatures)} signature lines; pass its key to choose"
            )
        return signatures[0]
    # "The client MUST ignore any cosignatures from unknown keys."
    mine = [s for s in signatures if (s.name, s.key_id) == (witness.name, witness.key_id)]
    if not mine:
        raise WitnessError(f"witness answered no cosignature by {witness.vkey}")
    try:
        verify_cosignature(Note(note_text, (mine[0],)), witness)
    except SignatureError as e:
        raise WitnessError(f"witness {witness.name} answered a bad cosignature: {e}") from None
    return mine[0]


# --- collecting cosignatures for a log ---------------------------------------------------


@dataclass(frozen=True)
class WitnessOutcome:
    """What one witness did: exactly one of ``cosignature`` and ``error`` is set."""

    url: str
    witness: Verifier
    cosignature: NoteSignature | None = None
    error: WitnessError | None = None


@dataclass(frozen=True)
class CosignatureCollection:
    """The result of :func:`collect_cosignatures` for the checkpoint of size ``size``.

    ``outcomes`` has one entry per witness, in the order given; ``accepted`` lists the
    verified (and stored) cosignatures; ``failures`` the witnesses that gave none.
    """

    size: int
    checkpoint: str  # the log's signed checkpoint note that was submitted
    outcomes: tuple[WitnessOutcome, ...]

    @property
    def accepted(self) -> list[NoteSignature]:
        return [o.cosignature for o in self.outcomes if o.cosignature is not None]

    @property
    def failures(self) -> list[WitnessOutcome]:
        return [o for o in self.outcomes if o.error is not None]


# The HTTP server and client moved to kansa.witness_http (the ledger layer speaks no HTTP);
# their old import path still works, importing that module on first use.
_MOVED = frozenset({"create_witness_app", "add_checkpoint", "collect_cosignatures"})

if TYPE_CHECKING:
    from kansa.witness_http import (  # noqa: F401 - the old import path, for mypy
        add_checkpoint,
        collect_cosignatures,
        create_witness_app,
    )


def __getattr__(name: str) -> object:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module("kansa.witness_http"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
