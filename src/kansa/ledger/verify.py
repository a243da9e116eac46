"""Verification of a whole log, with nothing but the log's verifier key.

:func:`verify_directory` checks a C2SP tlog-tiles export; :func:`verify_store` checks a
live store. Both recompute every leaf hash from the entries and every tile, level by
level, from the hashes below it, compare each with the stored tile byte for byte, and
compare the root with the signed checkpoint. Nothing the checked data says about itself
is trusted: not the metadata file, not the stored tiles (they are only compared), not
the checkpoint before its signature verifies.

Every problem found is collected (up to :data:`MAX_PROBLEMS`) and raised at the end as
one :class:`~kansa.errors.VerificationError` whose messages say what is wrong and where,
by tlog-tiles path (``tile/0/001``, ``tile/entries/000``) and entry index.

Cost: two SHA-256 per entry (its leaf hash and, on average, one interior node), plus
an Ed25519 verification and a short consistency proof per stored checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kansa.errors import (
    FormatError,
    KansaError,
    ProofError,
    SignatureError,
    StorageError,
    VerificationError,
)
from kansa.ledger import merkle
from kansa.ledger.export import CHECKPOINT_FILE, ENTRY_BATCH, cosigned_note
from kansa.ledger.files import (
    MAX_BUNDLE_BYTES,
    MAX_CHECKPOINT_BYTES,
    MAX_TILE_BYTES,
    read_bounded,
)
from kansa.ledger.merkle import EMPTY_ROOT, HASH_SIZE, node_hash
from kansa.ledger.note import (
    Checkpoint,
    Note,
    SignedCheckpoint,
    Verifier,
    parse_note,
    verify_checkpoint,
    verify_cosignature,
)
from kansa.ledger.storage import EntryRow, Store, StoredCheckpoint
from kansa.ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    entries_path,
    tile_path,
    tile_width_at,
    tiles_for_size,
)

MAX_PROBLEMS = 100
SAME_KIND_LISTED = 3  # root or consistency failures named one by one before summarising

Progress = Callable[[int, int], None]  # (entries done, entries in total)
TileSource = Callable[[int, int, int], bytes | None]
# (level, index, width) -> the stored tile's first ``width`` hashes, or None once the
# source has reported why it cannot give them (missing, too short, wrong width)

_ZERO_HASH = bytes(HASH_SIZE)
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class VerifyReport:
    origin: str
    size: int  # tree size of the (latest) signed checkpoint
    root: bytes  # its root hash, recomputed from the entries
    entries_checked: int
    tiles_checked: int  # Merkle tree tiles compared (entry bundles not counted)
    checkpoints_checked: int
    cosignatures_checked: int  # cosignatures verified with a witness key given
    seconds: float
    cosignatures_unverified: int = 0  # well-formed lines by witnesses whose key was not given

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    @property
    def entries_per_second(self) -> float:
        return self.entries_checked / self.seconds if self.seconds > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"{self.origin} at size {self.size} (root {self.root_hex}): "
            f"{self.entries_checked} entries, {self.tiles_checked} tiles, "
            f"{self.checkpoints_checked} checkpoints, {self.cosignatures_checked} "
            f"cosignatures verified in {self.seconds:.2f} s"
            + (
                f" ({self.cosignatures_unverified} cosignatures by witnesses whose key was "
                f"not given were not verified: pass --witness KEY)"
                if self.cosignatures_unverified
                else ""
            )
        )


class _Problems:
    """Collects findings; keeps the first ``cap`` and counts the rest."""

    def __init__(self, cap: int = MAX_PROBLEMS) -> None:
        self.items: list[str] = []
        self.dropped = 0
        self._cap = cap

    def add(self, message: str) -> None:
        if len(self.items) < self._cap:
            self.items.append(message)
        else:
            self.dropped += 1

    def __len__(self) -> int:
        return len(self.items) + self.dropped

    def raise_if_any(self) -> None:
        if self.items:
            more = [f"... and {self.dropped} more problems"] if self.dropped else []
            raise VerificationError(self.items + more)


def _summarise(problems: _Problems, messages: list[str], what: str) -> None:
    """Name the first few failures of one kind; count the rest in one line."""
    for m in messages[:SAME_KIND_LISTED]:
        problems.add(m)
    if len(messages) > SAME_KIND_LISTED:
        problems.add(f"... and {len(messages) - SAME_KIND_LISTED} more {what}")


# --- Merkle tree arithmetic ------------------------------------------------------------


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)), for each entry."""
    sha = _sha256
    return [sha(b"\x00" + e).digest() for e in entries]


