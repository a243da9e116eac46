#!/usr/bin/env python
"""kansa ledger benchmarks: figures printed beside their targets, never asserted.

Sections (pick with --sections, default all):

  append    durable appends/s, 1/16/64 producers, threads and asyncio, SQLite and PostgreSQL
  raw       the same rows written raw (no ledger) by one batching writer, and one
            INSERT+COMMIT per row, for the ledger/raw ratio
  latency   append -> covered by a signed checkpoint (measured during the 16-producer run)
  proofs    inclusion/consistency proof generation (SQLite store) and verification
            at 10^4, 10^6 and 10^7 leaves
  pymerkle  pymerkle (PyPI) vs kansa building the same 10^5 leaves in memory
  export    offline verification of an exported 10^6-entry log (if kansa.ledger.export
            and kansa.ledger.verify exist)

Results are also written as JSON to bench/out/ledger.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import importlib
import importlib.util
import inspect
import json
import os
import platform
import queue
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kansa.ledger import merkle
from kansa.ledger.edge import TreeEdge
from kansa.ledger.log import Append, Log
from kansa.ledger.note import Signer
from kansa.ledger.storage import PostgresStore, SQLiteStore, Store, now_us

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)

SECTIONS = ["append", "raw", "latency", "proofs", "pymerkle", "export"]

# Targets (from the project brief) and the anchors they are set against.
T_APPEND = {"sqlite": 20_000, "postgres": 10_000}  # durable appends/s
T_RATIO = 0.5  # ledger appends/s ÷ raw batched rows/s
T_COVER_P95_S = 1.0  # append -> covered by a signed checkpoint, p95
T_PROOF_US = 1_000  # each proof op, mean and p99
T_VERIFY_EXPORT = 100_000  # entries/s, offline verification of an exported log
ANCHOR_APPEND = "Tessera POSIX ~2,900/s on HDD, ~10,000/s NVMe (7 cores)"
ANCHOR_COVER = "Tessera 1.2-6 s average"


def ok(value: float, target: float, higher_is_better: bool = True) -> str:
    good = value >= target if higher_is_better else value <= target
    return "[green]yes[/]" if good else "[red]no[/]"


def pct(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


# ------------------------------------------------------------------------------------
# Stores: a fresh SQLite file or a fresh PostgreSQL schema per run


@dataclass
class Env:
    args: argparse.Namespace
    work: Path
    pg_base: str | None  # None: PostgreSQL unavailable, its runs are skipped
    results: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.results, indent=2, default=str) + "\n")


def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def pg_prepare(url: str) -> str | None:
    """Make sure the benchmark database exists; return its URL, or None if unreachable."""
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3):
            return url
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            console.print(f"[yellow]PostgreSQL unreachable at {url}: {e}; skipping it[/]")
            return None
    # create the database through the maintenance database of the same server
    base, _, dbname = url.rpartition("/")
    dbname = dbname.split("?")[0]
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{dbname}"')
        return url
    except psycopg.Error as e:
        console.print(f"[yellow]cannot create database {dbname}: {e}; skipping PostgreSQL[/]")
        return None


@contextlib.contextmanager
def fresh_target(env: Env, backend: str, tag: str) -> Iterator[str]:
    """Yield a path (SQLite) or URL (PostgreSQL) nobody has used; remove it afterwards."""
    if backend == "sqlite":
        env.work.mkdir(parents=True, exist_ok=True)
        path = env.work / f"{tag}-{uuid.uuid4().hex[:8]}.db"
        try:
            yield str(path)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}{suffix}")
    else:
        import psycopg

        assert env.pg_base is not None
        schema = "kb_" + uuid.uuid4().hex[:12]
        with psycopg.connect(env.pg_base, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        try:
            yield pg_schema_url(env.pg_base, schema)
        finally:
            with psycopg.connect(env.pg_base, autocommit=True) as c:
                c.execute(f"DROP SCHEMA {schema} CASCADE")


def open_store(backend: str, target: str) -> Store:
    return SQLiteStore(target) if backend == "sqlite" else PostgresStore(target)


def backends(env: Env) -> list[str]:
    out = []
    for b in env.args.backends:
        if b == "postgres" and env.pg_base is None:
            console.print("[yellow]PostgreSQL unavailable: its runs are skipped[/]")
            continue
        out.append(b)
    return out


# ------------------------------------------------------------------------------------
# Producer drivers shared by the ledger and raw runs


@dataclass
class RunStats:
    count: int
    seconds: float
    records: list[tuple[float, float, int]] = field(default_factory=list)  # t0, t1, index

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def drive_threads(
    make_worker: Callable[[int], Callable[[bytes], int]],
    producers: int,
    duration: float,
    pool: list[bytes],
    record: bool = False,
) -> RunStats:
    """``producers`` threads each call their append function back to back for ``duration``
    seconds. ``make_worker(k)`` runs in thread k and returns that thread's append."""
    start_barrier = threading.Barrier(producers + 1)
    deadline = [0.0]
    counts = [0] * producers
    recs: list[list[tuple[float, float, int]]] = [[] for _ in range(producers)]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            append = make_worker(k)
        except BaseException as e:  # surface set-up failures instead of hanging
            errors.append(e)
            start_barrier.abort()
            return
        n, i, size = 0, k * 7919, len(pool)
        pc = time.perf_counter
        out = recs[k]
        try:
            start_barrier.wait()
        except threading.BrokenBarrierError:
            return
        end = deadline[0]
        try:
            while True:
                t0 = pc()
                if t0 >= end:
                    break
                idx = append(pool[i % size])
                i += 1
                n += 1
                if record:
                    out.append((t0, pc(), idx))
        except BaseException as e:
            errors.append(e)
        counts[k] = n

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(producers)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    deadline[0] = t_start + duration  # set before the barrier releases the producers
    with contextlib.suppress(threading.BrokenBarrierError):
        start_barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    if errors:
        raise RuntimeError(f"a producer failed: {errors[0]!r}") from errors[0]
    records = [r for rs in recs for r in rs]
    return RunStats(sum(counts), elapsed, records)


