"""Shared by the benchmarks that build large ledgers (bench/rules.py, bench/report.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from kansa.api import Ledger


def append_in_chunks(lg: Ledger, records: Iterable[dict[str, Any]], n: int,
                     chunk_size: int = 20_000) -> None:
    """Append ``records`` (n of them) in durable batches, with progress on stderr, then
    sign a checkpoint covering them."""
    chunk: list[dict[str, Any]] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == chunk_size:
            lg.append_many(chunk)
            chunk.clear()
            print(f"  built {lg.log.store.size():,}/{n:,}", end="\r", file=sys.stderr)
    if chunk:
        lg.append_many(chunk)
    lg.checkpoint()
    print(file=sys.stderr)
