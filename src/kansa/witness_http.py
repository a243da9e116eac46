"""The C2SP tlog-witness protocol over HTTP: the ``add-checkpoint`` server (Starlette) and
its client (httpx), submitting one checkpoint or collecting cosignatures for a log.

Everything that does not touch HTTP (parsing requests, the consistency decision, the
witness's SQLite state, cosigning, checking answers) is in :mod:`kansa.ledger.witness`;
this module only moves bytes. It sits above the ledger layer, beside :mod:`kansa.api`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kansa.errors import FormatError, KansaError, KeyFormatError, WitnessError
from kansa.ledger.note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    NoteSignature,
    Signer,
    Verifier,
    parse_note,
)
from kansa.ledger.witness import (
    ADD_CHECKPOINT_PATH,
    MAX_BODY_SIZE,
    SIZE_BODY_RE,
    SIZE_CONTENT_TYPE,
    CosignatureCollection,
    WitnessOutcome,
    WitnessRefusal,
    WitnessState,
    format_add_checkpoint_request,
    parse_cosignatures,
    pick_cosignature,
    process_add_checkpoint,
)

if TYPE_CHECKING:
    from kansa.ledger.log import Log

_logger = logging.getLogger("kansa.witness")


# --- the server ------------------------------------------------------------------------


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


# --- the client ------------------------------------------------------------------------


def _endpoint(url: str) -> str:
    """The add-checkpoint URL, given the witness's submission prefix (or the full URL)."""
    url = url.rstrip("/")
    return url if url.endswith(ADD_CHECKPOINT_PATH) else url + ADD_CHECKPOINT_PATH


def _refusal_from_response(response: httpx.Response) -> WitnessRefusal:
    text = response.content[:500].decode("utf-8", "replace").strip()
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code == 409 and content_type == SIZE_CONTENT_TYPE:
        match = SIZE_BODY_RE.fullmatch(response.content.decode("ascii", "replace"))
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
    return pick_cosignature(note_text, parse_cosignatures(note_text, response.content), witness)


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
