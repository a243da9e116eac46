#!/usr/bin/env python
"""Red team: kill -9 the gateway under load; no acknowledged record may be lost.

Each round starts ``kansa gateway`` (a real subprocess, durable records, the home's store)
in front of the stand-in provider, lets client threads send chat completions (plain and
streamed) on keep-alive connections, and SIGKILLs the gateway at a random moment. A call
counts as *acknowledged* when its client received the whole answer (the body, or the
stream's terminal ``[DONE]``) with an ``x-kansa-record`` id. After each kill the ledger
is opened afresh and every acknowledged id is looked up; after the last round the whole
store is verified (every hash recomputed, checkpoints checked).

Prints a table per store and the total "crash rounds with acknowledged records lost".
Figures, not assertions: a lost record is a finding to report.

    .venv/bin/python bench/redteam_crash.py                 # 20 rounds on SQLite
    .venv/bin/python bench/redteam_crash.py --rounds 40 --pg-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from kansa.api import Ledger
from kansa.capture.standin import BackgroundServer, create_standin_app
from kansa.errors import KansaError

console = Console(highlight=False, width=160)
KANSA = [sys.executable, "-m", "kansa"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Round:
    acked: list[str] = field(default_factory=list)
    sent: int = 0
    errors: int = 0  # calls cut by the kill (connection reset, incomplete stream)
    lost: list[str] = field(default_factory=list)


def _client(url: str, stop: threading.Event, out: Round, lock: threading.Lock,
            seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            stream = rng.random() < 0.4
            body = {"model": "gpt-4o-mini", "stream": stream,
                    "messages": [{"role": "user", "content": f"crash test {rng.random()}"}],
                    "user": f"user-{rng.randrange(20)}"}
            with lock:
                out.sent += 1
            try:
                if stream:
                    with c.stream("POST", "/chat/completions", json=body) as r:
                        text = b"".join(r.iter_bytes())
                        rid = r.headers.get("x-kansa-record")
                        ok = r.status_code == 200 and b"data: [DONE]" in text
                else:
                    r = c.post("/chat/completions", json=body)
                    rid = r.headers.get("x-kansa-record")
                    ok = r.status_code == 200 and "choices" in r.json()
            except (httpx.HTTPError, ValueError):
                with lock:
                    out.errors += 1
                if stop.is_set():
                    return
                time.sleep(0.02)
                continue
            if ok and rid:
                with lock:
                    out.acked.append(rid)


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("gateway did not become healthy")


def run(store: str | None, rounds: int, clients: int, rng: random.Random) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="kansa-crash-"))
    env = {**os.environ, "KANSA_HOME": str(home)}
    init = [*KANSA, "init", "--origin", "redteam.example/crash"]
    if store:
        init += ["--store", store]
    subprocess.run(init, env=env, check=True, capture_output=True)
    results: list[Round] = []
    with BackgroundServer(create_standin_app()) as upstream:
        for i in range(rounds):
            port = free_port()
            log = home / f"gateway-{i}.log"
            cmd = [*KANSA, "gateway", "--upstream", f"{upstream.url}/v1", "--port", str(port)]
            with log.open("wb") as lf:
                proc = subprocess.Popen(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT)
            _wait_healthy(port, proc, log)
            rnd, lock, stop = Round(), threading.Lock(), threading.Event()
            threads = [threading.Thread(target=_client, args=(
                f"http://127.0.0.1:{port}/v1", stop, rnd, lock, rng.randrange(1 << 30)))
                for _ in range(clients)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            for t in threads:
                t.join()
            with Ledger.open(home=home) as ledger:
                for rid in rnd.acked:
                    try:
                        ledger.get(rid)
                    except KansaError:
                        rnd.lost.append(rid)
            results.append(rnd)
            console.print(f"  round {i + 1}/{rounds}: {len(rnd.acked)} acknowledged, "
                          f"{rnd.errors} cut by the kill, {len(rnd.lost)} lost", end="\r")
    console.print()
    with Ledger.open(home=home) as ledger:
        try:
            ledger.verify()
            verified = "ok"
        except KansaError as e:
            verified = f"FAILED: {e}"
        size = ledger.log.size()
    return {"store": "postgresql" if store else "sqlite", "rounds": rounds,
            "acked": sum(len(r.acked) for r in results),
            "cut": sum(r.errors for r in results),
            "rounds_lost": sum(1 for r in results if r.lost),
            "lost": sum(len(r.lost) for r in results), "size": size, "verify": verified}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20, help="kill -9 rounds per store")
    ap.add_argument("--clients", type=int, default=8, help="client threads per round")
    ap.add_argument("--pg-url", default=None,
                    help="also run on this PostgreSQL database (a fresh schema is used)")
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = [run(None, args.rounds, args.clients, rng)]
    if args.pg_url:
        import psycopg

        schema = "crash_" + uuid.uuid4().hex[:8]
        with psycopg.connect(args.pg_url, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in args.pg_url else "?"
        try:
            rows.append(run(f"{args.pg_url}{sep}options=-csearch_path%3D{schema}",
                            args.rounds, args.clients, rng))
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as c:
                c.execute(f"DROP SCHEMA {schema} CASCADE")
    table = Table(title="kill -9 of a durable gateway under load")
    for col in ("store", "rounds", "acknowledged calls", "calls cut by the kill",
                "rounds with acknowledged records lost", "records lost", "entries",
                "verify"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("store", "rounds", "acked", "cut", "rounds_lost",
                                             "lost", "size", "verify")))
    console.print(table)
    total_rounds = sum(int(str(r["rounds"])) for r in rows)
    lost_rounds = sum(int(str(r["rounds_lost"])) for r in rows)
    console.print(f"crash rounds with acknowledged records lost: {lost_rounds}/{total_rounds} "
                  "(target 0)")


if __name__ == "__main__":
    main()
