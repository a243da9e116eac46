"""The approvals over HTTP: a small JSON API for a review tool, a chat bot or a dashboard.

    GET  /approvals?status=pending      list (default: pending; status=all for every one)
    GET  /approvals/{id}                one approval (a tool call's arguments included)
    POST /approvals/{id}/approve        {"reason": "..."}
    POST /approvals/{id}/reject         {"reason": "..."}
    POST /approvals/{id}/edit           {"arguments": {...}, "reason": "..."}

Every request carries ``Authorization: Bearer SECRET``; each secret stands for one named
approver (``tokens``: secret -> name), and a decision is recorded as made by that name
(a request cannot claim to be someone else). Decisions go through
:meth:`kansa.policy.approvals.Approvals.for_ledger`, so each is a ledger record. Errors
are ``{"error": {"code", "message"}}``: 400 bad input, 401 no or wrong token, 404 unknown
id, 409 not pending (decided, expired). ``kansa approvals serve`` runs it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kansa._time import to_us
from kansa.errors import KansaError
from kansa.policy.approvals import STATUSES, ApprovalError, Approvals, Clock, canonical_json

if TYPE_CHECKING:
    from kansa.api import Ledger

__all__ = ["create_approvals_app", "parse_tokens"]

MAX_BODY = 256 * 1024  # a decision is a reason and maybe arguments: small


def parse_tokens(specs: Iterable[str]) -> dict[str, str]:
    """``NAME=SECRET`` strings as {secret: name}; a :class:`KansaError` names a bad one."""
    out: dict[str, str] = {}
    for s in specs:
        name, sep, secret = s.partition("=")
        if not sep or not name.strip() or len(secret) < 16:
            raise KansaError(f"--token {name.strip() or '?'}=...: expected NAME=SECRET with "
                             "a secret of at least 16 characters")
        out[secret] = name.strip()
    if not out:
        raise KansaError("give at least one --token NAME=SECRET")
    return out


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_approvals_app(ledger: Ledger, tokens: Mapping[str, str], *,
                         clock: Clock | None = None) -> Starlette:
    """The app for ``ledger``'s approvals. ``tokens``: bearer secret -> approver name.
    ``clock``: the time decisions are made and expiry read at (default: the system's)."""
    if not tokens:
        raise KansaError("the approvals endpoint needs at least one token")
    approvals = Approvals.for_ledger(ledger, clock=clock)
    secrets = [(s.encode(), n) for s, n in tokens.items()]

    def now() -> int:
        return to_us(clock()) if clock is not None else to_us(datetime.now().astimezone())

    def who(request: Request) -> str | None:
        h = request.headers.get("authorization", "")
        scheme, _, given = h.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return None
        g = given.strip().encode()
        name = None
        for s, n in secrets:  # compare with every one: the time says nothing of which
            if hmac.compare_digest(s, g):
                name = n
        return name

    async def list_approvals(request: Request) -> JSONResponse:
        if who(request) is None:
            return _err(401, "unauthorized", "missing or wrong bearer token")
        status: str | None = request.query_params.get("status", "pending")
        if status == "all":
            status = None
        elif status not in STATUSES:
            return _err(400, "bad_status", f"status must be all or one of {', '.join(STATUSES)}")
        at = now()
        rows = await asyncio.to_thread(approvals.list, status, now=at)
        return JSONResponse({"approvals": [a.as_dict(at) for a in rows]})

    async def get_approval(request: Request) -> JSONResponse:
        if who(request) is None:
            return _err(401, "unauthorized", "missing or wrong bearer token")
        aid = request.path_params["id"]
        a = await asyncio.to_thread(approvals.get, aid)
        if a is None:
            return _err(404, "not_found", f"no approval {aid!r}")
        return JSONResponse(a.as_dict(now()))

    async def decide(request: Request) -> JSONResponse:
        name = who(request)
        if name is None:
            return _err(401, "unauthorized", "missing or wrong bearer token")
        aid, action = request.path_params["id"], request.path_params["action"]
        if action not in ("approve", "reject", "edit"):
            return _err(404, "not_found", f"no action {action!r} (approve, reject, edit)")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _err(413, "too_large", f"the body is over {MAX_BODY} bytes")
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return _err(400, "bad_json", f"the body is not JSON: {e}")
        if not isinstance(body, dict):
            return _err(400, "bad_body", "the body must be a JSON object")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            return _err(400, "bad_body", "reason must be a string")
        if action == "edit" and "arguments" not in body:
            return _err(400, "bad_body", "an edit needs the new 'arguments'")
        if action != "edit" and "arguments" in body:
            return _err(400, "bad_body", "only an edit takes 'arguments'")
        if action == "edit":
            try:
                canonical_json(body["arguments"], "edited arguments")
            except ApprovalError as e:  # JSON, but not exactly representable (2**53 ...)
                return _err(400, "bad_arguments", str(e))
        if await asyncio.to_thread(approvals.get, aid) is None:
            return _err(404, "not_found", f"no approval {aid!r}")

        def run() -> Any:
            if action == "approve":
                return approvals.approve(aid, by=name, reason=reason)
            if action == "reject":
                return approvals.reject(aid, by=name, reason=reason)
            return approvals.edit(aid, body["arguments"], by=name, reason=reason)

        try:
            a = await asyncio.to_thread(run)
        except ApprovalError as e:
            return _err(409, "not_decidable", str(e))
        return JSONResponse(a.as_dict(now()))

    return Starlette(routes=[
        Route("/approvals", list_approvals, methods=["GET"]),
        Route("/approvals/{id}", get_approval, methods=["GET"]),
        Route("/approvals/{id}/{action}", decide, methods=["POST"]),
    ])
