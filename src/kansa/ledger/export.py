"""Static export of a log as a C2SP tlog-tiles directory, verifiable offline.

The directory holds exactly what c2sp.org/tlog-tiles serves for the log's latest signed
checkpoint of size N:

    checkpoint                   the signed note, with any stored witness cosignatures
    tile/<L>/<N>[.p/<W>]         every Merkle tree tile of a tree of size N
    tile/entries/<N>[.p/<W>]     every entry bundle of a tree of size N
    kansa-export.json            informative metadata; verification never reads it

It is written into a fresh temporary directory beside the target and renamed into place
only once complete, so a reader never sees half an export under the target name.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kansa.errors import FormatError, KansaError, StorageError
from kansa.ledger.log import Log
from kansa.ledger.note import (
    SIG_PREFIX,
    Checkpoint,
    Note,
    SignedCheckpoint,
    parse_note,
    verify_checkpoint,
)
from kansa.ledger.storage import Store, StoredCheckpoint
from kansa.ledger.tiles import (
    TILE_WIDTH,
    encode_bundle,
    entries_path,
    tile_path,
    tile_width_at,
    tiles_for_size,
)

CHECKPOINT_FILE = "checkpoint"
METADATA_FILE = "kansa-export.json"
METADATA_FORMAT = "kansa-export/v1"
ENTRY_BATCH = 4 * TILE_WIDTH  # entries per query: at most 64 MiB even if all are 64 KiB

Progress = Callable[[int, int], None]  # (entries done, entries in total)


@dataclass(frozen=True)
class ExportSummary:
    directory: Path
    origin: str
    size: int
    root: bytes
    entries: int
    tiles: int  # Merkle tree tiles written (entry bundles not counted)
    bundles: int
    cosignatures: int
    seconds: float

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def __str__(self) -> str:
        return (
            f"{self.entries} entries of {self.origin} (size {self.size}, root "
            f"{self.root_hex}) to {self.directory}: {self.bundles} entry bundles, "
            f"{self.tiles} tiles, {self.cosignatures} cosignatures in {self.seconds:.2f} s"
        )


# --- checkpoints with cosignatures ------------------------------------------------------


def signature_line(line: str) -> str:
    """Normalise a stored cosignature line to "— <name> <base64>\\n".

    signed-note: each signature line is "em dash (U+2014), space (U+0020), key name,
    space, base64-encoded signature, newline". Stored lines may omit the final newline.
    """
    text = line[:-1] if line.endswith("\n") else line
    if not text.startswith(SIG_PREFIX) or "\n" in text:
        raise FormatError(f"stored cosignature {line!r} is not a single signature line")
    return text + "\n"


def cosigned_note(note_text: str, cosignature_lines: Sequence[str]) -> Note:
    """The log's signed note with stored cosignature lines appended.

    tlog-checkpoint: witness cosignatures are further signature lines on the same note.
    Every line is parsed (so a malformed stored line raises :class:`FormatError`); a
    signature whose (name, key ID) is already on the note is dropped, not duplicated.
    """
    merged = parse_note(note_text + "".join(signature_line(x) for x in cosignature_lines))
    seen: set[tuple[str, bytes]] = set()
    unique = []
    for sig in merged.signatures:
        if (sig.name, sig.key_id) not in seen:
            seen.add((sig.name, sig.key_id))
            unique.append(sig)
    return Note(merged.text, tuple(unique))


def load_checkpoint(log: Log, stored: StoredCheckpoint) -> SignedCheckpoint:
    """A stored checkpoint with its stored cosignatures; signature checked when the log
    has its key loaded, otherwise only parsed."""
    try:
        note = cosigned_note(stored.note, log.store.cosignatures(stored.size))
    except FormatError as e:
        raise StorageError(
            f"the checkpoint of size {stored.size} or a cosignature stored for it is "
            f"malformed ({e}): run 'kansa verify'"
        ) from None
    if log.signer is not None:
        verify_checkpoint(note.to_text(), log.signer.verifier)
    cp = Checkpoint.parse_body(note.text)
    if cp.size != stored.size:
        raise StorageError(
            f"the checkpoint stored under size {stored.size} is a checkpoint of size {cp.size}"
        )
    return SignedCheckpoint(cp, note)


# --- export -----------------------------------------------------------------------------


def export_log(
    log: Log, directory: Path, *, progress: Progress | None = None
) -> ExportSummary:
    """Write a tlog-tiles directory for the log's latest signed checkpoint.

    ``directory`` must not exist or be empty. Only signed state is exported: entries
    appended after the latest checkpoint are left out (call ``log.flush()`` first to
    include them).
    """
    started = time.perf_counter()
    directory = Path(directory)
    _check_target(directory)
    stored = log.store.latest_checkpoint()
    if stored is None:
        raise KansaError("the log has no signed checkpoint yet: nothing to export")
    signed = load_checkpoint(log, stored)
    size = signed.checkpoint.size

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial",
                                dir=directory.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; an export is meant to be shared
        writer = _Writer(tmp)
        writer.write(CHECKPOINT_FILE, signed.note.to_bytes())
        bundles = _write_bundles(log.store, size, writer, progress)
        tiles = _write_tiles(log.store, size, writer)
        cosignatures = _count_cosignatures(signed)
        writer.write(METADATA_FILE, _metadata(log, signed, cosignatures))
        _move_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportSummary(
        directory=directory,
        origin=signed.checkpoint.origin,
        size=size,
        root=signed.checkpoint.root,
        entries=size,
        tiles=tiles,
        bundles=bundles,
        cosignatures=cosignatures,
        seconds=time.perf_counter() - started,
    )


def _check_target(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise KansaError(
            f"export target {directory} already exists and is not an empty directory; "
            f"choose a new directory"
        )


def _move_into_place(tmp: Path, directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        directory.rmdir()  # only ever empty here: _check_target refused anything else
    try:
        os.rename(tmp, directory)
    except OSError as e:
        raise KansaError(f"cannot move the export into place at {directory}: {e}") from None


class _Writer:
    """Writes files under a root, creating each parent directory once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[str] = set()

    def write(self, rel: str, data: bytes) -> None:
        parent = os.path.dirname(rel)
        if parent and parent not in self._dirs:
            os.makedirs(self.root / parent, exist_ok=True)
            self._dirs.add(parent)
        with open(self.root / rel, "wb") as f:
            f.write(data)


