"""The gateway's own HTTP/1.1 upstream client, against real servers on loopback sockets:
keep-alive reuse, bodies delimited by length, chunks or the connection's end, gzip,
a server closing idle connections, the connection limit, TLS."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway_harness import running_gateway
from kansa.api import Ledger
from kansa.capture.gateway import GatewayConfig, Upstream
from kansa.capture.upstream import Origin, UpstreamPool
from standin import Standin

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await r.readexactly(length) if length else b"")


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_keep_alive_reuses_one_connection() -> None:
    connections = 0
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                seen.append(await _read_request(r))
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: 2\r\n\r\n{}")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    async def main() -> None:
        server, port = await _serve(handler)
        pool = UpstreamPool()
        origin = Origin(f"http://127.0.0.1:{port}/v1")
        for i in range(20):
            resp = await pool.request(origin, b"POST", b"/chat/completions",
                                      [(b"content-type", b"application/json")],
                                      b'{"n": %d}' % i)
            assert resp.status == 200 and await resp.read() == b"{}"
            assert resp.content_type == "application/json"
            resp.release()
        await pool.close()
        server.close()

    asyncio.run(main())
    assert connections == 1 and len(seen) == 20
    first = seen[0].decode()
    assert first.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "host: 127.0.0.1:" in first and "content-length: 8" in first
    assert "accept-encoding: identity" in first


def test_bodies_by_connection_end_chunks_and_gzip() -> None:
    payload = b'{"answer": "' + b"x" * 5000 + b'"}'

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive, as real servers do
                req = await _read_request(r)
                if b"/close" in req:  # a body that ends with the connection
                    w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + payload)
                    await w.drain()
                    break
                if b"/gzip" in req:
                    z = gzip.compress(payload)
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n"
                            b"content-length: %d\r\n\r\n" % len(z) + z)
                else:
                    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    for i in range(0, len(payload), 1000):
                        part = payload[i:i + 1000]
                        w.write(b"%x\r\n%s\r\n" % (len(part), part))
                        await w.drain()
                    w.write(b"0\r\n\r\n")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        w.close()

    async def main() -> list[bytes]:
        server, port = await _serve(handler)
        pool = UpstreamPool()
        origin = Origin(f"http://127.0.0.1:{port}")
        out = []
        for path in (b"/close", b"/gzip", b"/chunked"):
            resp = await pool.request(origin, b"GET", path, [], b"")
            out.append(await resp.read())
            assert not any(k == b"content-encoding" for k, _ in resp.headers) or path == b"/gzip"
            resp.release()
        await pool.close()
        server.close()
        return out

    assert asyncio.run(main()) == [payload, payload, payload]


def test_server_closing_idle_connections_and_the_connection_limit() -> None:
    live = 0
    peak = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        try:
            while True:  # keep-alive until idle for 0.1 s, then close (a keep-alive timeout)
                await asyncio.wait_for(_read_request(r), 0.1)
                await asyncio.sleep(0.05)
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await w.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            live -= 1
            w.close()

    async def main() -> None:
        server, port = await _serve(handler)
        pool = UpstreamPool(limit_per_origin=2)
        origin = Origin(f"http://127.0.0.1:{port}")

        async def one() -> bytes:
            resp = await pool.request(origin, b"GET", b"/", [], b"")
            try:
                return await resp.read()
            finally:
                resp.release()

        assert await asyncio.gather(*(one() for _ in range(8))) == [b"ok"] * 8
        await asyncio.sleep(0.3)  # every pooled connection has been closed by the server
        assert await asyncio.gather(*(one() for _ in range(3))) == [b"ok"] * 3
        await pool.close()
        server.close()

    asyncio.run(main())
    assert peak == 2


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # Valid from 2000 to 9999 (GeneralizedTime's limit): TLS checks validity against the real
    # clock, so the test must not depend on which day it runs.
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_upstream_is_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    tls = Standin().start(ssl_context=ctx)
    ledger = Ledger.init(tmp_path / "home")
    try:
        assert tls.url.startswith("https://")
        trusted = GatewayConfig(upstreams=[Upstream(tls.url, name="tls", ca_file=str(cert))])
        with running_gateway(ledger, trusted) as gw:
            ok = httpx.post(gw.url + "/v1/chat/completions",
                            json={"model": "m", "messages": [{"role": "user", "content": "x"}],
                                  "stream": True})
        untrusted = GatewayConfig(upstreams=[Upstream(tls.url, name="tls")])
        with running_gateway(ledger, untrusted) as gw:
            bad = httpx.post(gw.url + "/v1/chat/completions",
                             json={"model": "m", "messages": []})
        assert ok.status_code == 200 and ok.content.rstrip().endswith(b"data: [DONE]")
        assert ledger.get(ok.headers["x-kansa-record"]).entry["gen_ai.usage.input_tokens"] == 11
        assert bad.status_code == 502  # an unverifiable certificate is an upstream failure
        assert ledger.get(bad.headers["x-kansa-record"]).entry["outcome"] == "error"
    finally:
        ledger.close()
        tls.stop()


def test_origin_rejects_what_it_cannot_reach() -> None:
    with pytest.raises(ValueError):
        Origin("ftp://example.com/v1")
    o = Origin("https://api.example.com/v1/")
    assert (o.host_header, o.base_path, o.port) == (b"api.example.com", "/v1", 443)
    assert Origin("http://[::1]:8080").host_header == b"[::1]:8080"
