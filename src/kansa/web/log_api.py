"""The log's public read API over HTTP: C2SP tlog-tiles (``/checkpoint``, ``/tile/<L>/<N>``,
``/tile/<L>/<N>.p/<W>``, ``/tile/entries/<N>[.p/<W>]``) and receipts by record id
(``/receipt/<id>``, a C2SP tlog-proof), so a witness, an auditor or a partner can follow
the log without an export. Served by ``kansa serve-log`` alone, or by ``kansa web
--public-log`` beside the dashboard.

Only signed state is served: tiles and bundles within the latest checkpoint's tree. A
tile or bundle of width W never changes once it exists (the first W hashes of a tile
never do), so every one of them is ``immutable``; the checkpoint is ``no-cache``. Bytes
are those ``kansa export`` writes (the same store reads, the same encoders).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kansa.api import Ledger
from kansa.errors import FormatError, KansaError
from kansa.ledger.export import cosigned_note
from kansa.ledger.tiles import TILE_WIDTH, decode_index, encode_bundle, tile_width_at

IMMUTABLE = "public, max-age=31536000, immutable"


def _parse(rest: str) -> tuple[int, int]:
    """``<N>`` or ``<N>.p/<W>`` (N in tlog-tiles' x-prefixed groups) -> (N, W)."""
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, w = rest.split(".p/", 1)
        if not (w.isascii() and w.isdigit()) or str(int(w)) != w or not 1 <= int(w) < 256:
            raise FormatError(f"bad partial width {w!r}: 1 to 255, no leading zeros")
        width = int(w)
    return decode_index(rest), width


def log_routes(ledger: Ledger) -> list[Route]:
    store = ledger.log.store

    def signed_size() -> int:
        cp = store.latest_checkpoint()
        return 0 if cp is None else cp.size

    def not_found(why: str) -> Response:
        return PlainTextResponse(why + "\n", 404)

    def checkpoint(request: Request) -> Response:
        cp = store.latest_checkpoint()
        if cp is None:
            return not_found("the log has no signed checkpoint yet")
        note = cosigned_note(cp.note, store.cosignatures(cp.size))
        return Response(note.to_bytes(), media_type="text/plain; charset=utf-8",
                        headers={"cache-control": "no-cache"})

    def tile(request: Request) -> Response:
        path = request.path_params["path"]
        level_s, _, rest = path.partition("/")
        try:
            if level_s == "entries":
                return bundle(rest)
            if not (level_s.isascii() and level_s.isdigit()) or len(level_s) > 2:
                raise FormatError(f"bad tile level {level_s!r}")
            level = int(level_s)
            index, width = _parse(rest)
        except FormatError as e:
            return not_found(str(e))
        have = tile_width_at(level, index, signed_size())
        # a full tile only once it is full; a partial one up to the signed width (its
        # first W hashes never change, even after the tile fills)
        if have == 0 or width > have:
            return not_found(f"tile {path} is not in the signed tree")
        data = store.read_tile(level, index)
        if data is None or len(data) < width * 32:
            return not_found(f"tile {path} is missing from the store")
        return Response(data[:width * 32], media_type="application/octet-stream",
                        headers={"cache-control": IMMUTABLE})

    def bundle(rest: str) -> Response:
        index, width = _parse(rest)  # FormatError: the caller answers 404
        have = tile_width_at(0, index, signed_size())
        if have == 0 or width > have:
            return not_found(f"entry bundle {rest} is not in the signed tree")
        start = index * TILE_WIDTH
        rows = store.entries(start, start + width)
        if len(rows) != width:
            return not_found(f"entry bundle {rest}: entries missing from the store")
        return Response(encode_bundle([r.data for r in rows]),
                        media_type="application/octet-stream",
                        headers={"cache-control": IMMUTABLE})

    def receipt(request: Request) -> Response:
        rid = request.path_params["rid"]
        try:
            data = ledger.prove(rid)
        except KansaError as e:
            return not_found(str(e))
        return Response(data, media_type="text/plain; charset=utf-8")

    return [
        Route("/checkpoint", checkpoint),
        Route("/tile/{path:path}", tile),
        Route("/receipt/{rid}", receipt),
    ]