def drive_async(
    append: Callable[[bytes], Any],  # returns an awaitable of the index
    producers: int,
    duration: float,
    pool: list[bytes],
    setup: Callable[[asyncio.AbstractEventLoop], None] | None = None,
) -> RunStats:
    """``producers`` asyncio tasks on one event loop, each awaiting appends back to back."""

    async def main() -> RunStats:
        if setup is not None:
            setup(asyncio.get_running_loop())
        counts = [0] * producers
        pc = time.perf_counter
        end = pc() + duration

        async def task(k: int) -> None:
            n, i, size = 0, k * 7919, len(pool)
            while pc() < end:
                await append(pool[i % size])
                i += 1
                n += 1
            counts[k] = n

        t_start = pc()
        end = t_start + duration
        await asyncio.gather(*(task(k) for k in range(producers)))
        return RunStats(sum(counts), pc() - t_start)

    return asyncio.run(main())


# ------------------------------------------------------------------------------------
# 1 + 3: ledger appends (and checkpoint-coverage latency)


class _CountingLog(Log):
    """Log that records the size and duration of each group commit (sequencer stats)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.batches: list[tuple[int, float]] = []

    def _commit(self, batch: Any) -> None:
        t = time.perf_counter()
        super()._commit(batch)
        self.batches.append((len(batch), time.perf_counter() - t))


class CheckpointPoller:
    """Polls store.latest_checkpoint() every ``interval`` s on its own thread/connection,
    recording (time, size) whenever the signed size changes."""

    def __init__(self, store: Store, interval: float = 0.005) -> None:
        self.store = store
        self.interval = interval
        self.times: list[float] = []
        self.sizes: list[int] = []
        self.polls = 0
        self._stop = threading.Event()
        self._want = -1
        self._thread = threading.Thread(target=self._run, name="cp-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last = -1
        give_up = None
        while True:
            cp = self.store.latest_checkpoint()
            self.polls += 1
            size = cp.size if cp is not None else 0
            if size != last:
                self.times.append(time.perf_counter())
                self.sizes.append(size)
                last = size
            if self._stop.is_set():
                if give_up is None:
                    give_up = time.perf_counter() + 10.0
                if size >= self._want or time.perf_counter() > give_up:
                    return
            time.sleep(self.interval)

    def finish(self, want_size: int) -> None:
        """Keep polling until a checkpoint covers ``want_size`` leaves (or 10 s pass)."""
        self._want = want_size
        self._stop.set()
        self._thread.join()

    def covered_latencies(self, records: list[tuple[float, float, int]]) -> list[float]:
        out = []
        for t0, _t1, idx in records:
            j = bisect.bisect_right(self.sizes, idx)  # first observed size > idx
            if j < len(self.sizes):
                out.append(self.times[j] - t0)
        return out


def ledger_run(
    env: Env, backend: str, mode: str, producers: int, pool: list[bytes], latency: bool
) -> dict[str, Any]:
    args = env.args
    with fresh_target(env, backend, f"ledger-{mode}-{producers}") as target:
        store = open_store(backend, target)
        log = _CountingLog(store, Signer.generate("bench.kansa.example/log"))
        poller = None
        if latency:
            poller = CheckpointPoller(open_store(backend, target), args.poll_interval)
            poller.start()
        try:
            log.append(b"warm-up")  # start the sequencer, create the first tiles
            log.flush()
            log.batches.clear()
            gc.collect()
            if mode == "threads":
                stats = drive_threads(
                    lambda _k: log.append, producers, args.duration, pool, record=latency
                )
            else:
                stats = drive_async(
                    lambda e: log.append_async(Append(e)), producers, args.duration, pool
                )
            final_size = log.size()
            if poller is not None:
                poller.finish(final_size)
            log.flush()
            checkpoints = len(store.all_checkpoints())
        finally:
            log.close()
            store.close()
            if poller is not None:
                poller.store.close()
    batches = log.batches
    busy = sum(d for _, d in batches)
    row: dict[str, Any] = {
        "backend": backend,
        "mode": mode,
        "producers": producers,
        "entry_bytes": args.entry_size,
        "appends": stats.count,
        "seconds": round(stats.seconds, 3),
        "appends_per_s": round(stats.rate, 1),
        "target_per_s": T_APPEND[backend],
        "meets_target": stats.rate >= T_APPEND[backend],
        "group_commits": len(batches),
        "mean_batch": round(stats.count / len(batches), 2) if batches else None,
        "sequencer_commit_busy": round(busy / stats.seconds, 3) if stats.seconds else None,
        "mean_commit_ms": round(1000 * busy / len(batches), 3) if batches else None,
        "checkpoints_signed": checkpoints,
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    if poller is not None:
        lat = sorted(poller.covered_latencies(stats.records))
        ack = sorted(t1 - t0 for t0, t1, _ in stats.records)
        row["latency"] = {
            "backend": backend,
            "producers": producers,
            "samples": len(lat),
            "uncovered": len(stats.records) - len(lat),
            "poll_interval_s": args.poll_interval,
            "polls": poller.polls,
            "cover_s": summarize(lat),
            "ack_s": summarize(ack),
            "target_p95_s": T_COVER_P95_S,
            "meets_target": bool(lat) and pct(lat, 95) <= T_COVER_P95_S,
        }
    return row


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median figure (--repeat); every run's figure is kept in 'runs'."""
    ordered = sorted(runs, key=lambda r: r[key])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs"] = [r[key] for r in runs]
    return row


