"""Helpers for the gateway tests: the gateway on a real socket (uvicorn in a thread of its
own, uvloop + httptools as in production), a TCP proxy that can cut a store off, and
ways to read every byte a store holds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
import uvloop

from kansa.api import Ledger
from kansa.capture.gateway import GatewayApp, GatewayConfig, create_gateway_app


class GatewayServer:
    """``create_gateway_app(ledger, config)`` served by uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, http="httptools", lifespan="on", access_log=False,
                             log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        uvloop.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> GatewayServer:
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@contextlib.contextmanager
def running_gateway(ledger: Ledger, config: GatewayConfig) -> Iterator[GatewayServer]:
    gw = GatewayServer(create_gateway_app(ledger, config)).start()
    try:
        yield gw
    finally:
        gw.stop()


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(step)


def find_record(ledger: Ledger, record_id: str) -> Any:
    try:
        return ledger.get(record_id)
    except Exception:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a TCP proxy that can cut the store off -----------------------------------------------


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target. ``cut()`` drops every connection and refuses
    new ones (the store is "down"); ``restore()`` brings it back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.down = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.run_forever()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self.down:
            w.transport.abort()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.transport.abort()
            return
        self._writers.update((w, uw))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(r, uw), pump(ur, w))
        self._writers.discard(w)
        self._writers.discard(uw)

    def cut(self) -> None:
        def do() -> None:
            self.down = True
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(do)
        time.sleep(0.05)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- everything a store holds, as bytes ------------------------------------------------------


def store_bytes(url: str) -> bytes:
    """Every byte of the store: the SQLite files (database and WAL), or a dump of every
    table in the PostgreSQL schema (text and binary COPY)."""
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite:").removeprefix("///").removeprefix("//"))
        with contextlib.suppress(sqlite3.Error):
            c = sqlite3.connect(path)
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")
            c.close()
        out = b""
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.exists():
                out += p.read_bytes()
        return out
    out = b""
    with psycopg.connect(url, autocommit=True) as c:
        tables = [r[0] for r in c.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()").fetchall()]
        for t in tables:
            with c.cursor() as cur:
                for fmt in ("", " (FORMAT binary)"):
                    with cur.copy(f"COPY {t} TO STDOUT{fmt}") as copy:
                        for data in copy:
                            out += bytes(data)
    return out
