"""Cryptographic randomness, drawn from the OS in blocks.

On small VMs each getrandom() call costs tens of microseconds, which dominated the append
path (a record id and a nonce per record). Bytes still come only from os.urandom; the pool
is cleared in a forked child so parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading

_BLOCK = 4096
_lock = threading.Lock()
_pool = b""
_pos = 0


def _reset() -> None:
    global _pool, _pos
    _pool, _pos = b"", 0


os.register_at_fork(after_in_child=_reset)


def random_bytes(n: int) -> bytes:
    global _pool, _pos
    if n > _BLOCK // 4:
        return os.urandom(n)
    with _lock:
        if _pos + n > len(_pool):
            _pool, _pos = os.urandom(_BLOCK), 0
        out = _pool[_pos : _pos + n]
        _pos += n
        return out
