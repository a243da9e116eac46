"""The gateway as it is deployed: ``kansa gateway`` processes (one of them with
``--workers 2``) sharing one PostgreSQL ledger under concurrent load, and the zero-config
start on the embedded SQLite ledger."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from gateway_harness import free_port
from kansa.api import Ledger
from standin import Standin

MSG = [{"role": "user", "content": "load"}]


def _start(args: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("KANSA_HOME", None)
    env.pop("KANSA_STORE", None)
    return subprocess.Popen([sys.executable, "-m", "kansa", "gateway", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=cwd, env=env)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway not ready: {log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return -9


async def _load(urls: list[str], n: int, concurrency: int) -> list[tuple[int, str | None, int]]:
    """n requests spread over the gateways: mostly chat, some streams, some malformed
    bodies, some upstream 500s. Returns (status, record id, kind) per response."""
    results: list[tuple[int, str | None, int]] = []
    counter = iter(range(n))

    async def worker(s: aiohttp.ClientSession) -> None:
        for i in counter:
            url = urls[i % len(urls)] + "/v1/chat/completions"
            kind = i % 10
            if kind == 8:
                data = b'{"model": "m", "messages": ['
            else:
                model = "fail-500" if kind == 9 else "m"
                data = json.dumps({"model": model, "messages": MSG,
                                   "stream": kind == 7}).encode()
            async with s.post(url, data=data,
                              headers={"content-type": "application/json"}) as r:
                body = await r.read()
                if kind == 7:
                    assert body.rstrip().endswith(b"data: [DONE]")
                results.append((r.status, r.headers.get("x-kansa-record"), kind))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return results


def test_gateway_processes_share_one_postgres_ledger(pg_url: str, tmp_path: Path,
                                                     standin: Standin) -> None:
    home = tmp_path / "home"
    Ledger.init(home, url=pg_url).close()
    ports = [free_port(), free_port()]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    common = ["--upstream", standin.url, "--home", str(home), "--store", pg_url]
    procs = [_start([*common, "--port", str(ports[0])], logs[0]),
             _start([*common, "--port", str(ports[1]), "--workers", "2"], logs[1])]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc, log in zip(urls, procs, logs, strict=True):
            _wait_ready(url, proc, log)
        results = asyncio.run(_load(urls, n=1200, concurrency=32))
    finally:
        codes = [_stop(p) for p in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]

    assert len(results) == 1200
    expected = {0: 200, 1: 200, 2: 200, 3: 200, 4: 200, 5: 200, 6: 200, 7: 200, 8: 400, 9: 500}
    assert all(status == expected[kind] for status, _, kind in results)
    ids = [rid for _, rid, _ in results]
    assert None not in ids and len(set(ids)) == 1200

    with Ledger.open(pg_url, home=home) as ledger:
        size = ledger.log.size()
        assert size == 1200  # records == requests served
        rows = list(ledger.log.store.iter_entries(0, size))  # raises on any gap
        assert [r.index for r in rows] == list(range(size))
        stored = {json.loads(r.data)["id"] for r in rows}
        assert stored == set(ids)
        outcomes: dict[str, int] = {}
        for r in rows:
            o = json.loads(r.data)["outcome"]
            outcomes[o] = outcomes.get(o, 0) + 1
        assert outcomes == {"ok": 960, "error": 240}
        ledger.checkpoint()
        report: Any = ledger.verify()
        assert report is not None


def test_zero_config_start(tmp_path: Path, standin: Standin) -> None:
    """``kansa gateway --upstream URL --port P`` in an empty directory: creates the
    embedded ledger, says the gateway is open, serves, records."""
    port = free_port()
    log = tmp_path / "gw.log"
    proc = _start(["--upstream", standin.url, "--port", str(port)], log, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        r = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
    finally:
        code = _stop(proc)
    out = log.read_text()
    assert code == 0, out
    assert r.status_code == 200
    assert "created a new ledger in .kansa" in out and "OPEN" in out
    assert "records: durable" in out
    with Ledger.open(home=tmp_path / ".kansa") as ledger:
        assert ledger.get(r.headers["x-kansa-record"]).entry["status"] == 200
        assert ledger.log.store.url.endswith(".kansa/ledger.db")
