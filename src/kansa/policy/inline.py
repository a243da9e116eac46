"""Inline enforcement: rule packs judged while a call happens, with atomic hot reload.

A *policy file* (YAML) names the packs to enforce, the facts about each AI system, and a
mode per obligation::

    packs:                                   # pack files (relative to this file) or refs
      - packs/ai-logging-v2.yaml
      - kansa.example/ai-logging@1           # id@version: a bundled (or feed) pack
    bundled: false                           # true: every bundled pack as well
    mode: observe                            # the default mode
    modes:                                   # per pack, or per pack#obligation (wins)
      kansa.example/ai-logging: flag
      kansa.example/ai-logging#log-model: block
    systems:                                 # facts (docs/VOCABULARY.md), by system name
      support-bot: {roles: [deployer], jurisdictions: [EU], placed_on_market: 2026-03-01}
    approval_ttl_hours: 24                   # how long an approval request stays usable

Modes: ``observe`` (a failed check is listed in the record, nothing else), ``flag`` (the
record's decision becomes ``flag``), ``block`` (the request is refused before it reaches
the model) and ``require_approval`` (refused until a person approves it; the approved
retry passes once). A malformed file is rejected with ``file:line: reason``.

A :class:`PolicySnapshot` is immutable: compiled packs, modes, systems and a hash over
them (``kansa.policy.snapshot`` in every record). A :class:`PolicyHandle` holds the
current snapshot in one attribute; :meth:`PolicyHandle.reload` builds a whole new
snapshot first and then swaps that one reference, so a caller that reads
``handle.current`` once per call sees one whole snapshot, never half of one. A file that
does not load leaves the old snapshot in place.

Two moments per call. Before the call, :meth:`PolicySnapshot.check_request` judges the
*request entry* (the entry the call would make, as if it succeeds: system, model,
provider, attributes; no response keys) under the packs that hold a ``block`` or
``require_approval`` obligation, and reports those obligations' failures (a check that
reads response keys sees them absent: enforce only what a request can show). After the
call, :meth:`PolicySnapshot.judge_record` judges the full entry; its :class:`Decision`
goes into the record's attributes before the record is appended, so the decision is part
of the ledger. Obligations that need
evidence from a person (no check) are never per-call findings and are left out.

Speed: judging one entry with the CEL engine costs tens to hundreds of microseconds, so
a snapshot memoizes verdicts by a *projection* of the entry: what any of its checks can
read of it (a key's value, or only whether it is there; one level down for maps such as
``attributes``), found by :func:`~kansa.policy.reads.record_reads` and
projected by the same function replay's memo uses, plus the system's name and which of
the packs' date boundaries the instant falls between. One analysis serves both memos,
so a fix to it reaches both. Why that is safe: a CEL program is a pure function of
``record``, ``system`` and ``now``; ``system`` is fixed by the system's name within a
snapshot; a check that mentions ``now`` disables the memo; and the engine compares the
instant only with the packs', obligations' and transitions' start and end instants, so
two instants between the same boundaries are judged alike. Any use of ``record`` the
reader cannot pin to named keys (``record[x]``, ``size(record)``, a macro over it, a
shadowing variable) disables the memo for that snapshot. ``tests/test_inline_policy.py``
checks memoized and direct judging agree on generated entries.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from kansa._time import to_us as _us
from kansa.errors import PolicyBlocked as PolicyBlocked  # re-exported: its old home
from kansa.errors import PolicyError
from kansa.policy.judging import FAIL, CompiledPack, Finding, Judge, compile_pack
from kansa.policy.pack import _V, Pack, PackError, _compose, parse_pack
from kansa.policy.reads import Read, pack_reads, projector
from kansa.records.attributes import (
    KANSA_POLICY_APPROVAL,
    KANSA_POLICY_DECISION,
    KANSA_POLICY_ERROR,
    KANSA_POLICY_FINDINGS,
    KANSA_POLICY_SNAPSHOT,
)
from kansa.records.model import UsageRecord, canonical

_logger = logging.getLogger("kansa.policy")

OBSERVE, FLAG, BLOCK, REQUIRE_APPROVAL = "observe", "flag", "block", "require_approval"
MODES = (OBSERVE, FLAG, BLOCK, REQUIRE_APPROVAL)
ENFORCING = frozenset({BLOCK, REQUIRE_APPROVAL})

# decisions (kansa.policy.decision)
ALLOW, FLAGGED, BLOCKED, APPROVAL_REQUIRED, APPROVED = (
    "allow", "flag", "block", "approval_required", "approved")

ATTR_DECISION = KANSA_POLICY_DECISION
ATTR_FINDINGS = KANSA_POLICY_FINDINGS
ATTR_SNAPSHOT = KANSA_POLICY_SNAPSHOT
ATTR_APPROVAL = KANSA_POLICY_APPROVAL
ATTR_ERROR = KANSA_POLICY_ERROR

_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._:/-]{0,127})@([A-Za-z0-9][A-Za-z0-9._:/-]{0,127})$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_FINDINGS = 64  # per record: an entry must stay well under the 64 KiB bundle limit
_MEMO_SIZE = 8192


# -- what a snapshot's checks read of an entry --------------------------------------------


@dataclass(frozen=True)
class ReadSet:
    """What a snapshot's checks read of an entry, as :func:`kansa.policy.reads.record_reads`
    finds it: ``paths`` are its reads (a path of one or two keys, and whether the whole
    value or only presence is read), None when some check reads ``now`` or uses ``record``
    in a way the reader cannot pin (the memo is then off)."""

    paths: frozenset[Read] | None

    @property
    def keys(self) -> frozenset[str]:
        """The top-level entry keys read (in whole, in part or for presence)."""
        return frozenset(p[0] for p, _ in self.paths or ())

    @property
    def attributes(self) -> frozenset[str]:
        """The names read inside ``record.attributes``."""
        return frozenset(p[1] for p, _ in self.paths or ()
                         if len(p) == 2 and p[0] == "attributes")


def _snapshot_reads(packs: Sequence[CompiledPack]) -> ReadSet:
    paths: set[Read] = set()
    for cp in packs:
        got = pack_reads(cp)
        if got is None:
            return ReadSet(None)
        paths.update(got)
    return ReadSet(frozenset(paths))


def _boundaries(packs: Sequence[CompiledPack]) -> tuple[int, ...]:
    """Every instant at which some pack, obligation or transition starts or ends (the
    instants the engine compares ``at`` with)."""
    out: set[int | None] = set()
    for cp in packs:
        out.update((cp.from_us, cp.until_us))
        for c in cp.obligations:
            out.update((c.from_us, c.until_us))
            for _, t_from, t_until in c.transitions:
                out.update((t_from, t_until))
    return tuple(sorted(b for b in out if b is not None))


# -- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """One obligation that did not hold (or whose pack could not be judged)."""

    pack: str  # pack id
    ref: str  # pack@version
    obligation: str
    verdict: str  # fail, or "error"
    citation: str
    mode: str

    @property
    def label(self) -> str:
        return f"{self.ref}#{self.obligation}={self.verdict}"


@dataclass(frozen=True)
class Decision:
    """What inline enforcement decided for one call, under one snapshot."""

    decision: str  # allow | flag | block | approval_required | approved
    snapshot: str
    failed: tuple[Failed, ...] = ()
    error: str | None = None  # a check that could not be evaluated
    approval: str | None = None  # the approval id a held or approved call carries

    @property
    def enforced(self) -> tuple[Failed, ...]:
        """The failures that refuse the call (block / require_approval obligations)."""
        return tuple(f for f in self.failed if f.mode in ENFORCING)

    def attributes(self) -> dict[str, Any]:
        """The record attributes that carry this decision (docs/VOCABULARY.md)."""
        a: dict[str, Any] = {ATTR_DECISION: self.decision, ATTR_SNAPSHOT: self.snapshot}
        if self.failed:
            a[ATTR_FINDINGS] = [f.label for f in self.failed[:_MAX_FINDINGS]]
        if self.error:
            a[ATTR_ERROR] = self.error[:1024]
        if self.approval:
            a[ATTR_APPROVAL] = self.approval
        return a

    def message(self) -> str:
        """Why a call was refused, naming the obligations and their citations."""
        what = ("refused by policy" if self.decision == BLOCKED
                else "held for approval by policy")
        parts = [f"{f.ref}#{f.obligation} ({f.citation})" for f in self.enforced]
        msg = f"kansa: {what}: " + ("; ".join(parts) or "a check could not be evaluated")
        if self.error:
            msg += f" [{self.error}]"
        return msg


# -- the policy file -----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy file (before its packs are compiled)."""

    packs: tuple[Pack, ...]
    default_mode: str
    modes: Mapping[str, str]  # "pack" or "pack#obligation" -> mode
    systems: Mapping[str, Mapping[str, Any]]
    approval_ttl_hours: float = 24.0
    source: str = ""