def reduce_tile(hashes: Sequence[bytes]) -> bytes:
    """Root of a full tile: tlog-tiles, "a tile represents the entire subtree of height 8
    with its hashes as the leaves"; pairs are hashed level by level, HASH(0x01 || l || r)."""
    sha = _sha256
    level = list(hashes)
    while len(level) > 1:
        level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def fold_right(parts: Sequence[bytes]) -> bytes:
    """MTH of a tree given the perfect subtrees of its right edge, largest (leftmost)
    first. RFC 9162 splits D[n] at the largest power of two k < n, which is exactly the
    first perfect subtree, so MTH = HASH(0x01 || P1 || MTH(rest)), folded from the right."""
    if not parts:
        return EMPTY_ROOT
    root = parts[-1]
    for p in reversed(parts[:-1]):
        root = node_hash(p, root)
    return root


def _push(stack: list[tuple[int, bytes]], h: bytes) -> None:
    """Append one hash to a stack of perfect subtrees (height, hash), merging equal
    heights: the stack always holds the binary decomposition of what was pushed."""
    height = 0
    while stack and stack[-1][0] == height:
        h = node_hash(stack.pop()[1], h)
        height += 1
    stack.append((height, h))


def _prefix_parts(hashes: Sequence[bytes], offsets: Sequence[int]) -> dict[int, list[bytes]]:
    """For each offset o (ascending, 1 <= o <= len(hashes)), the perfect subtrees of
    hashes[:o], largest first; one pass, about one node hash per input hash."""
    out: dict[int, list[bytes]] = {}
    stack: list[tuple[int, bytes]] = []
    wanted = iter(offsets)
    nxt = next(wanted, None)
    for i, h in enumerate(hashes):
        if nxt is None:
            break
        _push(stack, h)
        while nxt == i + 1:
            out[nxt] = [x for _, x in stack]
            nxt = next(wanted, None)
    return out


# --- the tree checker (shared by directory and store) ----------------------------------


class _TreeChecker:
    """Rebuilds every tile of a tree of ``size`` leaves from its leaf hashes, fed one entry
    bundle at a time, and compares each tile with the stored one.

    Only the current, not yet full tile of each level is held in memory. Hashes passed up
    are always those recomputed from the entries, so the final root is the root *of the
    entries*, whatever the stored tiles say. Where an entry is missing, the stored leaf
    hash stands in for it (the gap is reported) so that one deleted entry does not make
    every hash above it look wrong as well.

    ``root_sizes``: tree sizes whose root is wanted (``roots``), e.g. checkpoint sizes.
    """

    def __init__(
        self, size: int, stored: TileSource, problems: _Problems, root_sizes: Iterable[int]
    ) -> None:
        self.size = size
        self._stored = stored
        self._problems = problems
        wanted = sorted({size, *(s for s in root_sizes if 0 <= s <= size)})
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT} if 0 in wanted else {}
        self._wanted = [s for s in wanted if s > 0]
        self._next_wanted = 0
        # per level L >= 1: hashes of its current tile, whether each one's subtree had a
        # problem, its perfect-subtree stack, and how many full tiles it has had
        self._pending: list[list[bytes]] = [[]]
        self._child_bad: list[list[bool]] = [[]]
        self._stacks: list[list[tuple[int, bytes]]] = [[]]
        self._full: list[int] = [0]
        self._cache: tuple[tuple[int, int, int], bytes | None] | None = None
        self.tiles_checked = 0
        self.bundles_checked = 0

    # -- stored tiles

    def stored(self, level: int, index: int, width: int) -> bytes | None:
        """The stored tile (asked for once: the source reports problems as it answers)."""
        key = (level, index, width)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._stored(level, index, width))
        return self._cache[1]

    # -- level 0

    def check_bundle(self, index: int, hashes: list[bytes], missing: Sequence[int] = ()) -> None:
        """Leaf hashes recomputed from entry bundle ``index``; ``missing`` lists offsets
        whose entry is absent (already reported), for which ``hashes`` holds anything."""
        width = len(hashes)
        stored = self.stored(0, index, width)
        self.tiles_checked += 1
        self.bundles_checked += 1
        bad = False
        if missing or stored is None or stored != b"".join(hashes):
            bad = True
            self._level0_problems(index, hashes, stored, missing)
        start = index * TILE_WIDTH
        offsets = self._offsets_within(start, start + width)
        if offsets:
            edge = [h for stack in reversed(self._stacks[1:]) for _, h in stack]
            for o, parts in _prefix_parts(hashes, [o for o in offsets if o < TILE_WIDTH]).items():
                self.roots[start + o] = fold_right(edge + parts)
        if width == TILE_WIDTH:
            self._push_up(1, reduce_tile(hashes), bad)
            if TILE_WIDTH in offsets:  # the root right after a full tile: its edge only
                self.roots[start + TILE_WIDTH] = fold_right(
                    [h for stack in reversed(self._stacks[1:]) for _, h in stack]
                )

    def _offsets_within(self, lo: int, hi: int) -> list[int]:
        """Wanted sizes s with lo < s <= hi, as offsets s - lo (sizes arrive in order)."""
        out = []
        while self._next_wanted < len(self._wanted) and self._wanted[self._next_wanted] <= hi:
            s = self._wanted[self._next_wanted]
            if s > lo:
                out.append(s - lo)
            self._next_wanted += 1
        return out

    def _level0_problems(
        self, index: int, hashes: list[bytes], stored: bytes | None, missing: Sequence[int]
    ) -> None:
        width = len(hashes)
        start = index * TILE_WIDTH
        path = tile_path(0, index, width)
        theirs = _split(stored) if stored is not None else None
        for i in missing:  # a stand-in for a missing entry: the stored hash, else zeros
            hashes[i] = theirs[i] if theirs is not None else _ZERO_HASH
        if theirs is None:
            return
        gone = set(missing)
        where = {h: j for j, h in enumerate(theirs)}
        for i, (ours, stored_hash) in enumerate(zip(hashes, theirs, strict=True)):
            if i in gone or ours == stored_hash:
                continue
            j = where.get(ours)
            if j is not None:
                self._problems.add(
                    f"{path}: hash {i} differs from the hash of entry {start + i}, which is "
                    f"hash {j} (entries {start + i} and {start + j} reordered?)"
                )
            else:
                self._problems.add(
                    f"{path}: hash {i} differs from the hash of entry {start + i} "
                    f"(entry or tile altered)"
                )

    # -- levels 1 and up

    def _push_up(self, level: int, h: bytes, child_bad: bool) -> None:
        """A full tile's root becomes the next hash of the tile one level up."""
        if level == len(self._pending):
            self._pending.append([])
            self._child_bad.append([])
            self._stacks.append([])
            self._full.append(0)
        self._pending[level].append(h)
        self._child_bad[level].append(child_bad)
        _push(self._stacks[level], h)
        if len(self._pending[level]) == TILE_WIDTH:
            bad = self._check_upper(level, self._full[level])
            [(_, root)] = self._stacks[level]  # 256 hashes merge into one subtree
            self._full[level] += 1
            self._pending[level], self._child_bad[level], self._stacks[level] = [], [], []
            self._push_up(level + 1, root, bad)

    def _check_upper(self, level: int, index: int) -> bool:
        """Compare tile (level, index) with the hashes recomputed below; True if it or
        anything under it had a problem. A mismatch at a hash whose subtree already had
        one is not reported again."""
        ours = self._pending[level]
        child_bad = self._child_bad[level]
        stored = self.stored(level, index, len(ours))
        self.tiles_checked += 1
        if stored is None:
            return True
        if stored == b"".join(ours):
            return any(child_bad)
        path = tile_path(level, index, len(ours))
        for i, (h, theirs) in enumerate(zip(ours, _split(stored), strict=True)):
            if h != theirs and not child_bad[i]:
                child = tile_path(level - 1, index * TILE_WIDTH + i)
                self._problems.add(
                    f"{path}: hash {i} differs from the root of {child} recomputed from "
                    f"the entries (tile altered)"
                )
        return True

    def finish(self) -> bytes:
        """Check the partial tiles left at every level; return the root of the tree."""
        for level in range(1, len(self._pending)):
            if self._pending[level]:
                self._check_upper(level, self._full[level])
        if self.size == 0:
            return EMPTY_ROOT
        return self.roots[self.size]