def median_stats(runs: list[RunStats]) -> RunStats:
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


def summarize(sorted_vals: list[float]) -> dict[str, float]:
    if not sorted_vals:
        return {}
    return {
        "mean": statistics.fmean(sorted_vals),
        "p50": pct(sorted_vals, 50),
        "p95": pct(sorted_vals, 95),
        "p99": pct(sorted_vals, 99),
        "max": sorted_vals[-1],
    }


def section_append(env: Env, pool: list[bytes]) -> None:
    args = env.args
    rows: list[dict[str, Any]] = []
    lat_rows: list[dict[str, Any]] = []
    want_latency = "latency" in args.sections
    for backend in backends(env):
        for mode in args.modes:
            for p in args.producers:
                latency = want_latency and mode == "threads" and p == args.latency_producers
                runs = []
                for k in range(args.repeat):
                    with console.status(f"ledger {backend} {mode} × {p} ({args.duration:g} s, "
                                        f"run {k + 1}/{args.repeat})…"):
                        runs.append(ledger_run(env, backend, mode, p, pool, latency))
                row = median_run(runs, "appends_per_s")
                rows.append(row)
                if "latency" in row:
                    lat_rows.append(row.pop("latency"))
                console.log(
                    f"ledger {backend:8s} {mode:7s} ×{p:<3d} {row['appends_per_s']:>10,.0f}/s"
                    f"  (mean batch {row['mean_batch']}, commit busy "
                    f"{row['sequencer_commit_busy']})"
                )
    env.results["append"] = rows
    if lat_rows:
        env.results["latency"] = lat_rows
    env.save()

    t = Table(title=f"1. Durable appends/s ({args.entry_size}-byte random entries, "
              f"{args.duration:g} s per run)")
    for c in ("backend", "mode", "producers", "appends", "appends/s", "target", "met",
              "mean batch", "commit ms", "seq. busy", "checkpoints"):
        t.add_column(c, justify="right" if c not in ("backend", "mode") else "left")
    for r in rows:
        t.add_row(
            r["backend"], r["mode"], str(r["producers"]), fmt_int(r["appends"]),
            fmt_int(r["appends_per_s"]), f"≥ {fmt_int(r['target_per_s'])}",
            ok(r["appends_per_s"], r["target_per_s"]), str(r["mean_batch"]),
            str(r["mean_commit_ms"]), f"{100 * (r['sequencer_commit_busy'] or 0):.0f}%",
            str(r["checkpoints_signed"]),
        )
    t.caption = (f"SQLite: WAL, synchronous=FULL. PostgreSQL: synchronous_commit on. "
                 f"Anchor: {ANCHOR_APPEND}. 'seq. busy' = share of wall time the sequencer "
                 f"spent inside group commits.")
    console.print(t)
    if lat_rows:
        print_latency(lat_rows)


def print_latency(lat_rows: list[dict[str, Any]]) -> None:
    t = Table(title="3. Append → covered by a signed checkpoint (threads, during the run above)")
    for c in ("backend", "producers", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms",
              "target p95", "met", "ack p50 ms", "ack p99 ms"):
        t.add_column(c, justify="left" if c == "backend" else "right")
    for r in lat_rows:
        c, a = r["cover_s"], r["ack_s"]
        if not c:
            t.add_row(r["backend"], str(r["producers"]), "0", *["-"] * 8)
            continue
        t.add_row(
            r["backend"], str(r["producers"]), fmt_int(r["samples"]),
            f"{1000 * c['p50']:.1f}", f"{1000 * c['p95']:.1f}", f"{1000 * c['p99']:.1f}",
            f"{1000 * c['max']:.1f}", f"≤ {1000 * T_COVER_P95_S:.0f}",
            ok(c["p95"], T_COVER_P95_S, higher_is_better=False),
            f"{1000 * a['p50']:.2f}", f"{1000 * a['p99']:.2f}",
        )
    t.caption = (f"Every append of the run is a sample; coverage is seen by a poller reading "
                 f"store.latest_checkpoint() every ~{1000 * lat_rows[0]['poll_interval_s']:.0f} "
                 f"ms. 'ack' = submit → durable acknowledgement. Anchor: {ANCHOR_COVER}.")
    console.print(t)


# ------------------------------------------------------------------------------------
# 2: the same rows written raw


_LOCK_TYPE = type(threading.Lock())
RAW_SQLITE_DDL = ("CREATE TABLE raw (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, grp TEXT,"
                  " data BLOB NOT NULL)")
RAW_PG_DDL = ("CREATE TABLE raw (idx BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
              " ts BIGINT NOT NULL, grp TEXT, data BYTEA NOT NULL)")


def sqlite_connect(path: str) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA busy_timeout = 60000")
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = FULL")
    return c