_TOP = {"packs", "bundled", "mode", "modes", "systems", "approval_ttl_hours"}


def _resolve_ref(ref: str, home: Path | None, name: str, line: int) -> Pack:
    """A bundled pack, or one installed from a feed (verified by ``kansa.policy.feed``)."""
    try:
        from kansa.policy.feed import find_pack
    except ImportError:  # an install without the feed module: bundled packs only
        from kansa.policy.bundled import bundled_packs

        for p in bundled_packs():
            if p.ref == ref:
                return p
        raise PackError(f"{name}:{line}: no bundled pack {ref}; give a file path") from None
    from kansa.home import default_home

    try:
        return find_pack(ref, home if home is not None else default_home())
    except PolicyError as e:
        raise PackError(f"{name}:{line}: pack {ref}: {e}") from None


_PARSED: dict[tuple[str, str], Pack] = {}


def _load_pack(path: Path, name: str) -> Pack:
    """``load_pack``, remembering packs by their bytes: parsing and validating a pack
    (pure-Python YAML) costs far more than judging, and a reload usually changes one
    file of many, or none (the policy file itself)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PackError(f"{name}:0: cannot read: {e.strerror or e}") from None
    key = (name, hashlib.sha256(raw).hexdigest())
    got = _PARSED.get(key)
    if got is not None:
        return got
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PackError(f"{name}:{line}: not UTF-8 text") from None
    pack = parse_pack(text, name)
    if len(_PARSED) >= 512:
        _PARSED.clear()
    _PARSED[key] = pack
    return pack


def _facts(value: Any) -> Any:
    """YAML dates stay text in the parser; system facts need them as dates."""
    if isinstance(value, str) and _DAY_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _facts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_facts(v) for v in value]
    return value


def parse_policy(text: str, name: str = "<policy>", *, base: Path | None = None,
                 home: Path | None = None) -> PolicySpec:
    """Parse and validate a policy file; errors are ``PackError("file:line: reason")``."""
    data, lines = _compose(text, name)
    v = _V(name, lines)
    m = v.mapping(data, (), "a policy file", {"packs"}, _TOP - {"packs"})
    raw_packs = m["packs"]
    if not isinstance(raw_packs, list):
        raise v.err(("packs",), "packs must be a list of pack files or id@version refs")
    packs: list[Pack] = []
    for i, item in enumerate(raw_packs):
        if not isinstance(item, str) or not item.strip():
            raise v.err(("packs", i), "each pack is a file path or an id@version ref")
        path = Path(item) if base is None or Path(item).is_absolute() else base / item
        if path.is_file():
            try:
                packs.append(_load_pack(path, str(path)))
            except PackError as e:
                raise PackError(f"{name}:{v.line(('packs', i))}: in pack {item}: {e}") from None
        elif _REF_RE.match(item):
            packs.append(_resolve_ref(item, home, name, v.line(("packs", i))))
        else:
            raise v.err(("packs", i), f"{item!r} is neither a file nor an id@version ref")
    bundled = m.get("bundled", False)
    if not isinstance(bundled, bool):
        raise v.err(("bundled",), "bundled is true or false")
    if bundled:
        from kansa.policy.bundled import PACKS_DIR, bundled_pack_files

        packs += [_load_pack(f, str(f.relative_to(PACKS_DIR))) for f in bundled_pack_files()]
    unique: dict[str, Pack] = {}
    starts: dict[tuple[str, date], Pack] = {}
    for p in packs:
        if unique.setdefault(p.hash, p) is not p:
            continue
        other = starts.setdefault((p.id, p.effective_from), p)
        if other is not p:
            raise v.err(("packs",), f"{p.ref} and {other.ref} both take effect on "
                        f"{p.effective_from}: which governs is ambiguous")
    if not unique:
        raise v.err(("packs",), "the policy enforces no pack")
    default = v.enum(m, "mode", (), MODES, default=OBSERVE)
    modes = _modes(v, m.get("modes"), list(unique.values()))
    systems = m.get("systems") or {}
    if not isinstance(systems, dict) or not all(isinstance(x, dict) for x in systems.values()):
        raise v.err(("systems",), "systems maps each system name to a mapping of facts")
    ttl = m.get("approval_ttl_hours", 24)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 24 * 365:
        raise v.err(("approval_ttl_hours",), "approval_ttl_hours is a positive number of hours")
    return PolicySpec(tuple(unique.values()), default, modes,
                      {str(k): _facts(x) for k, x in systems.items()}, float(ttl), name)


def _modes(v: _V, raw: Any, packs: list[Pack]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise v.err(("modes",), "modes maps pack or pack#obligation to a mode")
    obligations = {p.id: {o.id for o in p.obligations} for p in packs}
    out: dict[str, str] = {}
    for key, mode in raw.items():
        path = ("modes", key)
        pid, _, oid = key.partition("#")
        if pid not in obligations:
            raise v.err(path, f"{key!r}: no pack {pid!r} in this policy")
        if oid and oid not in obligations[pid]:
            raise v.err(path, f"{key!r}: pack {pid} has no obligation {oid!r}")
        if mode not in MODES:
            raise v.err(path, f"mode {mode!r} is not one of {', '.join(MODES)}")
        out[key] = str(mode)
    return out


def load_policy(path: str | Path, *, home: Path | None = None) -> PolicySnapshot:
    """Read a policy file and build its snapshot (compiling every check)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise PackError(f"{p}:0: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise PackError(f"{p}:1: not UTF-8 text") from None
    return PolicySnapshot(parse_policy(text, str(p), base=p.parent, home=home))


# -- the snapshot --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Judged:
    failed: tuple[Failed, ...]
    error: str | None
    error_enforcing: bool  # the check that failed to evaluate belongs to an enforcing pack


class _Judging:
    """One engine ``Judge`` over some of a snapshot's packs, with its memo."""

    def __init__(self, packs: Sequence[Pack], systems: dict[str, dict[str, Any]],
                 mode_of: dict[tuple[str, str], str], default_mode: str,
                 enforcing_packs: frozenset[str]) -> None:
        self.packs = tuple(packs)
        self.systems = systems
        self._mode_of = mode_of
        self._default_mode = default_mode
        self._enforcing_packs = enforcing_packs
        compiled = sorted((compile_pack(p) for p in self.packs),
                          key=lambda c: (c.pack.id, c.from_us))
        self._judge = Judge(compiled, systems, False)
        self._pack_judges: dict[str, Judge] | None = None
        self._checked = {(p.id, o.id) for p in self.packs for o in p.obligations
                         if o.check is not None}
        self.reads = _snapshot_reads(compiled)
        self.memoized = self.reads.paths is not None
        self._project = projector(self.reads.paths or ())
        self._boundaries = _boundaries(compiled)
        self.memo: dict[tuple[Any, ...], _Judged] = {}

    def _key(self, entry: Mapping[str, Any], at_us: int) -> tuple[Any, ...]:
        # the system's facts are chosen by str(system), as the engine's Judge does
        return (str(entry.get("system")), bisect.bisect_right(self._boundaries, at_us),
                self._project(entry))

    def remembered(self, entry: Mapping[str, Any], at: datetime) -> _Judged | None:
        """The memoized judgement, if any: a projection and a dict lookup, cheap enough
        for an event loop (only a miss evaluates CEL)."""
        if not self.memoized:
            return None
        return self.memo.get(self._key(entry, _us(at)))

    def judged(self, entry: Mapping[str, Any], at: datetime) -> _Judged:
        if not self.memoized:
            return self._judge_now(entry, at)
        key = self._key(entry, _us(at))
        got = self.memo.get(key)
        if got is None:
            got = self._judge_now(entry, at)
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            self.memo[key] = got
        return got

    def _judge_now(self, entry: Mapping[str, Any], at: datetime) -> _Judged:
        try:
            return _Judged(self._failed(self._judge.judge(entry, at, None)), None, False)
        except PolicyError:
            pass
        # one pack's check could not be evaluated: judge pack by pack to say which
        if self._pack_judges is None:
            by_id: dict[str, list[Any]] = {}
            for p in self.packs:
                by_id.setdefault(p.id, []).append(compile_pack(p))
            self._pack_judges = {pid: Judge(sorted(cs, key=lambda c: c.from_us),
                                            self.systems, False) for pid, cs in by_id.items()}
        found: list[Finding] = []
        errors: list[str] = []
        enforcing = False
        for pid, judge in sorted(self._pack_judges.items()):
            try:
                found += judge.judge(entry, at, None)
            except PolicyError as e:
                errors.append(f"{pid}: {e}")
                enforcing = enforcing or pid in self._enforcing_packs
        return _Judged(self._failed(found), "; ".join(errors), enforcing)

    def _failed(self, findings: list[Finding]) -> tuple[Failed, ...]:
        return tuple(
            Failed(f.pack, f.pack_ref, f.obligation, f.verdict, f.citation,
                   self._mode_of.get((f.pack, f.obligation), self._default_mode))
            for f in findings if f.verdict == FAIL and (f.pack, f.obligation) in self._checked)


class PolicySnapshot:
    """One immutable set of packs, modes and system facts (build once, share freely).

    Before a call only the packs with an enforcing obligation are judged (a refused call's
    record lists their failures); after it, every pack."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.packs = spec.packs
        self.default_mode = spec.default_mode
        self.modes = dict(spec.modes)
        self.systems = {k: dict(v) for k, v in spec.systems.items()}
        mode_of: dict[tuple[str, str], str] = {
            (p.id, o.id): self.mode(p.id, o.id) for p in self.packs for o in p.obligations}
        self.enforcing_packs = frozenset(
            pid for (pid, _), mode in mode_of.items() if mode in ENFORCING)
        self.enforces = bool(self.enforcing_packs)
        self._all = _Judging(self.packs, self.systems, mode_of, self.default_mode,
                             self.enforcing_packs)
        self._request = _Judging([p for p in self.packs if p.id in self.enforcing_packs],
                                 self.systems, mode_of, self.default_mode,
                                 self.enforcing_packs) if self.enforces else None
        self.reads = self._all.reads
        self.memoized = self._all.memoized
        self.hash = "sha256:" + hashlib.sha256(canonical({
            "packs": sorted(p.hash for p in self.packs),
            "mode": self.default_mode,
            "modes": self.modes,
            "systems": _jsonable(self.systems),
        })).hexdigest()

    def mode(self, pack: str, obligation: str) -> str:
        """The mode of one obligation: its own, else its pack's, else the default."""
        return self.modes.get(f"{pack}#{obligation}") or self.modes.get(pack) \
            or self.default_mode

    @property
    def memo_size(self) -> int:
        return len(self._all.memo) + (len(self._request.memo) if self._request else 0)

    # -- judging ---------------------------------------------------------------------------

    def judged(self, entry: Mapping[str, Any], at: datetime) -> _Judged:
        """The failures of ``entry`` under every pack, judged at ``at`` (memoized when
        that is safe)."""
        return self._all.judged(entry, at)

    def check_request(self, entry: Mapping[str, Any], at: datetime | None = None,
                      ) -> Decision | None:
        """Before the call: a ``block`` or ``approval_required`` decision if an enforcing
        obligation fails on the request entry (or cannot be evaluated), else None."""
        if self._request is None:
            return None
        return self._request_decision(self._request.judged(entry, at or datetime.now(UTC)))

    def _request_decision(self, j: _Judged) -> Decision | None:
        enforced = [f for f in j.failed if f.mode in ENFORCING]
        if j.error is not None and j.error_enforcing:
            return Decision(BLOCKED, self.hash, j.failed, j.error)
        if not enforced:
            return None
        decision = BLOCKED if any(f.mode == BLOCK for f in enforced) else APPROVAL_REQUIRED
        return Decision(decision, self.hash, j.failed, j.error)

    async def acheck_request(self, entry: Mapping[str, Any], at: datetime | None = None,
                             ) -> Decision | None:
        """:meth:`check_request` for an event loop: judged on kansa's policy worker
        threads, never on the loop (see :func:`judging_pool`); a memo hit, which evaluates
        nothing, is answered at once."""
        if self._request is None:
            return None
        at = at or datetime.now(UTC)
        j = self._request.remembered(entry, at)
        if j is not None:
            return self._request_decision(j)
        return await _off_loop(functools.partial(self.check_request, entry, at))

    async def ajudge_record(self, entry: Mapping[str, Any], at: datetime | None = None, *,
                            approval: str | None = None) -> Decision:
        """:meth:`judge_record` for an event loop, off the loop like
        :meth:`acheck_request`."""
        at = at or datetime.now(UTC)
        j = self._all.remembered(entry, at)
        if j is not None:
            return self._record_decision(j, approval)
        return await _off_loop(functools.partial(self.judge_record, entry, at,
                                                 approval=approval))

    def judge_record(self, entry: Mapping[str, Any], at: datetime | None = None, *,
                     approval: str | None = None) -> Decision:
        """After the call: the decision recorded with it. Failures of ``observe``
        obligations are listed only; any other failure flags the record (an enforcing
        obligation that fails only on the response can no longer stop the call)."""
        return self._record_decision(self._all.judged(entry, at or datetime.now(UTC)),
                                     approval)

    def _record_decision(self, j: _Judged, approval: str | None) -> Decision:
        if approval is not None:
            decision = APPROVED
        elif j.error is not None or any(f.mode != OBSERVE for f in j.failed):
            decision = FLAGGED
        else:
            decision = ALLOW
        return Decision(decision, self.hash, j.failed, j.error, approval)


_T = TypeVar("_T")
JUDGING_THREADS = 2
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def judging_pool() -> ThreadPoolExecutor:
    """The threads that judge for event loops (the gateway, async SDK callers).

    The CEL package holds the GIL while one expression evaluates, so a thread cannot make
    an evaluation itself concurrent with the loop. What keeps the loop responsive: every
    expression is cost-bounded when its pack is loaded (``cel.check_cost``: about a
    second at most on the worst record an entry allows, microseconds on ordinary ones),
    and the loop gets the GIL back between expressions, because judging runs here and
    not on the loop. A bounded pool also keeps a burst of requests from queueing
    unbounded work on the default executor."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=JUDGING_THREADS,
                                       thread_name_prefix="kansa-policy")
        return _pool


async def _off_loop(call: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(judging_pool(), call)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, date | datetime):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


# -- entries -------------------------------------------------------------------------------

_SUBJECT_PLACEHOLDER = "pending"  # the pseudonym is derived when the record is sealed
_CONTENT_PLACEHOLDER = {"alg": "sha256-salted-v1", "commitment": ""}


def entry_of(rec: UsageRecord, *, outcome: str | None = None) -> dict[str, Any]:
    """The ledger entry ``rec`` will become, as a check sees it. The subject pseudonym and
    the content commitment exist only once the record is sealed: placeholders stand in
    for them (a check can test their presence, which is all it can sensibly test)."""
    e = rec.entry_object(subject_ref=_SUBJECT_PLACEHOLDER if rec.subject is not None else None,
                         commitment=None)
    if rec.content:
        e["content"] = _CONTENT_PLACEHOLDER
    if outcome is not None:
        e["outcome"] = outcome
    return e


# -- the handle: hot reload ----------------------------------------------------------------


@dataclass
class ReloadResult:
    ok: bool
    snapshot: str  # the hash in force after the attempt
    changed: bool  # a new snapshot was swapped in
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "snapshot": self.snapshot, "changed": self.changed,
                "error": self.error}


@dataclass
class PolicyHandle:
    """The current snapshot of a policy file, replaced whole by :meth:`reload`.

    Read ``handle.current`` once per call and use that snapshot for the whole call."""

    current: PolicySnapshot
    path: Path | None = None
    home: Path | None = None
    reloads: int = 0
    last_error: str | None = None
    _stamp: tuple[int, int, int] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: str | Path, *, home: Path | None = None) -> PolicyHandle:
        p = Path(path)
        stamp = _file_stamp(p)
        return cls(load_policy(p, home=home), p, home, _stamp=stamp)

    @classmethod
    def of(cls, policy: PolicyHandle | PolicySnapshot | str | Path) -> PolicyHandle:
        """A handle for a handle (itself), a snapshot, or a policy file path."""
        if isinstance(policy, PolicyHandle):
            return policy
        if isinstance(policy, PolicySnapshot):
            return cls(policy)
        return cls.load(policy)

    def reload(self) -> ReloadResult:
        """Build a new snapshot from the file and swap it in; on any error keep the old one
        (the error is logged, kept in ``last_error`` and returned)."""
        if self.path is None:
            return ReloadResult(False, self.current.hash, False,
                                "this policy was not loaded from a file")
        with self._lock:  # two reloads at once must not swap an older build in last
            stamp = _file_stamp(self.path)
            try:
                snap = load_policy(self.path, home=self.home)
            except PolicyError as e:
                self._stamp = stamp  # a watcher retries once the file changes again
                self.last_error = str(e)
                _logger.error("kansa policy: reload of %s failed, keeping snapshot %s: %s",
                              self.path, self.current.hash, e)
                return ReloadResult(False, self.current.hash, False, str(e))
            self._stamp = stamp
            self.last_error = None
            changed = snap.hash != self.current.hash
            if changed:
                self.current = snap  # the one assignment readers can observe
                self.reloads += 1
                _logger.warning("kansa policy: now enforcing snapshot %s (%d pack versions)",
                                snap.hash, len(snap.packs))
            return ReloadResult(True, self.current.hash, changed)

    def changed_on_disk(self) -> bool:
        """Whether the file differs (mtime, size, inode) from the one last loaded."""
        return self.path is not None and _file_stamp(self.path) != self._stamp


def _file_stamp(p: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino
