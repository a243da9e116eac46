"""Pack feeds, installed packs, and activation as a ledger record.

**Feed.** A feed is a directory or an http(s) URL holding ``index.json``::

    {"kansa_pack_feed": 1,
     "packs": [{"pack": "kansa.example/ai-logging", "version": "2",
                "path": "kansa.example/ai-logging/2.yaml",
                "sig": "kansa.example/ai-logging/2.yaml.sig"}]}

``path`` and ``sig`` are relative to the index (no ``..``, no absolute paths, no URLs).
The index is not signed and is trusted for nothing: every pack is verified against its
signature note and the trust store (:mod:`kansa.policy.signing`), and the index's
``pack``/``version`` must agree with what was signed. ``publish`` writes the index of a
directory of signed packs.

**Installed packs** live in ``$KANSA_HOME/packs/<pack id as path>/<version>.yaml`` with
``<version>.yaml.sig`` beside it, and are re-verified whenever they are read (so a key
removed from the trust store, or a file edited in place, stops them being used). An
install verifies everything first and then writes each file atomically (temporary file,
fsync, rename), signature before pack; an installed version is never overwritten, so a
failed add or update leaves what was installed before it as it was (versions it wrote
before failing are complete and verified). Same id@version must mean the
same pack hash (also against bundled packs), and a feed whose newest version of a pack
is older than the newest installed one is refused (a rollback), as is installing an
older version unless asked for.

**Activation.** ``activate`` appends a ``kansa.event`` record (system ``kansa``) with
attributes ``kansa.event`` = ``pack.activated``/``pack.deactivated``, ``kansa.pack.id``,
``kansa.pack.version``, ``kansa.pack.hash``, ``kansa.pack.signer`` (``name+keyid`` of
the publisher key, or ``bundled``) and ``kansa.pack.signer_key`` (SHA-256 of the
verifier key). :func:`activations` rebuilds, from the ledger alone, every interval in
which a pack version was active, each end with its ledger index, so ``Ledger.prove``
gives a receipt for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kansa import _bounds
from kansa.errors import KansaError
from kansa.ledger.follower import Follower
from kansa.ledger.note import Verifier
from kansa.policy.bundled import bundled_packs
from kansa.policy.pack import Pack, PolicyError, _one_line, load_pack
from kansa.policy.signing import (
    SignedPack,
    check_statement,
    key_hash,
    publisher_ref,
    trusted_publishers,
    verify_signed_pack,
    write_atomic,
)
from kansa.records.attributes import (
    KANSA_EVENT,
    KANSA_PACK_HASH,
    KANSA_PACK_ID,
    KANSA_PACK_SIGNER,
    KANSA_PACK_SIGNER_KEY,
    KANSA_PACK_VERSION,
)
from kansa.records.model import UsageRecord, parse_ts

if TYPE_CHECKING:
    from kansa.api import Appended, Ledger

INDEX = "index.json"
FEED_FORMAT = 1
PACKS_DIR = "packs"
MAX_INDEX_BYTES = 1 << 20
MAX_PACK_BYTES = 4 << 20
ACTIVATED, DEACTIVATED = "pack.activated", "pack.deactivated"
BUNDLED = "bundled"


class FeedError(PolicyError):
    """A feed cannot be read: unreachable, missing files, or a malformed index."""


class InstallError(PolicyError):
    """A pack cannot be installed (or an installed pack cannot be used)."""


class DowngradeError(InstallError):
    """The pack version offered is older than the newest one installed."""


class ConflictError(InstallError):
    """Another pack, with another hash, already holds this id@version."""


class ActivationError(PolicyError):
    """A pack cannot be activated or deactivated, or an active pack cannot be used."""


# -- versions and paths ------------------------------------------------------------------


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Natural order of version strings: "2" < "10", "2025-12" < "2026-06" < "2026-06b"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", version) if part)


def pack_order(pack: Pack) -> tuple[date, tuple[tuple[int, int, str], ...]]:
    """Which version of an instrument is newer: the later start, then the later version."""
    return (pack.effective_from, version_key(pack.version))


def _segments(value: str, what: str) -> list[str]:
    parts = value.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise InstallError(f"{what} {value!r} cannot name a path (empty, '.' or '..' part)")
    return parts


def _pack_dir(home: Path, pack_id: str) -> Path:
    return home.joinpath(PACKS_DIR, *_segments(pack_id, "pack id"))


def installed_path(home: Path, pack_id: str, version: str) -> Path:
    """``$KANSA_HOME/packs/<id as path>/<version>.yaml``."""
    if "/" in version:
        raise InstallError(f"version {version!r} of {pack_id} contains '/'; cannot install it")
    _segments(version, "version")
    return _pack_dir(home, pack_id) / f"{version}.yaml"


def sig_path(pack_path: Path) -> Path:
    return pack_path.with_name(pack_path.name + ".sig")


# -- resolving packs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """A pack and where it came from: ``bundled``, ``installed`` or a ``file``."""

    pack: Pack
    origin: str
    path: Path | None = None
    signer: Verifier | None = None  # the trusted publisher key; None for bundled/unsigned

    @property
    def signer_ref(self) -> str:
        if self.origin == BUNDLED:
            return BUNDLED
        return publisher_ref(self.signer) if self.signer else "unsigned"


def load_signed(path: Path, trusted: Sequence[Verifier], origin: str) -> Resolved:
    """Read a pack file and its ``.sig`` and verify them against ``trusted``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InstallError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        sig: bytes | None = sig_path(path).read_bytes()
    except FileNotFoundError:
        sig = None
    except OSError as e:
        raise InstallError(f"{sig_path(path)}: cannot read: {e.strerror or e}") from None
    sp = verify_signed_pack(raw, sig, trusted, name=str(path))
    return Resolved(sp.pack, origin, path, sp.signer)


def _load_installed(home: Path, path: Path, trusted: Sequence[Verifier]) -> Resolved:
    r = load_signed(path, trusted, "installed")
    # a signed pack copied over another version's file must not pass for that version
    if path != installed_path(home, r.pack.id, r.pack.version):
        raise InstallError(f"{path} holds {r.pack.ref}, which is installed at "
                           f"{installed_path(home, r.pack.id, r.pack.version)}")
    return r


def scan_installed(home: Path) -> Iterator[tuple[Path, Resolved | KansaError]]:
    """Every installed pack file, verified, or the error that makes it unusable."""
    root = home / PACKS_DIR
    if not root.is_dir():
        return
    trusted = trusted_publishers(home)
    for f in sorted(root.rglob("*.yaml")):
        if not f.is_file():
            continue
        try:
            yield f, _load_installed(home, f, trusted)
        except KansaError as e:
            yield f, e


def installed_packs(home: Path) -> list[Resolved]:
    """Every installed pack; one that no longer verifies is an error, not skipped."""
    out = []
    for _, r in scan_installed(home):
        if isinstance(r, KansaError):
            raise r
        out.append(r)
    return out


def _installed_of(home: Path, pack_id: str) -> list[Resolved]:
    """Every installed version of one pack; one that does not verify is an error."""
    trusted = trusted_publishers(home)
    return [_load_installed(home, f, trusted)
            for f in sorted(_pack_dir(home, pack_id).glob("*.yaml")) if f.is_file()]


def _usable_installed(home: Path) -> list[Resolved]:
    """Installed packs that verify; the others are reported when a command touches them."""
    return [r for _, r in scan_installed(home) if isinstance(r, Resolved)]


def bundled_resolved() -> list[Resolved]:
    return [Resolved(p, BUNDLED, Path(p.source)) for p in bundled_packs()]


def _split_ref(ref: str) -> tuple[str, str | None]:
    pack_id, at, version = ref.partition("@")
    if not pack_id or (at and not version):
        raise PolicyError(f"{ref!r} is not a pack reference (ID, ID@VERSION or a file)")
    return pack_id, version or None


