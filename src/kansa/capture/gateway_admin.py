"""The gateway's live policy and its admin endpoints: the policy file reloaded without a
restart (SIGHUP, a watch on the file, ``POST /-/kansa/policy/reload``) and
``GET /-/kansa/policy``, for the holder of the admin token. Not recorded: they touch no
model."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from kansa.capture.gateway_wire import _send_json
from kansa.errors import KansaError

if TYPE_CHECKING:  # type-only: no import cycle, kansa.policy loads lazily
    from kansa.capture.gateway_wire import Scope, Send
    from kansa.policy.inline import PolicyHandle


_logger = logging.getLogger("kansa.gateway")


def admin_token(env: str | None) -> bytes | None:
    """The admin endpoints' token from the environment variable ``env`` (None: disabled)."""
    if not env:
        return None
    tok = os.environ.get(env, "").strip()
    if len(tok) < 16:
        raise KansaError(f"the admin token in ${env} is missing or shorter than 16 "
                         "characters")
    return tok.encode()


class PolicyControl:
    """Reloads of the gateway's policy handle, and the admin endpoints."""

    def __init__(self, policy: PolicyHandle | None, *, watch_seconds: float,
                 token: bytes | None) -> None:
        self.policy = policy
        self.watch_seconds = watch_seconds
        self.token = token
        self._watch_task: asyncio.Task[None] | None = None
        self._sighup = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Reload on SIGHUP (in the main thread only) and, if asked, on file changes."""
        if self.policy is None or self.policy.path is None:
            return
        loop = asyncio.get_running_loop()
        try:  # only the main thread may handle signals (tests serve from a thread)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True
        except (ValueError, RuntimeError, NotImplementedError):
            _logger.info("SIGHUP cannot reload the policy here (not the main thread)")
        if self.watch_seconds > 0:
            self._watch_task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(BaseException):
                await self._watch_task
            self._watch_task = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _on_sighup(self) -> None:
        t = asyncio.ensure_future(self.reload("SIGHUP"))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def reload(self, why: str) -> dict[str, Any]:
        """Build the new snapshot off the event loop (requests go on meanwhile), swap it."""
        assert self.policy is not None
        res = await asyncio.to_thread(self.policy.reload)
        _logger.warning("kansa gateway: policy reload (%s): %s", why,
                        f"snapshot {res.snapshot}" if res.ok else f"failed: {res.error}")
        return res.as_dict()

    async def _watch(self) -> None:
        assert self.policy is not None
        while True:
            await asyncio.sleep(self.watch_seconds)
            with contextlib.suppress(Exception):
                if self.policy.changed_on_disk():
                    await self.reload("file changed")

    async def admin(self, scope: Scope, send: Send) -> None:
        """Answer an admin endpoint (``/-/kansa/...``)."""
        path, method = scope["path"], scope["method"]
        given = b""
        for k, v in scope["headers"]:
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                given = v[7:].strip()
        if self.token is None:
            return await _send_json(send, 403, {"error": "admin endpoints are disabled: start "
                                                "the gateway with an admin token "
                                                "(--admin-token-env VAR)"})
        if not hmac.compare_digest(given, self.token):
            return await _send_json(send, 401, {"error": "a valid admin token is required "
                                                "(Authorization: Bearer ...)"})
        if self.policy is None:
            return await _send_json(send, 404, {"error": "this gateway enforces no policy"})
        if path == "/-/kansa/policy/reload" and method == "POST":
            res = await self.reload("admin endpoint")
            return await _send_json(send, 200 if res["ok"] else 422, res)
        if path == "/-/kansa/policy" and method == "GET":
            h = self.policy
            snap = h.current
            return await _send_json(send, 200, {
                "snapshot": snap.hash, "file": str(h.path) if h.path else None,
                "packs": [f"{p.ref} {p.hash}" for p in snap.packs],
                "mode": snap.default_mode, "modes": snap.modes, "reloads": h.reloads,
                "last_error": h.last_error})
        await _send_json(send, 404, {"error": f"no admin route {method} {path[:200]}"})
