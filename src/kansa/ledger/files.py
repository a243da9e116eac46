"""Reading untrusted files with a bound: exports, receipts and checkpoints from elsewhere.

Every file kansa verifies has a maximum size fixed by its format, so nothing is read
past it: a tile link to ``/dev/zero``, a sparse 2 GB file or a FIFO must give a clear
error, not a MemoryError or a hang. Only regular files are read; inside an export
directory, a symlink that leads out of the directory is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kansa.errors import FormatError
from kansa.ledger.merkle import HASH_SIZE
from kansa.ledger.tiles import MAX_ENTRY_SIZE, TILE_WIDTH

MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE  # 8,192: a full tile
MAX_BUNDLE_BYTES = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)  # 256 uint16-prefixed entries
MAX_CHECKPOINT_BYTES = 1 << 16  # origin, size, root and up to 100 signature lines
MAX_RECEIPT_BYTES = 1 << 18  # an entry (base64), 64 proof hashes and a checkpoint


def read_bounded(path: Path | str, limit: int, *, within: Path | None = None) -> bytes:
    """The bytes of regular file ``path``, at most ``limit`` of them.

    Raises :class:`FormatError` naming the path if it is not a regular file, is larger
    than ``limit``, or (with ``within``) resolves to somewhere outside that directory.
    ``OSError`` (missing, unreadable) is left to the caller.
    """
    p = Path(path)
    if within is not None:
        real = Path(os.path.realpath(p))
        base = Path(os.path.realpath(within))
        if real != base and base not in real.parents:
            raise FormatError(f"{p}: a symlink leading outside {within} (to {real}); refused")
    # O_NONBLOCK: opening a FIFO for reading must not wait for a writer
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{p}: not a regular file ({_kind(st.st_mode)}); refused")
        if st.st_size > limit:
            raise FormatError(
                f"{p}: {st.st_size} bytes, more than the {limit} this kind of file can hold"
            )
        chunks: list[bytes] = []
        left = limit + 1  # one byte more shows a file that grew while we read it
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise FormatError(f"{p}: more than the {limit} bytes this kind of file can hold")
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
