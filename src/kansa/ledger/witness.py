"""A C2SP tlog-witness: the ``add-checkpoint`` server, its client, and cosignature collection.

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

Client side, :func:`add_checkpoint` submits one checkpoint and :func:`collect_cosignatures`
asks every configured witness to cosign a :class:`~kansa.ledger.log.Log`'s latest
checkpoint, verifies each answer and stores the accepted cosignatures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kansa.errors import (
    FormatError,
    KansaError,
    KeyFormatError,
    ProofError,
    SignatureError,
    StorageError,
    WitnessError,
)
from kansa.ledger import merkle
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
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

if TYPE_CHECKING:
    from kansa.ledger.log import Log

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
_SIZE_BODY = re.compile(r"(0|[1-9][0-9]{0,18})\n")


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


# --- the server ------------------------------------------------------------------------


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


def _refusal_response(refusal: WitnessRefusal) -> Response:
    if refusal.known_size is not None:
        # "The response body MUST consist of the tree size of the latest cosigned
        # checkpoint in decimal, followed by a newline (U+000A). The response MUST have a
        # Content-Type of text/x.tlog.size." Set verbatim: Starlette's media_type would
        # append "; charset=utf-8".
        return Response(
            f"{refusal.known_size}\n".encode(),
            status_code=409,
            headers={"Content-Type": SIZE_CONTENT_TYPE},
        )
    return Response(refusal.reason + "\n", status_code=refusal.status, media_type="text/plain")


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None once it is longer than MAX_BODY_SIZE."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_SIZE:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_SIZE:
            return None
    return bytes(body)


def create_witness_app(
    signer: Signer, state_path: Path | str, logs: Mapping[str, Verifier],
    *, clock: Callable[[], float] = time.time,
) -> Starlette:
    """A Starlette app serving ``POST /add-checkpoint`` (c2sp.org/tlog-witness).

    ``signer`` is the witness's cosignature/v1 key (alg 0x04); ``state_path`` the SQLite
    file of its records (created if absent); ``logs`` maps each accepted log origin to the
    log's Ed25519 (0x01) verifier; ``clock`` gives the POSIX time a cosignature states.
    The state is open from creation and closed at shutdown.
    """
    if signer.alg != ALG_COSIGNATURE_V1:
        raise KeyFormatError("a witness cosigns with a cosignature/v1 (0x04) key")
    for origin, verifier in logs.items():
        if not origin or "\n" in origin:
            raise KansaError(f"log origin {origin!r} is not a single non-empty line")
        if verifier.alg != ALG_ED25519:
            raise KeyFormatError(f"the key of log {origin!r} must be an Ed25519 (0x01) key")
    known_logs = dict(logs)
    state = WitnessState(state_path)

    async def add_checkpoint_endpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return Response(
                f"request body exceeds {MAX_BODY_SIZE} bytes\n", 413, media_type="text/plain"
            )
        try:
            signatures = await run_in_threadpool(
                process_add_checkpoint, body, signer=signer, logs=known_logs, state=state,
                clock=clock,
            )
        except WitnessRefusal as refusal:
            return _refusal_response(refusal)
        # "The response body MUST be a sequence of one or more note signature lines, each
        # starting with the — character (U+2014) and ending with a newline character."
        return Response(
            "".join(s.line() for s in signatures).encode(),
            media_type="text/plain; charset=utf-8",
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.close()

    app = Starlette(
        routes=[Route(ADD_CHECKPOINT_PATH, add_checkpoint_endpoint, methods=["POST"])],
        lifespan=lifespan,
    )
    app.state.witness_state = state
    app.state.witness_verifier = signer.verifier
    return app


def serve_witness(
    signer: Signer,
    state_path: Path | str,
    logs: Mapping[str, Verifier],
    *,
    host: str = "127.0.0.1",
    port: int = 7380,
    log_level: str = "info",
) -> None:
    """Run the witness with uvicorn until interrupted (what ``kansa witness serve`` runs)."""
    import uvicorn

    uvicorn.run(
        create_witness_app(signer, state_path, logs), host=host, port=port, log_level=log_level
    )


# --- the client ------------------------------------------------------------------------


def _endpoint(url: str) -> str:
    """The add-checkpoint URL, given the witness's submission prefix (or the full URL)."""
    url = url.rstrip("/")
    return url if url.endswith(ADD_CHECKPOINT_PATH) else url + ADD_CHECKPOINT_PATH


def _parse_cosignatures(note_text: str, body: bytes) -> list[NoteSignature]:
    """tlog-witness: "To parse the response, the client MAY concatenate it to the
    checkpoint, and use a note verification function"; here, the note parser."""
    try:
        return list(parse_note(note_text + "\n" + body.decode("utf-8")).signatures)
    except (FormatError, UnicodeDecodeError) as e:
        raise WitnessError(f"witness answered 200 with malformed signature lines: {e}") from None


