"""The OTLP intake against the real GenAI instrumentation packages: an application
(tests/otel_driver.py, its own process) instrumented with
opentelemetry-instrumentation-openai-v2 (event_only content: messages in log records),
openinference-instrumentation-openai or opentelemetry-instrumentation-openai (OpenLLMetry)
drives the real openai client against the stand-in upstream and exports with the real
OTLP/HTTP exporters, through a proxy that loses the first answer of each path (so the
exporter retries), to a live ``kansa otel serve``. Then the same bodies are delivered
again to a restarted server. The records are read back from the ledger."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import kansa
from kansa.capture.otel import otel_records
from sdk_standin import StandIn
from test_otel import serving

HERE = Path(__file__).parent
PROMPT = "[INST] where is order A-1042 [/INST]"
END_USER = "end-user-42"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    s = StandIn().start()
    yield s
    s.stop()


class KansaServe:
    """``kansa otel serve`` as its own process on a ledger home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "KANSA_HOME": str(home)}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.stderr = ""

    def start(self) -> KansaServe:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kansa", "otel", "serve", "--port", str(port)],
            env=self.env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while True:  # wait for it to listen (not a timed assertion: a start-up bound)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        self.stderr = err
        return err


@dataclass
class Proxy:
    """Forwards OTLP requests to kansa; the first answer on each path is lost (a 503 is
    returned instead, after kansa has recorded it), so the exporter sends it again."""

    target: str = ""
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    answers: list[int] = field(default_factory=list)

    def app(self) -> Starlette:
        async def forward(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            ctype = request.headers["content-type"]
            self.sent.append((path, ctype, body))
            headers = {"content-type": ctype}
            if "content-encoding" in request.headers:
                headers["content-encoding"] = request.headers["content-encoding"]
            async with httpx.AsyncClient() as c:
                r = await c.post(self.target + path, content=body, headers=headers)
            self.answers.append(r.status_code)
            if path not in self.lost:
                self.lost.add(path)
                return Response(b"", 503, headers={"retry-after": "0"})
            return Response(r.content, r.status_code,
                            media_type=r.headers.get("content-type"))

        return Starlette(routes=[Route("/v1/traces", forward, methods=["POST"]),
                                 Route("/v1/logs", forward, methods=["POST"])])


def drive(which: str, otlp: str, upstream: str) -> dict[str, Any]:
    env = dict(os.environ)
    for k in list(env):  # only what this run sets
        if k.startswith(("OTEL_", "TRACELOOP_")):
            del env[k]
    if which == "openai-v2":
        # the latest conventions, content only in gen_ai.client.inference.operation.details
        # log records (the span carries none)
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "event_only"
    p = subprocess.run([sys.executable, str(HERE / "otel_driver.py"), which, otlp, upstream],
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def calls(lg: kansa.Ledger) -> list[kansa.StoredRecord]:
    return [r for r in lg.find(with_content=True) if r.entry["kind"] == "gen_ai.call"]


@pytest.mark.parametrize("which", ["openai-v2", "openinference", "openllmetry"])
def test_real_instrumentation_through_retries_and_restart(
        which: str, standin: StandIn, tmp_path: Path) -> None:
    home = tmp_path / "home"
    kansa.Ledger.init(home, origin="test.kansa/otel-interop").close()
    server = KansaServe(home).start()
    proxy = Proxy(target=server.url)
    try:
        with serving(proxy.app()) as proxy_url:
            got = drive(which, proxy_url, standin.url)
    finally:
        server.stop()
    # the exporter did retry: kansa saw the first delivery of each path twice
    paths = {p for p, _, _ in proxy.sent}
    assert paths == ({"/v1/traces", "/v1/logs"} if which == "openai-v2" else {"/v1/traces"})
    assert len(proxy.sent) == len({(p, b) for p, _, b in proxy.sent}) + len(paths)
    assert set(proxy.answers) == {200}

    with kansa.Ledger.open(home=home) as lg:
        recs = calls(lg)
        # exactly one record per span, despite the retries
        spans = [r.entry["attributes"]["kansa.otel.span_id"] for r in recs]
        assert len(spans) == len(set(spans)) == 2
        plain, streamed = sorted(recs, key=lambda r: r.entry["ts"])
        e = plain.entry
        # the model asked for and the model that answered (a dated snapshot)
        assert e["gen_ai.request.model"] == "alias-gpt-4o"
        assert e["gen_ai.response.model"] == got["plain"]["model"] == "gpt-4o-2026-01-01"
        assert e["gen_ai.usage.input_tokens"] == got["plain"]["input_tokens"]
        assert e["gen_ai.usage.output_tokens"] == got["plain"]["output_tokens"]
        assert e["attributes"]["gen_ai.request.temperature"] == 0.2
        s = streamed.entry
        assert s["gen_ai.request.model"] == s["gen_ai.response.model"] == "gpt-4o-mini"
        assert s["gen_ai.usage.output_tokens"] == got["stream"]["output_tokens"]

        for rec in recs:
            a = rec.entry["attributes"]
            joined = otel_records(lg, a["kansa.otel.trace_id"], a["kansa.otel.span_id"])
            # the content: in the span's record, or (event_only) in its log's record
            holders = [r for r in joined if r.content]
            assert len(holders) == 1
            held = holders[0]
            if which == "openai-v2":
                assert rec.content is None and held.entry["kind"] == "kansa.event"
                assert held.entry["attributes"]["kansa.otel.event_name"] == \
                    "gen_ai.client.inference.operation.details"
            else:
                assert held is not None and held.index == rec.index
            text = json.dumps(held.content, ensure_ascii=False)
            assert PROMPT in text and f"echo: {PROMPT}" in text
            # encrypted: neither the entry nor the stored ciphertext holds the text
            assert PROMPT.encode() not in held.entry_bytes
            att = lg.log.store.attachment(held.index)
            assert att is not None and b"A-1042" not in att[1]

        if which == "openllmetry":
            # gen_ai.user (the OpenAI API's `user`) is the subject: a pseudonym in the
            # entry, never the id itself; erasing the subject erases the content
            assert all(r.entry.get("subject") for r in recs)
            assert all(END_USER.encode() not in r.entry_bytes for r in recs)
            assert "gen_ai.user" not in json.dumps([r.entry for r in recs])
            assert {r.index for r in lg.find(subject=END_USER)} == {r.index for r in recs}
            lg.erase(END_USER)
            assert all(r.content is None for r in calls(lg))
        count = lg.log.size()

    # the same exports delivered again after a restart (a retry that outlived the
    # server): acknowledged, nothing recorded twice
    again = KansaServe(home).start()
    try:
        for path, ctype, body in proxy.sent:
            r = httpx.post(again.url + path, content=body, headers={"content-type": ctype})
            assert r.status_code == 200, r.text
    finally:
        err = again.stop()
    assert "0 spans recorded" in err
    with kansa.Ledger.open(home=home) as lg:
        assert lg.log.size() == count
