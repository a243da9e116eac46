"""Who is calling the gateway: the gateway keys in force (``kansa.capture.gateway_keys``),
held in memory, refreshed in the background and at once when an unknown key arrives (a
key created moments ago, perhaps by another process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kansa.capture.gateway_keys import KEY_PREFIX, GatewayKeys, KeyInfo, hash_key
from kansa.errors import KansaError

_logger = logging.getLogger("kansa.gateway")


class KeyCache:
    """The active gateway keys, by hash, and whether any key exists at all."""

    def __init__(self, keys: GatewayKeys, refresh_seconds: float) -> None:
        self.keys = keys
        self.refresh_seconds = refresh_seconds
        self.active: dict[str, KeyInfo] = {}
        self.exist = False
        self._refresh: asyncio.Future[None] | None = None
        self._refresh_started = 0.0
        self.load_now()

    def load_now(self) -> None:
        self.active, self.exist = self.keys.snapshot()

    async def refresh(self, newer_than: float) -> None:
        """Reload the keys, by a query that starts after ``newer_than`` (monotonic time).
        Concurrent callers share one query; queries are at least 20 ms apart."""
        while True:
            fut = self._refresh
            if fut is not None and not fut.done():
                started = self._refresh_started
                await asyncio.shield(fut)
                if started >= newer_than:
                    return
                continue
            if self._refresh_started >= newer_than and fut is not None:
                return
            gap = self._refresh_started + 0.02 - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
                continue
            self._refresh_started = time.monotonic()
            self._refresh = asyncio.ensure_future(self._do_refresh())

    async def _do_refresh(self) -> None:
        try:
            active, exist = await asyncio.to_thread(self.keys.snapshot)
        except KansaError as e:
            _logger.warning("cannot refresh gateway keys (keeping the ones loaded): %s", e)
            return
        self.active, self.exist = active, exist

    async def loop(self) -> None:
        """Refresh every ``refresh_seconds`` (a background task of the running gateway)."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            with contextlib.suppress(Exception):
                await self.refresh(newer_than=time.monotonic())

    async def authenticate(self, token: str | None) -> KeyInfo | None:
        """The key a caller presented, if it is active."""
        if token is None or not token.startswith(KEY_PREFIX):
            return None
        h = hash_key(token)
        info = self.active.get(h)
        if info is None:  # perhaps a key created moments ago (by another process)
            await self.refresh(newer_than=time.monotonic())
            info = self.active.get(h)
        return info
