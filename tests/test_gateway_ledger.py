"""What the gateway needs from the ledger: a cancelled ``aappend`` (a client that went
away) must not kill the sequencer, and the cancelled record is still durable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kansa.api import Ledger


def test_cancelled_aappend_leaves_the_sequencer_alive(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "home")

    async def run() -> int:
        t = asyncio.ensure_future(ledger.aappend({"system": "cancelled", "input": "x"}))
        await asyncio.sleep(0)  # queued to the sequencer, then the waiter gives up
        t.cancel()
        cancelled = False
        try:
            await t
        except asyncio.CancelledError:
            cancelled = True
        assert cancelled
        a = await asyncio.wait_for(ledger.aappend({"system": "after"}), 10)
        return a.index

    try:
        index = asyncio.run(run())
        assert ledger.log._thread is not None and ledger.log._thread.is_alive()
        systems = [r.entry["system"] for r in ledger.find()]
        assert systems == ["cancelled", "after"]  # the cancelled one was committed anyway
        assert index == 1
    finally:
        ledger.close()