class RawBatchWriter:
    """What a careful engineer would write without a ledger: producers hand rows to one
    writer thread that takes everything queued (up to max_batch), writes it in one durable
    transaction, then wakes each producer. A producer waits on a plain lock (threads) or
    the writer resolves a whole batch of asyncio futures with one call_soon_threadsafe."""

    def __init__(self, backend: str, target: str, max_batch: int) -> None:
        self.backend = backend
        self.target = target
        self.max_batch = max_batch
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.next_idx = 0
        self.batches = 0
        self.error: BaseException | None = None
        if backend == "sqlite":
            c = sqlite_connect(target)
            c.execute(RAW_SQLITE_DDL)
            self.conn: Any = c
        else:
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)
            self.conn.execute(RAW_PG_DDL)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="raw-writer", daemon=True)
        self.thread.start()

    def _write(self, rows: list[tuple[int, int, str | None, bytes]]) -> None:
        if self.backend == "sqlite":
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT INTO raw (idx, ts, grp, data) VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        else:
            with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(
                "COPY raw (idx, ts, grp, data) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row(r)

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)
                    break
                batch.append(nxt)
            now = now_us()
            first = self.next_idx
            rows = [(first + i, now, None, b[0]) for i, b in enumerate(batch)]
            try:
                self._write(rows)
            except BaseException as e:  # the benchmark stops on the first failure
                self.error = e
            self.next_idx += len(batch)
            self.batches += 1
            waiters = [b[1] for b in batch]
            if isinstance(waiters[0], _LOCK_TYPE):
                for w in waiters:
                    w.release()
            else:
                assert self.loop is not None
                self.loop.call_soon_threadsafe(_resolve_all, waiters, first)

    def thread_appender(self) -> Callable[[bytes], int]:
        lock = threading.Lock()
        lock.acquire()
        put, acquire = self.q.put, lock.acquire

        def append(data: bytes) -> int:
            put((data, lock))
            acquire()  # released by the writer once the row is durable
            if self.error is not None:
                raise self.error
            return 0

        return append

    def async_append(self, data: bytes) -> asyncio.Future[int]:
        assert self.loop is not None
        fut: asyncio.Future[int] = self.loop.create_future()
        self.q.put((data, fut))
        return fut

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        self.conn.close()


def _resolve_all(futs: list[asyncio.Future[int]], first: int) -> None:
    for i, f in enumerate(futs):
        if not f.done():
            f.set_result(first + i)


def raw_batched_run(
    env: Env, backend: str, mode: str, producers: int, pool: list[bytes]
) -> RunStats:
    with fresh_target(env, backend, f"raw-{mode}-{producers}") as target:
        w = RawBatchWriter(backend, target, env.args.max_batch)
        try:
            if mode == "threads":
                stats = drive_threads(lambda _k: w.thread_appender(), producers,
                                      env.args.duration, pool)
            else:
                def setup(loop: asyncio.AbstractEventLoop) -> None:
                    w.loop = loop

                stats = drive_async(w.async_append, producers, env.args.duration, pool, setup)
            if w.error is not None:
                raise RuntimeError(f"raw writer failed: {w.error!r}")
            stats.records = [(0.0, 0.0, w.batches)]
        finally:
            w.close()
    return stats


def raw_simple_run(env: Env, backend: str, producers: int, pool: list[bytes]) -> RunStats:
    """Each producer thread, its own connection, one INSERT + COMMIT per row."""
    conns: list[Any] = []
    lock = threading.Lock()
    with fresh_target(env, backend, f"simple-{producers}") as target:
        if backend == "sqlite":
            sqlite_connect(target).execute(RAW_SQLITE_DDL)
        else:
            import psycopg

            with psycopg.connect(target, autocommit=True) as c:
                c.execute(RAW_PG_DDL)

        def make_worker(_k: int) -> Callable[[bytes], int]:
            if backend == "sqlite":
                c = sqlite_connect(target)
                sql = "INSERT INTO raw (ts, grp, data) VALUES (?, ?, ?)"
            else:
                import psycopg

                c = psycopg.connect(target, autocommit=True)
                sql = "INSERT INTO raw (ts, grp, data) VALUES (%s, %s, %s)"
            with lock:
                conns.append(c)
            execute = c.execute

            def append(data: bytes) -> int:
                execute(sql, (now_us(), None, data))  # autocommit: one durable commit each
                return 0

            return append

        try:
            stats = drive_threads(make_worker, producers, env.args.duration, pool)
        finally:
            for c in conns:
                c.close()
    return stats


