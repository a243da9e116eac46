#!/usr/bin/env python
"""kansa gateway benchmark: figures printed beside their targets, never asserted.

One run starts everything on 127.0.0.1 and compares, under the same load:

  direct    nginx serving fixed OpenAI-shaped bodies (the stand-in upstream: a JSON chat
            completion with usage, or a fixed SSE stream with a usage chunk)
  kansa     `kansa gateway --upstream http://127.0.0.1:<nginx>/v1` on a fresh KANSA_HOME:
            SQLite (the default) and PostgreSQL (--pg-url, a dedicated database dropped and
            recreated per run), --workers 1 and 2, durable (default) and --async-records
  litellm   the LiteLLM proxy (from a separate venv, installed there if missing) with the
            same nginx as an openai-compatible model; no database, logging down

Figures:

  1. latency at 1 connection (wrk -t1 -c1 --latency): p50/p99 and kansa's added latency
     over direct (targets: p50 <= 1 ms, p99 <= 5 ms); plus a paired estimate from a small
     client alternating direct and gateway requests on two keep-alive connections
  2. throughput at 16 and 64 connections (wrk -t2): durable kansa >= 1,500 req/s and
     >= 30x LiteLLM in the same run; --async-records for context
  3. streaming: time to first byte, paired direct/gateway samples (added p50 <= 1 ms)
  4. every request a record: per load phase, records committed (read from the store)
     vs requests the client saw completed; after each gateway run the ledger is opened,
     counted by outcome and verified (Ledger.verify)

Results go to bench/out/gateway.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

# Targets (from the project brief) and the anchors they are set against.
T_ADDED_P50_MS = 1.0  # kansa's added latency over direct, 1 connection
T_ADDED_P99_MS = 5.0
T_RPS = 1_500  # durable kansa, 16 and 64 connections
T_VS_LITELLM = 30.0  # kansa req/s / LiteLLM req/s, same connections, same run
T_TTFB_ADDED_MS = 1.0  # streaming, added time to first byte, p50
ANCHOR_LITELLM = "LiteLLM seen earlier here: ~+28 ms p50 at 1 connection, ~35 req/s at 16"

BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}'
LITELLM_STREAM_BODY = (b'{"model":"bench-stream","messages":[{"role":"user","content":"hi"}],'
                       b'"stream":true}')
STREAM_HEADER = "x-bench-stream"  # nginx answers with the SSE body when this header is set
PATH = "/v1/chat/completions"

_CHUNK = {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk",
          "created": 1700000000, "model": "bench", "system_fingerprint": "fp_bench"}


def _chat_json() -> str:
    return json.dumps({
        "id": "chatcmpl-bench0001", "object": "chat.completion", "created": 1700000000,
        "model": "bench", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant",
                                             "content": "Hello! How can I help you today?",
                                             "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17},
    }, separators=(",", ":"))


def _sse_body() -> str:
    def ev(choices: list[Any], **extra: Any) -> str:
        return "data: " + json.dumps(dict(_CHUNK, choices=choices, **extra),
                                     separators=(",", ":")) + "\n\n"

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}

    return "".join([
        ev([delta({"role": "assistant", "content": ""})]),
        ev([delta({"content": "Hello"})]),
        ev([delta({"content": "! How can I help"})]),
        ev([delta({"content": " you today?"})]),
        ev([delta({}, "stop")]),
        ev([], usage={"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17}),
        "data: [DONE]\n\n",
    ])


# ------------------------------------------------------------------------------------
# small helpers


def pct(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def summarize_ms(vals_s: list[float]) -> dict[str, float]:
    v = sorted(x * 1000 for x in vals_s)
    if not v:
        return {"n": 0}
    return {"n": len(v), "mean": round(sum(v) / len(v), 4), "p50": round(pct(v, 50), 4),
            "p90": round(pct(v, 90), 4), "p99": round(pct(v, 99), 4),
            "max": round(v[-1], 4)}


def yes(good: bool | None) -> str:
    if good is None:
        return "[dim]n/a[/]"
    return "[green]yes[/]" if good else "[red]no[/]"


def f_ms(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or x != x else f"{x:,.{digits}f}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------------
# processes: each server in its own process group, all killed on exit


class Procs:
    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 env=env, cwd=cwd)
        self.started.append(p)
        return p

    @staticmethod
    def _signal_group(p: subprocess.Popen[bytes], sig: int) -> bool:
        try:
            os.killpg(p.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGINT,
             timeout: float = 30.0) -> None:
        """Signal the process group (like ^C in a terminal), wait, then SIGKILL it."""
        if p.poll() is None:
            self._signal_group(p, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]pid {p.pid} did not stop in {timeout:.0f} s: "
                              "killing its process group[/]")
        self._signal_group(p, signal.SIGKILL)  # stragglers (workers) of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)

    def kill_all(self) -> None:
        for p in self.started:
            self._signal_group(p, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait(5)


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path,
              timeout: float, what: str) -> float:
    """Wait until GET path answers 200; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, path, timeout=2.0)
            if status == 200:
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------
# CPU accounting: who used the 2 cores during a phase (us, by role, or someone else)

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, seconds of CPU: own plus waited-for children)."""
    table: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        # fields after the comm: state ppid ... utime(14) stime(15) cutime(16) cstime(17)
        table[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]) / _CLK)
    return table


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / _CLK


def _threads_by_name(pids: list[int]) -> dict[str, float]:
    """CPU seconds of these processes' threads: "loop" for main threads (the event loop),
    "other" for the rest (the ledger's sequencer, mostly). Python 3.11 does not name OS
    threads, so the main thread (tid == pid) is all that tells them apart."""
    out: dict[str, float] = collections.defaultdict(float)
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            name = "loop" if tid == str(pid) else "other"
            rest = raw[raw.rfind(b")") + 2:].split()
            out[name] += (int(rest[11]) + int(rest[12])) / _CLK
    return dict(out)


class CpuMeter:
    """Snapshots of machine-wide busy CPU, our process tree, and named roles in it."""

    def __init__(self) -> None:
        self.roles: dict[str, int] = {}

    def snap(self) -> dict[str, float]:
        table = _proc_table()
        children: dict[int, list[int]] = collections.defaultdict(list)
        for pid, (ppid, _) in table.items():
            children[ppid].append(pid)

        def tree(root: int) -> float:
            total, stack = 0.0, [root]
            while stack:
                pid = stack.pop()
                if pid in table:
                    total += table[pid][1]
                stack.extend(children.get(pid, ()))
            return total

        def tree_pids(root: int) -> list[int]:
            out, stack = [], [root]
            while stack:
                pid = stack.pop()
                out.append(pid)
                stack.extend(children.get(pid, ()))
            return out

        # our tree: this process, its waited-for children (wrk runs) and the live servers
        s = {"wall": time.monotonic(), "busy": _busy_seconds(), "ours": tree(os.getpid())}
        for role, pid in self.roles.items():
            s["role:" + role] = tree(pid)
        if "gateway" in self.roles:  # the gateway's threads: event loop vs sequencer
            for name, secs in _threads_by_name(tree_pids(self.roles["gateway"])).items():
                s["thread:" + name] = secs
        return s

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        wall = max(b["wall"] - a["wall"], 1e-9)
        out: dict[str, Any] = {"wall_s": round(wall, 3),
               "busy_cores": round((b["busy"] - a["busy"]) / wall, 3),
               "ours_cores": round((b["ours"] - a["ours"]) / wall, 3),
               "foreign_cores": round(max(0.0, (b["busy"] - a["busy"]) - (b["ours"] - a["ours"]))
                                      / wall, 3)}
        for k in b:
            if k.startswith("role:") and k in a:
                out[k[5:] + "_cpu_s"] = round(b[k] - a[k], 3)
            elif k.startswith("thread:"):
                out.setdefault("gateway_threads_cpu_s", {})[k[7:]] = round(
                    b[k] - a.get(k, 0.0), 3)
        return out


# ------------------------------------------------------------------------------------
# the stand-in upstream


def _nginx_quote(s: str) -> str:
    if "$" in s:
        raise ValueError("nginx would expand $ in a return body")
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_conf(prefix: Path, port: int) -> str:
    return "\n".join([
        "daemon off;",
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 8192; }",
        "http {",
        "  access_log off;",
        f"  client_body_temp_path {prefix}/client_body;",
        f"  proxy_temp_path {prefix}/proxy;",
        f"  fastcgi_temp_path {prefix}/fastcgi;",
        f"  uwsgi_temp_path {prefix}/uwsgi;",
        f"  scgi_temp_path {prefix}/scgi;",
        "  keepalive_requests 10000000;",
        "  keepalive_timeout 300s;",
        "  server_tokens off;",
        "  server {",
        f"    listen 127.0.0.1:{port} backlog=4096;",
        f"    location = {PATH} {{",
        f"      if ($http_{STREAM_HEADER.replace('-', '_')}) {{ rewrite ^ /s{PATH} last; }}",
        "      default_type application/json;",
        f"      return 200 {_nginx_quote(_chat_json())};",
        "    }",
        f"    location = /s{PATH} {{",
        "      default_type text/event-stream;",
        f"      return 200 {_nginx_quote(_sse_body())};",
        "    }",
        "    location = /healthz { return 200 'ok'; }",
        "  }",
        "}",
        "",
    ])


# ------------------------------------------------------------------------------------
# load: wrk for throughput and the 1-connection latency figure

WRK_LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"p999_us":%%d,"mean_us":%%.1f,"max_us":%%d,"min_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max,
    latency.min))
end
"""


def lua_string(b: bytes) -> str:
    return '"' + b.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(port: int, script: Path, connections: int, duration: float,
            timeout_s: float = 30.0) -> dict[str, Any]:
    threads = 1 if connections < 2 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--latency", f"--timeout={int(timeout_s)}s", "-s", str(script),
           f"http://127.0.0.1:{port}{PATH}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 60)
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout[-800:]} {r.stderr[-800:]}")
    w = json.loads(m.group(1))
    secs = w["duration_us"] / 1e6
    return {
        "connections": connections, "threads": threads,
        "completed": w["requests"],  # every response wrk read, 2xx or not
        "non_2xx": w["status"],
        "socket_errors": {k: w[k] for k in ("connect", "read", "write", "timeout")},
        "seconds": round(secs, 3),
        "rps": round(w["requests"] / secs, 1) if secs else 0.0,
        "latency_ms": {"mean": round(w["mean_us"] / 1000, 4), "p50": w["p50_us"] / 1000,
                       "p90": w["p90_us"] / 1000, "p99": w["p99_us"] / 1000,
                       "p99.9": w["p999_us"] / 1000, "max": w["max_us"] / 1000,
                       "min": w["min_us"] / 1000},
    }


