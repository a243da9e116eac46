"""The public detection endpoint (``kansa provenance serve``): a small Starlette app.

    POST /v1/verify           body: the text or image (raw bytes, at most 16 MiB)
    GET  /v1/records/{id}     the provenance data of one record (a permanent address for
                              the unique id an SB 942 latent disclosure carries)
    GET  /healthz             index size and follower position

Public-safe by construction: answers carry only :meth:`Tracer.public_summary` (record
id, time, system, model, outcome, label attributes, leaf hash, a tlog-proof receipt
without the entry): never content, actors, subjects or their pseudonyms. Nothing a
caller sends is stored or logged. Lookups run in a worker thread (the stores block).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kansa.errors import FormatError, KansaError
from kansa.provenance.trace import FOLLOWER, MAX_INPUT_BYTES, Tracer

_logger = logging.getLogger("kansa.provenance")

ABOUT = {
    "service": "kansa provenance: did this organisation's AI system produce this?",
    "verify": "POST /v1/verify with the text or image as the request body",
    "record": "GET /v1/records/{record_id}",
    "methods": ["c2pa", "gb45438-metadata", "text-wrapper", "exact", "fingerprint"],
    "privacy": "answers carry provenance data only: no content, no personal data; "
               "what you send is not kept",
}


async def _body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > MAX_INPUT_BYTES:
        raise FormatError(f"at most {MAX_INPUT_BYTES} bytes")
    chunks: list[bytes] = []
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > MAX_INPUT_BYTES:
            raise FormatError(f"at most {MAX_INPUT_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(tracer: Tracer, *, follow_every: float = 0.0) -> Starlette:
    """The endpoint over ``tracer``; ``follow_every`` > 0: index new outputs every that
    many seconds (the index follower), in a worker thread."""

    async def about(request: Request) -> JSONResponse:
        return JSONResponse(ABOUT)

    async def verify(request: Request) -> JSONResponse:
        try:
            data = await _body(request)
        except FormatError as e:
            return JSONResponse({"error": str(e)}, status_code=413)
        if not data:
            return JSONResponse({"error": "send the text or image as the request body"},
                                status_code=400)

        def run() -> list[dict[str, Any]]:
            return [tracer.public_summary(f) for f in tracer.trace(data)]

        try:
            found = await run_in_threadpool(run)
        except FormatError as e:
            return JSONResponse({"error": str(e)}, status_code=415)
        return JSONResponse({"found": found, "count": len(found)})

    async def record(request: Request) -> JSONResponse:
        rid = request.path_params["record_id"]

        def run() -> dict[str, Any] | None:
            from kansa.provenance.trace import Found
            try:
                index = tracer.ledger.resolve(rid)
            except KansaError:
                return None
            return tracer.public_summary(Found(rid, index, "record-id"))

        got = await run_in_threadpool(run) if len(rid) <= 64 else None
        if got is None or got["record"].get("kind") != "gen_ai.call":
            return JSONResponse({"error": "no such output record"}, status_code=404)
        return JSONResponse(got)

    async def healthz(request: Request) -> JSONResponse:
        def run() -> dict[str, Any]:
            from kansa.ledger.follower import Follower
            return {"indexed": tracer.index.count(),
                    "follower_position": Follower.saved(tracer.ledger.log.store, FOLLOWER)}
        return JSONResponse({"ok": True, **await run_in_threadpool(run)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if follow_every > 0:
            async def follow() -> None:
                while True:
                    try:
                        await asyncio.to_thread(tracer.index_new)
                    except Exception as e:  # keep following; the next pass retries
                        _logger.error("kansa provenance: indexing failed: %s", e)
                    await asyncio.sleep(follow_every)
            task = asyncio.create_task(follow())
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(routes=[
        Route("/", about), Route("/v1/verify", verify, methods=["POST"]),
        Route("/v1/records/{record_id}", record), Route("/healthz", healthz)],
        lifespan=lifespan)