def resolve_pack(ref: str, home: Path) -> Resolved:
    """Resolve ``id@version``, ``id`` (the newest version) or a pack file path.

    Installed packs are verified against the trust store; a file with a ``.sig`` beside
    it is verified too, one without is ``unsigned``. The same id@version bundled and
    installed with different hashes is an error."""
    p = Path(ref)
    if ref.endswith((".yaml", ".yml")) or p.is_file():
        if sig_path(p).exists():
            return load_signed(p, trusted_publishers(home), "file")
        return Resolved(load_pack(p), "file", p)
    pack_id, version = _split_ref(ref)
    candidates = [r for r in bundled_resolved() if r.pack.id == pack_id]
    if version is not None:
        candidates = [r for r in candidates if r.pack.version == version]
        target = installed_path(home, pack_id, version)
        if target.exists():
            candidates.append(_load_installed(home, target, trusted_publishers(home)))
    else:
        candidates += _installed_of(home, pack_id)
    if not candidates:
        raise PolicyError(f"no pack {ref} among bundled packs or those installed in "
                          f"{home / PACKS_DIR}")
    by_version: dict[str, Resolved] = {}
    for r in candidates:
        other = by_version.get(r.pack.version)
        if other is not None and other.pack.hash != r.pack.hash:
            raise ConflictError(
                f"{r.pack.ref} exists twice with different hashes: {other.origin} "
                f"{other.pack.hash} and {r.origin} {r.pack.hash}")
        by_version.setdefault(r.pack.version, r)  # bundled first: it needs no key
    return max(by_version.values(), key=lambda r: pack_order(r.pack))


def find_pack(ref: str, home: Path) -> Pack:
    """The pack ``ref`` names (see :func:`resolve_pack`)."""
    return resolve_pack(ref, home).pack


# -- feeds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    pack: str
    version: str
    path: str
    sig: str

    @property
    def ref(self) -> str:
        return f"{self.pack}@{self.version}"


class Feed(Protocol):
    location: str

    def read(self, rel: str, limit: int) -> bytes: ...

    def close(self) -> None: ...


