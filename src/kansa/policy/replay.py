"""Replaying stored history under rule packs: :func:`replay`.

Replay re-judges stored history, deterministically: same entries, same packs, same
system facts give the same findings in the same order (``ReplayResult.digest``, defined
over :func:`digest_line` per entry). Judging goes through the memo of policy/memo.py;
results are stored beside the log (policy/findings_store.py): failing findings, the run
and, per run, every verdict counted per obligation and UTC day. One writer thread
(``kansa-replay-write``) writes batches while judging goes on.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from kansa._time import from_us
from kansa._time import to_us as _us
from kansa.ledger.follower import Follower
from kansa.policy.findings_store import COLUMNS, FindingStore, RunInfo, TallyRow
from kansa.policy.judging import CompiledPack, Finding, compile_packs, fill_record
from kansa.policy.memo import Combo, Replayer
from kansa.policy.pack import Pack

if TYPE_CHECKING:
    from kansa.api import Ledger


@dataclass
class ReplayResult:
    packs: list[str]  # "id@version sha256:..." of every pack given
    run_id: str = ""  # the policy_runs row (written when save=True)
    records: int = 0  # entries judged
    findings: int = 0  # verdicts given (records x obligations of the packs in force)
    verdicts: Counter[str] = field(default_factory=Counter)
    # SHA-256 over one line per judged entry, in index order (see replay()): equal
    # history, packs and system facts give equal digests
    digest: str = ""
    seconds: float = 0.0
    stored: int = 0  # failing findings written to policy_findings
    collected: list[Finding] = field(default_factory=list)  # when collect=True


def _bound(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        from kansa.records.model import parse_ts

        value = parse_ts(value, field_name="since/until")
    return _us(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))


def read_entries(ledger: Ledger, since: datetime | str | None,
                 until: datetime | str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, decoded entry) of the ledger's entries with since <= ts < until, in index
    order: what replay and impact judge."""
    loads = orjson.loads
    follower = Follower(ledger.log.store, since_us=_bound(since), until_us=_bound(until),
                        batch=_READ_BATCH)
    for index, _ts, data in follower.read():
        yield index, loads(data)


_READ_BATCH = 16_384


def _window(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def digest_line(index: int, record_id: str, combo: Combo) -> bytes:
    """One judged entry's contribution to ReplayResult.digest:
    ``index TAB len(id):id TAB k TAB`` (decimal; the record id as UTF-8 and its length in
    bytes), then for each of the k packs in force (by pack id) the 32-byte SHA-256 of the
    compact JSON ``[pack_hash, [[obligation, verdict, reason], ...]]`` (obligations in
    pack order), then LF. The lengths make it unambiguous; a pack's hash fixes the
    citations and legal force of its findings."""
    rid = record_id.encode()
    return b"%d\t%d:%b%b" % (index, len(rid), rid, combo.tail)


def _day(us: int) -> str:
    """The UTC day of an instant (tallies count by it)."""
    return from_us(us).date().isoformat()


_DAY_US = 86_400_000_000
_FLUSH_VALUES = 20_000 * len(COLUMNS)


_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _writer_pool() -> ThreadPoolExecutor:
    """One thread, for the life of the process, that writes replay batches: SQLite and
    PostgreSQL release the GIL while they work, so judging goes on meanwhile. (One
    long-lived thread, because stores keep a connection per thread.)"""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kansa-replay-write")
        return _writer


class _Sink:
    """Failing rows and judged index ranges, written in batches by the writer thread, in
    order, at most two batches behind; tallies, kept in memory (outcomes x days) and
    expanded and written once at the end."""

    def __init__(self, fs: FindingStore | None, pack_hashes: list[str]) -> None:
        self.fs = fs
        self.hashes = pack_hashes
        self.rows: list[Any] = []  # failing rows' values, flat
        self.ranges: list[tuple[int, int]] = []
        self.counts: Counter[tuple[Combo, int]] = Counter()
        self.profiles: Counter[tuple[Any, int]] = Counter()
        self.packs: dict[str, CompiledPack] = {}
        self.stored = 0
        self.pending: list[Future[int]] = []

    def flush(self) -> None:
        """Hand the batch to the writer (the lists are emptied in place: the replay loop
        holds them)."""
        if self.fs is not None and (self.rows or self.ranges):
            while len(self.pending) >= 2:
                self.stored += self.pending.pop(0).result()
            self.pending.append(_writer_pool().submit(
                self.fs.write_rows, self.rows[:], self.ranges[:], self.hashes))
        self.rows.clear()
        self.ranges.clear()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for every batch handed over; raise the first write error unless quiet."""
        pending, self.pending = self.pending, []
        errors = []
        for f in pending:
            try:
                self.stored += f.result()
            except Exception as e:  # noqa: PERF203 (every batch must be waited for)
                errors.append(e)
        if errors and not quiet:
            raise errors[0]

    def count_now(self, combo: Combo, day: int) -> None:
        """Count a record's verdicts by verdict profile at once: for combos not memoized
        (one per record), so that memory does not grow with the records."""
        for o in combo.outcomes:
            self.profiles[(o.profile, day)] += 1
            self.packs[o.profile[0]] = o.cp

    def tally(self) -> Counter[tuple[str, str, int, str]]:
        """(pack hash, obligation, day number, verdict) -> findings."""
        profiles, packs = self.profiles, self.packs
        for (combo, day), n in self.counts.items():
            for o in combo.outcomes:
                profiles[(o.profile, day)] += n
                packs[o.profile[0]] = o.cp
        out: Counter[tuple[str, str, int, str]] = Counter()
        for ((h, verdicts), day), n in profiles.items():
            for c, v in zip(packs[h].obligations, verdicts, strict=True):
                out[(h, c.o.id, day, v)] += n
        return out


def _judge_into(rj: Replayer, entries: Iterable[tuple[int, dict[str, Any]]], sink: _Sink,
                h: Any, result: ReplayResult, collect: bool,
                progress: Callable[[int], None] | None) -> None:
    """The replay loop: per entry, its combo, its digest line, its failing rows."""
    rows, ranges, counts = sink.rows, sink.ranges, sink.counts
    shared = rj.whole  # combos are memoized, so few: count them, expand at the end
    done = 0
    for index, entry in entries:
        at_us, combo = rj.combo(entry, index)
        rid = str(entry.get("id", ""))
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
        if shared:
            counts[(combo, at_us // _DAY_US)] += 1
        else:
            sink.count_now(combo, at_us // _DAY_US)
        for head, tail, fill in combo.fails:
            if fill:  # the reason names the record's system, model or provider
                tail = (*tail[:-1], fill_record(tail[-1], entry))
            rows += (index, *head, rid, *tail)
        if collect:
            for o in combo.outcomes:
                result.collected.extend(o.findings(index, rid, entry))
        h.update(digest_line(index, rid, combo))
        result.records += 1
        if len(rows) >= _FLUSH_VALUES:
            sink.flush()
        done += 1
        if progress is not None and done == 1024:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)


def replay(
    ledger: Ledger,
    pack_versions: Sequence[Pack],
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    progress: Callable[[int], None] | None = None,
    systems: Mapping[str, Mapping[str, Any]] | None = None,
    pin: bool = False,
    save: bool = True,
    collect: bool = False,
    memo: bool = True,
    now: datetime | None = None,
) -> ReplayResult:
    """Re-judge the ledger's stored entries (``since`` <= ts < ``until``) under
    ``pack_versions``: each record under the version of each instrument in force at its
    time (or every pack, with ``pin``). Unless ``save=False``, failing findings replace
    those the packs had on the judged entries, and the run and its tallies are stored.

    The digest is SHA-256 over :func:`digest_line` of every judged entry, in index order.
    ``memo=False`` judges every record afresh (same results, slower; for testing).
    ``now`` is when the run is stored as made (default: the clock; a scenario passes its
    own)."""
    t0 = time.perf_counter()
    started = now or datetime.now(UTC)
    packs = compile_packs(pack_versions)
    rj = Replayer(packs, systems, pin, memo=memo)
    fs = FindingStore(ledger.log.store) if save else None
    if fs is not None:
        for cp in packs:
            fs.save_pack(cp.pack)
    result = ReplayResult([f"{cp.pack.ref} {cp.pack.hash}" for cp in packs],
                          run_id=uuid.uuid4().hex)
    sink = _Sink(fs, [cp.pack.hash for cp in packs])
    h = hashlib.sha256()
    try:
        _judge_into(rj, read_entries(ledger, since, until), sink, h, result, collect, progress)
        sink.flush()
    except BaseException:
        sink.close(quiet=True)  # the judging error is the one to report
        raise
    sink.close()
    tally = sink.tally()
    for (_, _, _, v), n in tally.items():
        result.verdicts[v] += n
    result.findings = sum(result.verdicts.values())
    result.digest = h.hexdigest()
    result.stored = sink.stored
    result.seconds = time.perf_counter() - t0
    if fs is not None:
        fs.save_run(RunInfo(
            result.run_id, started,
            [{"id": cp.pack.id, "version": cp.pack.version, "hash": cp.pack.hash}
             for cp in packs],
            _window(since), _window(until), result.records, result.digest,
            dict(sorted(result.verdicts.items())), result.seconds),
            [TallyRow(result.run_id, ph, o, _day(d * _DAY_US), v, n)
             for (ph, o, d, v), n in sorted(tally.items())])
    return result