# ------------------------------------------------------------------------------------
# a small blocking HTTP/1.1 client (httptools' parser) for paired per-request timings


class _Resp:
    __slots__ = ("body_seen_event", "complete", "t_event")

    def __init__(self) -> None:
        self.complete = False
        self.body_seen_event = False
        self.t_event = 0.0

    def on_body(self, body: bytes) -> None:
        if not self.body_seen_event and b"data:" in body:
            self.body_seen_event = True
            self.t_event = -1.0  # stamped by the caller with the recv time

    def on_message_complete(self) -> None:
        self.complete = True


class Conn:
    """One keep-alive connection; ``request`` returns (status, ttfb, first event, total)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        return s

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, raw: bytes) -> tuple[int, float, float, float]:
        for attempt in (0, 1):
            s = self.sock or self._connect()
            try:
                return self._once(s, raw)
            except (OSError, httptools.HttpParserError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _once(self, s: socket.socket, raw: bytes) -> tuple[int, float, float, float]:
        r = _Resp()
        p = httptools.HttpResponseParser(r)
        pc = time.perf_counter
        t0 = pc()
        s.sendall(raw)
        first = 0.0
        ev = 0.0
        while not r.complete:
            data = s.recv(262144)
            t = pc()
            if not data:
                raise ConnectionError("server closed the connection")
            if not first:
                first = t
            p.feed_data(data)
            if r.t_event < 0:
                r.t_event = ev = t
        if not p.should_keep_alive():
            self.close()
        return p.get_status_code(), first - t0, (ev or first) - t0, pc() - t0


def raw_request(port: int, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    head = [f"POST {PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Paired:
    a: list[tuple[int, float, float, float]] = field(default_factory=list)
    b: list[tuple[int, float, float, float]] = field(default_factory=list)
    b_sent: int = 0  # requests sent to b (each must become one record)


def paired_run(a_port: int, a_req: bytes, b_port: int, b_req: bytes, seconds: float,
               max_samples: int, warmup: int) -> Paired:
    """Alternate one request to a (direct) and one to b (the proxy), order flipped every
    iteration, sequentially on one keep-alive connection each."""
    ca, cb = Conn(a_port), Conn(b_port)
    out = Paired()
    try:
        for _ in range(warmup):
            ca.request(a_req)
            out.b_sent += 1
            cb.request(b_req)
        deadline = time.monotonic() + seconds
        i = 0
        while i < max_samples and time.monotonic() < deadline:
            if i % 2 == 0:
                out.a.append(ca.request(a_req))
                out.b_sent += 1
                out.b.append(cb.request(b_req))
            else:
                out.b_sent += 1
                out.b.append(cb.request(b_req))
                out.a.append(ca.request(a_req))
            i += 1
    finally:
        ca.close()
        cb.close()
    return out


def paired_summary(p: Paired) -> dict[str, Any]:
    def side(rows: list[tuple[int, float, float, float]]) -> dict[str, Any]:
        return {"n": len(rows), "non_2xx": sum(1 for r in rows if not 200 <= r[0] < 300),
                "ttfb_ms": summarize_ms([r[1] for r in rows]),
                "first_event_ms": summarize_ms([r[2] for r in rows]),
                "total_ms": summarize_ms([r[3] for r in rows])}

    a, b = side(p.a), side(p.b)
    added: dict[str, Any] = {}
    for k in ("ttfb_ms", "first_event_ms", "total_ms"):
        if a[k].get("n") and b[k].get("n"):
            added[k] = {q: round(b[k][q] - a[k][q], 4) for q in ("p50", "p90", "p99")}
    return {"direct": a, "proxy": b, "added": added}


# ------------------------------------------------------------------------------------
# stores and ledger checks


def pg_admin_url(url: str) -> tuple[str, str]:
    base, _, db = url.rpartition("/")
    return f"{base}/postgres", db.split("?")[0]


def pg_recreate(url: str) -> str | None:
    """Drop and create the benchmark database; None (with a warning) if impossible."""
    try:
        import psycopg
    except ImportError:
        console.print("[yellow]psycopg missing: PostgreSQL runs skipped[/]")
        return None
    admin, db = pg_admin_url(url)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        console.print(f"[yellow]unusual database name {db!r}: PostgreSQL runs skipped[/]")
        return None
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{db}"')
        return url
    except psycopg.Error as e:
        console.print(f"[yellow]PostgreSQL unavailable at {admin}: {e}; skipping it[/]")
        return None


def pg_drop(url: str) -> None:
    import psycopg

    admin, db = pg_admin_url(url)
    with contextlib.suppress(psycopg.Error), \
            psycopg.connect(admin, autocommit=True, connect_timeout=3) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def store_size(url: str) -> int:
    """The committed log size, read without touching the writer (no migration, no lock)."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as c:
            row = c.execute("SELECT size FROM log_state WHERE id = 1").fetchone()
            return int(row[0]) if row else 0
    path = url.removeprefix("sqlite:").removeprefix("///").removeprefix("//")
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = c.execute("SELECT size FROM log_state WHERE id = 1").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def settle(url: str, want: int, timeout: float = 180.0) -> tuple[int, float]:
    """The store's size once it holds at least ``want`` entries and has stopped growing
    (async-mode appends drain after the load; one SQLite commit of a large backlog can take
    seconds, so "no growth for a moment" alone is not enough), and when it last grew
    (monotonic clock). After ``timeout`` s, whatever it holds: a shortfall is a finding."""
    last, stable, t0 = -1, 0, time.monotonic()
    changed = t0
    while time.monotonic() - t0 < timeout:
        n = store_size(url)
        now = time.monotonic()
        if n == last:
            stable += 1
            if stable >= 3 and n >= want:
                return n, changed
        else:
            stable, last, changed = 0, n, now
        time.sleep(0.1)
    return last, changed