def section_raw(env: Env, pool: list[bytes]) -> None:
    args = env.args
    ledger = {(r["backend"], r["mode"], r["producers"]): r["appends_per_s"]
              for r in env.results.get("append", [])}
    rows: list[dict[str, Any]] = []
    simple: list[dict[str, Any]] = []
    for backend in backends(env):
        for mode in args.modes:
            for p in args.producers:
                with console.status(f"raw batched {backend} {mode} × {p}…"):
                    s = median_stats([raw_batched_run(env, backend, mode, p, pool)
                                      for _ in range(args.repeat)])
                led = ledger.get((backend, mode, p))
                ratio = led / s.rate if led and s.rate else None
                rows.append({
                    "backend": backend, "mode": mode, "producers": p,
                    "rows": s.count, "seconds": round(s.seconds, 3),
                    "raw_rows_per_s": round(s.rate, 1),
                    "mean_batch": round(s.count / max(1, s.records[0][2]), 2),
                    "ledger_appends_per_s": led,
                    "ratio_ledger_raw": round(ratio, 3) if ratio is not None else None,
                    "target_ratio": T_RATIO,
                    "meets_target": ratio is not None and ratio >= T_RATIO,
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
                })
                console.log(f"raw batched {backend:8s} {mode:7s} ×{p:<3d} {s.rate:>10,.0f}/s"
                            + (f"  ledger/raw {ratio:.2f}" if ratio else ""))
        for p in args.simple_producers:
            with console.status(f"raw INSERT+COMMIT per row {backend} × {p}…"):
                s = median_stats([raw_simple_run(env, backend, p, pool)
                                  for _ in range(args.repeat)])
            simple.append({"backend": backend, "mode": "threads", "producers": p,
                           "rows": s.count, "seconds": round(s.seconds, 3),
                           "rows_per_s": round(s.rate, 1),
                           "loadavg_1m_after": round(os.getloadavg()[0], 2)})
            console.log(f"raw INSERT+COMMIT {backend:8s} ×{p:<3d} {s.rate:>10,.0f}/s")
    env.results["raw"] = {"batched": rows, "insert_commit_per_row": simple}
    env.save()

    t = Table(title="2. The same rows raw, no ledger (one batching writer), and ledger/raw")
    for c in ("backend", "mode", "producers", "raw rows/s", "raw batch", "ledger/s",
              "ledger/raw", "target", "met"):
        t.add_column(c, justify="left" if c in ("backend", "mode") else "right")
    for r in rows:
        ratio = r["ratio_ledger_raw"]
        t.add_row(
            r["backend"], r["mode"], str(r["producers"]), fmt_int(r["raw_rows_per_s"]),
            str(r["mean_batch"]),
            fmt_int(r["ledger_appends_per_s"]) if r["ledger_appends_per_s"] else "-",
            f"{ratio:.2f}" if ratio is not None else "-", f"≥ {T_RATIO}",
            ok(ratio, T_RATIO) if ratio is not None else "-",
        )
    t.caption = ("Raw table (idx, ts, grp, data), idx primary key, no secondary index. "
                 "SQLite: WAL, synchronous=FULL, BEGIN IMMEDIATE + executemany + COMMIT per "
                 "batch. PostgreSQL: COPY in one transaction per batch. Producers are acked "
                 "after the commit, as the ledger acks.")
    console.print(t)
    if simple:
        t2 = Table(title="2b. Context: one INSERT + COMMIT per row, a connection per producer")
        for c in ("backend", "producers", "rows", "rows/s"):
            t2.add_column(c, justify="left" if c == "backend" else "right")
        for r in simple:
            t2.add_row(r["backend"], str(r["producers"]), fmt_int(r["rows"]),
                       fmt_int(r["rows_per_s"]))
        console.print(t2)


# ------------------------------------------------------------------------------------
# 4: proofs at 10^4, 10^6, 10^7 leaves


def proof_log_path(n: int) -> Path:
    return Path(env_keep_dir()) / f"proofs-{n}.db"


_KEEP_DIR: list[str] = [str(OUT / "logs")]


def env_keep_dir() -> str:
    return _KEEP_DIR[0]


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".json"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def signer_to_meta(signer: Signer) -> dict[str, Any]:
    # The raw seed, not signer.skey: keeps kept logs readable whatever the key-string
    # parser does (before 7e0fbcd, Signer.parse failed on about half of all keys).
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    seed = signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {"name": signer.name, "alg": signer.alg, "seed": seed.hex()}


def signer_from_meta(meta: dict[str, Any]) -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = meta["signer"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(s["seed"]))
    return Signer(s["name"], key, s["alg"])