def _pick_cosignature(
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


def _refusal_from_response(response: httpx.Response) -> WitnessRefusal:
    text = response.content[:500].decode("utf-8", "replace").strip()
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code == 409 and content_type == SIZE_CONTENT_TYPE:
        match = _SIZE_BODY.fullmatch(response.content.decode("ascii", "replace"))
        if match is None:
            return WitnessRefusal(409, f"malformed {SIZE_CONTENT_TYPE} body {text!r}")
        known = int(match.group(1))
        return WitnessRefusal(
            409, f"the witness's latest cosigned size is {known}", known_size=known
        )
    return WitnessRefusal(response.status_code, text or response.reason_phrase)


def add_checkpoint(
    url: str,
    old_size: int,
    proof: list[bytes],
    checkpoint_note: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 10,
    witness: Verifier | None = None,
) -> NoteSignature:
    """Submit a signed checkpoint with a consistency proof from ``old_size``; cosignature.

    ``url`` is the witness's submission prefix (``/add-checkpoint`` is appended unless
    already there). With ``witness`` (its 0x04 verifier), the returned cosignature is the
    one by that key and is verified; without it, the answer must hold exactly one
    signature line, returned unverified. Raises :class:`WitnessRefusal` (a
    :class:`WitnessError`) for every non-200 answer; on "409 Conflict" its
    ``known_size`` is the size to prove consistency from. Raises :class:`WitnessError`
    if the witness is unreachable or answers something malformed.
    """
    try:
        note_text = parse_note(checkpoint_note).text
    except FormatError as e:
        raise WitnessError(f"not a signed checkpoint note: {e}") from None
    body = format_add_checkpoint_request(old_size, proof, checkpoint_note)
    endpoint = _endpoint(url)
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as own:
                response = own.post(endpoint, content=body)
        else:
            response = client.post(endpoint, content=body, timeout=timeout)
    except httpx.HTTPError as e:
        raise WitnessError(f"witness {endpoint} is unreachable: {e!r}") from None
    if response.status_code != 200:
        raise _refusal_from_response(response)
    return _pick_cosignature(note_text, _parse_cosignatures(note_text, response.content), witness)


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


def _cosign_with_retry(
    log: Log,
    size: int,
    checkpoint_note: str,
    url: str,
    witness: Verifier,
    client: httpx.Client,
    timeout: float,
    first_guess: int,
) -> NoteSignature:
    old = first_guess if 0 <= first_guess <= size else 0
    for attempt in range(2):
        try:
            proof = log.consistency_proof(old, size)
        except KansaError as e:
            raise WitnessError(f"cannot prove size {size} consistent with {old}: {e}") from None
        try:
            return add_checkpoint(
                url, old, proof, checkpoint_note, client=client, timeout=timeout,
                witness=witness,
            )
        except WitnessRefusal as refusal:
            known = refusal.known_size
            if attempt == 1 or known is None or known == old:
                raise
            if known > size:
                raise WitnessError(
                    f"witness {witness.name} cosigned size {known} of this log, beyond its "
                    f"latest checkpoint {size}: the log was rolled back or forked"
                ) from None
            old = known  # retry once, proving consistency from the size it reports
    raise AssertionError("unreachable")  # pragma: no cover


def collect_cosignatures(
    log: Log,
    witnesses: Sequence[tuple[str, Verifier]],
    *,
    client: httpx.Client | None = None,
    timeout: float = 10,
    size_hints: MutableMapping[str, int] | None = None,
) -> CosignatureCollection:
    """Ask every witness (submission URL, 0x04 verifier) to cosign the latest checkpoint.

    Each witness is first sent a proof from ``size_hints[witness.name]`` (0 if absent);
    on "409 Conflict" the request is retried once with a proof from the size the witness
    reports. Every returned cosignature is verified against the witness key before it is
    accepted and stored with ``log.store.add_cosignature(size, witness.name, line)``.
    A witness that is down, refuses, or answers badly yields a :class:`WitnessOutcome`
    with its :class:`WitnessError`; it never aborts the others. ``size_hints``, if given,
    is updated with each witness's latest known size, to save the 409 round trip next time.
    Witnesses are asked concurrently.
    """
    signed = log.latest_checkpoint()
    size = signed.checkpoint.size
    checkpoint_note = signed.note.to_text()
    hints = size_hints if size_hints is not None else {}

    def one(url: str, witness: Verifier, http: httpx.Client) -> WitnessOutcome:
        try:
            if witness.alg != ALG_COSIGNATURE_V1:
                raise WitnessError(f"witness key {witness.name} is not a 0x04 key")
            sig = _cosign_with_retry(
                log, size, checkpoint_note, url, witness, http, timeout,
                hints.get(witness.name, 0),
            )
        except WitnessError as e:
            if isinstance(e, WitnessRefusal) and e.known_size is not None:
                hints[witness.name] = e.known_size
            _logger.info(
                "witness %s (%s) gave no cosignature for size %d: %s", witness.name, url, size, e
            )
            return WitnessOutcome(url, witness, error=e)
        log.store.add_cosignature(size, witness.name, sig.line())
        hints[witness.name] = size
        return WitnessOutcome(url, witness, cosignature=sig)

    with contextlib.ExitStack() as stack:
        http = client or stack.enter_context(httpx.Client(timeout=timeout))
        if len(witnesses) <= 1:
            outcomes = [one(url, w, http) for url, w in witnesses]
        else:
            with ThreadPoolExecutor(max_workers=min(16, len(witnesses))) as pool:
                futures = [pool.submit(one, url, w, http) for url, w in witnesses]
                outcomes = [f.result() for f in futures]
    return CosignatureCollection(size, checkpoint_note, tuple(outcomes))