class DirFeed:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def read(self, rel: str, limit: int) -> bytes:
        p = self.root / rel
        try:
            with p.open("rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise FeedError(f"{p}: not found in the feed") from None
        except OSError as e:
            raise FeedError(f"{p}: cannot read: {e.strerror or e}") from None
        if len(data) > limit:
            raise FeedError(f"{p}: larger than {limit} bytes")
        return data

    def close(self) -> None:
        pass


class UrlFeed:
    """A feed over http(s). Timeouts bound every request; redirects are followed."""

    def __init__(self, base: str, timeout: float = 10.0) -> None:
        import httpx

        self.location = base
        self.base = base if base.endswith("/") else base + "/"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True,
                                    max_redirects=5)

    def read(self, rel: str, limit: int) -> bytes:
        import httpx

        url = self.base + rel
        try:
            with self._client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    what = "not found" if resp.status_code == 404 else "unexpected answer"
                    raise FeedError(f"{url}: {what} (HTTP {resp.status_code})")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FeedError(f"{url}: larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise FeedError(f"{url}: timed out (the feed did not answer in time)") from None
        except httpx.ConnectError as e:
            raise FeedError(f"{url}: cannot connect ({e})") from None
        except httpx.HTTPError as e:
            raise FeedError(f"{url}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self._client.close()


def open_feed(location: str | Path, *, timeout: float = 10.0) -> Feed:
    loc = str(location)
    if loc.startswith(("http://", "https://")):
        return UrlFeed(loc, timeout)
    if "://" in loc:
        raise FeedError(f"{loc}: a feed is a directory or an http(s) URL")
    root = Path(loc)
    if not root.is_dir():
        raise FeedError(f"{loc}: no such feed directory")
    return DirFeed(root)


_REL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@+-]*(/[A-Za-z0-9_][A-Za-z0-9._@+-]*)*$")


def _rel(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _REL_RE.match(value) or ".." in value.split("/"):
        raise FeedError(f"{where} must be a relative path inside the feed, got {value!r}")
    return value


def parse_index(data: bytes, where: str) -> list[FeedEntry]:
    try:
        doc = _bounds.loads(data)
    except _bounds.TooDeep as err:
        raise FeedError(f"{where}: {err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeedError(f"{where}: not valid JSON ({err})") from None
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise FeedError(f"{where}: not valid JSON ({_one_line(str(err))[:200]})") from None
    if not isinstance(doc, dict) or set(doc) != {"kansa_pack_feed", "packs"}:
        raise FeedError(f"{where}: a feed index is an object with exactly "
                        "'kansa_pack_feed' and 'packs'")
    if doc["kansa_pack_feed"] != FEED_FORMAT:
        raise FeedError(f"{where}: feed format {repr(doc['kansa_pack_feed'])[:80]} is not "
                        "supported "
                        f"(this kansa reads {FEED_FORMAT})")
    if not isinstance(doc["packs"], list):
        raise FeedError(f"{where}: 'packs' must be a list")
    entries = []
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(doc["packs"]):
        at = f"{where}: packs[{i}]"
        if not isinstance(e, dict) or set(e) != {"pack", "version", "path", "sig"}:
            raise FeedError(f"{at} must have exactly pack, version, path and sig")
        if not all(isinstance(e[k], str) and e[k] for k in ("pack", "version")):
            raise FeedError(f"{at}: pack and version must be non-empty strings")
        entry = FeedEntry(e["pack"], e["version"], _rel(e["path"], f"{at}.path"),
                          _rel(e["sig"], f"{at}.sig"))
        if (entry.pack, entry.version) in seen:
            raise FeedError(f"{at}: {entry.ref} is listed twice")
        seen.add((entry.pack, entry.version))
        entries.append(entry)
    return entries


def read_index(feed: Feed) -> list[FeedEntry]:
    return parse_index(feed.read(INDEX, MAX_INDEX_BYTES), f"{feed.location}/{INDEX}")


@dataclass(frozen=True)
class Fetched:
    """A pack from a feed whose signature verified."""

    entry: FeedEntry
    signed: SignedPack
    raw: bytes
    sig: bytes


def fetch(feed: Feed, entry: FeedEntry, trusted: Sequence[Verifier]) -> Fetched:
    """Download one pack and its signature and verify them; the index must agree."""
    raw = feed.read(entry.path, MAX_PACK_BYTES)
    try:
        sig: bytes | None = feed.read(entry.sig, MAX_PACK_BYTES)
    except FeedError as e:
        if "not found" not in str(e):
            raise
        sig = None  # a missing signature is "unsigned", said as such by the verifier
    signed = verify_signed_pack(raw, sig, trusted, name=f"{feed.location}/{entry.path}")
    if (signed.pack.id, signed.pack.version) != (entry.pack, entry.version):
        raise FeedError(f"{feed.location}/{INDEX} lists {entry.ref} at {entry.path}, "
                        f"but that file is {signed.pack.ref}")
    assert sig is not None
    return Fetched(entry, signed, raw, sig)


def publish(directory: Path) -> list[FeedEntry]:
    """Write ``index.json`` for every ``*.yaml`` with a ``.sig`` under ``directory``.

    Each signature's statement must match its pack (hash and bytes); the publisher's key
    need not be in this machine's trust store."""
    entries = []
    for f in sorted(directory.rglob("*.yaml")):
        rel = f.relative_to(directory).as_posix()
        if not sig_path(f).exists():
            raise FeedError(f"{f}: no signature {sig_path(f).name}; sign it with "
                            "'kansa packs sign' before publishing")
        pack = check_statement(f.read_bytes(), sig_path(f).read_bytes(), name=str(f))
        entries.append(FeedEntry(pack.id, pack.version, rel, rel + ".sig"))
    refs = [e.ref for e in entries]
    dupes = sorted({r for r in refs if refs.count(r) > 1})
    if dupes:
        raise FeedError(f"{directory}: {', '.join(dupes)} appear more than once")
    doc = {"kansa_pack_feed": FEED_FORMAT,
           "packs": [e.__dict__ for e in sorted(entries, key=lambda e: (e.pack, e.path))]}
    write_atomic(directory / INDEX, (json.dumps(doc, indent=2) + "\n").encode())
    return entries


# -- installing ------------------------------------------------------------------------------


@dataclass
class InstallResult:
    installed: list[Resolved] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # id@version already installed


def _newest_installed(installed: list[Resolved], pack_id: str) -> Resolved | None:
    mine = [r for r in installed if r.pack.id == pack_id]
    return max(mine, key=lambda r: pack_order(r.pack)) if mine else None


def _newest_pack(installed: list[Resolved], pack_id: str) -> Pack:
    r = _newest_installed(installed, pack_id)
    if r is None:
        raise InstallError(f"{pack_id} is not installed")
    return r.pack


def _plan(home: Path, fetched: list[Fetched], installed: list[Resolved], *,
          allow_older: bool) -> tuple[list[Fetched], list[str]]:
    """Which fetched packs to write; every conflict or downgrade is an error."""
    known = {(r.pack.id, r.pack.version): r for r in bundled_resolved() + installed}
    todo, unchanged = [], []
    for f in fetched:
        p = f.signed.pack
        have = known.get((p.id, p.version))
        if have is not None:
            if have.pack.hash != p.hash:
                raise ConflictError(
                    f"{p.ref} is already {have.origin} with hash {have.pack.hash}; the feed "
                    f"offers another pack under the same id@version ({p.hash})")
            unchanged.append(p.ref)
            continue
        newest = _newest_installed(installed, p.id)
        if newest is not None and pack_order(p) < pack_order(newest.pack) and not allow_older:
            raise DowngradeError(
                f"{p.ref} is older than the installed {newest.pack.ref}; refusing a downgrade")
        target = installed_path(home, p.id, p.version)
        if target.exists():
            raise InstallError(f"{target} exists but does not verify (run 'kansa packs list' "
                               f"to see why); remove it to install {p.ref} again")
        todo.append(f)
    return todo, unchanged


def _write(home: Path, todo: list[Fetched]) -> list[Resolved]:
    done = []
    for f in todo:
        p = f.signed.pack
        target = installed_path(home, p.id, p.version)
        wrote_sig = False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # the signature first: a pack file is only ever visible with its signature
            write_atomic(sig_path(target), f.sig)
            wrote_sig = True
            write_atomic(target, f.raw)
        except OSError as e:
            if wrote_sig:
                sig_path(target).unlink(missing_ok=True)
            raise InstallError(f"cannot install {p.ref} at {target}: {e.strerror or e}; "
                               "packs installed before are unchanged") from None
        done.append(Resolved(p, "installed", target, f.signed.signer))
    return done


def _select(entries: list[FeedEntry], ref: str | None, where: str) -> list[FeedEntry]:
    if ref is None:
        return entries
    pack_id, version = _split_ref(ref)
    chosen = [e for e in entries if e.pack == pack_id and version in (None, e.version)]
    if not chosen:
        raise FeedError(f"{where} offers no {ref}")
    return chosen


def add_from(home: Path, location: str | Path, ref: str | None = None, *,
             allow_older: bool = False, timeout: float = 10.0) -> InstallResult:
    """Install packs from a feed: all of them, every version of ``ID``, or ``ID@VERSION``.

    Everything chosen is downloaded and verified before anything is written."""
    feed = open_feed(location, timeout=timeout)
    try:
        entries = _select(read_index(feed), ref, feed.location)
        trusted = trusted_publishers(home)
        fetched = [fetch(feed, e, trusted) for e in entries]
    finally:
        feed.close()
    todo, unchanged = _plan(home, fetched, _usable_installed(home), allow_older=allow_older)
    return InstallResult(_write(home, sorted(todo, key=lambda f: pack_order(f.signed.pack))),
                         unchanged)


def update_from(home: Path, location: str | Path, *, timeout: float = 10.0) -> InstallResult:
    """Install the feed's versions of installed packs that are newer than those installed.

    A feed whose newest version of an installed pack is older than the newest installed
    one is refused (a rollback), as is one offering a different pack under an installed
    id@version."""
    installed = _usable_installed(home)
    ids = sorted({r.pack.id for r in installed})
    feed = open_feed(location, timeout=timeout)
    try:
        entries = [e for e in read_index(feed) if e.pack in ids]
        trusted = trusted_publishers(home)
        fetched = [fetch(feed, e, trusted) for e in entries]
    finally:
        feed.close()
    newest = {pid: pack_order(_newest_pack(installed, pid)) for pid in ids}
    for pack_id in ids:
        offered = [f.signed.pack for f in fetched if f.signed.pack.id == pack_id]
        if offered and max(pack_order(p) for p in offered) < newest[pack_id]:
            latest = max(offered, key=pack_order)
            raise DowngradeError(
                f"{location} offers {latest.ref} at most, older than the installed "
                f"{_newest_pack(installed, pack_id).ref}: refusing a rollback")
    have = {(r.pack.id, r.pack.version) for r in installed}
    # older versions the feed still lists are history, not offers; same versions are
    # checked for conflicting hashes
    newer = [f for f in fetched if pack_order(f.signed.pack) > newest[f.signed.pack.id]
             or (f.signed.pack.id, f.signed.pack.version) in have]
    todo, unchanged = _plan(home, newer, installed, allow_older=False)
    return InstallResult(_write(home, sorted(todo, key=lambda f: pack_order(f.signed.pack))),
                         unchanged)


# -- activation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """One interval in which a pack version was active, as the ledger records it."""

    pack_id: str
    version: str
    hash: str
    signer: str
    signer_key: str | None
    since: datetime
    index: int  # the activation record's ledger index
    record_id: str
    until: datetime | None = None
    until_index: int | None = None  # the deactivation record's index
    until_record_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.pack_id}@{self.version}"

    def active_at(self, when: datetime) -> bool:
        return self.since <= when and (self.until is None or when < self.until)


def activation_record(r: Resolved, event: str, *, at: datetime | None = None) -> UsageRecord:
    attrs: dict[str, Any] = {KANSA_EVENT: event, KANSA_PACK_ID: r.pack.id,
                             KANSA_PACK_VERSION: r.pack.version,
                             KANSA_PACK_HASH: r.pack.hash, KANSA_PACK_SIGNER: r.signer_ref}
    if r.signer is not None:
        attrs[KANSA_PACK_SIGNER_KEY] = key_hash(r.signer)
    return UsageRecord(system="kansa", kind="kansa.event", operation=event,
                       ts=at or datetime.now(UTC), attributes=attrs)


# most entries are calls: the store skips them without any JSON parsed
_EVENT_MARKS = (b'"pack.activated"', b'"pack.deactivated"')


def _events(follower: Follower, end: int) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, _ts, data in follower.read(end):
        e = json.loads(data)
        attrs = e.get("attributes") or {}
        if (e.get("kind") == "kansa.event" and e.get("system") == "kansa"
                and attrs.get(KANSA_EVENT) in (ACTIVATED, DEACTIVATED)):
            yield index, e


_REQUIRED = (KANSA_PACK_ID, KANSA_PACK_VERSION, KANSA_PACK_HASH, KANSA_PACK_SIGNER)


def _attrs(index: int, e: dict[str, Any]) -> dict[str, str]:
    a = e["attributes"]
    missing = [k for k in _REQUIRED if not isinstance(a.get(k), str)]
    if missing:
        raise ActivationError(f"ledger entry {index} is a {a['kansa.event']} record without "
                              f"{', '.join(missing)}: the activation history is unreadable")
    return {k: v for k, v in a.items() if isinstance(v, str)}


class ActivationHistory:
    """The activation intervals of one ledger, read incrementally through a
    :class:`~kansa.ledger.follower.Follower`: each :meth:`refresh` reads only the entries
    appended since the last, and the store hands over only those whose bytes name a pack
    event, so a long-lived reader stays current cheaply.

    An interval runs from its activation record's ``ts`` to its deactivation record's
    ``ts`` (exclusive). The log order says which record came first; ``activate`` and
    ``deactivate`` keep the times in that order too."""

    def __init__(self) -> None:
        self._follower: Follower | None = None
        self._done: list[Activation] = []
        self._open: dict[tuple[str, str], Activation] = {}

    @property
    def scanned(self) -> int:
        """Entries [0, scanned) have been read."""
        return 0 if self._follower is None else self._follower.position

    def refresh(self, ledger: Ledger) -> list[Activation]:
        """Every interval, in log order of activation; ``until`` is None while active."""
        store = ledger.log.store
        if self._follower is None or self._follower.store is not store:
            self._follower = Follower(store, match=_EVENT_MARKS, start=self.scanned)
        for index, e in _events(self._follower, store.size()):
            self._apply(index, e)
        return sorted(self._done + list(self._open.values()), key=lambda x: x.index)

    def _apply(self, index: int, e: dict[str, Any]) -> None:
        a = _attrs(index, e)
        key = (a[KANSA_PACK_ID], a[KANSA_PACK_VERSION])
        ts = parse_ts(e["ts"])
        if a[KANSA_EVENT] == ACTIVATED:
            if key in self._open:  # activate() refuses this; a hand-made one changes nothing
                return
            self._open[key] = Activation(key[0], key[1], a[KANSA_PACK_HASH],
                                         a[KANSA_PACK_SIGNER], a.get(KANSA_PACK_SIGNER_KEY),
                                         ts, index, str(e["id"]))
        elif key in self._open:
            start = self._open.pop(key)
            self._done.append(Activation(**{**start.__dict__, "until": ts, "until_index": index,
                                            "until_record_id": str(e["id"])}))


def activations(ledger: Ledger) -> list[Activation]:
    """Every activation interval in ``ledger`` (see :class:`ActivationHistory`)."""
    return ActivationHistory().refresh(ledger)


def active_at(ledger: Ledger, when: datetime | str) -> list[Activation]:
    """The pack versions active at instant ``when``, by the ledger's records."""
    t = parse_ts(when) if isinstance(when, str) else when.astimezone(UTC)
    return [a for a in activations(ledger) if a.active_at(t)]


def _when(history: list[Activation], at: datetime | None) -> datetime:
    """The new event's time: now, or ``at`` (imports, tests), never before the last event,
    so that the times of pack events follow their order in the log."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    last = max((t for a in history for t in (a.since, a.until) if t is not None), default=None)
    if last is not None and when < last:
        raise ActivationError(f"{when.isoformat()} is before the last pack activation event "
                              f"({last.isoformat()}); the history only moves forward")
    return when


def activate(ledger: Ledger, r: Resolved, *, at: datetime | None = None) -> Appended:
    """Record that pack version ``r`` is active from now (or ``at``).

    The record's time is what the activation claims; its ledger index, the signed
    checkpoints after it and their witnesses' cosignatures bound when it was written."""
    if r.origin == "file" and r.signer is None:
        raise ActivationError(f"{r.pack.ref} ({r.path}) is unsigned; only bundled packs and "
                              "packs signed by a trusted publisher can be activated")
    history = activations(ledger)
    for a in history:
        if a.until is None and (a.pack_id, a.version) == (r.pack.id, r.pack.version):
            raise ActivationError(f"{r.pack.ref} is already active (since "
                                  f"{a.since.isoformat()}, ledger entry {a.index})")
    return ledger.append(activation_record(r, ACTIVATED, at=_when(history, at)))


def deactivate(ledger: Ledger, ref: str, *, at: datetime | None = None) -> list[Appended]:
    """Record that ``ID@VERSION`` (or every active version of ``ID``) is no longer active."""
    pack_id, version = _split_ref(ref)
    history = activations(ledger)
    current = [a for a in history if a.until is None and a.pack_id == pack_id
               and version in (None, a.version)]
    if not current:
        raise ActivationError(f"{ref} is not active")
    when = _when(history, at)
    out = []
    for a in current:
        attrs: dict[str, Any] = {KANSA_EVENT: DEACTIVATED, KANSA_PACK_ID: a.pack_id,
                                 KANSA_PACK_VERSION: a.version, KANSA_PACK_HASH: a.hash,
                                 KANSA_PACK_SIGNER: a.signer}
        if a.signer_key:
            attrs[KANSA_PACK_SIGNER_KEY] = a.signer_key
        out.append(ledger.append(UsageRecord(
            system="kansa", kind="kansa.event", operation=DEACTIVATED, ts=when,
            attributes=attrs)))
    return out


def active_packs(home: Path, ledger: Ledger) -> list[Pack]:
    """The packs active now, resolved and checked against the hash that was activated."""
    out = []
    for a in activations(ledger):
        if a.until is not None:
            continue
        try:
            pack = find_pack(a.ref, home)
        except KansaError as e:
            raise ActivationError(f"active pack {a.ref} (ledger entry {a.index}) cannot be "
                                  f"used: {e}") from None
        if pack.hash != a.hash:
            raise ActivationError(
                f"active pack {a.ref} (ledger entry {a.index}) was activated with hash "
                f"{a.hash}, but the pack found now has {pack.hash}")
        out.append(pack)
    return out

