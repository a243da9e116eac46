"""kansa web: server time per page, page weight, export throughput.

    .venv/bin/python bench/web.py                       # 10^4 and 10^5 records, SQLite
    .venv/bin/python bench/web.py --records 1e4,1e5,1e6 --repeat 40
    .venv/bin/python bench/web.py --store postgresql://postgres@127.0.0.1:5432/test

Stores are built once (fixed seed, records over 60 days, 12 systems, 6 models, every
11th not ok, content on every record) and kept in bench/out/work/web-<N>/ (SQLite) for
later runs. Pages are requested in-process through Starlette's TestClient, so a figure is
the server's time plus ~1 ms of client; figures are printed next to the targets, never
asserted. The overview's figures come from a follower-fed rollup: its first build (one
pass over the log, at start-up) is reported on its own line.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from starlette.testclient import TestClient

import kansa
from kansa.web.app import create_app
from kansa.web.auth import Access, token_digest

OUT = Path(__file__).parent / "out" / "work"
TOKEN = "b" * 24
P95_TARGET_MS = 150.0
WEIGHT_TARGET = 200 * 1024
CLOCK = 1767225600.0  # 2026-01-01: the chart's last day (the data ends on 2025-12-31)


def records(n: int, seed: int = 7) -> Iterator[dict[str, object]]:
    rnd = random.Random(seed)
    start = CLOCK - 60 * 86400
    for i in range(n):
        ts = start + 60 * 86400 * i / n
        yield {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
               "system": f"system-{rnd.randrange(12)}", "subject": f"user-{rnd.randrange(500)}",
               "gen_ai.request.model": f"model-{rnd.randrange(6)}",
               "gen_ai.provider.name": ("openai", "anthropic", "google")[rnd.randrange(3)],
               "outcome": "error" if i % 11 == 0 else "ok",
               "gen_ai.usage.input_tokens": rnd.randrange(10, 2000),
               "gen_ai.usage.output_tokens": rnd.randrange(10, 800),
               "input": "問い合わせ " * 8, "output": "回答 " * 8}


def build(n: int, url: str | None) -> tuple[kansa.Ledger, float]:
    home = OUT / f"web-{n}" if url is None else OUT / f"web-pg-{n}"
    if url is None and (home / "done").exists():
        return kansa.Ledger.open(home=home), 0.0
    home.parent.mkdir(parents=True, exist_ok=True)
    if home.exists():
        import shutil
        shutil.rmtree(home)
    t0 = time.perf_counter()
    if url is not None:  # a fresh schema per size, in the database the URL names
        import psycopg
        schema = f"kansa_web_{n}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    led = kansa.Ledger.init(home, url=url)
    batch: list[dict[str, object]] = []
    for rec in records(n):
        batch.append(rec)
        if len(batch) == 10_000:
            led.append_many(batch)
            batch.clear()
    if batch:
        led.append_many(batch)
    led.checkpoint()
    (home / "done").write_text(str(n))
    return led, time.perf_counter() - t0


def timed(c: TestClient, url: str, repeat: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = c.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            sys.exit(f"{url}: {r.status_code} {r.text[:300]}")
        size = len(r.content)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], size


def run(n: int, url: str | None, repeat: int, sections: set[str]) -> None:
    led, built = build(n, url)
    size = led.log.size()
    print(f"\n== {size:,} entries ({'SQLite' if url is None else 'PostgreSQL'})"
          + (f", built in {built:.0f} s" if built else ", reused"))
    app = create_app(led, Access(tokens={token_digest(TOKEN): ("bench", "admin")}),
                     clock=lambda: CLOCK)
    # one client for the run: one event loop, so one thread pool (and, on PostgreSQL,
    # one connection per pool thread, not one per request)
    c = TestClient(app).__enter__()
    csrf = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
    c.post("/login", data={"csrf": csrf, "token": TOKEN}, follow_redirects=False)
    t0 = time.perf_counter()
    c.get("/")
    print(f"overview rollup first build (one pass, at start-up): "
          f"{time.perf_counter() - t0:.2f} s")
    deep = led.browse(before=max(1, size // 100), limit=1).records[0]
    pages = [
        ("overview", "/"),
        ("records, first page", "/records"),
        ("records, deep (1% from the start)", f"/records?before={size // 100}"),
        ("records, system filter (1/12)", "/records?system=system-3"),
        ("records, system+model (1/72)", "/records?system=system-3&model=model-2"),
        ("records, subject (1/500)", "/records?subject=user-42"),
        ("records, time window (1 day)", "/records?since=2025-12-10&until=2025-12-11"),
        ("record page (deep)", f"/records/{deep.id}"),
    ]
    static = sum(len(c.get(p).content) for p in ("/static/app.css", "/static/htmx.min.js"))
    print(f"{'page':38} {'p50 ms':>8} {'p95 ms':>8} {'target':>8} {'weight KB':>10} {'target':>8}")
    for name, path in pages:
        p50, p95, weight = timed(c, path, repeat)
        total = weight + static
        print(f"{name:38} {p50:8.1f} {p95:8.1f} {'≤150':>8} {total / 1024:10.1f} {'≤200':>8}"
              + ("" if p95 <= P95_TARGET_MS else "  MISSED"))
    for fmt in ("jsonl", "csv") if "export" in sections else ():
        t0 = time.perf_counter()
        got = 0
        with c.stream("GET", f"/records/export.{fmt}") as r:
            for _line in r.iter_lines():
                got += 1
        dt = time.perf_counter() - t0
        rows = got - (1 if fmt == "csv" else 0)
        print(f"export {fmt:5} {rows:,} records in {dt:.1f} s: {rows / dt:,.0f} records/s")
    if "tiles" in sections:
        tiles(led, repeat)
    led.close()


def tiles(led: kansa.Ledger, repeat: int) -> None:
    """The log's read API against a static file server (Starlette's StaticFiles) of the
    same files ('kansa export'), both in-process through the same client."""
    import shutil

    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles

    from kansa.web.app import create_log_app

    out = OUT / "web-tiles-export"
    shutil.rmtree(out, ignore_errors=True)
    led.export(out)
    paths = sorted(p.relative_to(out).as_posix() for p in (out / "tile").rglob("*")
                   if p.is_file())
    paths = [p for p in paths if ".p/" not in p][: max(200, repeat * 10)]  # full ones
    static = Starlette(routes=[])
    static.mount("/", StaticFiles(directory=out))
    for name, app in (("kansa serve-log", create_log_app(led)), ("static files", static)):
        c = TestClient(app)
        got = 0
        t0 = time.perf_counter()
        for p in paths:
            r = c.get("/" + p)
            if r.status_code != 200:
                sys.exit(f"{name} {p}: {r.status_code}")
            got += len(r.content)
        dt = time.perf_counter() - t0
        print(f"tiles via {name:16} {len(paths)} full tiles/bundles: "
              f"{len(paths) / dt:,.0f} requests/s, {got / dt / 1e6:,.1f} MB/s")
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="1e4,1e5", help="store sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=30, help="requests per page")
    ap.add_argument("--store", default=None, help="a PostgreSQL URL (default: SQLite)")
    ap.add_argument("--sections", default="pages,export,tiles",
                    help="pages (always), export, tiles")
    a = ap.parse_args()
    for n in a.records.split(","):
        run(int(float(n)), a.store, a.repeat, set(a.sections.split(",")))


if __name__ == "__main__":
    main()