def _write_bundles(store: Store, size: int, writer: _Writer, progress: Progress | None) -> int:
    """tlog-tiles: "Entry bundles are sequences of big-endian uint16 length-prefixed log
    entries", 256 per full bundle; the last one is partial unless size % 256 == 0."""
    bundles = 0
    pos = 0
    while pos < size:
        end = min(size, pos + ENTRY_BATCH)
        rows = store.entries(pos, end)
        if len(rows) != end - pos:  # idx is the primary key: no duplicates, so a gap
            have = {r.index for r in rows}
            missing = next(i for i in range(pos, end) if i not in have)
            raise StorageError(f"entry {missing} is missing from the store; cannot export")
        data = [r.data for r in rows]
        for start in range(0, len(data), TILE_WIDTH):
            index = (pos + start) // TILE_WIDTH
            width = tile_width_at(0, index, size)
            writer.write(entries_path(index, width), encode_bundle(data[start:start + width]))
            bundles += 1
        pos = end
        if progress is not None:
            progress(pos, size)
    if progress is not None and size == 0:
        progress(0, 0)
    return bundles


def _write_tiles(store: Store, size: int, writer: _Writer) -> int:
    """Every tile of a tree of ``size``; a stored rightmost tile may have grown since the
    checkpoint, so it is cut to the checkpoint's width (tiles only ever grow at the end,
    their first W hashes never change)."""
    count = 0
    for level, index, width in tiles_for_size(size):
        data = store.read_tile(level, index)
        need = width * 32
        if data is None or len(data) < need:
            have = 0 if data is None else len(data) // 32
            raise StorageError(
                f"{tile_path(level, index, width)}: the store holds {have} hashes at level "
                f"{level}, index {index}; the checkpoint needs {width}"
            )
        writer.write(tile_path(level, index, width), data[:need])
        count += 1
    return count


def _count_cosignatures(signed: SignedCheckpoint) -> int:
    return sum(1 for s in signed.note.signatures if s.name != signed.checkpoint.origin)


def _metadata(log: Log, signed: SignedCheckpoint, cosignatures: int) -> bytes:
    vkey = log.signer.verifier.vkey if log.signer is not None else None
    meta = {
        "format": METADATA_FORMAT,
        "note": "informative only: verify this directory with the log's verifier key, "
        "never with values from this file",
        "origin": signed.checkpoint.origin,
        "size": signed.checkpoint.size,
        "root": base64.b64encode(signed.checkpoint.root).decode(),
        "verifier_key": vkey,
        "cosignatures": cosignatures,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return (json.dumps(meta, indent=2) + "\n").encode()