def _split(tile: bytes) -> list[bytes]:
    return [tile[i : i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]


def _bundle_count(size: int) -> int:
    return (size + TILE_WIDTH - 1) // TILE_WIDTH


# --- cosignatures and checkpoints held elsewhere ------------------------------------------


def _check_cosignatures(
    note: Note, log_key: Verifier, witnesses: Sequence[Verifier], where: str,
    problems: _Problems,
) -> tuple[int, int]:
    """(verified, unverified) cosignatures on a log-signed note. Only a cosignature that
    verifies under a witness key given is counted as checked; one by a given witness
    that does not verify is a problem; lines by other keys are only counted as
    unverified (a line anyone can append proves nothing)."""
    by_key = {(w.name, w.key_id): w for w in witnesses}
    verified = unverified = 0
    for s in note.signatures:
        if s.name == log_key.name and s.key_id == log_key.key_id:
            continue
        w = by_key.get((s.name, s.key_id))
        if w is None:
            unverified += 1
            continue
        try:
            verify_cosignature(Note(note.text, (s,)), w)
            verified += 1
        except SignatureError as e:
            problems.add(f"{where}: {e}")
    return verified, unverified


def _parse_known(
    known: Sequence[bytes | str], verifier: Verifier, problems: _Problems
) -> list[Checkpoint]:
    """Checkpoints held outside what is verified (an auditor's copy, $KANSA_HOME's,
    receipts): each must carry the log's valid signature to count."""
    good = []
    for n, data in enumerate(known, 1):
        try:
            good.append(verify_checkpoint(data, verifier).checkpoint)
        except KansaError as e:
            problems.add(f"known checkpoint #{n}: {e}")
    return good


def _compare_known(
    known: Sequence[Checkpoint], roots: dict[int, bytes], size: int, what: str,
    problems: _Problems,
) -> None:
    """A checkpoint the log signed earlier must be a prefix of what is verified now:
    its root must be the root of the first ``cp.size`` entries (a consistency check
    by recomputation, stronger than a proof from stored tiles). One larger than the
    verified tree means history was rolled back; another root at a size means a fork."""
    for cp in known:
        where = f"known checkpoint of size {cp.size}"
        if cp.size > size:
            problems.add(
                f"{where}: {what} holds only {size} entries: the log was rolled back from "
                f"size {cp.size} to {size} (restored from an old backup, or entries, tiles "
                f"and checkpoints deleted); the entries {size}..{cp.size - 1} that the log "
                f"signed are gone"
            )
        elif roots.get(cp.size) != cp.root:
            problems.add(
                f"{where}: root {cp.root.hex()} differs from the root of the first "
                f"{cp.size} entries of {what} (the log forked: two different signed "
                f"histories)"
            )


# --- exported directories ---------------------------------------------------------------


def _inventory(directory: Path) -> set[str]:
    """Every file under tile/, as a '/'-separated path relative to the directory."""
    found: set[str] = set()
    for dirpath, _, filenames in os.walk(directory / "tile"):
        rel = Path(dirpath).relative_to(directory).as_posix()
        found.update(f"{rel}/{name}" for name in filenames)
    return found


def _base(path: str) -> str:
    """tile/0/001.p/17 -> tile/0/001 (the tile without its partial-width suffix)."""
    head, sep, _ = path.partition(".p/")
    return head if sep else path


class _Directory:
    """Reads an export's files, reporting missing, misnamed and malformed ones."""

    def __init__(self, root: Path, size: int, problems: _Problems) -> None:
        self.root = root
        self.size = size
        self.problems = problems
        self.files = _inventory(root)
        self.named: set[str] = set()  # found files already named in a report
        self._by_base: dict[str, list[str]] = {}
        for f in sorted(self.files):
            self._by_base.setdefault(_base(f), []).append(f)

    def read(self, rel: str, what: str, width: int) -> bytes | None:
        if rel in self.files:
            limit = MAX_BUNDLE_BYTES if what == "entries" else MAX_TILE_BYTES
            try:
                return read_bounded(self.root / rel, limit, within=self.root)
            except OSError as e:
                self.problems.add(f"{rel}: unreadable ({e.strerror})")
                return None
            except FormatError as e:
                self.problems.add(f"{rel}: {_after_path(e)}")
                return None
        others = [f for f in self._by_base.get(_base(rel), []) if f != rel]
        if others:
            self.named.update(others)
            self.problems.add(
                f"{rel}: missing; found {', '.join(others)} instead (wrong width: a tree of "
                f"size {self.size} needs {width} {what} here)"
            )
        else:
            self.problems.add(f"{rel}: missing")
        return None

    def tile(self, level: int, index: int, width: int) -> bytes | None:
        rel = tile_path(level, index, width)
        data = self.read(rel, "hashes", width)
        if data is not None and len(data) != width * HASH_SIZE:
            self.problems.add(
                f"{rel}: {len(data)} bytes, expected {width * HASH_SIZE} ({width} hashes; "
                f"tile truncated or padded)"
            )
            return None
        return data

    def unexpected(self) -> list[str]:
        expected = {tile_path(lv, ix, w) for lv, ix, w in tiles_for_size(self.size)}
        expected.update(
            entries_path(b, tile_width_at(0, b, self.size))
            for b in range(_bundle_count(self.size))
        )
        return sorted(self.files - expected - self.named)


def _after_path(e: FormatError) -> str:
    """read_bounded's message without its leading absolute path (we name the file)."""
    head, sep, tail = str(e).partition(": ")
    return tail if sep else head


def _bundle_hashes(data: bytes, rel: str, problems: _Problems) -> list[bytes] | None:
    """Leaf hashes of every entry in a bundle. tlog-tiles: "Entry bundles are sequences of
    big-endian uint16 length-prefixed log entries. Each entry in a bundle hashes to the
    corresponding entry in the corresponding 'level 0' Merkle Tree tile"."""
    sha = _sha256
    out: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        if pos + 2 > n:
            problems.add(f"{rel}: ends inside the length prefix of entry {len(out)}")
            return None
        start = pos + 2
        pos = start + ((data[pos] << 8) | data[pos + 1])
        if pos > n:
            problems.add(f"{rel}: entry {len(out)} runs past the end of the bundle")
            return None
        out.append(sha(b"\x00" + data[start:pos]).digest())
    return out


def _count_problem(
    rel: str, got: list[bytes], width: int, stored: bytes | None, start: int
) -> str:
    """Why a bundle holds the wrong number of entries, and where it first goes wrong."""
    guess = "entry deleted?" if len(got) < width else "entry inserted?"
    msg = f"{rel}: holds {len(got)} entries, the checkpoint needs {width} ({guess})"
    if stored is not None:
        theirs = _split(stored)
        first = next(
            (i for i, (a, b) in enumerate(zip(got, theirs, strict=False)) if a != b),
            min(len(got), len(theirs)),
        )
        msg += (
            f"; entry {start + first} is the first that does not match "
            f"{tile_path(0, start // TILE_WIDTH, width)}"
        )
    return msg


def _directory_checkpoint(
    directory: Path, verifier: Verifier, problems: _Problems
) -> tuple[SignedCheckpoint | None, bool]:
    """The export's checkpoint and whether its signature verified. An unverified but
    well-formed checkpoint is still returned (its problem reported) so that the tiles
    can be checked against what it claims."""
    path = directory / CHECKPOINT_FILE
    try:
        data = read_bounded(path, MAX_CHECKPOINT_BYTES, within=directory)
    except FileNotFoundError:
        problems.add(f"{CHECKPOINT_FILE}: missing")
        return None, False
    except OSError as e:
        problems.add(f"{CHECKPOINT_FILE}: unreadable ({e.strerror})")
        return None, False
    except FormatError as e:
        problems.add(f"{CHECKPOINT_FILE}: {_after_path(e)}")
        return None, False
    try:
        return verify_checkpoint(data, verifier), True
    except KansaError as e:
        problems.add(f"{CHECKPOINT_FILE}: {e}")
    try:
        note = parse_note(data)
        return SignedCheckpoint(Checkpoint.parse_body(note.text), note), False
    except FormatError as e:
        problems.add(f"{CHECKPOINT_FILE}: malformed ({e})")
        return None, False


def verify_directory(
    directory: Path,
    verifier: Verifier,
    *,
    progress: Progress | None = None,
    known_checkpoints: Sequence[bytes | str] = (),
    witnesses: Sequence[Verifier] = (),
) -> VerifyReport:
    """Verify an exported tlog-tiles directory against the log's verifier key alone.

    ``known_checkpoints`` are checkpoints of this log held elsewhere (an auditor's copy
    from an earlier audit): each must be a prefix of the export, its root the root of
    the export's first entries. ``witnesses`` are the keys whose cosignatures count.
    Raises :class:`VerificationError` listing every problem found; returns a report.
    """
    started = time.perf_counter()
    directory = Path(directory)
    problems = _Problems()
    if not directory.is_dir():
        raise VerificationError([f"{directory}: not a directory"])
    known = _parse_known(known_checkpoints, verifier, problems)
    signed, _ = _directory_checkpoint(directory, verifier, problems)
    if signed is None:
        problems.raise_if_any()
        raise AssertionError("unreachable: a missing checkpoint is always a problem")
    cp = signed.checkpoint
    files = _Directory(directory, cp.size, problems)
    checker = _TreeChecker(cp.size, files.tile, problems, [cp.size, *(k.size for k in known)])
    for b in range(_bundle_count(cp.size)):
        width = tile_width_at(0, b, cp.size)
        rel = entries_path(b, width)
        data = files.read(rel, "entries", width)
        hashes = _bundle_hashes(data, rel, problems) if data is not None else None
        if hashes is not None and len(hashes) != width:
            stored = checker.stored(0, b, width)
            problems.add(_count_problem(rel, hashes, width, stored, b * TILE_WIDTH))
            hashes = None
        if hashes is None:
            checker.check_bundle(b, [_ZERO_HASH] * width, range(width))
        else:
            checker.check_bundle(b, hashes)
        if progress is not None:
            progress(min(cp.size, (b + 1) * TILE_WIDTH), cp.size)
    root = checker.finish()
    if root != cp.root:
        problems.add(
            f"{CHECKPOINT_FILE}: root hash {cp.root.hex()} of size {cp.size} differs from "
            f"the root {root.hex()} recomputed from the entries (entries altered?)"
        )
    for rel in files.unexpected():
        problems.add(f"{rel}: unexpected file (not part of a tree of size {cp.size})")
    _compare_known(known, checker.roots, cp.size, "the export", problems)
    verified, unverified = _check_cosignatures(
        signed.note, verifier, witnesses, CHECKPOINT_FILE, problems
    )
    problems.raise_if_any()
    return VerifyReport(
        origin=cp.origin,
        size=cp.size,
        root=root,
        entries_checked=cp.size,
        tiles_checked=checker.tiles_checked,
        checkpoints_checked=1 + len(known),
        cosignatures_checked=verified,
        cosignatures_unverified=unverified,
        seconds=time.perf_counter() - started,
    )


# --- live stores -----------------------------------------------------------------------


class _StoredTiles:
    """Tiles of a store, for the tree checker and for consistency proofs.

    As a :class:`merkle.HashReader` it remembers every subtree hash it computes, so the
    proofs between many consecutive checkpoints cost about one hash per node in all.
    """

    _MEMO_LIMIT = 1 << 20
    _TILE_LIMIT = 1 << 12

    def __init__(self, store: Store, problems: _Problems) -> None:
        self.store = store
        self.problems = problems
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._memo: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int, width: int) -> bytes | None:
        """TileSource: the stored tile's first ``width`` hashes. A stored tile may be
        longer than ``width`` (the log grew while we read), never shorter."""
        path = tile_path(level, index, width)
        try:
            data = self.store.read_tile(level, index)
        except (StorageError, TypeError) as e:
            # TypeError: Store.read_tile calls bytes() on whatever the row holds, and SQLite
            # lets a BLOB column hold TEXT; a corrupt row is a finding, not a crash
            self.problems.add(f"{path}: unreadable in the store ({e})")
            return None
        if data is None:
            self.problems.add(f"{path}: missing from the store")
            return None
        if len(data) % HASH_SIZE or len(data) < width * HASH_SIZE:
            self.problems.add(
                f"{path}: the store holds {len(data)} bytes at level {level}, index {index}; "
                f"the tree needs {width} hashes ({width * HASH_SIZE} bytes)"
            )
            return None
        return data[: width * HASH_SIZE]

    def _raw_tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        data = self._tiles.get(key)
        if data is None:
            try:
                data = self.store.read_tile(level, index)
            except (StorageError, TypeError):  # reported by tile() already
                raise ProofError(f"{tile_path(level, index)} is unreadable in the store") from None
            if data is None:
                raise ProofError(f"{tile_path(level, index)} is missing from the store")
            if len(self._tiles) >= self._TILE_LIMIT:
                self._tiles.clear()
            self._tiles[key] = data
        return data

    def subtree(self, level: int, index: int) -> bytes:
        """merkle.HashReader: MTH of the 2**level leaves from index * 2**level. A hash of
        tree level 8*L is hash (index % 256) of tile (L, index // 256); levels between
        are rebuilt from the two halves, as tlog-tiles says tiles are meant to be used."""
        key = (level, index)
        h = self._memo.get(key)
        if h is not None:
            return h
        if level % TILE_HEIGHT == 0:
            tile_index, offset = divmod(index, TILE_WIDTH)
            data = self._raw_tile(level // TILE_HEIGHT, tile_index)
            h = data[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
            if len(h) != HASH_SIZE:
                raise ProofError(
                    f"{tile_path(level // TILE_HEIGHT, tile_index)} in the store is too "
                    f"short to hold hash {offset}"
                )
        else:
            left = self.subtree(level - 1, 2 * index)
            h = node_hash(left, self.subtree(level - 1, 2 * index + 1))
        if len(self._memo) >= self._MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = h
        return h


def _store_checkpoints(
    store: Store, verifier: Verifier, rows: Sequence[StoredCheckpoint], size: int,
    problems: _Problems, witnesses: Sequence[Verifier] = (),
) -> tuple[list[Checkpoint], int, int]:
    """Every stored checkpoint whose signature verifies (in size order), and how many
    stored cosignatures verified, and how many are by witnesses whose key was not given."""
    good: list[Checkpoint] = []
    cosignatures = unverified = 0
    for row in rows:
        where = f"checkpoint at size {row.size}"
        try:
            cp = verify_checkpoint(row.note, verifier).checkpoint
        except KansaError as e:
            problems.add(f"{where}: {e} (forged or altered checkpoint?)")
            continue
        if cp.size != row.size:
            problems.add(f"{where}: the stored note is a checkpoint of size {cp.size}")
            continue
        if cp.size > size:
            problems.add(
                f"{where}: signs {cp.size} entries but the store's log size is {size} "
                f"(entries or log state deleted?)"
            )
            continue
        good.append(cp)
        for line in store.cosignatures(row.size):
            try:
                note = cosigned_note(row.note, [line])
            except FormatError as e:
                problems.add(f"{where}: stored cosignature {line!r} is malformed ({e})")
                continue
            v, u = _check_cosignatures(note, verifier, witnesses, where, problems)
            cosignatures += v
            unverified += u
    return good, cosignatures, unverified


def _checkpoint_rows(
    store: Store, rows: Sequence[StoredCheckpoint], kept: StoredCheckpoint | None,
    problems: _Problems,
) -> None:
    """Deleted checkpoint rows. Each row carries its number in signing order: numbers
    must run 1, 2, 3, ... with no gap, and the checkpoint kept outside the store says how
    many the log had signed up to its size. A stored cosignature for a size with no
    checkpoint row shows that row was deleted too. (Rows deleted from the top of a store
    with no kept checkpoint, and renumbered, cannot be told from a log that signed less.)"""
    by_size = {r.size for r in rows}
    numbered = [r for r in rows if r.seq is not None]
    expect = 1
    for r in numbered:
        assert r.seq is not None
        if r.seq > expect:
            gone = r.seq - expect
            problems.add(
                f"checkpoints: {gone} signed checkpoint(s) numbered {expect}..{r.seq - 1} "
                f"are missing from the store, just below size {r.size} (rows deleted?)"
            )
        elif r.seq < expect:
            problems.add(
                f"checkpoint at size {r.size}: numbered {r.seq} but follows checkpoint "
                f"number {expect - 1} (rows renumbered or inserted?)"
            )
        expect = r.seq + 1
    if kept is not None and kept.seq is not None:
        below = [r for r in numbered if r.size <= kept.size]
        have = below[-1].seq if below else 0
        assert have is not None
        if have < kept.seq and kept.size in by_size:
            problems.add(
                f"checkpoints: the log signed {kept.seq} checkpoints up to size {kept.size} "
                f"(kept outside the store), the store numbers only {have} (rows deleted "
                f"and renumbered?)"
            )
        elif have > kept.seq:
            problems.add(
                f"checkpoints: the store numbers {have} checkpoints up to size {kept.size}, "
                f"the log signed only {kept.seq} (rows inserted?)"
            )
    for cs in store.cosigned_sizes():
        if cs not in by_size:
            problems.add(
                f"checkpoint at size {cs}: missing from the store, though witness "
                f"cosignatures for it are stored (checkpoint row deleted?)"
            )


def _known_checkpoints(
    store: Store, verifier: Verifier, known: Sequence[bytes | str], size: int,
    problems: _Problems,
) -> list[Checkpoint]:
    """Checkpoints held outside the store (receipts, exports, witnesses): each must verify,
    be stored, and agree with the stored one of its size."""
    good = []
    for n, data in enumerate(known, 1):
        try:
            cp = verify_checkpoint(data, verifier).checkpoint
        except KansaError as e:
            problems.add(f"known checkpoint #{n}: {e}")
            continue
        where = f"known checkpoint of size {cp.size}"
        row = store.checkpoint_at(cp.size)
        if row is None:
            problems.add(f"{where}: missing from the store (checkpoint row deleted?)")
        else:
            try:
                stored = Checkpoint.parse_body(parse_note(row.note).text)
                if stored.root != cp.root:
                    problems.add(
                        f"{where}: the store's checkpoint of that size has another root "
                        f"(two signed checkpoints disagree)"
                    )
            except FormatError:
                pass  # a malformed stored row is reported by _store_checkpoints
        if cp.size > size:
            problems.add(
                f"{where}: the store holds only {size} entries: the store was rolled back "
                f"from size {cp.size} to {size} (restored from an old backup, or rows "
                f"deleted)"
            )
        else:
            good.append(cp)
    return good


RowCheck = Callable[[Sequence[EntryRow]], Iterable[str]]
# what the rows say beside the entry bytes (time, erasure group, id, attachments) checked
# against the entry by the layer that knows what entries mean; one problem per message


def _store_entries(store: Store, checker: _TreeChecker, size: int, problems: _Problems,
                   progress: Progress | None, row_check: RowCheck | None = None) -> None:
    """Feed every entry, bundle by bundle, to the checker; report missing rows."""
    pos = 0
    while pos < size:
        end = min(size, pos + ENTRY_BATCH)
        data, missing = _entry_batch(store, pos, end, problems, row_check)
        hashes = leaf_hashes(data)
        for off in range(0, end - pos, TILE_WIDTH):
            b = (pos + off) // TILE_WIDTH
            width = tile_width_at(0, b, size)
            gone = [m - off for m in missing if off <= m < off + width]
            checker.check_bundle(b, hashes[off : off + width], gone)
        pos = end
        if progress is not None:
            progress(pos, size)


def _entry_batch(
    store: Store, pos: int, end: int, problems: _Problems, row_check: RowCheck | None = None
) -> tuple[list[bytes], list[int]]:
    """Entries pos..end-1, with b"" standing in for absent ones, and the offsets (from
    pos) of those, each gap reported."""
    try:
        rows = store.entries(pos, end)
    except (StorageError, TypeError) as e:  # a corrupt row (see _StoredTiles.tile)
        problems.add(f"entries: rows {pos}-{end - 1} are unreadable in the store ({e})")
        return [b""] * (end - pos), list(range(end - pos))
    if row_check is not None:
        for message in row_check(rows):
            problems.add(message)
    data: list[bytes] = []
    missing: list[int] = []
    expect = pos
    for r in rows:  # ascending, unique (primary key)
        if r.index != expect:
            _report_gap(problems, expect, r.index)
            missing.extend(range(expect - pos, r.index - pos))
            data.extend([b""] * (r.index - expect))
        data.append(r.data)
        expect = r.index + 1
    if expect != end:
        _report_gap(problems, expect, end)
        missing.extend(range(expect - pos, end - pos))
        data.extend([b""] * (end - expect))
    return data, missing


def _report_gap(problems: _Problems, first: int, stop: int) -> None:
    what = f"entry {first} is" if stop == first + 1 else f"entries {first}-{stop - 1} are"
    problems.add(f"entries: {what} missing from the store (rows deleted?)")


def _extra_rows(store: Store, problems: _Problems) -> None:
    """No entry may lie past the log size: the sequencer writes entries and the new size
    in one transaction. (The size is read again after the rows, so a concurrent append
    is not mistaken for a stray row.)"""
    size = store.size()
    try:
        rows = store.entries(size, 1 << 62)
    except (StorageError, TypeError) as e:  # a corrupt row (see _StoredTiles.tile)
        problems.add(f"entries: rows past the log size {size} are unreadable ({e})")
        return
    after = store.size()
    stray = [r.index for r in rows if r.index >= after]
    if stray:
        problems.add(
            f"entries: {len(stray)} rows lie past the log size {after}, from index "
            f"{stray[0]} (entries inserted, or log state altered?)"
        )


def _consistency(
    tiles: _StoredTiles, checkpoints: Sequence[Checkpoint], problems: _Problems
) -> None:
    """tlog-checkpoint: "A log MUST not sign any checkpoint which is inconsistent with any
    checkpoint it previously signed. Two checkpoints are inconsistent if a consistency
    proof can't be constructed from one to the other." For each pair of consecutive
    checkpoints, build the RFC 9162 consistency proof from the stored tiles (as the log
    would serve it) and verify it; consistency chains, so this covers every pair."""
    failures = []
    for old, new in zip(checkpoints, checkpoints[1:], strict=False):
        try:
            proof = merkle.consistency_proof(tiles, old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except ProofError as e:
            failures.append(
                f"checkpoints at sizes {old.size} and {new.size}: not consistent: the proof "
                f"built from the stored tiles does not verify ({e})"
            )
    _summarise(problems, failures, "inconsistent checkpoint pairs")


def verify_store(
    store: Store,
    verifier: Verifier,
    *,
    progress: Progress | None = None,
    known_checkpoints: Sequence[bytes | str] = (),
    kept: StoredCheckpoint | None = None,
    witnesses: Sequence[Verifier] = (),
    row_check: RowCheck | None = None,
) -> VerifyReport:
    """Verify a live store against the log's verifier key alone.

    Checks every stored checkpoint's signature and that its root is the root of the
    entries; that consecutive checkpoints are consistent by proofs built from the stored
    tiles; every entry row up to the log size; every stored tile against the hashes
    recomputed from the entries; that stored cosignatures parse. ``known_checkpoints``
    are checkpoints seen elsewhere (receipts, exports, witnesses): deleting a stored
    checkpoint can only be noticed against one of those. ``kept`` is the latest
    checkpoint kept outside the store ($KANSA_HOME): a known checkpoint whose number in
    signing order also shows deleted checkpoint rows below it. ``witnesses``: keys
    whose cosignatures are verified. ``row_check``: checks of each entry row's
    metadata against its entry, by the layer that knows what entries mean.
    """
    started = time.perf_counter()
    problems = _Problems()
    origin = store.get_meta("origin")
    if origin is not None and origin != verifier.name:
        problems.add(f"store: holds log {origin!r}, not {verifier.name!r}")
    # checkpoints first, then the size: a log signs only sizes it has already committed,
    # so a checkpoint signed meanwhile can never look larger than the log
    rows = store.all_checkpoints()
    size = store.size()
    signed, cosignatures, unverified = _store_checkpoints(
        store, verifier, rows, size, problems, witnesses
    )
    extra = [*known_checkpoints, *([kept.note] if kept is not None else [])]
    known = _known_checkpoints(store, verifier, extra, size, problems)
    _checkpoint_rows(store, rows, kept, problems)
    if not signed and size > 0:
        problems.add(f"store: holds {size} entries but no valid signed checkpoint")

    tiles = _StoredTiles(store, problems)
    checker = _TreeChecker(size, tiles.tile, problems, [c.size for c in signed + known])
    _store_entries(store, checker, size, problems, progress, row_check)
    checker.finish()
    _extra_rows(store, problems)

    mismatches = [
        f"checkpoint at size {c.size}: root differs from the root of the first {c.size} "
        f"entries recomputed from the store (entries altered, or a forged checkpoint)"
        for c in signed
        if checker.roots[c.size] != c.root
    ]
    _summarise(problems, mismatches, "checkpoints whose root differs")
    _summarise(
        problems,
        [
            f"known checkpoint of size {c.size}: root differs from the root recomputed "
            f"from the store's entries"
            for c in known
            if checker.roots[c.size] != c.root
        ],
        "known checkpoints whose root differs",
    )
    _consistency(tiles, signed, problems)
    problems.raise_if_any()

    latest = signed[-1] if signed else Checkpoint(verifier.name, 0, EMPTY_ROOT)
    return VerifyReport(
        origin=latest.origin,
        size=latest.size,
        root=latest.root,
        entries_checked=size,
        tiles_checked=checker.tiles_checked,
        checkpoints_checked=len(rows) + len(known),
        cosignatures_checked=cosignatures,
        cosignatures_unverified=unverified,
        seconds=time.perf_counter() - started,
    )