def check_ledger(home: Path) -> dict[str, Any]:
    """Open the ledger the gateway wrote (it is stopped), count records, verify it."""
    from kansa.api import Ledger

    out: dict[str, Any] = {}
    ledger = Ledger.open(home=home)
    try:
        out["size"] = ledger.log.size()
        outcomes: collections.Counter[str] = collections.Counter()
        statuses: collections.Counter[str] = collections.Counter()
        errors: collections.Counter[str] = collections.Counter()
        n = 0
        for r in ledger.find():
            n += 1
            e = r.entry
            outcomes[str(e.get("outcome"))] += 1
            statuses[str(e.get("status"))] += 1
            if e.get("error.type"):
                errors[str(e.get("error.type"))] += 1
        out["found"] = n
        out["outcomes"] = dict(outcomes)
        out["statuses"] = dict(statuses)
        out["error_types"] = dict(errors)
        t0 = time.perf_counter()
        try:
            rep = ledger.verify()
            out["verify"] = {"ok": True, "entries_checked": rep.entries_checked,
                             "checkpoint_size": rep.size,
                             "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as e:  # a failed verification is a finding, reported as such
            out["verify"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        ledger.close()
    return out


# ------------------------------------------------------------------------------------
# the run


@dataclass
class Target:
    """One server under test (direct nginx, a kansa gateway configuration, LiteLLM)."""

    key: str
    label: str
    port: int
    stream_req: bytes  # the raw streaming request for the paired TTFB client
    plain_req: bytes
    store_url: str | None = None  # kansa: where to read the log size
    durable: bool = False  # kansa default mode
    results: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Procs()
        self.cpu = CpuMeter()
        self.tmp = Path(tempfile.mkdtemp(prefix="kansa-gwbench-"))
        self.results: dict[str, Any] = {"meta": {}, "targets": {}, "phases": [],
                                        "figures": {}, "notes": []}
        self.script = self.tmp / "post.lua"
        self.script.write_text(WRK_LUA % lua_string(BODY))
        self.nginx_port = 0
        self.direct: Target | None = None

    # -- bookkeeping -------------------------------------------------------------------

    def save(self) -> None:
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def note(self, text: str) -> None:
        console.print(f"[yellow]note:[/] {text}")
        self.results["notes"].append(text)

    def wait_quiet(self) -> float | None:
        """Wait (up to --quiet-wait s) until other processes use < --quiet-cores of CPU."""
        if self.args.quiet_wait <= 0:
            return None
        t0 = time.monotonic()
        waited = False
        while True:
            a = self.cpu.snap()
            time.sleep(1.0)
            f = CpuMeter.diff(a, self.cpu.snap())["foreign_cores"]
            if f < self.args.quiet_cores or time.monotonic() - t0 >= self.args.quiet_wait:
                if waited or f >= self.args.quiet_cores:
                    console.print(f"  [dim](waited {time.monotonic() - t0:.0f} s for other "
                                  f"work to quiet down: {f:.2f} cores busy elsewhere)[/]")
                return f
            waited = True

    def phase(self, t: Target, name: str, fn: Callable[[], dict[str, Any]],
              connections: int, count_key: str = "completed",
              measured: bool = True) -> dict[str, Any]:
        """Run one load phase, with CPU accounting and (kansa) the record count."""
        quiet = self.wait_quiet() if measured else None
        before = store_size(t.store_url) if t.store_url else None
        la0 = os.getloadavg()
        s0 = self.cpu.snap()
        r = fn()
        s1 = self.cpu.snap()
        r["cpu"] = CpuMeter.diff(s0, s1)
        r["loadavg_before"] = la0
        r["loadavg_after"] = os.getloadavg()
        if quiet is not None:
            r["foreign_cores_before"] = quiet
        if t.store_url:
            at_end = store_size(t.store_url)
            t_end = time.monotonic()
            assert before is not None
            done = r[count_key]
            after, last_change = settle(t.store_url, before + done)
            recs = after - before
            r["records"] = {"before": before, "after": after, "added": recs,
                            "client_completed": done, "extra": recs - done,
                            "allowed_extra": connections,
                            "ok": 0 <= recs - done <= connections,
                            # answered but not yet committed when the load stopped (async
                            # mode), and how long they took to drain
                            "backlog_at_end": max(0, done - (at_end - before)),
                            "drain_s": round(max(0.0, last_change - t_end), 2)
                            if at_end != after else 0.0}
            gw = r["cpu"].get("gateway_cpu_s")
            if gw is not None and recs:
                r["gateway_cpu_us_per_request"] = round(gw / recs * 1e6, 1)
                r["gateway_threads_cpu_us_per_request"] = {
                    k: round(v / recs * 1e6, 1)
                    for k, v in r["cpu"].get("gateway_threads_cpu_s", {}).items() if v > 0}
        r["target"] = t.key
        r["phase"] = name
        self.results["phases"].append(r)
        t.results[name] = r
        self._print_phase(t, name, r)
        self.save()
        return r

    def _print_phase(self, t: Target, name: str, r: dict[str, Any]) -> None:
        def connections_hint(r: dict[str, Any]) -> int:
            return int(r.get("connections", 1))

        bits = [f"  {t.label:<34} {name:<10}"]
        if "rps" in r:
            lat = r["latency_ms"]
            bits.append(f"{r['rps']:>9,.0f} req/s  p50 {lat['p50']:.3f} ms  "
                        f"p99 {lat['p99']:.3f} ms")
            if r["non_2xx"] or any(r["socket_errors"].values()):
                bits.append(f"[red]non-2xx {r['non_2xx']} errors {r['socket_errors']}[/]")
        elif "proxy" in r:
            k = "ttfb_ms"
            bits.append(f"direct p50 {r['direct'][k]['p50']:.3f}  proxy p50 "
                        f"{r['proxy'][k]['p50']:.3f} ms (n={r['proxy']['n']})")
        if "records" in r:
            rc = r["records"]
            colour = "green" if rc["ok"] else "red"
            bits.append(f"[{colour}]records +{rc['added']} vs {rc['client_completed']} "
                        f"completed[/]")
            if rc["backlog_at_end"] > connections_hint(r):
                bits.append(f"[yellow]{rc['backlog_at_end']} answered but not yet recorded at "
                            f"the end of the load (drained in {rc['drain_s']} s)[/]")
        bits.append(f"[dim]foreign CPU {r['cpu']['foreign_cores']:.2f} cores[/]")
        console.print("  ".join(bits))

    # -- servers ------------------------------------------------------------------------

    def start_nginx(self) -> None:
        if not shutil.which("nginx") or not shutil.which("wrk"):
            raise SystemExit("needs nginx and wrk: apt-get install -y nginx wrk")
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        self.nginx_port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, self.nginx_port))
        log = prefix / "stdout.log"
        p = self.procs.start(["nginx", "-c", str(conf), "-p", str(prefix) + "/"], log)
        self.cpu.roles["nginx"] = p.pid
        wait_http(self.nginx_port, "/healthz", p, log, 10, "nginx")
        self.nginx = p
        direct = Target("direct", "direct (nginx)", self.nginx_port,
                        raw_request(self.nginx_port, STREAM_BODY, {STREAM_HEADER: "1"}),
                        raw_request(self.nginx_port, BODY))
        self.direct = direct
        # sanity: the canned bodies parse as what they claim to be
        c = Conn(self.nginx_port)
        status, *_ = c.request(direct.plain_req)
        c.close()
        if status != 200:
            raise SystemExit(f"nginx stand-in answered {status}")

    def kansa_cmd(self) -> list[str]:
        exe = Path(sys.executable).parent / "kansa"
        if exe.exists():
            return [str(exe)]
        found = shutil.which("kansa")
        if found:
            return [found]
        raise SystemExit("cannot find the kansa command (run with the project's .venv python)")

    @contextlib.contextmanager
    def kansa(self, store: str, workers: int, durable: bool) -> Iterator[Target | None]:
        key = f"kansa-{store}-w{workers}-{'durable' if durable else 'async'}"
        label = f"kansa {store} w{workers} {'durable' if durable else 'async'}"
        home = self.tmp / key
        url: str | None = None
        if store == "postgres":
            url = pg_recreate(self.args.pg_url)
            if url is None:
                self.note(f"{key}: PostgreSQL unavailable, skipped")
                yield None
                return
        port = free_port()
        cmd = self.kansa_cmd() + ["gateway", "--upstream", f"http://127.0.0.1:{self.nginx_port}/v1",
                                  "--port", str(port), "--home", str(home),
                                  "--workers", str(workers)]
        if url:
            cmd += ["--store", url]
        if not durable:
            cmd += ["--async-records"]
        env = dict(os.environ, KANSA_HOME=str(home))
        env.pop("KANSA_STORE", None)
        log = self.tmp / f"{key}.log"
        console.print(f"[bold]{label}[/]  [dim]{' '.join(cmd[1:])}[/]")
        p = self.procs.start(cmd, log, env=env)
        self.cpu.roles["gateway"] = p.pid
        t: Target | None = None
        try:
            ready = wait_http(port, "/healthz", p, log, 60, "kansa gateway")
            from kansa.home import Home

            store_url = url or Home.load(home).store_url
            t = Target(key, label, port,
                       raw_request(port, STREAM_BODY, {STREAM_HEADER: "1"}),
                       raw_request(port, BODY), store_url=store_url, durable=durable)
            t.results["config"] = {"store": store, "workers": workers, "durable": durable,
                                   "store_url": store_url, "startup_s": round(ready, 2),
                                   "command": cmd}
            self.results["targets"][key] = t.results
            yield t
            if workers == 1:
                with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                    _, body = http_get(port, "/healthz")
                    t.results["healthz"] = json.loads(body)
        finally:
            self.cpu.roles.pop("gateway", None)
            t_stop = time.monotonic()
            self.procs.stop(p, signal.SIGINT, timeout=60)
            if t is not None:
                t.results["stop_s"] = round(time.monotonic() - t_stop, 2)
                if p.returncode not in (0, -signal.SIGINT):
                    self.note(f"{key}: gateway exited with {p.returncode}: {tail(log, 5)}")
                self.finish_kansa(t, home)
            if url:
                pg_drop(url)
            self.save()

    def finish_kansa(self, t: Target, home: Path) -> None:
        """Figure 4 for one gateway run: the ledger holds one record per request."""
        try:
            led = check_ledger(home)
        except Exception as e:
            led = {"error": f"{type(e).__name__}: {e}"}
            self.note(f"{t.key}: could not open/check the ledger: {led['error']}")
        # every phase run (with --repeat, t.results keeps only the median of each)
        phases = [r for r in self.results["phases"] if r["target"] == t.key and "records" in r]
        completed = sum(r["records"]["client_completed"] for r in phases)
        added = sum(r["records"]["added"] for r in phases)
        slack = sum(r["records"]["allowed_extra"] for r in phases)
        non_2xx_client = sum(r.get("non_2xx", 0) for r in phases) + sum(
            r["proxy"]["non_2xx"] for r in phases if "proxy" in r)
        size = led.get("size")
        t.results["ledger"] = led
        t.results["accounting"] = {
            "client_completed": completed, "records_during_phases": added,
            "ledger_size": size, "in_flight_slack": slack,
            "client_non_2xx": non_2xx_client,
            "records_not_ok": sum(v for k, v in led.get("outcomes", {}).items() if k != "ok"),
            "phases_ok": all(r["records"]["ok"] for r in phases),
            "size_matches_phases": size == (phases[-1]["records"]["after"] if phases else 0),
            "max_backlog_at_end": max((r["records"]["backlog_at_end"] for r in phases),
                                      default=0),
            "max_drain_s": max((r["records"]["drain_s"] for r in phases), default=0.0),
        }
        v = led.get("verify", {})
        colour = "green" if v.get("ok") and t.results["accounting"]["phases_ok"] else "red"
        console.print(f"  [{colour}]ledger: {size} records, {completed} requests completed by "
                      f"the clients, outcomes {led.get('outcomes')}, verify "
                      f"{'ok' if v.get('ok') else v.get('error')} "
                      f"({v.get('seconds', '?')} s)[/]")

    def litellm_exe(self) -> tuple[Path | None, str]:
        venv = Path(self.args.litellm_venv)
        exe = venv / "bin" / "litellm"
        if exe.exists():
            return exe, ""
        if self.args.no_install:
            return None, f"{exe} not found and --no-install given"
        console.print(f"installing LiteLLM into {venv} (pip install 'litellm[proxy]'), "
                      "a separate venv: this can take a few minutes")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, text=True, timeout=300)
            r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                                "litellm[proxy]"], capture_output=True, text=True,
                               timeout=1800)
        except (OSError, subprocess.SubprocessError) as e:
            return None, f"could not create the venv / run pip: {e}"
        if r.returncode != 0 or not exe.exists():
            return None, f"pip install failed ({r.returncode}): {(r.stderr or r.stdout)[-600:]}"
        return exe, ""

    @contextlib.contextmanager
    def litellm(self) -> Iterator[Target | None]:
        exe, why = self.litellm_exe()
        if exe is None:
            self.note(f"LiteLLM skipped: {why}")
            self.results["targets"]["litellm"] = {"skipped": why}
            yield None
            return
        version = ""
        with contextlib.suppress(Exception):
            version = subprocess.run(
                [str(exe.parent / "python"), "-c",
                 "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True, text=True, timeout=60).stdout.strip()
        d = self.tmp / "litellm"
        d.mkdir()
        base = f"http://127.0.0.1:{self.nginx_port}"
        cfg = {
            "model_list": [
                {"model_name": "bench", "litellm_params": {
                    "model": "openai/bench", "api_base": f"{base}/v1", "api_key": "x"}},
                {"model_name": "bench-stream", "litellm_params": {
                    "model": "openai/bench", "api_base": f"{base}/s/v1", "api_key": "x"}},
            ],
            "litellm_settings": {"set_verbose": False, "json_logs": False,
                                 "turn_off_message_logging": True},
            # no master key, like the open kansa gateway it is compared with (LiteLLM
            # refuses to start without one unless told this)
            "general_settings": {"disable_spend_logs": True, "disable_error_logs": True,
                                 "dangerously_permit_weak_or_unset_master_key": True},
        }
        (d / "config.yaml").write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        (d / "log.json").write_text(json.dumps({
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"d": {"format": "%(levelname)s %(name)s %(message)s"}},
            "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "d"}},
            "loggers": {"uvicorn": {"handlers": ["h"], "level": "WARNING"},
                        "uvicorn.error": {"level": "WARNING"},
                        "uvicorn.access": {"handlers": ["h"], "level": "WARNING",
                                           "propagate": False}},
        }))
        port = free_port()
        cmd = [str(exe), "--config", str(d / "config.yaml"), "--host", "127.0.0.1",
               "--port", str(port), "--num_workers", str(self.args.litellm_workers),
               "--log_config", str(d / "log.json")]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VIRTUAL_ENV", "KANSA_", "PYTHON"))}
        env.pop("DATABASE_URL", None)  # no database: LiteLLM's default
        env.update(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True",
                   LITELLM_TELEMETRY="False", PYTHONUNBUFFERED="1")
        log = d / "stdout.log"
        console.print(f"[bold]LiteLLM {version}[/]  [dim]{' '.join(cmd[1:])}[/]")
        p = self.procs.start(cmd, log, env=env, cwd=str(d))
        self.cpu.roles["litellm"] = p.pid
        t: Target | None = None
        try:
            try:
                ready = wait_http(port, "/health/liveliness", p, log, self.args.litellm_timeout,
                                  "litellm")
            except RuntimeError as e:
                self.note(f"LiteLLM did not start: {e}")
                self.results["targets"]["litellm"] = {"skipped": str(e)[:2000]}
                yield None
                return
            console.print(f"  [dim]LiteLLM ready after {ready:.0f} s[/]")
            t = Target("litellm", f"LiteLLM {version}", port,
                       raw_request(port, LITELLM_STREAM_BODY), raw_request(port, BODY))
            c = Conn(port)
            try:
                st_plain, *_ = c.request(t.plain_req)
                st_stream, *_ = c.request(t.stream_req)
            finally:
                c.close()
            t.results["config"] = {"version": version, "workers": self.args.litellm_workers,
                                   "startup_s": round(ready, 1), "config": cfg,
                                   "first_statuses": [st_plain, st_stream]}
            self.results["targets"]["litellm"] = t.results
            if st_plain != 200 or st_stream != 200:
                self.note(f"LiteLLM answered {st_plain}/{st_stream} to the first requests: "
                          f"{tail(log, 5)}")
            yield t
        finally:
            self.cpu.roles.pop("litellm", None)
            self.procs.stop(p, signal.SIGINT, timeout=30)
            self.save()

    # -- measurement sets ----------------------------------------------------------------

    def wrk_phase(self, t: Target, name: str, c: int, duration: float,
                  measured: bool = True) -> dict[str, Any]:
        runs = []
        for _ in range(self.args.repeat if measured else 1):
            runs.append(self.phase(t, name, lambda: run_wrk(t.port, self.script, c, duration),
                                   c, measured=measured))
        if len(runs) > 1:  # the median run by req/s is the figure; all are in phases
            runs.sort(key=lambda r: r["rps"])
            med = dict(runs[len(runs) // 2])
            med["repeats_rps"] = [r["rps"] for r in runs]
            t.results[name] = med
            return med
        return runs[0]

    def paired_phase(self, t: Target, name: str, stream: bool) -> dict[str, Any]:
        assert self.direct is not None
        a = self.direct.stream_req if stream else self.direct.plain_req
        b = t.stream_req if stream else t.plain_req
        def go() -> dict[str, Any]:
            pr = paired_run(self.direct.port if self.direct else 0, a, t.port, b,
                            self.args.paired_seconds, self.args.paired_samples,
                            self.args.paired_warmup)
            s = paired_summary(pr)
            s["kind"] = "stream" if stream else "plain"
            s["completed"] = pr.b_sent
            return s

        return self.phase(t, name, go, 1)

    def measure(self, t: Target, full: bool) -> None:
        """The phases for one target. ``full``: latency and streaming too."""
        d = self.args.duration
        if t.key != "direct":
            self.wrk_phase(t, "warmup", 16, self.args.warmup, measured=False)
        if full:
            self.wrk_phase(t, "c1", 1, d)
            if t.key != "direct":
                self.paired_phase(t, "paired", stream=False)
                self.paired_phase(t, "stream", stream=True)
        for c in self.args.connections:
            self.wrk_phase(t, f"c{c}", c, d)
        if self.args.profile and t.key.startswith("kansa") and full and shutil.which(
                str(Path(sys.executable).parent / "py-spy")):
            self.profile(t)

    def profile(self, t: Target) -> None:
        """py-spy record of the gateway under 16 connections (not a figure: py-spy slows
        what it samples); collapsed stacks in bench/out/ for flamegraph tools."""
        pid = self.cpu.roles.get("gateway")
        if pid is None:
            return
        out = Path(self.args.json).parent / f"profile-{t.key}.txt"
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                "--pid", str(pid), "--subprocesses", "--nonblocking",
                                "--rate", "250", "--format", "raw", "-o", str(out),
                                "--duration", str(int(self.args.duration))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        self.procs.started.append(spy)
        try:
            time.sleep(1.0)
            self.wrk_phase(t, "profiled", 16, self.args.duration, measured=False)
            spy.wait(30)
        except subprocess.TimeoutExpired:
            self.procs.stop(spy)
        t.results["profile"] = str(out)
        console.print(f"  [dim]py-spy collapsed stacks: {out}[/]")

    # -- main ------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        self.results["meta"] = machine_info(a)
        self.start_nginx()
        assert self.direct is not None
        self.results["targets"]["direct"] = self.direct.results
        console.print(f"[bold]direct (nginx)[/] on port {self.nginx_port}")
        self.measure(self.direct, full=True)
        for store, workers, durable in a.configs:
            full = workers == 1 and store in a.full_stores
            with self.kansa(store, workers, durable) as t:
                if t is not None:
                    self.measure(t, full=full)
        if a.litellm:
            with self.litellm() as t:
                if t is not None:
                    self.measure(t, full=True)
        else:
            self.note("LiteLLM skipped (" + ("--quick; add --litellm to include it"
                                             if a.quick else "--skip-litellm") + ")")
        self.results["meta"]["loadavg_at_end"] = os.getloadavg()
        self.figures()
        self.save()

    def close(self) -> None:
        self.procs.kill_all()
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- figures ---------------------------------------------------------------------------

    def figures(self) -> None:
        tg = self.results["targets"]
        figs = self.results["figures"]
        conns = self.args.connections

        def measured(k: str) -> bool:
            return any(f"c{c}" in tg.get(k, {}) for c in conns)

        kansa_keys = [k for k in tg if k.startswith("kansa") and measured(k)]
        lite = tg["litellm"] if measured("litellm") else None
        order = ["direct"] + kansa_keys + (["litellm"] if lite else [])

        def label(k: str) -> str:
            return {"direct": "direct (nginx)"}.get(
                k, "LiteLLM" if k == "litellm" else k.removeprefix("kansa-").replace("-", " "))

        # 1. latency at one connection
        t1 = Table(title="1. latency, 1 connection (wrk -t1 -c1), ms; added = over direct "
                   f"(targets p50 ≤ {T_ADDED_P50_MS:g}, p99 ≤ {T_ADDED_P99_MS:g})"
                   + ("; median of each figure over the --repeat runs"
                      if getattr(self.args, "repeat", 1) > 1 else ""))
        for col in ("target", "req/s", "p50", "p99", "added p50", "added p99", "meets",
                    "paired added p50", "paired added p99", "foreign CPU"):
            t1.add_column(col, justify="left" if col == "target" else "right")
        f1 = {}
        def c1(k: str) -> dict[str, Any] | None:
            """The 1-connection figure; with --repeat, the median of each statistic over
            the runs (one run's p99 can be a PostgreSQL checkpoint; req/s alone would not
            pick a representative run)."""
            runs = [p for p in self.results["phases"]
                    if p["target"] == k and p["phase"] == "c1" and "latency_ms" in p]
            if len(runs) < 2:
                return tg[k].get("c1")

            def med(xs: list[float]) -> float:
                return sorted(xs)[len(xs) // 2]

            return {"rps": med([p["rps"] for p in runs]),
                    "latency_ms": {q: med([p["latency_ms"][q] for p in runs])
                                   for q in runs[0]["latency_ms"]},
                    "cpu": {"foreign_cores": med([p["cpu"]["foreign_cores"] for p in runs])},
                    "runs_p99": [p["latency_ms"]["p99"] for p in runs]}

        d1 = c1("direct") if "direct" in tg else None
        for k in order:
            r = c1(k)
            if not r or not d1:
                continue
            lat, dl = r["latency_ms"], d1["latency_ms"]
            row: dict[str, Any] = {"rps": r["rps"], "p50": lat["p50"], "p99": lat["p99"]}
            if "runs_p99" in r:
                row["runs_p99"] = r["runs_p99"]
            meets = None
            if k != "direct":
                row["added_p50"] = round(lat["p50"] - dl["p50"], 3)
                row["added_p99"] = round(lat["p99"] - dl["p99"], 3)
                pa = tg[k].get("paired", {}).get("added", {}).get("total_ms")
                if pa:
                    row["paired_added_p50"], row["paired_added_p99"] = pa["p50"], pa["p99"]
                if k.startswith("kansa"):
                    meets = (row["added_p50"] <= T_ADDED_P50_MS
                             and row["added_p99"] <= T_ADDED_P99_MS)
                    row["meets_target"] = meets
            f1[k] = row
            t1.add_row(label(k), f"{r['rps']:,.0f}", f_ms(lat["p50"], 3), f_ms(lat["p99"], 3),
                       f_ms(row.get("added_p50"), 3), f_ms(row.get("added_p99"), 3), yes(meets),
                       f_ms(row.get("paired_added_p50"), 3),
                       f_ms(row.get("paired_added_p99"), 3),
                       f"{r['cpu']['foreign_cores']:.2f}")
        figs["latency_c1"] = {"targets": {"added_p50_ms": T_ADDED_P50_MS,
                                          "added_p99_ms": T_ADDED_P99_MS}, "rows": f1}
        console.print(t1)

        # 2. throughput
        t2 = Table(title=f"2. throughput (wrk -t2), req/s; durable kansa target ≥ {T_RPS:,} "
                   f"and ≥ {T_VS_LITELLM:g}× LiteLLM (same run)")
        def gw_cpu(r: dict[str, Any]) -> str:
            total = r.get("gateway_cpu_us_per_request")
            if total is None:
                return "—"
            seq = r.get("gateway_threads_cpu_us_per_request", {}).get("loop")
            return f"{total:,.0f}" + (f" ({seq:,.0f})" if seq is not None else "")

        for col in ("target", "conns", "req/s", "p50 ms", "p99 ms", "non-2xx/err", "× LiteLLM",
                    "meets", "gw CPU µs/req (loop)", "foreign CPU"):
            t2.add_column(col, justify="left" if col == "target" else "right")
        f2: dict[str, Any] = {}
        for k in order:
            for c in self.args.connections:
                r = tg[k].get(f"c{c}")
                if not r:
                    continue
                lr = lite.get(f"c{c}") if lite else None
                ratio = r["rps"] / lr["rps"] if lr and lr["rps"] else None
                meets = None
                if k.startswith("kansa") and k.endswith("durable"):
                    meets = r["rps"] >= T_RPS and (ratio is None or ratio >= T_VS_LITELLM)
                errs = r["non_2xx"] + sum(r["socket_errors"].values())
                f2[f"{k}/c{c}"] = {"target": k, "connections": c, "rps": r["rps"],
                                   "p50_ms": r["latency_ms"]["p50"],
                                   "p99_ms": r["latency_ms"]["p99"], "errors": errs,
                                   "vs_litellm": round(ratio, 1) if ratio else None,
                                   "meets_target": meets,
                                   "gateway_cpu_us_per_request":
                                       r.get("gateway_cpu_us_per_request"),
                                   "foreign_cores": r["cpu"]["foreign_cores"]}
                t2.add_row(label(k), str(c), f"{r['rps']:,.0f}",
                           f_ms(r["latency_ms"]["p50"]), f_ms(r["latency_ms"]["p99"]),
                           str(errs), f"{ratio:,.1f}×" if ratio and k != "litellm" else "—",
                           yes(meets), gw_cpu(r),
                           f"{r['cpu']['foreign_cores']:.2f}")
        figs["throughput"] = {"targets": {"rps": T_RPS, "vs_litellm": T_VS_LITELLM},
                              "rows": f2}
        console.print(t2)

        # 3. streaming TTFB, paired with direct
        t3 = Table(title=f"3. streaming, paired with direct at 1 connection, ms (target: "
                   f"added TTFB p50 ≤ {T_TTFB_ADDED_MS:g})")
        for col in ("target", "n", "direct TTFB p50", "TTFB p50", "TTFB p99", "added p50",
                    "added p99", "meets", "added to 1st event p50", "added to last byte p50",
                    "foreign CPU"):
            t3.add_column(col, justify="left" if col == "target" else "right")
        f3 = {}
        for k in order:
            r = tg[k].get("stream")
            if not r:
                continue
            add = r["added"].get("ttfb_ms", {})
            meets = add.get("p50", 1e9) <= T_TTFB_ADDED_MS if k.startswith("kansa") else None
            f3[k] = {"direct_ttfb": r["direct"]["ttfb_ms"], "ttfb": r["proxy"]["ttfb_ms"],
                     "added_ttfb": add, "first_event": r["proxy"]["first_event_ms"],
                     "added_first_event": r["added"].get("first_event_ms"),
                     "added_total": r["added"].get("total_ms"), "meets_target": meets}
            t3.add_row(label(k), str(r["proxy"]["n"]), f_ms(r["direct"]["ttfb_ms"]["p50"], 3),
                       f_ms(r["proxy"]["ttfb_ms"]["p50"], 3), f_ms(r["proxy"]["ttfb_ms"]["p99"], 3),
                       f_ms(add.get("p50"), 3), f_ms(add.get("p99"), 3), yes(meets),
                       f_ms(r["added"].get("first_event_ms", {}).get("p50"), 3),
                       f_ms(r["added"].get("total_ms", {}).get("p50"), 3),
                       f"{r['cpu']['foreign_cores']:.2f}")
        figs["stream_ttfb"] = {"target_added_p50_ms": T_TTFB_ADDED_MS, "rows": f3}
        console.print(t3)

        # 4. records
        t4 = Table(title="4. every request a record (per gateway run; slack: requests in "
                   "flight when wrk stopped, ≤ connections per phase; max backlog: answered "
                   "but not yet committed when a load phase ended, and its drain time)")
        for col in ("target", "requests completed", "records", "extra", "slack",
                    "phases ok", "non-2xx (client)", "records not ok", "max backlog", "verify"):
            t4.add_column(col, justify="left" if col == "target" else "right")
        f4 = {}
        for k in kansa_keys:
            acc = tg[k].get("accounting")
            if not acc:
                continue
            v = tg[k].get("ledger", {}).get("verify", {})
            size = acc["ledger_size"] or 0
            f4[k] = dict(acc, verify_ok=v.get("ok"))
            t4.add_row(label(k), f"{acc['client_completed']:,}", f"{size:,}",
                       str(size - acc["client_completed"]), str(acc["in_flight_slack"]),
                       yes(acc["phases_ok"] and acc["size_matches_phases"]),
                       str(acc["client_non_2xx"]), str(acc["records_not_ok"]),
                       f"{acc['max_backlog_at_end']:,} ({acc['max_drain_s']} s)",
                       yes(v.get("ok")))
        figs["records"] = f4
        console.print(t4)
        la = self.results["meta"]
        console.print(f"load average at start {tuple(round(x, 2) for x in la['loadavg_at_start'])}"
                      f", at end {tuple(round(x, 2) for x in la['loadavg_at_end'])}; "
                      "'foreign CPU' = cores used by processes outside this benchmark during "
                      "the phase (the machine has 2)")
        console.print(f"[dim]anchor: {ANCHOR_LITELLM}[/]")


# ------------------------------------------------------------------------------------


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            r = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True,
                               timeout=10)
            return (r.stdout + r.stderr).strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import uvicorn

    info: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "nginx": run("nginx", "-v"),
        "wrk": run("wrk", "-v").splitlines()[0] if run("wrk", "-v") else "",
        "uvicorn": uvicorn.__version__,
        "git_commit": run("git", "rev-parse", "HEAD"),
        "git_dirty_src": bool(run("git", "status", "--porcelain", "--", "src")),
        "args": {k: v for k, v in vars(args).items()},
    }
    try:
        import psycopg

        with psycopg.connect(args.pg_url.rpartition("/")[0] + "/postgres", autocommit=True,
                             connect_timeout=3) as c:
            info["postgres"] = c.execute("SHOW server_version").fetchone()[0]
            info["postgres_synchronous_commit"] = c.execute(
                "SHOW synchronous_commit").fetchone()[0]
            info["postgres_fsync"] = c.execute("SHOW fsync").fetchone()[0]
    except Exception as e:
        info["postgres"] = f"unavailable: {e}"
    return info


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run (< 2 min): 3 s phases, durable workers=1 only, no LiteLLM "
                        "unless --litellm")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per load phase (default 10, --quick 3)")
    p.add_argument("--connections", default="16,64", help="throughput connection counts")
    p.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--workers", default=None,
                   help="kansa --workers values for durable runs (default 1,2; --quick 1)")
    p.add_argument("--async-workers", default=None,
                   help="kansa --workers values for --async-records runs (default 1; "
                        "--quick none); empty to skip")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each measured wrk phase N times, report the median by req/s")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of 16-connection "
                   "warm-up per server before its figures (recorded, not reported)")
    p.add_argument("--paired-seconds", type=float, default=None,
                   help="seconds of each paired direct/proxy client run (default 8, quick 3)")
    p.add_argument("--paired-samples", type=int, default=4000,
                   help="at most this many paired samples per run")
    p.add_argument("--paired-warmup", type=int, default=50)
    p.add_argument("--skip-litellm", action="store_true", help="do not run LiteLLM")
    p.add_argument("--litellm", action="store_true", help="run LiteLLM even with --quick")
    p.add_argument("--litellm-venv", default="/tmp/litellm-venv",
                   help="venv holding LiteLLM (created with pip install 'litellm[proxy]' "
                        "if missing; never the project's venv)")
    p.add_argument("--litellm-workers", type=int, default=1, help="LiteLLM --num_workers")
    p.add_argument("--litellm-timeout", type=float, default=180,
                   help="seconds to wait for LiteLLM to start")
    p.add_argument("--no-install", action="store_true",
                   help="do not install LiteLLM if it is missing (skip it instead)")
    p.add_argument("--pg-url", default=os.environ.get(
        "KANSA_GWBENCH_PG", "postgresql://postgres@127.0.0.1:5432/kansa_gwbench"),
        help="PostgreSQL database for the --store runs: DROPPED and recreated per run")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each measured phase wait up to this many seconds for other "
                        "processes to use < --quiet-cores CPU (default 20, --quick 0)")
    p.add_argument("--quiet-cores", type=float, default=0.3)
    p.add_argument("--profile", action="store_true",
                   help="after the figures of each full kansa run, record the gateway with "
                        "py-spy under 16 connections (bench/out/profile-*.txt, collapsed)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, homes)")
    p.add_argument("--json", default=str(OUT / "gateway.json"), help="JSON results file")
    p.add_argument("--tables-from", metavar="JSON", default=None,
                   help="print the tables of an earlier run's JSON (and refresh its 'figures' "
                        "with this version's rules), then exit; runs nothing")
    a = p.parse_args(argv)
    q = a.quick
    a.duration = a.duration if a.duration is not None else (3.0 if q else 10.0)
    a.paired_seconds = a.paired_seconds if a.paired_seconds is not None else (3.0 if q else 8.0)
    a.quiet_wait = a.quiet_wait if a.quiet_wait is not None else (0.0 if q else 20.0)
    a.connections = int_list(a.connections)
    a.stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    bad = set(a.stores) - {"sqlite", "postgres"}
    if bad:
        p.error(f"unknown stores {sorted(bad)}")
    a.workers = int_list(a.workers) if a.workers is not None else ([1] if q else [1, 2])
    a.async_workers = (int_list(a.async_workers) if a.async_workers is not None
                       else ([] if q else [1]))
    a.configs = [(s, w, True) for s in a.stores for w in a.workers] + [
        (s, w, False) for s in a.stores for w in a.async_workers]
    a.full_stores = a.stores
    a.litellm = not a.skip_litellm and (a.litellm or not q)
    return a


def tables_from(path: str) -> int:
    results = json.loads(Path(path).read_text())
    ns = argparse.Namespace(**results["meta"]["args"])
    bench = Bench(ns)
    try:
        bench.results = results
        bench.figures()
        Path(path).write_text(json.dumps(results, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tables_from:
        return tables_from(args.tables_from)
    bench = Bench(args)

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    console.rule("kansa gateway benchmark" + (" (quick)" if args.quick else ""))
    t0 = time.perf_counter()
    try:
        bench.run()
    except KeyboardInterrupt:
        console.print("[red]interrupted: stopping every process started[/]")
        return 130
    finally:
        bench.results.setdefault("meta", {})["total_s"] = round(time.perf_counter() - t0, 1)
        bench.save()
        bench.close()
    console.print(f"total {time.perf_counter() - t0:.0f} s; JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