def build_or_open_log(
    n: int, entry_size: int, path: Path, rebuild: bool, what: str
) -> tuple[Log, Signer, dict[str, Any]]:
    """A SQLite log of exactly ``n`` small random entries, kept at ``path`` between runs
    (with a sidecar .json holding its signing key and build time)."""
    side = Path(f"{path}.json")
    if not rebuild and side.exists() and path.exists():
        meta = json.loads(side.read_text())
        if (meta.get("size") == n and meta.get("entry_size") == entry_size
                and "signer" in meta):
            signer = signer_from_meta(meta)
            store = SQLiteStore(str(path))
            if store.size() == n:
                meta["reused"] = True
                return Log(store, signer), signer, meta
            store.close()
    remove_db(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate("bench.kansa.example/" + what)
    store = SQLiteStore(str(path))
    log = Log(store, signer, max_batch=65536)
    chunk = 100_000
    t0 = time.perf_counter()
    with console.status(f"building a {n:,}-leaf {what} log at {path}…") as status:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            blob = os.urandom(entry_size * k)
            log.append_many(
                [Append(blob[i * entry_size:(i + 1) * entry_size]) for i in range(k)]
            )
            done += k
            el = time.perf_counter() - t0
            status.update(f"building a {n:,}-leaf {what} log: {done:,} "
                          f"({done / el:,.0f}/s)…")
        log.flush()
    build_s = time.perf_counter() - t0
    meta = {"size": n, "entry_size": entry_size, "signer": signer_to_meta(signer),
            "build_s": round(build_s, 2), "build_per_s": round(n / build_s, 1),
            "db_bytes": sum(os.path.getsize(p) for p in (str(path), f"{path}-wal")
                            if os.path.exists(p)),
            "reused": False}
    side.write_text(json.dumps(meta))
    console.log(f"built {n:,}-leaf {what} log in {build_s:.1f} s ({n / build_s:,.0f}/s)")
    return log, signer, meta


def time_us(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter_ns()
    r = fn()
    return (time.perf_counter_ns() - t) / 1000, r


def proof_bench(log: Log, n: int, queries: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    store = log.store
    root = log.root(n)
    cp = log.latest_checkpoint().checkpoint
    if cp.size == n and cp.root != root:
        raise RuntimeError("the signed checkpoint's root differs from the root over tiles")
    warm = min(20, queries)
    gen_inc, ver_inc, gen_con, ver_con = [], [], [], []
    for q in range(queries + warm):
        i = rng.randrange(n)
        entry = store.entry(i)
        assert entry is not None
        leaf = merkle.leaf_hash(entry.data)
        g, proof = time_us(lambda i=i: log.inclusion_proof(i, n))
        v, _ = time_us(lambda i=i, p=proof, leaf=leaf: merkle.verify_inclusion(
            i, n, leaf, p, root))
        m = rng.randrange(1, n) if n > 1 else 1
        old_root = log.root(m)
        gc_, cproof = time_us(lambda m=m: log.consistency_proof(m, n))
        vc, _ = time_us(lambda m=m, p=cproof, o=old_root: merkle.verify_consistency(
            m, n, o, root, p))
        if q >= warm:
            gen_inc.append(g)
            ver_inc.append(v)
            gen_con.append(gc_)
            ver_con.append(vc)

    def s(vals: list[float]) -> dict[str, float]:
        vals = sorted(vals)
        return {"mean_us": round(statistics.fmean(vals), 1), "p50_us": round(pct(vals, 50), 1),
                "p99_us": round(pct(vals, 99), 1), "max_us": round(vals[-1], 1)}

    return {"inclusion_generate": s(gen_inc), "inclusion_verify": s(ver_inc),
            "consistency_generate": s(gen_con), "consistency_verify": s(ver_con)}


def section_proofs(env: Env) -> None:
    args = env.args
    sizes = [n for n in args.proof_sizes if n <= args.max_leaves]
    rows = []
    for n in sizes:
        path = proof_log_path(n)
        log, _signer, meta = build_or_open_log(n, args.proof_entry_size, path, args.rebuild,
                                               "proofs")
        try:
            with console.status(f"{args.queries:,} proof queries at {n:,} leaves…"):
                res = proof_bench(log, n, args.queries, args.seed)
        finally:
            log.close()
            log.store.close()
        row = {"leaves": n, "entry_bytes": args.proof_entry_size, "queries": args.queries,
               "build_s": meta["build_s"], "build_per_s": meta.get("build_per_s"),
               "reused_kept_log": meta.get("reused", False), "db_bytes": meta.get("db_bytes"),
               "path": str(path), **res, "target_us": T_PROOF_US}
        rows.append(row)
        console.log(f"proofs at {n:,}: inclusion gen {res['inclusion_generate']['mean_us']} µs,"
                    f" consistency gen {res['consistency_generate']['mean_us']} µs")
        env.results["proofs"] = rows
        env.save()
        if not args.keep_logs:
            remove_db(path)

    t = Table(title=f"4. Proofs from the SQLite store ({args.queries:,} random queries per "
              f"size, µs)")
    for c in ("leaves", "build s", "operation", "mean µs", "p50 µs", "p99 µs", "max µs",
              "target", "met"):
        t.add_column(c, justify="left" if c == "operation" else "right")
    for r in rows:
        first = True
        for op in ("inclusion_generate", "inclusion_verify", "consistency_generate",
                   "consistency_verify"):
            s = r[op]
            worst = max(s["mean_us"], s["p99_us"])
            build = f"{r['build_s']:.1f}" + (" (kept)" if r["reused_kept_log"] else "")
            t.add_row(
                fmt_int(r["leaves"]) if first else "", build if first else "",
                op.replace("_", " "), f"{s['mean_us']:.1f}", f"{s['p50_us']:.1f}",
                f"{s['p99_us']:.1f}", f"{s['max_us']:.1f}", f"≤ {T_PROOF_US}",
                ok(worst, T_PROOF_US, higher_is_better=False),
            )
            first = False
    t.caption = ("generate: Log.inclusion_proof(i, n) / Log.consistency_proof(m, n), each call "
                 "with a fresh TileHashReader (tiles read from SQLite). verify: "
                 "merkle.verify_inclusion / verify_consistency. i, m uniform at random; "
                 f"{args.proof_entry_size}-byte entries. 'met' = mean and p99 both ≤ target. "
                 "Build time is that of the kept log if it was reused.")
    console.print(t)


# ------------------------------------------------------------------------------------
# 5: pymerkle vs kansa, in memory


def section_pymerkle(env: Env) -> None:
    args = env.args
    n = args.pymerkle_leaves
    rng = random.Random(args.seed)
    entries = [rng.randbytes(args.proof_entry_size) for _ in range(n)]
    res: dict[str, Any] = {"leaves": n, "entry_bytes": args.proof_entry_size}

    def best(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
        out, best_t = None, float("inf")
        for _ in range(reps):
            gc.collect()
            t = time.perf_counter()
            out = fn()
            best_t = min(best_t, time.perf_counter() - t)
        return best_t, out

    def kansa_root() -> bytes:
        lh = merkle.leaf_hash
        return merkle.root_from_leaf_hashes([lh(e) for e in entries])

    def kansa_edge() -> bytes:
        lh = merkle.leaf_hash
        edge = TreeEdge.empty()
        edge.append([lh(e) for e in entries])
        return edge.root()

    reps = args.reps
    t_root, root_a = best(kansa_root, reps)
    t_edge, root_b = best(kansa_edge, reps)
    res["kansa_root_from_leaf_hashes_s"] = round(t_root, 4)
    res["kansa_tree_edge_append_s"] = round(t_edge, 4)
    res["kansa_root"] = root_a.hex()
    res["kansa_roots_agree"] = root_a == root_b
    try:
        import pymerkle
    except ImportError:
        console.print("[yellow]pymerkle is not installed (pip install 'kansa[bench]'): "
                      "section 5 reports kansa only[/]")
        res["pymerkle"] = None
        env.results["pymerkle"] = res
        env.save()
        return

    def pym() -> bytes:
        tree = pymerkle.InmemoryTree()  # defaults: sha256, security mode on
        tree.append_entries(entries)
        return bytes(tree.get_root())

    t_pym, root_p = best(pym, reps)
    res.update({
        "pymerkle_version": getattr(pymerkle, "__version__", "?"),
        "pymerkle_config": "InmemoryTree() defaults: algorithm='sha256', security mode on "
                           "(leaf prefix 0x00, node prefix 0x01 = RFC 6962/9162 hashing), "
                           "subroot cache on",
        "pymerkle_s": round(t_pym, 4),
        "pymerkle_root": root_p.hex(),
        "roots_equal": root_p == root_a,
        "ratio_pymerkle_over_kansa_root": round(t_pym / t_root, 2),
        "ratio_pymerkle_over_kansa_edge": round(t_pym / t_edge, 2),
        "reps_best_of": reps,
    })
    env.results["pymerkle"] = res
    env.save()

    t = Table(title=f"5. Building {n:,} leaves in memory ({args.proof_entry_size}-byte entries,"
              f" best of {reps})")
    for c in ("implementation", "seconds", "leaves/s", "pymerkle ÷ this", "root"):
        t.add_column(c, justify="left" if c in ("implementation", "root") else "right")
    t.add_row(f"pymerkle {res['pymerkle_version']} InmemoryTree", f"{t_pym:.3f}",
              fmt_int(n / t_pym), "1.00", root_p.hex()[:16] + "…")
    t.add_row("kansa merkle.root_from_leaf_hashes", f"{t_root:.3f}", fmt_int(n / t_root),
              f"{t_pym / t_root:.2f}", root_a.hex()[:16] + "…")
    t.add_row("kansa TreeEdge.append + root", f"{t_edge:.3f}", fmt_int(n / t_edge),
              f"{t_pym / t_edge:.2f}", root_b.hex()[:16] + "…")
    t.caption = (f"Roots equal: {res['roots_equal']} (pymerkle config: "
                 f"{res['pymerkle_config']}). Times include leaf hashing in both.")
    console.print(t)


# ------------------------------------------------------------------------------------
# 6: export + offline verification (hook)


def _call_with_progress(fn: Callable[..., Any], *a: Any) -> Any:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    return fn(*a, progress=None) if "progress" in params else fn(*a)


def section_export(env: Env) -> None:
    args = env.args
    missing = [m for m in ("kansa.ledger.export", "kansa.ledger.verify")
               if importlib.util.find_spec(m) is None]
    res: dict[str, Any] = {"entries": args.export_entries, "entry_bytes": args.export_entry_size,
                           "target_verify_per_s": T_VERIFY_EXPORT}
    if missing:
        res["skipped"] = f"modules not present: {', '.join(missing)}"
        env.results["export"] = res
        env.save()
        console.print(f"[yellow]6. Export + offline verification: skipped, "
                      f"{', '.join(missing)} not present yet (the section runs as soon as "
                      f"they exist)[/]")
        return
    export_mod = importlib.import_module("kansa.ledger.export")
    verify_mod = importlib.import_module("kansa.ledger.verify")
    n = args.export_entries
    path = Path(env_keep_dir()) / f"export-{n}.db"
    log, signer, meta = build_or_open_log(n, args.export_entry_size, path, args.rebuild,
                                          "export")
    env.work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix="export-", dir=env.work))
    try:
        log.flush()
        with console.status(f"exporting {n:,} entries…"):
            t0 = time.perf_counter()
            _call_with_progress(export_mod.export_log, log, out_dir)
            t_export = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
        files = sum(1 for f in out_dir.rglob("*") if f.is_file())
        with console.status(f"verifying the exported {n:,} entries offline…"):
            t0 = time.perf_counter()
            outcome = _call_with_progress(verify_mod.verify_directory, out_dir,
                                          signer.verifier)
            t_verify = time.perf_counter() - t0
    finally:
        log.close()
        log.store.close()
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep_logs:
            remove_db(path)
    res.update({
        "build_s": meta["build_s"], "reused_kept_log": meta.get("reused", False),
        "export_s": round(t_export, 3), "export_per_s": round(n / t_export, 1),
        "export_bytes": size, "export_files": files,
        "verify_s": round(t_verify, 3), "verify_per_s": round(n / t_verify, 1),
        "meets_target": n / t_verify >= T_VERIFY_EXPORT,
        "verify_result": str(outcome)[:300],
        "verified_size": getattr(outcome, "size", None),
    })
    env.results["export"] = res
    env.save()
    t = Table(title=f"6. Export + offline verification of a {n:,}-entry log "
              f"({args.export_entry_size}-byte entries)")
    for c in ("step", "seconds", "entries/s", "target", "met"):
        t.add_column(c, justify="left" if c == "step" else "right")
    kept = " (kept log)" if meta.get("reused") else ""
    t.add_row(f"build: Log.append_many{kept}", f"{meta['build_s']:.2f}",
              fmt_int(meta.get("build_per_s") or 0), "", "")
    t.add_row("export_log", f"{t_export:.2f}", fmt_int(n / t_export), "", "")
    t.add_row("verify_directory", f"{t_verify:.2f}", fmt_int(n / t_verify),
              f"≥ {fmt_int(T_VERIFY_EXPORT)}", ok(n / t_verify, T_VERIFY_EXPORT))
    t.caption = (f"{files:,} files, {size / 2**20:,.1f} MiB exported; verify_directory "
                 f"returned: {str(outcome)[:120]}")
    console.print(t)


# ------------------------------------------------------------------------------------


def machine_info(env: Env) -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=HERE.parent, capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    info: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "sqlite": sqlite3.sqlite_version,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_src": bool(git("status", "--porcelain", "--", "src")),
        "args": {k: v for k, v in vars(env.args).items()},
    }
    if env.pg_base:
        import psycopg

        with psycopg.connect(env.pg_base, autocommit=True) as c:
            info["postgres"] = c.execute("SHOW server_version").fetchone()[0]
            info["postgres_synchronous_commit"] = c.execute(
                "SHOW synchronous_commit").fetchone()[0]
            info["postgres_fsync"] = c.execute("SHOW fsync").fetchone()[0]
    return info


def int_list(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (< 1 min): 1 s runs, 10^4 leaves, few queries")
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--modes", default="threads,asyncio", help="threads,asyncio")
    p.add_argument("--producers", default="1,16,64", help="producer counts (default 1,16,64)")
    p.add_argument("--simple-producers", default=None,
                   help="producer counts for the INSERT+COMMIT-per-row figure "
                        "(default: same as --producers)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per append/raw run (default 5, --quick 1)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each append/raw configuration this many times and report the "
                        "median run (the machine is shared and noisy)")
    p.add_argument("--entry-size", type=int, default=1024, help="bytes per appended entry")
    p.add_argument("--pool", type=int, default=4096,
                   help="distinct random entries the producers cycle through")
    p.add_argument("--max-batch", type=int, default=8192,
                   help="raw writer's batch cap (the ledger's Log default is 8192)")
    p.add_argument("--latency-producers", type=int, default=16,
                   help="the threads run during which checkpoint coverage is measured")
    p.add_argument("--poll-interval", type=float, default=0.005,
                   help="checkpoint poller period, seconds")
    p.add_argument("--proof-sizes", default=None,
                   help="log sizes for the proof section (default 1e4,1e6,1e7)")
    p.add_argument("--max-leaves", type=lambda s: int(float(s)), default=None,
                   help="skip proof sizes above this (default 1e7, --quick 1e4)")
    p.add_argument("--proof-entry-size", type=int, default=16,
                   help="bytes per entry in the proof and pymerkle logs")
    p.add_argument("--queries", type=int, default=None, help="proof queries per size "
                   "(default 1000, --quick 200)")
    p.add_argument("--pymerkle-leaves", type=lambda s: int(float(s)), default=None,
                   help="leaves for the pymerkle comparison (default 1e5, --quick 1e4)")
    p.add_argument("--reps", type=int, default=None, help="best-of repetitions, section 5")
    p.add_argument("--export-entries", type=lambda s: int(float(s)), default=None,
                   help="entries in the exported log (default 1e6, --quick 1e4)")
    p.add_argument("--export-entry-size", type=int, default=100)
    p.add_argument("--keep-dir", default=str(OUT / "logs"),
                   help="where the large proof/export logs are kept between runs")
    p.add_argument("--no-keep", dest="keep_logs", action="store_false",
                   help="delete the large logs after use instead of keeping them")
    p.add_argument("--rebuild", action="store_true", help="rebuild kept logs")
    p.add_argument("--pg-url", default=os.environ.get(
        "KANSA_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/kansa_bench"),
        help="PostgreSQL database for the benchmark (created if missing); each run uses "
             "a fresh schema in it")
    p.add_argument("--workdir", default=None,
                   help="scratch directory for per-run SQLite files (default bench/out/work)")
    p.add_argument("--json", default=str(OUT / "ledger.json"), help="JSON results file")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = set(a.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    a.backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    a.producers = int_list(a.producers)
    a.simple_producers = int_list(a.simple_producers) if a.simple_producers else a.producers
    q = a.quick
    a.duration = a.duration if a.duration is not None else (1.0 if q else 5.0)
    a.proof_sizes = int_list(a.proof_sizes) if a.proof_sizes else [10**4, 10**6, 10**7]
    a.max_leaves = a.max_leaves if a.max_leaves is not None else (10**4 if q else 10**7)
    a.queries = a.queries if a.queries is not None else (200 if q else 1000)
    a.pymerkle_leaves = a.pymerkle_leaves or (10**4 if q else 10**5)
    a.reps = a.reps or (1 if q else 3)
    a.export_entries = a.export_entries or (10**4 if q else 10**6)
    if q and a.simple_producers == a.producers:
        a.simple_producers = [1, 16]
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.workdir) if args.workdir else OUT / "work"
    work.mkdir(parents=True, exist_ok=True)
    _KEEP_DIR[0] = args.keep_dir
    need_pg = "postgres" in args.backends and bool(
        {"append", "raw", "latency"} & set(args.sections))
    env = Env(args, work, pg_prepare(args.pg_url) if need_pg else None)
    env.results["meta"] = machine_info(env)
    console.rule("kansa ledger benchmark" + (" (quick)" if args.quick else ""))
    console.print(f"python {env.results['meta']['python']}, SQLite "
                  f"{env.results['meta']['sqlite']}, PostgreSQL "
                  f"{env.results['meta'].get('postgres', 'n/a')}, {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    pool = [rng.randbytes(args.entry_size) for _ in range(args.pool)]
    if "append" in args.sections or ("latency" in args.sections):
        if "append" not in args.sections:  # latency alone: only the run it is measured in
            args.modes, args.producers = ["threads"], [args.latency_producers]
        section_append(env, pool)
    if "raw" in args.sections:
        section_raw(env, pool)
    if "proofs" in args.sections:
        section_proofs(env)
    if "pymerkle" in args.sections:
        section_pymerkle(env)
    if "export" in args.sections:
        section_export(env)
    env.results["meta"]["total_s"] = round(time.perf_counter() - t0, 1)
    env.results["meta"]["loadavg_at_end"] = os.getloadavg()
    env.save()
    console.print(f"total {time.perf_counter() - t0:.0f} s; JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
